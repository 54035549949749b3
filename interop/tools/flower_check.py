def available():
    return "todo"
Flower = None

import os
BIN = os.environ.get("INTEROP_RABBITMQADMIN_V2", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".tools", "bin", "rabbitmqadmin"))
def available():
    return None if os.access(BIN, os.X_OK) else "not built yet"
AdminV2 = None

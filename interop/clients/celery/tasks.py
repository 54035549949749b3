import os
from celery import Celery

app = Celery("interop", broker=os.environ.get("INTEROP_URL"), backend="rpc://")
app.conf.update(task_default_queue=os.environ.get("INTEROP_PREFIX", "it.celery") + ".tasks",
                broker_connection_retry_on_startup=False, worker_hijack_root_logger=False,
                result_expires=60, task_acks_late=True, worker_prefetch_multiplier=1)

@app.task
def add(x, y):
    return x + y

@app.task
def echo(payload):
    return {"len": len(payload), "head": payload[:8]}

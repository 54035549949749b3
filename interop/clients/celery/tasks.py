import os
from celery import Celery

# kombu picks the worker's basic.qos `global` flag from the server's product and version
# (True for RabbitMQ 3.3 to 3.x, False for 4.x and other products). INTEROP_CELERY_QOS_GLOBAL=1
# or 0 forces one choice, so the scenarios can run the worker under either semantics.
_qos_global = os.environ.get("INTEROP_CELERY_QOS_GLOBAL")
if _qos_global in ("0", "1"):
    from kombu.transport import pyamqp
    pyamqp.Transport.qos_semantics_matches_spec = lambda self, connection: _qos_global == "0"

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

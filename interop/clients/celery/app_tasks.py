"""vhost_user: a second Celery app whose broker is INTEROP_APP_URL (the interop-app user on its
own vhost). That user may only configure names matching ^interop\.app\., so every name Celery
declares is set here: the task queue (and its direct exchange of the same name), and the rpc://
result backend's reply queue (by default a uuid). Remote control (pidbox), events, gossip,
mingle and heartbeats are off: their exchanges and queues have other names."""
import os
from celery import Celery

PREFIX = "interop.app." + os.environ.get("INTEROP_PREFIX", "it.celery")

class AppCelery(Celery):
    """The rpc:// reply queue (and every task's reply_to) is the app's thread_oid, a uuid by
    default: here a fixed name the app user may declare."""
    @property
    def thread_oid(self):
        return PREFIX + ".replies"

app = AppCelery("interop_app", broker=os.environ.get("INTEROP_APP_URL"), backend="rpc://")
app.conf.update(task_default_queue=PREFIX + ".tasks", broker_connection_retry_on_startup=False,
                worker_hijack_root_logger=False, result_expires=60, task_acks_late=True,
                worker_prefetch_multiplier=1, worker_enable_remote_control=False,
                worker_send_task_events=False, task_publish_retry=False)

@app.task
def mul(x, y):
    return x * y

"""The Celery app Flower runs with in interop/tools: its queues (INTEROP_FLOWER_QUEUES, comma
separated) are the ones Flower's broker tab shows when no worker is running."""
import os

from celery import Celery
from kombu import Queue

app = Celery("interop_flower")
_names = [n for n in os.environ.get("INTEROP_FLOWER_QUEUES", "").split(",") if n]
if _names:
    app.conf.task_default_queue = _names[0]
    app.conf.task_queues = [Queue(n) for n in _names]

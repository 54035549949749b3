import sys, os, subprocess, time, json, signal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import *

here = os.path.dirname(os.path.abspath(__file__))
celery_bin = os.path.join(here, "..", "..", ".venv", "bin", "celery")
log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"interop-celery-worker-{PORT}.log"), "w")
worker = subprocess.Popen([celery_bin, "-A", "tasks", "worker", "-E", "--pool=prefork", "--concurrency=2",
                           "-n", "interop@localhost", "--loglevel=INFO"], cwd=here, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
try:
    from tasks import app, add, echo

    def worker_ready(t=30):
        end = time.time() + t
        while time.time() < end:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited {worker.returncode}: " + open(log.name).read()[-800:])
            if "ready." in open(log.name).read(): return True
            time.sleep(0.2)
        raise RuntimeError("worker not ready: " + open(log.name).read()[-800:])

    def celery_task():
        worker_ready()
        rs = [add.delay(i, i * 10) for i in range(5)]
        out = [r.get(timeout=20) for r in rs]
        big = echo.delay("x" * 100000).get(timeout=20)
        # The worker picks its basic.qos `global` flag from the server's product and version
        # (kombu: RabbitMQ 3.3 to 3.x means global=True; 4.x and other products, False): the
        # product must read RabbitMQ, on Warren as on RabbitMQ.
        with app.connection() as conn:
            conn.connect()
            product = conn.connection.server_properties.get("product")
        return expect({"results": out, "echo": big, "product": product},
                      results=[i * 11 for i in range(5)], echo={"len": 100000, "head": "xxxxxxxx"},
                      product="RabbitMQ")

    def celery_ping():
        worker_ready()
        r = subprocess.run([celery_bin, "-A", "tasks", "inspect", "ping", "-t", "5", "--json"], cwd=here,
                           capture_output=True, text=True, timeout=40)
        try: replies = json.loads(r.stdout.strip().splitlines()[-1])
        except Exception: replies = None
        # the programmatic API too: app.control.ping (broadcast on the pidbox fanout exchange)
        api = app.control.ping(timeout=3)
        obs = {"rc": r.returncode, "replies": replies, "api": api, "stderr": r.stderr.strip()[-300:] if r.returncode else ""}
        return expect(obs, rc=0, replies={"interop@localhost": {"ok": "pong"}}, api=[{"interop@localhost": {"ok": "pong"}}])

    def vhost_user():
        # A worker of the app_tasks app, connected as the interop-app user to its vhost.
        alog = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"interop-celery-app-worker-{PORT}.log"), "w")
        w = subprocess.Popen([celery_bin, "-A", "app_tasks", "worker", "--pool=prefork", "--concurrency=1",
                              "-n", "interop-app@localhost", "--without-gossip", "--without-mingle",
                              "--without-heartbeat", "--loglevel=INFO"], cwd=here, stdout=alog,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            from app_tasks import app as aapp, mul, PREFIX
            import amqp
            end = time.time() + 30
            while "ready." not in open(alog.name).read():
                if w.poll() is not None or time.time() > end:
                    raise RuntimeError("app worker not ready: " + open(alog.name).read()[-800:])
                time.sleep(0.2)
            obs = {"results": [mul.delay(i, 7).get(timeout=20) for i in range(3)]}
            # a task sent to a queue the user may not configure: Celery declares its exchange (named
            # after the queue) first, and RabbitMQ refuses that
            try:
                mul.apply_async((1, 1), queue=DENIED_Q); obs["refused_code"] = None
            except amqp.exceptions.AccessRefused as e:
                obs["refused_error"], obs["refused_code"], obs["refused_text"] = type(e).__name__, e.code, e.reply_text
            # the same user's broker URL on vhost /
            from celery import Celery
            try:
                with Celery("interop_root", broker=APP_ROOT_URL).connection_for_write() as c:
                    c.connect()
                obs["root_error"] = None
            except Exception as e:
                obs["root_error"], obs["root_code"], obs["root_text"] = type(e).__name__, getattr(e, "code", None), getattr(e, "reply_text", str(e))
            check(obs["results"] == [0, 7, 14], "task results", obs)
            check(obs.get("root_code") == 530 and obs.get("root_text") == TEXT_530, "vhost / not refused with 530", obs)
            return check_vhost_user(obs, kind="exchange")
        finally:
            try: os.killpg(w.pid, signal.SIGTERM)
            except ProcessLookupError: pass
            try: w.wait(15)
            except subprocess.TimeoutExpired: os.killpg(w.pid, signal.SIGKILL)

    run("celery_task", celery_task)
    run("celery_ping", celery_ping)
    run("vhost_user", vhost_user)
finally:
    try: os.killpg(worker.pid, signal.SIGTERM)
    except ProcessLookupError: pass
    try: worker.wait(15)
    except subprocess.TimeoutExpired: os.killpg(worker.pid, signal.SIGKILL)

"""Shared harness for the Python clients: scenario bookkeeping and the fixed test data."""
import hashlib, json, os, signal, sys, traceback, asyncio

URL = os.environ.get("INTEROP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
HOST = os.environ.get("INTEROP_HOST", "127.0.0.1")
PORT = int(os.environ.get("INTEROP_PORT", "5672"))
P = os.environ.get("INTEROP_PREFIX", "it.py")
BAD_URL = URL.replace("guest:guest@", "guest:wrong@")

LARGE_LEN = 5 * 1024 * 1024 + 7
def large_body():
    return bytes((i * 7 + 3) % 251 for i in range(251)) * (LARGE_LEN // 251) + bytes(LARGE_LEN % 251)
def sha(b):
    return hashlib.sha256(b).hexdigest()

HEADERS = {"s": "str", "i": 42, "b": True, "n": {"k": "v"}, "l": [1, "two"]}
PROPS = dict(content_type="application/json", content_encoding="utf-8", delivery_mode=2, priority=5,
             correlation_id="corr-1", reply_to="rq", expiration="60000", message_id="mid-1",
             timestamp=1700000000, type="t1", user_id="guest", app_id="interop")

def emit(name, ok, obs=None, err=""):
    print(json.dumps({"scenario": name, "ok": bool(ok), "obs": obs, "err": err}, default=str), flush=True)

def run(name, fn, *a, timeout=None):
    """timeout (s): a scenario that hangs (no reply from the broker) fails with "timeout Ns"."""
    def alarm(*_): raise TimeoutError(f"timeout {timeout}s")
    if timeout:
        signal.signal(signal.SIGALRM, alarm); signal.alarm(timeout)
    try:
        obs = fn(*a)
        signal.alarm(0)
        emit(name, True, obs)
    except Exception as e:
        signal.alarm(0)
        emit(name, False, getattr(e, "obs", None), f"{type(e).__name__}: {e} @ " + traceback.format_exc().strip().splitlines()[-3].strip())

async def arun(name, fn, *a, timeout=30):
    try:
        obs = await asyncio.wait_for(fn(*a), timeout)
        emit(name, True, obs)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        emit(name, False, getattr(e, "obs", None), f"{type(e).__name__}: {e} @ " + traceback.format_exc().strip().splitlines()[-3].strip())

class Mismatch(Exception):
    def __init__(self, msg, obs=None):
        super().__init__(msg); self.obs = obs

def check(cond, msg, obs=None):
    if not cond:
        raise Mismatch(msg, obs)

def expect(obs, **want):
    """Fail (keeping obs for the diff) unless obs[k] == v for every k."""
    bad = {k: (obs.get(k), v) for k, v in want.items() if obs.get(k) != v}
    if bad:
        raise Mismatch("unexpected " + "; ".join(f"{k}={g!r} (want {w!r})" for k, (g, w) in bad.items()), obs)
    return obs

# Expected outcomes shared by all clients (RabbitMQ's answers).
ROUTING_Q1 = ["direct-a", "fanout", "topic-x.y", "headers-ab"]
ROUTING_Q2 = ["direct-b", "fanout", "topic-x.y", "topic-x.y.z", "topic-x", "headers-a", "headers-ab"]
def text_404(q): return f"NOT_FOUND - no queue '{q}' in vhost '/'"
def text_406(q): return f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"

# vhost_user: the non-default user and vhost of interop/definitions.json. The user may configure
# only names matching ^interop\.app\. in its vhost and has no permissions at all on /.
APP_USER = os.environ.get("INTEROP_APP_USER", "interop-app")
APP_PASS = os.environ.get("INTEROP_APP_PASS", "interop-app-secret")
APP_VHOST = os.environ.get("INTEROP_APP_VHOST", "interop-app")
APP_URL = os.environ.get("INTEROP_APP_URL", f"amqp://{APP_USER}:{APP_PASS}@{HOST}:{PORT}/{APP_VHOST}")
APP_ROOT_URL = f"amqp://{APP_USER}:{APP_PASS}@{HOST}:{PORT}/%2f"   # the same user on vhost /
APP_Q = f"interop.app.{P}"       # configure permitted
DENIED_Q = f"{P}.denied"         # configure refused
APP_BODY = "vhost-user"
def texts_403(q, kind="queue"):
    """RabbitMQ 4.x (and Warren) name the permission; 3.10 does not. Either is accepted."""
    return [f"ACCESS_REFUSED - {w}access to {kind} '{q}' in vhost '{APP_VHOST}' refused for user '{APP_USER}'"
            for w in ("configure ", "")]
TEXT_530 = f"NOT_ALLOWED - access to vhost '/' refused for user '{APP_USER}'"
def check_vhost_user(obs, kind="queue"):
    """The facts every client's vhost_user observation must show (keys it does not record are skipped)."""
    want = {"declare_ok": [APP_Q, 0, 0], "got": APP_BODY, "refused_code": 403, "conn_open": True}
    bad = {k: (obs.get(k), v) for k, v in want.items() if k in obs and obs.get(k) != v}
    if "refused_text" in obs and obs["refused_text"] not in texts_403(DENIED_Q, kind):
        bad["refused_text"] = (obs["refused_text"], texts_403(DENIED_Q, kind)[0])
    if bad:
        raise Mismatch("unexpected " + "; ".join(f"{k}={g!r} (want {w!r})" for k, (g, w) in bad.items()), obs)
    return obs
def root_refusal(e):
    """How a client reported the refused connection to vhost /: its error type, and the 530 code
    and text where they can be read from it (pika, kombu put the close in the message)."""
    import re
    obs = {"root_error": type(e).__name__}
    m = re.search(r"(\d{3})\D{0,6}(NOT_ALLOWED - .*?for user \\?'[^'\\]*\\?')", str(e))
    if m:
        obs["root_code"], obs["root_text"] = int(m.group(1)), m.group(2).replace("\\", "")
    return obs

# stream: a stream queue read from "first", from offset 3 and from "next" (the default).
STREAM_FIRST = [[f"s{i}", i] for i in range(5)]
STREAM_FROM3 = STREAM_FIRST[3:]
STREAM_NEXT = [["s-after", 5]]
def stream_text_406(t):
    """The 406 for a consumer without basic.qos names the queue differently in RabbitMQ 3.10
    ("for 'queue ...'") and 4.x ("for stream queue ..."): keep the part before the name."""
    return t.split(" for ")[0]
STREAM_406 = "PRECONDITION_FAILED - consumer prefetch count is not set"
def text_540_get(q): return f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{q}' in vhost '/'"
def check_stream(obs, q=None):
    q = q or f"{P}.stream"
    want = {"first": STREAM_FIRST, "from3": STREAM_FROM3, "next": STREAM_NEXT, "no_qos_code": 406,
            "no_qos_text": STREAM_406, "conn_open_after_406": True, "get_code": 540,
            "get_text": text_540_get(q), "conn_open_after_get": False}
    bad = {k: (obs.get(k), v) for k, v in want.items() if k in obs and obs.get(k) != v}
    bad.update({k: (None, want[k]) for k in ("first", "from3", "next", "no_qos_code", "get_code") if k not in obs})
    if bad:
        raise Mismatch("unexpected " + "; ".join(f"{k}={g!r} (want {w!r})" for k, (g, w) in bad.items()), obs)
    return obs

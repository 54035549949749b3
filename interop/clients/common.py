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

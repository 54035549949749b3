"""Shared pieces of the management-tool scenarios: the broker's HTTP API and AMQP port as fixtures
(set up and checked independently of the tool under test), running a tool, and the JSON line each
scenario prints.

A scenario record is {"client": TOOL, "scenario": NAME, "ok": bool, "obs": ..., "err": "..."}
(interop/run's format); `obs` is normalized so the same scenario compares between Warren and
RabbitMQ: the tool's name prefix becomes "P", server-chosen names and ports are dropped.
"""
import base64, json, os, re, subprocess, sys, time, traceback, urllib.error, urllib.parse, urllib.request

HOST = os.environ.get("INTEROP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("INTEROP_PORT", "5672"))
API_PORT = int(os.environ.get("INTEROP_API_PORT", "15672"))
USER, PASS = "guest", "guest"
# How long a scenario waits for the broker's statistics (RabbitMQ's lag ~5 s behind).
STATS_WAIT = float(os.environ.get("INTEROP_STATS_WAIT", "30"))


class Fail(Exception):
    """A scenario's expectation not met; the message says what was seen."""


def q(s):
    return urllib.parse.quote(s, safe="")


def api(method, path, body=None, ok=(200, 201, 204), user=USER, password=PASS):
    """One request to the management API; returns (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{HOST}:{API_PORT}/api{path}", data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    try:
        val = json.loads(text) if text else None
    except ValueError:
        val = text
    if ok and status not in ok:
        raise Fail(f"fixture {method} /api{path} -> {status} {text[:200]}")
    return status, val


def amqp_params(vhost="/", name=None):
    import pika
    props = {"connection_name": name} if name else None
    return pika.ConnectionParameters(HOST, AMQP_PORT, vhost, pika.PlainCredentials(USER, PASS),
                                     client_properties=props, heartbeat=0, blocked_connection_timeout=20)


def amqp(vhost="/", name=None):
    import pika
    return pika.BlockingConnection(amqp_params(vhost, name))


def fixture_queue(name, messages=(), exchange=None, key=None, vhost="/"):
    """Declare queue `name` (and a direct `exchange` bound with `key`), publish `messages`."""
    c = amqp(vhost)
    try:
        ch = c.channel()
        ch.confirm_delivery()
        ch.queue_declare(name)
        if exchange:
            ch.exchange_declare(exchange, "direct")
            ch.queue_bind(name, exchange, key)
        for m in messages:
            ch.basic_publish("", name, m.encode() if isinstance(m, str) else m)
    finally:
        c.close()


def amqp_queue(name, vhost="/"):
    """(exists, message count) by a passive declare."""
    import pika
    c = amqp(vhost)
    try:
        ok = c.channel().queue_declare(name, passive=True)
        return True, ok.method.message_count
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return False, None
        raise
    finally:
        if c.is_open:
            c.close()


def amqp_exchange(name, vhost="/"):
    import pika
    c = amqp(vhost)
    try:
        c.channel().exchange_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return False
        raise
    finally:
        if c.is_open:
            c.close()


def cleanup(prefix, vhost="/"):
    """Delete what a previous run left (queues/exchanges named by prefix, users, vhosts,
    policies), through AMQP and the endpoints every broker here has."""
    c = amqp(vhost)
    try:
        for suffix in ("q", "q2", "q3", "fix", "purge", "get", "del", "bind"):
            ch = c.channel(); ch.queue_delete(f"{prefix}.{suffix}"); ch.close()
        for suffix in ("x", "fix.x", "del.x"):
            ch = c.channel(); ch.exchange_delete(f"{prefix}.{suffix}"); ch.close()
    finally:
        c.close()
    for path in (f"/users/{q(prefix + '.user')}", f"/vhosts/{q(prefix + '.vhost')}",
                 f"/vhosts/{q(prefix + '.imported')}", f"/users/{q(prefix + '.imported')}",
                 f"/policies/%2F/{q(prefix + '.pol')}", f"/policies/%2F/{q(prefix + '.fixpol')}",
                 f"/permissions/%2F/{q(prefix + '.fixuser')}", f"/users/{q(prefix + '.fixuser')}"):
        api("DELETE", path, ok=None)


def poll(fn, want, timeout=None):
    """Call fn() until want(value) holds or the statistics wait is over; returns the last value."""
    end = time.time() + (STATS_WAIT if timeout is None else timeout)
    while True:
        v = fn()
        if want(v) or time.time() >= end:
            return v
        time.sleep(1)


def run_tool(argv, stdin=None, timeout=60):
    """Run the tool; returns (exit code, stdout, stderr)."""
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -1, "", f"timeout after {timeout}s"


class Tool:
    """Base of a tool's scenario set: records, prefix normalization and the last command line
    (what a failure reports)."""
    name = "tool"

    def __init__(self, prefix):
        self.prefix = prefix
        self.last = []

    def norm(self, o):
        if isinstance(o, dict):
            return {self.norm(k): self.norm(v) for k, v in sorted(o.items())}
        if isinstance(o, (list, tuple)):
            return [self.norm(v) for v in o]
        if isinstance(o, str):
            o = o.replace(self.prefix, "P")
            o = re.sub(r"amq\.gen-[A-Za-z0-9_\-]+", "amq.gen-*", o)
            return o
        return o

    def check(self, scenario, fn):
        """Run one scenario; fn returns its observation or raises Fail."""
        t0 = time.time()
        rec = {"client": self.name, "scenario": scenario}
        self.log = []
        try:
            obs = fn()
            rec.update(ok=True, obs=self.norm(obs))
        except Exception as e:  # noqa: BLE001 - any error is this scenario's failure
            err = str(e) if isinstance(e, Fail) else "".join(traceback.format_exception_only(type(e), e)).strip()
            err += "".join(" | " + x for x in self.log[-3:] if x.split(" -> ")[0][2:] not in err)
            rec.update(ok=False, obs=None, err=self.norm(err)[:1500])
        rec["secs"] = round(time.time() - t0, 1)
        if os.environ.get("INTEROP_TOOLS_TRACE"):  # every command (v2: and its HTTP requests)
            for x in self.log:
                print(f"    {self.norm(x)}", file=sys.stderr)
        print(json.dumps(rec), flush=True)
        print(f"{self.name:18} {scenario:20} {'pass' if rec['ok'] else 'FAIL'}"
              + ("" if rec["ok"] else "  " + rec["err"][:300]), file=sys.stderr, flush=True)
        return rec

    def na(self, scenario, why):
        print(json.dumps({"client": self.name, "scenario": scenario, "ok": True, "skip": True,
                          "obs": None, "err": why}), flush=True)

import sys, os, time, subprocess
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import *
import pika

TURL = f"amqp://guest:guest@{HOST}:{PORT}"          # amqp-tools: no trailing slash (vhost "/")
BAD = f"amqp://guest:wrong@{HOST}:{PORT}"

def tool(*args, url=TURL, input=None, timeout=20):
    r = subprocess.run([args[0], f"--url={url}", *args[1:]], input=input, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode().strip()

def consumer(*args, count):
    return subprocess.Popen(["amqp-consume", f"--url={TURL}", f"--count={count}", *args, "--", "sh", "-c", "cat; echo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

def na(name, why): print(json.dumps({"scenario": name, "ok": True, "skip": True, "obs": None, "err": why}), flush=True)
import json

def connect():
    rc, out, err = tool("amqp-declare-queue", "-q", "")
    return expect({"rc": rc, "name": out.decode().strip(), "err": err}, rc=0, name=out.decode().strip() if out.startswith(b"amq.gen-") else "amq.gen-?")

def declare():
    q = f"{P}.declare"
    a = tool("amqp-declare-queue", "-q", q); b = tool("amqp-declare-queue", "-q", q)
    tool("amqp-publish", "-r", q, "-b", "1"); tool("amqp-publish", "-r", q, "-b", "2")
    time.sleep(0.2)
    d = tool("amqp-delete-queue", "-q", q)
    obs = {"declare": [a[0], a[1].decode().strip()], "redeclare": [b[0], b[1].decode().strip()], "delete": [d[0], d[1].decode().strip()]}
    return expect(obs, declare=[0, q], redeclare=[0, q], delete=[0, "2"])

def routing():
    got = {}
    for ex, key, pub in [("amq.direct", "a", "a"), ("amq.fanout", "ignored", "zzz"), ("amq.topic", "x.*", "x.y")]:
        q = f"{P}.r.{ex}"
        c = consumer("-q", q, "-e", ex, "-r", key, count=1)
        time.sleep(0.5)
        if ex != "amq.fanout": tool("amqp-publish", "-e", ex, "-r", "nomatch.nomatch.nomatch", "-b", "wrong")
        tool("amqp-publish", "-e", ex, "-r", pub, "-b", f"{ex}:{pub}")
        out, _ = c.communicate(timeout=10)
        got[ex] = out.decode().strip()
    return expect(got, **{"amq.direct": "amq.direct:a", "amq.fanout": "amq.fanout:zzz", "amq.topic": "amq.topic:x.y"})

def properties():
    q = f"{P}.props"
    tool("amqp-declare-queue", "-q", q)
    rc, _, err = tool("amqp-publish", "-r", q, "-C", "application/json", "-E", "utf-8", "-p", "-t", "rq",
                      "-H", "s: str", "-H", "k2: v2", "-b", "props-body")
    time.sleep(0.2)
    c = pika.BlockingConnection(pika.URLParameters(URL)); ch = c.channel()
    m, p, b = ch.basic_get(q, auto_ack=True); c.close()
    obs = {"rc": rc, "body": b.decode(), "content_type": p.content_type, "content_encoding": p.content_encoding,
           "delivery_mode": p.delivery_mode, "reply_to": p.reply_to, "headers": p.headers}
    return expect(obs, rc=0, body="props-body", content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                  reply_to="rq", headers={"s": "str", "k2": "v2"})

def consume_prefetch():
    q = f"{P}.prefetch"
    tool("amqp-declare-queue", "-q", q)
    tool("amqp-publish", "-r", q, "-l", input=b"".join(f"m{i}\n".encode() for i in range(5)))
    c = consumer("-q", q, "-p", "2", count=5)
    out, err = c.communicate(timeout=15)
    return expect({"rc": c.returncode, "bodies": out.decode().split()}, rc=0, bodies=[f"m{i}" for i in range(5)])

def get():
    q = f"{P}.get"
    tool("amqp-declare-queue", "-q", q)
    for i in range(3): tool("amqp-publish", "-r", q, "-b", f"g{i}")
    time.sleep(0.2)
    seq = [[r[0], r[1].decode()] for r in (tool("amqp-get", "-q", q) for _ in range(4))]
    return expect({"gets": seq}, gets=[[0, "g0"], [0, "g1"], [0, "g2"], [2, ""]])

def competing():
    q = f"{P}.work"
    tool("amqp-declare-queue", "-q", q)
    cs = [consumer("-q", q, "-p", "1", count=5), consumer("-q", q, "-p", "1", count=5)]
    time.sleep(0.5)
    tool("amqp-publish", "-r", q, "-l", input=b"".join(f"w{i}\n".encode() for i in range(10)))
    outs = [c.communicate(timeout=15)[0].decode().split() for c in cs]
    allm = outs[0] + outs[1]
    return expect({"total": len(allm), "distinct": len(set(allm)), "each": sorted(len(o) for o in outs)}, total=10, distinct=10, each=[5, 5])

def large():
    q = f"{P}.large"; body = large_body()
    tool("amqp-declare-queue", "-q", q)
    rc, _, err = tool("amqp-publish", "-r", q, input=body)
    time.sleep(0.3)
    rc2, out, err2 = tool("amqp-get", "-q", q)
    return expect({"rc": [rc, rc2], "len": len(out), "sha256_ok": sha(out) == sha(body)}, rc=[0, 0], len=LARGE_LEN, sha256_ok=True)

def err_404():
    rc, out, err = tool("amqp-get", "-q", f"{P}.missing")
    return expect({"rc": rc, "stderr": err}, rc=1, stderr="basic.get: server channel error 404, message: " + text_404(f"{P}.missing"))

def err_406():
    q = f"{P}.q406"
    tool("amqp-declare-queue", "-q", q)
    rc, out, err = tool("amqp-declare-queue", "-q", q, "-d")
    tool("amqp-delete-queue", "-q", q)
    return expect({"rc": rc, "stderr": err}, rc=1, stderr="queue.declare: server channel error 406, message: " + text_406(q))

def err_403():
    rc, out, err = tool("amqp-declare-queue", "-q", "x", url=BAD)
    return expect({"rc": rc, "stderr": err}, rc=1, stderr="logging in to AMQP server: server connection error 403, message: ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.")

def vhost_user():
    # -u URL with the app user and its vhost; then the same user on vhost / (amqp-tools: no trailing slash)
    url = APP_URL; root = f"amqp://{APP_USER}:{APP_PASS}@{HOST}:{PORT}"
    d = tool("amqp-declare-queue", "-q", APP_Q, url=url)
    p = tool("amqp-publish", "-r", APP_Q, "-b", APP_BODY, url=url)
    time.sleep(0.2)
    g = tool("amqp-get", "-q", APP_Q, url=url)
    r = tool("amqp-declare-queue", "-q", DENIED_Q, url=url)
    tool("amqp-delete-queue", "-q", APP_Q, url=url)
    v = tool("amqp-declare-queue", "-q", APP_Q, url=root)
    obs = {"declare": [d[0], d[1].decode().strip()], "publish_rc": p[0], "get": [g[0], g[1].decode()],
           "refused": [r[0], r[2]], "root": [v[0], v[2]]}
    check(d[0] == 0 and d[1].decode().strip() == APP_Q and p[0] == 0 and g[1].decode() == APP_BODY, "declare/publish/get", obs)
    check(r[0] == 1 and r[2] in ["queue.declare: server channel error 403, message: " + t for t in texts_403(DENIED_Q)], "refused declare", obs)
    return expect(obs, root=[1, "logging in to AMQP server: server connection error 530, message: " + TEXT_530])

for name in ["connect", "declare", "routing", "properties", "consume_prefetch", "get"]:
    run(name, globals()[name])
for name in ["nack_requeue", "confirms", "mandatory"]:
    na(name, "amqp-tools have no nack, publisher confirms or mandatory flag")
for name in ["competing"]:
    run(name, globals()[name])
na("rpc", "amqp-publish cannot set correlation_id")
for name in ["large", "err_404", "err_406", "err_403", "vhost_user"]:
    run(name, globals()[name])

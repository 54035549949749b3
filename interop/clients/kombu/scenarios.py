import sys, os, time, socket, json
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import *
from kombu import Connection, Exchange, Queue, Producer, Consumer
import amqp

dec = lambda b: b if isinstance(b, str) else b.decode()
KURL = URL.replace("amqp://", "pyamqp://")

def na(name, why): print(json.dumps({"scenario": name, "ok": True, "skip": True, "obs": None, "err": why}), flush=True)

def connect():
    with Connection(KURL) as c:
        c.connect(); ch = c.channel()
        caps = c.connection.server_properties.get("capabilities", {})
        return {"open": c.connected, "capabilities": sorted(k for k, v in caps.items() if v)}

def declare():
    with Connection(KURL) as c:
        ch = c.channel(); q = Queue(f"{P}.declare", channel=ch)
        r = ch.queue_declare(f"{P}.declare")
        for t in ["direct", "fanout", "topic", "headers"]:
            Exchange(f"{P}.x.{t}", t, channel=ch).declare(); Exchange(f"{P}.x.{t}", t, channel=ch).declare(passive=True)
        p = Producer(ch)
        for b in ("1", "2"): p.publish(b, routing_key=f"{P}.declare")
        time.sleep(0.2)
        r2 = ch.queue_declare(f"{P}.declare", passive=True); d = ch.queue_delete(f"{P}.declare")
        for t in ["direct", "fanout", "topic", "headers"]: ch.exchange_delete(f"{P}.x.{t}")
        return expect({"declare_ok": list(r), "passive_count": r2.message_count, "delete_count": d},
                      declare_ok=[f"{P}.declare", 0, 0], passive_count=2, delete_count=2)

def routing():
    with Connection(KURL) as c:
        ch = c.channel(); X = {t: Exchange(f"{P}.rx.{t}", t, durable=False) for t in ["direct", "fanout", "topic", "headers"]}
        qs = [Queue(f"{P}.r1", X["direct"], "a", channel=ch), Queue(f"{P}.r2", X["direct"], "b", channel=ch)]
        for q in qs: q.declare()
        for q, x, k, args in [(qs[0], "fanout", "", None), (qs[1], "fanout", "", None), (qs[0], "topic", "x.*", None), (qs[1], "topic", "x.#", None),
                              (qs[0], "headers", "", {"x-match": "all", "a": 1, "b": 2}), (qs[1], "headers", "", {"x-match": "any", "a": 1, "b": 2})]:
            X[x].maybe_bind(ch); X[x].declare(); q.bind_to(X[x], k, arguments=args)
        p = Producer(ch)
        send = lambda x, k, body, **kw: p.publish(body.encode(), exchange=X[x], routing_key=k, content_type="text/plain", content_encoding="utf-8", **kw)
        for k in "abc": send("direct", k, f"direct-{k}")
        send("fanout", "zzz", "fanout")
        for k in ["x.y", "x.y.z", "x"]: send("topic", k, f"topic-{k}")
        send("headers", "", "headers-a", headers={"a": 1}); send("headers", "", "headers-ab", headers={"a": 1, "b": 2})
        time.sleep(0.2)
        def drain(q):
            out = []
            while (m := q.get(no_ack=True)) is not None: out.append(dec(m.body))
            return out
        return expect({"q1": drain(qs[0]), "q2": drain(qs[1])}, q1=ROUTING_Q1, q2=ROUTING_Q2)

def properties():
    with Connection(KURL) as c:
        ch = c.channel(); q = Queue(f"{P}.props", channel=ch); q.declare()
        Producer(ch).publish(b"props-body", routing_key=q.name, headers=HEADERS, **dict(PROPS, expiration=60))  # kombu: seconds
        time.sleep(0.1)
        m = q.get(no_ack=True)
        props = {k: m.properties.get(k) for k in PROPS if k not in ("content_type", "content_encoding")}
        props.update(content_type=m.content_type, content_encoding=m.content_encoding, headers=m.headers)
        return expect({"body": dec(m.body), "props": props, "redelivered": m.delivery_info["redelivered"]},
                      body="props-body", props=dict(PROPS, headers=HEADERS))

def consume_prefetch():
    with Connection(KURL) as c:
        ch = c.channel(); q = Queue(f"{P}.prefetch", channel=ch); q.declare()
        p = Producer(ch)
        for i in range(5): p.publish(f"m{i}".encode(), routing_key=q.name, content_type="text/plain", content_encoding="utf-8")
        got = []
        cch = c.channel()
        with Consumer(cch, [q], callbacks=[lambda body, m: got.append(m)], prefetch_count=2, accept=["text/plain"]):
            end = time.time() + 5
            while len(got) < 2 and time.time() < end:
                try: c.drain_events(timeout=0.2)
                except socket.timeout: pass
            try: c.drain_events(timeout=0.4)
            except socket.timeout: pass
            before = len(got); acked = 0
            while acked < 5 and time.time() < end + 5:
                while acked < len(got): got[acked].ack(); acked += 1
                try: c.drain_events(timeout=0.1)
                except socket.timeout: pass
        return expect({"before_ack": before, "bodies": [dec(m.body) for m in got], "redelivered": [m.delivery_info["redelivered"] for m in got]},
                      before_ack=2, bodies=[f"m{i}" for i in range(5)])

def get():
    with Connection(KURL) as c:
        ch = c.channel(); q = Queue(f"{P}.get", channel=ch); q.declare()
        for i in range(3): Producer(ch).publish(f"g{i}".encode(), routing_key=q.name)
        time.sleep(0.1); seq = []
        for _ in range(3):
            m = q.get(); seq.append([dec(m.body), m.delivery_info["message_count"], m.delivery_info["redelivered"]]); m.ack()
        return expect({"gets": seq, "empty": q.get() is None}, gets=[["g0", 2, False], ["g1", 1, False], ["g2", 0, False]], empty=True)

def nack_requeue():
    with Connection(KURL) as c:
        ch = c.channel(); q = Queue(f"{P}.nack", channel=ch); q.declare()
        for b in (b"n1", b"n2"): Producer(ch).publish(b, routing_key=q.name)
        time.sleep(0.1); seq = []
        m = q.get(); seq.append([dec(m.body), m.delivery_info["redelivered"]]); m.requeue()
        m = q.get(); seq.append([dec(m.body), m.delivery_info["redelivered"]]); m.reject(requeue=False)
        m = q.get(); seq.append([dec(m.body), m.delivery_info["redelivered"]]); m.reject()
        return expect({"seq": seq, "empty": q.get() is None}, seq=[["n1", False], ["n1", True], ["n2", False]], empty=True)

def confirms():
    with Connection(KURL, transport_options={"confirm_publish": True}) as c:
        ch = c.channel(); q = Queue(f"{P}.confirms", channel=ch); q.declare()
        p = Producer(ch)
        for i in range(10): p.publish(f"c{i}".encode(), routing_key=q.name)   # each waits for its ack
        r = ch.queue_declare(q.name, passive=True)
        return expect({"count": r.message_count}, count=10)

def mandatory():
    with Connection(KURL) as c:
        ch = c.channel(); rets = []
        ch.events["basic_return"].add(lambda exc, exchange, routing_key, message:
                                      rets.append({"reply_code": exc.reply_code, "reply_text": exc.reply_text, "exchange": exchange,
                                                   "routing_key": routing_key, "body": dec(message.body)}))
        Producer(ch).publish(b"ret", routing_key=f"{P}.nowhere", mandatory=True)
        end = time.time() + 3
        while not rets and time.time() < end:
            try: c.drain_events(timeout=0.2)
            except socket.timeout: pass
        return expect({"returns": rets}, returns=[{"reply_code": 312, "reply_text": "NO_ROUTE", "exchange": "", "routing_key": f"{P}.nowhere", "body": "ret"}])

def large():
    with Connection(KURL) as c:
        ch = c.channel(); q = Queue(f"{P}.large", channel=ch); q.declare(); body = large_body()
        Producer(ch).publish(body, routing_key=q.name, content_type="application/octet-stream", content_encoding="binary")
        m, end = None, time.time() + 10
        while m is None and time.time() < end:
            m = q.get(no_ack=True)
            if m is None: time.sleep(0.05)
        return expect({"len": len(m.body) if m else -1, "sha256_ok": bool(m) and sha(m.body) == sha(body)}, len=LARGE_LEN, sha256_ok=True)

def closed(e): return {"error": type(e).__name__, "code": getattr(e, "code", None), "text": getattr(e, "reply_text", None)}

def err_404():
    with Connection(KURL) as c:
        ch = c.channel(); obs = {"raised": False}
        try: ch.queue_declare(f"{P}.missing", passive=True)
        except amqp.exceptions.NotFound as e: obs = closed(e)
        return expect(obs, error="NotFound", code=404, text=text_404(f"{P}.missing"))

def err_406():
    with Connection(KURL) as c:
        ch = c.channel(); q = f"{P}.q406"; obs = {"raised": False}
        ch.queue_declare(q)
        try: ch.queue_declare(q, durable=True)
        except amqp.exceptions.PreconditionFailed as e: obs = closed(e)
        c.channel().queue_delete(q)
        return expect(obs, error="PreconditionFailed", code=406, text=text_406(q))

def err_403():
    obs = {"raised": False}
    try:
        with Connection(KURL.replace("guest:guest@", "guest:wrong@"), connect_timeout=5) as c: c.connect()
    except Exception as e: obs = {"error": type(e).__name__, "code": getattr(e, "code", None), "text": getattr(e, "reply_text", str(e))}
    return expect(obs, error="AccessRefused", code=403)

def vhost_user():
    with Connection(APP_URL.replace("amqp://", "pyamqp://")) as c:
        ch = c.channel()
        r = ch.queue_declare(APP_Q); obs = {"declare_ok": list(r)}
        Producer(ch).publish(APP_BODY, routing_key=APP_Q)
        q = Queue(APP_Q, channel=ch); m = None
        for _ in range(100):
            m = q.get(no_ack=True)
            if m is not None: break
            time.sleep(0.05)
        obs["got"] = dec(m.body) if m else None
        ch2 = c.channel()
        try: ch2.queue_declare(DENIED_Q); obs["refused_code"] = None
        except amqp.exceptions.AccessRefused as e:
            r = closed(e); obs["refused_error"], obs["refused_code"], obs["refused_text"] = r["error"], r["code"], r["text"]
        obs["conn_open"] = c.connected
        c.channel().queue_delete(APP_Q)
    try:
        with Connection(APP_ROOT_URL.replace("amqp://", "pyamqp://"), connect_timeout=5) as c: c.connect()
        obs["root_error"] = None
    except Exception as e:
        r = closed(e); obs["root_error"], obs["root_code"], obs["root_text"] = r["error"], r["code"], r["text"]
    check(obs.get("root_code") == 530 and obs.get("root_text") == TEXT_530, "vhost / not refused with 530", obs)
    return check_vhost_user(obs)

def stream_consume(c, s, offset, n, publish=None):
    """A kombu Consumer (prefetch 2, acking each) from offset; publish goes out once it is
    subscribed. Returns [body, x-stream-offset] for what arrives (n expected, then 0.3 s)."""
    args = {} if offset is None else {"x-stream-offset": offset}
    q = Queue(s, durable=True, queue_arguments={"x-queue-type": "stream"}, consumer_arguments=args, no_declare=True)
    got = []
    def cb(body, m):
        got.append([dec(m.body), (m.headers or {}).get("x-stream-offset")]); m.ack()
    cch = c.channel()
    with Consumer(cch, [q], callbacks=[cb], prefetch_count=2, accept=None):
        if publish:
            pch = c.channel(); pch.confirm_select()
            Producer(pch).publish(publish.encode(), routing_key=s); pch.close()
        end = time.time() + 10
        while len(got) < n and time.time() < end:
            try: c.drain_events(timeout=0.1)
            except socket.timeout: pass
        try: c.drain_events(timeout=0.3)
        except socket.timeout: pass
    cch.close()
    return got

def stream():
    s = f"{P}.stream"
    with Connection(KURL) as c:
        ch = c.channel()
        ch.queue_delete(s)
        Queue(s, channel=ch, durable=True, queue_arguments={"x-queue-type": "stream"}).declare()
        ch.confirm_select()
        for i in range(5): Producer(ch).publish(f"s{i}".encode(), routing_key=s)
        obs = {"first": stream_consume(c, s, "first", 5), "from3": stream_consume(c, s, 3, 2),
               "next": stream_consume(c, s, None, 1, publish="s-after")}
        try:   # no basic.qos: refused on the channel
            q = Queue(s, durable=True, queue_arguments={"x-queue-type": "stream"}, no_declare=True)
            with Consumer(c.channel(), [q], callbacks=[lambda b, m: None]):
                c.drain_events(timeout=0.5)
            obs["no_qos_code"] = None
        except socket.timeout:
            obs["no_qos_code"] = None
        except amqp.exceptions.AMQPError as e:
            obs["no_qos_code"], obs["no_qos_text"] = e.code, stream_text_406(e.reply_text)
        obs["conn_open_after_406"] = c.connection.connected
    with Connection(KURL) as c2:
        try:   # basic.get: a connection error
            Queue(s, channel=c2.channel(), no_declare=True).get(); obs["get_code"] = None
        except amqp.exceptions.AMQPError as e:
            obs["get_code"], obs["get_text"] = e.code, e.reply_text
        obs["conn_open_after_get"] = bool(c2.connected)
    with Connection(KURL) as c3:
        c3.channel().queue_delete(s)
    return check_stream(obs)

for name in ["connect", "declare", "routing", "properties", "consume_prefetch", "get", "nack_requeue", "confirms", "mandatory"]:
    run(name, globals()[name], timeout=20)
na("competing", "covered by the Celery worker (prefork pool) scenarios")
na("rpc", "covered by Celery's rpc:// result backend")
for name in ["large", "err_404", "err_406", "err_403", "vhost_user", "stream"]:
    run(name, globals()[name], timeout=20)

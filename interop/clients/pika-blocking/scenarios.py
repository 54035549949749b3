import sys, os, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import *
import pika
from pika.exceptions import ChannelClosedByBroker, UnroutableError, ProbableAuthenticationError, AuthenticationError

def conn(url=URL):
    return pika.BlockingConnection(pika.URLParameters(url))

def props_obs(m, p):
    return {k: getattr(p, k) for k in list(PROPS) + ["headers"]}

def connect():
    c = conn(); ch = c.channel()
    caps = c._impl.server_properties.get("capabilities", {})
    obs = {"open": ch.is_open, "capabilities": sorted(k for k, v in caps.items() if v)}
    c.close(); return obs

def declare():
    c = conn(); ch = c.channel(); q = f"{P}.declare"
    r = ch.queue_declare(q)
    ok1 = [r.method.queue, r.method.message_count, r.method.consumer_count]
    for t in ["direct", "fanout", "topic", "headers"]:
        ch.exchange_declare(f"{P}.x.{t}", t)
        ch.exchange_declare(f"{P}.x.{t}", t, passive=True)
    ch.basic_publish("", q, b"1"); ch.basic_publish("", q, b"2")
    time.sleep(0.2)  # RabbitMQ enqueues asynchronously
    r2 = ch.queue_declare(q, passive=True)
    d = ch.queue_delete(q)
    for t in ["direct", "fanout", "topic", "headers"]:
        ch.exchange_delete(f"{P}.x.{t}")
    c.close()
    return expect({"declare_ok": ok1, "passive_count": r2.method.message_count, "delete_count": d.method.message_count},
                  declare_ok=[q, 0, 0], passive_count=2, delete_count=2)

def drain(ch, q):
    out = []
    while True:
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is None: return out
        out.append(b.decode())

def routing():
    c = conn(); ch = c.channel()
    q1, q2 = f"{P}.r1", f"{P}.r2"
    for q in (q1, q2): ch.queue_declare(q)
    X = lambda t: f"{P}.rx.{t}"
    for t in ["direct", "fanout", "topic", "headers"]: ch.exchange_declare(X(t), t)
    ch.queue_bind(q1, X("direct"), "a"); ch.queue_bind(q2, X("direct"), "b")
    ch.queue_bind(q1, X("fanout"), ""); ch.queue_bind(q2, X("fanout"), "")
    ch.queue_bind(q1, X("topic"), "x.*"); ch.queue_bind(q2, X("topic"), "x.#")
    ch.queue_bind(q1, X("headers"), "", {"x-match": "all", "a": 1, "b": 2})
    ch.queue_bind(q2, X("headers"), "", {"x-match": "any", "a": 1, "b": 2})
    for k in "abc": ch.basic_publish(X("direct"), k, f"direct-{k}".encode())
    ch.basic_publish(X("fanout"), "zzz", b"fanout")
    for k in ["x.y", "x.y.z", "x"]: ch.basic_publish(X("topic"), k, f"topic-{k}".encode())
    ch.basic_publish(X("headers"), "", b"headers-a", pika.BasicProperties(headers={"a": 1}))
    ch.basic_publish(X("headers"), "", b"headers-ab", pika.BasicProperties(headers={"a": 1, "b": 2}))
    time.sleep(0.2)
    obs = {"q1": drain(ch, q1), "q2": drain(ch, q2)}
    c.close()
    return expect(obs, q1=ROUTING_Q1, q2=ROUTING_Q2)

def properties():
    c = conn(); ch = c.channel(); q = f"{P}.props"
    ch.queue_declare(q)
    ch.basic_publish("", q, b"props-body", pika.BasicProperties(headers=HEADERS, **PROPS))
    time.sleep(0.1)
    m, p, b = ch.basic_get(q, auto_ack=True)
    obs = {"body": b.decode(), "exchange": m.exchange, "routing_key": m.routing_key,
           "redelivered": m.redelivered, "message_count": m.message_count, "props": props_obs(m, p)}
    c.close()
    check(obs["props"]["headers"] == HEADERS and obs["body"] == "props-body", "properties differ", obs)
    for k, v in PROPS.items(): check(obs["props"][k] == v, f"property {k}", obs)
    return obs

def consume_prefetch():
    c = conn(); ch = c.channel(); q = f"{P}.prefetch"
    ch.queue_declare(q); ch.basic_qos(prefetch_count=2)
    for i in range(5): ch.basic_publish("", q, f"m{i}".encode())
    got = []
    ch.basic_consume(q, lambda ch_, m, p, b: got.append((m, b.decode())))
    end = time.time() + 5
    while len(got) < 2 and time.time() < end: c.process_data_events(0.05)
    c.process_data_events(0.4)
    before = len(got)
    acked = 0
    while acked < 5 and time.time() < end + 5:
        while acked < len(got):
            ch.basic_ack(got[acked][0].delivery_tag); acked += 1
        c.process_data_events(0.05)
    obs = {"before_ack": before, "bodies": [b for _, b in got], "redelivered": [m.redelivered for m, _ in got]}
    c.close()
    return expect(obs, before_ack=2, bodies=[f"m{i}" for i in range(5)])

def get():
    c = conn(); ch = c.channel(); q = f"{P}.get"
    ch.queue_declare(q)
    for i in range(3): ch.basic_publish("", q, f"g{i}".encode())
    time.sleep(0.1)
    seq = []
    for _ in range(3):
        m, p, b = ch.basic_get(q)
        seq.append([b.decode(), m.message_count, m.redelivered]); ch.basic_ack(m.delivery_tag)
    m, _, _ = ch.basic_get(q)
    obs = {"gets": seq, "empty": m is None}
    c.close()
    return expect(obs, gets=[["g0", 2, False], ["g1", 1, False], ["g2", 0, False]], empty=True)

def nack_requeue():
    c = conn(); ch = c.channel(); q = f"{P}.nack"
    ch.queue_declare(q)
    ch.basic_publish("", q, b"n1"); ch.basic_publish("", q, b"n2"); time.sleep(0.1)
    seq = []
    m, _, b = ch.basic_get(q); seq.append([b.decode(), m.redelivered]); ch.basic_nack(m.delivery_tag, requeue=True)
    m, _, b = ch.basic_get(q); seq.append([b.decode(), m.redelivered]); ch.basic_reject(m.delivery_tag, requeue=False)
    m, _, b = ch.basic_get(q); seq.append([b.decode(), m.redelivered]); ch.basic_nack(m.delivery_tag, requeue=False)
    m, _, _ = ch.basic_get(q)
    obs = {"seq": seq, "empty": m is None}
    c.close()
    return expect(obs, seq=[["n1", False], ["n1", True], ["n2", False]], empty=True)

def confirms():
    c = conn(); ch = c.channel(); q = f"{P}.confirms"
    ch.queue_declare(q); ch.confirm_delivery()
    acked = 0
    for i in range(10):
        ch.basic_publish("", q, f"c{i}".encode()); acked += 1   # raises if nacked
    r = ch.queue_declare(q, passive=True)
    obs = {"acked": acked, "count": r.method.message_count}
    c.close()
    return expect(obs, acked=10, count=10)

def mandatory():
    c = conn(); ch = c.channel()
    rets = []
    ch.add_on_return_callback(lambda ch_, m, p, b: rets.append({"reply_code": m.reply_code, "reply_text": m.reply_text,
                                                                 "exchange": m.exchange, "routing_key": m.routing_key, "body": b.decode()}))
    ch.basic_publish("", f"{P}.nowhere", b"ret", mandatory=True)
    end = time.time() + 3
    while not rets and time.time() < end: c.process_data_events(0.05)
    # with confirms on, pika raises UnroutableError for the returned message
    ch.confirm_delivery()
    unroutable = False
    try:
        ch.basic_publish("", f"{P}.nowhere", b"ret2", mandatory=True)
    except UnroutableError:
        unroutable = True
    obs = {"returns": rets, "confirm_unroutable": unroutable}
    c.close()
    return expect(obs, returns=[{"reply_code": 312, "reply_text": "NO_ROUTE", "exchange": "", "routing_key": f"{P}.nowhere", "body": "ret"}],
                  confirm_unroutable=True)

def competing():
    c = conn(); q = f"{P}.work"
    chs = [c.channel(), c.channel()]
    chs[0].queue_declare(q)
    counts, seen = [0, 0], []
    def mk(i, ch):
        def cb(ch_, m, p, b):
            counts[i] += 1; seen.append(b.decode()); ch_.basic_ack(m.delivery_tag)
        return cb
    for i, ch in enumerate(chs):
        ch.basic_qos(prefetch_count=1); ch.basic_consume(q, mk(i, ch))
    pub = c.channel()
    for i in range(20): pub.basic_publish("", q, f"w{i}".encode())
    end = time.time() + 10
    while len(seen) < 20 and time.time() < end: c.process_data_events(0.05)
    c.close()
    obs = {"total": len(seen), "distinct": len(set(seen)), "both_busy": min(counts) >= 5}
    return expect(obs, total=20, distinct=20, both_busy=True)

def rpc():
    c = conn(); srv = c.channel(); cli = c.channel(); q = f"{P}.rpc"
    srv.queue_declare(q)
    def serve(ch_, m, p, b):
        ch_.basic_publish("", p.reply_to, b"reply:" + b, pika.BasicProperties(correlation_id=p.correlation_id))
        ch_.basic_ack(m.delivery_tag)
    srv.basic_consume(q, serve)
    r = cli.queue_declare("", exclusive=True); rq = r.method.queue
    replies = []
    cli.basic_consume(rq, lambda ch_, m, p, b: replies.append((p.correlation_id, b.decode())), auto_ack=True)
    cli.basic_publish("", q, b"ping", pika.BasicProperties(reply_to=rq, correlation_id="c-1"))
    end = time.time() + 5
    while not replies and time.time() < end: c.process_data_events(0.05)
    c.close()
    obs = {"reply_queue": rq, "replies": replies}
    return expect(obs, reply_queue=rq if rq.startswith("amq.gen-") else "amq.gen-?", replies=[("c-1", "reply:ping")])

def large():
    c = conn(); ch = c.channel(); q = f"{P}.large"
    ch.queue_declare(q); body = large_body()
    ch.basic_publish("", q, body)
    end = time.time() + 10
    while True:
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is not None or time.time() > end: break
        time.sleep(0.05)
    c.close()
    obs = {"len": len(b), "sha256_ok": sha(b) == sha(body)}
    return expect(obs, len=LARGE_LEN, sha256_ok=True)

def err_404():
    c = conn(); ch = c.channel()
    try:
        ch.queue_declare(f"{P}.missing", passive=True)
        obs = {"raised": False}
    except ChannelClosedByBroker as e:
        obs = {"code": e.reply_code, "text": e.reply_text, "conn_open": c.is_open}
    if c.is_open: c.close()
    return expect(obs, code=404, text=text_404(f"{P}.missing"), conn_open=True)

def err_406():
    c = conn(); ch = c.channel(); q = f"{P}.q406"
    ch.queue_declare(q, durable=False)
    try:
        ch.queue_declare(q, durable=True); obs = {"raised": False}
    except ChannelClosedByBroker as e:
        obs = {"code": e.reply_code, "text": e.reply_text}
    ch2 = c.channel(); ch2.queue_delete(q); c.close()
    return expect(obs, code=406, text=text_406(q))

def err_403():
    try:
        conn(BAD_URL).close(); obs = {"raised": False}
    except (ProbableAuthenticationError, AuthenticationError) as e:
        obs = {"error": type(e).__name__, "args": [str(a) for a in e.args]}
    except Exception as e:
        obs = {"error": type(e).__name__, "args": [str(a) for a in e.args]}
    check(obs.get("error") in ("ProbableAuthenticationError", "AuthenticationError"), "no auth error", obs)
    return obs

def vhost_user():
    c = conn(APP_URL); ch = c.channel()
    r = ch.queue_declare(APP_Q)
    obs = {"declare_ok": [r.method.queue, r.method.message_count, r.method.consumer_count]}
    ch.basic_publish("", APP_Q, APP_BODY.encode())
    end = time.time() + 5
    while True:
        m, p, b = ch.basic_get(APP_Q, auto_ack=True)
        if m is not None or time.time() > end: break
        time.sleep(0.05)
    obs["got"] = b.decode() if m else None
    ch2 = c.channel()
    try:
        ch2.queue_declare(DENIED_Q); obs["refused_code"] = None
    except ChannelClosedByBroker as e:
        obs["refused_code"], obs["refused_text"] = e.reply_code, e.reply_text
    obs["conn_open"] = c.is_open
    c.channel().queue_delete(APP_Q); c.close()
    try:
        conn(APP_ROOT_URL).close(); obs["root_error"] = None
    except Exception as e:
        obs.update(root_refusal(e))
    check(obs.get("root_code") == 530 and obs.get("root_text") == TEXT_530, "vhost / not refused with 530", obs)
    return check_vhost_user(obs)

def stream_consume(c, s, offset, n, publish=None):
    """A consumer (prefetch 2, acking each) from offset; publish goes out once it is subscribed.
    Returns [body, x-stream-offset] for what arrives (n expected, then 0.3 s for extras)."""
    ch = c.channel(); ch.basic_qos(prefetch_count=2)
    got = []
    def cb(ch_, m, p, b):
        got.append([b.decode(), (p.headers or {}).get("x-stream-offset")]); ch_.basic_ack(m.delivery_tag)
    ch.basic_consume(s, cb, arguments={} if offset is None else {"x-stream-offset": offset})
    if publish:
        pub = c.channel(); pub.confirm_delivery(); pub.basic_publish("", s, publish.encode()); pub.close()
    end = time.time() + 10
    while len(got) < n and time.time() < end: c.process_data_events(0.05)
    c.process_data_events(0.3)
    ch.close()
    return got

def stream():
    c = conn(); ch = c.channel(); s = f"{P}.stream"
    ch.queue_delete(s)
    ch.queue_declare(s, durable=True, arguments={"x-queue-type": "stream"})
    ch.confirm_delivery()
    for i in range(5): ch.basic_publish("", s, f"s{i}".encode())   # raises if nacked
    obs = {"first": stream_consume(c, s, "first", 5), "from3": stream_consume(c, s, 3, 2),
           "next": stream_consume(c, s, None, 1, publish="s-after")}
    try:   # no basic.qos: refused on the channel
        c.channel().basic_consume(s, lambda *a: None); obs["no_qos_code"] = None
    except ChannelClosedByBroker as e:
        obs["no_qos_code"], obs["no_qos_text"] = e.reply_code, stream_text_406(e.reply_text)
    obs["conn_open_after_406"] = c.is_open
    c.close()
    c2 = conn()
    try:   # basic.get: a connection error
        c2.channel().basic_get(s); obs["get_code"] = None
    except pika.exceptions.ConnectionClosedByBroker as e:
        obs["get_code"], obs["get_text"] = e.reply_code, e.reply_text
    except Exception as e:
        obs["get_code"], obs["get_error"] = None, type(e).__name__
    obs["conn_open_after_get"] = c2.is_open
    if c2.is_open: c2.close()
    c3 = conn(); c3.channel().queue_delete(s); c3.close()
    return check_stream(obs)

for name in ["connect", "declare", "routing", "properties", "consume_prefetch", "get", "nack_requeue",
             "confirms", "mandatory", "competing", "rpc", "large", "err_404", "err_406", "err_403", "vhost_user", "stream"]:
    run(name, globals()[name], timeout=20)

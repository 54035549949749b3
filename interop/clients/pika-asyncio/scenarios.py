"""pika's asyncio adapter (AsyncioConnection), callbacks turned into awaitables."""
import sys, os, asyncio, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import *
import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.exceptions import ChannelClosedByBroker

class Ch:
    def __init__(self, ch):
        self.ch, self.pending, self.closed = ch, set(), None
        ch.add_on_close_callback(self._closed)
    def _closed(self, ch, reason):
        self.closed = reason
        for f in list(self.pending):
            if not f.done(): f.set_exception(reason)
    def call(self, name, *a, **kw):
        fut = asyncio.get_running_loop().create_future(); self.pending.add(fut)
        def cb(*r):
            if not fut.done(): fut.set_result(r[0] if len(r) == 1 else r)
        getattr(self.ch, name)(*a, callback=cb, **kw)
        return fut
    async def get(self, q, auto_ack=False):
        fut = asyncio.get_running_loop().create_future(); self.pending.add(fut)
        def ok(ch, m, p, b):
            if not fut.done(): fut.set_result((m, p, b))
        def empty(frame):
            if not fut.done() and isinstance(frame.method, pika.spec.Basic.GetEmpty): fut.set_result((None, None, None))
        self.ch.add_callback(empty, [pika.spec.Basic.GetEmpty], one_shot=True)
        self.ch.basic_get(q, ok, auto_ack=auto_ack)
        return await fut

async def conn(url=URL):
    loop = asyncio.get_running_loop(); fut = loop.create_future()
    def opened(c): fut.set_result(c)
    def failed(c, e): fut.done() or fut.set_exception(e if isinstance(e, BaseException) else Exception(str(e)))
    def closed(c, e): fut.done() or fut.set_exception(e)
    AsyncioConnection(pika.URLParameters(url), on_open_callback=opened, on_open_error_callback=failed,
                      on_close_callback=closed, custom_ioloop=loop)
    return await fut

async def channel(c):
    fut = asyncio.get_running_loop().create_future()
    c.channel(on_open_callback=lambda ch: fut.set_result(ch))
    return Ch(await fut)

async def close(c):
    if c.is_closed: return
    fut = asyncio.get_running_loop().create_future()
    c.add_on_close_callback(lambda *_: fut.done() or fut.set_result(None))
    c.close(); await fut

async def wait_for(pred, t=5):
    end = time.time() + t
    while not pred() and time.time() < end: await asyncio.sleep(0.01)

async def connect():
    c = await conn(); ch = await channel(c)
    caps = c.server_properties.get("capabilities", {})
    obs = {"open": ch.ch.is_open, "capabilities": sorted(k for k, v in caps.items() if v)}
    await close(c); return obs

async def declare():
    c = await conn(); ch = await channel(c); q = f"{P}.declare"
    r = await ch.call("queue_declare", q)
    for t in ["direct", "fanout", "topic", "headers"]:
        await ch.call("exchange_declare", f"{P}.x.{t}", t); await ch.call("exchange_declare", f"{P}.x.{t}", t, passive=True)
    ch.ch.basic_publish("", q, b"1"); ch.ch.basic_publish("", q, b"2"); await asyncio.sleep(0.2)
    r2 = await ch.call("queue_declare", q, passive=True); d = await ch.call("queue_delete", q)
    for t in ["direct", "fanout", "topic", "headers"]: await ch.call("exchange_delete", f"{P}.x.{t}")
    await close(c)
    return expect({"declare_ok": [r.method.queue, r.method.message_count, r.method.consumer_count],
                   "passive_count": r2.method.message_count, "delete_count": d.method.message_count},
                  declare_ok=[q, 0, 0], passive_count=2, delete_count=2)

async def drain(ch, q):
    out = []
    while True:
        m, p, b = await ch.get(q, auto_ack=True)
        if m is None: return out
        out.append(b.decode())

async def routing():
    c = await conn(); ch = await channel(c); q1, q2 = f"{P}.r1", f"{P}.r2"; X = lambda t: f"{P}.rx.{t}"
    for q in (q1, q2): await ch.call("queue_declare", q)
    for t in ["direct", "fanout", "topic", "headers"]: await ch.call("exchange_declare", X(t), t)
    for q, x, k, args in [(q1, "direct", "a", None), (q2, "direct", "b", None), (q1, "fanout", "", None), (q2, "fanout", "", None),
                          (q1, "topic", "x.*", None), (q2, "topic", "x.#", None),
                          (q1, "headers", "", {"x-match": "all", "a": 1, "b": 2}), (q2, "headers", "", {"x-match": "any", "a": 1, "b": 2})]:
        await ch.call("queue_bind", q, X(x), k, arguments=args)
    for k in "abc": ch.ch.basic_publish(X("direct"), k, f"direct-{k}".encode())
    ch.ch.basic_publish(X("fanout"), "zzz", b"fanout")
    for k in ["x.y", "x.y.z", "x"]: ch.ch.basic_publish(X("topic"), k, f"topic-{k}".encode())
    ch.ch.basic_publish(X("headers"), "", b"headers-a", pika.BasicProperties(headers={"a": 1}))
    ch.ch.basic_publish(X("headers"), "", b"headers-ab", pika.BasicProperties(headers={"a": 1, "b": 2}))
    await asyncio.sleep(0.2)
    obs = {"q1": await drain(ch, q1), "q2": await drain(ch, q2)}; await close(c)
    return expect(obs, q1=ROUTING_Q1, q2=ROUTING_Q2)

async def properties():
    c = await conn(); ch = await channel(c); q = f"{P}.props"
    await ch.call("queue_declare", q)
    ch.ch.basic_publish("", q, b"props-body", pika.BasicProperties(headers=HEADERS, **PROPS)); await asyncio.sleep(0.1)
    m, p, b = await ch.get(q, auto_ack=True); await close(c)
    obs = {"body": b.decode(), "exchange": m.exchange, "routing_key": m.routing_key, "redelivered": m.redelivered,
           "message_count": m.message_count, "props": {k: getattr(p, k) for k in list(PROPS) + ["headers"]}}
    return expect(obs, body="props-body", props=dict(PROPS, headers=HEADERS))

async def consume_prefetch():
    c = await conn(); ch = await channel(c); q = f"{P}.prefetch"
    await ch.call("queue_declare", q); await ch.call("basic_qos", prefetch_count=2)
    for i in range(5): ch.ch.basic_publish("", q, f"m{i}".encode())
    got = []
    ch.ch.basic_consume(q, lambda ch_, m, p, b: got.append((m, b.decode())))
    await wait_for(lambda: len(got) >= 2); await asyncio.sleep(0.4); before = len(got)
    acked = 0; end = time.time() + 5
    while acked < 5 and time.time() < end:
        while acked < len(got): ch.ch.basic_ack(got[acked][0].delivery_tag); acked += 1
        await asyncio.sleep(0.02)
    await close(c)
    return expect({"before_ack": before, "bodies": [b for _, b in got], "redelivered": [m.redelivered for m, _ in got]},
                  before_ack=2, bodies=[f"m{i}" for i in range(5)])

async def get():
    c = await conn(); ch = await channel(c); q = f"{P}.get"
    await ch.call("queue_declare", q)
    for i in range(3): ch.ch.basic_publish("", q, f"g{i}".encode())
    await asyncio.sleep(0.1); seq = []
    for _ in range(3):
        m, p, b = await ch.get(q); seq.append([b.decode(), m.message_count, m.redelivered]); ch.ch.basic_ack(m.delivery_tag)
    m, _, _ = await ch.get(q); await close(c)
    return expect({"gets": seq, "empty": m is None}, gets=[["g0", 2, False], ["g1", 1, False], ["g2", 0, False]], empty=True)

async def nack_requeue():
    c = await conn(); ch = await channel(c); q = f"{P}.nack"
    await ch.call("queue_declare", q); ch.ch.basic_publish("", q, b"n1"); ch.ch.basic_publish("", q, b"n2"); await asyncio.sleep(0.1)
    seq = []
    m, _, b = await ch.get(q); seq.append([b.decode(), m.redelivered]); ch.ch.basic_nack(m.delivery_tag, requeue=True)
    m, _, b = await ch.get(q); seq.append([b.decode(), m.redelivered]); ch.ch.basic_reject(m.delivery_tag, requeue=False)
    m, _, b = await ch.get(q); seq.append([b.decode(), m.redelivered]); ch.ch.basic_nack(m.delivery_tag, requeue=False)
    m, _, _ = await ch.get(q); await close(c)
    return expect({"seq": seq, "empty": m is None}, seq=[["n1", False], ["n1", True], ["n2", False]], empty=True)

async def confirms():
    c = await conn(); ch = await channel(c); q = f"{P}.confirms"
    await ch.call("queue_declare", q)
    acks, nacks = set(), [0]
    def on_confirm(frame):
        m = frame.method
        if isinstance(m, pika.spec.Basic.Ack):
            acks.update(range(1, m.delivery_tag + 1) if m.multiple else [m.delivery_tag])
        else: nacks[0] += 1
    fut = asyncio.get_running_loop().create_future()
    ch.ch.confirm_delivery(on_confirm, callback=lambda f: fut.set_result(f)); await fut
    for i in range(10): ch.ch.basic_publish("", q, f"c{i}".encode())
    await wait_for(lambda: len(acks) >= 10)
    r = await ch.call("queue_declare", q, passive=True); await close(c)
    return expect({"acked": len(acks), "nacked": nacks[0], "count": r.method.message_count}, acked=10, nacked=0, count=10)

async def mandatory():
    c = await conn(); ch = await channel(c); rets = []
    ch.ch.add_on_return_callback(lambda ch_, m, p, b: rets.append({"reply_code": m.reply_code, "reply_text": m.reply_text,
                                  "exchange": m.exchange, "routing_key": m.routing_key, "body": b.decode()}))
    ch.ch.basic_publish("", f"{P}.nowhere", b"ret", mandatory=True)
    await wait_for(lambda: rets, 3); await close(c)
    return expect({"returns": rets}, returns=[{"reply_code": 312, "reply_text": "NO_ROUTE", "exchange": "", "routing_key": f"{P}.nowhere", "body": "ret"}])

async def competing():
    c = await conn(); q = f"{P}.work"; chs = [await channel(c), await channel(c)]
    await chs[0].call("queue_declare", q); counts, seen = [0, 0], []
    for i, ch in enumerate(chs):
        await ch.call("basic_qos", prefetch_count=1)
        def cb(ch_, m, p, b, i=i):
            counts[i] += 1; seen.append(b.decode())
            asyncio.get_running_loop().call_later(0.005, ch_.basic_ack, m.delivery_tag)
        ch.ch.basic_consume(q, cb)
    pub = await channel(c)
    for i in range(20): pub.ch.basic_publish("", q, f"w{i}".encode())
    await wait_for(lambda: len(seen) >= 20, 10); await asyncio.sleep(0.05); await close(c)
    return expect({"total": len(seen), "distinct": len(set(seen)), "both_busy": min(counts) >= 5}, total=20, distinct=20, both_busy=True)

async def rpc():
    c = await conn(); srv = await channel(c); cli = await channel(c); q = f"{P}.rpc"
    await srv.call("queue_declare", q)
    def serve(ch_, m, p, b):
        ch_.basic_publish("", p.reply_to, b"reply:" + b, pika.BasicProperties(correlation_id=p.correlation_id)); ch_.basic_ack(m.delivery_tag)
    srv.ch.basic_consume(q, serve)
    r = await cli.call("queue_declare", "", exclusive=True); rq = r.method.queue; replies = []
    cli.ch.basic_consume(rq, lambda ch_, m, p, b: replies.append([p.correlation_id, b.decode()]), auto_ack=True)
    cli.ch.basic_publish("", q, b"ping", pika.BasicProperties(reply_to=rq, correlation_id="c-1"))
    await wait_for(lambda: replies); await close(c)
    return expect({"reply_queue": rq, "replies": replies}, reply_queue=rq if rq.startswith("amq.gen-") else "amq.gen-?", replies=[["c-1", "reply:ping"]])

async def large():
    c = await conn(); ch = await channel(c); q = f"{P}.large"; body = large_body()
    await ch.call("queue_declare", q); ch.ch.basic_publish("", q, body)
    end = time.time() + 10
    while True:
        m, p, b = await ch.get(q, auto_ack=True)
        if m is not None or time.time() > end: break
        await asyncio.sleep(0.05)
    await close(c)
    return expect({"len": len(b or b""), "sha256_ok": sha(b or b"") == sha(body)}, len=LARGE_LEN, sha256_ok=True)

async def err_404():
    c = await conn(); ch = await channel(c); obs = {"raised": False}
    try: await ch.call("queue_declare", f"{P}.missing", passive=True)
    except ChannelClosedByBroker as e: obs = {"code": e.reply_code, "text": e.reply_text}
    obs["conn_open"] = c.is_open; await close(c)
    return expect(obs, code=404, text=text_404(f"{P}.missing"), conn_open=True)

async def err_406():
    c = await conn(); ch = await channel(c); q = f"{P}.q406"; obs = {"raised": False}
    await ch.call("queue_declare", q)
    try: await ch.call("queue_declare", q, durable=True)
    except ChannelClosedByBroker as e: obs = {"code": e.reply_code, "text": e.reply_text}
    ch2 = await channel(c); await ch2.call("queue_delete", q); await close(c)
    return expect(obs, code=406, text=text_406(q))

async def err_403():
    obs = {"raised": False}
    try: await close(await conn(BAD_URL))
    except Exception as e: obs = {"error": type(e).__name__, "args": [str(a) for a in e.args]}
    check(obs.get("error") in ("ProbableAuthenticationError", "AuthenticationError"), "no auth error", obs)
    return obs

async def vhost_user():
    c = await conn(APP_URL); ch = await channel(c)
    r = await ch.call("queue_declare", APP_Q)
    obs = {"declare_ok": [r.method.queue, r.method.message_count, r.method.consumer_count]}
    ch.ch.basic_publish("", APP_Q, APP_BODY.encode())
    for _ in range(100):
        m, p, b = await ch.get(APP_Q, auto_ack=True)
        if m is not None: break
        await asyncio.sleep(0.05)
    obs["got"] = b.decode() if m else None
    ch2 = await channel(c)
    try: await ch2.call("queue_declare", DENIED_Q); obs["refused_code"] = None
    except ChannelClosedByBroker as e: obs["refused_code"], obs["refused_text"] = e.reply_code, e.reply_text
    obs["conn_open"] = c.is_open
    await (await channel(c)).call("queue_delete", APP_Q); await close(c)
    try: await close(await conn(APP_ROOT_URL)); obs["root_error"] = None
    except Exception as e: obs.update(root_refusal(e))
    check(obs.get("root_code") == 530 and obs.get("root_text") == TEXT_530, "vhost / not refused with 530", obs)
    return check_vhost_user(obs)

async def main():
    for name in ["connect", "declare", "routing", "properties", "consume_prefetch", "get", "nack_requeue",
                 "confirms", "mandatory", "competing", "rpc", "large", "err_404", "err_406", "err_403", "vhost_user"]:
        await arun(name, globals()[name], timeout=20)

asyncio.run(main())

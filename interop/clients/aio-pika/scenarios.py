import sys, os, re, asyncio, time, datetime
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import *
import aio_pika
from aio_pika import Message, ExchangeType, DeliveryMode
from aio_pika.exceptions import QueueEmpty, ChannelClosed, DeliveryError
import aiormq

async def wait_for(pred, t=5):
    end = time.time() + t
    while not pred() and time.time() < end: await asyncio.sleep(0.01)

from aiormq.channel import EXCEPTION_MAPPING
from aiormq.connection import EXCEPTION_MAPPING as CONN_EXCEPTIONS
CODES = {cls: code for code, cls in EXCEPTION_MAPPING.items()}
def close_obs(e):
    """aiormq raises e.g. ChannelNotFoundEntity(reply_text); its reply code is the class's mapping."""
    code = CODES.get(type(e))
    if code is None: return {"error": repr(e)}
    return {"code": code, "error": type(e).__name__, "text": e.args[0] if e.args else None}

async def connect():
    c = await aio_pika.connect(URL); ch = await c.channel()
    caps = c.transport.connection.server_properties.get("capabilities", {})
    obs = {"open": not ch.is_closed, "capabilities": sorted(k for k, v in caps.items() if v)}
    await c.close(); return obs

async def declare():
    c = await aio_pika.connect(URL); ch = await c.channel(); q = f"{P}.declare"
    queue = await ch.declare_queue(q)
    ok1 = [queue.name, queue.declaration_result.message_count, queue.declaration_result.consumer_count]
    for t in ["direct", "fanout", "topic", "headers"]:
        await ch.declare_exchange(f"{P}.x.{t}", t); await ch.get_exchange(f"{P}.x.{t}", ensure=True)
    for b in (b"1", b"2"): await ch.default_exchange.publish(Message(b), q)
    await asyncio.sleep(0.2)
    r2 = await ch.declare_queue(q, passive=True)
    try:
        await queue.delete()            # aio-pika's default is if_empty=True: a 406 on a non-empty queue
        not_empty = {"raised": False}
    except Exception as e:
        not_empty = close_obs(e)
    ch = await c.channel(); queue = await ch.declare_queue(q, passive=True)
    d = await queue.delete(if_empty=False)
    for t in ["direct", "fanout", "topic", "headers"]: await ch.channel.exchange_delete(f"{P}.x.{t}")
    await c.close()
    return expect({"declare_ok": ok1, "passive_count": r2.declaration_result.message_count, "delete_count": d.message_count,
                   "delete_if_empty": not_empty},
                  declare_ok=[q, 0, 0], passive_count=2, delete_count=2,
                  delete_if_empty={"code": 406, "error": "ChannelPreconditionFailed", "text": f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"})

async def drain(queue):
    out = []
    while True:
        m = await queue.get(no_ack=True, fail=False)
        if m is None: return out
        out.append(m.body.decode())

async def routing():
    c = await aio_pika.connect(URL); ch = await c.channel()
    q1 = await ch.declare_queue(f"{P}.r1"); q2 = await ch.declare_queue(f"{P}.r2")
    X = {t: await ch.declare_exchange(f"{P}.rx.{t}", t) for t in ["direct", "fanout", "topic", "headers"]}
    await q1.bind(X["direct"], "a"); await q2.bind(X["direct"], "b")
    await q1.bind(X["fanout"], ""); await q2.bind(X["fanout"], "")
    await q1.bind(X["topic"], "x.*"); await q2.bind(X["topic"], "x.#")
    await q1.bind(X["headers"], "", arguments={"x-match": "all", "a": 1, "b": 2})
    await q2.bind(X["headers"], "", arguments={"x-match": "any", "a": 1, "b": 2})
    for k in "abc": await X["direct"].publish(Message(f"direct-{k}".encode()), k)
    await X["fanout"].publish(Message(b"fanout"), "zzz")
    for k in ["x.y", "x.y.z", "x"]: await X["topic"].publish(Message(f"topic-{k}".encode()), k)
    await X["headers"].publish(Message(b"headers-a", headers={"a": 1}), "")
    await X["headers"].publish(Message(b"headers-ab", headers={"a": 1, "b": 2}), "")
    await asyncio.sleep(0.2)
    obs = {"q1": await drain(q1), "q2": await drain(q2)}; await c.close()
    return expect(obs, q1=ROUTING_Q1, q2=ROUTING_Q2)

async def properties():
    c = await aio_pika.connect(URL); ch = await c.channel(); q = await ch.declare_queue(f"{P}.props")
    p = dict(PROPS); ts = p.pop("timestamp")
    await ch.default_exchange.publish(Message(b"props-body", headers=HEADERS, timestamp=datetime.datetime.fromtimestamp(ts, datetime.timezone.utc),
                                              expiration=None, **{k: v for k, v in p.items() if k != "expiration"}), q.name)
    await asyncio.sleep(0.1)
    m = await q.get(no_ack=True); await c.close()
    got = {k: getattr(m, k) for k in p if k != "expiration"}
    got["timestamp"] = int(m.timestamp.timestamp()) if m.timestamp else None
    got["delivery_mode"] = int(got["delivery_mode"])
    got["headers"] = m.headers
    obs = {"body": m.body.decode(), "exchange": m.exchange, "routing_key": m.routing_key, "redelivered": m.redelivered, "props": got}
    want = {k: v for k, v in PROPS.items() if k != "expiration"}; want["headers"] = HEADERS
    return expect(obs, body="props-body", props=want)

async def consume_prefetch():
    c = await aio_pika.connect(URL); ch = await c.channel(); await ch.set_qos(prefetch_count=2)
    q = await ch.declare_queue(f"{P}.prefetch")
    for i in range(5): await ch.default_exchange.publish(Message(f"m{i}".encode()), q.name)
    got = []
    async def cb(m): got.append(m)
    await q.consume(cb)
    await wait_for(lambda: len(got) >= 2); await asyncio.sleep(0.4); before = len(got)
    acked = 0; end = time.time() + 5
    while acked < 5 and time.time() < end:
        while acked < len(got): await got[acked].ack(); acked += 1
        await asyncio.sleep(0.02)
    obs = {"before_ack": before, "bodies": [m.body.decode() for m in got], "redelivered": [m.redelivered for m in got]}
    await c.close()
    return expect(obs, before_ack=2, bodies=[f"m{i}" for i in range(5)])

async def get():
    c = await aio_pika.connect(URL); ch = await c.channel(); q = await ch.declare_queue(f"{P}.get")
    for i in range(3): await ch.default_exchange.publish(Message(f"g{i}".encode()), q.name)
    await asyncio.sleep(0.1); seq = []
    for _ in range(3):
        m = await q.get(); seq.append([m.body.decode(), m.message_count, m.redelivered]); await m.ack()
    e = await q.get(fail=False); await c.close()
    return expect({"gets": seq, "empty": e is None}, gets=[["g0", 2, False], ["g1", 1, False], ["g2", 0, False]], empty=True)

async def nack_requeue():
    c = await aio_pika.connect(URL); ch = await c.channel(); q = await ch.declare_queue(f"{P}.nack")
    for b in (b"n1", b"n2"): await ch.default_exchange.publish(Message(b), q.name)
    await asyncio.sleep(0.1); seq = []
    m = await q.get(); seq.append([m.body.decode(), m.redelivered]); await m.nack(requeue=True)
    m = await q.get(); seq.append([m.body.decode(), m.redelivered]); await m.reject(requeue=False)
    m = await q.get(); seq.append([m.body.decode(), m.redelivered]); await m.nack(requeue=False)
    e = await q.get(fail=False); await c.close()
    return expect({"seq": seq, "empty": e is None}, seq=[["n1", False], ["n1", True], ["n2", False]], empty=True)

async def confirms():
    c = await aio_pika.connect(URL); ch = await c.channel(publisher_confirms=True); q = await ch.declare_queue(f"{P}.confirms")
    res = await asyncio.gather(*[ch.default_exchange.publish(Message(f"c{i}".encode()), q.name) for i in range(10)])
    acked = sum(1 for r in res if isinstance(r, aiormq.spec.Basic.Ack))
    r = await ch.declare_queue(q.name, passive=True); await c.close()
    return expect({"acked": acked, "count": r.declaration_result.message_count}, acked=10, count=10)

async def mandatory():
    c = await aio_pika.connect(URL); ch = await c.channel(publisher_confirms=True, on_return_raises=True)
    obs = {"raised": False}
    try:
        await ch.default_exchange.publish(Message(b"ret"), f"{P}.nowhere", mandatory=True)
    except DeliveryError as e:
        m = e.message
        obs = {"error": "DeliveryError", "body": m.body.decode() if m else None}
        fr = getattr(e, "frame", None)
        if fr is not None and hasattr(fr, "reply_code"): obs.update(reply_code=fr.reply_code, reply_text=fr.reply_text)
    await c.close()
    return expect(obs, error="DeliveryError", body="ret")

async def competing():
    c = await aio_pika.connect(URL); q_name = f"{P}.work"; counts, seen = [0, 0], []
    for i in range(2):
        ch = await c.channel(); await ch.set_qos(prefetch_count=1); q = await ch.declare_queue(q_name)
        async def cb(m, i=i):
            counts[i] += 1; seen.append(m.body.decode()); await asyncio.sleep(0.005); await m.ack()
        await q.consume(cb)
    pub = await c.channel()
    for i in range(20): await pub.default_exchange.publish(Message(f"w{i}".encode()), q_name)
    await wait_for(lambda: len(seen) >= 20, 10); await asyncio.sleep(0.05); await c.close()
    return expect({"total": len(seen), "distinct": len(set(seen)), "both_busy": min(counts) >= 5}, total=20, distinct=20, both_busy=True)

async def rpc():
    c = await aio_pika.connect(URL); srv = await c.channel(); cli = await c.channel()
    sq = await srv.declare_queue(f"{P}.rpc")
    async def serve(m):
        async with m.process():
            await srv.default_exchange.publish(Message(b"reply:" + m.body, correlation_id=m.correlation_id), m.reply_to)
    await sq.consume(serve)
    rq = await cli.declare_queue("", exclusive=True); replies = []
    async def on_reply(m): replies.append([m.correlation_id, m.body.decode()])
    await rq.consume(on_reply, no_ack=True)
    await cli.default_exchange.publish(Message(b"ping", reply_to=rq.name, correlation_id="c-1"), sq.name)
    await wait_for(lambda: replies); await c.close()
    return expect({"reply_queue": rq.name, "replies": replies}, reply_queue=rq.name if rq.name.startswith("amq.gen-") else "amq.gen-?", replies=[["c-1", "reply:ping"]])

async def large():
    c = await aio_pika.connect(URL); ch = await c.channel(); q = await ch.declare_queue(f"{P}.large"); body = large_body()
    await ch.default_exchange.publish(Message(body), q.name)
    m, end = None, time.time() + 10
    while m is None and time.time() < end:
        m = await q.get(no_ack=True, fail=False)
        if m is None: await asyncio.sleep(0.05)
    await c.close()
    return expect({"len": len(m.body) if m else -1, "sha256_ok": bool(m) and sha(m.body) == sha(body)}, len=LARGE_LEN, sha256_ok=True)

async def err_404():
    c = await aio_pika.connect(URL); ch = await c.channel(); obs = {"raised": False}
    try: await ch.declare_queue(f"{P}.missing", passive=True)
    except Exception as e: obs = close_obs(e)
    obs["conn_open"] = not c.is_closed; await c.close()
    return expect(obs, code=404, text=text_404(f"{P}.missing"), conn_open=True)

async def err_406():
    c = await aio_pika.connect(URL); ch = await c.channel(); q = f"{P}.q406"; obs = {"raised": False}
    await ch.declare_queue(q)
    try: await ch.declare_queue(q, durable=True)
    except Exception as e: obs = close_obs(e)
    ch2 = await c.channel(); await ch2.queue_delete(q); await c.close()
    return expect(obs, code=406, text=text_406(q))

async def err_403():
    obs = {"raised": False}
    try: await (await aio_pika.connect(BAD_URL)).close()
    except Exception as e: obs = {"error": type(e).__name__, "args": [str(a) for a in e.args]}
    check(obs.get("error") == "ProbableAuthenticationError", "no auth error", obs)
    return obs

async def vhost_user():
    c = await aio_pika.connect(APP_URL); ch = await c.channel()
    queue = await ch.declare_queue(APP_Q)
    obs = {"declare_ok": [queue.name, queue.declaration_result.message_count, queue.declaration_result.consumer_count]}
    await ch.default_exchange.publish(Message(APP_BODY.encode()), APP_Q)
    m = None
    for _ in range(100):
        m = await queue.get(no_ack=True, fail=False)
        if m is not None: break
        await asyncio.sleep(0.05)
    obs["got"] = m.body.decode() if m else None
    ch2 = await c.channel()
    try: await ch2.declare_queue(DENIED_Q); obs["refused_code"] = None
    except Exception as e:
        r = close_obs(e); obs["refused_code"], obs["refused_text"], obs["refused_error"] = r.get("code"), r.get("text"), r.get("error")
    obs["conn_open"] = not c.is_closed
    await (await c.channel()).queue_delete(APP_Q); await c.close()
    try: await (await aio_pika.connect(APP_ROOT_URL)).close(); obs["root_error"] = None
    except Exception as e:
        # aiormq does not expose the 530: connection.open got a connection.close instead of open-ok.
        obs["root_error"] = type(e).__name__
        obs["root_args"] = [re.sub(r" at 0x[0-9a-f]+", "", str(a)) for a in e.args]
    check(obs.get("root_error") == "InvalidFrameError" and "Connection.Close" in str(obs.get("root_args")),
          "vhost / not refused with connection.close", obs)
    return check_vhost_user(obs)

async def stream_consume(c, s, offset, n, publish=None):
    """A consumer (prefetch 2, acking each) from offset; publish goes out once it is subscribed."""
    ch = await c.channel(); await ch.set_qos(prefetch_count=2)
    q = await ch.get_queue(s, ensure=False); got = []
    async def cb(m):
        got.append([m.body.decode(), (m.headers or {}).get("x-stream-offset")]); await m.ack()
    await q.consume(cb, arguments={} if offset is None else {"x-stream-offset": offset})
    if publish:
        pub = await c.channel(publisher_confirms=True); await pub.default_exchange.publish(Message(publish.encode()), s); await pub.close()
    await wait_for(lambda: len(got) >= n, 10); await asyncio.sleep(0.3)
    await ch.close()
    return got

async def stream():
    c = await aio_pika.connect(URL); ch = await c.channel(); s = f"{P}.stream"
    await ch.queue_delete(s)
    await ch.declare_queue(s, durable=True, arguments={"x-queue-type": "stream"})
    for i in range(5): await ch.default_exchange.publish(Message(f"s{i}".encode()), s)   # confirmed
    obs = {"first": await stream_consume(c, s, "first", 5), "from3": await stream_consume(c, s, 3, 2),
           "next": await stream_consume(c, s, None, 1, publish="s-after")}
    ch2 = await c.channel()
    try:
        q = await ch2.get_queue(s, ensure=False); await q.consume(lambda m: None); obs["no_qos_code"] = None
    except Exception as e:
        r = close_obs(e); obs["no_qos_code"], obs["no_qos_text"] = r.get("code"), stream_text_406(r.get("text") or "")
    obs["conn_open_after_406"] = not c.is_closed
    await c.close()
    c2 = await aio_pika.connect(URL); ch3 = await c2.channel()
    try:
        q = await ch3.get_queue(s, ensure=False); await q.get(fail=False); obs["get_code"] = None
    except Exception as e:
        # aiormq raises the connection.close as the exception class of its code (its own mapping).
        code = {cls: k for k, cls in CONN_EXCEPTIONS.items()}.get(type(e))
        obs["get_code"], obs["get_text"] = code, (e.args[0] if e.args else None)
        if code is None: obs["get_error"] = repr(e)
    await asyncio.sleep(0.1)
    obs["conn_open_after_get"] = not c2.transport.connection.is_closed
    if obs["conn_open_after_get"]: await c2.close()
    c3 = await aio_pika.connect(URL); await (await c3.channel()).queue_delete(s); await c3.close()
    return check_stream(obs)

async def main():
    for name in ["connect", "declare", "routing", "properties", "consume_prefetch", "get", "nack_requeue",
                 "confirms", "mandatory", "competing", "rpc", "large", "err_404", "err_406", "err_403", "vhost_user", "stream"]:
        await arun(name, globals()[name], timeout=20)

asyncio.run(main())

"""Streams through pika: one function per behaviour of issue 12 (offsets, the offset header,
credit, independent consumers, errors, restart, kill -9, retention, filters, server-side
tracking). interop/streams/run runs them against Warren or the reference RabbitMQ.

Each test gets a Broker (see run): .url, .name ("warren" or "rabbitmq"), .version (the server's
"version" property), and for Warren .restart() and .kill9() (stop with SIGTERM or SIGKILL, start
again on the same data dir and port). Markers say where a test applies:
  @warren_only(why)     Warren's extensions (LavinMQ's rules) or broker control
  @since("3.13", why)   RabbitMQ 3.13+ behaviour (filters): skipped on an older reference
  @exact_text_since("4.0")  the error texts are 4.x's: an older reference is checked for codes
                        only, and its texts are reported as differences
"""
import os, threading, time, uuid

import pika
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

# Set by run: the broker under test, and the list differences are reported into.
BROKER = None
DIFFERENCES = []


def warren_only(why):
    def mark(f):
        f.warren_only = why
        return f
    return mark


def since(version, why):
    def mark(f):
        f.since = (version, why)
        return f
    return mark


def version_at_least(v, want):
    def parts(x):
        return [int(p) for p in x.split("+")[0].split("-")[0].split(".")[:3] if p.isdigit()]
    return parts(v) >= parts(want)


def exact_texts():
    """Whether error texts are compared exactly: Warren's follow RabbitMQ 4.x."""
    return BROKER.name == "warren" or version_at_least(BROKER.version, "4.0")


def check_text(test, got, want):
    if exact_texts():
        assert got == want, f"{test}: {got!r} != {want!r}"
    elif got != want:
        DIFFERENCES.append(f"{test}: {BROKER.name} {BROKER.version} says {got!r}, 4.x/Warren {want!r}")


# --- helpers ------------------------------------------------------------------------------------

def conn():
    return pika.BlockingConnection(pika.URLParameters(BROKER.url))


def name(what):
    return f"it.streams.{what}.{uuid.uuid4().hex[:8]}"


def declare(ch, s, **args):
    return ch.queue_declare(s, durable=True, arguments={"x-queue-type": "stream", **args})


def publish(c, s, bodies, headers=None, **props):
    """Publishes each body with confirms (pika raises on a nack)."""
    ch = c.channel()
    ch.confirm_delivery()
    for b in bodies:
        h = headers(b) if callable(headers) else headers
        ch.basic_publish("", s, b.encode(), pika.BasicProperties(headers=h, **props))
    ch.close()


def consume(c, s, n, offset=None, prefetch=10, args=None, ack=True, settle=0.3, tag=""):
    """A consumer from `offset` (omitted: the default) acking each of the first n deliveries;
    waits for them, then `settle` seconds for unexpected extras. Returns the deliveries as
    (body, x-stream-offset, properties, redelivered) and the channel (cancelled)."""
    ch = c.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = []

    def cb(ch_, m, p, b):
        got.append((b.decode(), (p.headers or {}).get("x-stream-offset"), p, m.redelivered))
        if ack and len(got) <= n:   # beyond n: recorded, not acked (a tracking consumer's place)
            ch_.basic_ack(m.delivery_tag)
    a = dict(args or {})
    if offset is not None:
        a["x-stream-offset"] = offset
    ch.basic_consume(s, cb, arguments=a, consumer_tag=tag or None)
    end = time.time() + 15
    while len(got) < n and time.time() < end:
        c.process_data_events(0.05)
    if settle:
        c.process_data_events(settle)
    ch.close()
    return got


def bodies_of(got):
    return [g[0] for g in got]


def offsets_of(got):
    return [g[1] for g in got]


def delete(s):
    c = conn()
    c.channel().queue_delete(s)
    c.close()


def error_of(action):
    """Runs action(connection); returns (code, text, connection still open) of the error."""
    c = conn()
    try:
        action(c)
    except (ChannelClosedByBroker, ConnectionClosedByBroker) as e:
        return e.reply_code, e.reply_text, c.is_open
    finally:
        if c.is_open:
            c.close()
    raise AssertionError("no error")


# --- offsets ------------------------------------------------------------------------------------

def test_offsets_first_next_integer_last():
    s = name("offsets")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, [f"m{i}" for i in range(5)])
    got = consume(c, s, 5, "first")
    assert bodies_of(got) == [f"m{i}" for i in range(5)], got
    first = got[0][1]
    # Offsets are consecutive from the first.
    assert offsets_of(got) == list(range(first, first + 5)), offsets_of(got)
    if BROKER.name == "warren":
        assert first == 0
    assert bodies_of(consume(c, s, 2, first + 3)) == ["m3", "m4"]
    # "last" is the start of the last chunk: each message here was confirmed alone, so it is
    # the last message.
    assert bodies_of(consume(c, s, 1, "last")) == ["m4"]
    # The default and "next": only what comes after the subscription.
    for spec in (None, "next"):
        ch = c.channel()
        ch.basic_qos(prefetch_count=10)
        got = []
        ch.basic_consume(s, lambda ch_, m, p, b: (got.append(b.decode()), ch_.basic_ack(m.delivery_tag)),
                         arguments={} if spec is None else {"x-stream-offset": spec})
        c.process_data_events(0.3)
        assert got == [], f"{spec}: read old messages {got}"
        publish(c, s, [f"after-{spec}"])
        end = time.time() + 10
        while not got and time.time() < end:
            c.process_data_events(0.05)
        assert got == [f"after-{spec}"], got
        ch.close()
    # An offset past the end waits for new messages.
    c.close()
    delete(s)


def test_offsets_by_timestamp_and_interval():
    s = name("time")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, ["old0", "old1"])
    time.sleep(4)
    cut = int(time.time()) - 1
    publish(c, s, ["new0", "new1"])
    # A timestamp (seconds): the first chunk from that time on.
    got = consume_ts(c, s, 2, cut)
    assert bodies_of(got) == ["new0", "new1"], got
    # An interval back from now.
    assert bodies_of(consume(c, s, 2, "2s")) == ["new0", "new1"]
    assert bodies_of(consume(c, s, 4, "1h")) == ["old0", "old1", "new0", "new1"]
    c.close()
    delete(s)


def consume_ts(c, s, n, seconds):
    """consume() with x-stream-offset as an AMQP timestamp (pika encodes datetime as 'T')."""
    import datetime
    return consume(c, s, n, datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None))


@warren_only("a negative offset counts back from the end (LavinMQ's rule)")
def test_negative_offset_counts_back_from_the_end():
    s = name("negative")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, [f"m{i}" for i in range(6)])
    got = consume(c, s, 2, -2)
    assert [(b, o) for b, o, _, _ in got] == [("m4", 4), ("m5", 5)], got
    c.close()
    delete(s)


# --- deliveries ---------------------------------------------------------------------------------

def test_every_delivery_carries_its_offset_and_keeps_its_properties():
    s = name("headers")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, ["a", "b", "c"], headers=lambda b: {"k": b, "n": 7}, content_type="text/plain",
            message_id="mid", delivery_mode=2)
    got = consume(c, s, 3, "first")
    assert len(got) == 3, got
    start = got[0][1]
    for i, (body, off, p, redelivered) in enumerate(got):
        assert isinstance(off, int) and off == start + i, (body, off)
        assert p.headers["k"] == body and p.headers["n"] == 7, p.headers
        assert (p.content_type, p.message_id, p.delivery_mode) == ("text/plain", "mid", 2), p
        assert not redelivered
    c.close()
    delete(s)


def test_every_consumer_reads_every_message_and_a_slow_one_holds_back_nobody():
    s = name("fanout")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, [f"m{i}" for i in range(20)])
    # A consumer that never acks holds its prefetch (2) and nothing else.
    slow = consume(c, s, 2, "first", prefetch=2, ack=False, settle=0.3)
    assert bodies_of(slow) == ["m0", "m1"], slow
    c2 = conn()
    ch = c2.channel()
    ch.basic_qos(prefetch_count=2)
    held = []
    ch.basic_consume(s, lambda ch_, m, p, b: held.append(b.decode()), arguments={"x-stream-offset": "first"})
    c2.process_data_events(0.3)
    assert held == ["m0", "m1"], held
    fast = consume(c, s, 20, "first", prefetch=3)
    assert bodies_of(fast) == [f"m{i}" for i in range(20)], fast
    c2.close()
    c.close()
    delete(s)


def test_acks_only_return_credit():
    s = name("credit")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, [f"m{i}" for i in range(6)])
    ch = c.channel()
    ch.basic_qos(prefetch_count=2)
    got = []
    ch.basic_consume(s, lambda ch_, m, p, b: got.append((b.decode(), m.delivery_tag, m.redelivered)),
                     arguments={"x-stream-offset": "first"})
    c.process_data_events(0.3)
    assert [g[0] for g in got] == ["m0", "m1"], got
    ch.basic_ack(got[0][1])
    end = time.time() + 10
    while len(got) < 3 and time.time() < end:
        c.process_data_events(0.05)
    assert [g[0] for g in got] == ["m0", "m1", "m2"] and not got[2][2], got
    c.close()
    # Nothing was removed: another consumer reads all six.
    c = conn()
    assert bodies_of(consume(c, s, 6, "first")) == [f"m{i}" for i in range(6)]
    c.close()
    delete(s)


@since("4.0", "RabbitMQ 3.10 closes the connection on a nack of a stream delivery")
def test_nack_and_reject_return_credit_without_requeue():
    s = name("nack")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, [f"m{i}" for i in range(4)])
    ch = c.channel()
    ch.basic_qos(prefetch_count=1)
    got = []
    ch.basic_consume(s, lambda ch_, m, p, b: got.append((b.decode(), m.delivery_tag, m.redelivered)),
                     arguments={"x-stream-offset": "first"})
    for i, settle in enumerate([lambda t: ch.basic_nack(t, requeue=True),
                                lambda t: ch.basic_reject(t, requeue=True),
                                lambda t: ch.basic_ack(t)]):
        end = time.time() + 10
        while len(got) <= i and time.time() < end:
            c.process_data_events(0.05)
        settle(got[i][1])
    c.process_data_events(0.3)
    assert [(g[0], g[2]) for g in got] == [("m0", False), ("m1", False), ("m2", False), ("m3", False)], got
    c.close()
    delete(s)


# --- errors -------------------------------------------------------------------------------------

def test_declare_errors_are_rabbitmqs():
    s = name("declare")
    what = f"queue '{s}' in vhost '/'"
    for prop, kw in [("non-durable", dict(durable=False)), ("exclusive-owner", dict(durable=True, exclusive=True)),
                     ("auto-delete", dict(durable=True, auto_delete=True))]:
        code, text, _ = error_of(lambda c: c.channel().queue_declare(s, arguments={"x-queue-type": "stream"}, **kw))
        assert code == 406, (prop, code, text)
        check_text(f"declare {prop}", text, f"PRECONDITION_FAILED - invalid property '{prop}' for {what}")
    for arg, value in [("x-max-length", 5), ("x-message-ttl", 1000), ("x-dead-letter-exchange", "dlx"),
                       ("x-max-priority", 5), ("x-overflow", "reject-publish"), ("x-expires", 1000),
                       ("x-single-active-consumer", True)]:
        code, text, _ = error_of(lambda c: declare(c.channel(), s, **{arg: value}))
        assert code == 406, (arg, code, text)
        check_text(f"declare {arg}", text,
                   f"PRECONDITION_FAILED - invalid arg '{arg}' for {what} of queue type rabbit_stream_queue")
    code, text, _ = error_of(lambda c: declare(c.channel(), s, **{"x-max-age": "10x"}))
    assert code == 406, (code, text)
    check_text("declare x-max-age 10x", text, f"PRECONDITION_FAILED - invalid arg 'x-max-age' for {what}: invalid_max_age")
    code, text, _ = error_of(lambda c: declare(c.channel(), s, **{"x-stream-max-segment-size-bytes": 3_000_000_001}))
    assert code == 406, (code, text)
    check_text("declare segment size", text, "PRECONDITION_FAILED - Exceeded max value for x-stream-max-segment-size-bytes")
    # Accepted: the cluster arguments (nothing to do on one node) and unknown x- keys.
    c = conn()
    ch = c.channel()
    declare(ch, s, **{"x-initial-cluster-size": 1, "x-queue-leader-locator": "balanced", "x-custom": "yes",
                      "x-max-age": "7D", "x-max-length-bytes": 10_000_000,
                      "x-stream-max-segment-size-bytes": 1_000_000})
    # A redeclare with the same arguments is fine; the queue is a stream.
    declare(ch, s, **{"x-initial-cluster-size": 1, "x-queue-leader-locator": "balanced", "x-custom": "yes",
                      "x-max-age": "7D", "x-max-length-bytes": 10_000_000,
                      "x-stream-max-segment-size-bytes": 1_000_000})
    ch.queue_delete(s)
    c.close()


@since("3.13", "x-stream-filter-size-bytes came with filtering")
def test_filter_size_is_checked():
    s = name("filtersize")
    code, text, _ = error_of(lambda c: declare(c.channel(), s, **{"x-stream-filter-size-bytes": 8}))
    assert code == 406, (code, text)
    check_text("declare filter size 8", text, "PRECONDITION_FAILED - Invalid value for x-stream-filter-size-bytes")
    c = conn()
    declare(c.channel(), s, **{"x-stream-filter-size-bytes": 32})
    c.close()
    delete(s)


def test_consume_errors_are_rabbitmqs():
    s = name("consume")
    what = f"queue '{s}' in vhost '/'"
    c = conn()
    declare(c.channel(), s)
    c.close()

    def consume_with(prefetch=10, no_ack=False, global_qos=False, args=None):
        def action(c):
            ch = c.channel()
            if prefetch:
                ch.basic_qos(prefetch_count=prefetch)
            if global_qos:   # beside a consumer prefetch (without one, the 406 above comes first)
                ch.basic_qos(prefetch_count=prefetch, global_qos=True)
            ch.basic_consume(s, lambda *a: None, auto_ack=no_ack, arguments=args or {})
            c.process_data_events(0.2)
        return action
    code, text, open_after = error_of(consume_with(prefetch=0))
    assert (code, open_after) == (406, True), (code, text, open_after)
    check_text("consume without prefetch", text,
               f"PRECONDITION_FAILED - consumer prefetch count is not set for stream {what}")
    code, text, open_after = error_of(consume_with(no_ack=True))
    assert (code, open_after) == (540, False), (code, text)
    check_text("no-ack consume", text, f"NOT_IMPLEMENTED - automatic acknowledgement not supported by stream {what}")
    code, text, open_after = error_of(consume_with(global_qos=True))
    assert (code, open_after) == (540, False), (code, text)
    check_text("global qos consume", text, f"NOT_IMPLEMENTED - {what} does not support global qos")
    code, text, _ = error_of(consume_with(args={"x-stream-offset": "soon"}))
    if exact_texts():
        assert code == 406, (code, text)
    check_text("bad offset", text, f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {what}: "
                                   "{invalid_stream_offset_arg,{longstr,<<\"soon\">>}}")
    code, text, open_after = error_of(lambda c: c.channel().basic_get(s))
    assert (code, open_after) == (540, False), (code, text)
    check_text("basic.get", text, f"NOT_IMPLEMENTED - basic.get not supported by stream queues {what}")
    code, text, open_after = error_of(lambda c: c.channel().queue_purge(s))
    assert (code, open_after) == (540, False), (code, text)
    check_text("queue.purge", text, f"NOT_IMPLEMENTED - queue.purge not supported by stream queues {what}")
    delete(s)


# --- durability ---------------------------------------------------------------------------------

@warren_only("stops and restarts the broker")
def test_the_log_survives_a_restart():
    s = name("restart")
    c = conn()
    declare(c.channel(), s, **{"x-max-age": "1D"})
    publish(c, s, [f"m{i}" for i in range(5)], headers={"h": 1})
    c.close()
    BROKER.restart()
    c = conn()
    ch = c.channel()
    assert ch.queue_declare(s, passive=True).method.message_count == 5
    # The arguments survive too: a redeclare with them is accepted, another refused (406).
    declare(ch, s, **{"x-max-age": "1D"})
    publish(c, s, ["m5", "m6"])
    got = consume(c, s, 7, "first")
    assert [(b, o) for b, o, _, _ in got] == [(f"m{i}", i) for i in range(7)], got
    assert got[0][2].headers["h"] == 1
    c.close()
    delete(s)


@warren_only("kills the broker")
def test_kill_9_loses_no_confirmed_message():
    s = name("kill9")
    c = conn()
    declare(c.channel(), s)
    c.close()
    confirmed = []
    stop = threading.Event()

    def publisher():
        try:
            pc = conn()
            ch = pc.channel()
            ch.confirm_delivery()
            i = 0
            while not stop.is_set():
                ch.basic_publish("", s, f"m{i}".encode())   # returns once confirmed
                confirmed.append(i)
                i += 1
        except Exception:
            pass   # the broker died under it
    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    end = time.time() + 30
    while len(confirmed) < 300 and time.time() < end:
        time.sleep(0.01)
    BROKER.kill9()
    stop.set()
    t.join(10)
    n = len(confirmed)
    assert n >= 300, n
    c = conn()
    count = c.channel().queue_declare(s, passive=True).method.message_count
    # Every confirmed message is there; at most the one in flight besides.
    assert n <= count <= n + 1, (n, count)
    got = consume(c, s, count, "first", prefetch=500, settle=0)
    assert [(b, o) for b, o, _, _ in got][:n] == [(f"m{i}", i) for i in range(n)], got[:3]
    # Appends go on after the last.
    publish(c, s, ["after"])
    assert [(b, o) for b, o, _, _ in consume(c, s, 1, count)] == [("after", count)]
    c.close()
    delete(s)


# --- retention ----------------------------------------------------------------------------------

def test_retention_by_size_drops_whole_old_segments():
    s = name("retention")
    c = conn()
    declare(c.channel(), s, **{"x-stream-max-segment-size-bytes": 1200, "x-max-length-bytes": 3000})
    publish(c, s, [f"{i:0100}" for i in range(100)])
    count = c.channel().queue_declare(s, passive=True).method.message_count
    got = consume(c, s, 1, "first", settle=0)
    first = int(got[0][0])
    assert first > 0, "retention removed nothing"
    if BROKER.name == "warren":
        # The newest segments stay (over the limit by at most one segment of ~10 messages).
        assert 60 <= first < 90, first
        assert count == 100 - first, (count, first)
    # What is left is the newest messages, in order.
    got = consume(c, s, 100 - first, "first", prefetch=100)
    assert bodies_of(got) == [f"{i:0100}" for i in range(first, 100)]
    c.close()
    delete(s)


@since("4.0", "RabbitMQ 3.10.8 may empty an idle age-limited stream, then fail consumes on it (541)")
def test_retention_by_age_waits_for_a_segment_to_roll_over():
    s = name("age")
    c = conn()
    declare(c.channel(), s, **{"x-stream-max-segment-size-bytes": 1200, "x-max-age": "2s"})
    publish(c, s, [f"{i:0100}" for i in range(30)])
    time.sleep(2.5)
    # Past the age, but retention waits for a roll-over (RabbitMQ 4's rule: osiris evaluates
    # it when a segment rolls over or the retention changes).
    assert consume(c, s, 1, "first", settle=0)[0][0] == f"{0:0100}"
    publish(c, s, [f"{i:0100}" for i in range(30, 45)])
    first = 0
    for _ in range(100):   # RabbitMQ evaluates retention in the background
        cc = conn()
        first = int(consume(cc, s, 1, "first", settle=0)[0][0])
        cc.close()
        if first > 0:
            break
        time.sleep(0.1)
    assert first > 0, "age retention removed nothing"
    if BROKER.name == "warren":
        assert 16 <= first <= 30, first
    c.close()
    delete(s)


# --- filters ------------------------------------------------------------------------------------

@since("3.13", "stream filtering")
def test_filters_pass_the_values_asked_for():
    s = name("filter")
    c = conn()
    declare(c.channel(), s)
    values = ["red", "blue", None, "red", "green"]
    publish(c, s, [f"m{i}" for i in range(5)],
            headers=lambda b: {"x-stream-filter-value": values[int(b[1:])]} if values[int(b[1:])] else None)

    def filtered(flt, unfiltered=None, expect=2):
        args = {"x-stream-filter": flt}
        if unfiltered is not None:
            args["x-stream-match-unfiltered"] = unfiltered
        got = consume(c, s, expect, "first", args=args, settle=0.5)
        # RabbitMQ's filter is a Bloom filter per chunk: clients filter again, as here.
        want = set([flt] if isinstance(flt, str) else flt)
        return [b for b, _, p, _ in got
                if (p.headers or {}).get("x-stream-filter-value") in want
                or (unfiltered and "x-stream-filter-value" not in (p.headers or {}))]
    assert filtered("red") == ["m0", "m3"]
    assert filtered("blue", True) == ["m1", "m2"]
    assert filtered(["red", "green"], expect=3) == ["m0", "m3", "m4"]
    if BROKER.name == "warren":
        # Warren filters exactly: nothing else is delivered.
        got = consume(c, s, 2, "first", args={"x-stream-filter": "red"})
        assert bodies_of(got) == ["m0", "m3"], got
    c.close()
    delete(s)


# --- server-side offset tracking ----------------------------------------------------------------

@warren_only("server-side offset tracking over AMQP (LavinMQ's x-stream-automatic-offset-tracking)")
def test_a_tracking_consumer_resumes_after_its_last_ack_also_after_a_restart():
    s = name("tracking")
    c = conn()
    declare(c.channel(), s)
    publish(c, s, [f"m{i}" for i in range(6)])
    track = {"x-stream-automatic-offset-tracking": True}
    first = lambda n, *a, **k: bodies_of(consume(c, s, n, *a, **k))[:n]   # noqa: E731
    assert first(3, "first", args=track, tag="reader", settle=0) == ["m0", "m1", "m2"]
    # The same tag resumes after its last ack, whatever offset it asks for.
    assert first(1, "first", args=track, tag="reader", settle=0) == ["m3"]
    # Another tag, or the same tag without tracking, starts where it asks.
    assert first(1, 5, args=track, tag="other", settle=0) == ["m5"]
    assert first(1, "first", tag="reader", settle=0) == ["m0"]
    # A null offset asks for tracking too.
    assert first(1, None, args={"x-stream-offset": None}, tag="reader", settle=0) == ["m4"]
    c.close()
    BROKER.restart()
    c = conn()
    assert first(1, "first", args=track, tag="reader", settle=0) == ["m5"]
    c.close()
    delete(s)


TESTS = [f for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]

//! Pipelined methods on a raw socket: clients match synchronous replies by order, so
//! every reply on a channel leaves in the order of its request (whether or not it
//! waits for a store commit), a basic.get-ok carries its content right behind it, and
//! connection.close-ok comes after every reply the connection still owed.

mod common;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, exchange, queue, tx};
use amq_protocol::types::FieldTable;
use common::raw::{Got, Raw, method_frame, queue_declare, raw_frame};
use common::{TestBroker, external, unique};
use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;

const FRAME_MAX: u32 = 131_072;

/// What the broker sent back, sorted out by kind.
#[derive(Default, Debug)]
struct Received {
    /// Synchronous replies (and server-sent channel.close) per channel, in arrival
    /// order; a basic.get-ok is followed by its body, as "basic.get-ok N body".
    replies: BTreeMap<u16, Vec<String>>,
    /// basic.ack / basic.nack per channel, in arrival order.
    confirms: BTreeMap<u16, Vec<(bool, u64, bool)>>,
    /// Bodies of basic.deliver per channel.
    deliveries: BTreeMap<u16, Vec<String>>,
    /// Methods on channel 0.
    connection: Vec<String>,
    /// Every method as "channel name", in arrival order (a delivery as
    /// "channel basic.deliver body").
    log: Vec<String>,
    /// The broker closed the socket.
    eof: bool,
}

impl Received {
    fn replies(&self, ch: u16) -> &[String] {
        self.replies.get(&ch).map_or(&[], |v| v.as_slice())
    }

    /// The highest publish sequence number acknowledged (or nacked) on `ch`.
    fn confirmed(&self, ch: u16) -> u64 {
        self.confirms
            .get(&ch)
            .and_then(|c| c.iter().map(|&(_, tag, _)| tag).max())
            .unwrap_or(0)
    }
}

/// "Class(MethodName(..." as "class.method-name", e.g. "basic.qos-ok".
fn method_name(m: &AMQPClass) -> String {
    let debug = format!("{m:?}");
    let mut parts = debug.split('(');
    let class = parts.next().unwrap_or_default().to_lowercase();
    let method = parts.next().unwrap_or_default();
    let mut name = String::new();
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    format!("{class}.{name}")
}

/// A reply as the tests compare it: its name, and the counts it carries.
fn describe(m: &AMQPClass) -> String {
    match m {
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(d)) => {
            format!("queue.declare-ok {}", d.message_count)
        }
        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(p)) => {
            format!("queue.purge-ok {}", p.message_count)
        }
        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(d)) => {
            format!("queue.delete-ok {}", d.message_count)
        }
        AMQPClass::Basic(basic::AMQPMethod::GetOk(g)) => {
            format!("basic.get-ok {}", g.message_count)
        }
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(c)) => {
            format!("basic.consume-ok {}", c.consumer_tag)
        }
        AMQPClass::Basic(basic::AMQPMethod::CancelOk(c)) => {
            format!("basic.cancel-ok {}", c.consumer_tag)
        }
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
            format!("channel.close {} {}", c.reply_code, c.reply_text)
        }
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
            format!("connection.close {} {}", c.reply_code, c.reply_text)
        }
        other => method_name(other),
    }
}

/// The content that must follow a get-ok, deliver or return on `ch` at once: a header,
/// then body frames up to its size. Returns the body as text.
async fn read_content(raw: &mut Raw, ch: u16, after: &str) -> String {
    let size = match raw.next().await {
        Got::Frame(AMQPFrame::Header(c, h)) if c == ch => h.body_size,
        other => panic!("{after} on channel {ch} must be followed by its header, got {other:?}"),
    };
    let mut body = Vec::new();
    while (body.len() as u64) < size {
        match raw.next().await {
            Got::Frame(AMQPFrame::Body(c, b)) if c == ch => body.extend(b),
            other => panic!("{after} on channel {ch}: expected its body, got {other:?}"),
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads frames into `got` until `done` holds (checked after each method), the socket
/// closes, or nothing comes for [`common::raw::RAW_WAIT`] (a panic naming what came).
async fn read_until(raw: &mut Raw, got: &mut Received, done: impl Fn(&Received) -> bool) {
    while !done(got) {
        let Some(frame) = raw.next_within(common::raw::RAW_WAIT).await else {
            panic!("nothing more came; so far: {got:#?}");
        };
        match frame {
            Got::Eof => {
                got.eof = true;
                return;
            }
            Got::Frame(AMQPFrame::Heartbeat) => {}
            Got::Frame(AMQPFrame::Method(0, m)) => {
                got.log.push(format!("0 {}", describe(&m)));
                got.connection.push(describe(&m));
            }
            Got::Frame(AMQPFrame::Method(ch, m)) => match m {
                AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => {
                    got.confirms
                        .entry(ch)
                        .or_default()
                        .push((true, a.delivery_tag, a.multiple));
                }
                AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                    got.confirms
                        .entry(ch)
                        .or_default()
                        .push((false, n.delivery_tag, n.multiple));
                }
                AMQPClass::Basic(basic::AMQPMethod::Deliver(_)) => {
                    let body = read_content(raw, ch, "basic.deliver").await;
                    got.log.push(format!("{ch} basic.deliver {body}"));
                    got.deliveries.entry(ch).or_default().push(body);
                }
                AMQPClass::Basic(basic::AMQPMethod::Return(_)) => {
                    read_content(raw, ch, "basic.return").await;
                }
                AMQPClass::Basic(basic::AMQPMethod::GetOk(_)) => {
                    let name = describe(&m);
                    let body = read_content(raw, ch, &name).await;
                    got.log.push(format!("{ch} {name} {body}"));
                    got.replies
                        .entry(ch)
                        .or_default()
                        .push(format!("{name} {body}"));
                }
                other => {
                    got.log.push(format!("{ch} {}", describe(&other)));
                    got.replies.entry(ch).or_default().push(describe(&other));
                }
            },
            Got::Frame(other) => panic!("unexpected frame {other:?}; so far: {got:#?}"),
        }
    }
}

/// Everything until connection.close-ok (or the socket closing); then the client
/// closes its side and checks that nothing followed close-ok. (Not against another
/// broker: RabbitMQ writes each channel's frames through its own writer process, and
/// a channel's reply can come after connection.close-ok there.)
async fn read_until_close_ok(raw: &mut Raw, got: &mut Received) {
    read_until(raw, got, |g| {
        g.connection
            .last()
            .is_some_and(|m| m == "connection.close-ok")
    })
    .await;
    if got.eof {
        return;
    }
    let _ = raw.stream.shutdown().await;
    let mut after = Received::default();
    read_until(raw, &mut after, |_| false).await;
    assert!(
        after.log.is_empty() || external(),
        "frames after connection.close-ok: {:?}",
        after.log
    );
}

/// Builds a pipelined session: methods with the reply each one must get.
#[derive(Default)]
struct Script {
    bytes: Vec<u8>,
    /// Expected replies per channel, in order.
    expected: BTreeMap<u16, Vec<String>>,
    /// Methods written (publishes and acks count, content frames do not).
    methods: usize,
}

impl Script {
    /// A method and the reply it must get (None: it gets none).
    fn method(&mut self, ch: u16, m: AMQPClass, reply: Option<&str>) {
        self.bytes.extend(method_frame(ch, m));
        self.methods += 1;
        if let Some(r) = reply {
            self.expected.entry(ch).or_default().push(r.to_owned());
        }
    }

    /// basic.publish with its content: persistent (delivery mode 2) or not.
    fn publish(&mut self, ch: u16, exchange: &str, key: &str, body: &str, persistent: bool) {
        self.method(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.into(),
                routing_key: key.into(),
                mandatory: false,
                immediate: false,
            })),
            None,
        );
        let mut header = 60u16.to_be_bytes().to_vec();
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        if persistent {
            // Property flags: delivery-mode only, then its one octet.
            header.extend_from_slice(&0x1000u16.to_be_bytes());
            header.push(2);
        } else {
            header.extend_from_slice(&0u16.to_be_bytes());
        }
        self.bytes.extend(raw_frame(2, ch, &header));
        if !body.is_empty() {
            self.bytes.extend(raw_frame(3, ch, body.as_bytes()));
        }
    }

    fn declare(&mut self, ch: u16, name: &str, durable: bool, exclusive: bool, reply: &str) {
        self.method(ch, queue_declare(name, durable, exclusive), Some(reply));
    }

    fn get(&mut self, ch: u16, queue: &str, no_ack: bool, reply: &str) {
        self.method(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: queue.into(),
                no_ack,
            })),
            Some(reply),
        );
    }

    fn purge(&mut self, ch: u16, queue: &str, reply: &str) {
        self.method(
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
                queue: queue.into(),
                nowait: false,
            })),
            Some(reply),
        );
    }

    fn delete_queue(&mut self, ch: u16, queue: &str, reply: &str) {
        self.method(
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                queue: queue.into(),
                if_unused: false,
                if_empty: false,
                nowait: false,
            })),
            Some(reply),
        );
    }

    fn qos(&mut self, ch: u16, prefetch_count: u16, global: bool) {
        self.method(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count,
                global,
            })),
            Some("basic.qos-ok"),
        );
    }

    fn close_channel(&mut self, ch: u16) {
        self.method(ch, common::raw::channel_close(), Some("channel.close-ok"));
    }

    fn close_connection(&mut self) {
        self.bytes
            .extend(method_frame(0, common::raw::connection_close()));
        self.methods += 1;
    }
}

async fn opened(broker: &TestBroker, channels: &[u16]) -> Raw {
    let mut raw = Raw::open(&broker.uri, 2047, FRAME_MAX, 0).await;
    for &ch in channels {
        raw.open_channel(ch).await;
    }
    raw
}

/// Whether a reply matches what was expected ("... *": any last word).
fn matches(want: &str, have: &str) -> bool {
    match want.strip_suffix('*') {
        Some(prefix) => have.starts_with(prefix) && !have[prefix.len()..].contains(' '),
        None => want == have,
    }
}

/// Each channel got exactly the replies its script expects, in order.
fn assert_replies(got: &Received, script: &Script) {
    check_replies(got, script, &[], false);
}

/// The replies to a session that ends with connection.close. Against Warren, the
/// same as [`assert_replies`]. Against another broker, with two leeways for what
/// RabbitMQ does:
/// - replies starting with one of `floating` may come anywhere: its queue process
///   sends basic.consume-ok and basic.cancel-ok on the channel's behalf, so the reply
///   to a method pipelined after them can overtake them;
/// - a channel's replies may stop short: the methods its channel process had not
///   handled yet when connection.close came are dropped (channel.close-ok, which
///   takes a round trip through its reader, nearly always).
///
/// Warren handles every method before the close and sends every reply, in order.
fn assert_replies_at_close(got: &Received, script: &Script, floating: &[&str]) {
    check_replies(got, script, floating, true);
}

fn check_replies(got: &Received, script: &Script, floating: &[&str], at_close: bool) {
    let lenient = external() && at_close;
    let floats = |r: &String| lenient && floating.iter().any(|f| r.starts_with(f));
    for (ch, expected) in &script.expected {
        let mut replies = got.replies(*ch).to_vec();
        let mut expected = expected.clone();
        let mut float_want: Vec<String> = expected.iter().filter(|r| floats(r)).cloned().collect();
        for r in replies.iter().filter(|r| floats(r)) {
            let at = float_want.iter().position(|w| w == r);
            assert!(at.is_some(), "channel {ch}: unexpected {r}: {replies:#?}");
            float_want.swap_remove(at.unwrap_or_default());
        }
        replies.retain(|r| !floats(r));
        expected.retain(|r| !floats(r));
        for (i, (want, have)) in expected.iter().zip(&replies).enumerate() {
            assert!(
                matches(want, have),
                "channel {ch}, reply {i}: expected {want}, got {have}\n\
                 expected: {expected:#?}\ngot: {replies:#?}"
            );
        }
        if lenient {
            assert!(
                replies.len() <= expected.len(),
                "channel {ch}: expected {expected:#?}\ngot: {replies:#?}"
            );
        } else {
            assert_eq!(
                expected.len(),
                replies.len(),
                "channel {ch}: expected {expected:#?}\ngot: {replies:#?}"
            );
        }
    }
    for ch in got.replies.keys() {
        assert!(
            script.expected.contains_key(ch),
            "replies on channel {ch} that expected none: {:?}",
            got.replies(*ch)
        );
    }
}

/// The sequence of the hardening report: a durable declare, a get, a declare, a
/// publish, a get, a purge and channel.close, written at once. The get-empty and
/// get-ok must not overtake the declare-oks before them.
#[tokio::test]
async fn replies_to_a_pipelined_burst_keep_request_order() {
    let broker = TestBroker::start().await;
    let mut raw = opened(&broker, &[1]).await;
    let q = unique("pipe-burst");
    let mut s = Script::default();
    s.declare(1, &q, true, false, "queue.declare-ok 0");
    s.get(1, &q, true, "basic.get-empty");
    s.declare(1, &q, true, false, "queue.declare-ok 0");
    s.publish(1, "", &q, "hello", true);
    s.get(1, &q, true, "basic.get-ok 0 hello");
    s.purge(1, &q, "queue.purge-ok 0");
    s.close_channel(1);
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until(&mut raw, &mut got, |g| {
        g.replies(1).last().is_some_and(|r| r == "channel.close-ok")
    })
    .await;
    assert_replies(&got, &s);

    // Leave nothing behind on an external broker.
    raw.open_channel(2).await;
    let mut s = Script::default();
    s.delete_queue(2, &q, "queue.delete-ok 0");
    s.close_connection();
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until_close_ok(&mut raw, &mut got).await;
    assert_replies_at_close(&got, &s, &[]);
    assert_eq!(got.connection, ["connection.close-ok"]);
}

/// One round of a channel's part in the long session: durable and transient queues,
/// a durable exchange and binding, publishes, gets (acked or not), qos, a consumer
/// that comes and goes, channel.flow, basic.recover, purge, unbind and deletes.
fn round(s: &mut Script, ch: u16, prefix: &str, r: usize) {
    let d = format!("{prefix}-c{ch}-d{r}");
    let t = format!("{prefix}-c{ch}-t{r}");
    let x = format!("{prefix}-c{ch}-x{r}");
    s.declare(ch, &d, true, false, "queue.declare-ok 0");
    s.declare(ch, &t, false, true, "queue.declare-ok 0");
    s.method(
        ch,
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: x.as_str().into(),
            kind: "direct".into(),
            passive: false,
            durable: true,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
        Some("exchange.declare-ok"),
    );
    s.method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
            queue: d.as_str().into(),
            exchange: x.as_str().into(),
            routing_key: "k".into(),
            nowait: false,
            arguments: FieldTable::default(),
        })),
        Some("queue.bind-ok"),
    );
    s.publish(ch, &x, "k", &format!("{d}-a"), true);
    s.publish(ch, "", &d, &format!("{d}-b"), true);
    s.publish(ch, "", &t, &format!("{t}-a"), false);
    s.get(ch, &d, true, &format!("basic.get-ok 1 {d}-a"));
    s.get(ch, &t, false, &format!("basic.get-ok 0 {t}-a"));
    s.method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 0,
            multiple: true,
        })),
        None,
    );
    s.get(ch, &t, false, "basic.get-empty");
    s.qos(ch, r as u16 + 1, r.is_multiple_of(2));
    let tag = format!("ct-{r}");
    s.method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: t.as_str().into(),
            consumer_tag: tag.as_str().into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
        Some(&format!("basic.consume-ok {tag}")),
    );
    s.method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: tag.as_str().into(),
            nowait: false,
        })),
        Some(&format!("basic.cancel-ok {tag}")),
    );
    s.purge(ch, &d, "queue.purge-ok 1");
    s.publish(ch, "", &d, &format!("{d}-c"), true);
    s.method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: true })),
        Some("channel.flow-ok"),
    );
    s.method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue: true })),
        Some("basic.recover-ok"),
    );
    s.method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::Unbind(queue::Unbind {
            queue: d.as_str().into(),
            exchange: x.as_str().into(),
            routing_key: "k".into(),
            arguments: FieldTable::default(),
        })),
        Some("queue.unbind-ok"),
    );
    s.method(
        ch,
        AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
            exchange: x.as_str().into(),
            if_unused: false,
            nowait: false,
        })),
        Some("exchange.delete-ok"),
    );
    s.get(ch, &d, false, &format!("basic.get-ok 0 {d}-c"));
    // Deleting the queue settles the unacked message; it is gone with it.
    s.delete_queue(ch, &d, "queue.delete-ok 0");
    s.delete_queue(ch, &t, "queue.delete-ok 0");
}

/// The same on a transactional channel: publishes rolled back, commits. (Nothing is
/// pipelined behind a commit of publishes: RabbitMQ refuses any method while such a
/// commit waits for its queues, with 504 "unexpected command while processing
/// 'tx.commit'".)
fn tx_round(s: &mut Script, ch: u16, prefix: &str, r: usize) {
    let d = format!("{prefix}-c{ch}-d{r}");
    s.declare(ch, &d, true, false, "queue.declare-ok 0");
    s.publish(ch, "", &d, &format!("{d}-a"), true);
    s.get(ch, &d, true, "basic.get-empty");
    s.method(
        ch,
        AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {})),
        Some("tx.rollback-ok"),
    );
    s.get(ch, &d, false, "basic.get-empty");
    s.method(
        ch,
        AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {})),
        Some("tx.commit-ok"),
    );
    s.declare(ch, &d, true, false, "queue.declare-ok 0");
    s.qos(ch, 10, false);
    s.delete_queue(ch, &d, "queue.delete-ok 0");
}

/// Hundreds of methods on four channels (one transactional) written at once, each
/// channel closed at the end and then the connection: every reply arrives, in order
/// on its channel, and connection.close-ok comes last.
#[tokio::test]
async fn a_long_pipelined_session_gets_every_reply_in_order() {
    let broker = TestBroker::start().await;
    let channels = [1u16, 2, 3, 4];
    let mut raw = opened(&broker, &channels).await;
    let prefix = unique("pipe-long");
    let mut s = Script::default();
    s.method(
        4,
        AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})),
        Some("tx.select-ok"),
    );
    for r in 0..12 {
        for ch in [1, 2, 3] {
            round(&mut s, ch, &prefix, r);
        }
        tx_round(&mut s, 4, &prefix, r);
    }
    for ch in channels {
        s.close_channel(ch);
    }
    s.close_connection();
    assert!(s.methods > 800, "{} methods", s.methods);
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until_close_ok(&mut raw, &mut got).await;
    assert!(
        !got.eof,
        "the broker closed the socket before close-ok: {got:#?}"
    );
    assert_eq!(got.connection, ["connection.close-ok"]);
    assert_replies_at_close(&got, &s, &["basic.consume-ok", "basic.cancel-ok"]);
    assert!(got.deliveries.is_empty(), "{:?}", got.deliveries);
}

/// connection.close while a channel still owes replies that wait for the store (it
/// was not closed first): they are all sent, and close-ok after them.
#[tokio::test]
async fn connection_close_ok_follows_the_replies_still_owed() {
    let broker = TestBroker::start().await;
    let mut raw = opened(&broker, &[1, 2]).await;
    let prefix = unique("pipe-owed");
    let mut s = Script::default();
    for i in 0..40 {
        let ch = 1 + (i % 2) as u16;
        let q = format!("{prefix}-{i}");
        s.declare(ch, &q, true, false, "queue.declare-ok 0");
        s.publish(ch, "", &q, &q, true);
        s.get(ch, &q, true, &format!("basic.get-ok 0 {q}"));
        s.qos(ch, 1, false);
        s.delete_queue(ch, &q, "queue.delete-ok 0");
    }
    s.close_connection();
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until_close_ok(&mut raw, &mut got).await;
    assert_eq!(got.connection, ["connection.close-ok"]);
    assert_replies_at_close(&got, &s, &[]);
}

/// declare-ok of a queue just published to: RabbitMQ's queue answers the count
/// ahead of the deliveries it has not taken in yet, so only Warren's is exact.
fn declare_ok(count: usize) -> String {
    if external() {
        "queue.declare-ok *".to_owned()
    } else {
        format!("queue.declare-ok {count}")
    }
}

/// With publisher confirms on, persistent publishes to a durable queue mixed with
/// gets, declares, qos and purges: the synchronous replies keep request order, and
/// every publish is confirmed (confirms need not wait for replies, nor replies for
/// confirms). A second channel without confirms works alongside on its own queue.
#[tokio::test]
async fn replies_keep_order_with_publisher_confirms() {
    let broker = TestBroker::start().await;
    let mut raw = opened(&broker, &[1, 2]).await;
    let q1 = unique("pipe-confirm");
    let q2 = unique("pipe-confirm");
    let mut s = Script::default();
    s.method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
        Some("confirm.select-ok"),
    );
    s.declare(1, &q1, true, false, "queue.declare-ok 0");
    s.declare(2, &q2, true, false, "queue.declare-ok 0");
    // What each queue holds, oldest first.
    let mut ready1 = std::collections::VecDeque::new();
    let mut ready2 = std::collections::VecDeque::new();
    let mut published = 0u64;
    for i in 0..60 {
        let body = format!("m{i}");
        s.publish(1, "", &q1, &body, true);
        published += 1;
        ready1.push_back(body.clone());
        s.publish(2, "", &q2, &body, true);
        ready2.push_back(body);
        match i % 5 {
            0 => {
                let first = ready1.pop_front().unwrap_or_default();
                s.get(
                    1,
                    &q1,
                    true,
                    &format!("basic.get-ok {} {first}", ready1.len()),
                );
                s.declare(2, &q2, true, false, &declare_ok(ready2.len()));
            }
            1 => {
                s.declare(1, &q1, true, false, &declare_ok(ready1.len()));
                let first = ready2.pop_front().unwrap_or_default();
                s.get(
                    2,
                    &q2,
                    false,
                    &format!("basic.get-ok {} {first}", ready2.len()),
                );
            }
            2 => {
                s.qos(1, 5, false);
                s.qos(2, 5, true);
            }
            3 => {
                let first = ready1.pop_front().unwrap_or_default();
                s.get(
                    1,
                    &q1,
                    false,
                    &format!("basic.get-ok {} {first}", ready1.len()),
                );
                s.method(
                    1,
                    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                        delivery_tag: 0,
                        multiple: true,
                    })),
                    None,
                );
            }
            _ => {
                s.purge(1, &q1, &format!("queue.purge-ok {}", ready1.len()));
                ready1.clear();
                s.get(1, &q1, true, "basic.get-empty");
            }
        }
    }
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    let (want1, want2) = (s.expected[&1].len(), s.expected[&2].len());
    read_until(&mut raw, &mut got, |g| {
        g.replies(1).len() >= want1 && g.replies(2).len() >= want2 && g.confirmed(1) >= published
    })
    .await;
    assert_replies(&got, &s);
    let confirms = &got.confirms[&1];
    assert!(
        confirms.iter().all(|&(ack, ..)| ack),
        "every publish is acked: {confirms:?}"
    );
    assert!(
        confirms.windows(2).all(|w| w[0].1 < w[1].1),
        "confirms in order: {confirms:?}"
    );
    assert!(!got.confirms.contains_key(&2), "{:?}", got.confirms);

    // Then the queues go, both channels close, and the connection.
    let mut s = Script::default();
    s.delete_queue(1, &q1, &format!("queue.delete-ok {}", ready1.len()));
    s.delete_queue(2, &q2, &format!("queue.delete-ok {}", ready2.len()));
    s.close_channel(1);
    s.close_channel(2);
    s.close_connection();
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until_close_ok(&mut raw, &mut got).await;
    assert_eq!(got.connection, ["connection.close-ok"]);
    assert_replies_at_close(&got, &s, &[]);
}

/// A channel error in a pipelined burst: the replies to the methods before the failing
/// one come first, then channel.close; what follows the failing method is dropped.
#[tokio::test]
async fn a_channel_error_comes_after_the_replies_before_it() {
    let broker = TestBroker::start().await;
    let mut raw = opened(&broker, &[1, 2]).await;
    let q = unique("pipe-error");
    let missing = unique("pipe-missing");
    let mut s = Script::default();
    s.declare(1, &q, true, false, "queue.declare-ok 0");
    s.publish(1, "", &q, "one", true);
    s.get(1, &q, true, "basic.get-ok 0 one");
    s.qos(1, 1, false);
    s.get(
        1,
        &missing,
        true,
        &format!("channel.close 404 NOT_FOUND - no queue '{missing}' in vhost '/'"),
    );
    s.qos(2, 1, false);
    // Dropped: the channel is closing.
    s.bytes
        .extend(method_frame(1, queue_declare(&q, true, false)));
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until(&mut raw, &mut got, |g| {
        g.replies(1)
            .last()
            .is_some_and(|r| r.starts_with("channel.close"))
            && !g.replies(2).is_empty()
    })
    .await;
    assert_replies(&got, &s);

    let mut s = Script::default();
    s.bytes.extend(method_frame(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    ));
    s.delete_queue(2, &q, "queue.delete-ok 0");
    s.close_connection();
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until_close_ok(&mut raw, &mut got).await;
    assert_eq!(got.connection, ["connection.close-ok"]);
    assert_replies_at_close(&got, &s, &[]);
}

/// A consume-ok held behind a reply that waits for the store still comes before the
/// consumer's first delivery, and deliveries before a basic.cancel before its
/// cancel-ok.
#[tokio::test]
async fn deliveries_follow_their_consume_ok() {
    let broker = TestBroker::start().await;
    let mut raw = opened(&broker, &[1]).await;
    let q = unique("pipe-consume");
    let other = unique("pipe-consume");
    let mut s = Script::default();
    s.declare(1, &q, true, false, "queue.declare-ok 0");
    for i in 0..3 {
        s.publish(1, "", &q, &format!("m{i}"), true);
    }
    // Waits for the store; the consume-ok behind it too.
    s.declare(1, &other, true, false, "queue.declare-ok 0");
    s.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: q.as_str().into(),
            consumer_tag: "c1".into(),
            no_local: false,
            no_ack: true,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
        Some("basic.consume-ok c1"),
    );
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until(&mut raw, &mut got, |g| {
        g.replies(1).len() >= 3 && g.deliveries.get(&1).is_some_and(|d| d.len() >= 3)
    })
    .await;
    assert_replies(&got, &s);
    assert_eq!(got.deliveries[&1], ["m0", "m1", "m2"]);
    let consume_ok = got.log.iter().position(|m| m == "1 basic.consume-ok c1");
    let first = got
        .log
        .iter()
        .position(|m| m.starts_with("1 basic.deliver"));
    assert!(consume_ok < first, "{:#?}", got.log);

    let mut s = Script::default();
    s.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: "c1".into(),
            nowait: false,
        })),
        Some("basic.cancel-ok c1"),
    );
    s.delete_queue(1, &q, "queue.delete-ok 0");
    s.delete_queue(1, &other, "queue.delete-ok 0");
    s.close_channel(1);
    s.close_connection();
    raw.send(&s.bytes).await;
    let mut got = Received::default();
    read_until_close_ok(&mut raw, &mut got).await;
    assert_eq!(got.connection, ["connection.close-ok"]);
    assert_replies_at_close(&got, &s, &["basic.cancel-ok"]);
}

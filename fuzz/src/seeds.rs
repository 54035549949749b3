//! The seed corpus: small valid inputs of each target, so that the fuzzer starts from
//! real frames and sessions. `tests/fuzz_regressions.rs` checks that `fuzz/seeds/`
//! holds exactly these, and rewrites it when `WARREN_WRITE_SEEDS=1`.

use crate::session::record;
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, exchange, queue, tx};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use warren::model::fields::encode_properties;
use warren::protocol::codec::{FRAME_OVERHEAD, write_content, write_method};

/// A method's frame payload: class, method, fields.
fn payload(method: AMQPClass) -> Vec<u8> {
    let mut frame = Vec::new();
    write_method(&mut frame, 0, method);
    frame[7..frame.len() - 1].to_vec()
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> ShortString {
    ShortString::from(v)
}

fn ls(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes()))
}

/// A table with a value of every type and some nesting.
fn every_type() -> FieldTable {
    let inner = table(&[(
        "x-death",
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(table(&[
            ("count", AMQPValue::LongLongInt(1)),
            ("reason", ls("expired")),
            (
                "routing-keys",
                AMQPValue::FieldArray(FieldArray::from(vec![ls("k")])),
            ),
        ]))])),
    )]);
    table(&[
        ("t", AMQPValue::Boolean(true)),
        ("b", AMQPValue::ShortShortInt(-1)),
        ("B", AMQPValue::ShortShortUInt(1)),
        ("s", AMQPValue::ShortInt(-2)),
        ("u", AMQPValue::ShortUInt(2)),
        ("I", AMQPValue::LongInt(-3)),
        ("i", AMQPValue::LongUInt(3)),
        ("l", AMQPValue::LongLongInt(-4)),
        ("f", AMQPValue::Float(1.5)),
        ("d", AMQPValue::Double(2.5)),
        ("T", AMQPValue::Timestamp(1_700_000_000)),
        ("S", ls("text")),
        ("V", AMQPValue::Void),
        ("x", AMQPValue::ByteArray(vec![1, 2, 3].into())),
        ("F", AMQPValue::FieldTable(inner)),
    ])
}

fn encoded_table(t: &FieldTable) -> Vec<u8> {
    let mut out = Vec::new();
    warren::store::codec::put_table(&mut out, t);
    out
}

fn properties(headers: Option<FieldTable>) -> Vec<u8> {
    let mut p = basic::AMQPProperties::default()
        .with_content_type(s("text/plain"))
        .with_delivery_mode(2)
        .with_priority(3)
        .with_correlation_id(s("c1"))
        .with_reply_to(s("amq.rabbitmq.reply-to"))
        .with_expiration(s("60000"))
        .with_message_id(s("m1"))
        .with_timestamp(1_700_000_000)
        .with_type(s("t"))
        .with_user_id(s("guest"))
        .with_app_id(s("app"));
    if let Some(h) = headers {
        p = p.with_headers(h);
    }
    encode_properties(&p).to_vec()
}

/// A content header payload: class basic, weight 0, body size, properties.
fn header(body_size: u64, properties: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 0];
    p.extend_from_slice(&body_size.to_be_bytes());
    p.extend_from_slice(properties);
    p
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    let _ = FRAME_OVERHEAD;
    f
}

fn queue_declare(name: &str, durable: bool, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: s(name),
        passive: false,
        durable,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments,
    }))
}

fn publish(exchange: &str, key: &str, mandatory: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: s(exchange),
        routing_key: s(key),
        mandatory,
        immediate: false,
    }))
}

fn consume(q: &str, no_ack: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: s(q),
        consumer_tag: s(""),
        no_local: false,
        no_ack,
        exclusive: false,
        nowait: false,
        arguments: table(&[("x-priority", AMQPValue::LongInt(1))]),
    }))
}

fn exchange_declare(name: &str, kind: &str, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: s(name),
        kind: s(kind),
        passive: false,
        durable: false,
        auto_delete: true,
        internal: false,
        nowait: false,
        arguments,
    }))
}

fn queue_bind(q: &str, x: &str, key: &str, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
        queue: s(q),
        exchange: s(x),
        routing_key: s(key),
        nowait: false,
        arguments,
    }))
}

fn channel_open() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))
}

/// Method records of a session (kind 0 in [`record`]).
struct Session(Vec<u8>);

impl Session {
    fn new() -> Session {
        // Mode 0: structured frames after the handshake, channel 1 open.
        let mut s = Session(vec![0]);
        s.method(1, channel_open());
        s
    }
    fn method(&mut self, channel: u16, m: AMQPClass) -> &mut Self {
        self.0.extend_from_slice(&record(0, channel, &payload(m)));
        self
    }
    fn content(&mut self, channel: u16, props: &[u8], body: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&record(3, channel, &header(body.len() as u64, props)));
        for part in body.chunks(40) {
            self.0.extend_from_slice(&record(4, channel, part));
        }
        self
    }
    fn publish(&mut self, x: &str, key: &str, props: &[u8], body: &[u8]) -> &mut Self {
        self.method(1, publish(x, key, true));
        self.content(1, props, body)
    }
}

/// (target, name, bytes) of every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let plain = properties(None);
    let with_headers = properties(Some(every_type()));
    let tables = encoded_table(&every_type());
    let method_payloads: Vec<(&str, Vec<u8>)> = vec![
        (
            "queue_declare",
            payload(queue_declare("q", true, every_type())),
        ),
        (
            "exchange_declare",
            payload(exchange_declare("x", "headers", every_type())),
        ),
        (
            "queue_bind",
            payload(queue_bind("q", "x", "k", every_type())),
        ),
        ("consume", payload(consume("q", false))),
        (
            "start_ok",
            payload(AMQPClass::Connection(connection::AMQPMethod::StartOk(
                connection::StartOk {
                    client_properties: every_type(),
                    mechanism: s("PLAIN"),
                    response: LongString::from(&b"\0guest\0guest"[..]),
                    locale: s("en_US"),
                },
            ))),
        ),
        ("publish", payload(publish("", "q", false))),
        (
            "qos",
            payload(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: 10,
                global: false,
            }))),
        ),
    ];

    // frame_codec: a selector, then frames.
    for (name, p) in &method_payloads {
        for selector in [0u8, 1, 2, 2 | (7 << 2)] {
            let mut input = vec![selector];
            input.extend_from_slice(&frame(1, 1, p));
            seeds.push(("frame_codec", format!("{name}-{selector}"), input));
        }
    }
    let mut publish_frames = vec![2u8];
    publish_frames.extend_from_slice(&frame(1, 1, &payload(publish("", "q", false))));
    let mut content = Vec::new();
    write_content(&mut content, 1, &with_headers, &[7u8; 300], 4096);
    publish_frames.extend_from_slice(&content);
    publish_frames.extend_from_slice(&frame(8, 0, &[]));
    seeds.push(("frame_codec", "publish-content".into(), publish_frames));
    let mut limited = vec![3u8];
    limited.extend_from_slice(&64u32.to_be_bytes());
    limited.extend_from_slice(&frame(3, 1, &[1u8; 100]));
    seeds.push(("frame_codec", "body-over-frame-max".into(), limited));
    let mut huge = vec![0u8, 3, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0];
    huge.extend_from_slice(&[0; 16]);
    seeds.push(("frame_codec", "size-claim".into(), huge));

    // tables: a bare table, each table method, content headers, store records.
    let mut bare = vec![0u8];
    bare.extend_from_slice(&tables);
    seeds.push(("tables", "bare".into(), bare));
    let mut empty = vec![0u8];
    empty.extend_from_slice(&[0, 0, 0, 0]);
    seeds.push(("tables", "bare-empty".into(), empty));
    let heads: [(&str, Vec<u8>); 9] = [
        ("start", {
            let mut p = vec![0, 9];
            p.extend_from_slice(&tables);
            p.extend_from_slice(&[0, 0, 0, 5]);
            p.extend_from_slice(b"PLAIN");
            p.extend_from_slice(&[0, 0, 0, 5]);
            p.extend_from_slice(b"en_US");
            p
        }),
        ("start_ok", payload_fields(&method_payloads[4].1)),
        ("exchange_declare", payload_fields(&method_payloads[1].1)),
        (
            "exchange_bind",
            payload_fields(&payload(AMQPClass::Exchange(exchange::AMQPMethod::Bind(
                exchange::Bind {
                    destination: s("d"),
                    source: s("s"),
                    routing_key: s("k"),
                    nowait: false,
                    arguments: every_type(),
                },
            )))),
        ),
        (
            "exchange_unbind",
            payload_fields(&payload(AMQPClass::Exchange(exchange::AMQPMethod::Unbind(
                exchange::Unbind {
                    destination: s("d"),
                    source: s("s"),
                    routing_key: s("k"),
                    nowait: false,
                    arguments: every_type(),
                },
            )))),
        ),
        ("queue_declare", payload_fields(&method_payloads[0].1)),
        ("queue_bind", payload_fields(&method_payloads[2].1)),
        (
            "queue_unbind",
            payload_fields(&payload(AMQPClass::Queue(queue::AMQPMethod::Unbind(
                queue::Unbind {
                    queue: s("q"),
                    exchange: s("x"),
                    routing_key: s("k"),
                    arguments: every_type(),
                },
            )))),
        ),
        ("consume", payload_fields(&method_payloads[3].1)),
    ];
    for (i, (name, fields)) in heads.iter().enumerate() {
        let mut input = vec![1u8, i as u8];
        input.extend_from_slice(fields);
        seeds.push(("tables", format!("method-{name}"), input));
    }
    for (name, props) in [("plain", &plain), ("headers", &with_headers)] {
        let mut input = vec![2u8];
        input.extend_from_slice(props);
        seeds.push(("tables", format!("header-{name}"), input));
    }
    let put = |out: &mut Vec<u8>, b: &[u8]| warren::store::codec::put_bytes(out, b);
    let mut exchange_record = vec![3u8, 0];
    put(&mut exchange_record, b"headers");
    exchange_record.extend_from_slice(&[0, 1]);
    exchange_record.extend_from_slice(&tables);
    seeds.push(("tables", "store-exchange".into(), exchange_record));
    let mut queue_record = vec![3u8, 1];
    queue_record.extend_from_slice(&7u64.to_be_bytes());
    queue_record.push(0);
    queue_record.extend_from_slice(&tables);
    seeds.push(("tables", "store-queue".into(), queue_record));
    let mut binding_record = vec![3u8, 2];
    for part in [&b"/"[..], b"x", b"\x01", b"q", b"k"] {
        if part == b"\x01" {
            binding_record.push(1);
        } else {
            put(&mut binding_record, part);
        }
    }
    binding_record.extend_from_slice(&tables);
    seeds.push(("tables", "store-binding".into(), binding_record));
    let mut message_record = vec![3u8, 3];
    put(&mut message_record, b"x");
    put(&mut message_record, b"k");
    put(&mut message_record, &with_headers);
    message_record.extend_from_slice(b"body");
    seeds.push(("tables", "store-message".into(), message_record));

    // Tables nested around the limit, where the nesting walk decides.
    let limit = warren::protocol::codec::MAX_TABLE_DEPTH;
    for depth in [limit - 1, limit, limit + 1] {
        let deep = nested(depth);
        let mut bare = vec![0u8];
        bare.extend_from_slice(&deep);
        seeds.push(("tables", format!("bare-nested-{depth}"), bare));
        let mut declare = vec![1u8, 5, 0, 0, 1, b'q', 0];
        declare.extend_from_slice(&deep);
        seeds.push((
            "tables",
            format!("method-queue_declare-nested-{depth}"),
            declare,
        ));
        let mut props = vec![2u8, 0b0010_0000, 0];
        props.extend_from_slice(&deep);
        seeds.push(("tables", format!("header-nested-{depth}"), props));
        let mut stored = vec![3u8, 1];
        stored.extend_from_slice(&7u64.to_be_bytes());
        stored.push(0);
        stored.extend_from_slice(&deep);
        seeds.push(("tables", format!("store-queue-nested-{depth}"), stored));
        // queue.declare's arguments come last: swap the empty table for the deep one.
        let mut p = payload(queue_declare("q", false, FieldTable::default()));
        p.truncate(p.len() - 4);
        p.extend_from_slice(&deep);
        let mut framed = vec![2u8];
        framed.extend_from_slice(&frame(1, 1, &p));
        seeds.push((
            "frame_codec",
            format!("queue_declare-nested-{depth}"),
            framed,
        ));
    }

    // session: structured sessions, raw bytes after the handshake, a raw handshake.
    let durable = FieldTable::default();
    let mut basic_flow = Session::new();
    basic_flow
        .method(1, queue_declare("q1", false, durable.clone()))
        .publish("", "q1", &plain, b"hello")
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: s("q1"),
                no_ack: false,
            })),
        )
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 1,
                multiple: false,
            })),
        );
    seeds.push(("session", "publish-get-ack".into(), basic_flow.0));

    let mut consumer = Session::new();
    consumer
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: 2,
                global: false,
            })),
        )
        .method(1, queue_declare("", false, durable.clone()))
        .method(1, consume("", false))
        .publish("", "", &with_headers, &[1u8; 100])
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: 1,
                multiple: true,
                requeue: true,
            })),
        )
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: s("amq.ctag-x"),
                nowait: false,
            })),
        );
    seeds.push(("session", "consume-nack".into(), consumer.0));

    let mut dead = Session::new();
    dead.method(1, exchange_declare("dlx", "fanout", FieldTable::default()))
        .method(1, queue_declare("dead", false, FieldTable::default()))
        .method(1, queue_bind("dead", "dlx", "", FieldTable::default()))
        .method(
            1,
            queue_declare(
                "ttl",
                false,
                table(&[
                    ("x-dead-letter-exchange", ls("dlx")),
                    ("x-message-ttl", AMQPValue::LongInt(0)),
                    ("x-max-length", AMQPValue::LongInt(1)),
                    ("x-overflow", ls("reject-publish-dlx")),
                ]),
            ),
        )
        .publish("", "ttl", &with_headers, b"a")
        .publish("", "ttl", &plain, b"b")
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: s("dead"),
                no_ack: true,
            })),
        );
    seeds.push(("session", "dead-letter".into(), dead.0));

    let mut routing = Session::new();
    routing
        .method(1, exchange_declare("h", "headers", FieldTable::default()))
        .method(1, exchange_declare("t", "topic", FieldTable::default()))
        .method(
            1,
            queue_declare(
                "r",
                false,
                table(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
            ),
        )
        .method(
            1,
            queue_bind(
                "r",
                "h",
                "",
                table(&[("x-match", ls("any")), ("a", ls("1"))]),
            ),
        )
        .method(1, queue_bind("r", "t", "a.*.#", FieldTable::default()))
        .method(
            1,
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
                destination: s("t"),
                source: s("h"),
                routing_key: s(""),
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .publish("h", "", &with_headers, b"x")
        .publish("t", "a.b.c", &plain, b"y")
        .method(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
                queue: s("r"),
                nowait: false,
            })),
        )
        .method(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                queue: s("r"),
                if_unused: false,
                if_empty: false,
                nowait: false,
            })),
        );
    seeds.push(("session", "routing".into(), routing.0));

    let mut transactions = Session::new();
    transactions
        .method(2, channel_open())
        .method(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
        .method(
            2,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        )
        .method(1, queue_declare("tx", true, FieldTable::default()))
        .publish("", "tx", &plain, b"t")
        .method(1, AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {})))
        .method(2, publish("", "tx", false))
        .content(2, &plain, b"c")
        .method(1, AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {})))
        .method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue: true })),
        )
        .method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: false })),
        )
        .method(
            2,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: 200,
                reply_text: s("ok"),
                class_id: 0,
                method_id: 0,
            })),
        )
        .method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: 200,
                reply_text: s("bye"),
                class_id: 0,
                method_id: 0,
            })),
        );
    seeds.push(("session", "tx-confirm-close".into(), transactions.0));

    let mut rpc = Session::new();
    rpc.method(1, consume("amq.rabbitmq.reply-to", true))
        .method(
            1,
            queue_declare("", false, table(&[("x-expires", AMQPValue::LongInt(1000))])),
        )
        .publish("", "", &plain, b"request");
    seeds.push(("session", "reply-to".into(), rpc.0));

    let mut raw_after = vec![2u8];
    raw_after.extend_from_slice(&frame(1, 1, &payload(channel_open())));
    raw_after.extend_from_slice(&frame(1, 1, &payload(publish("", "q", false))));
    raw_after.extend_from_slice(&frame(2, 1, &header(5, &plain)));
    raw_after.extend_from_slice(&frame(3, 1, b"he"));
    raw_after.extend_from_slice(&frame(3, 1, b"llo"));
    raw_after.extend_from_slice(&frame(8, 0, &[]));
    seeds.push(("session", "raw-publish".into(), raw_after));

    let mut raw_handshake = vec![3u8];
    raw_handshake.extend_from_slice(warren::protocol::codec::PROTOCOL_HEADER);
    raw_handshake.extend_from_slice(&crate::session::handshake());
    raw_handshake.extend_from_slice(&frame(1, 1, &payload(channel_open())));
    seeds.push(("session", "raw-handshake".into(), raw_handshake));
    seeds
}

/// A field table nested `depth` deep (the outermost table is level 1), every even
/// level an array, the innermost level holding one long string.
fn nested(depth: usize) -> Vec<u8> {
    let mut value = AMQPValue::LongString(LongString::from(&b"x"[..]));
    for level in (2..=depth).rev() {
        value = if level % 2 == 0 {
            AMQPValue::FieldArray(FieldArray::from(vec![value]))
        } else {
            AMQPValue::FieldTable(table(&[("n", value)]))
        };
    }
    encoded_table(&table(&[("n", value)]))
}

/// The fields of a method payload (after class and method ids).
fn payload_fields(p: &[u8]) -> Vec<u8> {
    p[4..].to_vec()
}

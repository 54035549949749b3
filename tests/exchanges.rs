//! Exchanges: predeclared ones, declare/delete and their errors, exchange-to-exchange
//! bindings, and the routing rules of each type (direct, fanout, topic, headers), plus
//! alternate exchanges. Reply codes and texts are RabbitMQ's.

mod common;

use common::{
    TestBroker, confirm_channel, drain_bodies as drain, expect_amqp_error,
    publish_confirmed as publish, temp_queue, unique,
};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
    .expect("bind");
}

async fn declare(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
}

/// Whether an exchange exists, asked with a passive declare on a throw-away channel.
async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    let result = ch
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match result {
        Ok(()) => {
            ch.close(200, "done".into()).await.expect("close");
            true
        }
        Err(e) => {
            let (code, text) = common::amqp_error(&e);
            assert_eq!(code, 404, "{text}");
            assert_eq!(
                text,
                format!("NOT_FOUND - no exchange '{name}' in vhost '/'")
            );
            false
        }
    }
}

fn plain() -> BasicProperties {
    BasicProperties::default()
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    let other = temp_queue(&ch).await;
    publish(&ch, "", &q, b"one", plain()).await;
    publish(&ch, "", &q, b"two", plain()).await;
    publish(&ch, "", "no-such-queue-anywhere", b"lost", plain()).await;
    assert_eq!(drain(&ch, &q).await, ["one", "two"]);
    assert!(drain(&ch, &other).await.is_empty());
}

#[tokio::test]
async fn predeclared_exchanges_exist_with_their_types() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        // Redeclaring with the same type and durable=true is accepted (not a new declare:
        // the amq. prefix is reserved, so this only passes because it is equivalent).
        ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} exists: {e}"));
    }
    // Each routes: amq.direct by key, amq.fanout to all, amq.topic by pattern.
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, "amq.direct", "k", FieldTable::default()).await;
    bind(&ch, &q, "amq.fanout", "", FieldTable::default()).await;
    bind(&ch, &q, "amq.topic", "t.*", FieldTable::default()).await;
    let mut h = FieldTable::default();
    h.insert("x-match".into(), AMQPValue::LongString("all".into()));
    h.insert("h".into(), AMQPValue::LongString("v".into()));
    bind(&ch, &q, "amq.match", "", h).await;
    publish(&ch, "amq.direct", "k", b"direct", plain()).await;
    publish(&ch, "amq.direct", "other", b"direct-miss", plain()).await;
    publish(&ch, "amq.fanout", "whatever", b"fanout", plain()).await;
    publish(&ch, "amq.topic", "t.x", b"topic", plain()).await;
    publish(&ch, "amq.topic", "t.x.y", b"topic-miss", plain()).await;
    let mut headers = FieldTable::default();
    headers.insert("h".into(), AMQPValue::LongString("v".into()));
    publish(
        &ch,
        "amq.match",
        "",
        b"match",
        plain().with_headers(headers),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, ["direct", "fanout", "topic", "match"]);
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_is_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let name = unique("missing");
    let (code, text) = expect_amqp_error(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        format!("NOT_FOUND - no exchange '{name}' in vhost '/'")
    );
    assert!(!ch.status().connected(), "the channel is closed");
}

#[tokio::test]
async fn declare_is_idempotent_and_durable_flag_is_compared() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let name = unique("dx");
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .expect("equivalent redeclare");
    let (code, text) = expect_amqp_error(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{name}' in vhost '/': received 'false' but current is 'true'"
        )
    );

    let ch = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': received 'fanout' but current is 'direct'"
        )
    );
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn declare_with_arguments_and_compare_them() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let name = unique("argx");
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString("ae".into()),
    );
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args.clone(),
    )
    .await
    .expect("declare with arguments");
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .expect("same arguments");
    let mut other = FieldTable::default();
    other.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString("other-ae".into()),
    );
    let (code, text) = expect_amqp_error(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        other,
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{name}' in vhost '/': received 'other-ae' but current is 'ae'"
        )
    );
}

#[tokio::test]
async fn unknown_exchange_type_is_a_406_channel_error() {
    // RabbitMQ 4.x (rabbit_exchange:check_type): channel error 406. 3.10 closed the
    // whole connection with 503 COMMAND_INVALID "invalid exchange type 'x-nope'".
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let name = unique("badtype");
    let (code, text) = expect_amqp_error(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Custom("x-nope".into()),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(text, "PRECONDITION_FAILED - unknown exchange type 'x-nope'");
    assert!(conn.status().connected(), "only the channel is closed");
    assert!(!exchange_exists(&conn, &name).await);
}

#[tokio::test]
async fn amq_prefix_is_reserved() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let name = format!("amq.{}", unique("mine"));
    let (code, text) = expect_amqp_error(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        format!("ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'")
    );
}

#[tokio::test]
async fn default_exchange_cannot_be_bound_or_deleted() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    let (code, text) = expect_amqp_error(ch.queue_bind(
        q.as_str().into(),
        "".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );

    let ch = conn.create_channel().await.expect("channel");
    let (code, text) =
        expect_amqp_error(ch.exchange_delete("".into(), ExchangeDeleteOptions::default())).await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
}

#[tokio::test]
async fn delete_if_unused_refuses_an_exchange_with_bindings() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let x = unique("used");
    declare(&ch, &x, ExchangeKind::Fanout).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "", FieldTable::default()).await;
    let (code, text) = expect_amqp_error(ch.exchange_delete(
        x.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use")
    );
    assert!(exchange_exists(&conn, &x).await);

    let ch = conn.create_channel().await.expect("channel");
    ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    ch.exchange_delete(
        x.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    )
    .await
    .expect("unused now");
    assert!(!exchange_exists(&conn, &x).await);
    // Deleting a missing exchange is not an error (RabbitMQ 3.x and 4.x).
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete of a missing exchange is ok");
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let x = unique("auto");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // Never bound: it stays.
    assert!(exchange_exists(&conn, &x).await);
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    bind(&ch, &q1, &x, "a", FieldTable::default()).await;
    bind(&ch, &q2, &x, "b", FieldTable::default()).await;
    ch.queue_unbind(
        q1.as_str().into(),
        x.as_str().into(),
        "a".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    assert!(exchange_exists(&conn, &x).await, "one binding is left");
    // The last binding goes with its queue.
    ch.queue_delete(q2.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    assert!(!exchange_exists(&conn, &x).await);
}

#[tokio::test]
async fn publishing_to_an_internal_exchange_is_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let x = unique("internal");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        x.as_str().into(),
        "".into(),
        BasicPublishOptions::default(),
        b"x",
        plain(),
    )
    .await
    .expect("publish is sent");
    // The channel.close comes asynchronously; the next synchronous method sees it.
    let (code, text) = watch.error().await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        format!("ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'")
    );

    // It still routes what other exchanges send it through an exchange binding.
    let ch = confirm_channel(&conn).await;
    let front = unique("front");
    declare(&ch, &front, ExchangeKind::Fanout).await;
    ch.exchange_bind(
        x.as_str().into(),
        front.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("e2e bind");
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "", FieldTable::default()).await;
    publish(&ch, &front, "", b"via", plain()).await;
    assert_eq!(drain(&ch, &q).await, ["via"]);
}

#[tokio::test]
async fn exchange_to_exchange_bindings_route_and_unbind() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let src = unique("src");
    let dst = unique("dst");
    declare(&ch, &src, ExchangeKind::Topic).await;
    declare(&ch, &dst, ExchangeKind::Direct).await;
    ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.bind");
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &dst, "a.b", FieldTable::default()).await;
    publish(&ch, &src, "a.b", b"routed", plain()).await;
    publish(&ch, &src, "a.c", b"dst-drops", plain()).await;
    publish(&ch, &src, "b.b", b"src-drops", plain()).await;
    assert_eq!(drain(&ch, &q).await, ["routed"]);
    // Binding again is idempotent: still one copy.
    ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("same binding again");
    publish(&ch, &src, "a.b", b"once", plain()).await;
    assert_eq!(drain(&ch, &q).await, ["once"]);
    ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.#".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.unbind");
    publish(&ch, &src, "a.b", b"gone", plain()).await;
    assert!(drain(&ch, &q).await.is_empty());

    // Binding from a missing source is 404.
    let missing = unique("nosrc");
    let (code, text) = expect_amqp_error(ch.exchange_bind(
        dst.as_str().into(),
        missing.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        format!("NOT_FOUND - no exchange '{missing}' in vhost '/'")
    );
}

#[tokio::test]
async fn binding_a_missing_queue_or_to_a_missing_exchange_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let missing_q = unique("noq");
    let (code, text) = expect_amqp_error(ch.queue_bind(
        missing_q.as_str().into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        format!("NOT_FOUND - no queue '{missing_q}' in vhost '/'")
    );
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    let missing_x = unique("nox");
    let (code, text) = expect_amqp_error(ch.queue_bind(
        q.as_str().into(),
        missing_x.as_str().into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        format!("NOT_FOUND - no exchange '{missing_x}' in vhost '/'")
    );
    let ch = conn.create_channel().await.expect("channel");
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        missing_x.as_str().into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"x",
        plain(),
    )
    .await
    .expect("publish is sent");
    let (code, text) = watch.error().await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        format!("NOT_FOUND - no exchange '{missing_x}' in vhost '/'")
    );
}

#[tokio::test]
async fn direct_and_fanout_routing() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let d = unique("direct");
    let f = unique("fanout");
    declare(&ch, &d, ExchangeKind::Direct).await;
    declare(&ch, &f, ExchangeKind::Fanout).await;
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    bind(&ch, &q1, &d, "red", FieldTable::default()).await;
    bind(&ch, &q1, &d, "green", FieldTable::default()).await;
    bind(&ch, &q2, &d, "red", FieldTable::default()).await;
    bind(&ch, &q1, &f, "ignored", FieldTable::default()).await;
    bind(&ch, &q2, &f, "", FieldTable::default()).await;
    publish(&ch, &d, "red", b"r", plain()).await;
    publish(&ch, &d, "green", b"g", plain()).await;
    publish(&ch, &d, "RED", b"case-sensitive", plain()).await;
    publish(&ch, &f, "anything", b"f", plain()).await;
    assert_eq!(drain(&ch, &q1).await, ["r", "g", "f"]);
    assert_eq!(drain(&ch, &q2).await, ["r", "f"]);
}

/// Which of `keys` a topic binding `pattern` matches.
async fn topic_matches(ch: &Channel, pattern: &str, keys: &[&str]) -> Vec<String> {
    let x = unique("topic");
    declare(ch, &x, ExchangeKind::Topic).await;
    let q = temp_queue(ch).await;
    bind(ch, &q, &x, pattern, FieldTable::default()).await;
    for key in keys {
        publish(ch, &x, key, format!("[{key}]").as_bytes(), plain()).await;
    }
    let got = drain(ch, &q).await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("exchange.delete");
    got
}

#[tokio::test]
async fn topic_wildcards_and_empty_words() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let keys = [
        "", "a", "a.b", "a.b.c", "a..b", ".a", "a.", ".", "b.a", "a.x.b",
    ];
    let cases: &[(&str, &[&str])] = &[
        ("a.b", &["[a.b]"]),
        ("a.*", &["[a.b]", "[a.]"]),
        ("*.a", &["[.a]", "[b.a]"]),
        ("*", &["[a]"]),
        ("a.*.b", &["[a..b]", "[a.x.b]"]),
        (
            "#",
            &[
                "[]", "[a]", "[a.b]", "[a.b.c]", "[a..b]", "[.a]", "[a.]", "[.]", "[b.a]",
                "[a.x.b]",
            ],
        ),
        (
            "#.#",
            &[
                "[]", "[a]", "[a.b]", "[a.b.c]", "[a..b]", "[.a]", "[a.]", "[.]", "[b.a]",
                "[a.x.b]",
            ],
        ),
        (
            "a.#",
            &["[a]", "[a.b]", "[a.b.c]", "[a..b]", "[a.]", "[a.x.b]"],
        ),
        ("#.a", &["[a]", "[.a]", "[b.a]"]),
        ("a.#.b", &["[a.b]", "[a..b]", "[a.x.b]"]),
        ("*.*", &["[a.b]", "[.a]", "[a.]", "[.]", "[b.a]"]),
        ("", &["[]"]),
        (".", &["[.]"]),
        ("a..b", &["[a..b]"]),
        (
            "#.*",
            &[
                "[a]", "[a.b]", "[a.b.c]", "[a..b]", "[.a]", "[a.]", "[.]", "[b.a]", "[a.x.b]",
            ],
        ),
    ];
    for (pattern, expected) in cases {
        let got = topic_matches(&ch, pattern, &keys).await;
        assert_eq!(&got, expected, "pattern {pattern:?}");
    }
}

fn headers(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

/// Which messages (named by index) a headers binding with `args` receives.
async fn headers_matches(ch: &Channel, args: FieldTable, messages: &[FieldTable]) -> Vec<String> {
    let x = unique("headers");
    declare(ch, &x, ExchangeKind::Headers).await;
    let q = temp_queue(ch).await;
    bind(ch, &q, &x, "", args).await;
    for (i, h) in messages.iter().enumerate() {
        publish(
            ch,
            &x,
            "",
            i.to_string().as_bytes(),
            plain().with_headers(h.clone()),
        )
        .await;
    }
    publish(ch, &x, "", b"none", plain()).await;
    let got = drain(ch, &q).await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    got
}

#[tokio::test]
async fn headers_exchange_all_and_any() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let messages = [
        headers(&[("a", s("1")), ("b", s("2"))]),     // 0: both
        headers(&[("a", s("1"))]),                    // 1: only a
        headers(&[("a", s("1")), ("b", s("other"))]), // 2: b differs
        headers(&[("b", s("2")), ("x-k", s("v"))]),   // 3: b and x-k
        headers(&[("a", s("1")), ("b", s("2")), ("c", s("3"))]), // 4: superset
        headers(&[("a", AMQPValue::LongInt(1))]),     // 5: a of another type
        headers(&[("x-k", s("v"))]),                  // 6: only x-k
    ];
    let binding = |mode: &str, extra: &[(&str, AMQPValue)]| {
        let mut t = headers(&[("x-match", s(mode)), ("a", s("1")), ("b", s("2"))]);
        for (k, v) in extra {
            t.insert((*k).into(), v.clone());
        }
        t
    };
    assert_eq!(
        headers_matches(&ch, binding("all", &[]), &messages).await,
        ["0", "4"]
    );
    assert_eq!(
        headers_matches(&ch, binding("any", &[]), &messages).await,
        ["0", "1", "2", "3", "4"]
    );
    // Without x-match, "all" is the default.
    assert_eq!(
        headers_matches(&ch, headers(&[("a", s("1")), ("b", s("2"))]), &messages).await,
        ["0", "4"]
    );
    // x- headers of the binding are ignored by all/any...
    assert_eq!(
        headers_matches(&ch, binding("all", &[("x-k", s("v"))]), &messages).await,
        ["0", "4"]
    );
    assert_eq!(
        headers_matches(&ch, binding("any", &[("x-k", s("v"))]), &messages).await,
        ["0", "1", "2", "3", "4"]
    );
    // ...and compared by all-with-x / any-with-x.
    assert!(
        headers_matches(&ch, binding("all-with-x", &[("x-k", s("v"))]), &messages)
            .await
            .is_empty()
    );
    assert_eq!(
        headers_matches(
            &ch,
            headers(&[("x-match", s("all-with-x")), ("b", s("2")), ("x-k", s("v"))]),
            &messages
        )
        .await,
        ["3"]
    );
    assert_eq!(
        headers_matches(&ch, binding("any-with-x", &[("x-k", s("v"))]), &messages).await,
        ["0", "1", "2", "3", "4", "6"]
    );
    // A void value in the binding matches on presence only.
    assert_eq!(
        headers_matches(
            &ch,
            headers(&[("x-match", s("all")), ("a", AMQPValue::Void)]),
            &messages
        )
        .await,
        ["0", "1", "2", "4", "5"]
    );
}

#[tokio::test]
async fn alternate_exchange_takes_unroutable_messages() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let ae = unique("ae");
    let main = unique("main");
    declare(&ch, &ae, ExchangeKind::Fanout).await;
    ch.exchange_declare(
        main.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        headers(&[("alternate-exchange", s(&ae))]),
    )
    .await
    .expect("declare with alternate-exchange");
    let routed = temp_queue(&ch).await;
    let spill = temp_queue(&ch).await;
    bind(&ch, &routed, &main, "k", FieldTable::default()).await;
    bind(&ch, &spill, &ae, "", FieldTable::default()).await;
    publish(&ch, &main, "k", b"routed", plain()).await;
    publish(&ch, &main, "other", b"spilled", plain()).await;
    // Mandatory publishes that the alternate exchange routes are not returned.
    let confirm = ch
        .basic_publish(
            main.as_str().into(),
            "nope".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"mandatory-spilled",
            plain(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.take_message().is_none(), "not returned");
    assert_eq!(drain(&ch, &routed).await, ["routed"]);
    assert_eq!(drain(&ch, &spill).await, ["spilled", "mandatory-spilled"]);
}

#[tokio::test]
async fn system_exchanges_cannot_be_deleted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let (code, text) = expect_amqp_error(
        ch.exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default()),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    );
}

fn routes(cc: &[&str], bcc: &[&str]) -> FieldTable {
    let array = |keys: &[&str]| {
        AMQPValue::FieldArray(
            keys.iter()
                .map(|k| AMQPValue::LongString(LongString::from(*k)))
                .collect::<Vec<_>>()
                .into(),
        )
    };
    let mut headers = FieldTable::default();
    headers.insert("x-app".into(), AMQPValue::LongString("kept".into()));
    if !cc.is_empty() {
        headers.insert("CC".into(), array(cc));
    }
    if !bcc.is_empty() {
        headers.insert("BCC".into(), array(bcc));
    }
    headers
}

/// Sender-selected distribution: the string entries of the CC and BCC header arrays are
/// routing keys too; each queue gets one copy; BCC is removed from the message.
#[tokio::test]
async fn cc_and_bcc_headers_add_routing_keys() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let x = unique("cc");
    declare(&ch, &x, ExchangeKind::Direct).await;
    let mut queues = Vec::new();
    for key in ["one", "two", "three", "four"] {
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, key, FieldTable::default()).await;
        queues.push(q);
    }
    let props = BasicProperties::default().with_headers(routes(&["two", "one"], &["three"]));
    publish(&ch, &x, "one", b"m", props).await;
    for (i, q) in queues.iter().enumerate() {
        let got = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get");
        if i == 3 {
            assert!(got.is_none(), "'four' was not a routing key");
            continue;
        }
        let m = got.expect("one copy for each key");
        let headers = m.delivery.properties.headers().clone().expect("headers");
        assert!(headers.contains_key("CC"), "CC stays");
        assert!(!headers.contains_key("BCC"), "BCC is removed");
        assert!(headers.contains_key("x-app"));
        assert_eq!(m.message_count, 0, "one copy in queue {i}");
    }

    // The default exchange: queue names; a queue named twice gets the message once.
    let props = BasicProperties::default().with_headers(routes(&[&queues[1], &queues[0]], &[]));
    publish(&ch, "", &queues[0], b"direct", props).await;
    assert_eq!(drain(&ch, &queues[0]).await, vec!["direct"]);
    assert_eq!(drain(&ch, &queues[1]).await, vec!["direct"]);
}

/// A CC or BCC header that is not an array makes the message invalid: 406, as in
/// RabbitMQ.
#[tokio::test]
async fn cc_header_of_another_type_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    let mut headers = FieldTable::default();
    headers.insert("CC".into(), AMQPValue::LongString("two".into()));
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default().with_headers(headers),
    )
    .await
    .expect("publish");
    let (code, text) = watch.error().await;
    assert_eq!(
        (code, text.as_str()),
        (
            406,
            "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}"
        )
    );
}

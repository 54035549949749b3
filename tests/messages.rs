//! Messages: properties and bodies end to end, size limits, mandatory and immediate,
//! consumers (tags, exclusivity, prefetch, fair dispatch), basic.get, acks, nacks,
//! rejects, requeue order, recover, publisher confirms and transactions.

mod common;

use common::{TestBroker, confirm_channel, consume, drain, expect_amqp_error, next, ready, unique};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Publishes `bodies` to the default exchange and waits for their confirms.
async fn publish_all(ch: &Channel, queue: &str, bodies: &[&str]) {
    for body in bodies {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    }
}

async fn new_queue(ch: &Channel) -> String {
    let q = unique("msgs");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    q
}

fn body(d: &lapin::message::Delivery) -> String {
    String::from_utf8(d.data.clone()).expect("utf-8")
}

fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

#[tokio::test]
async fn all_fourteen_properties_and_nested_headers_round_trip() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    let mut inner = FieldTable::default();
    inner.insert("deep".into(), AMQPValue::LongString("yes".into()));
    inner.insert(
        "list".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            AMQPValue::LongString("two".into()),
            AMQPValue::FieldTable(FieldTable::default()),
        ])),
    );
    let mut headers = FieldTable::default();
    headers.insert("str".into(), AMQPValue::LongString("text é".into()));
    headers.insert("bool".into(), AMQPValue::Boolean(true));
    headers.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    headers.insert("i16".into(), AMQPValue::ShortInt(-16));
    headers.insert("i32".into(), AMQPValue::LongInt(-32));
    headers.insert("i64".into(), AMQPValue::LongLongInt(-64));
    headers.insert("f32".into(), AMQPValue::Float(1.5));
    headers.insert("f64".into(), AMQPValue::Double(-2.25));
    headers.insert(
        "decimal".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    headers.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
    headers.insert(
        "bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 255])),
    );
    headers.insert("void".into(), AMQPValue::Void);
    headers.insert("table".into(), AMQPValue::FieldTable(inner));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_234_567_890)
        .with_type("kind".into())
        .with_user_id("guest".into())
        .with_app_id("app".into())
        .with_cluster_id("cluster".into());
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"{}",
        props.clone(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let got = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(got.delivery.properties, props);
    assert_eq!(got.delivery.data, b"{}");
    assert_eq!(got.delivery.exchange.as_str(), "");
    assert_eq!(got.delivery.routing_key.as_str(), q);

    // The same through a consumer.
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"again",
        props.clone(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let mut consumer = consume(
        &ch,
        &q,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    let d = next(&mut consumer).await;
    assert_eq!(d.properties, props);
    assert_eq!(d.data, b"again");
}

#[tokio::test]
async fn user_id_must_match_the_authenticated_user() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        "".into(),
        "anything".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_user_id("mallory".into()),
    )
    .await
    .expect("publish is sent");
    let (code, text) = watch.error().await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'"
    );
}

#[tokio::test]
async fn empty_and_multi_frame_bodies() {
    let broker = TestBroker::start().await;
    // frame_max 4096: a 100 000-byte body travels in 25 body frames each way.
    let uri = format!("{}?frame_max=4096", broker.uri);
    let conn = Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("connects");
    assert_eq!(conn.configuration().frame_max(), 4096);
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for payload in [&b""[..], &big[..], &big[..4088], &big[..4089]] {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let mut consumer = consume(
        &ch,
        &q,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    assert!(next(&mut consumer).await.data.is_empty());
    assert!(next(&mut consumer).await.data == big);
    assert!(next(&mut consumer).await.data == big[..4088]);
    assert!(next(&mut consumer).await.data == big[..4089]);
}

#[tokio::test]
async fn message_over_max_message_size_is_406() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        return; // needs a broker configured with a small limit
    }
    let broker = TestBroker::start_with(|c| c.max_message_size = 1000).await;
    let (_conn, ch) = broker.channel().await;
    let q = new_queue(&ch).await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        &[1u8; 1000],
        BasicProperties::default(),
    )
    .await
    .expect("at the limit");
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        &[1u8; 1001],
        BasicProperties::default(),
    )
    .await
    .expect("publish is sent");
    let (code, text) = watch.error().await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000"
    );
    let conn = broker.connect().await;
    assert_eq!(ready(&conn, &q).await, 1, "only the first one was queued");
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_with_312() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let key = unique("nowhere");
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bounce",
            BasicProperties::default().with_message_id("m-1".into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let Confirmation::Ack(Some(returned)) = confirm else {
        panic!("expected an ack carrying the returned message, got {confirm:?}");
    };
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(returned.delivery.routing_key.as_str(), key);
    assert_eq!(returned.delivery.data, b"bounce");
    assert_eq!(
        returned
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("m-1")
    );
    // Not mandatory: silently dropped, still acked.
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            key.as_str().into(),
            BasicPublishOptions::default(),
            b"dropped",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
}

#[tokio::test]
async fn immediate_is_540_not_implemented() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        "".into(),
        "q".into(),
        BasicPublishOptions {
            immediate: true,
            ..Default::default()
        },
        b"now",
        BasicProperties::default(),
    )
    .await
    .expect("publish is sent");
    let (code, text) = watch.error().await;
    assert_eq!(code, 540);
    assert_eq!(text, "NOT_IMPLEMENTED - immediate=true");
    // A connection-level error: the whole connection is closed.
    assert!(!conn.status().connected());
}

#[tokio::test]
async fn server_generated_consumer_tags() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = new_queue(&ch).await;
    let a = consume(&ch, &q, BasicConsumeOptions::default()).await;
    let b = consume(&ch, &q, BasicConsumeOptions::default()).await;
    for tag in [a.tag(), b.tag()] {
        let suffix = tag
            .as_str()
            .strip_prefix("amq.ctag-")
            .unwrap_or_else(|| panic!("amq.ctag- prefix: {tag}"));
        assert_eq!(suffix.len(), 22, "{tag}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
    assert_ne!(a.tag(), b.tag());
    // A tag already in use on the channel is refused.
    let (code, text) = expect_amqp_error(ch.basic_consume(
        q.as_str().into(),
        a.tag(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        format!("NOT_ALLOWED - attempt to reuse consumer tag '{}'", a.tag())
    );
}

#[tokio::test]
async fn exclusive_consumers_exclude_others() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = new_queue(&ch).await;
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let _sole = consume(&ch, &q, exclusive).await;
    let in_use = format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use");
    let other = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(other.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!((code, text.as_str()), (403, in_use.as_str()));

    let q2 = new_queue(&ch).await;
    let _plain = consume(&ch, &q2, BasicConsumeOptions::default()).await;
    let other = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(other.basic_consume(
        q2.as_str().into(),
        "".into(),
        exclusive,
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        text,
        format!("ACCESS_REFUSED - queue '{q2}' in vhost '/' in exclusive use")
    );
}

#[tokio::test]
async fn basic_get_reports_remaining_and_get_empty() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    publish_all(&ch, &q, &["a", "b", "c"]).await;
    for (expected, remaining) in [("a", 2), ("b", 1), ("c", 0)] {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("get-ok");
        assert_eq!(body(&m.delivery), expected);
        assert_eq!(m.message_count, remaining);
        assert!(!m.delivery.redelivered);
        m.delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
    let empty = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get");
    assert!(empty.is_none(), "get-empty");
}

#[tokio::test]
async fn ack_nack_reject_with_multiple_and_requeue_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    publish_all(&ch, &q, &["m1", "m2", "m3", "m4", "m5", "m6"]).await;
    let mut tags = Vec::new();
    for _ in 0..5 {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("message");
        tags.push(m.delivery.delivery_tag);
    }
    assert_eq!(tags, [1, 2, 3, 4, 5]);
    // ack multiple up to 2: m1, m2 are gone.
    ch.basic_ack(2, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    // nack multiple up to 4 with requeue: m3, m4 go back to where they were.
    ch.basic_nack(
        4,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack");
    // reject m5 without requeue: dropped.
    ch.basic_reject(5, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert_eq!(
        drain(&ch, &q).await,
        owned(&[("m3", true), ("m4", true), ("m6", false)])
    );
}

#[tokio::test]
async fn requeued_messages_return_to_their_original_position() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    publish_all(&ch, &q, &["a", "b", "c", "d"]).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            ch.basic_get(q.as_str().into(), BasicGetOptions::default())
                .await
                .expect("get")
                .expect("message"),
        );
    }
    // Requeue in the reverse order; the queue still reads a, b, c, d.
    for m in got.iter().rev() {
        m.delivery
            .reject(BasicRejectOptions { requeue: true })
            .await
            .expect("reject");
    }
    assert_eq!(
        drain(&ch, &q).await,
        owned(&[("a", true), ("b", true), ("c", true), ("d", false)])
    );
}

#[tokio::test]
async fn unknown_delivery_tag_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    publish_all(&ch, &q, &["x"]).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    // Acking it a second time: the tag is no longer known.
    let watch = common::watch_close(&ch).await;
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack is sent");
    let (code, text) = watch.error().await;
    assert_eq!(code, 406);
    assert_eq!(text, "PRECONDITION_FAILED - unknown delivery tag 1");
    assert!(conn.status().connected(), "a channel error");

    let ch = conn.create_channel().await.expect("channel");
    let watch = common::watch_close(&ch).await;
    ch.basic_reject(99, BasicRejectOptions { requeue: true })
        .await
        .expect("reject is sent");
    let (code, text) = watch.error().await;
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - unknown delivery tag 99")
    );
}

#[tokio::test]
async fn basic_recover_redelivers_unacked() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    publish_all(&ch, &q, &["one", "two"]).await;
    let mut consumer = consume(&ch, &q, BasicConsumeOptions::default()).await;
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert_eq!((body(&first), first.redelivered), ("one".into(), false));
    assert_eq!((body(&second), second.redelivered), ("two".into(), false));
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover-ok");
    let again1 = next(&mut consumer).await;
    let again2 = next(&mut consumer).await;
    assert_eq!((body(&again1), again1.redelivered), ("one".into(), true));
    assert_eq!((body(&again2), again2.redelivered), ("two".into(), true));
    again1
        .ack(BasicAckOptions::default())
        .await
        .expect("ack the new tag");
    again2
        .ack(BasicAckOptions::default())
        .await
        .expect("ack the new tag");
    assert_eq!(ready(&conn, &q).await, 0);
}

#[tokio::test]
async fn closing_channel_or_connection_requeues_unacked() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    publish_all(&ch, &q, &["a", "b", "c"]).await;

    let taker = conn.create_channel().await.expect("channel");
    for _ in 0..2 {
        taker
            .basic_get(q.as_str().into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("message");
    }
    assert_eq!(ready(&conn, &q).await, 1);
    taker.close(200, "bye".into()).await.expect("close");
    assert_eq!(ready(&conn, &q).await, 3);

    let other = broker.connect().await;
    let taker = other.create_channel().await.expect("channel");
    let mut consumer = consume(&taker, &q, BasicConsumeOptions::default()).await;
    for _ in 0..3 {
        next(&mut consumer).await;
    }
    assert_eq!(ready(&conn, &q).await, 0);
    other.close(200, "bye".into()).await.expect("close");
    assert_eq!(
        drain(&ch, &q).await,
        owned(&[("a", true), ("b", true), ("c", true)])
    );
}

#[tokio::test]
async fn per_consumer_prefetch_limits_each_consumer() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(|s| s.as_str()).collect();
    publish_all(&ch, &q, &refs).await;

    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch
        .basic_qos(2, BasicQosOptions { global: false })
        .await
        .expect("qos");
    let mut c1 = consume(&consumer_ch, &q, BasicConsumeOptions::default()).await;
    let mut c2 = consume(&consumer_ch, &q, BasicConsumeOptions::default()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(next(&mut c1).await);
        held.push(next(&mut c2).await);
    }
    // Each consumer holds 2 unacked: 6 stay ready.
    assert_eq!(ready(&conn, &q).await, 6);
    // Acking one of c1's makes room for exactly one more, to c1.
    held[0].ack(BasicAckOptions::default()).await.expect("ack");
    let more = next(&mut c1).await;
    assert_eq!(body(&more), "m4");
    assert_eq!(ready(&conn, &q).await, 5);
}

#[tokio::test]
async fn global_prefetch_limits_the_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(|s| s.as_str()).collect();
    publish_all(&ch, &q, &refs).await;

    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch
        .basic_qos(3, BasicQosOptions { global: true })
        .await
        .expect("qos");
    let mut c1 = consume(&consumer_ch, &q, BasicConsumeOptions::default()).await;
    let mut c2 = consume(&consumer_ch, &q, BasicConsumeOptions::default()).await;
    // Three deliveries in all, shared by the two consumers.
    let mut held = Vec::new();
    while held.len() < 3 {
        tokio::select! {
            d = c1.next() => held.push(d.expect("running").expect("delivery")),
            d = c2.next() => held.push(d.expect("running").expect("delivery")),
            _ = tokio::time::sleep(WAIT) => panic!("deliveries in time"),
        }
    }
    assert_eq!(ready(&conn, &q).await, 7);
    held[0].ack(BasicAckOptions::default()).await.expect("ack");
    // Room for one more on the channel.
    tokio::select! {
        d = c1.next() => held.push(d.expect("running").expect("delivery")),
        d = c2.next() => held.push(d.expect("running").expect("delivery")),
        _ = tokio::time::sleep(WAIT) => panic!("delivery in time"),
    }
    assert_eq!(ready(&conn, &q).await, 6);
}

#[tokio::test]
async fn fair_dispatch_splits_evenly_between_two_consumers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    let a_ch = conn.create_channel().await.expect("channel");
    let b_ch = conn.create_channel().await.expect("channel");
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut a = consume(&a_ch, &q, no_ack).await;
    let mut b = consume(&b_ch, &q, no_ack).await;
    let bodies: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(|s| s.as_str()).collect();
    publish_all(&ch, &q, &refs).await;
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    while to_a.len() + to_b.len() < 100 {
        tokio::select! {
            d = a.next() => to_a.push(body(&d.expect("running").expect("delivery"))),
            d = b.next() => to_b.push(body(&d.expect("running").expect("delivery"))),
            _ = tokio::time::sleep(WAIT) => panic!("deliveries in time"),
        }
    }
    assert_eq!((to_a.len(), to_b.len()), (50, 50));
    // Round robin: each consumer gets every other message, in order.
    let mut all: Vec<&String> = to_a.iter().chain(to_b.iter()).collect();
    all.sort_by_key(|s| s[1..].parse::<u32>().expect("number"));
    assert_eq!(all.len(), 100);
    assert!(
        to_a.windows(2)
            .all(|w| w[0][1..].parse::<u32>().unwrap() + 2 == w[1][1..].parse::<u32>().unwrap()),
        "{to_a:?}"
    );
}

#[tokio::test]
async fn publisher_confirms_ack_every_publish() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = new_queue(&ch).await;
    let mut pending = Vec::new();
    for i in 0..200 {
        pending.push(
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        let c = tokio::time::timeout(WAIT, p)
            .await
            .expect("confirm in time")
            .expect("confirm");
        assert!(matches!(c, Confirmation::Ack(None)), "{c:?}");
    }
    let returned = ch.wait_for_confirms().await.expect("all confirmed");
    assert!(returned.is_empty());
    assert_eq!(ready(&conn, &q).await, 200);
    // An unroutable publish (not mandatory) is acked too.
    let c = ch
        .basic_publish(
            "".into(),
            unique("nobody").as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(matches!(c, Confirmation::Ack(None)), "{c:?}");
}

#[tokio::test]
async fn transactions_cover_publishes_and_acks() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let setup = confirm_channel(&conn).await;
    let q = new_queue(&setup).await;
    publish_all(&setup, &q, &["held"]).await;

    let ch = conn.create_channel().await.expect("channel");
    ch.tx_select().await.expect("tx.select");
    for b in ["t1", "t2"] {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let held = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    assert_eq!(body(&held.delivery), "held");
    held.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    // Nothing is visible before commit.
    assert_eq!(ready(&conn, &q).await, 0);
    ch.tx_rollback().await.expect("tx.rollback");
    assert_eq!(ready(&conn, &q).await, 0, "rolled back publishes are gone");
    // The rolled back ack leaves the message unacked; ack it again and commit.
    for b in ["t3"] {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    ch.basic_ack(held.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.tx_commit().await.expect("tx.commit");
    assert_eq!(drain(&setup, &q).await, owned(&[("t3", false)]));
    // The acked message is not requeued when the channel closes.
    ch.close(200, "bye".into()).await.expect("close");
    assert_eq!(ready(&conn, &q).await, 0);

    // Commit without select is a channel error.
    let plain = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(plain.tx_commit()).await;
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - channel is not transactional")
    );
}

#[tokio::test]
async fn a_channel_error_closes_only_that_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let good = confirm_channel(&conn).await;
    let q = new_queue(&good).await;
    let bad = conn.create_channel().await.expect("channel");
    let _ = expect_amqp_error(bad.queue_declare(
        unique("nope").as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    publish_all(&good, &q, &["still fine"]).await;
    assert_eq!(drain(&good, &q).await, owned(&[("still fine", false)]));
    // channel.flow(active=true) is answered with flow-ok(true).
    assert!(
        good.channel_flow(ChannelFlowOptions { active: true })
            .await
            .expect("flow-ok")
    );
}

#[tokio::test]
async fn channel_flow_inactive_is_540() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (code, text) =
        expect_amqp_error(ch.channel_flow(ChannelFlowOptions { active: false })).await;
    assert_eq!(
        (code, text.as_str()),
        (540, "NOT_IMPLEMENTED - active=false")
    );
    assert!(!conn.status().connected(), "540 closes the connection");
}

/// Confirms on the wire: every publish is covered exactly once, in order, by
/// basic.ack frames that may use `multiple` (RabbitMQ coalesces them).
#[tokio::test]
async fn confirms_on_the_wire_cover_every_publish_once() {
    use amq_protocol::frame::AMQPFrame;
    use amq_protocol::protocol::{AMQPClass, basic, confirm};
    use common::raw::{Got, Raw, publish_frames};
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, 131_072).await;
    raw.send_method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
    )
    .await;
    match raw.next_method().await {
        Some((1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))) => {}
        other => panic!("expected confirm.select-ok, got {other:?}"),
    }
    let q = unique("wire");
    raw.declare_queue(1, &q, false, true).await;
    // 200 publishes in one write: header with empty properties, one body byte each.
    let mut bytes = Vec::new();
    for _ in 0..200 {
        bytes.extend(publish_frames(1, &q, b"x"));
    }
    raw.send(&bytes).await;
    let mut confirmed = 0u64;
    while confirmed < 200 {
        match raw.next().await {
            Got::Frame(AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Ack(a)))) => {
                if a.multiple {
                    assert!(a.delivery_tag > confirmed, "{a:?} after {confirmed}");
                } else {
                    assert_eq!(a.delivery_tag, confirmed + 1, "acks in order");
                }
                confirmed = a.delivery_tag;
            }
            Got::Frame(AMQPFrame::Heartbeat) => {}
            other => panic!("expected basic.ack, got {other:?}"),
        }
    }
    assert_eq!(confirmed, 200);
    drop(raw); // or stopping waits for this client's close-ok
}

/// With a channel-wide prefetch (basic.qos global), a no-ack consumer takes no credit
/// but waits while the channel's limit is used up by its other consumers.
#[tokio::test]
async fn no_ack_consumer_waits_for_the_channel_limit() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .expect("qos");
    let (acked, free) = (new_queue(&ch).await, new_queue(&ch).await);
    let mut manual = consume(&ch, &acked, BasicConsumeOptions::default()).await;
    let publisher = confirm_channel(&conn).await;
    publish_all(&publisher, &acked, &["held"]).await;
    let held = next(&mut manual).await;
    let mut auto = consume(
        &ch,
        &free,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    publish_all(&publisher, &free, &["waits"]).await;
    let early = tokio::time::timeout(Duration::from_millis(300), auto.next()).await;
    assert!(
        early.is_err(),
        "delivered past the channel limit: {early:?}"
    );
    held.ack(BasicAckOptions::default()).await.expect("ack");
    assert_eq!(body(&next(&mut auto).await), "waits");
}

/// Messages a queue dispatched to a consumer before its basic.cancel arrived reach
/// that consumer before cancel-ok; none are handed to another consumer. The
/// publishes and the cancel come in one write, as a client that batches its frames
/// sends them.
#[tokio::test]
async fn deliveries_dispatched_before_a_cancel_reach_the_cancelled_consumer() {
    use amq_protocol::frame::AMQPFrame;
    use amq_protocol::protocol::{AMQPClass, basic};
    use common::raw::{Got, Raw, method_frame, publish_frames};
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, 131_072).await;
    let q = unique("prio");
    raw.declare_queue(1, &q, false, true).await;
    for (tag, priority) in [("high", 1), ("low", 0)] {
        let mut arguments = FieldTable::default();
        arguments.insert("x-priority".into(), AMQPValue::LongInt(priority));
        raw.send_method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: q.as_str().into(),
                consumer_tag: tag.into(),
                no_local: false,
                no_ack: true,
                exclusive: false,
                nowait: false,
                arguments,
            })),
        )
        .await;
        assert!(matches!(
            raw.next_method().await,
            Some((1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))))
        ));
    }
    let mut bytes = Vec::new();
    for _ in 0..10 {
        bytes.extend(publish_frames(1, &q, b"x"));
    }
    bytes.extend(method_frame(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: "high".into(),
            nowait: false,
        })),
    ));
    raw.send(&bytes).await;
    let mut to_high = 0;
    loop {
        match raw.next().await {
            Got::Frame(AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Deliver(d)))) => {
                assert_eq!(d.consumer_tag.as_str(), "high", "delivery {to_high}");
                to_high += 1;
            }
            Got::Frame(AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::CancelOk(_)))) => {
                break;
            }
            Got::Frame(_) => {}
            Got::Eof => panic!("connection closed"),
        }
    }
    assert_eq!(to_high, 10, "all ten reach the consumer before cancel-ok");
    drop(raw);
}

/// With a channel-wide prefetch of 1 shared by consumers of three queues, the freed
/// credit goes round the queues rather than always back to the acked one.
#[tokio::test]
async fn channel_prefetch_is_shared_fairly_between_queues() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let publisher = confirm_channel(&conn).await;
    let ch = conn.create_channel().await.expect("channel");
    let mut queues = Vec::new();
    for _ in 0..3 {
        let q = new_queue(&ch).await;
        let bodies: Vec<String> = (0..50).map(|i| format!("{i}")).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        publish_all(&publisher, &q, &refs).await;
        queues.push(q);
    }
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .expect("qos");
    let mut consumers = Vec::new();
    for q in &queues {
        consumers.push(consume(&ch, q, BasicConsumeOptions::default()).await);
    }
    let mut all = consumers
        .pop()
        .expect("three")
        .or(consumers.pop().expect("two"))
        .or(consumers.pop().expect("one"));
    for _ in 0..30 {
        let d = tokio::time::timeout(Duration::from_secs(10), all.next())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    for q in &queues {
        let left = ready(&conn, q).await;
        assert!(left < 50, "queue {q} was never served: {left} left");
    }
}

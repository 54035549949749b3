//! Queue arguments through lapin: TTL, expiry, length limits, dead-lettering,
//! priorities, single active consumer, consumer priorities, queue types, and the
//! argument checks, with RabbitMQ's texts and headers.

mod common;

use common::{TestBroker, publish_confirmed as publish, unique};
use lapin::message::BasicGetMessage;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn int(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

async fn declare(ch: &Channel, name: &str, arguments: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare");
}

async fn declare_durable(ch: &Channel, name: &str, arguments: FieldTable) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        arguments,
    )
    .await
    .expect("queue.declare");
}

async fn get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
}

/// Polls a queue until a message arrives (messages that move on a timer).
async fn wait_get(ch: &Channel, queue: &str) -> BasicGetMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = get(ch, queue).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a message arrives")
}

fn header<'a>(m: &'a BasicGetMessage, key: &str) -> Option<&'a AMQPValue> {
    m.delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key))
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// The x-death entries of a message, most recent first.
fn deaths(m: &BasicGetMessage) -> Vec<FieldTable> {
    match header(m, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

fn field<'a>(t: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    t.inner().get(key)
}

fn count(t: &FieldTable) -> i64 {
    match field(t, "count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("count is not a long: {other:?}"),
    }
}

async fn declare_err(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    a: FieldTable,
) -> String {
    ch.queue_declare(name.into(), options, a)
        .await
        .expect_err("declare is refused")
        .to_string()
}

/// A fanout dead-letter exchange with one queue behind it.
async fn dead_letter_target(ch: &Channel) -> (String, String) {
    let dlx = unique("dlx");
    let dead = unique("dead");
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    declare(ch, &dead, FieldTable::default()).await;
    ch.queue_bind(
        dead.as_str().into(),
        dlx.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
    (dlx, dead)
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_with_x_death() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let (dlx, dead) = dead_letter_target(&ch).await;
    let work = unique("work");
    declare(
        &ch,
        &work,
        args(&[
            ("x-message-ttl", int(30)),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    publish(
        &ch,
        "",
        &work,
        b"late",
        BasicProperties::default().with_message_id("m1".into()),
    )
    .await;
    let m = wait_get(&ch, &dead).await;
    assert_eq!(m.delivery.data, b"late");
    assert_eq!(m.delivery.exchange.as_str(), dlx);
    assert_eq!(
        m.delivery.routing_key.as_str(),
        work,
        "original routing key kept"
    );
    assert_eq!(
        m.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|v| v.as_str()),
        Some("m1")
    );
    let d = deaths(&m);
    assert_eq!(d.len(), 1);
    assert_eq!(count(&d[0]), 1);
    assert_eq!(text(field(&d[0], "reason")), "expired");
    assert_eq!(text(field(&d[0], "queue")), work);
    assert_eq!(text(field(&d[0], "exchange")), "");
    assert!(matches!(
        field(&d[0], "time"),
        Some(AMQPValue::Timestamp(_))
    ));
    match field(&d[0], "routing-keys") {
        Some(AMQPValue::FieldArray(a)) => {
            assert_eq!(a.as_slice(), &[s(&work)]);
        }
        other => panic!("routing-keys: {other:?}"),
    }
    assert_eq!(text(header(&m, "x-first-death-reason")), "expired");
    assert_eq!(text(header(&m, "x-first-death-queue")), work);
    assert_eq!(text(header(&m, "x-first-death-exchange")), "");
    // x-last-death-* exist since RabbitMQ 3.13 (Debian's 3.10 lacks them).
    assert_eq!(text(header(&m, "x-last-death-reason")), "expired");
    assert!(get(&ch, &work).await.is_none(), "expired message is gone");
}

#[tokio::test]
async fn per_message_expiration_and_original_expiration() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let (dlx, dead) = dead_letter_target(&ch).await;
    let q = unique("delay");
    declare(&ch, &q, args(&[("x-dead-letter-exchange", s(&dlx))])).await;
    publish(
        &ch,
        "",
        &q,
        b"later",
        BasicProperties::default().with_expiration("40".into()),
    )
    .await;
    let m = wait_get(&ch, &dead).await;
    assert_eq!(m.delivery.data, b"later");
    assert_eq!(
        m.delivery.properties.expiration(),
        &None,
        "a dead-lettered copy has no expiration"
    );
    let d = deaths(&m);
    assert_eq!(text(field(&d[0], "original-expiration")), "40");

    // A message with a long expiration is delivered normally.
    publish(
        &ch,
        "",
        &q,
        b"soon",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    let m = get(&ch, &q).await.expect("not expired yet");
    assert_eq!(m.delivery.data, b"soon");
}

#[tokio::test]
async fn invalid_expiration_is_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("q");
    declare(&ch, &q, FieldTable::default()).await;
    // basic.publish has no reply: the channel error is read from a watch armed first.
    let watch = common::watch_close(&ch).await;
    publish(
        &ch,
        "",
        &q,
        b"x",
        BasicProperties::default().with_expiration("soon".into()),
    )
    .await;
    let (code, t) = watch.error().await;
    assert_eq!(code, 406);
    assert!(
        t.contains("PRECONDITION_FAILED - invalid expiration 'soon': no_integer"),
        "{t}"
    );
}

#[tokio::test]
async fn ttl_zero_delivers_to_a_waiting_consumer_or_drops() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("now");
    declare(&ch, &q, args(&[("x-message-ttl", int(0))])).await;
    publish(&ch, "", &q, b"nobody", BasicProperties::default()).await;
    // A basic.get round trip after the publish: the message is already gone.
    assert!(get(&ch, &q).await.is_none());

    let mut consumer = common::consume_no_ack(&ch, &q, "").await;
    publish(&ch, "", &q, b"someone", BasicProperties::default()).await;
    let d = common::next(&mut consumer).await;
    assert_eq!(d.data, b"someone");
}

#[tokio::test]
async fn unused_queue_expires() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("expiring");
    declare(&ch, &q, args(&[("x-expires", int(50))])).await;
    let gone = tokio::time::timeout(WAIT, async {
        loop {
            let (_c2, probe) = broker.channel().await;
            let r = probe
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if let Err(e) = r {
                return e.to_string();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("queue expires");
    assert!(gone.contains("NOT_FOUND - no queue"), "{gone}");
}

#[tokio::test]
async fn queue_with_a_consumer_does_not_expire() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("kept");
    declare(&ch, &q, args(&[("x-expires", int(50))])).await;
    let _consumer = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_c2, probe) = broker.channel().await;
    probe
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("still there while consumed");
}

#[tokio::test]
async fn max_length_drops_head_into_dlx() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let (dlx, dead) = dead_letter_target(&ch).await;
    let q = unique("bounded");
    declare(
        &ch,
        &q,
        args(&[
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    for b in [b"1", b"2", b"3"] {
        publish(&ch, "", &q, b, BasicProperties::default()).await;
    }
    let m = wait_get(&ch, &dead).await;
    assert_eq!(m.delivery.data, b"1");
    assert_eq!(text(field(&deaths(&m)[0], "reason")), "maxlen");
    assert_eq!(get(&ch, &q).await.expect("2").delivery.data, b"2");
    assert_eq!(get(&ch, &q).await.expect("3").delivery.data, b"3");
    assert!(get(&ch, &q).await.is_none());
}

#[tokio::test]
async fn max_length_bytes_counts_bodies() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("bytes");
    declare(&ch, &q, args(&[("x-max-length-bytes", int(10))])).await;
    for b in [&b"12345"[..], &b"67890"[..], &b"abc"[..]] {
        publish(&ch, "", &q, b, BasicProperties::default()).await;
    }
    let first = get(&ch, &q).await.expect("one left");
    assert_eq!(first.delivery.data, b"67890");
    assert_eq!(first.message_count, 1);
}

#[tokio::test]
async fn reject_publish_nacks_the_publisher() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("full");
    declare(
        &ch,
        &q,
        args(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    // Mandatory: a queue that refuses the message is not "no route", so nothing
    // comes back as basic.return; the confirm alone says it was refused.
    let mut outcomes = Vec::new();
    for b in [&b"kept"[..], &b"refused"[..]] {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        outcomes.push(confirm.await.expect("confirm"));
    }
    assert!(
        matches!(outcomes[0], Confirmation::Ack(_)),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(outcomes[1], Confirmation::Nack(None)),
        "a nack without a returned message: {:?}",
        outcomes[1]
    );
    let m = get(&ch, &q).await.expect("first kept");
    assert_eq!(m.delivery.data, b"kept");
    assert_eq!(m.message_count, 0);
}

/// A transaction one of whose messages a full queue refuses: the rest is applied and
/// tx.commit fails with 406 "partial tx completion", as in RabbitMQ.
#[tokio::test]
async fn reject_publish_fails_the_transaction() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("full");
    declare(
        &ch,
        &q,
        args(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    let (_c2, tx) = broker.channel().await;
    tx.tx_select().await.expect("tx.select");
    for b in [&b"kept"[..], &b"refused"[..]] {
        tx.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b,
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let (code, text) = common::expect_amqp_error(tx.tx_commit()).await;
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - partial tx completion")
    );
    let m = get(&ch, &q).await.expect("first kept");
    assert_eq!(m.delivery.data, b"kept");
    assert_eq!(m.message_count, 0);
}

#[tokio::test]
async fn reject_publish_dlx_dead_letters_the_refused_message() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let (dlx, dead) = dead_letter_target(&ch).await;
    let q = unique("full");
    declare(
        &ch,
        &q,
        args(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish-dlx")),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"kept", BasicProperties::default()).await;
    publish(&ch, "", &q, b"refused", BasicProperties::default()).await;
    let m = wait_get(&ch, &dead).await;
    assert_eq!(m.delivery.data, b"refused");
    assert_eq!(text(field(&deaths(&m)[0], "reason")), "maxlen");
    assert_eq!(get(&ch, &q).await.expect("kept").delivery.data, b"kept");
}

#[tokio::test]
async fn rejected_messages_use_the_dead_letter_routing_key() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let dead = unique("dead");
    declare(&ch, &dead, FieldTable::default()).await;
    let q = unique("work");
    declare(
        &ch,
        &q,
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dead)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"bad", BasicProperties::default()).await;
    publish(&ch, "", &q, b"worse", BasicProperties::default()).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let m2 = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    m2.delivery
        .nack(BasicNackOptions {
            requeue: false,
            multiple: false,
        })
        .await
        .expect("nack");
    let d1 = wait_get(&ch, &dead).await;
    assert_eq!(d1.delivery.data, b"bad");
    assert_eq!(d1.delivery.routing_key.as_str(), dead);
    assert_eq!(text(field(&deaths(&d1)[0], "reason")), "rejected");
    let d2 = wait_get(&ch, &dead).await;
    assert_eq!(d2.delivery.data, b"worse");
}

#[tokio::test]
async fn reject_without_dlx_drops_the_message() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("plain");
    declare(&ch, &q, FieldTable::default()).await;
    publish(&ch, "", &q, b"x", BasicProperties::default()).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert!(get(&ch, &q).await.is_none());
}

/// work --reject--> retry exchange --> wait queue (TTL) --expire--> work again.
#[tokio::test]
async fn retry_pattern_counts_deaths() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let work = unique("work");
    let wait = unique("wait");
    let retry = unique("retry");
    ch.exchange_declare(
        retry.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    declare(&ch, &work, args(&[("x-dead-letter-exchange", s(&retry))])).await;
    declare(
        &ch,
        &wait,
        args(&[
            ("x-message-ttl", int(30)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&work)),
        ]),
    )
    .await;
    ch.queue_bind(
        wait.as_str().into(),
        retry.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    publish(&ch, "", &work, b"job", BasicProperties::default()).await;

    for attempt in 1..=3i64 {
        let m = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(m) = ch
                    .basic_get(work.as_str().into(), BasicGetOptions::default())
                    .await
                    .expect("get")
                {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the job comes back");
        assert_eq!(m.delivery.data, b"job");
        if attempt > 1 {
            let d = deaths(&m);
            assert_eq!(d.len(), 2, "one entry per (queue, reason)");
            assert_eq!(text(field(&d[0], "queue")), wait);
            assert_eq!(text(field(&d[0], "reason")), "expired");
            assert_eq!(count(&d[0]), attempt - 1);
            assert_eq!(text(field(&d[1], "queue")), work);
            assert_eq!(text(field(&d[1], "reason")), "rejected");
            assert_eq!(count(&d[1]), attempt - 1);
            assert_eq!(text(header(&m, "x-first-death-reason")), "rejected");
            assert_eq!(text(header(&m, "x-first-death-queue")), work);
            assert_eq!(text(header(&m, "x-last-death-reason")), "expired");
            assert_eq!(text(header(&m, "x-last-death-queue")), wait);
        }
        m.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    }
}

#[tokio::test]
async fn automatic_dead_letter_cycle_is_dropped() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("loop");
    declare(
        &ch,
        &q,
        args(&[
            ("x-message-ttl", int(20)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&q)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"round", BasicProperties::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(get(&ch, &q).await.is_none(), "the cycle was broken");
}

#[tokio::test]
async fn delayed_job_pattern() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let jobs = unique("jobs");
    let delay = unique("delay");
    declare(&ch, &jobs, FieldTable::default()).await;
    declare(
        &ch,
        &delay,
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&jobs)),
        ]),
    )
    .await;
    let mut consumer = ch
        .basic_consume(
            jobs.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    publish(
        &ch,
        "",
        &delay,
        b"run later",
        BasicProperties::default().with_expiration("50".into()),
    )
    .await;
    let d = common::next(&mut consumer).await;
    assert_eq!(d.data, b"run later");
    assert_eq!(d.routing_key.as_str(), jobs);
    d.ack(BasicAckOptions::default()).await.expect("ack");
}

#[tokio::test]
async fn priority_queue_orders_by_priority_then_fifo() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("prio");
    declare(&ch, &q, args(&[("x-max-priority", int(10))])).await;
    let sends: [(&[u8], Option<u8>); 6] = [
        (b"p1", Some(1)),
        (b"p5a", Some(5)),
        (b"none", None),
        (b"p10", Some(10)),
        (b"p5b", Some(5)),
        (b"p200", Some(200)),
    ];
    for (body, p) in sends {
        let props = match p {
            Some(p) => BasicProperties::default().with_priority(p),
            None => BasicProperties::default(),
        };
        publish(&ch, "", &q, body, props).await;
    }
    let mut order = Vec::new();
    while let Some(m) = get(&ch, &q).await {
        order.push(String::from_utf8(m.delivery.data).expect("utf8"));
    }
    // A priority above the maximum counts as the maximum.
    assert_eq!(order, ["p10", "p200", "p5a", "p5b", "p1", "none"]);
}

#[tokio::test]
async fn single_active_consumer_hands_over_on_cancel() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("sac");
    declare(
        &ch,
        &q,
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut first = ch
        .basic_consume(
            q.as_str().into(),
            "first".into(),
            opts,
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut second = ch
        .basic_consume(
            q.as_str().into(),
            "second".into(),
            opts,
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..4u8 {
        publish(&ch, "", &q, &[i], BasicProperties::default()).await;
    }
    for i in 0..4u8 {
        let d = common::next(&mut first).await;
        assert_eq!(d.data, [i]);
    }
    ch.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "", &q, b"next", BasicProperties::default()).await;
    let d = common::next(&mut second).await;
    assert_eq!(d.data, b"next");
}

#[tokio::test]
async fn higher_priority_consumer_is_served_first() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("cprio");
    declare(&ch, &q, FieldTable::default()).await;
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut low = ch
        .basic_consume(q.as_str().into(), "low".into(), opts, FieldTable::default())
        .await
        .expect("consume");
    let mut high = ch
        .basic_consume(
            q.as_str().into(),
            "high".into(),
            opts,
            args(&[("x-priority", int(10))]),
        )
        .await
        .expect("consume");
    for i in 0..10u8 {
        publish(&ch, "", &q, &[i], BasicProperties::default()).await;
    }
    for i in 0..10u8 {
        let d = common::next(&mut high).await;
        assert_eq!(d.data, [i]);
    }
    ch.basic_cancel("high".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "", &q, b"low", BasicProperties::default()).await;
    let d = common::next(&mut low).await;
    assert_eq!(d.data, b"low");
}

#[tokio::test]
async fn queue_types() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("quorum");
    declare_durable(&ch, &q, args(&[("x-queue-type", s("quorum"))])).await;
    publish(&ch, "", &q, b"q", BasicProperties::default()).await;
    assert_eq!(get(&ch, &q).await.expect("works").delivery.data, b"q");
    let classic = unique("classic");
    declare(&ch, &classic, args(&[("x-queue-type", s("classic"))])).await;

    let (_c2, ch2) = broker.channel().await;
    let bad = unique("nd");
    let t = declare_err(
        &ch2,
        &bad,
        QueueDeclareOptions::default(),
        args(&[("x-queue-type", s("quorum"))]),
    )
    .await;
    assert!(
        t.contains(&format!(
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue '{bad}' in vhost '/'"
        )),
        "{t}"
    );
    // An unknown queue type is refused (streams have tests/streams.rs).
    let (_c3, ch3) = broker.channel().await;
    let odd = unique("odd");
    let t = declare_err(
        &ch3,
        &odd,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args(&[("x-queue-type", s("lake"))]),
    )
    .await;
    assert!(
        t.contains(&format!(
            "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{odd}' in vhost '/'"
        )),
        "{t}"
    );
}

#[tokio::test]
async fn invalid_arguments_get_rabbitmq_texts() {
    let broker = TestBroker::start().await;
    let cases: Vec<(FieldTable, &str)> = vec![
        (
            args(&[("x-message-ttl", int(-5))]),
            "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': {value_negative,-5}",
        ),
        (
            args(&[("x-expires", int(0))]),
            "invalid arg 'x-expires' for queue '{q}' in vhost '/': {value_zero,0}",
        ),
        (
            args(&[("x-max-length", s("ten"))]),
            "invalid arg 'x-max-length' for queue '{q}' in vhost '/': \"expected integer, got longstr\"",
        ),
        (
            args(&[("x-overflow", s("drop-tail"))]),
            "invalid arg 'x-overflow' for queue '{q}' in vhost '/': invalid_overflow",
        ),
        (
            args(&[("x-max-priority", int(300))]),
            "invalid arg 'x-max-priority' for queue '{q}' in vhost '/': {max_value_exceeded,300}",
        ),
        (
            args(&[("x-dead-letter-exchange", int(1))]),
            "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'",
        ),
    ];
    for (a, expected) in cases {
        let (_c, ch) = broker.channel().await;
        let q = unique("bad");
        let t = declare_err(&ch, &q, QueueDeclareOptions::default(), a).await;
        let expected = format!("PRECONDITION_FAILED - {}", expected.replace("{q}", &q));
        assert!(t.contains(&expected), "{t}\nexpected: {expected}");
    }
}

#[tokio::test]
async fn arguments_and_expiry_survive_restart() {
    let broker = TestBroker::start().await;
    let q = unique("durable-ttl");
    let dead = unique("durable-dead");
    let ttl_args = args(&[
        ("x-message-ttl", int(200)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(&dead)),
    ]);
    {
        let (_c, ch) = broker.channel().await;
        declare_durable(&ch, &dead, FieldTable::default()).await;
        declare_durable(&ch, &q, ttl_args.clone()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b"persisted",
                common::persistent(),
            )
            .await
            .expect("publish");
        assert!(matches!(
            confirm.await.expect("confirm"),
            Confirmation::Ack(_)
        ));
    }
    let data = broker.data_dir();
    if data.is_none() {
        // Against an external broker there is nothing to restart.
        return;
    }
    let broker = broker.restart().await;
    // The message expired while the broker was down, or expires now: either way it
    // is dead-lettered, not lost and not delivered from the TTL queue.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_c, ch) = broker.channel().await;
    let m = wait_get(&ch, &dead).await;
    assert_eq!(m.delivery.data, b"persisted");
    assert_eq!(text(field(&deaths(&m)[0], "reason")), "expired");
    assert!(get(&ch, &q).await.is_none());
    // The arguments came back with the queue: the same redeclare is accepted, a
    // different one refused.
    declare_durable(&ch, &q, ttl_args).await;
    let t = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("args differ")
        .to_string();
    assert!(t.contains("inequivalent arg 'x-message-ttl'"), "{t}");
}

/// A dead-lettered message that was published with a CC header is routed on its CC
/// keys too (when the queue sets no dead-letter routing key), and x-death lists its
/// routing key and the CC keys.
#[tokio::test]
async fn dead_lettering_routes_on_cc_keys_too() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let dlx = unique("dlx");
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    let q = unique("work");
    declare(&ch, &q, args(&[("x-dead-letter-exchange", s(&dlx))])).await;
    let mut dead = Vec::new();
    for key in [q.as_str(), "copy"] {
        let d = unique("dead");
        declare(&ch, &d, FieldTable::default()).await;
        ch.queue_bind(
            d.as_str().into(),
            dlx.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
        dead.push(d);
    }
    let mut headers = FieldTable::default();
    headers.insert(
        "CC".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString("copy".into())].into()),
    );
    publish(
        &ch,
        "",
        &q,
        b"job",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("the message");
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    for d in &dead {
        let m = wait_get(&ch, d).await;
        assert_eq!(m.delivery.data, b"job");
        let keys = match field(&deaths(&m)[0], "routing-keys") {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|v| text(Some(v)))
                .collect::<Vec<_>>(),
            other => panic!("routing-keys: {other:?}"),
        };
        assert_eq!(keys, vec![q.clone(), "copy".to_owned()]);
    }
}

/// A requeued message counts against x-max-length again: a drop-head queue drops
/// (dead-letters) from its head after the requeue.
#[tokio::test]
async fn requeue_over_max_length_drops_head() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let (dlx, dead) = dead_letter_target(&ch).await;
    let q = unique("short");
    declare(
        &ch,
        &q,
        args(&[
            ("x-max-length", int(1)),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"first", BasicProperties::default()).await;
    let taken = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("first");
    publish(&ch, "", &q, b"second", BasicProperties::default()).await;
    taken
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("nack");
    let m = wait_get(&ch, &dead).await;
    assert_eq!(m.delivery.data, b"first");
    assert_eq!(text(field(&deaths(&m)[0], "reason")), "maxlen");
    let left = get(&ch, &q).await.expect("one left");
    assert_eq!(left.delivery.data, b"second");
    assert_eq!(left.message_count, 0);
}

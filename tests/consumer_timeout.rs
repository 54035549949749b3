//! The consumer timeout: a delivery left unacknowledged longer than the broker's
//! `consumer_timeout` (or its queue's `x-consumer-timeout` / `consumer-timeout`
//! policy) closes its channel with 406, and the delivery goes back to its queue
//! redelivered. These run against Warren only: RabbitMQ's channel looks once a
//! minute, so the reference would need minutes per test.

mod common;

use common::{TestBroker, amqp_error, next, publish_confirmed, unique};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use std::time::Duration;

fn text(ms: u64) -> String {
    format!(
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. \
         Timeout value used: {ms} ms. This timeout value can be configured, see consumers \
         doc guide to learn more"
    )
}

async fn declare(ch: &lapin::Channel, name: &str, args: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .expect("declare");
}

async fn consume(ch: &lapin::Channel, queue: &str, no_ack: bool) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("consume")
}

/// The close the consumer's channel gets, as lapin reports it to the consumer.
async fn closed(consumer: &mut lapin::Consumer) -> (u16, String) {
    match tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("the channel is closed in time")
    {
        Some(Err(e)) => amqp_error(&e),
        other => panic!("expected the channel to close, got {other:?}"),
    }
}

/// The message is back in the queue, marked redelivered.
async fn requeued(broker: &TestBroker, queue: &str, body: &[u8]) {
    let (_conn, ch) = broker.channel().await;
    let got = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the message is back");
    assert_eq!(got.delivery.data, body);
    assert!(got.delivery.redelivered);
}

#[tokio::test]
async fn an_unacked_delivery_past_the_timeout_closes_the_channel_and_is_requeued() {
    let broker = TestBroker::start_with(|c| c.consumer_timeout_ms = Some(400)).await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("ct.global");
    declare(&ch, &q, FieldTable::default()).await;
    publish_confirmed(&ch, "", &q, b"held", Default::default()).await;
    let mut consumer = consume(&ch, &q, false).await;
    let d = next(&mut consumer).await;
    assert_eq!(d.data, b"held");
    assert_eq!(closed(&mut consumer).await, (406, text(400)));
    requeued(&broker, &q, b"held").await;
}

#[tokio::test]
async fn a_queue_argument_sets_a_shorter_timeout_for_its_deliveries() {
    // The broker's own timeout stays at RabbitMQ's 30 minutes.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("ct.arg");
    let mut args = FieldTable::default();
    args.insert("x-consumer-timeout".into(), AMQPValue::LongInt(300));
    declare(&ch, &q, args).await;
    publish_confirmed(&ch, "", &q, b"one", Default::default()).await;
    // A basic.get without no-ack counts as much as a consumer's delivery.
    let got = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(got.delivery.data, b"one");
    let watch = common::watch_close(&ch).await;
    assert_eq!(watch.error().await, (406, text(300)));
    requeued(&broker, &q, b"one").await;
}

#[tokio::test]
async fn a_policy_sets_the_timeout_and_the_lower_of_argument_and_policy_wins() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let q = unique("ctpol");
    let r = api
        .put(
            "/api/policies/%2F/ctpol",
            json!({"pattern": format!("^{q}$"), "definition": {"consumer-timeout": 350},
                   "apply-to": "queues"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let (_conn, ch) = broker.channel().await;
    let mut args = FieldTable::default();
    args.insert("x-consumer-timeout".into(), AMQPValue::LongInt(600_000));
    declare(&ch, &q, args).await;
    publish_confirmed(&ch, "", &q, b"p", Default::default()).await;
    let mut consumer = consume(&ch, &q, false).await;
    next(&mut consumer).await;
    assert_eq!(closed(&mut consumer).await, (406, text(350)));
}

#[tokio::test]
async fn acknowledged_and_no_ack_deliveries_never_time_out() {
    let broker = TestBroker::start_with(|c| c.consumer_timeout_ms = Some(300)).await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("ct.acked");
    declare(&ch, &q, FieldTable::default()).await;
    let q2 = unique("ct.noack");
    declare(&ch, &q2, FieldTable::default()).await;
    let mut acking = consume(&ch, &q, false).await;
    let mut no_ack = consume(&ch, &q2, true).await;
    // Well past several timeouts, with each delivery acked as it comes.
    for i in 0..12u8 {
        publish_confirmed(&ch, "", &q, &[i], Default::default()).await;
        publish_confirmed(&ch, "", &q2, &[i], Default::default()).await;
        let d = next(&mut acking).await;
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
        assert_eq!(next(&mut no_ack).await.data, [i]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ch.status().connected(), "the channel is still open");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the channel still answers");
}

#[tokio::test]
async fn a_negative_x_consumer_timeout_is_refused() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("ct.neg");
    let mut args = FieldTable::default();
    args.insert("x-consumer-timeout".into(), AMQPValue::LongInt(-1));
    let e = ch
        .queue_declare(q.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .expect_err("refused");
    assert_eq!(
        amqp_error(&e),
        (
            406,
            format!(
                "PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue '{q}' in vhost '/': {{value_negative,-1}}"
            )
        )
    );
}

//! The shortest end-to-end path: declare, publish, consume, ack.

mod common;

use common::TestBroker;
use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;

#[tokio::test]
async fn publish_then_consume_round_trip() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    ch.basic_publish(
        "".into(),
        q.name().as_str().into(),
        BasicPublishOptions::default(),
        b"hello",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let mut consumer = ch
        .basic_consume(
            q.name().as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("delivery in time")
        .expect("a delivery")
        .expect("no error");
    assert_eq!(delivery.data, b"hello");
    assert!(!delivery.redelivered);
    delivery.ack(BasicAckOptions::default()).await.expect("ack");
}

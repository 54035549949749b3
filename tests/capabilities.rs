//! Capabilities advertised in connection.start that need more than one method:
//! direct reply-to and connection.blocked.

mod common;

use common::TestBroker;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Event};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn direct_reply_to_round_trip() {
    let broker = TestBroker::start().await;
    let (_server_conn, server) = broker.channel().await;
    server
        .queue_declare(
            "rpc".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let mut requests = server
        .basic_consume(
            "rpc".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let (_client_conn, client) = broker.channel().await;
    let mut replies = common::consume_no_ack(&client, "amq.rabbitmq.reply-to", "").await;
    client
        .basic_publish(
            "".into(),
            "rpc".into(),
            BasicPublishOptions::default(),
            b"ping",
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("42".into()),
        )
        .await
        .expect("request");

    let request = common::next(&mut requests).await;
    let reply_to = request
        .properties
        .reply_to()
        .clone()
        .expect("reply_to is set");
    assert!(
        reply_to.as_str().starts_with("amq.rabbitmq.reply-to."),
        "reply_to rewritten to a routable name, got {reply_to}"
    );
    server
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions::default(),
            b"pong",
            BasicProperties::default().with_correlation_id("42".into()),
        )
        .await
        .expect("reply");
    request.ack(BasicAckOptions::default()).await.expect("ack");

    let reply = common::next(&mut replies).await;
    assert_eq!(reply.data, b"pong");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("42")
    );
}

#[tokio::test]
async fn reply_to_without_reply_consumer_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // basic.publish has no reply: the channel error is read from a watch armed first.
    let watch = common::watch_close(&ch).await;
    ch.basic_publish(
        "".into(),
        "anything".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await
    .expect("publish is sent");
    let (code, text) = watch.error().await;
    assert_eq!(code, 406);
    assert!(
        text.contains("PRECONDITION_FAILED - fast reply consumer does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn reply_consumer_must_be_no_ack() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let err = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("ack-mode reply consumer refused");
    assert!(err.to_string().contains("PRECONDITION_FAILED"), "{err}");
}

#[tokio::test]
async fn memory_alarm_blocks_publishers_and_unblocks_when_drained() {
    // Only what messages hold counts here: the test process's own resident memory
    // is far above so small a watermark.
    let broker = TestBroker::start_with(|c| {
        c.memory_high_watermark = 256 * 1024;
        c.memory_calculation_strategy = warren::config::MemoryStrategy::Allocated;
    })
    .await;
    let publisher = broker.connect().await;
    let mut events = publisher.events_listener();
    let ch = publisher.create_channel().await.expect("channel");
    ch.queue_declare(
        "big".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // The client stops sending once it is told the connection is blocked, so the
    // publishes run in their own task: some of them wait until the alarm clears.
    let publishing = tokio::spawn(async move {
        let body = vec![7u8; 16 * 1024];
        for _ in 0..24 {
            ch.basic_publish(
                "".into(),
                "big".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        }
    });
    let blocked = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let Event::ConnectionBlocked(reason) = e {
                return reason;
            }
        }
        String::new()
    })
    .await
    .expect("connection.blocked arrives");
    assert_eq!(blocked, "low on memory");

    let (_other, drain) = broker.channel().await;
    let purged = drain
        .queue_purge("big".into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert!(purged > 0);
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let Event::ConnectionUnblocked = e {
                return;
            }
        }
    })
    .await
    .expect("connection.unblocked arrives");
    tokio::time::timeout(WAIT, publishing)
        .await
        .expect("the held-back publishes go out once unblocked")
        .expect("publish task");
}

//! Configurable limits, each refused as RabbitMQ refuses it: consumers per channel,
//! connections, and peers that connect and say nothing.

mod common;

use common::raw::Raw;
use common::{TestBroker, expect_amqp_error, unique};
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[tokio::test]
async fn one_consumer_over_consumer_max_per_channel_is_530() {
    let broker = TestBroker::start_with(|c| c.consumer_max_per_channel = 2).await;
    let (conn, ch) = broker.channel().await;
    let q = unique("limits");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // The limit is per channel: another channel has its own two. (lapin cancels a
    // consumer once its handle and channel handle are gone, so all are kept.)
    let other = conn.create_channel().await.expect("channel");
    let mut kept = Vec::new();
    for c in [&ch, &ch, &other, &other] {
        let consumer = c
            .basic_consume(
                q.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("within the limit");
        kept.push(consumer);
    }
    let (code, text) = expect_amqp_error(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(
        (code, text.as_str()),
        (
            530,
            "NOT_ALLOWED - reached maximum (2) of consumers per channel"
        )
    );
}

#[tokio::test]
async fn connections_over_max_connections_are_refused_until_one_closes() {
    let broker = TestBroker::start_with(|c| c.max_connections = 2).await;
    let first = broker.connect().await;
    let _second = broker.connect().await;
    assert!(
        Connection::connect(&broker.uri, ConnectionProperties::default())
            .await
            .is_err(),
        "a third connection is refused"
    );
    let _ = first.close(200, "bye".into()).await;
    // The slot comes back once the broker has seen the close.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = Connection::connect(&broker.uri, ConnectionProperties::default()).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "a connection is accepted again after one closed"
    );
}

#[tokio::test]
async fn a_peer_that_says_nothing_is_dropped_after_the_handshake_timeout() {
    let broker = TestBroker::start_with(|c| c.handshake_timeout_secs = 1).await;
    let mut silent = Raw::connect(&broker.uri).await;
    let started = std::time::Instant::now();
    // Raw waits at most 10 s for the close: the broker drops the socket long before.
    silent.expect_eof().await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

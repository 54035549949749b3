//! User limits (max-connections, max-channels) and the broker-wide channel and queue
//! limits (`channel_max_per_node`, `cluster_queue_limit`), refused with RabbitMQ's codes
//! and texts (rabbit_reader, rabbit_queue_type).

mod common;

use common::access::{add_user, grant, refused_connection};
use common::{TestBroker, expect_amqp_error, unique};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

/// Sets `user`'s limits (e.g. `{"max-connections": 1}`), keeping its password.
fn set_user_limits(broker: &TestBroker, user: &str, limits: serde_json::Value) {
    let b = broker.broker();
    let mut record = b
        .access()
        .read(|s| s.user(user).cloned())
        .expect("the user exists");
    record.limits = limits.as_object().cloned().expect("an object");
    b.put_user(record, None).expect("limits set");
}

#[tokio::test]
async fn a_connection_over_the_user_limit_is_530_and_others_users_are_not_limited() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return; // the limits are set through the broker's own functions
    }
    add_user(&broker, "limited", "pw");
    grant(&broker, "limited", "/", [".*", ".*", ".*"]);
    set_user_limits(&broker, "limited", json!({"max-connections": 1}));
    let first = Connection::connect(
        &broker.uri_with("limited", "pw", "%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("the first connection is within the limit");
    let (code, text) = refused_connection(&broker, "limited", "pw", "%2f").await;
    assert_eq!(
        (code, text.as_str()),
        (
            530,
            "NOT_ALLOWED - connection refused for user 'limited': user connection limit (1) is reached"
        )
    );
    // guest has no limit.
    let _g1 = broker.connect().await;
    let _g2 = broker.connect().await;
    first.close(200, "bye".into()).await.expect("close");
    // Once the first is gone, the slot is free again.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = Connection::connect(
            &broker.uri_with("limited", "pw", "%2f"),
            ConnectionProperties::default(),
        )
        .await
        {
            again = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a connection after the first closed");
}

#[tokio::test]
async fn a_channel_over_the_user_limit_closes_the_connection_with_530() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    add_user(&broker, "chan", "pw");
    grant(&broker, "chan", "/", [".*", ".*", ".*"]);
    set_user_limits(&broker, "chan", json!({"max-channels": 2}));
    // The limit counts the user's channels on all its connections.
    let a = Connection::connect(
        &broker.uri_with("chan", "pw", "%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("connects");
    let b = Connection::connect(
        &broker.uri_with("chan", "pw", "%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("connects");
    let _c1 = a.create_channel().await.expect("first channel");
    let _c2 = b.create_channel().await.expect("second channel");
    let (code, text) = expect_amqp_error(b.create_channel()).await;
    assert_eq!(
        (code, text.as_str()),
        (
            530,
            "NOT_ALLOWED - number of channels opened for user 'chan' has reached the maximum allowed user limit of 2"
        )
    );
}

#[tokio::test]
async fn channels_over_channel_max_per_node_are_refused() {
    let broker = TestBroker::start_with(|c| c.channel_max_per_node = 2).await;
    if broker.external() {
        return;
    }
    let a = broker.connect().await;
    let b = broker.connect().await;
    let _c1 = a.create_channel().await.expect("first channel");
    let _c2 = b.create_channel().await.expect("second channel");
    let (code, text) = expect_amqp_error(a.create_channel()).await;
    assert_eq!(code, 530, "{text}");
    let node = warren::identity::node_name();
    assert_eq!(
        text,
        format!(
            "NOT_ALLOWED - number of channels opened on node '{node}' has reached the maximum allowed limit of 2"
        )
    );
}

#[tokio::test]
async fn a_queue_over_cluster_queue_limit_is_406_and_redeclares_still_work() {
    let broker = TestBroker::start_with(|c| c.cluster_queue_limit = 2).await;
    if broker.external() {
        return;
    }
    broker.broker().add_vhost("other");
    // Queues in another vhost count too.
    broker
        .broker()
        .vhost("other")
        .expect("vhost")
        .declare_queue(&warren::broker::vhost::QueueDeclare {
            name: "elsewhere",
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: &Default::default(),
            connection_id: 0,
            server_named: false,
        })
        .expect("declared");
    let (_conn, ch) = broker.channel().await;
    let q1 = unique("cql");
    ch.queue_declare(
        q1.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("within the limit");
    // Redeclaring an existing queue is not a new one.
    ch.queue_declare(
        q1.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("redeclare");
    let q2 = unique("cql");
    let (code, text) = expect_amqp_error(ch.queue_declare(
        q2.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(
        (code, text),
        (
            406,
            format!(
                "PRECONDITION_FAILED - cannot declare queue '{q2}': queue limit in cluster (2) is reached"
            )
        )
    );
}

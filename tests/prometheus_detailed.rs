//! `/metrics/detailed?family=...&vhost=...` and the per-channel families of
//! `/metrics/per-object`, moved by what lapin clients do.

mod common;

use common::TestBroker;
use common::scrape::scrape;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use std::time::Duration;

async fn declare(ch: &Channel, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
}

async fn publish(ch: &Channel, queue: &str) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("sent");
}

/// The name the API gives the only open connection.
async fn connection_name(broker: &TestBroker) -> String {
    broker.api().get("/api/connections").await.json()[0]["name"]
        .as_str()
        .expect("a connection")
        .to_owned()
}

#[tokio::test]
async fn detailed_serves_the_families_asked_for() {
    let broker = TestBroker::start().await;
    let Some(addr) = broker.prometheus else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    ch.basic_qos(4, BasicQosOptions::default())
        .await
        .expect("qos");
    let queue = common::unique("detq");
    declare(&ch, &queue).await;
    let other = conn.create_channel().await.expect("second channel");
    api_vhost(&broker, "det-other").await;
    for _ in 0..3 {
        publish(&ch, &queue).await;
    }
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "det".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery in time")
            .expect("a delivery")
            .expect("not an error");
    }
    declare(&ch, &queue).await;
    let name = connection_name(&broker).await;
    let channel = format!("{name} (1)");
    let s = scrape(
        addr,
        "/metrics/detailed?family=queue_coarse_metrics&family=channel_metrics\
         &family=channel_queue_metrics&family=connection_metrics&vhost=%2F",
    )
    .await;
    let q = format!("{{vhost=\"/\",queue=\"{queue}\"}}");
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_queue_messages_ready{q}")),
        0.0
    );
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_queue_messages_unacked{q}")),
        3.0
    );
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_queue_messages{q}")),
        3.0
    );
    let c = format!("{{channel=\"{channel}\"}}");
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_channel_consumers{c}")),
        1.0
    );
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_channel_messages_unacked{c}")),
        3.0
    );
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_consumer_prefetch{c}")),
        4.0
    );
    assert_eq!(
        s.type_of("rabbitmq_detailed_channel_consumers"),
        Some("gauge")
    );
    let cv = format!("{{channel=\"{channel}\",vhost=\"/\"}}");
    assert_eq!(
        s.value(&format!(
            "rabbitmq_detailed_channel_messages_delivered_ack_total{cv}"
        )),
        3.0
    );
    assert_eq!(
        s.type_of("rabbitmq_detailed_channel_messages_delivered_ack_total"),
        Some("counter")
    );
    assert_eq!(
        s.value(&format!(
            "rabbitmq_detailed_connection_channels{{channel=\"{name}\"}}"
        )),
        2.0
    );
    // Families not asked for are not served; the identity always is.
    assert!(!s.has_family("rabbitmq_detailed_queue_consumers"));
    assert!(!s.has_family("rabbitmq_detailed_channel_messages_published_total"));
    assert!(!s.has_family("rabbitmq_queues"));
    assert!(s.has_family("rabbitmq_identity_info"));
    // The vhost filter applies to the queue families.
    let s = scrape(
        addr,
        "/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count&vhost=det-other",
    )
    .await;
    assert!(!s.samples.keys().any(|k| k.contains(&queue)), "{}", s.body);
    let s = scrape(addr, "/metrics/detailed?family=queue_consumer_count").await;
    assert_eq!(
        s.value(&format!("rabbitmq_detailed_queue_consumers{q}")),
        1.0
    );
    let s = scrape(addr, "/metrics/detailed?family=connection_coarse_metrics").await;
    let c = format!("{{channel=\"{name}\"}}");
    assert!(
        s.value(&format!(
            "rabbitmq_detailed_connection_incoming_bytes_total{c}"
        )) > 0.0
    );
    assert!(
        s.value(&format!(
            "rabbitmq_detailed_connection_outgoing_bytes_total{c}"
        )) > 0.0
    );
    // Nothing asked: only the identity.
    let s = scrape(addr, "/metrics/detailed").await;
    assert!(
        !s.samples
            .keys()
            .any(|k| k.starts_with("rabbitmq_detailed_"))
    );
    let s = scrape(addr, "/metrics/detailed?family=connection_churn_metrics").await;
    assert!(s.value("rabbitmq_detailed_connections_opened_total") >= 1.0);
    assert!(s.value("rabbitmq_detailed_channels_opened_total") >= 2.0);
    other.close(200, "bye".into()).await.expect("close");
    conn.close(200, "bye".into()).await.expect("close");
}

/// Creates vhost `name` through the API.
async fn api_vhost(broker: &TestBroker, name: &str) {
    let r = broker
        .api()
        .put(&format!("/api/vhosts/{name}"), serde_json::json!({}))
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn per_object_serves_the_channel_families_per_channel() {
    let broker = TestBroker::start().await;
    let Some(addr) = broker.prometheus else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let queue = common::unique("poq");
    declare(&ch, &queue).await;
    publish(&ch, &queue).await;
    publish(&ch, "no-such-queue-here").await;
    declare(&ch, &queue).await;
    let channel = format!("{} (1)", connection_name(&broker).await);
    let s = scrape(addr, "/metrics/per-object").await;
    let cv = format!("{{channel=\"{channel}\",vhost=\"/\"}}");
    assert_eq!(
        s.value(&format!("rabbitmq_channel_messages_published_total{cv}")),
        2.0
    );
    assert_eq!(
        s.value(&format!(
            "rabbitmq_channel_messages_unroutable_dropped_total{cv}"
        )),
        1.0
    );
    assert_eq!(
        s.value(&format!(
            "rabbitmq_channel_consumers{{channel=\"{channel}\"}}"
        )),
        0.0
    );
    // The aggregated endpoint keeps one sample per family.
    let s = scrape(addr, "/metrics").await;
    assert!(
        s.samples
            .contains_key("rabbitmq_channel_messages_published_total")
    );
    assert!(!s.samples.keys().any(|k| k.contains(&channel)));
    conn.close(200, "bye".into()).await.expect("close");
}

//! The Prometheus endpoint: RabbitMQ's metric names, types and labels, counters that
//! move by exactly what the clients did, and every metric the Grafana
//! "RabbitMQ-Overview" dashboard queries.

mod common;

use common::scrape::{Scrape, scrape};
use common::{TestBroker, confirm_channel, next, unique};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use std::net::SocketAddr;
use std::time::Duration;

const AMQP: &str = "{protocol=\"amqp091\"}";
const CLASSIC: &str = "{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}";

fn prometheus(broker: &TestBroker) -> Option<SocketAddr> {
    if broker.external() {
        return None; // the test broker's own listener; not known for another broker
    }
    Some(broker.prometheus.expect("a Prometheus listener"))
}

async fn publish(ch: &Channel, exchange: &str, key: &str, mandatory: bool, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions {
            mandatory,
            ..Default::default()
        },
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish");
}

async fn publish_confirmed(ch: &Channel, key: &str, mandatory: bool, body: &[u8]) -> Confirmation {
    ch.basic_publish(
        "".into(),
        key.into(),
        BasicPublishOptions {
            mandatory,
            ..Default::default()
        },
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm")
}

async fn declare(ch: &Channel, q: &str, passive: bool) {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
}

/// Scrapes until `check` holds (figures set when a connection wakes up, such as its
/// channel count, may lag a moment), or returns the last scrape.
async fn scrape_until(addr: SocketAddr, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = scrape(addr, "/metrics").await;
    for _ in 0..100 {
        if check(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = scrape(addr, "/metrics").await;
    }
    last
}

#[tokio::test]
async fn counters_and_gauges_move_by_what_clients_do() {
    let broker = TestBroker::start().await;
    let Some(addr) = prometheus(&broker) else {
        return;
    };
    let start = scrape(addr, "/metrics").await;
    for name in [
        "rabbitmq_global_messages_received_total",
        "rabbitmq_global_messages_routed_total",
        "rabbitmq_global_messages_confirmed_total",
    ] {
        assert_eq!(start.value(&format!("{name}{AMQP}")), 0.0, "{name}");
    }
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let confirms = confirm_channel(&conn).await;
    let q = unique("prom");
    declare(&ch, &q, false).await;
    declare(&ch, &q, false).await;
    declare(&ch, &q, true).await;
    publish(&ch, "", &q, false, &[b'x'; 10]).await;
    publish(&ch, "", &q, false, &[b'y'; 200]).await;
    let c = publish_confirmed(&confirms, &q, false, b"c").await;
    assert!(matches!(c, Confirmation::Ack(None)), "{c:?}");
    let c = publish_confirmed(&confirms, "nowhere", true, b"m").await;
    assert!(matches!(c, Confirmation::Ack(Some(_))), "returned: {c:?}");
    let c = publish_confirmed(&confirms, "nowhere", false, b"d").await;
    assert!(matches!(c, Confirmation::Ack(None)), "{c:?}");

    let got = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a message");
    ch.basic_ack(got.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    let empty = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert!(empty.is_none(), "the queue is empty");
    publish_confirmed(&confirms, &q, false, b"e").await;

    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "tag".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = next(&mut consumer).await;
    assert!(!first.redelivered);
    ch.basic_nack(
        first.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .expect("nack");
    let again = next(&mut consumer).await;
    assert!(again.redelivered);
    // A round trip on the channel: everything before it was handled.
    declare(&ch, &q, true).await;

    let s = scrape_until(addr, |s| s.value("rabbitmq_channels") == 2.0).await;
    let global = |name: &str| s.value(&format!("rabbitmq_global_messages_{name}_total{AMQP}"));
    let by_type = |name: &str| s.value(&format!("rabbitmq_global_messages_{name}_total{CLASSIC}"));
    assert_eq!(global("received"), 6.0);
    assert_eq!(global("received_confirm"), 4.0);
    assert_eq!(global("routed"), 4.0);
    assert_eq!(global("unroutable_returned"), 1.0);
    assert_eq!(global("unroutable_dropped"), 1.0);
    assert_eq!(global("confirmed"), 4.0);
    assert_eq!(by_type("delivered_get_manual_ack"), 1.0);
    assert_eq!(by_type("delivered_get_auto_ack"), 2.0);
    assert_eq!(by_type("delivered_consume_manual_ack"), 2.0);
    assert_eq!(by_type("delivered_consume_auto_ack"), 0.0);
    assert_eq!(by_type("delivered"), 5.0);
    assert_eq!(by_type("get_empty"), 1.0);
    assert_eq!(by_type("redelivered"), 1.0);
    assert_eq!(by_type("acknowledged"), 1.0);
    assert_eq!(s.value(&format!("rabbitmq_global_publishers{AMQP}")), 2.0);
    assert_eq!(s.value("rabbitmq_channel_messages_published_total"), 6.0);
    assert_eq!(
        s.value("rabbitmq_channel_messages_delivered_ack_total"),
        2.0
    );
    assert_eq!(s.value("rabbitmq_queue_messages_published_total"), 4.0);
    assert_eq!(s.value(&format!("rabbitmq_global_consumers{AMQP}")), 1.0);
    assert_eq!(s.value("rabbitmq_queues_declared_total"), 2.0);
    assert_eq!(s.value("rabbitmq_queues_created_total"), 1.0);
    assert_eq!(s.value("rabbitmq_queues_deleted_total"), 0.0);
    assert_eq!(s.value("rabbitmq_queues"), 1.0);
    assert_eq!(s.value("rabbitmq_connections"), 1.0);
    assert_eq!(s.value("rabbitmq_connections_opened_total"), 1.0);
    assert_eq!(s.value("rabbitmq_channels_opened_total"), 2.0);
    assert_eq!(s.value("rabbitmq_channels_closed_total"), 0.0);
    assert_eq!(s.value("rabbitmq_consumers"), 1.0);
    assert_eq!(s.value("rabbitmq_queue_messages_ready"), 0.0);
    assert_eq!(s.value("rabbitmq_queue_messages_unacked"), 1.0);
    assert_eq!(s.value("rabbitmq_queue_messages"), 1.0);
    assert_eq!(s.value("rabbitmq_queue_consumers"), 1.0);
    // Sizes 10, 200, 1, 1, 1, 1.
    let bucket = |le: &str| {
        s.value(&format!(
            "rabbitmq_message_size_bytes_bucket{{protocol=\"amqp091\",le=\"{le}\"}}"
        ))
    };
    assert_eq!(
        (bucket("100"), bucket("1000"), bucket("+Inf")),
        (5.0, 6.0, 6.0)
    );
    assert_eq!(
        s.value(&format!("rabbitmq_message_size_bytes_sum{AMQP}")),
        214.0
    );

    // Closing the channel requeues the unacked message and cancels the consumer.
    ch.close(200, "bye".into()).await.expect("close");
    let s = scrape_until(addr, |s| s.value("rabbitmq_channels") == 1.0).await;
    assert_eq!(s.value("rabbitmq_channels_closed_total"), 1.0);
    assert_eq!(s.value("rabbitmq_queue_messages_ready"), 1.0);
    assert_eq!(s.value("rabbitmq_queue_messages_unacked"), 0.0);
    assert_eq!(s.value("rabbitmq_consumers"), 0.0);
    assert_eq!(s.value(&format!("rabbitmq_global_publishers{AMQP}")), 1.0);
    confirms
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    conn.close(200, "bye".into()).await.expect("close");
    let s = scrape_until(addr, |s| s.value("rabbitmq_connections") == 0.0).await;
    assert_eq!(s.value("rabbitmq_queues_deleted_total"), 1.0);
    assert_eq!(s.value("rabbitmq_queues"), 0.0);
    assert_eq!(s.value("rabbitmq_connections_closed_total"), 1.0);
    assert_eq!(s.value("rabbitmq_channels_closed_total"), 2.0);
    assert_eq!(s.value("rabbitmq_channels"), 0.0);
    assert_eq!(s.value(&format!("rabbitmq_global_publishers{AMQP}")), 0.0);
}

#[tokio::test]
async fn identity_build_info_types_and_content_type_are_rabbitmqs() {
    let broker = TestBroker::start().await;
    let Some(addr) = prometheus(&broker) else {
        return;
    };
    let s = scrape(addr, "/metrics").await;
    assert!(s.head.starts_with("HTTP/1.1 200"), "{}", s.head);
    assert!(
        s.head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        s.head
    );
    let identity = s
        .samples
        .iter()
        .find(|(k, _)| k.starts_with("rabbitmq_identity_info{"))
        .expect("rabbitmq_identity_info");
    assert_eq!(*identity.1, 1.0);
    for label in [
        "rabbitmq_node=\"",
        "rabbitmq_cluster=\"",
        "rabbitmq_endpoint=\"aggregated\"",
    ] {
        assert!(identity.0.contains(label), "{label} in {}", identity.0);
    }
    let build = s
        .samples
        .keys()
        .find(|k| k.starts_with("rabbitmq_build_info{"))
        .expect("rabbitmq_build_info");
    let version = format!(
        "rabbitmq_version=\"{}\"",
        warren::identity::RABBITMQ_VERSION
    );
    for label in [version.as_str(), "product_name=\"", "product_version=\""] {
        assert!(build.contains(label), "{label} in {build}");
    }
    assert_eq!(s.type_of("rabbitmq_identity_info"), Some("untyped"));
    assert_eq!(
        s.type_of("rabbitmq_connections_opened_total"),
        Some("counter")
    );
    assert_eq!(
        s.type_of("rabbitmq_global_messages_received_total"),
        Some("counter")
    );
    assert_eq!(s.type_of("rabbitmq_queue_messages_ready"), Some("gauge"));
    assert_eq!(s.type_of("rabbitmq_message_size_bytes"), Some("histogram"));
    assert!(s.body.contains(
        "# HELP rabbitmq_queue_messages_ready Messages ready to be delivered to consumers\n"
    ));
    for gauge in [
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_resident_memory_limit_bytes",
        "rabbitmq_disk_space_available_bytes",
    ] {
        assert!(s.value(gauge) > 0.0, "{gauge}");
    }
    let missing = scrape(addr, "/nothing").await;
    assert!(missing.head.starts_with("HTTP/1.1 404"), "{}", missing.head);
}

#[tokio::test]
async fn per_object_metrics_label_each_queue() {
    let broker = TestBroker::start().await;
    let Some(addr) = prometheus(&broker) else {
        return;
    };
    let (_conn, ch) = broker.channel().await;
    let q = unique("per-object");
    declare(&ch, &q, false).await;
    for _ in 0..3 {
        publish(&ch, "", &q, false, b"x").await;
    }
    declare(&ch, &q, true).await;
    let s = scrape(addr, "/metrics/per-object").await;
    let labels = format!("{{vhost=\"/\",queue=\"{q}\"}}");
    assert_eq!(
        s.value(&format!("rabbitmq_queue_messages_ready{labels}")),
        3.0
    );
    assert_eq!(
        s.value(&format!("rabbitmq_queue_messages_unacked{labels}")),
        0.0
    );
    assert_eq!(s.value(&format!("rabbitmq_queue_messages{labels}")), 3.0);
    assert_eq!(s.value(&format!("rabbitmq_queue_consumers{labels}")), 0.0);
    assert!(
        s.samples
            .keys()
            .any(|k| k.starts_with("rabbitmq_identity_info{")
                && k.contains("rabbitmq_endpoint=\"per-object\""))
    );
    // The aggregated endpoint has no queue labels.
    let aggregated = scrape(addr, "/metrics").await;
    assert_eq!(aggregated.value("rabbitmq_queue_messages_ready"), 3.0);
    assert!(!aggregated.body.contains(&q));
}

#[tokio::test]
async fn every_metric_of_the_grafana_overview_dashboard_is_served() {
    let broker = TestBroker::start().await;
    let Some(addr) = prometheus(&broker) else {
        return;
    };
    let names = [
        include_str!("fixtures/grafana-metric-names.txt"),
        include_str!("fixtures/grafana-metric-names-2021.txt"),
    ];
    let s = scrape(addr, "/metrics").await;
    let missing: Vec<&str> = names
        .iter()
        .flat_map(|n| n.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|name| !s.has_family(name))
        .collect();
    assert!(missing.is_empty(), "not served: {missing:?}");
}

#[tokio::test]
async fn the_listener_can_be_turned_off() {
    let broker = TestBroker::start_with(|c| c.prometheus_listen = None).await;
    if broker.external() {
        return;
    }
    assert_eq!(broker.prometheus, None);
}

#[test]
fn rabbitmq_conf_and_toml_set_the_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("rabbitmq.conf");
    std::fs::write(
        &conf,
        "prometheus.tcp.port = 15800\nprometheus.tcp.ip = 0.0.0.0\n",
    )
    .expect("write rabbitmq.conf");
    let absent = dir.path().join("absent.d").display().to_string();
    let env = |k: &str| match k {
        "RABBITMQ_CONFIG_FILE" => Some(conf.display().to_string()),
        "RABBITMQ_CONFIG_FILES" => Some(absent.clone()),
        _ => None,
    };
    let (config, _) = warren::Config::load(None, env).expect("loads");
    assert_eq!(
        config.prometheus_listen,
        Some("0.0.0.0:15800".parse().expect("address"))
    );
    let toml = dir.path().join("warren.toml");
    std::fs::write(&toml, "prometheus_listen = \"none\"\n").expect("write toml");
    let (config, _) = warren::Config::load(Some(&toml), env).expect("loads");
    assert_eq!(config.prometheus_listen, None);
    assert_eq!(
        warren::Config::default().prometheus_listen,
        Some("127.0.0.1:15692".parse().expect("address"))
    );
}

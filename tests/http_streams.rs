//! Streams in the management API: each stream consumer's place (offset, offset lag,
//! messages consumed) in `/api/consumers` and in its queue's `consumer_details`, and a
//! queue's `consumer_details` listing its consumers as `/api/consumers` does.

mod common;

use common::scrape::scrape;
use common::*;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::Value;

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

async fn declare_stream(ch: &Channel, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(&[(
            "x-queue-type",
            AMQPValue::LongString(LongString::from("stream")),
        )]),
    )
    .await
    .expect("declare stream");
}

async fn stream_consumer(
    conn: &Connection,
    stream: &str,
    tag: &str,
    prefetch: u16,
    offset: AMQPValue,
) -> lapin::Consumer {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    ch.basic_consume(
        stream.into(),
        tag.into(),
        BasicConsumeOptions::default(),
        table(&[("x-stream-offset", offset)]),
    )
    .await
    .expect("consume")
}

/// The consumer with this tag on queue `queue` in a consumer listing.
fn find<'a>(list: &'a Value, queue: &str, tag: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|c| c["queue"]["name"] == queue && c["consumer_tag"] == tag)
}

/// (offset, offset_lag, consumed) of a stream consumer entry.
fn place(c: &Value) -> (Value, Value, Value) {
    (
        c["offset"].clone(),
        c["offset_lag"].clone(),
        c["consumed"].clone(),
    )
}

#[tokio::test]
async fn stream_consumers_show_their_offset_and_lag() {
    if external() {
        // RabbitMQ lists these figures for consumers of its stream protocol only
        // (/api/stream/consumers); Warren shows them for AMQP stream consumers.
        return;
    }
    let broker = TestBroker::start().await;
    let api = broker.api();
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let s = unique("hstream");
    declare_stream(&ch, &s).await;
    let confirm = confirm_channel(&conn).await;
    for i in 0..10u32 {
        publish_confirmed(
            &confirm,
            "",
            &s,
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    // From offset 2 with a prefetch of 3: offsets 2, 3 and 4 are delivered and held.
    let mut reader = stream_consumer(&conn, &s, "reader", 3, AMQPValue::LongLongInt(2)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut reader).await);
    }
    // A consumer at the end, waiting for what comes next.
    let _waiting = stream_consumer(
        &conn,
        &s,
        "waiting",
        5,
        AMQPValue::LongString(LongString::from("next")),
    )
    .await;
    let all = api
        .poll("/api/consumers", |v| {
            find(v, &s, "reader").is_some_and(|c| c["consumed"] == 3)
                && find(v, &s, "waiting").is_some()
        })
        .await;
    let reader_entry = find(&all, &s, "reader").expect("listed");
    assert_eq!(place(reader_entry), (4.into(), 5.into(), 3.into()));
    assert_eq!(reader_entry["prefetch_count"], 3);
    assert_eq!(reader_entry["ack_required"], true);
    assert_eq!(
        place(find(&all, &s, "waiting").expect("listed")),
        (10.into(), 0.into(), 0.into())
    );
    // One ack returns one credit: the next message goes out and the place moves on.
    held.remove(0)
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    next(&mut reader).await;
    let all = api
        .poll("/api/consumers/%2F", |v| {
            find(v, &s, "reader").is_some_and(|c| c["consumed"] == 4)
        })
        .await;
    assert_eq!(
        place(find(&all, &s, "reader").expect("listed")),
        (5.into(), 4.into(), 4.into())
    );
    // The queue's consumer_details shows the same entries.
    let q = api.get(&format!("/api/queues/%2F/{s}")).await.json();
    let details = &q["consumer_details"];
    assert_eq!(details.as_array().map(Vec::len), Some(2), "{details}");
    assert_eq!(
        place(find(details, &s, "reader").expect("in consumer_details")),
        (5.into(), 4.into(), 4.into())
    );
    assert_eq!(
        find(details, &s, "waiting").expect("in consumer_details")["channel_details"]["user"],
        "guest"
    );
    // Publishing moves the lag of a reader that does not read on.
    publish_confirmed(&confirm, "", &s, b"m10", BasicProperties::default()).await;
    let all = api
        .poll("/api/consumers", |v| {
            find(v, &s, "reader").is_some_and(|c| c["offset_lag"] == 5)
        })
        .await;
    assert_eq!(
        place(find(&all, &s, "reader").expect("listed")),
        (5.into(), 5.into(), 4.into())
    );
    // Prometheus: the highest lag of the stream's consumers (RabbitMQ 4's
    // stream_consumer_metrics family), per stream and over all streams.
    let prometheus = broker.prometheus.expect("a Prometheus listener");
    let per_object = scrape(prometheus, "/metrics/per-object").await;
    assert_eq!(
        per_object.value(&format!(
            "rabbitmq_stream_consumer_max_offset_lag{{vhost=\"/\",queue=\"{s}\"}}"
        )),
        5.0
    );
    let aggregated = scrape(prometheus, "/metrics").await;
    assert_eq!(
        aggregated.type_of("rabbitmq_stream_consumer_max_offset_lag"),
        Some("gauge")
    );
    assert_eq!(
        aggregated.value("rabbitmq_stream_consumer_max_offset_lag"),
        5.0
    );
    conn.close(200, "done".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_queues_consumer_details_list_its_consumers() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = unique("hclassic");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.basic_qos(7, BasicQosOptions::default())
        .await
        .expect("qos");
    let _c = ch
        .basic_consume(
            q.as_str().into(),
            "probe".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let shown = api
        .poll(&format!("/api/queues/%2F/{q}"), |v| {
            v["consumer_details"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await;
    let details = shown["consumer_details"].as_array().expect("an array");
    assert_eq!(details.len(), 1);
    let c = &details[0];
    assert_eq!(c["consumer_tag"], "probe");
    assert_eq!(c["prefetch_count"], 7);
    assert_eq!(c["ack_required"], true);
    assert_eq!(c["queue"]["name"], q.as_str());
    assert_eq!(c["channel_details"]["number"], 1);
    assert_eq!(c["channel_details"]["user"], "guest");
    // A classic queue's consumer has no stream place.
    assert!(c.get("offset").is_none(), "{c}");
    conn.close(200, "done".into()).await.ok();
    broker.stop().await;
}

//! The management API's channels and consumers, with their live figures (prefetch,
//! confirm and transaction modes, unacknowledged messages, message_stats), the
//! overview's totals, and the aliveness test.

mod common;

use common::TestBroker;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::{Value, json};
use std::time::Duration;

/// Percent-encodes a path segment.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn declare(ch: &Channel, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
}

async fn publish(ch: &Channel, queue: &str, body: &[u8]) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirmed");
}

/// The channel of the listing whose number is `n`.
fn numbered(list: &Value, n: u64) -> Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|c| c["number"] == n)
        .cloned()
        .unwrap_or_else(|| panic!("no channel {n} in {list}"))
}

#[tokio::test]
async fn channels_show_their_modes_and_unacknowledged_messages() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let tx = conn.create_channel().await.expect("second channel");
    ch.basic_qos(7, BasicQosOptions::default())
        .await
        .expect("qos");
    ch.basic_qos(11, BasicQosOptions { global: true })
        .await
        .expect("global qos");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    tx.tx_select().await.expect("tx");
    let queue = common::unique("chq");
    declare(&ch, &queue).await;
    publish(&ch, &queue, b"one").await;
    publish(&ch, &queue, b"two").await;
    let mut args = FieldTable::default();
    args.insert("x-priority".into(), AMQPValue::LongInt(3));
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "live-tag".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .expect("consume");
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery in time")
            .expect("a delivery")
            .expect("not an error");
    }
    // One more round trip: the deliveries' effect is recorded before its reply.
    declare(&ch, &queue).await;
    let list = api.get("/api/channels").await.json();
    let c = numbered(&list, 1);
    let connection = api.get("/api/connections").await.json()[0]["name"]
        .as_str()
        .expect("a connection name")
        .to_owned();
    assert_eq!(c["name"], format!("{connection} (1)"));
    for (field, value) in [
        ("vhost", json!("/")),
        ("user", json!("guest")),
        ("state", json!("running")),
        ("consumer_count", json!(1)),
        ("confirm", json!(true)),
        ("transactional", json!(false)),
        ("prefetch_count", json!(7)),
        ("global_prefetch_count", json!(11)),
        ("messages_unacknowledged", json!(2)),
        ("messages_unconfirmed", json!(0)),
        ("messages_uncommitted", json!(0)),
        ("acks_uncommitted", json!(0)),
    ] {
        assert_eq!(c[field], value, "{field} in {c}");
    }
    assert_eq!(c["connection_details"]["name"], connection.as_str());
    assert_eq!(c["connection_details"]["peer_host"], "127.0.0.1");
    let stats = &c["message_stats"];
    assert_eq!(stats["publish"], 2, "{stats}");
    assert_eq!(stats["confirm"], 2, "{stats}");
    assert_eq!(stats["deliver"], 2, "{stats}");
    assert_eq!(stats["deliver_get"], 2, "{stats}");
    assert!(stats["publish_details"]["rate"].is_number(), "{stats}");
    let t = numbered(&list, 2);
    assert_eq!(t["transactional"], true, "{t}");
    assert_eq!(t["confirm"], false, "{t}");
    assert!(t.get("message_stats").is_none(), "{t}");
    // One channel by name, with its consumers.
    let one = api
        .get(&format!(
            "/api/channels/{}",
            seg(&format!("{connection} (1)"))
        ))
        .await;
    assert_eq!(one.status, 200);
    let one = one.json();
    let details = &one["consumer_details"];
    assert_eq!(details.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(details[0]["consumer_tag"], "live-tag");
    assert_eq!(details[0]["queue"], json!({"name": queue, "vhost": "/"}));
    assert_eq!(
        api.get(&format!(
            "/api/channels/{}",
            seg(&format!("{connection} (9)"))
        ))
        .await
        .status,
        404
    );
    assert_eq!(api.get("/api/channels/nope").await.status, 404);
    let in_vhost = api.get("/api/vhosts/%2F/channels").await.json();
    assert_eq!(in_vhost.as_array().map(Vec::len), Some(2), "{in_vhost}");
    assert_eq!(api.get("/api/vhosts/nope/channels").await.status, 404);
    // A closed channel is no longer listed.
    tx.close(200, "bye".into()).await.expect("close");
    let list = api.get("/api/channels").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn consumers_are_listed_with_their_channel_and_queue() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let (conn, ch) = broker.channel().await;
    ch.basic_qos(5, BasicQosOptions::default())
        .await
        .expect("qos");
    let queue = common::unique("consq");
    declare(&ch, &queue).await;
    let mut args = FieldTable::default();
    args.insert("x-priority".into(), AMQPValue::LongInt(2));
    let _c = ch
        .basic_consume(
            queue.as_str().into(),
            "tag-a".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            args,
        )
        .await
        .expect("consume");
    let list = api.get("/api/consumers").await.json();
    let c = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["consumer_tag"] == "tag-a")
        .unwrap_or_else(|| panic!("tag-a not in {list}"))
        .clone();
    let connection = api.get("/api/connections").await.json()[0]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    assert_eq!(c["queue"], json!({"name": queue, "vhost": "/"}));
    assert_eq!(c["ack_required"], false);
    assert_eq!(c["exclusive"], true);
    assert_eq!(c["prefetch_count"], 5);
    assert_eq!(c["active"], true);
    assert_eq!(c["activity_status"], "up");
    assert_eq!(c["arguments"], json!({"x-priority": 2}));
    let details = &c["channel_details"];
    assert_eq!(details["name"], format!("{connection} (1)"));
    assert_eq!(details["number"], 1);
    assert_eq!(details["connection_name"], connection.as_str());
    assert_eq!(details["user"], "guest");
    assert_eq!(details["peer_host"], "127.0.0.1");
    let in_vhost = api.get("/api/consumers/%2F").await.json();
    assert!(
        in_vhost
            .as_array()
            .expect("a list")
            .iter()
            .any(|c| c["consumer_tag"] == "tag-a")
    );
    assert_eq!(api.get("/api/consumers/nope").await.status, 404);
    // Listing parameters apply: column selection keeps the paths asked for.
    let cols = api
        .get("/api/consumers?columns=consumer_tag,queue.name")
        .await
        .json();
    assert!(
        cols.as_array()
            .expect("a list")
            .contains(&json!({"consumer_tag": "tag-a", "queue": {"name": queue}})),
        "{cols}"
    );
    // Another management user does not see guest's consumers.
    let r = api
        .put(
            "/api/users/cons-mgmt",
            json!({"password": "pw", "tags": "management"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let other = api.as_user("cons-mgmt", "pw");
    assert_eq!(other.get("/api/consumers").await.json(), json!([]));
    assert_eq!(other.get("/api/channels").await.json(), json!([]));
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn the_overview_counts_messages_and_objects() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let queue = common::unique("ovq");
    declare(&ch, &queue).await;
    for body in [b"a", b"b", b"c"] {
        publish(&ch, &queue, body).await;
    }
    let got = ch
        .basic_get(queue.as_str().into(), Default::default())
        .await
        .expect("get")
        .expect("a message");
    drop(got);
    // A round trip: the get is recorded before this reply.
    declare(&ch, &queue).await;
    let o = api.get("/api/overview").await.json();
    let stats = &o["message_stats"];
    assert_eq!(stats["publish"], 3, "{stats}");
    assert_eq!(stats["confirm"], 3, "{stats}");
    assert_eq!(stats["get"], 1, "{stats}");
    assert_eq!(stats["deliver_get"], 1, "{stats}");
    for name in [
        "publish",
        "ack",
        "deliver_get",
        "redeliver",
        "return_unroutable",
    ] {
        assert!(
            stats[format!("{name}_details")]["rate"].is_number(),
            "{name} in {stats}"
        );
    }
    let totals = &o["queue_totals"];
    assert_eq!(totals["messages"], 3, "{totals}");
    assert_eq!(totals["messages_ready"], 2, "{totals}");
    assert_eq!(totals["messages_unacknowledged"], 1, "{totals}");
    assert!(totals["messages_details"]["rate"].is_number());
    let objects = &o["object_totals"];
    assert_eq!(objects["connections"], 1, "{objects}");
    assert_eq!(objects["channels"], 1, "{objects}");
    assert_eq!(objects["queues"], 1, "{objects}");
    assert!(o["churn_rates"]["connection_created"].as_u64() >= Some(1));
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn the_aliveness_test_makes_a_round_trip_through_its_queue() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let r = api.get("/api/aliveness-test/%2F").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    // The queue stays, empty, as in RabbitMQ 3.x.
    let queues = broker
        .broker()
        .vhost("/")
        .expect("the default vhost")
        .queues();
    let q = queues
        .iter()
        .find(|q| q.name.as_str() == "aliveness-test")
        .expect("the aliveness-test queue");
    assert_eq!(q.message_count(), 0);
    assert_eq!(api.get("/api/aliveness-test/nope").await.status, 404);
    // Again, with the queue already there.
    assert_eq!(api.get("/api/aliveness-test/%2F").await.status, 200);
}

#[tokio::test]
async fn a_single_active_consumer_is_active_and_the_others_wait() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = common::unique("sacq");
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .expect("declare");
    let mut consumers = Vec::new();
    for tag in ["sac-1", "sac-2"] {
        consumers.push(
            ch.basic_consume(
                queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume"),
        );
    }
    let list = broker
        .api()
        .get("/api/consumers/%2F?sort=consumer_tag&columns=consumer_tag,active,activity_status")
        .await
        .json();
    assert_eq!(
        list,
        json!([
            {"consumer_tag": "sac-1", "active": true, "activity_status": "single_active"},
            {"consumer_tag": "sac-2", "active": false, "activity_status": "waiting"},
        ])
    );
    conn.close(200, "bye".into()).await.expect("close");
}

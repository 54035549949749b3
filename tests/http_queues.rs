//! The management API's queues: declare, show, list, delete with conditions, purge,
//! get with each ack mode, message statistics and permissions. Runs against Warren,
//! or against another broker with WARREN_TEST_EXTERNAL_URI and WARREN_TEST_EXTERNAL_API.

mod common;

use common::{TestBroker, unique};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .filter_map(|q| q["name"].as_str().map(str::to_owned))
        .collect()
}

fn text(r: &common::http::Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test]
async fn declare_show_list_and_delete() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let q = unique("hq-declare");
    let path = format!("/api/queues/%2F/{q}");
    let body = json!({"durable": true, "arguments": {"x-max-length": 10}});
    let r = api.put(&path, body.clone()).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(api.put(&path, body).await.status, 204);
    let r = api.put(&path, json!({"durable": false})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        format!(
            "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"
        )
    );
    // Booleans may come as strings (rabbitmqadmin v1).
    assert_eq!(
        api.put(
            &path,
            json!({"durable": "true", "arguments": {"x-max-length": 10}})
        )
        .await
        .status,
        204
    );

    // RabbitMQ adds the statistics some seconds after the declare.
    let shown = api
        .poll(&path, |v| {
            v.get("state").is_some() && v.get("idle_since").is_some()
        })
        .await;
    for (key, want) in [
        ("name", json!(q)),
        ("vhost", json!("/")),
        ("type", json!("classic")),
        ("durable", json!(true)),
        ("auto_delete", json!(false)),
        ("exclusive", json!(false)),
        ("arguments", json!({"x-max-length": 10})),
        ("state", json!("running")),
        ("messages", json!(0)),
        ("consumers", json!(0)),
    ] {
        assert_eq!(shown[key], want, "{key} in {shown}");
    }
    for key in [
        "node",
        "messages_ready",
        "messages_unacknowledged",
        "memory",
        "idle_since",
    ] {
        assert!(shown.get(key).is_some(), "{key} missing in {shown}");
    }
    assert!(shown["messages_details"]["rate"].is_number(), "{shown}");
    assert!(shown.get("policy").is_some() && shown.get("effective_policy_definition").is_some());

    // Celery Flower's trailing slash, the per-vhost list, and a filtered page.
    assert!(names(&api.get("/api/queues/").await.json()).contains(&q));
    assert!(names(&api.get("/api/queues").await.json()).contains(&q));
    assert!(names(&api.get("/api/queues/%2F").await.json()).contains(&q));
    let page = api
        .get(&format!(
            "/api/queues/%2F?page=1&page_size=10&name={q}&columns=name,durable"
        ))
        .await
        .json();
    assert_eq!(page["items"], json!([{"name": q, "durable": true}]));
    assert_eq!(page["filtered_count"], 1);

    assert_eq!(api.get("/api/queues/no-such-vhost").await.status, 404);
    assert_eq!(api.get("/api/queues/%2F/no-such-queue").await.status, 404);
    assert_eq!(
        api.delete("/api/queues/%2F/no-such-queue").await.status,
        404
    );
    let r = api.put("/api/queues/no-such-vhost/x", json!({})).await;
    assert_eq!(r.status, 404);
    let r = api
        .put(&format!("/api/queues/%2F/amq.{q}"), json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", text(&r));
    let r = api.request("PUT", &path, Some(b"[1]")).await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (400, json!("not_json"))
    );

    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
}

#[tokio::test]
async fn publish_get_requeue_and_purge() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let q = unique("hq-get");
    let path = format!("/api/queues/%2F/{q}");
    assert_eq!(api.put(&path, json!({"durable": false})).await.status, 201);
    for body in ["first", "second"] {
        let r = api
            .post(
                "/api/exchanges/%2F/amq.default/publish",
                json!({"properties": {"content_type": "text/plain", "headers": {"n": 1}},
                       "routing_key": q, "payload": body, "payload_encoding": "string"}),
            )
            .await;
        assert_eq!(r.json(), json!({"routed": true}), "{}", text(&r));
    }
    api.poll(&path, |v| v["messages"] == 2).await;

    let get = |count: u64, ackmode: &str, encoding: &str| {
        let api = api.clone();
        let path = format!("{path}/get");
        let body = json!({"count": count, "ackmode": ackmode, "encoding": encoding});
        async move { api.post(&path, body).await }
    };
    let r = get(1, "ack_requeue_true", "auto").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(
        r.json(),
        json!([{"payload_bytes": 5, "redelivered": false, "exchange": "", "routing_key": q,
                "message_count": 1, "properties": {"content_type": "text/plain", "headers": {"n": 1}},
                "payload": "first", "payload_encoding": "string"}])
    );
    // Requeued, it comes back marked redelivered; base64 on request.
    let again = get(1, "reject_requeue_true", "base64").await.json();
    assert_eq!(again[0]["redelivered"], true);
    assert_eq!(again[0]["payload"], "Zmlyc3Q=");
    assert_eq!(again[0]["payload_encoding"], "base64");
    let truncated = api
        .post(
            &format!("{path}/get"),
            json!({"count": "1", "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": "2"}),
        )
        .await
        .json();
    assert_eq!(
        (
            truncated[0]["payload"].clone(),
            truncated[0]["payload_bytes"].clone()
        ),
        (json!("fi"), json!(5))
    );

    // Taken for good: one left.
    let taken = get(1, "ack_requeue_false", "auto").await.json();
    assert_eq!(taken[0]["payload"], "first");
    assert_eq!(taken[0]["message_count"], 1);
    api.poll(&path, |v| v["messages"] == 1).await;

    let r = api
        .post(
            &format!("{path}/get"),
            json!({"count": 1, "encoding": "auto"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (400, json!("[{key_missing,ackmode}]"))
    );
    let r = get(1, "ack_requeue_true", "hex").await;
    assert_eq!(
        r.json()["reason"],
        "Unsupported encoding. Please use auto or base64."
    );
    let r = api
        .post(
            "/api/queues/%2F/no-such-queue/get",
            json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        )
        .await;
    assert_eq!(r.status, 404);

    let r = api.delete(&format!("{path}?if-empty=true")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        format!("queue '{q}' in vhost '/' not empty")
    );
    assert_eq!(api.delete(&format!("{path}/contents")).await.status, 204);
    api.poll(&path, |v| v["messages"] == 0).await;
    assert_eq!(get(5, "ack_requeue_false", "auto").await.json(), json!([]));
    assert_eq!(
        api.delete("/api/queues/%2F/no-such-queue/contents")
            .await
            .status,
        404
    );
    assert_eq!(
        api.delete(&format!("{path}?if-empty=true&if-unused=true"))
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn message_stats_count_publishes_deliveries_and_acks() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let q = unique("hq-stats");
    let path = format!("/api/queues/%2F/{q}");
    assert_eq!(api.put(&path, json!({})).await.status, 201);
    let (conn, ch) = broker.channel().await;
    for body in [b"a", b"b", b"c"] {
        common::publish(&ch, "", &q, body, Default::default()).await;
    }
    ch.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(common::next(&mut consumer).await);
    }
    // Two acked, one held: it counts as unacknowledged.
    for d in held.drain(..2) {
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let v = api
        .poll(&path, |v| {
            v["message_stats"]["ack"] == 2
                && v["message_stats"]["publish"] == 3
                && v["messages_unacknowledged"] == 1
                && v["consumers"] == 1
        })
        .await;
    let stats = &v["message_stats"];
    assert_eq!(stats["deliver"], 3, "{stats}");
    assert_eq!(stats["deliver_get"], 3, "{stats}");
    assert!(stats["publish_details"]["rate"].is_number(), "{stats}");
    assert!(stats["ack_details"]["rate"].is_number(), "{stats}");
    assert!(v["consumer_capacity"].is_number(), "{v}");
    conn.close(200, "bye".into()).await.expect("close");
    // The held delivery went back to the queue and is redelivered on the next get.
    api.poll(&path, |v| v["messages_ready"] == 1 && v["consumers"] == 0)
        .await;
    let got = api
        .post(
            &format!("{path}/get"),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await
        .json();
    assert_eq!(got[0]["redelivered"], true);
    api.poll(&path, |v| {
        v["message_stats"]["redeliver"] == 1 && v["messages"] == 0
    })
    .await;
    assert_eq!(api.delete(&path).await.status, 204);
}

#[tokio::test]
async fn queue_actions_follow_the_callers_permissions() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let user = unique("hq-user");
    let q = unique("hq-perm");
    let r = api
        .put(
            &format!("/api/users/{user}"),
            json!({"password": "pw", "tags": "management"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let me = api.as_user(&user, "pw");
    // Without permissions in the vhost: refused, and nothing of it listed.
    let r = me.get("/api/queues/%2F").await;
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(me.get("/api/queues").await.json(), json!([]));
    // Read and write, but configure only on other names.
    let r = api
        .put(
            &format!("/api/permissions/%2F/{user}"),
            json!({"configure": "^nothing$", "write": ".*", "read": ".*"}),
        )
        .await;
    assert!(r.status == 201 || r.status == 204, "{}", text(&r));
    let r = me.put(&format!("/api/queues/%2F/{q}"), json!({})).await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (401, json!("Access refused."))
    );
    assert_eq!(
        api.put(&format!("/api/queues/%2F/{q}"), json!({}))
            .await
            .status,
        201
    );
    assert!(names(&me.get("/api/queues/%2F").await.json()).contains(&q));
    let r = me.delete(&format!("/api/queues/%2F/{q}")).await;
    assert_eq!(r.status, 401);
    // Purge needs read, which the user has.
    assert_eq!(
        me.delete(&format!("/api/queues/%2F/{q}/contents"))
            .await
            .status,
        204
    );
    // A monitoring user without permissions in the vhost sees none of its queues,
    // and may not act on them.
    let watcher = unique("hq-monitor");
    let r = api
        .put(
            &format!("/api/users/{watcher}"),
            json!({"password": "pw", "tags": "monitoring"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let mon = api.as_user(&watcher, "pw");
    assert!(!names(&mon.get("/api/queues").await.json()).contains(&q));
    assert_eq!(
        mon.delete(&format!("/api/queues/%2F/{q}/contents"))
            .await
            .status,
        401
    );
    assert_eq!(
        api.delete(&format!("/api/users/{watcher}")).await.status,
        204
    );
    assert_eq!(
        api.delete(&format!("/api/queues/%2F/{q}")).await.status,
        204
    );
    assert_eq!(api.delete(&format!("/api/users/{user}")).await.status, 204);
}

#[tokio::test]
async fn persistent_messages_published_over_http_survive_a_restart() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let api = broker.api();
    let q = unique("hq-durable");
    let path = format!("/api/queues/%2F/{q}");
    assert_eq!(api.put(&path, json!({"durable": true})).await.status, 201);
    let r = api
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"properties": {"delivery_mode": 2}, "routing_key": q,
                   "payload": "kept", "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(r.json(), json!({"routed": true}));
    let r = api
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"properties": {}, "routing_key": q, "payload": "lost", "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(r.json(), json!({"routed": true}));
    let broker = broker.restart().await;
    let api = broker.api();
    let got = api
        .post(
            &format!("{path}/get"),
            json!({"count": 5, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await
        .json();
    let bodies: Vec<&str> = got
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["payload"].as_str())
        .collect();
    assert_eq!(bodies, ["kept"]);
    assert_eq!(got[0]["properties"], json!({"delivery_mode": 2}));
}

#[tokio::test]
async fn rejected_without_requeue_messages_are_dead_lettered() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let q = unique("hq-dlx-src");
    let dead = unique("hq-dlx-dst");
    assert_eq!(
        api.put(&format!("/api/queues/%2F/{dead}"), json!({}))
            .await
            .status,
        201
    );
    let r = api
        .put(
            &format!("/api/queues/%2F/{q}"),
            json!({"arguments": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let r = api
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"properties": {}, "routing_key": q, "payload": "bye", "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(r.json(), json!({"routed": true}));
    let got = api
        .post(
            &format!("/api/queues/%2F/{q}/get"),
            json!({"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"}),
        )
        .await
        .json();
    assert_eq!(got[0]["payload"], "bye");
    let moved = api
        .post(
            &format!("/api/queues/%2F/{dead}/get"),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await
        .json();
    assert_eq!(moved[0]["payload"], "bye", "{moved}");
    assert_eq!(
        moved[0]["properties"]["headers"]["x-death"][0]["reason"], "rejected",
        "{moved}"
    );
    for name in [q, dead] {
        assert_eq!(
            api.delete(&format!("/api/queues/%2F/{name}")).await.status,
            204
        );
    }
}

//! The management HTTP API, continued: policies taking effect, definitions export and
//! import, listing parameters, overview, nodes and health checks.

mod common;

use common::TestBroker;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

#[tokio::test]
async fn a_policy_put_over_http_applies_to_queues() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let r = api
        .put(
            "/api/policies/%2F/short",
            json!({"pattern": "^short\\.", "definition": {"max-length": "1"},
                   "apply-to": "queues", "priority": "1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let p = api.get("/api/policies/%2F/short").await.json();
    assert_eq!(
        p,
        json!({"vhost": "/", "name": "short", "pattern": "^short\\.", "apply-to": "queues",
               "definition": {"max-length": 1}, "priority": 1})
    );
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        "short.q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    for body in [b"1", b"2", b"3"] {
        ch.basic_publish(
            "".into(),
            "short.q".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("sent");
    }
    let bodies = common::drain_bodies(&ch, "short.q").await;
    assert_eq!(bodies, ["3"]);
    // Invalid definitions are refused with RabbitMQ's text, never a 500.
    let r = api
        .put(
            "/api/policies/%2F/bad",
            json!({"pattern": "x", "definition": {"bogus": 1}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["reason"]
            .as_str()
            .is_some_and(|t| t.starts_with("Validation failed")),
        "{:?}",
        r.json()
    );
    let r = api
        .put("/api/policies/%2F/bad", json!({"pattern": "x"}))
        .await;
    assert_eq!(r.json()["reason"], "[{key_missing,definition}]");
    let r = api
        .put(
            "/api/policies/nowhere/p",
            json!({"pattern": "x", "definition": {}}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(api.delete("/api/policies/%2F/short").await.status, 204);
    assert_eq!(api.delete("/api/policies/%2F/short").await.status, 404);
    // Operator policies live apart.
    let r = api
        .put(
            "/api/operator-policies/%2F/cap",
            json!({"pattern": ".*", "definition": {"max-length": 100}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        api.get("/api/operator-policies").await.json()[0]["name"],
        "cap"
    );
    assert_eq!(api.get("/api/policies").await.json(), json!([]));
}

#[tokio::test]
async fn definitions_export_and_import_round_trip() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    api.put("/api/vhosts/dev", json!({})).await;
    api.put(
        "/api/users/bob",
        json!({"password": "pw", "tags": "monitoring"}),
    )
    .await;
    api.put(
        "/api/permissions/dev/bob",
        json!({"configure": "", "write": ".*", "read": ".*"}),
    )
    .await;
    let (_conn, ch) = broker.channel().await;
    common::declare_durable(&ch, "kept").await;
    let r = api.get("/api/definitions?download=defs.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=defs.json")
    );
    let doc = r.json();
    assert_eq!(doc["rabbitmq_version"], warren::identity::RABBITMQ_VERSION);
    assert!(
        doc["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .any(|q| q["name"] == "kept")
    );
    // Remove what was defined, then import the export.
    assert_eq!(api.delete("/api/users/bob").await.status, 204);
    assert_eq!(api.delete("/api/vhosts/dev").await.status, 204);
    assert_eq!(api.post("/api/definitions", doc).await.status, 204);
    assert_eq!(
        api.get("/api/users/bob").await.json()["tags"],
        json!(["monitoring"])
    );
    assert_eq!(
        api.get("/api/permissions/dev/bob").await.json()["configure"],
        ""
    );
    assert_eq!(
        api.as_user("bob", "pw").get("/api/whoami").await.status,
        200
    );
    // One vhost's definitions, without vhost fields, go into another vhost.
    let one = api.get("/api/definitions/%2F").await.json();
    assert!(one["queues"][0].get("vhost").is_none());
    assert_eq!(api.post("/api/definitions/dev", one).await.status, 204);
    let dev = api.get("/api/definitions/dev").await.json();
    assert!(
        dev["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .any(|q| q["name"] == "kept")
    );
    let r = api.request("POST", "/api/definitions", Some(b"{bad")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "failed_to_parse_json");
    let r = api
        .post(
            "/api/definitions",
            json!({"queues": [{"name": "q", "vhost": "nowhere",
            "durable": true, "auto_delete": false, "arguments": {}}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(api.get("/api/definitions/nowhere").await.status, 400);
    assert_eq!(
        api.post("/api/definitions/nowhere", json!({})).await.status,
        404
    );
}

#[tokio::test]
async fn listings_page_filter_sort_and_select_columns() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    for v in ["a", "b", "c"] {
        api.put(&format!("/api/vhosts/{v}"), json!({})).await;
    }
    let page = api
        .get("/api/vhosts?page=2&page_size=2&columns=name")
        .await
        .json();
    assert_eq!(
        page,
        json!({"filtered_count": 4, "item_count": 2, "items": [{"name": "b"}, {"name": "c"}],
               "page": 2, "page_count": 2, "page_size": 2, "total_count": 4})
    );
    let r = api.get("/api/vhosts?page=9&page_size=2").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "page_out_of_range");
    let r = api.get("/api/vhosts?page=1&page_size=900").await;
    assert_eq!(r.json()["error"], "invalid_pagination_parameters");
    let r = api.get("/api/vhosts?page=x").await;
    assert_eq!(r.json()["reason"], "Pagination parameters are invalid");
    let filtered = api
        .get("/api/vhosts?page=1&name=%5Ea%7Cc&use_regex=true&columns=name")
        .await
        .json();
    assert_eq!(filtered["items"], json!([{"name": "a"}, {"name": "c"}]));
    assert_eq!(filtered["filtered_count"], 2);
    let sorted = api
        .get("/api/vhosts?sort=name&sort_reverse=true&columns=name")
        .await
        .json();
    assert_eq!(
        sorted,
        json!([{"name": "c"}, {"name": "b"}, {"name": "a"}, {"name": "/"}])
    );
    let found = api.get("/api/vhosts?name=A&columns=name").await.json();
    assert_eq!(found, json!([{"name": "a"}]));
}

#[tokio::test]
async fn overview_nodes_and_health_checks() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let _conn = broker.connect().await;
    let o = api.get("/api/overview").await.json();
    for key in [
        "management_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
        "cluster_name",
        "node",
        "message_stats",
        "queue_totals",
        "object_totals",
        "listeners",
        "exchange_types",
    ] {
        assert!(o.get(key).is_some(), "{key} missing from {o}");
    }
    assert_eq!(o["product_name"], "RabbitMQ");
    assert_eq!(o["object_totals"]["connections"], 1);
    let amqp_port = broker.addr.expect("in-process").port();
    assert!(
        o["listeners"]
            .as_array()
            .expect("listeners")
            .iter()
            .any(|l| l["protocol"] == "amqp" && l["port"] == amqp_port)
    );
    let nodes = api.get("/api/nodes").await.json();
    assert_eq!(nodes[0]["name"], o["node"]);
    assert_eq!(nodes[0]["mem_alarm"], false);
    let ok = json!({"status": "ok"});
    assert_eq!(api.get("/api/health/checks/alarms").await.json(), ok);
    assert_eq!(api.get("/api/health/checks/local-alarms").await.json(), ok);
    let r = api
        .get(&format!("/api/health/checks/port-listener/{amqp_port}"))
        .await;
    assert_eq!(r.json(), json!({"status": "ok", "port": amqp_port}));
    let r = api.get("/api/health/checks/port-listener/1").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "failed");
    assert_eq!(r.json()["reason"], "No active listener");
    assert_eq!(api.get("/api/aliveness-test/%2F").await.json(), ok);
    assert_eq!(api.get("/api/aliveness-test/nowhere").await.status, 404);
    let _: Value = api.get("/api/whoami").await.json();
}

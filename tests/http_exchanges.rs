//! The management API's exchanges: declare, show, list (the default exchange as ""),
//! delete with if-unused, publish (routed or not, payload encodings, errors), and an
//! exchange's bindings. Runs against Warren, or another broker with
//! WARREN_TEST_EXTERNAL_URI and WARREN_TEST_EXTERNAL_API.

mod common;

use common::{TestBroker, unique};
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

fn text(r: &common::http::Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|x| x["name"] == name)
}

#[tokio::test]
async fn declare_show_list_and_delete() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let x = unique("hx-declare");
    let path = format!("/api/exchanges/%2F/{x}");
    let r = api
        .put(
            &path,
            json!({"type": "topic", "durable": true, "arguments": {"a": "b"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let r = api
        .put(
            &path,
            json!({"type": "topic", "durable": "true", "arguments": {"a": "b"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", text(&r));
    let r = api
        .put(&path, json!({"type": "direct", "durable": true}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        format!(
            "inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'direct' but current is 'topic'"
        )
    );
    let r = api
        .put(
            &format!("/api/exchanges/%2F/{x}-bogus"),
            json!({"type": "bogus"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (400, json!("invalid exchange type 'bogus'"))
    );

    let shown = api.get(&path).await.json();
    for (key, want) in [
        ("name", json!(x)),
        ("vhost", json!("/")),
        ("type", json!("topic")),
        ("durable", json!(true)),
        ("auto_delete", json!(false)),
        ("internal", json!(false)),
        ("arguments", json!({"a": "b"})),
    ] {
        assert_eq!(shown[key], want, "{key} in {shown}");
    }
    // A PUT without a type declares a direct exchange, not durable.
    let plain = format!("/api/exchanges/%2F/{x}-plain");
    assert_eq!(api.put(&plain, json!({})).await.status, 201);
    let shown = api.get(&plain).await.json();
    assert_eq!(
        (shown["type"].clone(), shown["durable"].clone()),
        (json!("direct"), json!(false))
    );

    let all = api.get("/api/exchanges").await.json();
    assert!(find(&all, &x).is_some());
    let vhost = api.get("/api/exchanges/%2F").await.json();
    let default = find(&vhost, "").expect("the default exchange, named \"\"");
    assert_eq!(default["type"], "direct");
    assert!(find(&vhost, "amq.topic").is_some());
    assert_eq!(
        api.get("/api/exchanges/%2F/amq.default").await.json()["name"],
        ""
    );

    // Built-in exchanges cannot be deleted or declared.
    for name in ["amq.direct", "amq.default"] {
        let r = api.delete(&format!("/api/exchanges/%2F/{name}")).await;
        assert_eq!(
            (r.status, r.json()["reason"].clone()),
            (401, json!("Access refused.")),
            "{name}"
        );
    }
    assert_eq!(
        api.put("/api/exchanges/%2F/amq.mine", json!({}))
            .await
            .status,
        401
    );
    assert_eq!(
        api.delete("/api/exchanges/%2F/no-such-exchange")
            .await
            .status,
        404
    );
    assert_eq!(
        api.get("/api/exchanges/%2F/no-such-exchange").await.status,
        404
    );
    assert_eq!(api.get("/api/exchanges/no-such-vhost").await.status, 404);

    // In use: if-unused refuses.
    let r = api
        .post(
            &format!("/api/bindings/%2F/e/{x}/e/{x}-plain"),
            json!({"routing_key": "k"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let r = api.delete(&format!("{path}?if-unused=true")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        format!("exchange '{x}' in vhost '/' in use")
    );
    let src = api.get(&format!("{path}/bindings/source")).await.json();
    assert_eq!(src.as_array().map(Vec::len), Some(1), "{src}");
    assert_eq!(src[0]["destination"], format!("{x}-plain"));
    assert_eq!(src[0]["destination_type"], "exchange");
    let dst = api
        .get(&format!("{plain}/bindings/destination"))
        .await
        .json();
    assert_eq!(dst.as_array().map(Vec::len), Some(1), "{dst}");
    assert_eq!(dst[0]["source"], x);
    assert_eq!(
        api.get(&format!("{path}/bindings/destination"))
            .await
            .json(),
        json!([])
    );

    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.delete(&plain).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
}

#[tokio::test]
async fn publish_routes_through_bindings_with_properties() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let x = unique("hx-pub");
    let q = unique("hx-pubq");
    assert_eq!(
        api.put(&format!("/api/exchanges/%2F/{x}"), json!({"type": "topic"}))
            .await
            .status,
        201
    );
    assert_eq!(
        api.put(&format!("/api/queues/%2F/{q}"), json!({}))
            .await
            .status,
        201
    );
    let r = api
        .post(
            &format!("/api/bindings/%2F/e/{x}/q/{q}"),
            json!({"routing_key": "a.*"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let (_conn, ch) = broker.channel().await;
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let publish = |key: &str, payload: &str, encoding: &str| {
        let api = api.clone();
        let path = format!("/api/exchanges/%2F/{x}/publish");
        let body = json!({
            "properties": {"content_type": "application/json", "correlation_id": "c-1",
                           "headers": {"h": "v", "n": 7}, "priority": 3},
            "routing_key": key, "payload": payload, "payload_encoding": encoding});
        async move { api.post(&path, body).await }
    };
    let r = publish("b.c", "x", "string").await;
    assert_eq!(r.json(), json!({"routed": false}), "{}", text(&r));
    let r = publish("a.b", "aGk=", "base64").await;
    assert_eq!(r.json(), json!({"routed": true}), "{}", text(&r));
    let d = common::next(&mut consumer).await;
    assert_eq!(d.data, b"hi");
    assert_eq!(d.routing_key.as_str(), "a.b");
    assert_eq!(d.exchange.as_str(), x);
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c-1"));
    assert_eq!(*p.priority(), Some(3));
    let headers = p.headers().as_ref().expect("headers");
    assert!(
        matches!(headers.inner().get("h"), Some(AMQPValue::LongString(s)) if s.as_bytes() == b"v")
    );

    // One message in routed nowhere, one routed out.
    let stats = api
        .poll(&format!("/api/exchanges/%2F/{x}"), |v| {
            v["message_stats"]["publish_in"] == 2
        })
        .await;
    assert_eq!(stats["message_stats"]["publish_out"], 1, "{stats}");
    assert!(stats["message_stats"]["publish_in_details"]["rate"].is_number());

    // Bad bodies are 400s with RabbitMQ's reasons.
    let r = api
        .post(
            &format!("/api/exchanges/%2F/{x}/publish"),
            json!({"routing_key": "a", "payload": "p"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "[{key_missing,properties},{key_missing,payload_encoding}]"
    );
    let r = publish("a.b", "a!", "base64").await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (400, json!(["not_base64", "a!"]))
    );
    let r = api
        .post(
            "/api/exchanges/%2F/no-such-exchange/publish",
            json!({"properties": {}, "routing_key": "k", "payload": "p", "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "404 NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'"
    );
    let r = api
        .request(
            "POST",
            &format!("/api/exchanges/%2F/{x}/publish"),
            Some(b"nope"),
        )
        .await;
    assert_eq!(r.status, 400);

    assert_eq!(
        api.delete(&format!("/api/queues/%2F/{q}")).await.status,
        204
    );
    assert_eq!(
        api.delete(&format!("/api/exchanges/%2F/{x}")).await.status,
        204
    );
}

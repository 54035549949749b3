//! The management API's bindings: create (201 with a Location), list (all, per vhost,
//! between two objects, per queue with the default exchange's implicit binding),
//! show and delete by properties key. Runs against Warren, or another broker with
//! WARREN_TEST_EXTERNAL_URI and WARREN_TEST_EXTERNAL_API.

mod common;

use common::{TestBroker, unique};
use serde_json::{Value, json};

fn text(r: &common::http::Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn bindings_are_created_listed_shown_and_deleted_by_properties_key() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let x = unique("hb-x");
    let q = unique("hb-q");
    assert_eq!(
        api.put(
            &format!("/api/exchanges/%2F/{x}"),
            json!({"type": "direct"})
        )
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
    let base = format!("/api/bindings/%2F/e/{x}/q/{q}");

    // An empty routing key without arguments: "~".
    let r = api.post(&base, json!({})).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(r.header("location"), Some(format!("{q}/~").as_str()));
    // A key with a space and a tilde is quoted.
    let r = api.post(&base, json!({"routing_key": "a b~c"})).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(
        r.header("location"),
        Some(format!("{q}/a%2Bb%257Ec").as_str())
    );
    // With arguments: the key, "~" and a digest of the arguments.
    let r = api
        .post(
            &base,
            json!({"routing_key": "k", "arguments": {"x-match": "any", "n": 1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));

    let list = api.get(&base).await.json();
    assert_eq!(len(&list), 3, "{list}");
    let by_key = |key: &str| -> Value {
        list.as_array()
            .and_then(|l| l.iter().find(|b| b["routing_key"] == key).cloned())
            .unwrap_or_else(|| panic!("no binding {key} in {list}"))
    };
    assert_eq!(
        by_key(""),
        json!({"source": x, "vhost": "/", "destination": q, "destination_type": "queue",
               "routing_key": "", "arguments": {}, "properties_key": "~"})
    );
    assert_eq!(by_key("a b~c")["properties_key"], "a+b%7Ec");
    let with_args = by_key("k");
    assert_eq!(with_args["arguments"], json!({"x-match": "any", "n": 1}));
    let props = with_args["properties_key"]
        .as_str()
        .expect("a properties key")
        .to_owned();
    // The digest is RabbitMQ's: the same arguments give the same key on either broker.
    assert_eq!(props, "k~HgZJ7Q", "{with_args}");

    // Each is found again by its key, as a path segment.
    let quoted = |p: &str| p.replace('%', "%25").replace('+', "%2B");
    for p in ["~".to_owned(), "a+b%7Ec".to_owned(), props.clone()] {
        let r = api.get(&format!("{base}/{}", quoted(&p))).await;
        assert_eq!(r.status, 200, "{p}: {}", text(&r));
        assert_eq!(r.json()["properties_key"], p);
    }
    assert_eq!(api.get(&format!("{base}/nothing")).await.status, 404);
    assert_eq!(api.get(&format!("{base}/k~AAAAAA")).await.status, 404);

    // The queue's bindings include the default exchange's.
    let qb = api
        .get(&format!("/api/queues/%2F/{q}/bindings"))
        .await
        .json();
    assert_eq!(len(&qb), 4, "{qb}");
    assert_eq!(
        qb[0],
        json!({"source": "", "vhost": "/", "destination": q, "destination_type": "queue",
               "routing_key": q, "arguments": {}, "properties_key": q})
    );
    let vhost = api.get("/api/bindings/%2F").await.json();
    assert!(
        vhost
            .as_array()
            .expect("list")
            .iter()
            .any(|b| b["source"] == x)
    );
    let all = api.get("/api/bindings").await.json();
    assert!(
        all.as_array()
            .expect("list")
            .iter()
            .any(|b| b["source"] == x)
    );
    assert_eq!(api.get("/api/bindings/no-such-vhost").await.status, 404);

    for p in ["~".to_owned(), "a+b%7Ec".to_owned(), props] {
        let r = api.delete(&format!("{base}/{}", quoted(&p))).await;
        assert_eq!(r.status, 204, "{p}: {}", text(&r));
    }
    assert_eq!(api.get(&base).await.json(), json!([]));
    assert_eq!(api.delete(&format!("{base}/~")).await.status, 404);

    // Binding to the default exchange or from a missing one is refused.
    let r = api
        .post(&format!("/api/bindings/%2F/e/amq.default/q/{q}"), json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", text(&r));
    let r = api
        .post(&format!("/api/bindings/%2F/e/no-such-x/q/{q}"), json!({}))
        .await;
    assert_eq!(r.status, 404, "{}", text(&r));

    assert_eq!(
        api.delete(&format!("/api/queues/%2F/{q}")).await.status,
        204
    );
    assert_eq!(
        api.delete(&format!("/api/exchanges/%2F/{x}")).await.status,
        204
    );
}

#[tokio::test]
async fn exchange_to_exchange_bindings_route_messages() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let (a, b, q) = (unique("hb-a"), unique("hb-b"), unique("hb-eq"));
    assert_eq!(
        api.put(
            &format!("/api/exchanges/%2F/{a}"),
            json!({"type": "fanout"})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        api.put(
            &format!("/api/exchanges/%2F/{b}"),
            json!({"type": "direct"})
        )
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
            &format!("/api/bindings/%2F/e/{a}/e/{b}"),
            json!({"routing_key": "r"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(r.header("location"), Some(format!("{b}/r").as_str()));
    let r = api
        .post(
            &format!("/api/bindings/%2F/e/{b}/q/{q}"),
            json!({"routing_key": "k"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let publish = json!({"properties": {}, "routing_key": "k", "payload": "via", "payload_encoding": "string"});
    let r = api
        .post(&format!("/api/exchanges/%2F/{a}/publish"), publish)
        .await;
    assert_eq!(r.json(), json!({"routed": true}));
    let got = api
        .post(
            &format!("/api/queues/%2F/{q}/get"),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await
        .json();
    assert_eq!(got[0]["payload"], "via");
    assert_eq!(got[0]["exchange"], a);
    let listed = api
        .get(&format!("/api/bindings/%2F/e/{a}/e/{b}"))
        .await
        .json();
    assert_eq!(listed[0]["destination_type"], "exchange");
    assert_eq!(
        api.delete(&format!("/api/bindings/%2F/e/{a}/e/{b}/r"))
            .await
            .status,
        204
    );
    for path in [
        format!("/api/queues/%2F/{q}"),
        format!("/api/exchanges/%2F/{a}"),
        format!("/api/exchanges/%2F/{b}"),
    ] {
        assert_eq!(api.delete(&path).await.status, 204);
    }
}

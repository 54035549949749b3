//! The management HTTP API: auth, vhosts, users, permissions, policies, definitions,
//! health checks, listings; effects observed over AMQP with lapin. Shapes and codes
//! were compared by hand with RabbitMQ 3.10.8's management plugin.

mod common;

use common::TestBroker;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

#[tokio::test]
async fn requests_without_valid_credentials_get_401() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let mut anonymous = api.clone();
    anonymous.auth = None;
    let r = anonymous.get("/api/whoami").await;
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"RabbitMQ Management\"")
    );
    let r = api.as_user("guest", "wrong").get("/api/whoami").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    // A user without a management tag may not use the API.
    let r = api
        .put("/api/users/plain", json!({"password": "p", "tags": ""}))
        .await;
    assert_eq!(r.status, 201);
    let r = api.as_user("plain", "p").get("/api/whoami").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorised", "reason": "Not management user"})
    );
    let r = api.get("/api/whoami").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"name": "guest", "tags": ["administrator"]})
    );
}

#[tokio::test]
async fn a_vhost_user_and_permissions_made_over_http_let_a_client_in() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    assert_eq!(api.put("/api/vhosts/shop", json!({})).await.status, 201);
    // Whoever creates a vhost gets full permissions on it, as in RabbitMQ.
    assert_eq!(
        api.get("/api/permissions/shop/guest").await.json(),
        json!({"user": "guest", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"})
    );
    assert_eq!(
        api.put("/api/vhosts/shop", json!({"description": "the shop"}))
            .await
            .status,
        204
    );
    let v = api.get("/api/vhosts/shop").await.json();
    assert_eq!(v["name"], "shop");
    assert_eq!(v["description"], "the shop");
    assert_eq!(v["metadata"]["description"], "the shop");
    assert_eq!(
        api.put(
            "/api/users/alice",
            json!({"password": "s3cret", "tags": ["management"]})
        )
        .await
        .status,
        201
    );
    let perms = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        api.put("/api/permissions/shop/alice", perms.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        api.put("/api/permissions/shop/alice", perms).await.status,
        204
    );
    assert_eq!(
        api.get("/api/permissions/shop/alice").await.json(),
        json!({"user": "alice", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"})
    );
    let conn = Connection::connect(
        &broker.uri_with("alice", "s3cret", "shop"),
        ConnectionProperties::default(),
    )
    .await
    .expect("alice connects to shop");
    let ch = conn.create_channel().await.expect("channel");
    let watch = common::watch_close(&ch).await;
    // Deleting the vhost closes its connections with 320.
    assert_eq!(api.delete("/api/vhosts/shop").await.status, 204);
    let (code, _) = watch.error().await;
    assert_eq!(code, 320);
    assert_eq!(api.get("/api/vhosts/shop").await.status, 404);
    assert_eq!(api.delete("/api/vhosts/shop").await.status, 404);
}

#[tokio::test]
async fn users_take_a_password_hash_and_tags_as_a_string() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    // The hash of "guest", as RabbitMQ exports it for guest.
    let guest = api.get("/api/users/guest").await.json();
    let r = api
        .put(
            "/api/users/copy",
            json!({
                "password_hash": guest["password_hash"],
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": "administrator, monitoring"
            }),
        )
        .await;
    assert_eq!(r.status, 201);
    let copy = api.get("/api/users/copy").await.json();
    assert_eq!(copy["tags"], json!(["administrator", "monitoring"]));
    assert_eq!(copy["limits"], json!({}));
    assert_eq!(
        api.as_user("copy", "guest").get("/api/whoami").await.status,
        200
    );
    let names: Vec<Value> = api
        .get("/api/users")
        .await
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(names, [json!("copy"), json!("guest")]);
    let r = api
        .post("/api/users/bulk-delete", json!({"users": ["copy"]}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(api.get("/api/users/copy").await.status, 404);
}

#[tokio::test]
async fn bad_input_is_a_400_and_unknown_objects_a_404() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let r = api.request("PUT", "/api/users/x", Some(b"{bad")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "bad_request", "reason": "not_json"})
    );
    let r = api
        .put("/api/permissions/%2F/guest", json!({"configure": ".*"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "[{key_missing,write},{key_missing,read}]"
    );
    let r = api
        .put(
            "/api/permissions/nowhere/guest",
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "vhost_or_user_not_found");
    let r = api
        .put(
            "/api/permissions/%2F/guest",
            json!({"configure": "(", "write": "", "read": ""}),
        )
        .await;
    assert_eq!(r.status, 400);
    for path in [
        "/api/vhosts/nowhere",
        "/api/users/nobody",
        "/api/permissions/%2F/nobody",
        "/api/nothing/here",
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.json(),
            json!({"error": "Object Not Found", "reason": "Not Found"})
        );
    }
    // %2F is the default vhost.
    assert_eq!(api.get("/api/vhosts/%2F").await.json()["name"], "/");
}

#[tokio::test]
async fn tags_decide_what_a_user_may_see_and_do() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    for (user, tags) in [
        ("mgr", "management"),
        ("mon", "monitoring"),
        ("pm", "policymaker"),
    ] {
        let r = api
            .put(
                &format!("/api/users/{user}"),
                json!({"password": "p", "tags": tags}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    api.put("/api/vhosts/a", json!({})).await;
    api.put("/api/vhosts/b", json!({})).await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    api.put("/api/permissions/a/mgr", all.clone()).await;
    api.put("/api/permissions/a/pm", all).await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|x| x["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mgr = api.as_user("mgr", "p");
    assert_eq!(names(mgr.get("/api/vhosts").await.json()), ["a"]);
    let mon = api.as_user("mon", "p");
    assert_eq!(names(mon.get("/api/vhosts").await.json()), ["/", "a", "b"]);
    let denied = mgr.get("/api/users").await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.json(),
        json!({"error": "not_authorised", "reason": "Not administrator user"})
    );
    assert_eq!(mgr.get("/api/nodes").await.status, 401);
    assert_eq!(mon.get("/api/nodes").await.status, 200);
    assert_eq!(mgr.get("/api/overview").await.status, 200);
    assert_eq!(mgr.get("/api/aliveness-test/a").await.status, 200);
    let r = mgr.get("/api/aliveness-test/b").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["reason"],
        "User not authorised to access virtual host"
    );
    let policy = json!({"pattern": "^x", "definition": {"max-length": 1}});
    assert_eq!(
        mgr.put("/api/policies/a/p", policy.clone()).await.status,
        401
    );
    let pm = api.as_user("pm", "p");
    assert_eq!(
        pm.put("/api/policies/a/p", policy.clone()).await.status,
        201
    );
    assert_eq!(pm.put("/api/policies/b/p", policy).await.status, 401);
    assert_eq!(mgr.get("/api/policies").await.json()[0]["name"], "p");
}

#[tokio::test]
async fn topic_permissions_are_listed_apart_from_permissions() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let user = common::unique("topical");
    assert_eq!(
        api.put(
            &format!("/api/users/{user}"),
            json!({"password": "p", "tags": ""})
        )
        .await
        .status,
        201
    );
    let perms = json!({"configure": "", "write": ".*", "read": ".*"});
    api.put(&format!("/api/permissions/%2F/{user}"), perms)
        .await;
    let topic = json!({"exchange": "amq.topic", "write": "^a", "read": "^b"});
    let put = api
        .put(&format!("/api/topic-permissions/%2F/{user}"), topic)
        .await;
    assert!(put.status == 201 || put.status == 204, "{}", put.status);
    let expected =
        json!({"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"});
    for path in [
        "/api/topic-permissions".to_owned(),
        format!("/api/users/{user}/topic-permissions"),
        "/api/vhosts/%2F/topic-permissions".to_owned(),
    ] {
        let list = api.get(&path).await.json();
        let mine: Vec<&Value> = list
            .as_array()
            .expect("a list")
            .iter()
            .filter(|p| p["user"] == user.as_str())
            .collect();
        assert_eq!(mine, [&expected], "{path}");
    }
    // The plain permission listings hold the user's permissions, not the topic ones.
    let plain = api
        .get(&format!("/api/users/{user}/permissions"))
        .await
        .json();
    assert_eq!(plain.as_array().map(Vec::len), Some(1));
    assert!(plain[0].get("exchange").is_none(), "{plain}");
    assert_eq!(plain[0]["write"], ".*");
    assert_eq!(api.delete(&format!("/api/users/{user}")).await.status, 204);
}

//! The management API's connections: listing with RabbitMQ's fields, one by name,
//! its channels, a user's, a vhost's, closing with `X-Reason` (320 with that text),
//! and who may see and close what.

mod common;

use common::TestBroker;
use futures_lite::{Stream, StreamExt};
use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Percent-encodes a path segment (connection and channel names hold spaces, `>`
/// and parentheses).
pub fn seg(s: &str) -> String {
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

/// Connects with `connection_name` in the client properties, as user `user`.
async fn named(broker: &TestBroker, user: &str, pass: &str, name: &str) -> Connection {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    Connection::connect(&broker.uri_with(user, pass, "%2f"), props)
        .await
        .expect("connects")
}

/// The listed connection whose user_provided_name is `name`.
fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|c| c["user_provided_name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed in {list}"))
}

/// A request with an `X-Reason` header, which the test client does not send.
async fn delete_with_reason(api: &common::http::Api, path: &str, reason: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(api.addr)
        .await
        .expect("connect");
    let request = format!(
        "DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nX-Reason: {reason}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("reply");
    let text = String::from_utf8_lossy(&reply);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}

/// The connection's events, to watch for the connection.close the broker sends.
fn events(conn: &Connection) -> Events {
    Box::pin(conn.events_listener())
}

type Events = std::pin::Pin<Box<dyn Stream<Item = lapin::Event> + Send>>;

/// Waits for the connection.close the broker sends: its code and text.
async fn closed(mut events: Events) -> (u16, String) {
    let e = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            if let lapin::Event::Error(e) = e {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("closed in time")
    .expect("an error event");
    common::amqp_error(&e)
}

#[tokio::test]
async fn connections_are_listed_with_rabbitmq_fields() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let conn = named(&broker, "guest", "guest", "listed-conn").await;
    let _ch = conn.create_channel().await.expect("channel");
    let list = api.get("/api/connections").await.json();
    let c = find(&list, "listed-conn").clone();
    let name = c["name"].as_str().expect("a name").to_owned();
    let port = c["port"].as_u64().expect("the broker's port");
    let peer_port = c["peer_port"].as_u64().expect("the client's port");
    assert_eq!(
        name,
        format!("127.0.0.1:{peer_port} -> 127.0.0.1:{port}"),
        "RabbitMQ's name"
    );
    for (field, value) in [
        ("protocol", json!("AMQP 0-9-1")),
        ("user", json!("guest")),
        ("vhost", json!("/")),
        ("host", json!("127.0.0.1")),
        ("peer_host", json!("127.0.0.1")),
        ("channels", json!(1)),
        ("auth_mechanism", json!("PLAIN")),
        ("ssl", json!(false)),
        ("state", json!("running")),
        ("type", json!("network")),
    ] {
        assert_eq!(c[field], value, "{field} in {c}");
    }
    assert_eq!(c["client_properties"]["connection_name"], "listed-conn");
    assert_eq!(
        c["client_properties"]["capabilities"]["publisher_confirms"],
        true
    );
    assert!(c["connected_at"].as_u64().expect("ms") > 1_600_000_000_000);
    // The handshake and channel.open went both ways.
    assert!(c["recv_oct"].as_u64() > Some(0), "{c}");
    assert!(c["send_oct"].as_u64() > Some(0), "{c}");
    assert!(c["recv_oct_details"]["rate"].is_number(), "{c}");
    for field in ["channel_max", "frame_max", "timeout", "node"] {
        assert!(!c[field].is_null(), "{field} in {c}");
    }
    // One by name, its channels, the user's and the vhost's.
    let one = api.get(&format!("/api/connections/{}", seg(&name))).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["name"], name.as_str());
    let channels = api
        .get(&format!("/api/connections/{}/channels", seg(&name)))
        .await
        .json();
    assert_eq!(channels.as_array().map(Vec::len), Some(1), "{channels}");
    assert_eq!(channels[0]["name"], format!("{name} (1)"));
    assert_eq!(channels[0]["connection_details"]["name"], name.as_str());
    let by_user = api.get("/api/connections/username/guest").await.json();
    assert!(
        by_user
            .as_array()
            .expect("a list")
            .iter()
            .any(|c| c == &json!({"name": name, "vhost": "/", "user": "guest", "node": c["node"]})),
        "{by_user}"
    );
    let in_vhost = api.get("/api/vhosts/%2F/connections").await.json();
    find(&in_vhost, "listed-conn");
    // Listing parameters apply.
    let page = api
        .get(&format!("/api/connections?page=1&name={}", seg(&name)))
        .await
        .json();
    assert_eq!(page["filtered_count"], 1, "{page}");
    // Unknown names and vhosts.
    assert_eq!(api.get("/api/connections/nope").await.status, 404);
    assert_eq!(api.get("/api/connections/nope/channels").await.status, 404);
    assert_eq!(api.delete("/api/connections/nope").await.status, 404);
    assert_eq!(api.get("/api/vhosts/nope/connections").await.status, 404);
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn deleting_a_connection_closes_it_with_320_and_the_reason() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let conn = named(&broker, "guest", "guest", "doomed").await;
    let watch = events(&conn);
    let name = find(&api.get("/api/connections").await.json(), "doomed")["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let status = delete_with_reason(
        &api,
        &format!("/api/connections/{}", seg(&name)),
        "maintenance window",
    )
    .await;
    assert_eq!(status, 204);
    let (code, text) = closed(watch).await;
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - maintenance window");
    drop(conn);
    // Without a reason: RabbitMQ's default text.
    let conn = named(&broker, "guest", "guest", "doomed-too").await;
    let watch = events(&conn);
    let name = find(&api.get("/api/connections").await.json(), "doomed-too")["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let r = api
        .delete(&format!("/api/connections/{}", seg(&name)))
        .await;
    assert_eq!(r.status, 204);
    let (code, text) = closed(watch).await;
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - Closed via management plugin");
    drop(conn);
}

#[tokio::test]
async fn deleting_a_users_connections_closes_them_all() {
    let broker = TestBroker::start().await;
    let api = broker.api();
    let a = named(&broker, "guest", "guest", "user-a").await;
    let b = named(&broker, "guest", "guest", "user-b").await;
    let watches = [events(&a), events(&b)];
    let status = delete_with_reason(&api, "/api/connections/username/guest", "all out").await;
    assert_eq!(status, 204);
    for watch in watches {
        assert_eq!(
            closed(watch).await,
            (320, "CONNECTION_FORCED - all out".into())
        );
    }
    // A user without connections: nothing to close, still 204.
    assert_eq!(
        api.delete("/api/connections/username/nobody").await.status,
        204
    );
}

/// Creates user `name` with `tags` and full permissions on `/`.
async fn user(api: &common::http::Api, name: &str, tags: &str) {
    let r = api
        .put(
            &format!("/api/users/{name}"),
            json!({"password": "pw", "tags": tags}),
        )
        .await;
    assert_eq!(r.status, 201);
    let perms = json!({"configure": ".*", "write": ".*", "read": ".*"});
    let r = api
        .put(&format!("/api/permissions/%2F/{name}"), perms)
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn management_users_see_and_close_only_their_own_connections() {
    let broker = TestBroker::start().await;
    let admin = broker.api();
    user(&admin, "mgmt-user", "management").await;
    user(&admin, "monitor-user", "monitoring").await;
    let _guest = named(&broker, "guest", "guest", "guests-conn").await;
    let own = named(&broker, "mgmt-user", "pw", "own-conn").await;
    let own_watch = events(&own);
    let mgmt = admin.as_user("mgmt-user", "pw");
    let monitor = admin.as_user("monitor-user", "pw");
    let all = admin.get("/api/connections").await.json();
    let guests = find(&all, "guests-conn")["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let owns = find(&all, "own-conn")["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    // A management user lists only their own.
    let listed = mgmt.get("/api/connections").await.json();
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, [owns.as_str()]);
    let r = mgmt
        .get(&format!("/api/connections/{}", seg(&guests)))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorised", "reason": "User not authorised to access object"})
    );
    assert_eq!(
        mgmt.get("/api/connections/username/guest").await.status,
        401
    );
    assert_eq!(
        mgmt.get(&format!("/api/connections/{}", seg(&owns)))
            .await
            .status,
        200
    );
    // Monitoring users see everything but may not close others' connections.
    let listed = monitor.get("/api/connections").await.json();
    find(&listed, "guests-conn");
    find(&listed, "own-conn");
    assert_eq!(
        monitor
            .get(&format!("/api/connections/{}", seg(&guests)))
            .await
            .status,
        200
    );
    assert_eq!(
        monitor
            .delete(&format!("/api/connections/{}", seg(&guests)))
            .await
            .status,
        401
    );
    assert_eq!(
        mgmt.delete(&format!("/api/connections/{}", seg(&guests)))
            .await
            .status,
        401
    );
    // Their own they may close.
    assert_eq!(
        mgmt.delete(&format!("/api/connections/{}", seg(&owns)))
            .await
            .status,
        204
    );
    assert_eq!(closed(own_watch).await.0, 320);
}

#[tokio::test]
async fn a_connection_without_a_name_has_no_user_provided_name() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let list = broker.api().get("/api/connections").await.json();
    let c = &list[0];
    assert!(c.get("user_provided_name").is_none(), "{c}");
    assert!(c["client_properties"].is_object());
    conn.close(200, "bye".into()).await.expect("close");
}

//! The broker's live registry of connections: a connection is listed once open, with
//! its user, vhost, peer, channels and client properties, and an operator can close
//! it through its handle, which the client sees as connection.close 320
//! (CONNECTION_FORCED) with the operator's reason.

use futures_lite::StreamExt;
use lapin::{Connection, ConnectionProperties};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use warren::{Config, Server};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_connection_is_listed_and_closed_through_the_registry() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        return; // the registry is Warren's own API
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().expect("valid address")],
        management_listen: None,
        data_dir: dir.path().to_owned(),
        prometheus_listen: Some("127.0.0.1:0".parse().expect("valid address")),
        ..Config::default()
    };
    let server = Server::bind(config).await.expect("broker binds");
    let addr = server.local_addr();
    let context = server.context();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let before = SystemTime::now();
    let conn = Connection::connect(
        &format!("amqp://guest:guest@{addr}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("connects");
    let _ch = conn.create_channel().await.expect("channel opens");
    let mut events = conn.events_listener();

    let connections = context.broker.connections();
    let listed = connections.list();
    assert_eq!(listed.len(), 1, "one connection open");
    let info = &listed[0];
    assert_eq!(info.user, "guest");
    assert_eq!(&*info.vhost, "/");
    assert!(info.peer.ip().is_loopback());
    assert_eq!(info.channels, 1);
    assert!(info.connected_at >= before - Duration::from_secs(1));
    assert!(info.client_properties.contains_key("capabilities"));

    assert!(connections.close(info.id, "Closed via the registry"));
    let error = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("the close in time")
    .expect("an error event");
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => {
            assert_eq!(e.get_id(), 320);
            assert_eq!(
                e.get_message().as_str(),
                "CONNECTION_FORCED - Closed via the registry"
            );
        }
        other => panic!("expected connection.close, got {other:?}"),
    }
    assert!(!conn.status().connected());
    tokio::time::timeout(WAIT, async {
        while !connections.list().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed connection leaves the registry");

    let _ = stop.send(());
    let _ = task.await;
}

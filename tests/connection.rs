//! Connections: connection.start's server-properties, authentication, virtual hosts,
//! tune negotiation, heartbeats both ways, closes from either side (including the
//! 320 a shutting-down broker sends), and the binary's configuration surface.

mod common;

use common::raw::{Got, Raw};
use common::{TestBroker, external, unique};
use futures_lite::StreamExt;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(10);

async fn connect_err(uri: &str) -> (u16, String) {
    let result = tokio::time::timeout(
        WAIT,
        Connection::connect(uri, ConnectionProperties::default()),
    )
    .await
    .expect("the broker answers in time");
    match result {
        Ok(_) => panic!("expected the connection to be refused"),
        Err(e) => common::amqp_error(&e),
    }
}

#[tokio::test]
async fn connection_start_advertises_rabbitmq_shaped_server_properties() {
    let broker = TestBroker::start().await;
    let (_raw, start) = Raw::start(&broker.uri).await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let mechanisms = start.mechanisms.to_string();
    let mechanisms: Vec<&str> = mechanisms.split(' ').collect();
    assert!(mechanisms.contains(&"PLAIN"), "{mechanisms:?}");
    assert!(mechanisms.contains(&"AMQPLAIN"), "{mechanisms:?}");
    assert_eq!(start.locales.to_string(), "en_US");
    let props = start.server_properties.inner();
    for key in ["product", "version", "platform", "cluster_name"] {
        match props.get(key) {
            Some(AMQPValue::LongString(s)) => assert!(!s.as_bytes().is_empty(), "{key}"),
            other => panic!("{key} should be a non-empty longstr, got {other:?}"),
        }
    }
    // kombu and amqplib branch on the product: RabbitMQ's, on Warren as on RabbitMQ.
    assert_eq!(
        props.get("product"),
        Some(&AMQPValue::LongString("RabbitMQ".into()))
    );
    if !external() {
        assert_eq!(
            props.get("version"),
            Some(&AMQPValue::LongString(
                warren::identity::RABBITMQ_VERSION.into()
            ))
        );
        assert_eq!(
            props.get("warren_version"),
            Some(&AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()))
        );
        match props.get("platform") {
            Some(AMQPValue::LongString(s)) => assert!(
                String::from_utf8_lossy(s.as_bytes())
                    .starts_with(&format!("Warren {}", env!("CARGO_PKG_VERSION"))),
                "{s:?}"
            ),
            other => panic!("platform: {other:?}"),
        }
    }
    let Some(AMQPValue::FieldTable(caps)) = props.get("capabilities") else {
        panic!("capabilities table missing: {props:?}");
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(
            caps.inner().get(cap),
            Some(&AMQPValue::Boolean(true)),
            "capability {cap}"
        );
    }
}

#[tokio::test]
async fn plain_and_amqplain_authenticate() {
    let broker = TestBroker::start().await;
    for uri in [
        broker.uri.clone(),
        format!("{}?auth_mechanism=plain", broker.uri),
        format!("{}?auth_mechanism=amqplain", broker.uri),
    ] {
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(conn.status().username(), "guest");
        let ch = conn.create_channel().await.expect("channel");
        ch.close(200, "bye".into()).await.expect("channel.close");
        conn.close(200, "bye".into())
            .await
            .expect("connection.close");
        assert!(!conn.status().connected());
    }
}

#[tokio::test]
async fn wrong_password_is_403_via_connection_close() {
    let broker = TestBroker::start().await;
    for (query, mechanism) in [("", "PLAIN"), ("?auth_mechanism=amqplain", "AMQPLAIN")] {
        let uri = format!("{}{query}", broker.uri_with("guest", "wrong", "%2f"));
        let (code, text) = connect_err(&uri).await;
        assert_eq!(code, 403);
        assert_eq!(
            text,
            format!(
                "ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            )
        );
        let (code, _) = connect_err(&broker.uri_with("nobody", "guest", "%2f")).await;
        assert_eq!(code, 403, "unknown user");
    }
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let broker = TestBroker::start().await;
    let vhost = unique("nope");
    let (code, text) = connect_err(&broker.uri_with("guest", "guest", &vhost)).await;
    assert_eq!(code, 530);
    assert_eq!(text, format!("NOT_ALLOWED - vhost {vhost} not found"));
}

#[tokio::test]
async fn tune_takes_the_lower_of_both_offers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    // RabbitMQ's defaults, which Warren offers too; lapin accepts them.
    assert_eq!(conn.configuration().channel_max(), 2047);
    assert_eq!(conn.configuration().frame_max(), 131_072);
    assert_eq!(conn.configuration().heartbeat(), 60);
    conn.close(200, "bye".into()).await.expect("close");

    let uri = format!("{}?frame_max=8192&channel_max=3&heartbeat=7", broker.uri);
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connects");
    assert_eq!(conn.configuration().channel_max(), 3);
    assert_eq!(conn.configuration().frame_max(), 8192);
    assert_eq!(conn.configuration().heartbeat(), 7);
    let mut channels = Vec::new();
    for _ in 0..3 {
        channels.push(conn.create_channel().await.expect("within channel_max"));
    }
    assert!(conn.create_channel().await.is_err(), "channel_max reached");
}

/// RabbitMQ 4.x answers a refused tune-ok with connection.close 530 (3.10 closed the
/// socket without a word).
#[tokio::test]
async fn tune_ok_outside_the_limits_is_530() {
    let broker = TestBroker::start().await;
    for (channel_max, frame_max, expected) in [
        (
            2047,
            1024,
            "NOT_ALLOWED - negotiated frame_max = 1024 is lower than the minimum allowed value (4096)",
        ),
        (
            2047,
            1_000_000,
            "NOT_ALLOWED - negotiated frame_max = 1000000 is higher than the maximum allowed value (131072)",
        ),
        (
            4000,
            4096,
            "NOT_ALLOWED - negotiated channel_max = 4000 is higher than the maximum allowed value (2047)",
        ),
        (
            0,
            4096,
            "NOT_ALLOWED - negotiated channel_max = 0 (no limit) is higher than the maximum allowed value (2047)",
        ),
        (
            2047,
            0,
            "NOT_ALLOWED - negotiated frame_max = 0 is higher than the maximum allowed value (131072)",
        ),
    ] {
        let mut raw = Raw::open_expecting_close(&broker.uri, channel_max, frame_max).await;
        let (code, text, class, method) = raw.expect_connection_close().await;
        assert_eq!((code, text.as_str()), (530, expected));
        assert_eq!((class, method), (10, 30), "blames connection.tune");
    }
}

#[tokio::test]
async fn broker_sends_heartbeats() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker.uri, 2047, 131_072, 1).await;
    // Keep our side alive while waiting for two heartbeats from the broker.
    let mut seen = 0;
    while seen < 2 {
        raw.send(&[8, 0, 0, 0, 0, 0, 0, 0xCE]).await;
        match raw.next().await {
            Got::Frame(amq_protocol::frame::AMQPFrame::Heartbeat) => seen += 1,
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn silent_peer_is_disconnected_after_missed_heartbeats() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker.uri, 2047, 131_072, 1).await;
    // Say nothing: the broker closes the socket (RabbitMQ: after two missed intervals,
    // without a connection.close). Its own heartbeats may come first.
    let start = std::time::Instant::now();
    loop {
        match raw.next().await {
            Got::Eof => break,
            Got::Frame(amq_protocol::frame::AMQPFrame::Heartbeat) => continue,
            Got::Frame(other) => panic!("unexpected frame {other:?}"),
        }
    }
    // Not before one full interval has passed (a lower bound, never an upper one).
    assert!(start.elapsed() >= Duration::from_secs(1));
    // Other connections are untouched.
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        "".into(),
        lapin::options::QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("still serving");
}

#[tokio::test]
async fn client_close_is_answered_with_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, 131_072).await;
    use amq_protocol::protocol::{AMQPClass, connection};
    raw.close_channel(1).await;
    // The channel number can be opened again.
    raw.open_channel(1).await;
    raw.send_method(0, common::raw::connection_close()).await;
    match raw.next_method().await {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
    // Closing the socket is now up to the client (RabbitMQ leaves it open too).
}

#[tokio::test]
async fn broker_shutdown_sends_320_connection_forced() {
    if external() {
        return; // stopping the broker is only possible in-process
    }
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let watch = common::watch_close(&ch).await;
    let mut events = conn.events_listener();
    broker.stop().await;
    let (code, text) = watch.error().await;
    assert_eq!(code, 320);
    assert_eq!(
        text,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    );
    let event = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let lapin::Event::Error(e) = e {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("the error event in time")
    .expect("an error event");
    assert_eq!(common::amqp_error(&event).0, 320);
    assert!(!conn.status().connected());
}

#[tokio::test]
async fn sigterm_and_ctrl_c_send_320_to_clients_of_the_binary() {
    if external() {
        return;
    }
    for signal in ["-TERM", "-INT"] {
        signal_sends_320(signal).await;
    }
}

async fn signal_sends_320(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, uri) =
        common::binary::start_warren(|port| common::binary::listen_args(port, dir.path())).await;
    let conn = tokio::time::timeout(
        WAIT,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("the binary answers in time")
    .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    let watch = common::watch_close(&ch).await;
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().expect("running").to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, text) = watch.error().await;
    assert_eq!(code, 320);
    assert_eq!(
        text,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    );
    let exit = child.wait().await.expect("wait");
    assert!(exit.success(), "clean exit on {signal}: {exit:?}");
}

#[test]
fn rabbitmq_default_env_variables_apply() {
    let mut config = warren::Config::default();
    config.apply_env(|k| match k {
        "RABBITMQ_DEFAULT_USER" => Some("admin".into()),
        "RABBITMQ_DEFAULT_PASS" => Some("s3cret".into()),
        "RABBITMQ_DEFAULT_VHOST" => Some("prod".into()),
        _ => None,
    });
    assert_eq!(config.default_user, "admin");
    assert_eq!(config.default_pass, "s3cret");
    assert_eq!(config.default_vhost, "prod");
    let mut untouched = warren::Config::default();
    untouched.apply_env(|_| None);
    assert_eq!(untouched.default_user, "guest");
    assert_eq!(untouched.default_pass, "guest");
    assert_eq!(untouched.default_vhost, "/");
}

#[tokio::test]
async fn default_user_and_vhost_from_config_are_used() {
    if external() {
        return;
    }
    let broker = TestBroker::start_with(|c| {
        c.apply_env(|k| match k {
            "RABBITMQ_DEFAULT_USER" => Some("admin".into()),
            "RABBITMQ_DEFAULT_PASS" => Some("s3cret".into()),
            "RABBITMQ_DEFAULT_VHOST" => Some("prod".into()),
            _ => None,
        })
    })
    .await;
    let conn = Connection::connect(
        &broker.uri_with("admin", "s3cret", "prod"),
        ConnectionProperties::default(),
    )
    .await
    .expect("the configured user on the configured vhost");
    assert_eq!(conn.status().vhost().as_str(), "prod");
    let (code, _) = connect_err(&broker.uri_with("guest", "guest", "prod")).await;
    assert_eq!(
        code, 403,
        "guest is not created when another user is configured"
    );
}

#[test]
fn help_lists_the_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--help")
        .output()
        .expect("run warren --help");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--log-level",
        "--help",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

/// A client that does not announce authentication_failure_close gets no
/// connection.close for a refused login: the socket is closed without a word, after
/// RabbitMQ's delay of a few seconds.
#[tokio::test]
async fn refused_login_without_failure_close_capability_closes_silently() {
    use amq_protocol::protocol::{AMQPClass, connection};
    use amq_protocol::types::{LongString, ShortString};
    let broker = TestBroker::start().await;
    // A wrong password from a client without authentication_failure_close, and an
    // authentication mechanism the broker does not offer (silent whatever the
    // client's capabilities, as in RabbitMQ).
    let mut caps = amq_protocol::types::FieldTable::default();
    caps.insert("authentication_failure_close".into(), true.into());
    let mut with_caps = amq_protocol::types::FieldTable::default();
    with_caps.insert("capabilities".into(), caps.into());
    for (properties, mechanism) in [
        (amq_protocol::types::FieldTable::default(), "PLAIN"),
        (with_caps, "RABBIT-CR-DEMO"),
    ] {
        let (mut raw, _) = Raw::start(&broker.uri).await;
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: properties,
                mechanism: ShortString::from(mechanism),
                response: LongString::from(&b"\0guest\0wrong"[..]),
                locale: ShortString::from("en_US"),
            })),
        )
        .await;
        match raw.next().await {
            Got::Eof => {}
            Got::Frame(f) => panic!("expected the socket to close silently, got {f:?}"),
        }
    }
}

/// connection.close followed by more frames (a client that had publishes buffered):
/// the broker answers close-ok and then reads and drops what follows until the
/// client closes the socket, as RabbitMQ does, instead of closing it on unread data
/// (which resets the connection under the client).
#[tokio::test]
async fn frames_after_connection_close_are_dropped_and_the_socket_left_to_the_client() {
    use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
    use common::raw::method_frame;
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker.uri, 2047, 131_072, 0).await;
    raw.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    assert!(matches!(
        raw.next_method().await,
        Some((1, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))))
    ));
    let mut bytes = method_frame(0, common::raw::connection_close());
    for _ in 0..2000 {
        bytes.extend(method_frame(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: "nowhere".into(),
                mandatory: false,
                immediate: false,
            })),
        ));
    }
    raw.send(&bytes).await;
    assert!(
        matches!(
            raw.next_method().await,
            Some((0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))))
        ),
        "close-ok"
    );
    // Nothing more comes, and the socket is neither closed nor reset meanwhile.
    let more = tokio::time::timeout(Duration::from_millis(500), raw.next()).await;
    assert!(more.is_err(), "the broker leaves the socket open: {more:?}");
    raw.stream.shutdown().await.expect("our side closes");
}

/// An exclusive queue is gone by the time connection.close-ok arrives: a client
/// that reconnects at once can declare it again.
#[tokio::test]
async fn exclusive_queues_are_deleted_before_close_ok() {
    use lapin::options::QueueDeclareOptions;
    let broker = TestBroker::start().await;
    let name = unique("mine");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    for _ in 0..20 {
        let conn = broker.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(name.as_str().into(), exclusive, FieldTable::default())
            .await
            .expect("declare: the previous owner's queue is gone");
        conn.close(200, "bye".into()).await.expect("close");
    }
}

/// Until tune-ok, frames are limited to 4096 bytes: a larger start-ok gets no answer
/// and the socket is closed, as RabbitMQ does.
#[tokio::test]
async fn oversized_start_ok_is_refused_silently() {
    use amq_protocol::protocol::{AMQPClass, connection};
    use amq_protocol::types::{LongString, ShortString};
    let broker = TestBroker::start().await;
    let (mut raw, _) = Raw::start(&broker.uri).await;
    let mut properties = amq_protocol::types::FieldTable::default();
    properties.insert(
        "padding".into(),
        AMQPValue::LongString(LongString::from("x".repeat(5000))),
    );
    raw.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: properties,
            mechanism: ShortString::from("PLAIN"),
            response: LongString::from(&b"\0guest\0guest"[..]),
            locale: ShortString::from("en_US"),
        })),
    )
    .await;
    match raw.next().await {
        Got::Eof => {}
        Got::Frame(f) => panic!("expected the socket to close without an answer, got {f:?}"),
    }
}

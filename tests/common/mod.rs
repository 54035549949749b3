//! Starts a broker in-process on a free port with its own data directory, so tests
//! never depend on a fixed port. Setting `WARREN_TEST_EXTERNAL_URI` runs the same test
//! against another broker (for example a reference RabbitMQ) instead.
#![allow(dead_code)]

pub mod access;
pub mod binary;
pub mod counts;
pub mod defs;
pub mod fixtures;
pub mod http;
pub mod policy;
pub mod raw;
pub mod scrape;

use lapin::{Channel, Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::oneshot;
use warren::{Config, Server};

/// A broker for one test. Dropping it stops the broker: the shutdown signal is sent and
/// the server task ends on its own, removing the data directory once the server has
/// stopped. So a failing (panicking) test cannot leave a broker running. Use
/// [`TestBroker::stop`] where a test must wait for the clean stop.
pub struct TestBroker {
    pub addr: Option<SocketAddr>,
    /// The Prometheus listener of an in-process broker (port 0 resolved).
    pub prometheus: Option<SocketAddr>,
    /// The management HTTP API's address (bound on port 0), if in-process.
    pub management: Option<SocketAddr>,
    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`
    pub uri: String,
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; it owns the data directory and hands it back when it ends.
    task: Option<tokio::task::JoinHandle<tempfile::TempDir>>,
    config: Option<Config>,
    data_dir: Option<PathBuf>,
    /// The running broker (None against an external one): tests change users,
    /// vhosts and policies through the functions the HTTP API calls.
    pub context: Option<std::sync::Arc<warren::connection::ServerContext>>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker after letting the test adjust its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestBroker {
        if let Ok(uri) = std::env::var("WARREN_TEST_EXTERNAL_URI") {
            return TestBroker {
                addr: None,
                prometheus: None,
                management: None,
                uri,
                shutdown: None,
                task: None,
                config: None,
                data_dir: None,
                context: None,
            };
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("valid address")],
            management_listen: Some("127.0.0.1:0".parse().expect("valid address")),
            data_dir: dir.path().to_owned(),
            prometheus_listen: Some("127.0.0.1:0".parse().expect("valid address")),
            ..Config::default()
        };
        adjust(&mut config);
        Self::launch(config, dir).await
    }

    async fn launch(config: Config, dir: tempfile::TempDir) -> TestBroker {
        let server = Server::bind(config.clone()).await.expect("broker binds");
        let addr = server.local_addr();
        let prometheus = server.prometheus_addr();
        let management = server.management_addr();
        let context = server.context();
        let (tx, rx) = oneshot::channel();
        let data_dir = dir.path().to_owned();
        // The task owns the directory, so it outlives the server even when the handle
        // is dropped without waiting.
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("broker runs");
            dir
        });
        TestBroker {
            addr: Some(addr),
            prometheus,
            management,
            uri: format!("amqp://guest:guest@{addr}/%2f"),
            shutdown: Some(tx),
            task: Some(task),
            config: Some(config),
            data_dir: Some(data_dir),
            context: Some(context),
        }
    }

    /// Stops the broker cleanly and starts a new one on the same data directory (on a
    /// new port: connect again with the new `uri`).
    /// The in-process broker; panics against an external broker (check
    /// [`TestBroker::external`] first).
    pub fn broker(&self) -> &warren::broker::Broker {
        &self.context.as_ref().expect("an in-process broker").broker
    }

    /// Whether the test runs against an external broker (`WARREN_TEST_EXTERNAL_URI`).
    pub fn external(&self) -> bool {
        self.context.is_none()
    }

    pub async fn restart(mut self) -> TestBroker {
        let config = self.config.take().expect("an in-process broker");
        let dir = self.halt().await.expect("the broker stopped cleanly");
        Self::launch(config, dir).await
    }

    /// The data directory of an in-process broker.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.data_dir.clone()
    }

    /// The URI with other credentials or vhost, e.g. `uri_with("guest", "bad", "%2f")`.
    /// A management API client as guest (in-process brokers only).
    pub fn api(&self) -> http::Api {
        if let Some(addr) = external_api() {
            return http::Api::new(addr, "guest", "guest");
        }
        http::Api::new(
            self.management.expect("an in-process broker with its API"),
            "guest",
            "guest",
        )
    }

    pub fn uri_with(&self, user: &str, pass: &str, vhost: &str) -> String {
        let rest = self.uri.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
        let host = rest.split('/').next().unwrap_or("");
        format!("amqp://{user}:{pass}@{host}/{vhost}")
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri, ConnectionProperties::default())
            .await
            .expect("connects")
    }

    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel opens");
        (conn, ch)
    }

    /// Stops the broker (clients get connection.close 320) and waits for it to exit.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Sends the shutdown signal and waits for the server task; returns the data
    /// directory unless the task failed (or the broker is external).
    async fn halt(&mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.ok(),
            None => None,
        }
    }
}

impl Drop for TestBroker {
    /// Sends the shutdown signal without waiting: the server task then finishes by
    /// itself (or is dropped with the test's runtime) and removes the data directory.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A unique name, so tests against a shared external broker do not collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The reply code and reply text of the channel.close or connection.close behind `e`.
pub fn amqp_error(e: &lapin::Error) -> (u16, String) {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => (a.get_id(), a.get_message().to_string()),
        other => panic!("expected an AMQP error, got {other:?}"),
    }
}

/// Awaits an operation that must fail with an AMQP error; returns its code and text.
pub async fn expect_amqp_error<T: std::fmt::Debug>(
    op: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> (u16, String) {
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), op)
        .await
        .expect("the broker answers in time");
    match result {
        Ok(v) => panic!("expected an AMQP error, got Ok({v:?})"),
        Err(e) => amqp_error(&e),
    }
}

/// Observes an asynchronous close of a channel, one caused by a method that has no
/// reply (basic.publish, basic.ack...). lapin hands the channel.close (or the
/// connection.close) to the channel's consumers, so this holds one on a private queue.
pub struct CloseWatch(lapin::Consumer);

/// Arms a [`CloseWatch`] on `ch`; call it before the offending method.
pub async fn watch_close(ch: &Channel) -> CloseWatch {
    let q = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("watch queue");
    let consumer = ch
        .basic_consume(
            q.name().as_str().into(),
            "".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("watch consumer");
    CloseWatch(consumer)
}

impl CloseWatch {
    /// Waits for the close and returns its reply code and text.
    pub async fn error(mut self) -> (u16, String) {
        use futures_lite::StreamExt;
        match tokio::time::timeout(std::time::Duration::from_secs(10), self.0.next())
            .await
            .expect("the channel is closed in time")
        {
            Some(Err(e)) => amqp_error(&e),
            other => panic!("expected the channel to close with an error, got {other:?}"),
        }
    }
}

/// Publishes one message and waits for its confirm (`NotRequested` when the channel
/// is not in confirm mode).
pub async fn publish(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: lapin::BasicProperties,
) -> lapin::Confirmation {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("confirm")
}

/// Publishes one message that must not be refused: acked, or not confirmed at all.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: lapin::BasicProperties,
) {
    let confirm = publish(ch, exchange, key, body, props).await;
    assert!(
        matches!(
            confirm,
            lapin::Confirmation::Ack(_) | lapin::Confirmation::NotRequested
        ),
        "{confirm:?}"
    );
}

/// The next delivery of a consumer, failing the test if none comes within 10 s.
pub async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_lite::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next())
        .await
        .expect("delivery in time")
        .expect("consumer still running")
        .expect("delivery")
}

/// The management API of the external broker (`WARREN_TEST_EXTERNAL_API`, e.g.
/// `http://127.0.0.1:15672`), when the tests run against one.
pub fn external_api() -> Option<SocketAddr> {
    let url = std::env::var("WARREN_TEST_EXTERNAL_API").ok()?;
    let rest = url.trim_start_matches("http://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    hostport.to_socket_addrs().ok()?.next()
}

/// Whether the tests run against an external broker (`WARREN_TEST_EXTERNAL_URI`).
pub fn external() -> bool {
    std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok()
}

/// A channel in confirm mode, so that a confirmed publish has been routed.
pub async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

/// Properties of a persistent message (delivery-mode 2).
pub fn persistent() -> lapin::BasicProperties {
    lapin::BasicProperties::default().with_delivery_mode(2)
}

/// A fresh server-named exclusive queue.
pub async fn temp_queue(ch: &Channel) -> String {
    let options = lapin::options::QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    declare_with(ch, "", options)
        .await
        .expect("declare")
        .name()
        .to_string()
}

/// A passive queue.declare on `ch`.
pub async fn passive_declare(ch: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    declare_with(ch, queue, options).await
}

/// queue.declare with `options` and no arguments.
pub async fn declare_with(
    ch: &Channel,
    queue: &str,
    options: lapin::options::QueueDeclareOptions,
) -> Result<lapin::Queue, lapin::Error> {
    ch.queue_declare(queue.into(), options, lapin::types::FieldTable::default())
        .await
}

/// Ready messages of a queue, from a passive declare on a throw-away channel.
pub async fn ready(conn: &Connection, queue: &str) -> u32 {
    let ch = conn.create_channel().await.expect("channel");
    let q = passive_declare(&ch, queue).await.expect("passive declare");
    ch.close(200, "done".into()).await.expect("close");
    q.message_count()
}

/// Takes every ready message with basic.get (no-ack): (body, redelivered).
pub async fn get_all(ch: &Channel, queue: &str) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
    {
        out.push((m.delivery.data, m.delivery.redelivered));
    }
    out
}

/// Takes every ready message with basic.get (no-ack): (UTF-8 body, redelivered).
pub async fn drain(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    get_all(ch, queue)
        .await
        .into_iter()
        .map(|(body, redelivered)| (String::from_utf8(body).expect("utf-8 body"), redelivered))
        .collect()
}

/// The UTF-8 bodies of every ready message, taken with basic.get (no-ack).
pub async fn drain_bodies(ch: &Channel, queue: &str) -> Vec<String> {
    drain(ch, queue)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect()
}

/// Publishes `body` to the default exchange for `queue` and gets it back with
/// basic.get: the channel still serves.
pub async fn assert_round_trip(ch: &Channel, queue: &str, body: &[u8]) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        lapin::BasicProperties::default(),
    )
    .await
    .expect("publish");
    let m = ch
        .basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
        .expect("the message");
    assert_eq!(m.delivery.data, body);
}

/// basic.consume with a server-chosen tag.
pub async fn consume(
    ch: &Channel,
    queue: &str,
    options: lapin::options::BasicConsumeOptions,
) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        options,
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

/// basic.consume in no-ack mode with the given tag ("" lets the broker choose).
pub async fn consume_no_ack(ch: &Channel, queue: &str, tag: &str) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        tag.into(),
        lapin::options::BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

/// A durable queue.declare without arguments.
pub async fn declare_durable(ch: &Channel, queue: &str) -> lapin::Queue {
    let options = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    declare_with(ch, queue, options).await.expect("declare")
}

//! Users, permissions and vhost limits for tests, set through the functions the HTTP
//! API calls, and the shapes of RabbitMQ's refusals.

use super::{TestBroker, expect_amqp_error};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::types::{AMQPValue, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use warren::access::{Parameter, Permission, TopicPermission, User};

/// Creates (or replaces) user `name` with password `pass` and no tags.
pub fn add_user(broker: &TestBroker, name: &str, pass: &str) {
    let user = User {
        name: name.to_owned(),
        password_hash: String::new(),
        hashing_algorithm: String::new(),
        tags: Vec::new(),
        limits: Default::default(),
    };
    broker
        .broker()
        .put_user(user, Some(pass))
        .expect("user created");
}

/// Sets `user`'s configure, write and read regexes in `vhost`.
pub fn grant(broker: &TestBroker, user: &str, vhost: &str, perms: [&str; 3]) {
    broker
        .broker()
        .set_permissions(Permission {
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            configure: perms[0].to_owned(),
            write: perms[1].to_owned(),
            read: perms[2].to_owned(),
        })
        .expect("permissions set");
}

/// Sets `user`'s topic write and read regexes on `exchange` in `/`.
pub fn grant_topic(broker: &TestBroker, user: &str, exchange: &str, write: &str, read: &str) {
    broker
        .broker()
        .set_topic_permissions(TopicPermission {
            user: user.to_owned(),
            vhost: "/".to_owned(),
            exchange: exchange.to_owned(),
            write: write.to_owned(),
            read: read.to_owned(),
        })
        .expect("topic permissions set");
}

/// Sets the `vhost-limits` of `vhost` (a JSON object such as `{"max-queues": 1}`).
pub fn set_vhost_limits(broker: &TestBroker, vhost: &str, limits: serde_json::Value) {
    broker
        .broker()
        .set_parameter(Parameter {
            vhost: vhost.to_owned(),
            component: "vhost-limits".to_owned(),
            name: "limits".to_owned(),
            value: limits,
        })
        .expect("limits set");
}

/// Connects as `user` (password `pass`) to `vhost` (percent-encoded).
pub async fn connect_as(broker: &TestBroker, user: &str, pass: &str, vhost: &str) -> Connection {
    Connection::connect(
        &broker.uri_with(user, pass, vhost),
        ConnectionProperties::default(),
    )
    .await
    .expect("connects")
}

/// A connection that must be refused: its reply code and text.
pub async fn refused_connection(
    broker: &TestBroker,
    user: &str,
    pass: &str,
    vhost: &str,
) -> (u16, String) {
    expect_amqp_error(Connection::connect(
        &broker.uri_with(user, pass, vhost),
        ConnectionProperties::default(),
    ))
    .await
}

/// A login to `/` that must be refused (403).
pub async fn assert_login_refused(broker: &TestBroker, user: &str, pass: &str) {
    let (code, text) = refused_connection(broker, user, pass, "%2f").await;
    assert_eq!(code, 403, "{text}");
}

/// RabbitMQ's 403 text for `perm` on a resource of `kind` in vhost `/`.
pub fn denial(perm: &str, kind: &str, name: &str, user: &str) -> String {
    format!(
        "ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '/' refused for user '{user}'"
    )
}

/// RabbitMQ's 403 text for a topic permission in vhost `/`.
pub fn topic_denial(perm: &str, key: &str, exchange: &str, user: &str) -> String {
    format!(
        "ACCESS_REFUSED - {perm} access to topic '{key}' in exchange '{exchange}' in vhost '/' refused for user '{user}'"
    )
}

pub async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args)
        .await
}

pub async fn declare_queue(
    ch: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<lapin::Queue, lapin::Error> {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
}

/// Publishes on a confirm channel and waits for the confirm (or the channel's close).
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default(),
    )
    .await?
    .await
    .map(|_| ())
}

/// The user the permission tests restrict.
pub const U: &str = "u";

/// A broker with user `u` (password `p`), and a guest connection for fixtures.
pub struct Fixture {
    pub broker: TestBroker,
    pub guest: Channel,
    pub _guest_conn: Connection,
    pub conn: Connection,
}

impl Fixture {
    pub async fn new(perms: [&str; 3]) -> Fixture {
        let broker = TestBroker::start().await;
        add_user(&broker, U, "p");
        grant(&broker, U, "/", perms);
        let (guest_conn, guest) = broker.channel().await;
        let conn = connect_as(&broker, U, "p", "%2f").await;
        Fixture {
            broker,
            guest,
            _guest_conn: guest_conn,
            conn,
        }
    }

    pub fn grant(&self, perms: [&str; 3]) {
        grant(&self.broker, U, "/", perms);
    }

    /// Queues made by guest.
    pub async fn queues(&self, names: &[&str]) {
        for q in names {
            declare_queue(&self.guest, q, none())
                .await
                .expect("guest declares");
        }
    }

    /// Direct exchanges made by guest.
    pub async fn exchanges(&self, names: &[&str]) {
        for x in names {
            declare_exchange(&self.guest, x, ExchangeKind::Direct, none())
                .await
                .expect("guest declares");
        }
    }

    pub async fn ch(&self) -> Channel {
        self.conn.create_channel().await.expect("channel")
    }

    /// Awaits a refused operation: asserts 403 and returns the text.
    pub async fn refused<T: std::fmt::Debug>(
        &self,
        op: impl std::future::Future<Output = Result<T, lapin::Error>>,
    ) -> String {
        let (code, text) = expect_amqp_error(op).await;
        assert_eq!(code, 403, "{text}");
        text
    }
}

/// A table with one string argument.
pub fn table(key: &str, value: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    t
}

pub fn none() -> FieldTable {
    FieldTable::default()
}

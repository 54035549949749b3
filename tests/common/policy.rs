//! Helpers of the policy tests: policies on vhost "/", set through the broker's own
//! functions, and the queue operations the tests observe them with.

use super::{TestBroker, publish_confirmed as publish, ready};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::Duration;
use warren::access::Policy;
use warren::broker::policy::PolicyHolder;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

pub fn int(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

/// A policy on vhost "/" matching exactly `name` (anchored by the test).
pub fn policy(name: &str, pattern: &str, apply_to: &str, priority: i64, def: &str) -> Policy {
    Policy {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to: apply_to.into(),
        priority,
        definition: serde_json::from_str(def).expect("definition JSON"),
    }
}

pub fn exact(name: &str) -> String {
    format!("^{name}$")
}

pub fn set(broker: &TestBroker, p: Policy) {
    broker.broker().set_policy(p, false).expect("policy set");
}

pub fn set_operator(broker: &TestBroker, p: Policy) {
    broker
        .broker()
        .set_policy(p, true)
        .expect("operator policy set");
}

pub async fn declare(ch: &Channel, name: &str, arguments: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare");
}

pub async fn send(ch: &Channel, queue: &str, bodies: &[&str]) {
    for b in bodies {
        publish(ch, "", queue, b.as_bytes(), BasicProperties::default()).await;
    }
}

pub async fn bodies(ch: &Channel, queue: &str) -> Vec<String> {
    super::drain_bodies(ch, queue).await
}

/// Polls until the queue holds `n` ready messages.
pub async fn wait_ready(conn: &lapin::Connection, queue: &str, n: u32) {
    tokio::time::timeout(WAIT, async {
        while ready(conn, queue).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("queue {queue} reaches {n} messages"));
}

pub fn queue(broker: &TestBroker, name: &str) -> std::sync::Arc<warren::broker::Queue> {
    broker
        .broker()
        .vhost("/")
        .expect("vhost")
        .queue(name, 0)
        .expect("queue")
}

pub fn policy_name(broker: &TestBroker, q: &str) -> Option<String> {
    queue(broker, q).policy().map(|(n, _)| n)
}

/// A fanout exchange `x` with queue `q` bound to it.
pub async fn fanout_to(ch: &Channel, x: &str, q: &str) {
    ch.exchange_declare(
        x.into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    declare(ch, q, FieldTable::default()).await;
    ch.queue_bind(
        q.into(),
        x.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
}

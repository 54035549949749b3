//! Dead-lettering: the message a queue republishes to its dead-letter exchange, with
//! the `x-death` history and `x-first-death-*` / `x-last-death-*` headers written as
//! RabbitMQ writes them.

use crate::model::Message;
use crate::model::fields::encode_properties;
use crate::model::memory::MemoryGauge;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use std::sync::Arc;

/// Why a message was dead-lettered (the `reason` of its `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// basic.reject or basic.nack with requeue=false.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// It was dropped from the head of a full queue, or refused by one.
    Maxlen,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
        }
    }
}

fn longstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn str_of(v: Option<&AMQPValue>) -> Option<&[u8]> {
    match v {
        Some(AMQPValue::LongString(s)) => Some(s.as_bytes()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// The same properties without `expiration` (which a dead-lettered copy loses) and
/// with new headers.
fn without_expiration(p: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut out = BasicProperties::default().with_headers(headers);
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

/// The queues named in a message's `x-death` history, most recent first, with the
/// reason of each death.
fn deaths(headers: Option<&FieldTable>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(AMQPValue::FieldArray(list)) = headers.and_then(|h| h.inner().get("x-death")) else {
        return Vec::new();
    };
    list.as_slice()
        .iter()
        .filter_map(|v| match v {
            AMQPValue::FieldTable(t) => Some((
                str_of(t.inner().get("queue"))?.to_vec(),
                str_of(t.inner().get("reason"))?.to_vec(),
            )),
            _ => None,
        })
        .collect()
}

/// Whether dead-lettering a message into `target` would close a cycle that no client
/// rejection interrupted; RabbitMQ drops such messages instead of looping forever.
pub fn is_cycle(headers: &FieldTable, target: &str) -> bool {
    let history = deaths(Some(headers));
    let Some(at) = history.iter().position(|(q, _)| q == target.as_bytes()) else {
        return false;
    };
    history[..=at].iter().all(|(_, r)| r != b"rejected")
}

/// Builds the copy of `msg` that queue `queue` dead-letters to `exchange`; also
/// returns its headers (for routing it).
pub fn dead_letter(
    msg: &Message,
    reason: Reason,
    queue: &str,
    exchange: &str,
    routing_key: Option<&str>,
    memory: &Arc<MemoryGauge>,
) -> (Message, FieldTable) {
    let original = msg.properties();
    let mut headers = original.headers().clone().unwrap_or_default();
    let mut history: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |v: &AMQPValue| match v {
        AMQPValue::FieldTable(t) => {
            str_of(t.inner().get("queue")) == Some(queue.as_bytes())
                && str_of(t.inner().get("reason")) == Some(reason.as_str().as_bytes())
        }
        _ => false,
    };
    let entry = match history.iter().position(same) {
        Some(at) => {
            let mut t = match history.remove(at) {
                AMQPValue::FieldTable(t) => t,
                _ => FieldTable::default(),
            };
            let count = match t.inner().get("count") {
                Some(v) => crate::broker::args::integer(v).unwrap_or(0),
                None => 0,
            };
            t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
            t
        }
        None => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), longstr(reason.as_str()));
            t.insert("queue".into(), longstr(queue));
            t.insert(
                "time".into(),
                AMQPValue::Timestamp(crate::model::now_ms() / 1000),
            );
            t.insert("exchange".into(), longstr(msg.exchange.as_str()));
            // The routing key and the CC keys (BCC is gone from the message).
            let mut keys = FieldArray::default();
            keys.push(longstr(msg.routing_key.as_str()));
            let cc = crate::model::message::header_routes(original.headers().as_ref());
            for key in cc.unwrap_or_default() {
                keys.push(longstr(&key));
            }
            t.insert("routing-keys".into(), AMQPValue::FieldArray(keys));
            if let Some(exp) = original.expiration() {
                t.insert("original-expiration".into(), longstr(exp.as_str()));
            }
            t
        }
    };
    history.insert(0, AMQPValue::FieldTable(entry));
    headers.insert("x-death".into(), AMQPValue::FieldArray(history.into()));
    if !headers.contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), longstr(reason.as_str()));
        headers.insert("x-first-death-queue".into(), longstr(queue));
        headers.insert(
            "x-first-death-exchange".into(),
            longstr(msg.exchange.as_str()),
        );
    }
    headers.insert("x-last-death-reason".into(), longstr(reason.as_str()));
    headers.insert("x-last-death-queue".into(), longstr(queue));
    headers.insert(
        "x-last-death-exchange".into(),
        longstr(msg.exchange.as_str()),
    );
    let properties = without_expiration(&original, headers.clone());
    let raw_properties = encode_properties(&properties);
    let charge = memory.charge(msg.body.len() + raw_properties.len());
    let copy = Message::new(
        ShortString::from(exchange),
        ShortString::from(routing_key.unwrap_or(msg.routing_key.as_str())),
        &properties,
        raw_properties,
        msg.body.clone(),
        charge,
    );
    (copy, headers)
}

//! A published message. It is reference-counted: routed to ten queues, it exists once.

use crate::model::memory::MemoryCharge;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use bytes::Bytes;

/// A queued message: in memory, or paged out to the store (only what the queue's
/// index needs stays in memory).
#[derive(Debug, Clone)]
pub enum Slot {
    Loaded(std::sync::Arc<Message>),
    Paged {
        store_id: u64,
        body_len: u32,
        priority: u8,
    },
}

/// A message as queues hold it. Only the encoded properties are kept (they are sent
/// verbatim on delivery), with the few decoded fields queues need; the rest is decoded
/// again in the rare cases that need it (dead-lettering). This keeps a queued message
/// small: millions of them may sit in memory.
#[derive(Debug)]
pub struct Message {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    /// The properties as the publisher encoded them, re-sent verbatim on delivery.
    pub raw_properties: Bytes,
    pub body: Bytes,
    /// Id of the stored copy (persistent messages in durable queues); 0 if none.
    pub store_id: u64,
    /// This message's share of the memory alarm's account.
    pub charge: MemoryCharge,
    /// delivery_mode = 2.
    persistent: bool,
    /// The priority property (0 when absent).
    priority: u8,
    /// The message's own time to live (`expiration`), in milliseconds.
    ttl: Option<u64>,
}

impl Message {
    pub fn new(
        exchange: ShortString,
        routing_key: ShortString,
        properties: &BasicProperties,
        raw_properties: Bytes,
        body: Bytes,
        charge: MemoryCharge,
    ) -> Message {
        Message {
            exchange,
            routing_key,
            raw_properties,
            body,
            store_id: 0,
            charge,
            persistent: properties.delivery_mode() == &Some(2),
            priority: properties.priority().unwrap_or(0),
            ttl: properties
                .expiration()
                .as_ref()
                .and_then(|e| parse_expiration(e.as_str()).ok()),
        }
    }

    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The message's own time to live (`expiration`), in milliseconds.
    pub fn ttl(&self) -> Option<u64> {
        self.ttl
    }

    /// The decoded properties. They were valid when published, so decoding them
    /// again does not fail; if it ever did, the message is treated as having none.
    pub fn properties(&self) -> BasicProperties {
        amq_protocol::protocol::basic::parse_properties(self.raw_properties.as_ref())
            .map(|(_, p)| p)
            .unwrap_or_default()
    }
}

/// Reads an `expiration` property as RabbitMQ does; the error is the detail of its
/// 406 text ("invalid expiration '...': detail").
pub fn parse_expiration(s: &str) -> Result<u64, String> {
    let digits_end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    let (num, rest) = s.split_at(digits_end);
    let n: i64 = match num.parse() {
        Ok(n) => n,
        Err(_) if num.len() > 1 => return Err(format!("{{value_too_large,{num}}}")),
        Err(_) => return Err("no_integer".into()),
    };
    if !rest.is_empty() {
        return Err(format!("{{leftover_string,\"{rest}\"}}"));
    }
    if n < 0 {
        return Err(format!("{{value_negative,{n}}}"));
    }
    if n > 315_360_000_000 {
        return Err(format!("{{value_too_large,{n}}}"));
    }
    Ok(n as u64)
}

/// The header listing more routing keys for a message (sender-selected distribution).
pub const CC: &str = "CC";
/// Like `CC`, but removed from the message before it is stored or delivered.
pub const BCC: &str = "BCC";

/// The routing keys a publisher adds in the `CC` and `BCC` headers, as RabbitMQ reads
/// them: the string entries of each array. A `CC` or `BCC` that is not an array makes
/// the message invalid; the error is RabbitMQ's description of it.
pub fn header_routes(headers: Option<&FieldTable>) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let Some(headers) = headers else {
        return Ok(keys);
    };
    for name in [CC, BCC] {
        match headers.inner().get(name) {
            None => {}
            Some(AMQPValue::FieldArray(routes)) => {
                for route in routes.as_slice() {
                    if let AMQPValue::LongString(s) = route {
                        keys.push(String::from_utf8_lossy(s.as_bytes()).into_owned());
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "invalid message: {{unacceptable_type_in_header,\"{name}\",{}}}",
                    crate::model::fields::type_name(other)
                ));
            }
        }
    }
    Ok(keys)
}

/// Whether `headers` carry sender-selected routing keys.
pub fn has_header_routes(headers: Option<&FieldTable>) -> bool {
    headers.is_some_and(|h| h.contains_key(CC) || h.contains_key(BCC))
}

/// `headers` without `BCC`.
pub fn without_bcc(headers: &FieldTable) -> FieldTable {
    let mut out = FieldTable::default();
    for (k, v) in headers.inner() {
        if k.as_str() != BCC {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

//! A published message. It is reference-counted: routed to ten queues, it exists once.

use crate::broker::memory::MemoryCharge;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::ShortString;
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

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    pub properties: BasicProperties,
    /// The properties as the publisher encoded them, re-sent verbatim on delivery.
    pub raw_properties: Bytes,
    pub body: Bytes,
    /// Id of the stored copy (persistent messages in durable queues); 0 if none.
    pub store_id: u64,
    /// This message's share of the memory alarm's account.
    pub charge: MemoryCharge,
}

impl Message {
    pub fn is_persistent(&self) -> bool {
        self.properties.delivery_mode() == &Some(2)
    }

    /// The message's own time to live (`expiration`), in milliseconds.
    pub fn ttl(&self) -> Option<u64> {
        self.properties
            .expiration()
            .as_ref()
            .and_then(|e| parse_expiration(e.as_str()).ok())
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

//! What every layer shares and nothing below it: the message as queues, the store and
//! the wire see it, its memory charge, the broker's error type, and the few field
//! helpers they all need. This module imports no other Warren module.

pub mod clock;
pub mod error;
pub mod fields;
pub mod memory;
pub mod message;
pub mod paged;

pub use error::{BrokerError, BrokerResult};
pub use message::{Message, Slot};

/// A hash map for the message path (channels by number, consumers by tag, binding
/// keys): foldhash instead of the standard SipHash, which was 4-5% of the broker's CPU
/// per message. Seeded per map, as the standard one.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Wall-clock milliseconds since the Unix epoch: message expiry survives restarts.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

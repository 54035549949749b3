//! A published message. It is reference-counted: routed to ten queues, it exists once.

use crate::broker::memory::MemoryCharge;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::ShortString;
use bytes::Bytes;

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
}

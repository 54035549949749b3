//! How durable bindings and entity names are keyed in the store's tables.

use super::codec::{put_bytes, put_table};
use amq_protocol::types::FieldTable;

/// A durable binding as stored: both ends durable.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingKey {
    pub vhost: String,
    pub source: String,
    /// true: the destination is a queue; false: an exchange.
    pub to_queue: bool,
    pub destination: String,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl BindingKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut k = Vec::new();
        put_bytes(&mut k, self.vhost.as_bytes());
        put_bytes(&mut k, self.source.as_bytes());
        k.push(u8::from(self.to_queue));
        put_bytes(&mut k, self.destination.as_bytes());
        put_bytes(&mut k, self.routing_key.as_bytes());
        put_table(&mut k, &self.arguments);
        k
    }
}

pub(super) fn entity_key(vhost: &str, name: &str) -> String {
    format!("{vhost}\0{name}")
}

//! Read-only views of a queue's consumers, for the management API and the metrics.

use super::Queue;
use super::stream::Position;
use amq_protocol::types::{FieldTable, ShortString};

/// One consumer of a queue, as the management API lists it.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub tag: ShortString,
    pub channel: u16,
    pub connection_id: u64,
    /// Whether the client acknowledges deliveries (not `no_ack`).
    pub ack_required: bool,
    pub exclusive: bool,
    /// The per-consumer prefetch limit (0: none).
    pub prefetch_count: u32,
    pub arguments: FieldTable,
    /// Receives deliveries: always, except the consumers waiting behind a queue's
    /// single active consumer.
    pub active: bool,
    /// RabbitMQ's `activity_status`: `up`, or `single_active` / `waiting` with a
    /// single active consumer.
    pub activity_status: &'static str,
    /// A stream consumer's place in the stream.
    pub stream: Option<Position>,
}

impl Queue {
    /// The queue's consumers, in the order they subscribed.
    pub fn consumer_infos(&self) -> Vec<ConsumerInfo> {
        if let Some(s) = self.stream() {
            // A stream's consumers each read at their own pace: all are active.
            return s
                .positions()
                .into_iter()
                .map(|(c, position)| ConsumerInfo {
                    tag: c.tag.clone(),
                    channel: c.channel,
                    connection_id: c.connection_id,
                    ack_required: !c.no_ack,
                    exclusive: c.exclusive,
                    prefetch_count: c.credit.limit(),
                    arguments: c.arguments.clone(),
                    active: true,
                    activity_status: "up",
                    stream: Some(position),
                })
                .collect();
        }
        let state = self.lock();
        let single = state.settings.single_active_consumer;
        state
            .consumers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (active, activity_status) = match (single, i) {
                    (false, _) => (true, "up"),
                    (true, 0) => (true, "single_active"),
                    (true, _) => (false, "waiting"),
                };
                ConsumerInfo {
                    tag: c.tag.clone(),
                    channel: c.channel,
                    connection_id: c.connection_id,
                    ack_required: !c.no_ack,
                    exclusive: c.exclusive,
                    prefetch_count: c.credit.limit(),
                    arguments: c.arguments.clone(),
                    active,
                    activity_status,
                    stream: None,
                }
            })
            .collect()
    }
}

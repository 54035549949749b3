//! RabbitMQ's channel families (`rabbitmq_channel_*`), in their aggregated form: the
//! RabbitMQ-Overview dashboard of rabbitmq-server before its switch to the global
//! counters (still what many imported dashboards query) reads these.
//!
//! RabbitMQ sums them over the open channels, so a closing channel takes its counts
//! away; Warren serves the broker-wide counts instead, which only grow, as a counter
//! should (what `rate()` over them shows is the same while channels stay open).

use super::counters::get;
use super::tally::Tally;
use super::text::{Kind, Text};

/// The channel families, from the broker's counters and the consumer count.
pub fn render(t: &mut Text, m: &Tally, consumers: u64) {
    t.single(
        "rabbitmq_channel_consumers",
        Kind::Gauge,
        "Consumers on a channel",
        &[],
        consumers,
    );
    let counters = [
        (
            "rabbitmq_channel_messages_published_total",
            "Total number of messages published into an exchange on a channel",
            get(&m.received),
        ),
        (
            "rabbitmq_channel_messages_confirmed_total",
            "Total number of messages published into an exchange and confirmed on the channel",
            get(&m.confirmed),
        ),
        (
            "rabbitmq_channel_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            get(&m.unroutable_returned),
        ),
        (
            "rabbitmq_channel_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            get(&m.unroutable_dropped),
        ),
        (
            "rabbitmq_channel_get_ack_total",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            get(&m.deliveries.get_manual_ack),
        ),
        (
            "rabbitmq_channel_get_total",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            get(&m.deliveries.get_auto_ack),
        ),
        (
            "rabbitmq_channel_messages_delivered_ack_total",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            get(&m.deliveries.consume_manual_ack),
        ),
        (
            "rabbitmq_channel_messages_delivered_total",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            get(&m.deliveries.consume_auto_ack),
        ),
        (
            "rabbitmq_channel_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            get(&m.deliveries.redelivered),
        ),
        (
            "rabbitmq_channel_messages_acked_total",
            "Total number of messages acknowledged by consumers",
            get(&m.acknowledged),
        ),
        (
            "rabbitmq_channel_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            get(&m.get_empty),
        ),
    ];
    for (name, help, value) in counters {
        t.single(name, Kind::Counter, help, &[], value);
    }
}

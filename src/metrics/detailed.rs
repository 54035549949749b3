//! `/metrics/detailed?family=...&vhost=...`: RabbitMQ's metric families picked by
//! name, each sample per object, under the `rabbitmq_detailed_` prefix; and the
//! per-channel and per-connection families of `/metrics/per-object`.
//!
//! Channels and connections are labelled `channel` as in RabbitMQ (whose connection
//! families use that label too); the value is the channel's or connection's name as
//! the management API gives it, where RabbitMQ gives an Erlang process id. Warren
//! counts a channel's events per channel, not per exchange and queue: the families
//! RabbitMQ splits by exchange or queue carry the `vhost` label only.

use super::counters::get;
use super::text::{Kind, Text};
use crate::broker::channels::ChannelSnapshot;
use crate::connection::ServerContext;
use std::sync::Arc;

/// One open channel, as the channel families report it.
pub struct ChannelRow {
    pub label: String,
    pub vhost: Arc<str>,
    pub stats: ChannelSnapshot,
}

/// One open connection, as the connection families report it.
pub struct ConnectionRow {
    pub label: String,
    pub channels: usize,
    pub received: u64,
    pub sent: u64,
}

/// Every open channel and connection.
pub fn rows(ctx: &ServerContext) -> (Vec<ChannelRow>, Vec<ConnectionRow>) {
    let mut channels = Vec::new();
    let mut connections = Vec::new();
    for entry in ctx.broker.connections().entries() {
        let info = entry.info();
        let name = info.name();
        let table = entry.channel_table().snapshots();
        let (received, sent) = entry.traffic();
        connections.push(ConnectionRow {
            label: name.clone(),
            channels: table.len(),
            received,
            sent,
        });
        for stats in table {
            channels.push(ChannelRow {
                label: format!("{name} ({})", stats.number),
                vhost: info.vhost.clone(),
                stats,
            });
        }
    }
    (channels, connections)
}

type ChannelPick = fn(&ChannelSnapshot) -> u64;

/// channel_metrics: (name, kind, help, value).
const CHANNEL_METRICS: [(&str, &str, ChannelPick); 7] = [
    ("channel_consumers", "Consumers on a channel", |s| {
        u64::from(s.consumer_count)
    }),
    (
        "channel_messages_unacked",
        "Delivered but not yet acknowledged messages",
        |s| s.messages_unacknowledged,
    ),
    (
        "channel_messages_unconfirmed",
        "Published but not yet confirmed messages",
        |s| s.messages_unconfirmed,
    ),
    (
        "channel_messages_uncommitted",
        "Messages received in a transaction but not yet committed",
        |s| s.messages_uncommitted,
    ),
    (
        "channel_acks_uncommitted",
        "Message acknowledgements in a transaction not yet committed",
        |s| s.acks_uncommitted,
    ),
    (
        "consumer_prefetch",
        "Limit of unacknowledged messages for each consumer",
        |s| u64::from(s.prefetch_count),
    ),
    (
        "channel_prefetch",
        "Total limit of unacknowledged messages for all consumers on a channel",
        |s| u64::from(s.global_prefetch_count),
    ),
];

const CHANNEL_EXCHANGE_METRICS: [(&str, &str, ChannelPick); 4] = [
    (
        "channel_messages_published_total",
        "Total number of messages published into an exchange on a channel",
        |s| s.published,
    ),
    (
        "channel_messages_confirmed_total",
        "Total number of messages published into an exchange and confirmed on the channel",
        |s| s.confirmed,
    ),
    (
        "channel_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        |s| s.returned,
    ),
    (
        "channel_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        |s| s.dropped,
    ),
];

const CHANNEL_QUEUE_METRICS: [(&str, &str, ChannelPick); 7] = [
    (
        "channel_get_ack_total",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
        |s| s.got,
    ),
    (
        "channel_get_total",
        "Total number of messages fetched with basic.get in automatic acknowledgement mode",
        |s| s.got_no_ack,
    ),
    (
        "channel_messages_delivered_ack_total",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
        |s| s.delivered,
    ),
    (
        "channel_messages_delivered_total",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
        |s| s.delivered_no_ack,
    ),
    (
        "channel_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        |s| s.redelivered,
    ),
    (
        "channel_messages_acked_total",
        "Total number of messages acknowledged by consumers",
        |s| s.acknowledged,
    ),
    (
        "channel_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        |s| s.get_empty,
    ),
];

/// The channel families (channel_metrics, channel_exchange_metrics,
/// channel_queue_metrics) of `family`, one sample per channel, names under `prefix`.
pub fn channel_family(t: &mut Text, prefix: &str, family: &str, rows: &[ChannelRow]) {
    let (list, kind, with_vhost): (&[(&str, &str, ChannelPick)], Kind, bool) = match family {
        "channel_metrics" => (&CHANNEL_METRICS, Kind::Gauge, false),
        "channel_exchange_metrics" => (&CHANNEL_EXCHANGE_METRICS, Kind::Counter, true),
        "channel_queue_metrics" => (&CHANNEL_QUEUE_METRICS, Kind::Counter, true),
        _ => return,
    };
    for (name, help, pick) in list {
        let name = format!("{prefix}{name}");
        t.family(&name, kind, help);
        for row in rows {
            if with_vhost {
                t.sample(
                    &name,
                    &[("channel", &row.label), ("vhost", &row.vhost)],
                    pick(&row.stats),
                );
            } else {
                t.sample(&name, &[("channel", &row.label)], pick(&row.stats));
            }
        }
    }
}

/// connection_coarse_metrics' byte counts, one sample per connection.
pub fn connection_coarse_family(t: &mut Text, prefix: &str, rows: &[ConnectionRow]) {
    type Pick = fn(&ConnectionRow) -> u64;
    let families: [(&str, &str, Pick); 2] = [
        (
            "connection_incoming_bytes_total",
            "Total number of bytes received on a connection",
            |r| r.received,
        ),
        (
            "connection_outgoing_bytes_total",
            "Total number of bytes sent on a connection",
            |r| r.sent,
        ),
    ];
    for (name, help, pick) in families {
        let name = format!("{prefix}{name}");
        t.family(&name, Kind::Counter, help);
        for row in rows {
            t.sample(&name, &[("channel", &row.label)], pick(row));
        }
    }
}

/// connection_metrics' channel count, one sample per connection.
pub fn connection_family(t: &mut Text, prefix: &str, rows: &[ConnectionRow]) {
    let name = format!("{prefix}connection_channels");
    t.family(&name, Kind::Gauge, "Channels on a connection");
    for row in rows {
        t.sample(&name, &[("channel", &row.label)], row.channels);
    }
}

/// One queue's figures for the queue families.
struct QueueRow {
    vhost: Arc<str>,
    name: String,
    ready: u64,
    unacked: u64,
    consumers: u64,
}

fn queue_rows(ctx: &ServerContext, vhosts: &[String]) -> Vec<QueueRow> {
    let broker = &ctx.broker;
    let mut rows = Vec::new();
    for name in broker.vhost_names() {
        if !vhosts.is_empty() && !vhosts.contains(&name) {
            continue;
        }
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        for q in vhost.queues() {
            rows.push(QueueRow {
                vhost: q.vhost_name.clone(),
                name: q.name.to_string(),
                ready: u64::from(q.message_count()),
                unacked: q.unacked_count(),
                consumers: u64::from(q.consumer_count()),
            });
        }
    }
    rows.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    rows
}

type QueuePick = fn(&QueueRow) -> u64;

fn queue_family(t: &mut Text, name: &str, help: &str, rows: &[QueueRow], pick: QueuePick) {
    let name = format!("rabbitmq_detailed_{name}");
    t.family(&name, Kind::Gauge, help);
    for row in rows {
        t.sample(
            &name,
            &[("vhost", &row.vhost), ("queue", &row.name)],
            pick(row),
        );
    }
}

/// The exposition of `/metrics/detailed` for the requested families (unknown ones
/// are ignored, as in RabbitMQ) and vhosts (none: all), the queue families being
/// the ones a vhost filters.
pub fn render(t: &mut Text, ctx: &ServerContext, families: &[String], vhosts: &[String]) {
    let wants = |f: &str| families.iter().any(|x| x == f);
    const P: &str = "rabbitmq_detailed_";
    if wants("connection_churn_metrics") {
        let m = &ctx.broker.metrics;
        let (opened, closed) = ctx.broker.connections().totals();
        for (name, help, value) in [
            (
                "connections_opened_total",
                "Total number of connections opened",
                opened,
            ),
            (
                "connections_closed_total",
                "Total number of connections closed or terminated",
                closed,
            ),
            (
                "channels_opened_total",
                "Total number of channels opened",
                get(&m.channels_opened),
            ),
            (
                "channels_closed_total",
                "Total number of channels closed",
                get(&m.channels_closed),
            ),
            (
                "queues_declared_total",
                "Total number of queues declared",
                get(&m.queues_declared),
            ),
            (
                "queues_created_total",
                "Total number of queues created",
                get(&m.queues_created),
            ),
            (
                "queues_deleted_total",
                "Total number of queues deleted",
                get(&m.queues_deleted),
            ),
        ] {
            t.single(&format!("{P}{name}"), Kind::Counter, help, &[], value);
        }
    }
    if wants("node_metrics") {
        t.single(
            &format!("{P}resident_memory_limit_bytes"),
            Kind::Gauge,
            "Memory high watermark in bytes",
            &[],
            ctx.broker.memory.high_watermark(),
        );
        t.single(
            &format!("{P}disk_space_available_limit_bytes"),
            Kind::Gauge,
            "Free disk space low watermark in bytes",
            &[],
            ctx.config.disk_free_limit(),
        );
    }
    if wants("queue_coarse_metrics") || wants("queue_consumer_count") || wants("queue_metrics") {
        let rows = queue_rows(ctx, vhosts);
        if wants("queue_coarse_metrics") {
            queue_family(
                t,
                "queue_messages_ready",
                "Messages ready to be delivered to consumers",
                &rows,
                |r| r.ready,
            );
            queue_family(
                t,
                "queue_messages_unacked",
                "Messages delivered to consumers but not yet acknowledged",
                &rows,
                |r| r.unacked,
            );
            queue_family(
                t,
                "queue_messages",
                "Sum of ready and unacknowledged messages - total queue depth",
                &rows,
                |r| r.ready + r.unacked,
            );
        }
        if wants("queue_consumer_count") || wants("queue_metrics") {
            queue_family(t, "queue_consumers", "Consumers on a queue", &rows, |r| {
                r.consumers
            });
        }
    }
    let channel_families = [
        "channel_metrics",
        "channel_exchange_metrics",
        "channel_queue_metrics",
    ];
    if channel_families.iter().any(|f| wants(f))
        || wants("connection_metrics")
        || wants("connection_coarse_metrics")
    {
        let (channels, connections) = rows(ctx);
        for family in channel_families {
            if wants(family) {
                channel_family(t, P, family, &channels);
            }
        }
        if wants("connection_coarse_metrics") {
            connection_coarse_family(t, P, &connections);
        }
        if wants("connection_metrics") {
            connection_family(t, P, &connections);
        }
    }
}

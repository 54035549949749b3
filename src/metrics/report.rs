//! What a scrape returns: RabbitMQ's metric families, read from the broker.
//! Names, types, help texts and labels are those of RabbitMQ's rabbitmq_prometheus
//! (checked against 3.10.8's output, with 4.x's additions: `rabbitmq_endpoint` on
//! the identity, `product_name`/`product_version` on the build info, the message
//! size histogram).

use super::counters::{Counters, SIZE_BUCKETS, get};
use super::tally::Tally as Counts;
use super::text::{Kind, Text};
use crate::connection::ServerContext;
use std::sync::Arc;
use std::time::Instant;

/// Which endpoint is scraped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/metrics`: totals over every object.
    Aggregated,
    /// `/metrics/per-object`: one sample per queue, channel and connection.
    PerObject,
    /// `/metrics/detailed`: the families asked for, one sample per object.
    Detailed,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Aggregated => "aggregated",
            Endpoint::PerObject => "per-object",
            Endpoint::Detailed => "detailed",
        }
    }
}

/// Serves scrapes of one broker.
pub struct Exporter {
    ctx: Arc<ServerContext>,
    started: Instant,
    node: String,
    cluster_id: String,
}

const AMQP: [(&str, &str); 1] = [("protocol", "amqp091")];

/// The global counters RabbitMQ keeps per protocol and queue type.
const PER_QUEUE_TYPE: [&str; 8] = [
    "acknowledged",
    "delivered_consume_auto_ack",
    "delivered_consume_manual_ack",
    "delivered_get_auto_ack",
    "delivered_get_manual_ack",
    "delivered",
    "get_empty",
    "redelivered",
];

impl Exporter {
    pub fn new(ctx: Arc<ServerContext>) -> Exporter {
        let node = crate::identity::node_name();
        Exporter {
            ctx,
            started: Instant::now(),
            cluster_id: format!("rabbitmq-cluster-id-{}", crate::broker::random_name()),
            node,
        }
    }

    /// The exposition text of one endpoint.
    pub fn render(&self, endpoint: Endpoint) -> String {
        let mut t = Text::default();
        let broker = &self.ctx.broker;
        let m: &Counters = &broker.metrics;
        // The per-message counts, summed over the connections once per scrape.
        let counts = m.totals();
        let (opened, closed) = broker.connections().totals();
        let totals = [
            (
                "rabbitmq_connections_opened_total",
                "Total number of connections opened",
                opened,
            ),
            (
                "rabbitmq_connections_closed_total",
                "Total number of connections closed or terminated",
                closed,
            ),
            (
                "rabbitmq_channels_opened_total",
                "Total number of channels opened",
                get(&m.channels_opened),
            ),
            (
                "rabbitmq_channels_closed_total",
                "Total number of channels closed",
                get(&m.channels_closed),
            ),
            (
                "rabbitmq_queues_declared_total",
                "Total number of queues declared",
                get(&m.queues_declared),
            ),
            (
                "rabbitmq_queues_created_total",
                "Total number of queues created",
                get(&m.queues_created),
            ),
            (
                "rabbitmq_queues_deleted_total",
                "Total number of queues deleted",
                get(&m.queues_deleted),
            ),
        ];
        for (name, help, value) in totals {
            t.single(name, Kind::Counter, help, &[], value);
        }
        self.process(&mut t);
        let connections = broker.connections().list();
        let channels: usize = connections.iter().map(|c| c.channels).sum();
        let consumers = self.queues(&mut t, endpoint);
        t.single(
            "rabbitmq_process_open_tcp_sockets",
            Kind::Gauge,
            "Open TCP sockets",
            &[],
            connections.len(),
        );
        t.single(
            "rabbitmq_process_max_tcp_sockets",
            Kind::Gauge,
            "Open TCP sockets limit",
            &[],
            self.ctx.config.max_connections,
        );
        if endpoint == Endpoint::Aggregated {
            t.single(
                "rabbitmq_queue_messages_published_total",
                Kind::Counter,
                "Total number of messages published to queues",
                &[],
                get(&counts.queue_published),
            );
        }
        let gauges = [
            (
                "rabbitmq_connections",
                "Connections currently open",
                connections.len() as u64,
            ),
            (
                "rabbitmq_channels",
                "Channels currently open",
                channels as u64,
            ),
            (
                "rabbitmq_consumers",
                "Consumers currently connected",
                consumers.consumers,
            ),
            ("rabbitmq_queues", "Queues available", consumers.queues),
        ];
        for (name, help, value) in gauges {
            t.single(name, Kind::Gauge, help, &[], value);
        }
        if endpoint == Endpoint::PerObject {
            use super::detailed::{
                channel_family, connection_coarse_family, connection_family, rows,
            };
            let (channel_rows, connection_rows) = rows(&self.ctx);
            connection_coarse_family(&mut t, "rabbitmq_", &connection_rows);
            connection_family(&mut t, "rabbitmq_", &connection_rows);
            for family in [
                "channel_metrics",
                "channel_exchange_metrics",
                "channel_queue_metrics",
            ] {
                channel_family(&mut t, "rabbitmq_", family, &channel_rows);
            }
        } else {
            super::channel::render(&mut t, &counts, consumers.consumers);
        }
        self.identity(&mut t, endpoint);
        self.global(&mut t, &counts, consumers.consumers);
        t.finish()
    }

    /// The exposition of `/metrics/detailed` (see [`super::detailed`]).
    pub fn render_detailed(&self, families: &[String], vhosts: &[String]) -> String {
        let mut t = Text::default();
        super::detailed::render(&mut t, &self.ctx, families, vhosts);
        self.identity(&mut t, Endpoint::Detailed);
        t.finish()
    }

    /// Memory, disk and file descriptors of the process.
    fn process(&self, t: &mut Text) {
        use crate::model::memory::{disk_free, resident_memory};
        let config = &self.ctx.config;
        if let Some(fds) = super::process::open_fds() {
            t.single(
                "rabbitmq_process_open_fds",
                Kind::Gauge,
                "Open file descriptors",
                &[],
                fds,
            );
        }
        if let Some(rss) = resident_memory() {
            t.single(
                "rabbitmq_process_resident_memory_bytes",
                Kind::Gauge,
                "Memory used in bytes",
                &[],
                rss,
            );
        }
        if let Some(free) = disk_free(&config.data_dir) {
            t.single(
                "rabbitmq_disk_space_available_bytes",
                Kind::Gauge,
                "Disk space available in bytes",
                &[],
                free,
            );
        }
        if let Some(max) = super::process::max_fds() {
            t.single(
                "rabbitmq_process_max_fds",
                Kind::Gauge,
                "Open file descriptors limit",
                &[],
                max,
            );
        }
        t.single(
            "rabbitmq_resident_memory_limit_bytes",
            Kind::Gauge,
            "Memory high watermark in bytes",
            &[],
            self.ctx.broker.memory.high_watermark(),
        );
        t.single(
            "rabbitmq_disk_space_available_limit_bytes",
            Kind::Gauge,
            "Free disk space low watermark in bytes",
            &[],
            config.disk_free_limit(),
        );
        t.single(
            "rabbitmq_erlang_uptime_seconds",
            Kind::Gauge,
            "Node uptime",
            &[],
            self.started.elapsed().as_secs_f64(),
        );
    }

    /// The queue families: totals, or one sample per queue.
    fn queues(&self, t: &mut Text, endpoint: Endpoint) -> Tally {
        let broker = &self.ctx.broker;
        // (vhost, queue, ready, unacked, consumers)
        let mut rows: Vec<(Arc<str>, String, u64, u64, u64)> = Vec::new();
        // (vhost, stream, the highest offset lag of its consumers), streams with consumers.
        let mut lags: Vec<(Arc<str>, String, u64)> = Vec::new();
        for name in broker.vhost_names() {
            let Some(vhost) = broker.vhost(&name) else {
                continue;
            };
            for q in vhost.queues() {
                let stream_lags = q.stream().map(|s| s.positions()).unwrap_or_default();
                if let Some(lag) = stream_lags.iter().map(|(_, p)| p.offset_lag).max() {
                    lags.push((q.vhost_name.clone(), q.name.to_string(), lag));
                }
                rows.push((
                    q.vhost_name.clone(),
                    q.name.to_string(),
                    u64::from(q.message_count()),
                    q.unacked_count(),
                    u64::from(q.consumer_count()),
                ));
            }
        }
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        type Pick = fn(&(Arc<str>, String, u64, u64, u64)) -> u64;
        let families: [(&str, &str, Pick); 4] = [
            (
                "rabbitmq_queue_messages_ready",
                "Messages ready to be delivered to consumers",
                |r| r.2,
            ),
            (
                "rabbitmq_queue_messages_unacked",
                "Messages delivered to consumers but not yet acknowledged",
                |r| r.3,
            ),
            (
                "rabbitmq_queue_messages",
                "Sum of ready and unacknowledged messages - total queue depth",
                |r| r.2 + r.3,
            ),
            ("rabbitmq_queue_consumers", "Consumers on a queue", |r| r.4),
        ];
        for (name, help, pick) in families {
            t.family(name, Kind::Gauge, help);
            match endpoint {
                Endpoint::Aggregated => t.sample(name, &[], rows.iter().map(pick).sum::<u64>()),
                Endpoint::PerObject | Endpoint::Detailed => {
                    for row in &rows {
                        t.sample(name, &[("vhost", &row.0), ("queue", &row.1)], pick(row));
                    }
                }
            }
        }
        lags.sort();
        let name = "rabbitmq_stream_consumer_max_offset_lag";
        t.family(name, Kind::Gauge, "Highest consumer offset lag");
        match endpoint {
            Endpoint::Aggregated => {
                t.sample(name, &[], lags.iter().map(|l| l.2).max().unwrap_or(0))
            }
            Endpoint::PerObject | Endpoint::Detailed => {
                for (vhost, queue, lag) in &lags {
                    t.sample(name, &[("vhost", vhost), ("queue", queue)], *lag);
                }
            }
        }
        Tally {
            queues: rows.len() as u64,
            consumers: rows.iter().map(|r| r.4).sum(),
        }
    }

    fn identity(&self, t: &mut Text, endpoint: Endpoint) {
        use crate::identity::{RABBITMQ_VERSION, WARREN_NAME, WARREN_VERSION};
        t.single(
            "rabbitmq_build_info",
            Kind::Untyped,
            "RabbitMQ & Erlang/OTP version info",
            &[
                ("product_name", WARREN_NAME),
                ("product_version", WARREN_VERSION),
                ("rabbitmq_version", RABBITMQ_VERSION),
                ("prometheus_plugin_version", RABBITMQ_VERSION),
                ("prometheus_client_version", "none"),
                ("erlang_version", "none"),
            ],
            1,
        );
        t.single(
            "rabbitmq_identity_info",
            Kind::Untyped,
            "RabbitMQ node & cluster identity info",
            &[
                ("rabbitmq_node", &self.node),
                ("rabbitmq_cluster", &self.node),
                ("rabbitmq_cluster_permanent_id", &self.cluster_id),
                ("rabbitmq_endpoint", endpoint.label()),
            ],
            1,
        );
    }

    /// RabbitMQ's global counters for AMQP 0-9-1.
    fn global(&self, t: &mut Text, m: &Counts, consumers: u64) {
        let all: &Counters = &self.ctx.broker.metrics;
        t.single(
            "rabbitmq_global_consumers",
            Kind::Gauge,
            "Current number of consumers",
            &AMQP,
            consumers,
        );
        let counters = [
            (
                "acknowledged",
                "Total number of messages acknowledged by consumers",
                get(&m.acknowledged),
            ),
            (
                "confirmed",
                "Total number of messages confirmed to publishers",
                get(&m.confirmed),
            ),
            (
                "delivered_consume_auto_ack",
                "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
                get(&m.deliveries.consume_auto_ack),
            ),
            (
                "delivered_consume_manual_ack",
                "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
                get(&m.deliveries.consume_manual_ack),
            ),
            (
                "delivered_get_auto_ack",
                "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
                get(&m.deliveries.get_auto_ack),
            ),
            (
                "delivered_get_manual_ack",
                "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
                get(&m.deliveries.get_manual_ack),
            ),
            (
                "delivered",
                "Total number of messages delivered to consumers",
                m.delivered(),
            ),
            (
                "get_empty",
                "Total number of times basic.get operations fetched no message",
                get(&m.get_empty),
            ),
            (
                "received_confirm",
                "Total number of messages received from publishers expecting confirmations",
                get(&m.received_confirm),
            ),
            (
                "received",
                "Total number of messages received from publishers",
                get(&m.received),
            ),
            (
                "redelivered",
                "Total number of messages redelivered to consumers",
                get(&m.deliveries.redelivered),
            ),
            (
                "routed",
                "Total number of messages routed to queues or streams",
                get(&m.routed),
            ),
            (
                "unroutable_dropped",
                "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
                get(&m.unroutable_dropped),
            ),
            (
                "unroutable_returned",
                "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
                get(&m.unroutable_returned),
            ),
        ];
        for (what, help, value) in counters {
            let name = format!("rabbitmq_global_messages_{what}_total");
            if !PER_QUEUE_TYPE.contains(&what) {
                t.single(&name, Kind::Counter, help, &AMQP, value);
                continue;
            }
            // Counted per protocol and queue type; Warren's queues are all classic
            // (quorum queues are served as classic ones).
            t.family(&name, Kind::Counter, help);
            for (queue_type, value) in [
                ("rabbit_classic_queue", value),
                ("rabbit_quorum_queue", 0),
                ("rabbit_stream_queue", 0),
            ] {
                let labels = [("protocol", "amqp091"), ("queue_type", queue_type)];
                t.sample(&name, &labels, value);
            }
        }
        t.single(
            "rabbitmq_global_publishers",
            Kind::Gauge,
            "Current number of publishers",
            &AMQP,
            all.publishers(),
        );
        let name = "rabbitmq_message_size_bytes";
        t.family(
            name,
            Kind::Histogram,
            "Size of messages received from publishers",
        );
        let (buckets, sum) = m.size_histogram();
        let bucket = format!("{name}_bucket");
        for (bound, count) in SIZE_BUCKETS.iter().zip(buckets) {
            let le = bound.to_string();
            t.sample(&bucket, &[("protocol", "amqp091"), ("le", &le)], count);
        }
        let total = buckets[SIZE_BUCKETS.len()];
        t.sample(&bucket, &[("protocol", "amqp091"), ("le", "+Inf")], total);
        t.sample(&format!("{name}_sum"), &AMQP, sum);
        t.sample(&format!("{name}_count"), &AMQP, total);
    }
}

/// Queue and consumer totals, from the queue families.
struct Tally {
    queues: u64,
    consumers: u64,
}

//! Prometheus metrics, as RabbitMQ's `rabbitmq_prometheus` plugin serves them:
//! `/metrics` (aggregated) and `/metrics/per-object` (per queue), with RabbitMQ's
//! metric names, types, help texts and labels, so that its Grafana dashboards and
//! alert rules work unchanged.
//!
//! Events (publishes, deliveries, acknowledgements, channels opened...) are counted
//! where they happen, per message in each connection's own [`tally::Tally`] and the
//! rest with relaxed atomic increments ([`Counters`]); everything else
//! (queue depths, connections, memory) is read from the broker at scrape time.

pub mod channel;
pub mod counters;
pub mod detailed;
pub mod http;
mod process;
pub mod rates;
pub mod report;
pub mod tally;
pub mod text;

pub use counters::{Counters, add, inc};

//! Warren: an AMQP 0-9-1 message broker that RabbitMQ clients use unchanged.
//!
//! The binary (`src/main.rs`) only parses flags into a [`Config`] and calls
//! [`Server::run`]; tests and tools embed the broker the same way.

pub mod access;
pub mod broker;
pub mod config;
pub mod connection;
pub mod definitions;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod server;

pub use config::Config;
pub use server::Server;
pub mod store;
pub mod tls;

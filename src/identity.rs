//! What Warren says it is. Clients branch on the `product` and `version` server
//! properties (kombu picks its basic.qos `global` semantics from `product == "RabbitMQ"`
//! and the version, amqplib's tests assert the product, Spring's health check reports
//! the version), so Warren reports the RabbitMQ release whose behaviour it follows, and
//! its own name and version beside them, as Redis-compatible servers report
//! `redis_version` next to their own.

/// The product clients see in `server-properties.product`.
pub const PRODUCT: &str = "RabbitMQ";

/// The RabbitMQ release whose observable behaviour Warren follows (the 4.x line).
pub const RABBITMQ_VERSION: &str = "4.2.0";

/// Warren's own name.
pub const WARREN_NAME: &str = "Warren";

/// Warren's own version.
pub const WARREN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `Warren 0.1.0`, for logs and the `platform` server property.
pub fn warren_release() -> String {
    format!("{WARREN_NAME} {WARREN_VERSION}")
}

/// The node name RabbitMQ would have here: `rabbit@` and the host name.
pub fn node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("rabbit@{host}")
}

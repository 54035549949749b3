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

/// The node name RabbitMQ would have here: `rabbit@` and the short host name.
pub fn node_name() -> String {
    format!("rabbit@{}", short_hostname())
}

/// The host name up to its first dot, as RabbitMQ's short node names use it.
fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]);
    match name.split('.').next() {
        Some(short) if !short.is_empty() => short.to_owned(),
        _ => "localhost".into(),
    }
}

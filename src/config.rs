//! Broker configuration: defaults, then the TOML file, then environment variables
//! (including RabbitMQ's `RABBITMQ_DEFAULT_*` names so compose files keep working),
//! then command-line flags. Each later source overrides the earlier ones.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What counts against the memory high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryStrategy {
    /// Resident memory of the process, and the memory messages hold.
    Rss,
    /// Only the memory messages hold.
    Allocated,
}

/// Every tunable of the broker. `Config::default()` is what `cargo run` uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the AMQP listener binds to.
    pub listen: SocketAddr,
    /// Directory holding the broker's data files.
    pub data_dir: PathBuf,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    pub log_level: String,
    /// User created at start (RabbitMQ: `default_user`).
    pub default_user: String,
    /// Password of the default user (RabbitMQ: `default_pass`).
    pub default_pass: String,
    /// Virtual host created at start (RabbitMQ: `default_vhost`).
    pub default_vhost: String,
    /// Whether the `guest` user may only connect from a loopback address.
    pub guest_loopback_only: bool,
    /// Largest frame offered in connection.tune, in bytes (at least 4096).
    pub frame_max: u32,
    /// Highest channel number offered in connection.tune (1..=65535).
    pub channel_max: u16,
    /// Heartbeat interval offered in connection.tune, in seconds (0 disables).
    pub heartbeat: u16,
    /// Largest message body accepted, in bytes.
    pub max_message_size: u64,
    /// Message memory above which publishers are blocked (connection.blocked), in
    /// bytes; 0 means 40% of physical memory.
    pub memory_high_watermark: u64,
    /// Free disk space on the data directory's file system below which publishers
    /// are blocked, in bytes (RabbitMQ's disk_free_limit, 50 MB by default).
    pub disk_free_limit: u64,
    /// What counts against the memory watermark (RabbitMQ's
    /// vm_memory_calculation_strategy): `rss`, the process's resident memory as
    /// well as what messages hold; `allocated`, only what messages hold.
    pub memory_calculation_strategy: MemoryStrategy,
    /// Ready messages a durable queue keeps in memory; persistent messages beyond
    /// that stay only in the store until they are about to be delivered.
    pub queue_memory_messages: usize,
    /// redb's page cache, in MiB.
    pub store_cache_mb: usize,
    /// Most store operations committed (and fsynced) together; 1 commits each
    /// operation on its own.
    pub store_max_batch: usize,
    /// Persistent message data handed to the store but not yet committed, in MiB,
    /// above which publishing connections are not read until half of it is.
    pub store_backlog_mb: usize,
    /// Threads serving connections; 0 means one per CPU core but one (at least one).
    pub worker_threads: usize,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Seconds a closing connection waits for the peer's close-ok.
    pub close_timeout_secs: u64,
    /// Seconds a client has to complete the handshake.
    pub handshake_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5672)),
            data_dir: PathBuf::from("data"),
            log_level: "info".into(),
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            guest_loopback_only: true,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            memory_high_watermark: 0,
            disk_free_limit: 50_000_000,
            memory_calculation_strategy: MemoryStrategy::Rss,
            queue_memory_messages: 100_000,
            store_cache_mb: 32,
            store_max_batch: 16_384,
            store_backlog_mb: 64,
            worker_threads: 0,
            max_connections: 65_536,
            close_timeout_secs: 3,
            handshake_timeout_secs: 10,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    Read(PathBuf, std::io::Error),
    Parse(PathBuf, toml::de::Error),
    Invalid(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read config file {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "invalid config file {}: {e}", p.display()),
            ConfigError::Invalid(s) => write!(f, "invalid configuration: {s}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))
    }

    /// Applies the environment variables RabbitMQ's images honour, and Warren's own.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("RABBITMQ_DEFAULT_USER") {
            self.default_user = v;
        }
        if let Some(v) = get("RABBITMQ_DEFAULT_PASS") {
            self.default_pass = v;
        }
        if let Some(v) = get("RABBITMQ_DEFAULT_VHOST") {
            self.default_vhost = v;
        }
    }

    /// Checks the values that the protocol constrains.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.frame_max < 4096 {
            return Err(ConfigError::Invalid(format!(
                "frame_max {} is below the AMQP minimum of 4096",
                self.frame_max
            )));
        }
        if self.channel_max == 0 {
            return Err(ConfigError::Invalid(
                "channel_max must be at least 1".into(),
            ));
        }
        if self.store_max_batch == 0 {
            return Err(ConfigError::Invalid(
                "store_max_batch must be at least 1".into(),
            ));
        }
        if self.store_backlog_mb == 0 {
            return Err(ConfigError::Invalid(
                "store_backlog_mb must be at least 1".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

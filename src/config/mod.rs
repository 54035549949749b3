//! Broker configuration and where it comes from. Sources apply in this order, each later
//! one overriding the keys it sets:
//!
//! 1. defaults ([`Config::default`]), then the TOML file named by `WARREN_DEFAULTS` if set
//!    (the container image's defaults: every interface, where RabbitMQ listens by
//!    default, without overriding a listener that a mounted rabbitmq.conf names);
//! 2. RabbitMQ's `rabbitmq.conf` and `conf.d/*.conf` ([`rabbitmq_conf`]), found where
//!    RabbitMQ's images look (`RABBITMQ_CONFIG_FILE`, `/etc/rabbitmq/rabbitmq.conf`,
//!    `RABBITMQ_CONFIG_FILES`, `/etc/rabbitmq/conf.d`), read only if present;
//! 3. Warren's TOML file (`--config FILE` or `WARREN_CONFIG`), the documented format;
//! 4. the environment variables RabbitMQ's images honour (`RABBITMQ_DEFAULT_USER`,
//!    `RABBITMQ_DEFAULT_PASS`, `RABBITMQ_DEFAULT_VHOST`, `RABBITMQ_NODE_IP_ADDRESS`,
//!    `RABBITMQ_NODE_PORT`);
//! 5. command-line flags (applied by the binary).
//!
//! The RabbitMQ command shims load the same sources, so they find the listener the
//! broker uses.

pub mod listen;
pub mod rabbitmq_conf;
pub mod tls;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where RabbitMQ's images keep rabbitmq.conf.
pub const RABBITMQ_CONF: &str = "/etc/rabbitmq/rabbitmq.conf";
/// Which conf.d files RabbitMQ's images read.
pub const RABBITMQ_CONF_D: &str = "/etc/rabbitmq/conf.d/*.conf";

/// RabbitMQ's Prometheus port.
pub const DEFAULT_PROMETHEUS_PORT: u16 = 15692;
/// RabbitMQ management plugin's default port.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 15672;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Plain lines (coloured only when standard output is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "plaintext" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("'{s}' is not a log format (text or json)")),
        }
    }
}

/// Messages about the configuration gathered before logging starts; the binary logs
/// them once the subscriber is installed.
#[derive(Debug, Default)]
pub struct Notices {
    pub lines: Vec<(bool, String)>,
}

impl Notices {
    pub fn info(&mut self, text: String) {
        self.lines.push((false, text));
    }
    pub fn warn(&mut self, text: String) {
        self.lines.push((true, text));
    }
    /// Logs every notice (warnings at warn level).
    pub fn log(&self) {
        for (warn, text) in &self.lines {
            if *warn {
                tracing::warn!("{text}");
            } else {
                tracing::info!("{text}");
            }
        }
    }
}

/// What counts against the memory high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryStrategy {
    /// Resident memory of the process, and the memory messages hold.
    Rss,
    /// Only the memory messages hold.
    Allocated,
}

/// Every tunable of the broker. `Config::default()` is what `cargo run` uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses the AMQP listeners bind to. Port 0 picks a free port, shared by every
    /// listener given port 0.
    #[serde(with = "listen")]
    pub listen: Vec<SocketAddr>,
    /// Directory holding the broker's data files.
    pub data_dir: PathBuf,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    pub log_level: String,
    /// Log line format: `text` or `json`.
    pub log_format: LogFormat,
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
    /// bytes; 0 means `memory_high_watermark_relative` of physical memory.
    pub memory_high_watermark: u64,
    /// The watermark as a fraction of physical memory, when `memory_high_watermark` is 0
    /// (RabbitMQ: `vm_memory_high_watermark.relative`).
    pub memory_high_watermark_relative: f64,
    /// What counts against the memory watermark (RabbitMQ's
    /// vm_memory_calculation_strategy): `rss`, the process's resident memory as
    /// well as what messages hold; `allocated`, only what messages hold.
    pub memory_calculation_strategy: MemoryStrategy,
    /// Free disk space on the data directory's file system below which publishers
    /// are blocked, in bytes (RabbitMQ: `disk_free_limit.absolute`, 50 MB); 0 turns
    /// the disk alarm off.
    pub disk_free_limit_bytes: u64,
    /// The same as a multiple of physical memory (RabbitMQ: `disk_free_limit.relative`),
    /// instead of `disk_free_limit_bytes` when set.
    pub disk_free_limit_relative: Option<f64>,
    /// Milliseconds a consumer may hold an unacknowledged delivery (RabbitMQ:
    /// `consumer_timeout`): past it the delivery's channel is closed with 406 and
    /// the delivery requeued. `false` in the file: no limit.
    #[serde(deserialize_with = "millis_or_false")]
    pub consumer_timeout_ms: Option<u64>,
    /// Definitions file (RabbitMQ's JSON), or a directory of `.json` files, imported at
    /// boot without replacing what exists (RabbitMQ: `load_definitions`). A new data
    /// directory then gets no default user and vhost; an invalid file stops the boot.
    pub load_definitions: Option<PathBuf>,
    /// Address of the management HTTP API (RabbitMQ: `management.tcp.ip` and
    /// `management.tcp.port`), or `"none"` to turn it off. Port 0 picks a free port.
    #[serde(with = "listen::optional")]
    pub management_listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint, `/metrics` (RabbitMQ: `prometheus.tcp.ip`
    /// and `prometheus.tcp.port`); `"none"` turns it off. Port 0 picks a free port.
    #[serde(with = "listen::optional")]
    pub prometheus_listen: Option<SocketAddr>,
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
    /// Most consumers one channel may have (RabbitMQ: `consumer_max_per_channel`); 0
    /// means no limit. One more is refused with 530 NOT_ALLOWED.
    pub consumer_max_per_channel: usize,
    /// Most channels open on the whole broker (RabbitMQ: `channel_max_per_node`); 0
    /// means no limit. One more is refused with 530 NOT_ALLOWED.
    pub channel_max_per_node: usize,
    /// Most queues in all virtual hosts together (RabbitMQ: `cluster_queue_limit`); 0
    /// means no limit. A queue.declare of one more is refused with 406.
    pub cluster_queue_limit: usize,
    /// Seconds a closing connection waits for the peer's close-ok.
    pub close_timeout_secs: u64,
    /// Seconds a client has to complete the handshake (the TLS handshake included).
    pub handshake_timeout_secs: u64,
    /// SASL mechanisms offered, of PLAIN, AMQPLAIN and EXTERNAL (RabbitMQ:
    /// `auth_mechanisms.N`); EXTERNAL is offered on TLS connections only.
    pub auth_mechanisms: Vec<String>,
    /// amqps and HTTPS listeners, certificates, client certificates.
    pub tls: tls::TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: listen::default_listeners(),
            data_dir: PathBuf::from("data"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            guest_loopback_only: true,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            memory_high_watermark: 0,
            memory_high_watermark_relative: 0.4,
            memory_calculation_strategy: MemoryStrategy::Rss,
            disk_free_limit_bytes: 50_000_000,
            disk_free_limit_relative: None,
            consumer_timeout_ms: Some(1_800_000),
            load_definitions: None,
            management_listen: Some(SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                DEFAULT_MANAGEMENT_PORT,
            ))),
            prometheus_listen: Some(SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                DEFAULT_PROMETHEUS_PORT,
            ))),
            queue_memory_messages: 100_000,
            store_cache_mb: 32,
            store_max_batch: 16_384,
            store_backlog_mb: 64,
            worker_threads: 0,
            max_connections: 65_536,
            consumer_max_per_channel: 0,
            channel_max_per_node: 0,
            cluster_queue_limit: 0,
            close_timeout_secs: 3,
            handshake_timeout_secs: 10,
            auth_mechanisms: vec!["PLAIN".into(), "AMQPLAIN".into()],
            tls: tls::TlsConfig::default(),
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
    /// Loads every source but the flags, in order (see the module documentation).
    /// `warren_toml` is the `--config` file; `env` reads the environment.
    pub fn load(
        warren_toml: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Config, Notices), ConfigError> {
        let mut config = Config::default();
        let mut notices = Notices::default();
        if let Some(path) = env("WARREN_DEFAULTS").map(PathBuf::from) {
            config.apply_toml_file(&path)?;
            notices.info(format!("read {}", path.display()));
        }
        rabbitmq_conf::apply_where_rabbitmq_looks(&mut config, &env, &mut notices)?;
        let toml_path = warren_toml
            .map(Path::to_owned)
            .or_else(|| env("WARREN_CONFIG").map(PathBuf::from));
        if let Some(path) = toml_path {
            config.apply_toml_file(&path)?;
            notices.info(format!("read {}", path.display()));
        }
        config.apply_env(&env);
        config.apply_node_env(&env)?;
        Ok((config, notices))
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_toml_file(path)?;
        Ok(config)
    }

    /// Applies the keys a TOML file sets, keeping the others.
    pub fn apply_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        // Parsed alone first, so that errors carry the file's own lines and columns.
        toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))?;
        let file: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))?;
        let mut merged = toml::Table::try_from(&*self)
            .map_err(|e| ConfigError::Invalid(format!("cannot merge {}: {e}", path.display())))?;
        for (key, value) in file {
            // A table ([tls]) keeps the keys the file leaves out.
            match (merged.get_mut(&key), value) {
                (Some(toml::Value::Table(old)), toml::Value::Table(new)) => old.extend(new),
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
        *self = merged
            .try_into()
            .map_err(|e| ConfigError::Parse(path.to_owned(), e))?;
        Ok(())
    }

    /// Applies the user and vhost variables RabbitMQ's images honour.
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

    /// Applies RabbitMQ's listener variables: `RABBITMQ_NODE_IP_ADDRESS` replaces the
    /// listeners by one on that address, `RABBITMQ_NODE_PORT` sets every listener's port.
    pub fn apply_node_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("RABBITMQ_NODE_IP_ADDRESS") {
            let ip: IpAddr = v.parse().map_err(|_| {
                ConfigError::Invalid(format!("RABBITMQ_NODE_IP_ADDRESS={v} is not an IP address"))
            })?;
            let port = self.listen.first().map_or(5672, SocketAddr::port);
            self.listen = vec![SocketAddr::new(ip, port)];
        }
        if let Some(v) = get("RABBITMQ_NODE_PORT") {
            let port: u16 = v.parse().map_err(|_| {
                ConfigError::Invalid(format!("RABBITMQ_NODE_PORT={v} is not a port"))
            })?;
            for addr in &mut self.listen {
                addr.set_port(port);
            }
        }
        Ok(())
    }

    /// The memory high watermark in bytes.
    pub fn memory_watermark_bytes(&self) -> usize {
        match self.memory_high_watermark {
            0 => (physical_memory() as f64 * self.memory_high_watermark_relative) as usize,
            n => n as usize,
        }
    }

    /// Checks the values that the protocol constrains.
    /// The disk free limit in bytes (0: no disk alarm).
    pub fn disk_free_limit(&self) -> u64 {
        match self.disk_free_limit_relative {
            Some(r) => (physical_memory() as f64 * r) as u64,
            None => self.disk_free_limit_bytes,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one listen address is needed".into(),
            ));
        }
        if !(self.memory_high_watermark_relative > 0.0
            && self.memory_high_watermark_relative <= 1.0)
        {
            return Err(ConfigError::Invalid(format!(
                "memory_high_watermark_relative {} is not in (0, 1]",
                self.memory_high_watermark_relative
            )));
        }
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
        tls::check_mechanisms(&self.auth_mechanisms).map_err(ConfigError::Invalid)?;
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Physical memory in bytes (4 GiB when it cannot be read).
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(4 << 30, |kb| kb * 1024)
}

/// A number of milliseconds, or `false` for none.
fn millis_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MillisOrFalse {
        Millis(u64),
        Off(bool),
    }
    match MillisOrFalse::deserialize(d)? {
        MillisOrFalse::Millis(ms) => Ok(Some(ms)),
        MillisOrFalse::Off(false) => Ok(None),
        MillisOrFalse::Off(true) => Err(serde::de::Error::custom(
            "expected a number of milliseconds or false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn consumer_timeout_takes_milliseconds_or_false() {
        let c: Config = toml::from_str("consumer_timeout_ms = 5000").expect("parses");
        assert_eq!(c.consumer_timeout_ms, Some(5000));
        let c: Config = toml::from_str("consumer_timeout_ms = false").expect("parses");
        assert_eq!(c.consumer_timeout_ms, None);
        assert!(toml::from_str::<Config>("consumer_timeout_ms = true").is_err());
        let c: Config = toml::from_str("").expect("parses");
        assert_eq!(c.consumer_timeout_ms, Some(1_800_000));
    }
}

//! RabbitMQ's `rabbitmq.conf` (the sysctl-like cuttlefish format: `key = value`, `#`
//! comments, values unquoted or in single quotes), for the keys development setups use.
//! A compose file or a testcontainers setup that mounts its rabbitmq.conf keeps working.
//!
//! Keys Warren does not know, or knows but does not implement, are reported and ignored
//! (RabbitMQ would refuse an unknown key; a drop-in must not refuse what RabbitMQ accepts).
//! A known key with a value RabbitMQ would refuse stops the boot, naming file, line and key.

use super::{Config, ConfigError, LogFormat, Notices};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// What several rabbitmq.conf files add up to before it is applied: listeners replace
/// Warren's default listeners only if some file names one.
#[derive(Default)]
pub struct Pending {
    listeners: super::listen::NamedListeners,
    console_level_set: bool,
    tls: super::tls::PendingTls,
}

impl Pending {
    /// Replaces the configured listeners if any file named one.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        self.tls.apply(config);
        if !self.listeners.set {
            return Ok(());
        }
        let addrs = self.listeners.addresses();
        if addrs.is_empty() {
            return Err(ConfigError::Invalid(
                "listeners.tcp = none leaves no AMQP listener; Warren needs at least one".into(),
            ));
        }
        config.listen = addrs;
        Ok(())
    }
}

/// Reads rabbitmq.conf and conf.d where RabbitMQ looks for them, if they exist.
pub fn apply_where_rabbitmq_looks(
    config: &mut Config,
    env: &impl Fn(&str) -> Option<String>,
    notices: &mut Notices,
) -> Result<(), ConfigError> {
    let mut pending = Pending::default();
    let main = match env("RABBITMQ_CONFIG_FILE") {
        Some(p) => {
            let mut path = PathBuf::from(p);
            // RabbitMQ accepts the path without its extension.
            if path.extension().is_none() {
                path.set_extension("conf");
            }
            path
        }
        None => PathBuf::from(super::RABBITMQ_CONF),
    };
    if main.extension().is_some_and(|e| e == "config") {
        notices.warn(format!(
            "{}: the classic Erlang-term config format is not supported by Warren; ignored",
            main.display()
        ));
    } else if main.is_file() {
        apply_file(config, &mut pending, &main, notices)?;
        notices.info(format!("read {}", main.display()));
    }
    for file in additional_files(
        &env("RABBITMQ_CONFIG_FILES").unwrap_or_else(|| super::RABBITMQ_CONF_D.into()),
    )? {
        apply_file(config, &mut pending, &file, notices)?;
        notices.info(format!("read {}", file.display()));
    }
    pending.apply(config)
}

/// The files RabbitMQ reads after its main file, in name order: every regular file of a
/// directory, the files a `dir/prefix*suffix` pattern matches, or one named file.
fn additional_files(pattern: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let pattern = PathBuf::from(pattern);
    let (dir, filter) = if pattern.is_dir() {
        (pattern, None)
    } else {
        let name = pattern
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.split_once('*') {
            Some((prefix, suffix)) => (
                pattern.parent().map(Path::to_owned).unwrap_or_default(),
                Some((prefix.to_string(), suffix.to_string())),
            ),
            None if pattern.is_file() => return Ok(vec![pattern]),
            None => return Ok(Vec::new()),
        }
    };
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| ConfigError::Read(dir.clone(), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            filter.as_ref().is_none_or(|(prefix, suffix)| {
                name.len() >= prefix.len() + suffix.len()
                    && name.starts_with(prefix.as_str())
                    && name.ends_with(suffix.as_str())
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one file and applies its keys to `config`.
pub fn apply_file(
    config: &mut Config,
    pending: &mut Pending,
    path: &Path,
    notices: &mut Notices,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
    apply_text(config, pending, &text, &path.display().to_string(), notices)
}

/// Applies the keys of one file's text; `origin` names the file in messages.
pub fn apply_text(
    config: &mut Config,
    pending: &mut Pending,
    text: &str,
    origin: &str,
    notices: &mut Notices,
) -> Result<(), ConfigError> {
    for (n, line) in text.lines().enumerate() {
        let at = format!("{origin}:{}", n + 1);
        let Some((key, value)) = split_line(line).map_err(|why| bad(&at, line.trim(), &why))?
        else {
            continue;
        };
        let known = apply_key(config, pending, key, &value, notices)
            .map_err(|why| bad(&at, &format!("{key} = {value}"), &why))?;
        if !known {
            notices.warn(format!("{at}: {key} is not supported by Warren; ignored"));
        }
    }
    Ok(())
}

fn bad(at: &str, what: &str, why: &str) -> ConfigError {
    ConfigError::Invalid(format!("{at}: {what}: {why}"))
}

/// One line: `None` for a blank or comment line, else the key and its value.
fn split_line(line: &str) -> Result<Option<(&str, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (key, rest) = line
        .split_once('=')
        .ok_or_else(|| "expected `key = value`".to_string())?;
    let key = key.trim();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(format!("'{key}' is not a key"));
    }
    let rest = rest.trim_start();
    let value = if let Some(quoted) = rest.strip_prefix('\'') {
        let (value, after) = quoted
            .split_once('\'')
            .ok_or_else(|| "unterminated quoted value".to_string())?;
        let after = after.trim();
        if !(after.is_empty() || after.starts_with('#')) {
            return Err("unexpected text after the quoted value".into());
        }
        value.to_string()
    } else {
        rest.split('#').next().unwrap_or("").trim().to_string()
    };
    if value.is_empty() {
        return Err("missing value".into());
    }
    Ok(Some((key, value)))
}

/// Applies one key; `Ok(false)` means Warren does not support it (reported, ignored).
fn apply_key(
    config: &mut Config,
    pending: &mut Pending,
    key: &str,
    value: &str,
    notices: &mut Notices,
) -> Result<bool, String> {
    match key {
        _ if pending.listeners.apply_key("listeners.tcp", key, value)? => {}
        "default_user" => config.default_user = value.to_string(),
        "default_pass" => config.default_pass = value.to_string(),
        "default_vhost" => config.default_vhost = value.to_string(),
        "loopback_users" if value == "none" => config.guest_loopback_only = false,
        "loopback_users.guest" => config.guest_loopback_only = boolean(value)?,
        _ if key.starts_with("loopback_users.") => {
            // Only guest can be loopback-only in Warren: other users' entries are refused
            // only if they ask for a restriction Warren cannot apply.
            if boolean(value)? {
                return Ok(false);
            }
        }
        "heartbeat" => config.heartbeat = integer(value)?,
        "frame_max" => {
            // RabbitMQ's 0 means "no limit": the largest frame AMQP can describe.
            config.frame_max = match integer::<u32>(value)? {
                0 => u32::MAX,
                n if n < 4096 => return Err("frame_max is below the AMQP minimum of 4096".into()),
                n => n,
            }
        }
        "channel_max" => {
            // RabbitMQ's 0 means "no limit": the highest channel number AMQP can carry.
            config.channel_max = match integer::<u16>(value)? {
                0 => u16::MAX,
                n => n,
            }
        }
        "max_message_size" => config.max_message_size = integer(value)?,
        "consumer_max_per_channel" => {
            config.consumer_max_per_channel = match value {
                "infinity" => 0,
                v => integer(v)?,
            }
        }
        "channel_max_per_node" => {
            config.channel_max_per_node = match value {
                "infinity" => 0,
                v => integer(v)?,
            }
        }
        "cluster_queue_limit" => {
            config.cluster_queue_limit = match value {
                "infinity" => 0,
                v => integer(v)?,
            }
        }
        "vm_memory_high_watermark.relative" => {
            config.memory_high_watermark_relative = fraction(value, 1.0)?;
            config.memory_high_watermark = 0;
        }
        "vm_memory_high_watermark.absolute" => {
            config.memory_high_watermark = information_unit(value)?;
        }
        "vm_memory_calculation_strategy" => {
            config.memory_calculation_strategy = match value {
                "rss" => super::MemoryStrategy::Rss,
                // Warren has no runtime of its own to ask: what messages hold is
                // what it allocates.
                "allocated" | "erlang" | "legacy" => super::MemoryStrategy::Allocated,
                _ => return Err("expected rss, allocated, erlang or legacy".into()),
            }
        }
        "disk_free_limit.absolute" => {
            config.disk_free_limit_bytes = information_unit(value)?;
            config.disk_free_limit_relative = None;
        }
        "disk_free_limit.relative" => {
            config.disk_free_limit_relative = Some(fraction(value, f64::MAX)?);
        }
        "consumer_timeout" => {
            config.consumer_timeout_ms = match value {
                "false" | "infinity" => None,
                v => Some(integer(v)?),
            }
        }
        "load_definitions" | "management.load_definitions" | "definitions.local.path" => {
            config.load_definitions = Some(PathBuf::from(value));
        }
        // The newer syntax: definitions.import_backend = local_filesystem plus
        // definitions.local.path. Warren reads local files only.
        "definitions.import_backend" => match value {
            "local_filesystem" | "local" | "rabbitmq_definitions_import_local_filesystem" => {}
            _ => return Err("Warren imports definitions from local files only".into()),
        },
        // Warren's boot import never replaces what exists, unchanged file or not.
        "definitions.skip_if_unchanged" => {
            boolean(value)?;
        }
        "management.tcp.port" => {
            pending.tls.management_tcp_set = true;
            let port = integer(value)?;
            config.management_listen = Some(match config.management_listen {
                Some(addr) => SocketAddr::new(addr.ip(), port),
                None => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
            });
        }
        "management.tcp.ip" => {
            pending.tls.management_tcp_set = true;
            let ip = ip(value)?.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            let port = config
                .management_listen
                .map_or(super::DEFAULT_MANAGEMENT_PORT, |a| a.port());
            config.management_listen = Some(SocketAddr::new(ip, port));
        }
        "prometheus.tcp.port" => {
            let port = integer(value)?;
            config.prometheus_listen = Some(match config.prometheus_listen {
                Some(addr) => SocketAddr::new(addr.ip(), port),
                None => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
            });
        }
        "prometheus.tcp.ip" => {
            let ip = ip(value)?.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            let port = config
                .prometheus_listen
                .map_or(super::DEFAULT_PROMETHEUS_PORT, |a| a.port());
            config.prometheus_listen = Some(SocketAddr::new(ip, port));
        }
        "log.console.level" | "log.default.level" => config.log_level = log_level(value)?,
        "log.file.level" => {
            // Warren logs to standard output only: a file level is the level of that log,
            // unless the console's own level is set.
            let level = log_level(value)?;
            if !pending.console_level_set {
                config.log_level = level;
            }
            return Ok(true);
        }
        "log.console" => {
            boolean(value)?;
        }
        "log.file" => {
            if value != "false" {
                notices.info(format!(
                    "log.file = {value}: Warren logs to standard output only"
                ));
            }
        }
        "log.console.formatter" | "log.file.formatter" => {
            config.log_format = match value {
                "json" => LogFormat::Json,
                "plaintext" => LogFormat::Text,
                _ => return Err("expected json or plaintext".into()),
            }
        }
        _ => return super::tls::apply_conf_key(config, &mut pending.tls, key, value),
    }
    if matches!(key, "log.console.level" | "log.default.level") {
        pending.console_level_set = true;
    }
    Ok(true)
}

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn integer<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("expected an integer in range, got '{value}'"))
}

fn fraction(value: &str, max: f64) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 && f <= max => Ok(f),
        _ => Err(format!(
            "expected a number between 0 and {max}, got '{value}'"
        )),
    }
}

fn ip(value: &str) -> Result<Option<IpAddr>, String> {
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("'{value}' is not an IP address"))
}

/// RabbitMQ's log levels, as `tracing` filters.
fn log_level(value: &str) -> Result<String, String> {
    Ok(match value {
        "debug" => "debug",
        "info" | "notice" => "info",
        "warning" => "warn",
        "error" | "critical" | "alert" | "emergency" => "error",
        "none" => "off",
        _ => {
            return Err(
                "expected debug, info, notice, warning, error, critical, alert, emergency or none"
                    .into(),
            );
        }
    }
    .to_string())
}

/// A size in RabbitMQ's information units: bytes, or a number with `k`/`K`/`kiB`,
/// `m`/`M`/`MiB`, `g`/`G`/`GiB` (powers of 1024) or `kB`/`KB`, `MB`, `GB` (powers of 1000).
pub fn information_unit(value: &str) -> Result<u64, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{value}' is not a size (e.g. 1073741824, 1GB, 1024MiB)"))?;
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" | "kiB" | "KiB" | "kib" | "KIB" => 1 << 10,
        "m" | "M" | "MiB" | "mib" | "MIB" => 1 << 20,
        "g" | "G" | "GiB" | "gib" | "GIB" => 1 << 30,
        "kB" | "KB" | "kb" | "Kb" => 1_000,
        "MB" | "mb" | "Mb" => 1_000_000,
        "GB" | "gb" | "Gb" => 1_000_000_000,
        _ => return Err(format!("'{unit}' is not a size unit")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{value}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(split_line("  # comment").unwrap(), None);
        assert_eq!(
            split_line("default_pass = s3cret # inline").unwrap(),
            Some(("default_pass", "s3cret".to_string()))
        );
        assert_eq!(
            split_line("default_pass = 'with # hash'").unwrap(),
            Some(("default_pass", "with # hash".to_string()))
        );
        assert!(split_line("no equals sign").is_err());
        assert!(split_line("key =").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(information_unit("1024").unwrap(), 1024);
        assert_eq!(information_unit("2GB").unwrap(), 2_000_000_000);
        assert_eq!(information_unit("512MiB").unwrap(), 512 << 20);
        assert_eq!(information_unit("1g").unwrap(), 1 << 30);
        assert!(information_unit("12parsecs").is_err());
        assert!(information_unit("GB").is_err());
    }

    #[test]
    fn definitions_keys() {
        let mut config = Config::default();
        let mut pending = Pending::default();
        let mut notices = Notices::default();
        let text = "definitions.import_backend = local_filesystem\n\
                    definitions.local.path = /defs/dir\n\
                    definitions.skip_if_unchanged = true\n";
        apply_text(&mut config, &mut pending, text, "t", &mut notices).expect("valid");
        assert_eq!(config.load_definitions, Some(PathBuf::from("/defs/dir")));
        let https = "definitions.import_backend = https\n";
        assert!(apply_text(&mut config, &mut pending, https, "t", &mut notices).is_err());
    }
}

//! TLS settings: the `[tls]` table of warren.toml, and the rabbitmq.conf keys that set
//! the same (`listeners.ssl.*`, `ssl_options.*`, `management.ssl.*`,
//! `ssl_cert_login_from`), plus `auth_mechanisms.*`.

use crate::tls::{CertLogin, TlsAcceptor, TlsFiles};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// RabbitMQ's conventional amqps port.
pub const DEFAULT_AMQPS_PORT: u16 = 5671;
/// RabbitMQ management's conventional HTTPS port.
pub const DEFAULT_MANAGEMENT_TLS_PORT: u16 = 15671;

/// The `[tls]` table. TLS is off unless `listen` or `management_listen` is set.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// amqps listeners (RabbitMQ: `listeners.ssl.*`); none by default.
    #[serde(with = "addr_list")]
    pub listen: Vec<SocketAddr>,
    /// The server's certificate chain, PEM (RabbitMQ: `ssl_options.certfile`).
    pub cert_file: Option<PathBuf>,
    /// The server's private key, PEM (RabbitMQ: `ssl_options.keyfile`).
    pub key_file: Option<PathBuf>,
    /// CA certificates client certificates are verified against, PEM (RabbitMQ:
    /// `ssl_options.cacertfile`).
    pub ca_file: Option<PathBuf>,
    /// Ask clients for a certificate and verify it (RabbitMQ: `ssl_options.verify =
    /// verify_peer`); a client may still connect without one unless
    /// `fail_if_no_peer_cert`.
    pub verify_peer: bool,
    /// Refuse clients without a certificate (RabbitMQ:
    /// `ssl_options.fail_if_no_peer_cert`).
    pub fail_if_no_peer_cert: bool,
    /// What names the user of the EXTERNAL mechanism: `distinguished_name` or
    /// `common_name` (RabbitMQ: `ssl_cert_login_from`).
    pub cert_login_from: CertLogin,
    /// HTTPS listener of the management API (RabbitMQ: `management.ssl.ip` and
    /// `management.ssl.port`), or `"none"`.
    #[serde(with = "super::listen::optional")]
    pub management_listen: Option<SocketAddr>,
    /// The management listener's certificate, key and CA (RabbitMQ:
    /// `management.ssl.certfile`, `.keyfile`, `.cacertfile`); unset, the AMQP ones.
    pub management_cert_file: Option<PathBuf>,
    pub management_key_file: Option<PathBuf>,
    pub management_ca_file: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listen: Vec::new(),
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify_peer: false,
            fail_if_no_peer_cert: false,
            cert_login_from: CertLogin::DistinguishedName,
            management_listen: None,
            management_cert_file: None,
            management_key_file: None,
            management_ca_file: None,
        }
    }
}

/// Names a key in errors with its rabbitmq.conf equivalent.
fn named<'a>(
    key: &'a str,
    path: &'a Option<PathBuf>,
) -> Result<(&'a str, &'a std::path::Path), String> {
    path.as_deref()
        .map(|p| (key, p))
        .ok_or_else(|| format!("{key} is not set: a TLS listener needs it"))
}

impl TlsConfig {
    /// The amqps listeners' acceptor, if any listener is configured.
    pub fn amqp_acceptor(&self) -> Result<Option<TlsAcceptor>, String> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        let files = TlsFiles {
            cert: named("tls.cert_file (ssl_options.certfile)", &self.cert_file)?,
            key: named("tls.key_file (ssl_options.keyfile)", &self.key_file)?,
            ca: (
                "tls.ca_file (ssl_options.cacertfile)",
                self.ca_file.as_deref(),
            ),
            verify_peer: self.verify_peer,
            fail_if_no_peer_cert: self.fail_if_no_peer_cert,
            alpn: &[b"amqp"],
        };
        crate::tls::acceptor(&files).map(Some)
    }

    /// The management HTTPS listener's acceptor, if it is configured.
    pub fn management_acceptor(&self) -> Result<Option<TlsAcceptor>, String> {
        if self.management_listen.is_none() {
            return Ok(None);
        }
        let pick = |own: &'static str,
                    mine: &Option<PathBuf>,
                    amqp: &'static str,
                    theirs: &Option<PathBuf>| {
            if mine.is_some() {
                (own, mine.clone())
            } else {
                (amqp, theirs.clone())
            }
        };
        let cert = pick(
            "tls.management_cert_file (management.ssl.certfile)",
            &self.management_cert_file,
            "tls.cert_file (ssl_options.certfile)",
            &self.cert_file,
        );
        let key = pick(
            "tls.management_key_file (management.ssl.keyfile)",
            &self.management_key_file,
            "tls.key_file (ssl_options.keyfile)",
            &self.key_file,
        );
        let ca = pick(
            "tls.management_ca_file (management.ssl.cacertfile)",
            &self.management_ca_file,
            "tls.ca_file (ssl_options.cacertfile)",
            &self.ca_file,
        );
        let files = TlsFiles {
            cert: named(cert.0, &cert.1)?,
            key: named(key.0, &key.1)?,
            ca: (ca.0, ca.1.as_deref()),
            verify_peer: false,
            fail_if_no_peer_cert: false,
            alpn: &[b"http/1.1"],
        };
        crate::tls::acceptor(&files).map(Some)
    }
}

/// The mechanisms Warren implements.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "AMQPLAIN", "EXTERNAL"];

/// Checks a configured mechanism list.
pub fn check_mechanisms(list: &[String]) -> Result<(), String> {
    if let Some(m) = list.iter().find(|m| !MECHANISMS.contains(&m.as_str())) {
        return Err(format!(
            "auth_mechanisms: '{m}' is not a mechanism Warren has (PLAIN, AMQPLAIN, EXTERNAL)"
        ));
    }
    if list.is_empty() {
        return Err("auth_mechanisms: at least one mechanism is needed".into());
    }
    Ok(())
}

/// What rabbitmq.conf's TLS keys add up to across files.
#[derive(Default)]
pub struct PendingTls {
    listeners: super::listen::NamedListeners,
    mechanisms: Vec<(String, String)>,
    /// management.tcp.* was set: the plain management listener stays.
    pub management_tcp_set: bool,
    management_ssl_set: bool,
}

impl PendingTls {
    pub fn apply(self, config: &mut super::Config) {
        if self.listeners.set {
            config.tls.listen = self.listeners.addresses();
        }
        if !self.mechanisms.is_empty() {
            config.auth_mechanisms = self.mechanisms.into_iter().map(|(_, m)| m).collect();
        }
        // As RabbitMQ: a management listener configured for TLS only is not also
        // served over plain HTTP.
        if self.management_ssl_set && !self.management_tcp_set {
            config.management_listen = None;
        }
    }
}

/// Applies one rabbitmq.conf key if it is a TLS or mechanism key; `Ok(false)` if not
/// one Warren has.
pub fn apply_conf_key(
    config: &mut super::Config,
    pending: &mut PendingTls,
    key: &str,
    value: &str,
) -> Result<bool, String> {
    let management_ip = config
        .management_listen
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let tls = &mut config.tls;
    match key {
        _ if pending.listeners.apply_key("listeners.ssl", key, value)? => {}
        "ssl_options.certfile" => tls.cert_file = Some(PathBuf::from(value)),
        "ssl_options.keyfile" => tls.key_file = Some(PathBuf::from(value)),
        "ssl_options.cacertfile" => tls.ca_file = Some(PathBuf::from(value)),
        "ssl_options.verify" => {
            tls.verify_peer = match value {
                "verify_peer" => true,
                "verify_none" => false,
                _ => return Err("expected verify_peer or verify_none".into()),
            }
        }
        "ssl_options.fail_if_no_peer_cert" => tls.fail_if_no_peer_cert = boolean(value)?,
        "ssl_cert_login_from" => {
            tls.cert_login_from = match value {
                "distinguished_name" => CertLogin::DistinguishedName,
                "common_name" => CertLogin::CommonName,
                _ => return Err("Warren reads distinguished_name or common_name".into()),
            }
        }
        "management.ssl.port" => {
            let port: u16 = value
                .parse()
                .map_err(|_| format!("'{value}' is not a port (0..65535)"))?;
            tls.management_listen = Some(match tls.management_listen {
                Some(addr) => SocketAddr::new(addr.ip(), port),
                None => SocketAddr::new(management_ip, port),
            });
            pending.management_ssl_set = true;
        }
        "management.ssl.ip" => {
            let ip: IpAddr = value
                .parse()
                .map_err(|_| format!("'{value}' is not an IP address"))?;
            let port = tls
                .management_listen
                .map_or(DEFAULT_MANAGEMENT_TLS_PORT, |a| a.port());
            tls.management_listen = Some(SocketAddr::new(ip, port));
            pending.management_ssl_set = true;
        }
        "management.ssl.certfile" => tls.management_cert_file = Some(PathBuf::from(value)),
        "management.ssl.keyfile" => tls.management_key_file = Some(PathBuf::from(value)),
        "management.ssl.cacertfile" => tls.management_ca_file = Some(PathBuf::from(value)),
        _ if key.starts_with("auth_mechanisms.") => {
            let name = &key["auth_mechanisms.".len()..];
            if !MECHANISMS.contains(&value) {
                return Err("Warren has PLAIN, AMQPLAIN and EXTERNAL".into());
            }
            match pending.mechanisms.iter_mut().find(|(n, _)| n == name) {
                Some((_, m)) => *m = value.to_string(),
                None => pending
                    .mechanisms
                    .push((name.to_string(), value.to_string())),
            }
        }
        _ => return Ok(false),
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

/// Serde for a list of listeners that may be empty (`[]`: no amqps listener).
mod addr_list {
    use serde::{Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        super::super::listen::addresses(d)
    }

    pub fn serialize<S: Serializer>(addrs: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
        super::super::listen::serialize(addrs, s)
    }
}

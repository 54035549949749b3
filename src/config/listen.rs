//! Listener addresses as people write them: Warren's `127.0.0.1:5672` and `[::1]:5672`,
//! and RabbitMQ's forms, where a bare port means every interface (`listeners.tcp.default =
//! 5672`: `[::]:5672` and `0.0.0.0:5672`) and an IPv6 address may be written without
//! brackets (`listeners.tcp.1 = :::5672`, `::1:5672`).

use serde::{Deserialize, Deserializer, Serializer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The default listeners: both loopbacks, so `amqp://localhost` works whichever address
/// the client's resolver tries first (Node 17+ tries `::1`).
pub fn default_listeners() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from((Ipv4Addr::LOCALHOST, 5672)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, 5672)),
    ]
}

/// Every interface, both families, on `port` (RabbitMQ's meaning of a bare port).
pub fn all_interfaces(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
    ]
}

/// Parses one listener: `5672`, `127.0.0.1:5672`, `[::1]:5672`, `:::5672`, `::1:5672`.
pub fn parse_listener(text: &str) -> Result<Vec<SocketAddr>, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port(text).map(all_interfaces);
    }
    let bad = || {
        format!("'{text}' is not a listener (expected a port, IP:PORT, [IPv6]:PORT or IPv6:PORT)")
    };
    let (ip, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    Ok(vec![SocketAddr::new(ip, parse_port(port)?)])
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("'{text}' is not a port (0..65535)"))
}

/// The address a local client uses to reach a listener: an unspecified address (every
/// interface) is reached through the loopback of its family.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// Serde: `listen = "127.0.0.1:5672"`, `listen = 5672` or a list of either; at least one.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let out = addresses(d)?;
    if out.is_empty() {
        return Err(serde::de::Error::custom(
            "listen needs at least one address",
        ));
    }
    Ok(out)
}

/// The addresses of a listener setting, possibly none (`[]`).
pub fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Port(u16),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listen {
        One(One),
        Many(Vec<One>),
    }
    let items = match Listen::deserialize(d)? {
        Listen::One(one) => vec![one],
        Listen::Many(many) => many,
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            One::Port(port) => out.extend(all_interfaces(port)),
            One::Text(text) => out.extend(parse_listener(&text).map_err(serde::de::Error::custom)?),
        }
    }
    Ok(out)
}

/// Listeners named in rabbitmq.conf (`listeners.tcp.NAME`, `listeners.ssl.NAME`), in
/// the order first named, across files; a later file's `NAME` replaces the earlier.
#[derive(Default)]
pub struct NamedListeners {
    named: Vec<(String, Vec<SocketAddr>)>,
    /// Some file set them (or turned them off with `none`).
    pub set: bool,
}

impl NamedListeners {
    /// Applies `key = value` if `key` is `prefix` (`listeners.tcp`) or below it;
    /// `Ok(false)` if it is neither.
    pub fn apply_key(&mut self, prefix: &str, key: &str, value: &str) -> Result<bool, String> {
        if key == prefix {
            if value != "none" {
                return Err(format!("expected 'none' or {prefix}.NAME = ..."));
            }
            self.named.clear();
            self.set = true;
            return Ok(true);
        }
        let Some(name) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix('.')) else {
            return Ok(false);
        };
        let addrs = parse_listener(value)?;
        match self.named.iter_mut().find(|(n, _)| n == name) {
            Some((_, a)) => *a = addrs,
            None => self.named.push((name.to_string(), addrs)),
        }
        self.set = true;
        Ok(true)
    }

    /// Every address named.
    pub fn addresses(self) -> Vec<SocketAddr> {
        self.named.into_iter().flat_map(|(_, a)| a).collect()
    }
}

pub fn serialize<S: Serializer>(addrs: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addrs.iter().map(|a| a.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_forms() {
        assert_eq!(parse_listener("5672").unwrap(), all_interfaces(5672));
        assert_eq!(
            parse_listener(":::5673").unwrap(),
            vec!["[::]:5673".parse().unwrap()]
        );
        assert_eq!(
            parse_listener("::1:5674").unwrap(),
            vec!["[::1]:5674".parse().unwrap()]
        );
        assert_eq!(
            parse_listener("127.0.0.1:5675").unwrap(),
            vec!["127.0.0.1:5675".parse().unwrap()]
        );
        assert!(parse_listener("localhost:5672").is_err());
        assert!(parse_listener("70000").is_err());
    }
}

/// An optional address in TOML: `"127.0.0.1:15692"`, or `"none"` (or `""`) for none.
pub mod optional {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// `none`, `off` or an empty string: no listener; otherwise `IP:PORT`.
    pub fn parse(text: &str) -> Result<Option<SocketAddr>, String> {
        match text.trim() {
            "" | "none" | "off" | "false" => Ok(None),
            t => t
                .parse()
                .map(Some)
                .map_err(|_| format!("'{t}' is not an address (IP:PORT, or none)")),
        }
    }
}

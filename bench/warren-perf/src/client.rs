//! What the load generator needs from an AMQP client, implemented by two libraries
//! (`amqprs` and `lapin`) so their speed can be compared. Dispatch is by enum: the
//! backends' async methods are not object-safe.

use crate::cli::{ClientKind, ExchangeType};
use crate::stats::Stats;
use crate::{amqprs_client, lapin_client, raw_client};
use anyhow::Result;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One received message.
pub struct Delivery {
    pub tag: u64,
    pub body: Vec<u8>,
}

/// Where a producer sends its messages.
#[derive(Clone, Debug)]
pub struct Route {
    pub exchange: String,
    pub routing_key: String,
}

/// Publisher-confirm bookkeeping shared by a producer and its client's confirm handler:
/// the producer takes a permit per message, the handler gives permits back as the broker
/// acks or nacks.
pub struct ConfirmWindow {
    pub permits: Semaphore,
    pub size: usize,
    stats: Arc<Stats>,
}

impl ConfirmWindow {
    pub fn new(size: usize, stats: Arc<Stats>) -> Self {
        ConfirmWindow {
            permits: Semaphore::new(size),
            size,
            stats,
        }
    }

    /// The broker confirmed `n` messages (acked if `ack`, else nacked).
    pub fn settled(&self, n: usize, ack: bool) {
        if n == 0 {
            return;
        }
        if ack {
            self.stats.add_confirmed(n as u64);
        } else {
            self.stats.add_nacked(n as u64);
        }
        self.permits.add_permits(n);
    }
}

/// Options of a producer connection.
pub struct PublisherOptions {
    pub route: Route,
    pub persistent: bool,
    pub confirms: Option<Arc<ConfirmWindow>>,
}

/// Options of a consumer connection.
pub struct ConsumerOptions {
    pub queue: String,
    pub prefetch: u16,
    pub auto_ack: bool,
    /// `x-stream-offset` of a stream consumer (`first`, `next`, a number, ...).
    pub stream_offset: Option<String>,
}

/// An `x-stream-offset` argument: a number is an offset, anything else a spec (`first`, ...).
pub enum StreamOffset<'a> {
    Offset(i64),
    Spec(&'a str),
}

impl<'a> StreamOffset<'a> {
    pub fn parse(s: &'a str) -> Self {
        s.parse()
            .map_or(StreamOffset::Spec(s), StreamOffset::Offset)
    }
}

/// `x-stream-offset` as an amq-protocol table (lapin and the raw client).
pub fn stream_offset_table(offset: Option<&str>) -> amq_protocol::types::FieldTable {
    use amq_protocol::types::{AMQPValue, FieldTable, LongString};
    let mut t = FieldTable::default();
    if let Some(o) = offset {
        let v = match StreamOffset::parse(o) {
            StreamOffset::Offset(n) => AMQPValue::LongLongInt(n),
            StreamOffset::Spec(s) => AMQPValue::LongString(LongString::from(s)),
        };
        t.insert("x-stream-offset".into(), v);
    }
    t
}

pub enum Publisher {
    Amqprs(amqprs_client::Publisher),
    Lapin(lapin_client::Publisher),
    Raw(raw_client::Publisher),
}

impl Publisher {
    pub async fn connect(kind: ClientKind, uri: &str, opts: PublisherOptions) -> Result<Self> {
        Ok(match kind {
            ClientKind::Raw if opts.confirms.is_none() => {
                Publisher::Raw(raw_client::Publisher::connect(uri, opts).await?)
            }
            ClientKind::Amqprs | ClientKind::Raw => {
                Publisher::Amqprs(amqprs_client::Publisher::connect(uri, opts).await?)
            }
            ClientKind::Lapin => {
                Publisher::Lapin(lapin_client::Publisher::connect(uri, opts).await?)
            }
        })
    }

    /// Sends one message. Returns once the client has taken it (not when it is confirmed).
    pub async fn publish(&mut self, body: Vec<u8>) -> Result<()> {
        match self {
            Publisher::Amqprs(p) => p.publish(body).await,
            Publisher::Lapin(p) => p.publish(body).await,
            Publisher::Raw(p) => p.publish(body).await,
        }
    }

    pub async fn close(self) {
        match self {
            Publisher::Amqprs(p) => p.close().await,
            Publisher::Lapin(p) => p.close().await,
            Publisher::Raw(p) => p.close().await,
        }
    }
}

// Few values, long-lived: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Consumer {
    Amqprs(amqprs_client::Consumer),
    Lapin(lapin_client::Consumer),
    Raw(raw_client::Consumer),
}

impl Consumer {
    pub async fn connect(kind: ClientKind, uri: &str, opts: ConsumerOptions) -> Result<Self> {
        Ok(match kind {
            ClientKind::Amqprs => {
                Consumer::Amqprs(amqprs_client::Consumer::connect(uri, opts).await?)
            }
            ClientKind::Lapin => Consumer::Lapin(lapin_client::Consumer::connect(uri, opts).await?),
            ClientKind::Raw => Consumer::Raw(raw_client::Consumer::connect(uri, opts).await?),
        })
    }

    /// The next delivery; `None` when the consumer or its connection has ended.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        match self {
            Consumer::Amqprs(c) => c.next().await,
            Consumer::Lapin(c) => c.next().await,
            Consumer::Raw(c) => c.next().await,
        }
    }

    pub async fn ack(&mut self, tag: u64, multiple: bool) -> Result<()> {
        match self {
            Consumer::Amqprs(c) => c.ack(tag, multiple).await,
            Consumer::Lapin(c) => c.ack(tag, multiple).await,
            Consumer::Raw(c) => c.ack(tag, multiple).await,
        }
    }

    pub async fn close(self) {
        match self {
            Consumer::Amqprs(c) => c.close().await,
            Consumer::Lapin(c) => c.close().await,
            Consumer::Raw(c) => c.close().await,
        }
    }
}

/// A connection with one channel for declaring and inspecting topology.
#[allow(clippy::large_enum_variant)]
pub enum Admin {
    Amqprs(amqprs_client::Admin),
    Lapin(lapin_client::Admin),
}

macro_rules! admin_dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Admin::Amqprs($c) => $e,
            Admin::Lapin($c) => $e,
        }
    };
}

impl Admin {
    /// Connects and opens a channel (a full AMQP handshake).
    pub async fn connect(kind: ClientKind, uri: &str) -> Result<Self> {
        Ok(match kind {
            ClientKind::Amqprs | ClientKind::Raw => {
                Admin::Amqprs(amqprs_client::Admin::connect(uri).await?)
            }
            ClientKind::Lapin => Admin::Lapin(lapin_client::Admin::connect(uri).await?),
        })
    }

    pub async fn declare_exchange(
        &mut self,
        name: &str,
        kind: ExchangeType,
        durable: bool,
    ) -> Result<()> {
        admin_dispatch!(self, c => c.declare_exchange(name, kind, durable).await)
    }

    /// Declares a queue; returns its message count.
    pub async fn declare_queue(&mut self, name: &str, durable: bool) -> Result<u64> {
        admin_dispatch!(self, c => c.declare_queue(name, durable).await)
    }

    /// Declares a stream (`x-queue-type: stream`, durable); returns its message count.
    pub async fn declare_stream(&mut self, name: &str) -> Result<u64> {
        admin_dispatch!(self, c => c.declare_stream(name).await)
    }

    /// Passive declare: the queue's message count (an error if it does not exist; the
    /// channel is reopened so the admin stays usable).
    pub async fn queue_message_count(&mut self, name: &str) -> Result<u64> {
        admin_dispatch!(self, c => c.queue_message_count(name).await)
    }

    pub async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> Result<()> {
        admin_dispatch!(self, c => c.bind_queue(queue, exchange, key).await)
    }

    pub async fn purge_queue(&mut self, name: &str) -> Result<()> {
        admin_dispatch!(self, c => c.purge_queue(name).await)
    }

    pub async fn delete_queue(&mut self, name: &str) -> Result<()> {
        admin_dispatch!(self, c => c.delete_queue(name).await)
    }

    pub async fn delete_exchange(&mut self, name: &str) -> Result<()> {
        admin_dispatch!(self, c => c.delete_exchange(name).await)
    }

    /// basic.get with manual ack, leaving the message unacked (it returns to the queue when
    /// the channel closes). True if a message was there.
    pub async fn get_one(&mut self, queue: &str) -> Result<bool> {
        admin_dispatch!(self, c => c.get_one(queue).await)
    }

    pub async fn close(self) {
        admin_dispatch!(self, c => c.close().await)
    }
}

/// The parts of an `amqp://user:pass@host:port/vhost` URI.
#[derive(Debug, PartialEq, Eq)]
pub struct UriParts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

/// Parses an AMQP URI (no TLS, no query parameters). Missing parts take the usual defaults:
/// guest/guest, port 5672, vhost "/".
pub fn parse_uri(uri: &str) -> Result<UriParts> {
    let rest = uri
        .strip_prefix("amqp://")
        .ok_or_else(|| anyhow::anyhow!("only amqp:// URIs are supported: {uri}"))?;
    let rest = rest.split('?').next().unwrap_or("");
    let (authority, vhost) = match rest.split_once('/') {
        Some((a, v)) => (a, percent_decode(v)?),
        None => (rest, "/".to_string()),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (percent_decode(a)?, percent_decode(b)?),
            None => (percent_decode(u)?, String::new()),
        },
        None => ("guest".to_string(), "guest".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse()
                .map_err(|_| anyhow::anyhow!("bad port in {uri}"))?,
        ),
        None => (hostport.to_string(), 5672),
    };
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    Ok(UriParts {
        host,
        port,
        user,
        password,
        vhost,
    })
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])?;
            out.push(u8::from_str_radix(hex, 16)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let p = parse_uri("amqp://guest:guest@127.0.0.1:5700/%2f").unwrap();
        assert_eq!(
            p,
            UriParts {
                host: "127.0.0.1".into(),
                port: 5700,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
            }
        );
        let p = parse_uri("amqp://localhost").unwrap();
        assert_eq!(
            (p.port, p.vhost.as_str(), p.user.as_str()),
            (5672, "/", "guest")
        );
        let p = parse_uri("amqp://u:p%40ss@h:1/vh").unwrap();
        assert_eq!((p.password.as_str(), p.vhost.as_str()), ("p@ss", "vh"));
        assert!(parse_uri("http://x").is_err());
    }
}

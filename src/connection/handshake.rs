//! Connection negotiation: start / start-ok (authentication), tune / tune-ok, open.

use crate::broker::{Broker, VHost};
use crate::config::Config;
use crate::identity;
use crate::protocol::codec::FrameReader;
use crate::protocol::{Exception, Frame, ProtocolError};
use crate::tls::PeerCert;
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the handshake settled.
pub struct Negotiated {
    pub user: String,
    pub vhost: Arc<VHost>,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    /// The client handles server-sent basic.cancel.
    pub consumer_cancel_notify: bool,
    /// The client handles connection.blocked / unblocked.
    pub blocked_notify: bool,
    /// What the client said about itself in connection.start-ok.
    pub client_properties: FieldTable,
    /// The SASL mechanism the client logged in with.
    pub auth_mechanism: String,
}

/// Why the handshake did not complete.
pub enum HandshakeError {
    /// Close the connection with this exception (connection.close, await close-ok).
    Close(Exception),
    /// Drop the socket without a word (the client cannot take a close here).
    Drop(String),
    /// Refused login of a client that cannot take a connection.close for it: the
    /// socket is closed without a word, after a delay (RabbitMQ waits 3 s, so that
    /// failed logins cannot be repeated quickly).
    Silent(String),
}

impl From<ProtocolError> for HandshakeError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(e) => HandshakeError::Drop(e.to_string()),
            other => HandshakeError::Close(Exception::from_protocol(&other, 0, 0)),
        }
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes()))
}

/// The server-properties of connection.start, shaped like RabbitMQ's: the product and
/// version are RabbitMQ's (see [`identity`]), `platform` and `warren_version` name Warren.
pub fn server_properties() -> FieldTable {
    let yes = AMQPValue::Boolean(true);
    let capabilities = table(&[
        ("publisher_confirms", yes.clone()),
        ("exchange_exchange_bindings", yes.clone()),
        ("basic.nack", yes.clone()),
        ("consumer_cancel_notify", yes.clone()),
        ("connection.blocked", yes.clone()),
        ("consumer_priorities", yes.clone()),
        ("authentication_failure_close", yes.clone()),
        ("per_consumer_qos", yes.clone()),
        ("direct_reply_to", yes),
    ]);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    table(&[
        ("capabilities", AMQPValue::FieldTable(capabilities)),
        ("cluster_name", text(&format!("warren@{host}"))),
        ("copyright", text("Copyright (c) the Warren authors")),
        (
            "information",
            text("Warren, an AMQP 0-9-1 broker compatible with RabbitMQ clients"),
        ),
        (
            "platform",
            text(&format!(
                "{} (Rust, {})",
                identity::warren_release(),
                std::env::consts::OS
            )),
        ),
        ("product", text(identity::PRODUCT)),
        ("version", text(identity::RABBITMQ_VERSION)),
        ("warren_version", text(identity::WARREN_VERSION)),
    ])
}

fn capability(props: &FieldTable, name: &str) -> bool {
    match props.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(caps)) => {
            matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)))
        }
        _ => false,
    }
}

/// Extracts (user, password) from a PLAIN or AMQPLAIN response.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        }
        "AMQPLAIN" => {
            // The response is a field table without its length prefix.
            let mut buf = Vec::with_capacity(response.len() + 4);
            buf.extend_from_slice(&(response.len() as u32).to_be_bytes());
            buf.extend_from_slice(response);
            // Parsing recurses per level: a table nested too deeply is refused first.
            crate::protocol::codec::table_within_limit(&buf).ok()?;
            let (_, t) = amq_protocol::types::parsing::parse_field_table(&buf[..]).ok()?;
            let get = |k: &str| match t.inner().get(k) {
                Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec()).ok(),
                Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
                _ => None,
            };
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

async fn expect_method(
    reader: &mut FrameReader,
    expected: &str,
) -> Result<connection::AMQPMethod, HandshakeError> {
    loop {
        let frame = match reader.next().await {
            // Before start-ok is taken RabbitMQ answers nothing, and resets the
            // socket after a delay (an oversized start-ok, say).
            Err(ProtocolError::Frame(e)) if expected == "start_ok" => {
                return Err(HandshakeError::Silent(e));
            }
            other => other?,
        };
        match frame {
            None => return Err(HandshakeError::Drop("closed during handshake".into())),
            Some(Frame::Heartbeat(_)) => continue,
            Some(Frame::Method(0, method)) => match method {
                AMQPClass::Connection(m) => return Ok(m),
                other => {
                    return Err(HandshakeError::Close(Exception::command_invalid(
                        format_args!("expected 'connection.{expected}'"),
                        other.get_amqp_class_id(),
                        other.get_amqp_method_id(),
                    )));
                }
            },
            Some(_) => {
                return Err(HandshakeError::Close(Exception::command_invalid(
                    format_args!("expected 'connection.{expected}'"),
                    0,
                    0,
                )));
            }
        }
    }
}

fn unexpected(expected: &str, got: &connection::AMQPMethod) -> HandshakeError {
    let class = AMQPClass::Connection(got.clone());
    HandshakeError::Close(Exception::command_invalid(
        format_args!("expected 'connection.{expected}'"),
        class.get_amqp_class_id(),
        class.get_amqp_method_id(),
    ))
}

/// Runs the negotiation; `send` queues a method on channel 0.
pub async fn negotiate(
    reader: &mut FrameReader,
    send: &mut impl FnMut(AMQPClass),
    broker: &Broker,
    config: &Config,
    peer: SocketAddr,
    tls: Option<&PeerCert>,
) -> Result<Negotiated, HandshakeError> {
    // As RabbitMQ: the configured mechanisms, EXTERNAL only on TLS connections
    // (with or without a client certificate: without one it is refused, and says so).
    let offered: Vec<&str> = config
        .auth_mechanisms
        .iter()
        .map(String::as_str)
        .filter(|m| *m != "EXTERNAL" || tls.is_some())
        .collect();
    send(AMQPClass::Connection(connection::AMQPMethod::Start(
        connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongString::from(offered.join(" ")),
            locales: LongString::from("en_US"),
        },
    )));
    let start_ok = match expect_method(reader, "start_ok").await? {
        connection::AMQPMethod::StartOk(s) => s,
        other => return Err(unexpected("start_ok", &other)),
    };
    let mechanism = start_ok.mechanism.as_str();
    if !offered.contains(&mechanism) {
        // RabbitMQ answers an unknown mechanism with silence and a reset, whatever
        // the client's capabilities.
        tracing::warn!(%peer, mechanism, "unsupported authentication mechanism");
        return Err(HandshakeError::Silent(format!(
            "unsupported authentication mechanism '{mechanism}'"
        )));
    }
    let refuse_close = capability(&start_ok.client_properties, "authentication_failure_close");
    let (user, why) = if mechanism == "EXTERNAL" {
        external_user(broker, tls)
    } else {
        let (user, pass) = credentials(mechanism, start_ok.response.as_bytes()).unwrap_or_default();
        let why = (!broker.authenticate(&user, &pass))
            .then(|| format!("user '{user}' - invalid credentials"));
        (user, why)
    };
    let guest_remote = user == "guest" && config.guest_loopback_only && !peer.ip().is_loopback();
    let why = why
        .or_else(|| guest_remote.then(|| format!("user '{user}' can only connect via localhost")));
    if let Some(why) = why {
        let reason = format!(
            "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
        );
        tracing::warn!(%peer, user, "{mechanism} login refused: {why}");
        return Err(if refuse_close {
            // RabbitMQ sends class-id 0, method-id 0 with this refusal.
            HandshakeError::Close(Exception::access_refused(reason))
        } else {
            HandshakeError::Silent(reason)
        });
    }
    send(AMQPClass::Connection(connection::AMQPMethod::Tune(
        connection::Tune {
            channel_max: config.channel_max,
            frame_max: config.frame_max,
            heartbeat: config.heartbeat,
        },
    )));
    let tune_ok = match expect_method(reader, "tune_ok").await? {
        connection::AMQPMethod::TuneOk(t) => t,
        other => return Err(unexpected("tune_ok", &other)),
    };
    let not_allowed = |detail: String| {
        HandshakeError::Close(Exception::from_protocol(
            &ProtocolError::NotAllowed(detail),
            10,
            30,
        ))
    };
    // rabbit_reader:validate_negotiated_integer_value: a value under the minimum, or
    // over the server's limit (0, "no limit", counts as over it), is refused.
    let negotiate = |field: &str, min: u32, server: u32, client: u32| {
        let detail = if field == "channel_max" && client == 0 {
            " (no limit)"
        } else {
            ""
        };
        if client != 0 && client < min {
            Err(not_allowed(format!(
                "negotiated {field} = {client}{detail} is lower than the minimum allowed value ({min})"
            )))
        } else if server != 0 && (client == 0 || client > server) {
            Err(not_allowed(format!(
                "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
            )))
        } else {
            Ok(())
        }
    };
    negotiate("frame_max", 4096, config.frame_max, tune_ok.frame_max)?;
    negotiate(
        "channel_max",
        1,
        u32::from(config.channel_max),
        u32::from(tune_ok.channel_max),
    )?;
    let frame_max = tune_ok.frame_max;
    let channel_max = tune_ok.channel_max;
    reader.decoder.frame_max = frame_max;
    let open = match expect_method(reader, "open").await? {
        connection::AMQPMethod::Open(o) => o,
        other => return Err(unexpected("open", &other)),
    };
    let vhost = open_vhost(broker, open.virtual_host.as_str(), &user)?;
    send(AMQPClass::Connection(connection::AMQPMethod::OpenOk(
        connection::OpenOk {},
    )));
    Ok(Negotiated {
        user,
        vhost,
        channel_max,
        frame_max,
        heartbeat: tune_ok.heartbeat,
        consumer_cancel_notify: capability(&start_ok.client_properties, "consumer_cancel_notify"),
        blocked_notify: capability(&start_ok.client_properties, "connection.blocked"),
        auth_mechanism: start_ok.mechanism.to_string(),
        client_properties: start_ok.client_properties,
    })
}

/// The user an EXTERNAL login stands for (the client certificate's name; the user
/// must exist, no password is checked), or the reason it is refused.
fn external_user(broker: &Broker, tls: Option<&PeerCert>) -> (String, Option<String>) {
    let refuse = |why: &str| (String::new(), Some(why.to_string()));
    match tls {
        None => refuse("not a TLS-enabled connection"),
        Some(PeerCert::Missing) => refuse("connection peer presented no TLS (x.509) certificate"),
        Some(PeerCert::Unnamed) => refuse("no name found"),
        Some(PeerCert::Named(name)) => {
            let exists = broker.access().read(|s| s.user(name).is_some());
            let why = (!exists).then(|| format!("user '{name}' - invalid credentials"));
            (name.clone(), why)
        }
    }
}

/// connection.open: RabbitMQ's checks in its order: the vhost exists (its connection
/// limit is looked up first, and that finds it missing), its `max-connections` limit,
/// the user's `max-connections` limit, then the user's permission to use it.
fn open_vhost(broker: &Broker, name: &str, user: &str) -> Result<Arc<VHost>, HandshakeError> {
    let refuse = |e: Exception| Err(HandshakeError::Close(e));
    let Some(vhost) = broker.vhost(name) else {
        return refuse(Exception::vhost_not_found(name));
    };
    let limit = broker
        .access()
        .read(|s| s.vhost_limit(name, "max-connections"));
    if let Some(limit) = limit
        && broker.connections().count_vhost(name) as u64 >= limit
    {
        return refuse(Exception::vhost_connection_limit(name, user, limit));
    }
    let user_limit = broker
        .access()
        .read(|s| s.user(user).and_then(|u| u.limit("max-connections")));
    if let Some(limit) = user_limit
        && broker.connections().count_user(user).0 as u64 >= limit
    {
        return refuse(Exception::user_connection_limit(user, limit));
    }
    if broker.access().read(|s| s.permission(user, name).is_none()) {
        return refuse(Exception::vhost_access_refused(name, user));
    }
    Ok(vhost)
}

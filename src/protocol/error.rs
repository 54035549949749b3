//! AMQP exceptions: the single place where protocol and broker errors become reply
//! codes and reply texts, and where it is decided whether they close the channel or
//! the whole connection (RabbitMQ's soft and hard errors).

use crate::model::BrokerError;
use std::fmt;

/// A violation found while reading frames or sequencing them.
#[derive(Debug)]
pub enum ProtocolError {
    /// Malformed or oversized frame (501).
    Frame(String),
    /// A method frame whose fields cannot be decoded (501, as RabbitMQ's
    /// `frame_error`): class, method, and the start of the fields.
    Undecodable(u16, u16, Vec<u8>),
    /// A class/method id pair that does not exist (540).
    UnknownMethod(u16, u16),
    /// A method not valid here (503).
    CommandInvalid(String),
    /// A channel that is not open, or already open (504).
    Channel(String),
    /// A frame of a kind not expected here (505).
    UnexpectedFrame(String),
    /// A limit or value the connection does not allow (530).
    NotAllowed(String),
    /// A feature not implemented (540).
    NotImplemented(String),
    /// A method asking for a feature not implemented, named by class and method (540).
    MethodNotImplemented(u16, u16, String),
    /// The socket failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Io(e) => write!(f, "socket error: {e}"),
            other => {
                let e = Exception::from_protocol(other, 0, 0);
                f.write_str(&e.text)
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// An AMQP exception ready to be sent as channel.close or connection.close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub code: u16,
    /// Full reply text, `NAME - detail` as RabbitMQ writes it.
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

/// The constant name RabbitMQ puts before the detail of each reply text.
fn code_name(code: u16) -> &'static str {
    match code {
        200 => "OK",
        311 => "CONTENT_TOO_LARGE",
        312 => "NO_ROUTE",
        313 => "NO_CONSUMERS",
        320 => "CONNECTION_FORCED",
        402 => "INVALID_PATH",
        403 => "ACCESS_REFUSED",
        404 => "NOT_FOUND",
        405 => "RESOURCE_LOCKED",
        406 => "PRECONDITION_FAILED",
        501 => "FRAME_ERROR",
        502 => "SYNTAX_ERROR",
        503 => "COMMAND_INVALID",
        504 => "CHANNEL_ERROR",
        505 => "UNEXPECTED_FRAME",
        506 => "RESOURCE_ERROR",
        530 => "NOT_ALLOWED",
        540 => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// basic.publish's class and method ids: errors found while a published message's
/// content arrives (or is routed) name the method, as RabbitMQ does.
pub const BASIC_PUBLISH: (u16, u16) = (60, 40);

/// The reply code and text of a basic.return for a mandatory message no queue took.
pub const NO_ROUTE: (u16, &str) = (312, "NO_ROUTE");

impl Exception {
    /// A frame the connection's state does not allow (505), naming no method.
    pub fn unexpected_frame(detail: impl fmt::Display) -> Self {
        Exception::new(505, detail, 0, 0)
    }

    /// A frame the connection's state does not allow while a method's content
    /// arrives (505): RabbitMQ names the method whose content was cut short.
    pub fn unexpected_frame_in(
        detail: impl fmt::Display,
        (class_id, method_id): (u16, u16),
    ) -> Self {
        Exception::new(505, detail, class_id, method_id)
    }

    /// Malformed content for a method (501).
    pub fn frame_error_in(detail: impl fmt::Display, (class_id, method_id): (u16, u16)) -> Self {
        Exception::new(501, detail, class_id, method_id)
    }

    /// A frame on a channel that is not open (504).
    pub fn channel_error(detail: impl fmt::Display, class_id: u16, method_id: u16) -> Self {
        Exception::new(504, detail, class_id, method_id)
    }

    /// A method not valid in the connection's state (503).
    pub fn command_invalid(detail: impl fmt::Display, class_id: u16, method_id: u16) -> Self {
        Exception::new(503, detail, class_id, method_id)
    }

    /// A limit of the connection was reached (530).
    pub fn not_allowed(detail: impl fmt::Display) -> Self {
        Exception::new(530, detail, 0, 0)
    }

    /// connection.open by a user at its `max-connections` limit
    /// (rabbit_reader:is_over_user_connection_limit).
    pub fn user_connection_limit(user: &str, limit: u64) -> Self {
        Exception::new(
            530,
            format_args!(
                "connection refused for user '{user}': user connection limit ({limit}) is reached"
            ),
            10,
            40,
        )
    }

    /// channel.open by a user at its `max-channels` limit (rabbit_reader:is_over_limits).
    pub fn user_channel_limit(user: &str, limit: u64) -> Self {
        Exception::not_allowed(format_args!(
            "number of channels opened for user '{user}' has reached the maximum allowed user limit of {limit}"
        ))
    }

    /// channel.open beyond the node's `channel_max_per_node`.
    pub fn node_channel_limit(node: &str, limit: u64) -> Self {
        Exception::not_allowed(format_args!(
            "number of channels opened on node '{node}' has reached the maximum allowed limit of {limit}"
        ))
    }

    /// connection.open of a virtual host that does not exist (530; RabbitMQ's vhost
    /// limit check finds it missing first).
    pub fn vhost_not_found(vhost: &str) -> Self {
        Exception::new(530, format_args!("vhost {vhost} not found"), 10, 40)
    }

    /// connection.open of a virtual host the user has no permissions in (530).
    pub fn vhost_access_refused(vhost: &str, user: &str) -> Self {
        Exception::new(
            530,
            format_args!("access to vhost '{vhost}' refused for user '{user}'"),
            10,
            40,
        )
    }

    /// connection.open of a virtual host at its `max-connections` limit (530).
    pub fn vhost_connection_limit(vhost: &str, user: &str, limit: u64) -> Self {
        Exception::new(
            530,
            format_args!(
                "access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached"
            ),
            10,
            40,
        )
    }

    /// Login refused (403), with class-id 0 and method-id 0 as RabbitMQ sends it.
    pub fn access_refused(detail: impl fmt::Display) -> Self {
        Exception::new(403, detail, 0, 0)
    }

    /// The broker closes the connection for a reason of its own (320): shutting
    /// down, or an operator's request with the operator's text.
    pub fn connection_forced(detail: impl fmt::Display) -> Self {
        Exception::new(320, detail, 0, 0)
    }

    /// A write the reply waited for failed: the store cannot write to disk (541).
    pub fn store_failed() -> Self {
        Exception::new(541, "the message store could not write to disk", 0, 0)
    }

    /// Whether the broker closes the connection of its own will (320), rather than for
    /// an error of the client's.
    pub fn is_forced(&self) -> bool {
        self.code == 320
    }

    pub fn new(code: u16, detail: impl fmt::Display, class_id: u16, method_id: u16) -> Self {
        Exception {
            code,
            text: format!("{} - {detail}", code_name(code)),
            class_id,
            method_id,
        }
    }

    /// Whether this exception closes the whole connection rather than one channel.
    pub fn is_connection_level(&self) -> bool {
        !matches!(self.code, 311..=313 | 403..=406)
    }

    pub fn from_protocol(e: &ProtocolError, class_id: u16, method_id: u16) -> Self {
        match e {
            ProtocolError::Frame(d) => Exception::new(501, d, class_id, method_id),
            ProtocolError::Undecodable(c, m, fields) => {
                // Erlang's `~w` of a binary: every byte, comma-separated.
                let bytes: Vec<String> = fields.iter().map(|b| b.to_string()).collect();
                Exception::new(
                    501,
                    format_args!("cannot decode <<{}>>", bytes.join(",")),
                    *c,
                    *m,
                )
            }
            ProtocolError::UnknownMethod(c, m) => {
                Exception::new(540, format_args!("unknown class/method id {c}/{m}"), *c, *m)
            }
            ProtocolError::CommandInvalid(d) => Exception::new(503, d, class_id, method_id),
            ProtocolError::Channel(d) => Exception::new(504, d, class_id, method_id),
            ProtocolError::UnexpectedFrame(d) => Exception::new(505, d, class_id, method_id),
            ProtocolError::NotAllowed(d) => Exception::new(530, d, class_id, method_id),
            ProtocolError::NotImplemented(d) => Exception::new(540, d, class_id, method_id),
            ProtocolError::MethodNotImplemented(c, m, d) => Exception::new(540, d, *c, *m),
            ProtocolError::Io(e) => Exception::new(541, e, class_id, method_id),
        }
    }

    pub fn from_broker(e: BrokerError, class_id: u16, method_id: u16) -> Self {
        let (code, detail) = match e {
            BrokerError::NotFound(d) => (404, d),
            BrokerError::AccessRefused(d) => (403, d),
            BrokerError::ResourceLocked(d) => (405, d),
            BrokerError::PreconditionFailed(d) => (406, d),
            BrokerError::NotAllowed(d) => (530, d),
            BrokerError::CommandInvalid(d) => (503, d),
            BrokerError::NotImplemented(d) => (540, d),
            BrokerError::Internal(d) => (541, d),
            BrokerError::Invalid(d) => (406, d),
        };
        Exception::new(code, detail, class_id, method_id)
    }
}

//! What a broker operation can fail with, in the broker's words: no reply codes here.
//! `protocol::error` maps each variant to its AMQP reply code (and the HTTP API will map
//! them to statuses), so every layer above reports the same failure the same way.

/// What a broker operation can fail with; `protocol::error` maps each to its reply code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    NotFound(String),
    AccessRefused(String),
    ResourceLocked(String),
    PreconditionFailed(String),
    NotAllowed(String),
    CommandInvalid(String),
    NotImplemented(String),
    Internal(String),
    /// An operator request that makes no sense (a malformed regex, an unknown policy
    /// key): HTTP 400; AMQP never asks such a thing.
    Invalid(String),
}

pub type BrokerResult<T> = Result<T, BrokerError>;

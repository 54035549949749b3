//! A stream's declare arguments, validated as RabbitMQ's stream queue type does: its
//! own arguments checked for type and value, other queue types' arguments refused.

use crate::broker::args::{integer, parse_age};
use crate::model::fields::type_name;
use crate::model::{BrokerError, BrokerResult};
use amq_protocol::types::{AMQPValue, FieldTable};

/// Default `x-stream-max-segment-size-bytes`.
pub const DEFAULT_SEGMENT_BYTES: u64 = 500_000_000;
/// Largest `x-stream-max-segment-size-bytes` RabbitMQ accepts.
pub const MAX_SEGMENT_BYTES: u64 = 3_000_000_000;

/// Arguments of other queue types, refused on a stream (RabbitMQ: every queue type's
/// arguments less the stream's own).
const FOREIGN: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-master-locator",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-quorum-initial-group-size",
    "x-member-placement-tag",
    "x-delivery-limit",
    "x-consumer-disconnected-timeout",
    "x-consumer-timeout",
    "x-delayed-retry-type",
    "x-delayed-retry-min",
    "x-delayed-retry-max",
];

/// What a stream keeps and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamArgs {
    /// `x-max-length-bytes`: retention by size.
    pub max_bytes: Option<u64>,
    /// `x-max-age`, in milliseconds: retention by age.
    pub max_age: Option<u64>,
    /// `x-stream-max-segment-size-bytes`.
    pub segment_bytes: u64,
}

impl Default for StreamArgs {
    fn default() -> StreamArgs {
        StreamArgs {
            max_bytes: None,
            max_age: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

impl StreamArgs {
    /// The settings with a policy's effective definition applied: for a stream the
    /// policy's `max-age`, `max-length-bytes` and `stream-max-segment-size-bytes` win
    /// over the arguments, as RabbitMQ's stream queue type resolves them.
    pub fn with_policy(&self, policy: &serde_json::Map<String, serde_json::Value>) -> StreamArgs {
        let mut out = *self;
        if let Some(age) = policy
            .get("max-age")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| parse_age(s.as_bytes()))
        {
            out.max_age = Some(age);
        }
        if let Some(n) = policy
            .get("max-length-bytes")
            .and_then(serde_json::Value::as_u64)
        {
            out.max_bytes = Some(n);
        }
        if let Some(n) = policy
            .get("stream-max-segment-size-bytes")
            .and_then(serde_json::Value::as_u64)
        {
            out.segment_bytes = n.clamp(1, MAX_SEGMENT_BYTES);
        }
        out
    }

    /// Validates a stream's declare arguments; `what` names the queue as RabbitMQ's
    /// texts do ("queue 'q' in vhost '/'").
    pub fn parse(what: &str, args: &FieldTable) -> BrokerResult<StreamArgs> {
        let fail = |key: &str, detail: String| {
            BrokerError::PreconditionFailed(format!("invalid arg '{key}' for {what}: {detail}"))
        };
        let mut out = StreamArgs::default();
        let table = args.inner();
        // The stream's own arguments, type and value first.
        if let Some(v) = table.get("x-max-length-bytes") {
            let n = integer(v).ok_or_else(|| {
                fail(
                    "x-max-length-bytes",
                    format!("\"expected integer, got {}\"", type_name(v)),
                )
            })?;
            out.max_bytes = Some(
                u64::try_from(n)
                    .map_err(|_| fail("x-max-length-bytes", format!("{{value_negative,{n}}}")))?,
            );
        }
        if let Some(v) = table.get("x-max-age") {
            let AMQPValue::LongString(s) = v else {
                return Err(fail(
                    "x-max-age",
                    format!("{{unacceptable_type,{}}}", type_name(v)),
                ));
            };
            out.max_age = Some(
                parse_age(s.as_bytes())
                    .ok_or_else(|| fail("x-max-age", "invalid_max_age".into()))?,
            );
        }
        for key in [
            "x-stream-max-segment-size-bytes",
            "x-stream-filter-size-bytes",
        ] {
            if let Some(v) = table.get(key) {
                let n = integer(v).ok_or_else(|| {
                    fail(key, format!("\"expected integer, got {}\"", type_name(v)))
                })?;
                if n < 0 {
                    return Err(fail(key, format!("{{value_negative,{n}}}")));
                }
            }
        }
        for key in table.keys() {
            if FOREIGN.contains(&key.as_str()) {
                return Err(BrokerError::PreconditionFailed(format!(
                    "invalid arg '{key}' for {what} of queue type rabbit_stream_queue"
                )));
            }
        }
        if let Some(n) = table
            .get("x-stream-max-segment-size-bytes")
            .and_then(integer)
        {
            if n as u64 > MAX_SEGMENT_BYTES {
                return Err(BrokerError::PreconditionFailed(
                    "Exceeded max value for x-stream-max-segment-size-bytes".into(),
                ));
            }
            out.segment_bytes = (n as u64).max(1);
        }
        if let Some(v) = table.get("x-stream-filter-size-bytes") {
            let n = integer(v).unwrap_or(0);
            if !(16..=255).contains(&n) {
                return Err(BrokerError::PreconditionFailed(
                    "Invalid value for x-stream-filter-size-bytes".into(),
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, ShortString};

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    const WHAT: &str = "queue 's' in vhost '/'";

    fn refused(pairs: &[(&str, AMQPValue)]) -> String {
        match StreamArgs::parse(WHAT, &table(pairs)) {
            Err(BrokerError::PreconditionFailed(t)) => t,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn ages_follow_rabbitmq_units() {
        assert_eq!(parse_age(b"7D"), Some(7 * 24 * 3600 * 1000));
        assert_eq!(parse_age(b"1Y"), Some(365 * 24 * 3600 * 1000));
        assert_eq!(parse_age(b"30s"), Some(30_000));
        assert_eq!(parse_age(b"0s"), None);
        assert_eq!(parse_age(b"5x"), None);
        assert_eq!(parse_age(b"h"), None);
    }

    #[test]
    fn stream_arguments_are_read_and_foreign_ones_refused() {
        let a = StreamArgs::parse(
            WHAT,
            &table(&[
                ("x-max-length-bytes", AMQPValue::LongLongInt(1000)),
                ("x-max-age", AMQPValue::LongString("10m".into())),
                ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(100)),
                (
                    "x-queue-leader-locator",
                    AMQPValue::LongString("balanced".into()),
                ),
                ("x-custom", AMQPValue::Boolean(true)),
            ]),
        )
        .expect("valid");
        assert_eq!(a.max_bytes, Some(1000));
        assert_eq!(a.max_age, Some(600_000));
        assert_eq!(a.segment_bytes, 100);
        assert_eq!(
            refused(&[("x-max-length", AMQPValue::LongInt(5))]),
            "invalid arg 'x-max-length' for queue 's' in vhost '/' of queue type rabbit_stream_queue"
        );
        assert_eq!(
            refused(&[("x-max-age", AMQPValue::LongString("10x".into()))]),
            "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age"
        );
        assert_eq!(
            refused(&[(
                "x-stream-max-segment-size-bytes",
                AMQPValue::LongLongInt(3_000_000_001)
            )]),
            "Exceeded max value for x-stream-max-segment-size-bytes"
        );
        assert_eq!(
            refused(&[("x-stream-filter-size-bytes", AMQPValue::LongInt(8))]),
            "Invalid value for x-stream-filter-size-bytes"
        );
    }
}

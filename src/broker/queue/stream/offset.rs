//! Where a stream consumer starts (`x-stream-offset`) and which messages it wants
//! (`x-stream-filter`, `x-stream-match-unfiltered`).

use crate::broker::args::{integer, parse_age};
use crate::model::{BrokerError, BrokerResult, now_ms};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};

/// The consume argument naming the start.
pub const OFFSET_ARG: &str = "x-stream-offset";

/// Where a consumer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest message still stored.
    First,
    /// The start of the last chunk (the last burst appended).
    Last,
    /// Only what is appended from now on (the default).
    Next,
    /// This offset (the first stored, if retention removed it).
    At(u64),
    /// This many messages back from the end (a negative offset; LavinMQ's rule).
    Back(u64),
    /// The first chunk at or after this time, in ms since the epoch.
    Time(u64),
}

/// The text RabbitMQ's argument check prints for a bad value.
fn invalid(v: &AMQPValue, what: &str) -> BrokerError {
    let shown = match v {
        AMQPValue::LongString(s) => {
            format!(
                "{{longstr,<<\"{}\">>}}",
                String::from_utf8_lossy(s.as_bytes())
            )
        }
        AMQPValue::ShortString(s) => format!("{{longstr,<<\"{}\">>}}", s.as_str()),
        other => format!("{{{},{other:?}}}", crate::model::fields::type_name(other)),
    };
    BrokerError::PreconditionFailed(format!(
        "invalid arg '{OFFSET_ARG}' for {what}: {{invalid_stream_offset_arg,{shown}}}"
    ))
}

impl OffsetSpec {
    /// Reads `x-stream-offset` from consume arguments; `what` names the queue.
    pub fn parse(args: &FieldTable, what: &str) -> BrokerResult<OffsetSpec> {
        let Some(v) = args.inner().get(OFFSET_ARG) else {
            return Ok(OffsetSpec::Next);
        };
        let text = match v {
            AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
            AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
            _ => None,
        };
        if let Some(t) = text {
            return match t.as_slice() {
                b"first" => Ok(OffsetSpec::First),
                b"last" => Ok(OffsetSpec::Last),
                b"next" => Ok(OffsetSpec::Next),
                interval => parse_age(interval)
                    .map(|ms| OffsetSpec::Time(now_ms().saturating_sub(ms)))
                    .ok_or_else(|| invalid(v, what)),
            };
        }
        if let AMQPValue::Void = v {
            // A null offset asks for offset tracking, from the first message on.
            return Ok(OffsetSpec::First);
        }
        if let AMQPValue::Timestamp(secs) = v {
            return Ok(OffsetSpec::Time(secs.saturating_mul(1000)));
        }
        match integer(v) {
            Some(n) if n >= 0 => Ok(OffsetSpec::At(n as u64)),
            Some(n) => Ok(OffsetSpec::Back(n.unsigned_abs())),
            None => Err(invalid(v, what)),
        }
    }
}

/// Whether a consumer asks the broker to remember where it is: the consume argument
/// `x-stream-automatic-offset-tracking` = true, or a null `x-stream-offset` (LavinMQ's
/// rules; RabbitMQ tracks offsets only over its stream protocol).
pub fn tracking(args: &FieldTable) -> bool {
    let table = args.inner();
    matches!(
        table.get("x-stream-automatic-offset-tracking"),
        Some(AMQPValue::Boolean(true))
    ) || matches!(table.get(OFFSET_ARG), Some(AMQPValue::Void))
}

/// The messages a filtering consumer wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    values: Vec<Vec<u8>>,
    match_unfiltered: bool,
}

/// The header a publisher sets to make a message filterable.
const FILTER_VALUE: &str = "x-stream-filter-value";

fn text(v: &AMQPValue) -> Option<Vec<u8>> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
        _ => None,
    }
}

impl Filter {
    /// The consumer's filter, if it set `x-stream-filter` (a string or an array of
    /// strings); `x-stream-match-unfiltered` lets messages without a filter value
    /// through too.
    pub fn parse(args: &FieldTable) -> Option<Filter> {
        let table = args.inner();
        let values = match table.get("x-stream-filter")? {
            AMQPValue::FieldArray(a) => a.as_slice().iter().filter_map(text).collect(),
            other => vec![text(other)?],
        };
        let match_unfiltered = matches!(
            table.get("x-stream-match-unfiltered"),
            Some(AMQPValue::Boolean(true))
        );
        Some(Filter {
            values,
            match_unfiltered,
        })
    }

    /// Whether the message passes: its filter value is one of the consumer's, or it
    /// has none and the consumer takes unfiltered messages. Exact, where RabbitMQ's
    /// Bloom filter lets some others through (clients filter again anyway).
    pub fn admits(&self, properties: &BasicProperties) -> bool {
        let value = properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(FILTER_VALUE).and_then(text));
        match value {
            Some(v) => self.values.contains(&v),
            None => self.match_unfiltered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::ShortString;

    fn args(v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(ShortString::from(OFFSET_ARG), v);
        t
    }

    const WHAT: &str = "queue 's' in vhost '/'";

    #[test]
    fn offsets_parse_as_rabbitmq_reads_them() {
        let parse = |v| OffsetSpec::parse(&args(v), WHAT);
        assert_eq!(
            OffsetSpec::parse(&FieldTable::default(), WHAT).ok(),
            Some(OffsetSpec::Next)
        );
        assert_eq!(
            parse(AMQPValue::LongString("first".into())).ok(),
            Some(OffsetSpec::First)
        );
        assert_eq!(
            parse(AMQPValue::LongString("last".into())).ok(),
            Some(OffsetSpec::Last)
        );
        assert_eq!(
            parse(AMQPValue::LongLongInt(42)).ok(),
            Some(OffsetSpec::At(42))
        );
        assert_eq!(
            parse(AMQPValue::ShortShortInt(-3)).ok(),
            Some(OffsetSpec::Back(3))
        );
        assert_eq!(
            parse(AMQPValue::Timestamp(10)).ok(),
            Some(OffsetSpec::Time(10_000))
        );
        let before = now_ms();
        match parse(AMQPValue::LongString("1h".into())) {
            Ok(OffsetSpec::Time(t)) => assert!(t <= before && t + 3_600_000 >= before),
            other => panic!("{other:?}"),
        }
        match parse(AMQPValue::LongString("soon".into())) {
            Err(BrokerError::PreconditionFailed(t)) => assert_eq!(
                t,
                "invalid arg 'x-stream-offset' for queue 's' in vhost '/': \
                 {invalid_stream_offset_arg,{longstr,<<\"soon\">>}}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

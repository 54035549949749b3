//! Queue arguments (`x-message-ttl`, `x-expires`, `x-max-length`, dead-lettering,
//! priorities, single active consumer, queue type): parsed once at declare time and
//! validated with the error texts RabbitMQ sends.

use crate::model::fields::type_name;
use crate::model::{BrokerError, BrokerResult};
use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value};

/// Largest TTL or expiry RabbitMQ accepts: ten years, in milliseconds.
const MAX_EXPIRY_MS: i64 = 315_360_000_000;

/// Largest `x-max-priority`.
const MAX_PRIORITY: i64 = 255;

/// What a full queue does with a new message (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (dead-letter) the oldest ready message to make room.
    #[default]
    DropHead,
    /// Refuse the new message; a confirming publisher gets basic.nack.
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDlx,
}

/// The queue arguments Warren interprets.
#[derive(Debug, Clone, Default)]
pub struct QueueArgs {
    /// `x-message-ttl`, in milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-expires`, in milliseconds.
    pub expires: Option<u64>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-max-priority`: the queue orders ready messages by priority (0..=max).
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// `x-queue-type` was `quorum`: served as a durable classic queue.
    pub quorum: bool,
    /// `x-consumer-timeout`: how long a delivery from this queue may stay
    /// unacknowledged, in milliseconds, instead of the broker's `consumer_timeout`.
    pub consumer_timeout: Option<u64>,
    /// `x-queue-type` was `stream`: the stream's own settings.
    pub stream: Option<crate::broker::queue::stream::args::StreamArgs>,
}

/// The value of an integer-typed argument (the types RabbitMQ counts as integers).
pub fn integer(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        AMQPValue::LongLongInt(i) => Some(*i),
        _ => None,
    }
}

fn string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Milliseconds in a max-age or interval string (`x-max-age`, the `max-age` policy
/// key, an `x-stream-offset` interval), as `rabbit_amqqueue:check_max_age/1` reads it:
/// a positive number and one unit of Y (365 days), M (30 days), D, h, m, s; None if it
/// is not one.
pub fn parse_age(s: &[u8]) -> Option<u64> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = std::str::from_utf8(n).ok()?.parse().ok()?;
    if n == 0 {
        return None;
    }
    let day = 24 * 3600 * 1000;
    let unit = match unit {
        b"Y" => 365 * day,
        b"M" => 30 * day,
        b"D" => day,
        b"h" => 3600 * 1000,
        b"m" => 60 * 1000,
        b"s" => 1000,
        _ => return None,
    };
    // RabbitMQ's integers have no upper bound: saturate rather than refuse.
    Some(n.saturating_mul(unit))
}

/// An argument check failure, printed as RabbitMQ prints the Erlang term.
type Check<T> = Result<T, String>;

fn int_arg(v: &AMQPValue) -> Check<i64> {
    integer(v).ok_or_else(|| format!("\"expected integer, got {}\"", type_name(v)))
}

fn non_neg_int(v: &AMQPValue) -> Check<u64> {
    let n = int_arg(v)?;
    u64::try_from(n).map_err(|_| format!("{{value_negative,{n}}}"))
}

fn expiry(n: i64) -> Check<u64> {
    if n < 0 {
        Err(format!("{{value_negative,{n}}}"))
    } else if n > MAX_EXPIRY_MS {
        Err(format!("{{value_too_large,{n}}}"))
    } else {
        Ok(n as u64)
    }
}

fn string_arg(v: &AMQPValue) -> Check<String> {
    string(v).ok_or_else(|| format!("{{unacceptable_type,{}}}", type_name(v)))
}

impl QueueArgs {
    /// Validates and reads the arguments of queue.declare; `what` names the queue as
    /// RabbitMQ's texts do ("queue 'q' in vhost '/'").
    pub fn parse(what: &str, args: &FieldTable) -> BrokerResult<QueueArgs> {
        let mut out = QueueArgs::default();
        let table = args.inner();
        let fail = |key: &str, detail: String| {
            BrokerError::PreconditionFailed(format!("invalid arg '{key}' for {what}: {detail}"))
        };
        // The queue type is checked first, as RabbitMQ does.
        if let Some(v) = table.get("x-queue-type") {
            let kind = string_arg(v).map_err(|e| fail("x-queue-type", e))?;
            match kind.as_str() {
                "classic" => {}
                "quorum" => out.quorum = true,
                "stream" => {
                    let stream = crate::broker::queue::stream::args::StreamArgs::parse(what, args)?;
                    return Ok(QueueArgs {
                        stream: Some(stream),
                        ..QueueArgs::default()
                    });
                }
                other => {
                    return Err(fail(
                        "x-queue-type",
                        format!("\"unsupported queue type '{other}'\""),
                    ));
                }
            }
        }
        for (key, v) in table {
            let key = key.as_str();
            let check = |r: Check<()>| r.map_err(|e| fail(key, e));
            match key {
                "x-expires" => check((|| {
                    let n = int_arg(v)?;
                    if n == 0 {
                        return Err("{value_zero,0}".to_owned());
                    }
                    out.expires = Some(expiry(n)?);
                    Ok(())
                })())?,
                "x-message-ttl" => check((|| {
                    out.message_ttl = Some(expiry(int_arg(v)?)?);
                    Ok(())
                })())?,
                "x-dead-letter-exchange" => match string(v) {
                    Some(x) => out.dead_letter_exchange = Some(x),
                    // RabbitMQ checks this one before the others, with its own text.
                    None => {
                        return Err(BrokerError::PreconditionFailed(format!(
                            "invalid type '{}' for arg '{key}' in {what}",
                            type_name(v)
                        )));
                    }
                },
                "x-dead-letter-routing-key" => check((|| {
                    let rk = string_arg(v)?;
                    if !table.contains_key("x-dead-letter-exchange") {
                        return Err("routing_key_but_no_dlx_defined".to_owned());
                    }
                    out.dead_letter_routing_key = Some(rk);
                    Ok(())
                })())?,
                "x-max-length" => check((|| {
                    out.max_length = Some(non_neg_int(v)?);
                    Ok(())
                })())?,
                "x-max-length-bytes" => check((|| {
                    out.max_length_bytes = Some(non_neg_int(v)?);
                    Ok(())
                })())?,
                "x-consumer-timeout" => check((|| {
                    out.consumer_timeout = Some(non_neg_int(v)?);
                    Ok(())
                })())?,
                "x-max-priority" => check((|| {
                    let n = non_neg_int(v)?;
                    if n > MAX_PRIORITY as u64 {
                        return Err(format!("{{max_value_exceeded,{n}}}"));
                    }
                    out.max_priority = Some(n as u8);
                    Ok(())
                })())?,
                "x-overflow" => check((|| {
                    let mode = string_arg(v)?;
                    out.overflow = match mode.as_str() {
                        "drop-head" => Overflow::DropHead,
                        "reject-publish" => Overflow::RejectPublish,
                        "reject-publish-dlx" => Overflow::RejectPublishDlx,
                        _ => return Err("invalid_overflow".to_owned()),
                    };
                    Ok(())
                })())?,
                "x-single-active-consumer" => match v {
                    AMQPValue::Boolean(b) => out.single_active_consumer = *b,
                    other => {
                        return Err(fail(
                            key,
                            format!("{{unacceptable_type,{}}}", type_name(other)),
                        ));
                    }
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// The queue type policies see (`apply-to`): quorum for a queue declared so.
    pub fn policy_type(&self) -> crate::broker::policy::QueueType {
        if self.stream.is_some() {
            crate::broker::policy::QueueType::Stream
        } else if self.quorum {
            crate::broker::policy::QueueType::Quorum
        } else {
            crate::broker::policy::QueueType::Classic
        }
    }

    /// Whether dead-lettered messages have somewhere to go.
    pub fn dead_letters(&self) -> bool {
        self.dead_letter_exchange.is_some()
    }

    /// The settings these declared ones give with a policy's effective definition
    /// (already merged with the operator policy), as a classic queue resolves each
    /// key (`rabbit_amqqueue_process:process_args_policy`): the lower value wins for
    /// `message-ttl`, `expires`, `max-length` and `max-length-bytes`; the argument
    /// wins for the dead-letter exchange and routing key and for `overflow` (where a
    /// quorum queue lets the policy win instead). `declared` holds the arguments the
    /// settings were parsed from, telling whether `x-overflow` was given.
    pub fn with_policy(&self, declared: &FieldTable, policy: &Map<String, Value>) -> QueueArgs {
        let mut out = self.clone();
        let num = |key: &str| policy.get(key).and_then(Value::as_u64);
        let text = |key: &str| policy.get(key).and_then(Value::as_str).map(str::to_owned);
        let lower = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        };
        out.message_ttl = lower(self.message_ttl, num("message-ttl"));
        out.expires = lower(self.expires, num("expires").filter(|&n| n > 0));
        out.max_length = lower(self.max_length, num("max-length"));
        out.max_length_bytes = lower(self.max_length_bytes, num("max-length-bytes"));
        out.consumer_timeout = lower(self.consumer_timeout, num("consumer-timeout"));
        if out.dead_letter_exchange.is_none() {
            out.dead_letter_exchange = text("dead-letter-exchange");
        }
        if out.dead_letter_routing_key.is_none() {
            out.dead_letter_routing_key = text("dead-letter-routing-key");
        }
        let from_policy = match text("overflow").as_deref() {
            Some("drop-head") => Some(Overflow::DropHead),
            Some("reject-publish") => Some(Overflow::RejectPublish),
            Some("reject-publish-dlx") => Some(Overflow::RejectPublishDlx),
            _ => None,
        };
        let argument = declared.inner().contains_key("x-overflow");
        out.overflow = match (argument, from_policy) {
            (true, Some(p)) if self.quorum => p,
            (true, _) => self.overflow,
            (false, p) => p.unwrap_or_default(),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::ShortString;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn err(pairs: &[(&str, AMQPValue)]) -> String {
        match QueueArgs::parse("queue 'q' in vhost '/'", &table(pairs)) {
            Err(BrokerError::PreconditionFailed(t)) => t,
            other => panic!("expected a 406, got {other:?}"),
        }
    }

    #[test]
    fn texts_match_rabbitmq() {
        assert_eq!(
            err(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            err(&[("x-expires", AMQPValue::LongInt(0))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            err(&[("x-max-length", AMQPValue::LongString("1".into()))]),
            "invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            err(&[("x-overflow", AMQPValue::LongString("nope".into()))]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            err(&[("x-max-priority", AMQPValue::LongInt(256))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            err(&[(
                "x-dead-letter-routing-key",
                AMQPValue::LongString("k".into())
            )]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
        );
    }

    #[test]
    fn reads_values() {
        let a = QueueArgs::parse(
            "q",
            &table(&[
                ("x-message-ttl", AMQPValue::LongInt(5)),
                ("x-max-priority", AMQPValue::ShortShortUInt(10)),
                ("x-overflow", AMQPValue::LongString("reject-publish".into())),
                ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ]),
        )
        .expect("valid");
        assert_eq!(a.message_ttl, Some(5));
        assert_eq!(a.max_priority, Some(10));
        assert_eq!(a.overflow, Overflow::RejectPublish);
        assert!(a.quorum);
    }
}

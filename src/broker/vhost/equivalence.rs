//! Redeclare equivalence: a declare of an existing exchange or queue must match it,
//! compared and reported as RabbitMQ does (`rabbit_misc:assert_args_equivalence`).

use crate::model::{BrokerError, BrokerResult};
use amq_protocol::types::{AMQPValue, FieldTable};

/// An argument's AMQP type name and its value as RabbitMQ prints it (`~ts` for
/// strings, `~tp` for the rest).
pub(super) fn arg_parts(v: &AMQPValue) -> (&'static str, String) {
    match v {
        AMQPValue::LongString(s) => ("longstr", s.to_string()),
        AMQPValue::ShortString(s) => ("shortstr", s.to_string()),
        AMQPValue::Boolean(b) => ("bool", b.to_string()),
        AMQPValue::ShortShortInt(i) => ("byte", i.to_string()),
        AMQPValue::ShortShortUInt(i) => ("unsignedbyte", i.to_string()),
        AMQPValue::ShortInt(i) => ("short", i.to_string()),
        AMQPValue::ShortUInt(i) => ("unsignedshort", i.to_string()),
        AMQPValue::LongInt(i) => ("signedint", i.to_string()),
        AMQPValue::LongUInt(i) => ("unsignedint", i.to_string()),
        AMQPValue::LongLongInt(i) => ("long", i.to_string()),
        AMQPValue::Timestamp(i) => ("timestamp", i.to_string()),
        other => ("table", format!("{other:?}")),
    }
}

/// The integer value of an integer-class argument (RabbitMQ's `type_class` int).
pub(super) fn int_value(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(i) => i128::from(*i),
        AMQPValue::ShortShortUInt(i) => i128::from(*i),
        AMQPValue::ShortInt(i) => i128::from(*i),
        AMQPValue::ShortUInt(i) => i128::from(*i),
        AMQPValue::LongInt(i) => i128::from(*i),
        AMQPValue::LongUInt(i) => i128::from(*i),
        AMQPValue::LongLongInt(i) => i128::from(*i),
        _ => return None,
    })
}

/// How RabbitMQ shows an argument value in an "inequivalent arg" error
/// (`rabbit_misc:val/1` on a `{Type, Value}` pair or `undefined`).
pub(super) fn show_arg(v: Option<&AMQPValue>) -> String {
    match v {
        None => "none".into(),
        Some(v) => {
            let (kind, value) = arg_parts(v);
            format!("the value '{value}' of type '{kind}'")
        }
    }
}

/// The only exchange argument RabbitMQ compares on redeclare (rabbit_exchange).
pub(super) const EXCHANGE_ARGS: &[&str] = &["alternate-exchange"];

/// The queue arguments RabbitMQ compares on redeclare, in its order
/// (rabbit_classic_queue `queue_arguments`); any other argument is not compared.
pub(super) const QUEUE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
    "x-queue-leader-locator",
];

/// RabbitMQ compares the arguments of a redeclare key by key, over a fixed list of
/// keys (`rabbit_misc:assert_args_equivalence`), reporting the first that differs.
/// Integers of different widths are equivalent when their values are equal; two values
/// of the same type class are shown without their type.
pub(super) fn check_args(
    what: &str,
    keys: &[&str],
    current: &FieldTable,
    received: &FieldTable,
) -> BrokerResult<()> {
    for &key in keys {
        let (c, r) = (current.inner().get(key), received.inner().get(key));
        if c == r {
            continue;
        }
        // A classic queue declared without x-queue-type equals one declared "classic".
        let classic = |v: Option<&AMQPValue>| matches!(v, Some(AMQPValue::LongString(s)) if s.as_bytes() == b"classic");
        if key == "x-queue-type" && (c.is_none() || classic(c)) && (r.is_none() || classic(r)) {
            continue;
        }
        let (shown_r, shown_c) = match (c, r) {
            (Some(cv), Some(rv)) => match (int_value(cv), int_value(rv)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) => (format!("'{b}'"), format!("'{a}'")),
                _ if arg_parts(cv).0 == arg_parts(rv).0 => (
                    format!("'{}'", arg_parts(rv).1),
                    format!("'{}'", arg_parts(cv).1),
                ),
                _ => (show_arg(r), show_arg(c)),
            },
            _ => (show_arg(r), show_arg(c)),
        };
        return Err(BrokerError::PreconditionFailed(format!(
            "inequivalent arg '{key}' for {what}: received {shown_r} but current is {shown_c}"
        )));
    }
    Ok(())
}

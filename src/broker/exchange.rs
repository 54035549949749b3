//! Exchanges, their bindings, and the four routing algorithms.

use crate::broker::Queue;
use crate::broker::policy::Applied;
use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::Value;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(String),
}

impl Destination {
    pub fn is_queue(&self, name: &str) -> bool {
        matches!(self, Destination::Queue(q) if q.name.as_str() == name)
    }

    pub fn is_exchange(&self, name: &str) -> bool {
        matches!(self, Destination::Exchange(e) if e == name)
    }

    fn same(&self, other: &Destination) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Binding {
    fn same(&self, other: &Binding) -> bool {
        self.destination.same(&other.destination)
            && self.routing_key == other.routing_key
            && self.arguments == other.arguments
    }
}

pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// The `alternate-exchange` argument, which wins over a policy's.
    declared_alternate: Option<String>,
    /// Where unroutable messages go instead: the argument's or the policy's.
    alternate: RwLock<Option<String>>,
    /// The policy and operator policy applied to this exchange.
    policy: RwLock<Option<Arc<Applied>>>,
    bindings: RwLock<Vec<Binding>>,
    /// Messages in and routed out, for the management API.
    pub stats: crate::broker::queue::ExchangeStats,
}

impl Exchange {
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Exchange {
        let alternate = match arguments.inner().get("alternate-exchange") {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into()),
            Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
            _ => None,
        };
        Exchange {
            name: name.to_owned(),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            declared_alternate: alternate.clone(),
            alternate: RwLock::new(alternate),
            policy: RwLock::new(None),
            bindings: RwLock::new(Vec::new()),
            stats: Default::default(),
        }
    }

    /// Where unroutable messages go instead (`alternate-exchange`, by argument or
    /// policy).
    pub fn alternate(&self) -> Option<String> {
        self.alternate
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a policy (None: none applies any more): the argument wins over the
    /// policy's `alternate-exchange`, as `rabbit_policy:get_arg/3` decides.
    pub fn apply_policy(&self, applied: Option<Arc<Applied>>) {
        let from_policy = applied.as_ref().and_then(|a| {
            a.effective_definition()
                .get("alternate-exchange")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let alternate = self.declared_alternate.clone().or(from_policy);
        // Both locks guard plain values replaced whole: poisoning leaves them valid.
        *self.alternate.write().unwrap_or_else(|e| e.into_inner()) = alternate;
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = applied;
    }

    /// The policy and operator policy applied now.
    pub fn applied_policy(&self) -> Option<Arc<Applied>> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Binding>> {
        // A poisoned lock only means a panic elsewhere while holding it; the binding
        // list itself is always left consistent (single push/retain calls).
        self.bindings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Binding>> {
        self.bindings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a binding; binding twice is a no-op, as in AMQP.
    pub fn bind(&self, binding: Binding) {
        let mut bindings = self.write();
        if !bindings.iter().any(|b| b.same(&binding)) {
            bindings.push(binding);
        }
    }

    /// Removes a binding; returns whether the exchange has no bindings left after
    /// having had this one.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut bindings = self.write();
        let before = bindings.len();
        bindings.retain(|b| !b.same(binding));
        before != bindings.len() && bindings.is_empty()
    }

    /// Removes every binding to `pred`-matching destinations; returns whether this
    /// left the exchange without bindings when it had some.
    pub fn unbind_where(&self, pred: impl Fn(&Destination) -> bool) -> bool {
        let mut bindings = self.write();
        let before = bindings.len();
        bindings.retain(|b| !pred(&b.destination));
        before != bindings.len() && bindings.is_empty()
    }

    /// A copy of the bindings (for listings and definitions export).
    pub fn bindings(&self) -> Vec<Binding> {
        self.read().clone()
    }

    pub fn has_bindings(&self) -> bool {
        !self.read().is_empty()
    }

    /// Calls `found` with every destination this exchange routes the message to.
    pub fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        mut found: impl FnMut(&Destination),
    ) {
        let bindings = self.read();
        match self.kind {
            ExchangeKind::Fanout => bindings.iter().for_each(|b| found(&b.destination)),
            ExchangeKind::Direct => bindings
                .iter()
                .filter(|b| b.routing_key == routing_key)
                .for_each(|b| found(&b.destination)),
            ExchangeKind::Topic => bindings
                .iter()
                .filter(|b| topic_matches(&b.routing_key, routing_key))
                .for_each(|b| found(&b.destination)),
            ExchangeKind::Headers => bindings
                .iter()
                .filter(|b| headers_match(&b.arguments, headers))
                .for_each(|b| found(&b.destination)),
        }
    }
}

/// Splits a topic key into words; the empty key has no words at all.
fn words(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

/// Topic matching as RabbitMQ does it: `*` is exactly one word (possibly empty),
/// `#` is zero or more words.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    if !pattern.contains(['*', '#']) {
        return pattern == key;
    }
    let p = words(pattern);
    let k = words(key);
    // reachable[j]: the pattern prefix processed so far can consume exactly k[..j].
    let mut reachable = vec![false; k.len() + 1];
    reachable[0] = true;
    for word in &p {
        let mut next = vec![false; k.len() + 1];
        match *word {
            "#" => {
                let mut any = false;
                for j in 0..=k.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
            }
            "*" => {
                next[1..].copy_from_slice(&reachable[..k.len()]);
            }
            literal => {
                for j in 0..k.len() {
                    next[j + 1] = reachable[j] && k[j] == literal;
                }
            }
        }
        reachable = next;
    }
    reachable[k.len()]
}

/// A header value as RabbitMQ compares it: by value, whatever the wire type.
#[derive(PartialEq)]
enum Comparable<'a> {
    Int(i128),
    Bytes(&'a [u8]),
    Other(&'a AMQPValue),
}

fn comparable(v: &AMQPValue) -> Comparable<'_> {
    match v {
        AMQPValue::ShortShortInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::ShortShortUInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::ShortInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::ShortUInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::LongInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::LongUInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::LongLongInt(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::Timestamp(i) => Comparable::Int(i128::from(*i)),
        AMQPValue::ShortString(s) => Comparable::Bytes(s.as_str().as_bytes()),
        AMQPValue::LongString(s) => Comparable::Bytes(s.as_bytes()),
        AMQPValue::ByteArray(b) => Comparable::Bytes(b.as_slice()),
        other => Comparable::Other(other),
    }
}

/// Headers-exchange matching with RabbitMQ's `x-match` modes.
pub fn headers_match(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = match binding.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => s.as_bytes(),
        _ => b"all",
    };
    let (any, with_x) = match mode {
        b"any" => (true, false),
        b"any-with-x" => (true, true),
        b"all-with-x" => (false, true),
        _ => (false, false),
    };
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty).inner();
    let mut checks = binding.inner().iter().filter_map(|(k, v)| {
        let key = k.as_str();
        if key == "x-match" || (!with_x && key.starts_with("x-")) {
            return None;
        }
        Some(match v {
            AMQPValue::Void => headers.contains_key(key),
            v => headers
                .get(key)
                .is_some_and(|h| comparable(h) == comparable(v)),
        })
    });
    if any {
        checks.any(|m| m)
    } else {
        checks.all(|m| m)
    }
}

/// Validates a headers binding's `x-match` argument, with RabbitMQ's text.
pub fn validate_headers_binding(arguments: &FieldTable) -> Result<(), String> {
    match arguments.inner().get("x-match") {
        None => Ok(()),
        Some(AMQPValue::LongString(s)) => match s.as_bytes() {
            b"all" | b"any" | b"all-with-x" | b"any-with-x" => Ok(()),
            other => Err(format!(
                "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
                String::from_utf8_lossy(other)
            )),
        },
        Some(other) => Err(format!(
            "Invalid x-match field type {:?}; expected longstr",
            other.get_type()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_edge_cases() {
        assert!(topic_matches("a.*.c", "a..c"));
        assert!(!topic_matches("*", ""));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#.b", "a.b"));
        assert!(topic_matches("a.#.b", "a.x.y.b"));
        assert!(!topic_matches("a.#.b", "a.x.y.c"));
        assert!(topic_matches("#.#", "a.b"));
        assert!(topic_matches("*.*", "."));
        assert!(!topic_matches("a.*", "a"));
        assert!(topic_matches("", ""));
        assert!(!topic_matches("", "a"));
    }
}

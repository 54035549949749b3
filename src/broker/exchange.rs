//! Exchanges, their bindings, and the four routing algorithms.

mod bindings;

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
    bindings: RwLock<bindings::Bindings>,
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
            bindings: RwLock::new(bindings::Bindings::default()),
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, bindings::Bindings> {
        // A poisoned lock only means a panic elsewhere while holding it; the bindings
        // are always left consistent (each change completes before it returns).
        self.bindings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, bindings::Bindings> {
        self.bindings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a binding; binding twice is a no-op, as in AMQP.
    pub fn bind(&self, binding: Binding) {
        self.write().add(self.kind, binding);
    }

    /// Removes a binding; returns whether the exchange has no bindings left after
    /// having had this one.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut bindings = self.write();
        bindings.remove_where(self.kind, |b| b.same(binding)) > 0 && bindings.list().is_empty()
    }

    /// Removes every binding to `pred`-matching destinations; returns whether this
    /// left the exchange without bindings when it had some.
    pub fn unbind_where(&self, pred: impl Fn(&Destination) -> bool) -> bool {
        let mut bindings = self.write();
        bindings.remove_where(self.kind, |b| pred(&b.destination)) > 0 && bindings.list().is_empty()
    }

    /// A copy of the bindings (for listings and definitions export).
    pub fn bindings(&self) -> Vec<Binding> {
        self.read().list().to_vec()
    }

    pub fn has_bindings(&self) -> bool {
        !self.read().list().is_empty()
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
            ExchangeKind::Fanout => bindings.list().iter().for_each(|b| found(&b.destination)),
            ExchangeKind::Direct | ExchangeKind::Topic => {
                bindings.matching(self.kind, routing_key, &mut found);
            }
            ExchangeKind::Headers => bindings
                .list()
                .iter()
                .filter(|b| headers_match(&b.arguments, headers))
                .for_each(|b| found(&b.destination)),
        }
    }
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
    use super::bindings::Bindings;
    use super::{Binding, Destination, ExchangeKind};
    use amq_protocol::types::FieldTable;

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
    fn topic_matches(pattern: &str, key: &str) -> bool {
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

    /// The trie routes as matching every pattern against the key one by one does.
    #[test]
    fn the_topic_trie_agrees_with_pattern_matching() {
        let words = ["a", "b", "", "*", "#"];
        let mut patterns = vec![String::new()];
        for len in 1..=4 {
            let mut n = 1;
            for _ in 0..len {
                n *= words.len();
            }
            for mut i in 0..n {
                let mut p = Vec::new();
                for _ in 0..len {
                    p.push(words[i % words.len()]);
                    i /= words.len();
                }
                patterns.push(p.join("."));
            }
        }
        patterns.sort();
        patterns.dedup();
        let mut index = Bindings::default();
        for p in &patterns {
            index.add(
                ExchangeKind::Topic,
                Binding {
                    destination: Destination::Exchange(p.clone()),
                    routing_key: p.clone(),
                    arguments: FieldTable::default(),
                },
            );
        }
        // Keys: the patterns' literal forms, plus longer ones.
        let mut keys: Vec<String> = patterns
            .iter()
            .filter(|p| !p.contains(['*', '#']))
            .cloned()
            .collect();
        keys.extend([
            "a.b.a.b.a".to_owned(),
            "x.a.b".to_owned(),
            "a..b.".to_owned(),
        ]);
        for key in &keys {
            let mut found: Vec<String> = Vec::new();
            index.matching(ExchangeKind::Topic, key, &mut |d| {
                if let Destination::Exchange(name) = d
                    && !found.contains(name)
                {
                    found.push(name.clone());
                }
            });
            found.sort();
            let mut expected: Vec<String> = patterns
                .iter()
                .filter(|p| topic_matches(p, key))
                .cloned()
                .collect();
            expected.sort();
            assert_eq!(found, expected, "key {key:?}");
        }
        // Unbinding prunes: nothing matches once every pattern is gone.
        let removed = index.remove_where(ExchangeKind::Topic, |_| true);
        assert_eq!(removed, patterns.len());
        index.matching(ExchangeKind::Topic, "a.b", &mut |d| {
            panic!(
                "still routed: {}",
                match d {
                    Destination::Exchange(n) => n.as_str(),
                    Destination::Queue(_) => "a queue",
                }
            )
        });
    }

    #[test]
    fn binding_twice_is_one_binding_and_arguments_tell_bindings_apart() {
        let mut index = Bindings::default();
        let b = |args: FieldTable| Binding {
            destination: Destination::Exchange("x".into()),
            routing_key: "k".into(),
            arguments: args,
        };
        assert!(index.add(ExchangeKind::Direct, b(FieldTable::default())));
        assert!(!index.add(ExchangeKind::Direct, b(FieldTable::default())));
        let mut other = FieldTable::default();
        other.insert("a".into(), amq_protocol::types::AMQPValue::Boolean(true));
        assert!(index.add(ExchangeKind::Direct, b(other.clone())));
        assert_eq!(index.list().len(), 2);
        let same = b(other);
        assert_eq!(
            index.remove_where(ExchangeKind::Direct, |x| x
                .destination
                .same(&same.destination)
                && x.arguments == same.arguments),
            1
        );
        let mut n = 0;
        index.matching(ExchangeKind::Direct, "k", &mut |_| n += 1);
        assert_eq!(n, 1);
    }

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

//! Which policy applies to a queue or an exchange, and what it changes, as
//! `rabbit_policy` decides it: the pattern is an unanchored regular expression on the
//! name, `apply-to` selects the kind of entity (and the queue type), a policy holding a
//! key the queue type does not support never matches that queue, and of the policies
//! that match, the one with the highest priority applies (only one). Operator policies
//! are chosen the same way, and their numeric keys cap the user policy's.
//!
//! A virtual host keeps its policies compiled in a [`PolicySet`]; queues and exchanges
//! keep the [`Applied`] policies and the settings they give, so that nothing on the
//! publish or delivery path looks at policies.

use crate::access::Policy;
use crate::access::pattern::Pattern;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Exchange,
    Queue(QueueType),
}

/// A queue's type as policies see it (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    /// The `apply-to` value naming only queues of this type.
    fn apply_to_name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic_queues",
            QueueType::Quorum => "quorum_queues",
            QueueType::Stream => "streams",
        }
    }

    /// Policy keys that make a policy not match a queue of this type
    /// (`unsupported_policies` of each queue type's capabilities).
    fn unsupported(self) -> &'static [&'static str] {
        match self {
            QueueType::Classic => &[
                "max-age",
                "stream-max-segment-size-bytes",
                "initial-cluster-size",
                "delivery-limit",
                "dead-letter-strategy",
                "max-in-memory-length",
                "max-in-memory-bytes",
                "target-group-size",
            ],
            QueueType::Quorum => &[
                "max-priority",
                "queue-mode",
                "queue-master-locator",
                "max-age",
                "stream-max-segment-size-bytes",
                "initial-cluster-size",
            ],
            QueueType::Stream => &[
                "expires",
                "message-ttl",
                "dead-letter-exchange",
                "dead-letter-routing-key",
                "max-length",
                "max-in-memory-length",
                "max-in-memory-bytes",
                "max-priority",
                "overflow",
                "queue-mode",
                "delivery-limit",
                "queue-master-locator",
                "dead-letter-strategy",
                "target-group-size",
            ],
        }
    }
}

/// The `apply-to` values RabbitMQ accepts.
pub const APPLY_TO: &[&str] = &[
    "all",
    "exchanges",
    "queues",
    "classic_queues",
    "quorum_queues",
    "streams",
];

/// A policy with its pattern compiled.
#[derive(Debug)]
pub struct Compiled {
    pub policy: Policy,
    pattern: Pattern,
}

/// Compiles a policy's pattern; the text says why it is not a valid pattern.
pub fn compile(pattern: &str) -> Result<Pattern, String> {
    Pattern::new(pattern).map_err(|e| pcre_error(pattern, &e))
}

/// A regex error in the words of PCRE as Erlang's `re:compile` reports it
/// (`{"missing )",1}`, checked on OTP 25) where the cause has an equivalent, else
/// the regex crate's.
fn pcre_error(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let at = |c: char| pattern.find(c).unwrap_or(0);
    let (what, at) = if text.contains("unclosed group") {
        ("missing )".to_owned(), pattern.len())
    } else if text.contains("unopened group") {
        ("unmatched parentheses".to_owned(), at(')'))
    } else if text.contains("unclosed character class") {
        (
            "missing terminating ] for character class".to_owned(),
            pattern.len(),
        )
    } else if text.contains("repetition operator missing expression") {
        ("nothing to repeat".to_owned(), 0)
    } else if text.contains("invalid repetition count range") {
        ("numbers out of order in {} quantifier".to_owned(), at('}'))
    } else {
        let last = text.lines().last().unwrap_or("invalid").trim();
        let last = last.strip_prefix("error: ").unwrap_or(last);
        (last.to_owned(), 0)
    };
    format!("{{\"{what}\",{at}}}")
}

impl Compiled {
    pub fn new(policy: Policy) -> Result<Compiled, String> {
        let pattern = compile(&policy.pattern)?;
        Ok(Compiled { policy, pattern })
    }

    /// `rabbit_policy:matches/3`: apply-to, applicability to the queue type, pattern.
    fn matches(&self, target: Target, name: &str) -> bool {
        let apply_to = self.policy.apply_to.as_str();
        let kind = match target {
            Target::Exchange => matches!(apply_to, "all" | "exchanges"),
            Target::Queue(t) => {
                matches!(apply_to, "all" | "queues") || apply_to == t.apply_to_name()
            }
        };
        if !kind {
            return false;
        }
        if let Target::Queue(t) = target {
            let unsupported = t.unsupported();
            if self
                .policy
                .definition
                .keys()
                .any(|k| unsupported.contains(&k.as_str()))
            {
                return false;
            }
        }
        self.pattern.is_match(name)
    }
}

/// The policies and operator policies of one virtual host, highest priority first.
#[derive(Debug, Default)]
pub struct PolicySet {
    user: Vec<Compiled>,
    operator: Vec<Compiled>,
}

/// Highest priority first; RabbitMQ leaves the order of equal priorities to its table
/// order (undefined), Warren takes them by name.
fn sort(list: &mut [Compiled]) {
    list.sort_by(|a, b| {
        b.policy
            .priority
            .cmp(&a.policy.priority)
            .then_with(|| a.policy.name.cmp(&b.policy.name))
    });
}

fn compile_all(list: &[Policy]) -> Vec<Compiled> {
    let mut out: Vec<Compiled> = list
        .iter()
        .filter_map(|p| match Compiled::new(p.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    policy = p.name,
                    vhost = p.vhost,
                    error = e,
                    "policy ignored"
                );
                None
            }
        })
        .collect();
    sort(&mut out);
    out
}

impl PolicySet {
    /// The set of `vhost`'s policies among `user` and `operator`.
    pub fn new(vhost: &str, user: &[Policy], operator: &[Policy]) -> PolicySet {
        let of = |l: &[Policy]| -> Vec<Policy> {
            l.iter().filter(|p| p.vhost == vhost).cloned().collect()
        };
        PolicySet {
            user: compile_all(&of(user)),
            operator: compile_all(&of(operator)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.operator.is_empty()
    }

    /// The policy and operator policy that apply to `name`, if any.
    pub fn lookup(&self, target: Target, name: &str) -> Option<Arc<Applied>> {
        let pick = |l: &[Compiled]| {
            l.iter()
                .find(|c| c.matches(target, name))
                .map(|c| (c.policy.name.clone(), c.policy.definition.clone()))
        };
        let applied = Applied {
            policy: pick(&self.user),
            operator: pick(&self.operator),
        };
        (applied.policy.is_some() || applied.operator.is_some()).then(|| Arc::new(applied))
    }
}

/// The policy and the operator policy applied to one queue or exchange: their names
/// and definitions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    pub policy: Option<(String, Map<String, Value>)>,
    pub operator: Option<(String, Map<String, Value>)>,
}

impl Applied {
    /// `rabbit_policy:effective_definition/1`: the policy's definition with the
    /// operator policy merged in (`merge_operator_definitions`).
    pub fn effective_definition(&self) -> Map<String, Value> {
        let empty = Map::new();
        let user = self.policy.as_ref().map_or(&empty, |(_, d)| d);
        let op = self.operator.as_ref().map_or(&empty, |(_, d)| d);
        let mut out = user.clone();
        for (k, ov) in op {
            let merged = match user.get(k) {
                Some(uv) => merge_value(k, uv, ov),
                None => ov.clone(),
            };
            out.insert(k.clone(), merged);
        }
        out
    }
}

/// `rabbit_policies:merge_policy_value/3`: how an operator policy's value combines
/// with the user policy's value of the same key.
fn merge_value(key: &str, user: &Value, op: &Value) -> Value {
    let min = |a: &Value, b: &Value| match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Value::from(x.min(y)),
        _ => op.clone(),
    };
    match key {
        "message-ttl"
        | "max-length"
        | "max-length-bytes"
        | "max-in-memory-length"
        | "max-in-memory-bytes"
        | "expires" => min(user, op),
        "delivery-limit" => match (user.as_i64(), op.as_i64()) {
            // A negative limit is no limit: the more conservative value wins.
            (Some(a), Some(b)) if a < 0 || b < 0 => Value::from(a.max(b)),
            (Some(a), Some(b)) => Value::from(a.min(b)),
            _ => op.clone(),
        },
        "target-group-size" => match (user.as_i64(), op.as_i64()) {
            (Some(a), Some(b)) => Value::from(a.max(b)),
            _ => op.clone(),
        },
        _ => op.clone(),
    }
}

/// What a queue or an exchange reports of its policies (the HTTP API shows them).
pub trait PolicyHolder {
    /// The policy and operator policy applied now.
    fn applied(&self) -> Option<Arc<Applied>>;

    /// The name and definition of the policy applied.
    fn policy(&self) -> Option<(String, Map<String, Value>)> {
        self.applied()?.policy.clone()
    }

    /// The name and definition of the operator policy applied.
    fn operator_policy(&self) -> Option<(String, Map<String, Value>)> {
        self.applied()?.operator.clone()
    }

    /// The policy's definition with the operator policy merged in (empty: none).
    fn effective_policy_definition(&self) -> Map<String, Value> {
        self.applied()
            .map(|a| a.effective_definition())
            .unwrap_or_default()
    }
}

impl PolicyHolder for crate::broker::Queue {
    fn applied(&self) -> Option<Arc<Applied>> {
        self.applied_policy()
    }
}

impl PolicyHolder for crate::broker::exchange::Exchange {
    fn applied(&self) -> Option<Arc<Applied>> {
        self.applied_policy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, pattern: &str, apply_to: &str, priority: i64, def: &str) -> Policy {
        Policy {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to: apply_to.into(),
            priority,
            definition: serde_json::from_str(def).expect("json"),
        }
    }

    fn name(set: &PolicySet, target: Target, n: &str) -> Option<String> {
        set.lookup(target, n)?.policy.clone().map(|(n, _)| n)
    }

    #[test]
    fn patterns_match_as_re_run() {
        let m = |p: &str, n: &str| compile(p).expect("valid").is_match(n);
        assert!(m("^(?!amq\\.).*", "q1"));
        assert!(!m("^(?!amq\\.).*", "amq.direct"));
        assert!(m("^(?!amq\\.|x)q", "q"));
        assert!(!m("^(?!amq\\.|x)q", "xq"));
        assert!(m("^(?![)]a)b", "b)"));
        // Other PCRE look-arounds and back-references run on fancy-regex.
        assert!(m("^(?!a)b|c", "ac"));
        assert!(!m("^(?!a)b|c", "ab"));
        for (p, e) in [
            ("(", r#"{"missing )",1}"#),
            (")", r#"{"unmatched parentheses",0}"#),
            ("a[", r#"{"missing terminating ] for character class",2}"#),
            ("*a", r#"{"nothing to repeat",0}"#),
            ("a{2,1}", r#"{"numbers out of order in {} quantifier",5}"#),
        ] {
            assert_eq!(compile(p).expect_err("invalid"), e, "{p}");
        }
        assert!(m("q", "aqb"));
        assert!(!m("^q$", "aqb"));
        assert!(m("^(ab|cd)$", "cd"));
        // Bytes, as re:run without the unicode option: `é` is two.
        assert!(m("é", "caé"));
        assert!(m("^..a", "éa") && !m("^.a", "éa"));
    }

    const CLASSIC: Target = Target::Queue(QueueType::Classic);
    const QUORUM: Target = Target::Queue(QueueType::Quorum);

    #[test]
    fn matching_follows_rabbit_policy() {
        let set = PolicySet::new(
            "/",
            &[
                p("low", "q", "all", 0, r#"{"max-length":1}"#),
                p("high", "^q1$", "queues", 5, r#"{"max-length":2}"#),
                p("age", "^q", "all", 9, r#"{"max-age":"1D"}"#),
                p("ex", "^x", "exchanges", 0, r#"{"alternate-exchange":"ae"}"#),
                p(
                    "quorum",
                    "^qq",
                    "quorum_queues",
                    3,
                    r#"{"delivery-limit":2}"#,
                ),
                p("other", ".*", "all", 0, r#"{"max-length":3}"#),
            ],
            &[],
        );
        // Unanchored, highest priority first; max-age never matches a classic queue.
        assert_eq!(name(&set, CLASSIC, "q1").as_deref(), Some("high"));
        assert_eq!(name(&set, CLASSIC, "aqb").as_deref(), Some("low"));
        // Exchanges take any key: max-age applies to them.
        assert_eq!(name(&set, Target::Exchange, "q1").as_deref(), Some("age"));
        assert_eq!(name(&set, Target::Exchange, "xy").as_deref(), Some("ex"));
        assert_eq!(name(&set, CLASSIC, "xy").as_deref(), Some("other"));
        // delivery-limit matches quorum queues only; max-age neither.
        assert_eq!(name(&set, QUORUM, "qq").as_deref(), Some("quorum"));
        assert_eq!(name(&set, CLASSIC, "qq").as_deref(), Some("low"));
        // Equal priorities: by name.
        assert_eq!(name(&set, CLASSIC, "zq").as_deref(), Some("low"));
    }

    #[test]
    fn operator_policy_merges() {
        let set = PolicySet::new(
            "/",
            &[p(
                "u",
                ".*",
                "all",
                0,
                r#"{"max-length":10,"message-ttl":50,"overflow":"drop-head","dead-letter-exchange":"d"}"#,
            )],
            &[p(
                "o",
                ".*",
                "queues",
                0,
                r#"{"max-length":5,"message-ttl":100,"overflow":"reject-publish","expires":9}"#,
            )],
        );
        let a = set.lookup(CLASSIC, "q").expect("applies");
        let d = a.effective_definition();
        assert_eq!(d["max-length"], 5);
        assert_eq!(d["message-ttl"], 50);
        assert_eq!(d["overflow"], "reject-publish");
        assert_eq!(d["expires"], 9);
        assert_eq!(d["dead-letter-exchange"], "d");
        let x = set.lookup(Target::Exchange, "x").expect("applies");
        assert!(x.operator.is_none());
    }
}

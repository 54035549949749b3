//! Operator actions on policies and operator policies: the functions the
//! definitions import, the HTTP API and the CLI share. A change is validated as
//! RabbitMQ validates it (with its texts), recorded, and applied at once to the
//! queues and exchanges of its virtual host.

use super::Broker;
use super::policy::{self, APPLY_TO, PolicySet};
use crate::access::Policy;
use crate::broker::queue::stream::args::MAX_SEGMENT_BYTES;
use crate::model::{BrokerError, BrokerResult};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest pattern RabbitMQ compiles (`rabbit_re:max_pattern_length/0`).
const MAX_PATTERN_LENGTH: usize = 1024;

/// Keys an operator policy may hold (`operator_policy_validator` registrations).
const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
    "queue-version",
    "overflow",
    "queue-master-locator",
    "target-group-size",
];

impl Broker {
    /// Creates or replaces a policy (`operator`: an operator policy), then applies
    /// the vhost's policies to its queues and exchanges.
    pub fn set_policy(&self, p: Policy, operator: bool) -> BrokerResult<()> {
        if self.vhost(&p.vhost).is_none() {
            return Err(BrokerError::NotFound(format!("no vhost '{}'", p.vhost)));
        }
        validate(&p, operator).map_err(BrokerError::Invalid)?;
        let vhost = p.vhost.clone();
        self.access().update(|s| {
            let list = if operator {
                &mut s.operator_policies
            } else {
                &mut s.policies
            };
            list.retain(|q| !(q.vhost == p.vhost && q.name == p.name));
            list.push(p);
        });
        self.refresh_policies(&vhost);
        Ok(())
    }

    /// Deletes a policy, and applies what remains. False if there was none.
    pub fn clear_policy(&self, vhost: &str, name: &str, operator: bool) -> bool {
        let (found, _) = self.access().update(|s| {
            let list = if operator {
                &mut s.operator_policies
            } else {
                &mut s.policies
            };
            let before = list.len();
            list.retain(|q| !(q.vhost == vhost && q.name == name));
            before != list.len()
        });
        if found {
            self.refresh_policies(vhost);
        }
        found
    }

    /// The compiled policies of `vhost` as the records hold them.
    pub(super) fn policy_set(&self, vhost: &str) -> Arc<PolicySet> {
        Arc::new(
            self.access()
                .read(|s| PolicySet::new(vhost, &s.policies, &s.operator_policies)),
        )
    }

    /// Applies the recorded policies of `vhost` to its queues and exchanges (after
    /// any change of the records, for example a definitions import).
    pub fn refresh_policies(&self, vhost: &str) {
        if let Some(v) = self.vhost(vhost) {
            v.set_policies(|| self.policy_set(vhost));
        }
    }
}

/// `rabbit_policy:validate/5`: the errors of a policy, each on its line after
/// "Validation failed", in RabbitMQ's order (definition, apply-to, pattern).
pub fn validate(p: &Policy, operator: bool) -> Result<(), String> {
    let mut errors = Vec::new();
    if let Err(e) = validate_definition(&p.definition, operator) {
        errors.push(e);
    }
    if !APPLY_TO.contains(&p.apply_to.as_str()) {
        errors.push(format!(
            "apply-to '{}' unrecognised; should be one of: 'queues', 'classic_queues',  \
             'quorum_queues', 'streams', 'exchanges', or 'all'",
            p.apply_to
        ));
    }
    if p.pattern.len() > MAX_PATTERN_LENGTH {
        errors.push(format!(
            "pattern must not exceed {MAX_PATTERN_LENGTH} bytes"
        ));
    } else if let Err(e) = policy::compile(&p.pattern) {
        errors.push(format!(
            "pattern should be regular expression but is invalid: {e}"
        ));
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut text = "Validation failed\n\n".to_owned();
    for e in errors {
        text.push_str(&e);
        text.push('\n');
    }
    Err(text)
}

/// The definition's keys: each known one with a valid value, no unknown one.
fn validate_definition(d: &Map<String, Value>, operator: bool) -> Result<(), String> {
    if d.is_empty() {
        return Err("no policy provided".to_owned());
    }
    let mut unknown = Vec::new();
    for (k, v) in d {
        if operator && !OPERATOR_KEYS.contains(&k.as_str()) {
            unknown.push(format!(
                "{{{},{}}}",
                erlang_term(&k.as_str().into()),
                erlang_term(v)
            ));
            continue;
        }
        match check_value(k, v) {
            Some(Ok(())) => {}
            Some(Err(what)) => return Err(format!("{} is not a valid {what}", erlang_term(v))),
            None => unknown.push(format!(
                "{{{},{}}}",
                erlang_term(&k.as_str().into()),
                erlang_term(v)
            )),
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        ))
    }
}

/// `rabbit_policies:validate_policy0/2` and the queue types' own: None for a key no
/// validator knows, else whether the value is valid (the error names what it is not).
fn check_value(key: &str, v: &Value) -> Option<Result<(), &'static str>> {
    let int = v.as_i64().filter(|_| v.is_i64() || v.is_u64());
    let at_least = |min: i64, what: &'static str| match int {
        Some(n) if n >= min => Ok(()),
        _ => Err(what),
    };
    let one_of = |options: &[&str], what: &'static str| match v.as_str() {
        Some(s) if options.contains(&s) => Ok(()),
        _ => Err(what),
    };
    let string = |what: &'static str| if v.is_string() { Ok(()) } else { Err(what) };
    Some(match key {
        "alternate-exchange" => string("alternate exchange name"),
        "dead-letter-exchange" => string("dead letter exchange name"),
        "dead-letter-routing-key" => string("dead letter routing key"),
        "dead-letter-strategy" => {
            one_of(&["at-most-once", "at-least-once"], "dead letter strategy")
        }
        "consumer-timeout" => at_least(0, "consumer timeout"),
        "message-ttl" => at_least(0, "message TTL"),
        "expires" => at_least(1, "queue expiry"),
        "max-length" => at_least(0, "maximum length"),
        "max-length-bytes" => at_least(0, "maximum length in bytes"),
        "max-in-memory-length" | "max-in-memory-bytes" => at_least(0, "maximum memory in bytes"),
        "queue-mode" => one_of(&["default", "lazy"], "queue-mode value"),
        "queue-version" => match int {
            Some(1 | 2) => Ok(()),
            _ => Err("queue-version value"),
        },
        "overflow" => one_of(
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            "overflow value",
        ),
        "delivery-limit" => int.map(|_| ()).ok_or("delivery limit"),
        "max-age" => match v.as_str() {
            Some(s) if crate::broker::args::parse_age(s.as_bytes()).is_some() => Ok(()),
            _ => Err("max age"),
        },
        "queue-leader-locator" => one_of(
            &["client-local", "balanced", "random", "least-leaders"],
            "queue leader locator value",
        ),
        "queue-master-locator" => one_of(
            &["client-local", "balanced", "random", "least-leaders"],
            "master locator",
        ),
        "initial-cluster-size" => at_least(0, "cluster size"),
        "target-group-size" => at_least(1, "qq target count value"),
        "stream-max-segment-size-bytes" => match int {
            Some(n) if u64::try_from(n).is_ok_and(|n| n <= MAX_SEGMENT_BYTES) => Ok(()),
            _ => Err("segment size"),
        },
        _ => return None,
    })
}

/// A JSON value as Erlang prints the term it decodes to (`~tp`).
fn erlang_term(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) => {
                let s = format!("{f:?}");
                match s.split_once('e') {
                    Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
                    _ => s,
                }
            }
            _ => n.to_string(),
        },
        Value::String(s) => {
            let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
            if s.is_ascii() {
                format!("<<\"{escaped}\">>")
            } else {
                format!("<<\"{escaped}\"/utf8>>")
            }
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(erlang_term).collect::<Vec<_>>().join(",")
        ),
        Value::Object(o) => format!(
            "#{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{} => {}", erlang_term(&k.as_str().into()), erlang_term(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pattern: &str, apply_to: &str, def: &str) -> Policy {
        Policy {
            vhost: "/".into(),
            name: "p".into(),
            pattern: pattern.into(),
            apply_to: apply_to.into(),
            priority: 0,
            definition: serde_json::from_str(def).expect("json"),
        }
    }

    fn err(p: &Policy, operator: bool) -> String {
        validate(p, operator).expect_err("invalid")
    }

    #[test]
    fn texts_match_rabbitmq() {
        assert_eq!(
            err(&policy("q", "all", r#"{"foo":1,"message-ttl":"x"}"#), false),
            "Validation failed\n\n<<\"x\">> is not a valid message TTL\n"
        );
        assert_eq!(
            err(&policy("q", "all", r#"{"bar":1,"zzz":2}"#), false),
            "Validation failed\n\n[{<<\"bar\">>,1},{<<\"zzz\">>,2}] are not recognised policy settings\n"
        );
        assert_eq!(
            err(&policy("(", "all", r#"{"max-length":1}"#), false),
            "Validation failed\n\npattern should be regular expression but is invalid: {\"missing )\",1}\n"
        );
        assert_eq!(
            err(&policy("a", "all", "{}"), false),
            "Validation failed\n\nno policy provided\n"
        );
        assert_eq!(
            err(&policy("a", "all", r#"{"dead-letter-exchange":"x"}"#), true),
            "Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings\n"
        );
        assert_eq!(
            err(&policy("a", "all", r#"{"message-ttl":-1}"#), false),
            "Validation failed\n\n-1 is not a valid message TTL\n"
        );
        assert_eq!(
            err(&policy("(", "nope", r#"{"message-ttl":1.5}"#), false),
            "Validation failed\n\n1.5 is not a valid message TTL\napply-to 'nope' unrecognised; \
             should be one of: 'queues', 'classic_queues',  'quorum_queues', 'streams', \
             'exchanges', or 'all'\npattern should be regular expression but is invalid: \
             {\"missing )\",1}\n"
        );
        assert!(validate(&policy("^a", "queues", r#"{"max-age":"1D"}"#), false).is_ok());
        assert!(validate(&policy("^a", "queues", r#"{"max-length":5}"#), true).is_ok());
    }
}

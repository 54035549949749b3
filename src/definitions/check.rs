//! Everything an import would refuse, found before anything changes: references to
//! vhosts, users, exchanges and queues that neither exist nor are defined, and
//! values the broker's own functions would reject (exchange types, queue arguments,
//! regexes, policy targets).

use super::parse::{BindingDef, Definitions};
use super::{Failure, names};
use crate::broker::Broker;
use crate::broker::args::QueueArgs;
use crate::broker::exchange::{ExchangeKind, validate_headers_binding};
use amq_protocol::types::AMQPValue;
use std::collections::HashSet;

/// The exchanges every vhost has.
const STANDARD: [&str; 6] = [
    "amq.direct",
    "amq.fanout",
    "amq.topic",
    "amq.headers",
    "amq.match",
    "amq.rabbitmq.trace",
];

/// What exists in the broker or is defined in the documents.
struct Known<'a> {
    broker: &'a Broker,
    defs: Vec<&'a Definitions>,
    users: HashSet<String>,
}

impl Known<'_> {
    fn vhost(&self, name: &str) -> bool {
        self.broker.vhost(name).is_some()
            || self
                .defs
                .iter()
                .any(|d| d.vhosts.iter().any(|v| v.name == name))
    }

    /// The type of an exchange that exists or is defined.
    fn exchange(&self, vhost: &str, name: &str) -> Option<String> {
        if STANDARD.contains(&name) && self.vhost(vhost) {
            return Some(
                match name {
                    "amq.direct" => "direct",
                    "amq.fanout" => "fanout",
                    "amq.topic" => "topic",
                    _ => "headers",
                }
                .to_owned(),
            );
        }
        if let Some(x) = self.broker.vhost(vhost).and_then(|v| v.exchange(name).ok()) {
            return Some(x.kind.as_str().to_owned());
        }
        self.defs.iter().find_map(|d| {
            d.exchanges
                .iter()
                .find(|x| x.vhost == vhost && x.name == name)
                .map(|x| x.kind.clone())
        })
    }

    fn queue(&self, vhost: &str, name: &str) -> bool {
        self.broker
            .vhost(vhost)
            .is_some_and(|v| v.queues().iter().any(|q| q.name.as_str() == name))
            || self
                .defs
                .iter()
                .any(|d| d.queues.iter().any(|q| q.vhost == vhost && q.name == name))
    }

    fn need_vhost(&self, what: &str, vhost: &str) -> Result<(), Failure> {
        if self.vhost(vhost) {
            Ok(())
        } else {
            Err(Failure::new(
                what,
                format!("refers to vhost '{vhost}', which neither exists nor is defined"),
            ))
        }
    }

    fn need_user(&self, what: &str, user: &str) -> Result<(), Failure> {
        if self.users.contains(user) {
            Ok(())
        } else {
            Err(Failure::new(
                what,
                format!("refers to user '{user}', which neither exists nor is defined"),
            ))
        }
    }
}

/// Refuses a malformed regex. RabbitMQ's are PCRE: look-arounds and
/// back-references (which the `regex` crate lacks) are accepted here and left to
/// the broker's own pattern compiler.
fn regex(what: &str, field: &str, pattern: &str) -> Result<(), Failure> {
    match regex::Regex::new(pattern) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("look-around") => Ok(()),
        Err(e) if e.to_string().contains("backreferences") => Ok(()),
        Err(e) => Err(Failure::new(
            what,
            format!("has an invalid {field} regex: {e}"),
        )),
    }
}

/// Checks `defs`, given documents imported together with it (`others`).
pub fn check_with(
    broker: &Broker,
    defs: &Definitions,
    others: &[&Definitions],
) -> Result<(), Failure> {
    let mut all: Vec<&Definitions> = others.to_vec();
    all.push(defs);
    let mut users: HashSet<String> = broker
        .access()
        .read(|s| s.users.iter().map(|u| u.name.clone()).collect());
    for d in &all {
        users.extend(d.users.iter().map(|u| u.user.name.clone()));
    }
    let known = Known {
        broker,
        defs: all,
        users,
    };
    for p in &defs.permissions {
        let what = format!("permission of user '{}' in vhost '{}'", p.user, p.vhost);
        known.need_user(&what, &p.user)?;
        known.need_vhost(&what, &p.vhost)?;
        for (field, re) in [
            ("configure", &p.configure),
            ("write", &p.write),
            ("read", &p.read),
        ] {
            regex(&what, field, re)?;
        }
    }
    for p in &defs.topic_permissions {
        let what = format!(
            "topic permission of user '{}' on exchange '{}' in vhost '{}'",
            p.user, p.exchange, p.vhost
        );
        known.need_user(&what, &p.user)?;
        known.need_vhost(&what, &p.vhost)?;
        regex(&what, "write", &p.write)?;
        regex(&what, "read", &p.read)?;
    }
    for (kind, list) in [
        ("policy", &defs.policies),
        ("operator policy", &defs.operator_policies),
    ] {
        for p in list {
            let what = format!("{kind} '{}' in vhost '{}'", p.name, p.vhost);
            known.need_vhost(&what, &p.vhost)?;
            // The rules set_policy applies, so that an import never fails part-way.
            crate::broker::policies::validate(p, kind == "operator policy")
                .map_err(|e| Failure::new(&what, format!("is invalid: {}", e.trim_end())))?;
        }
    }
    for p in &defs.parameters {
        let what = format!(
            "parameter '{}' of component '{}' in vhost '{}'",
            p.name, p.component, p.vhost
        );
        known.need_vhost(&what, &p.vhost)?;
    }
    for x in &defs.exchanges {
        let what = names::exchange(&x.vhost, &x.name);
        known.need_vhost(&what, &x.vhost)?;
        if ExchangeKind::parse(&x.kind).is_none() {
            return Err(Failure::new(
                &what,
                format!("has an unknown exchange type '{}'", x.kind),
            ));
        }
        if let Some(v) = x.arguments.inner().get("alternate-exchange")
            && !matches!(v, AMQPValue::LongString(_) | AMQPValue::ShortString(_))
        {
            return Err(Failure::new(&what, "has a non-string alternate-exchange"));
        }
    }
    for q in &defs.queues {
        let what = names::queue(&q.vhost, &q.name);
        known.need_vhost(&what, &q.vhost)?;
        let args = QueueArgs::parse(&what, &q.arguments).map_err(|e| {
            Failure::new(&what, format!("cannot be declared: {}", super::reason(&e)))
        })?;
        if args.quorum && (!q.durable || q.auto_delete) {
            return Err(Failure::new(
                &what,
                "is a quorum queue, which must be durable and not auto-delete",
            ));
        }
    }
    for b in &defs.bindings {
        binding(&known, b)?;
    }
    Ok(())
}

pub fn check(broker: &Broker, defs: &Definitions) -> Result<(), Failure> {
    check_with(broker, defs, &[])
}

fn binding(known: &Known, b: &BindingDef) -> Result<(), Failure> {
    let dest_kind = if b.to_queue { "queue" } else { "exchange" };
    let what = format!(
        "binding of exchange '{}' to {dest_kind} '{}' in vhost '{}'",
        b.source, b.destination, b.vhost
    );
    known.need_vhost(&what, &b.vhost)?;
    if b.source.is_empty() || (!b.to_queue && b.destination.is_empty()) {
        return Err(Failure::new(&what, "involves the default exchange"));
    }
    let Some(kind) = known.exchange(&b.vhost, &b.source) else {
        return Err(Failure::new(
            &what,
            format!(
                "refers to {}, which neither exists nor is defined",
                names::exchange(&b.vhost, &b.source)
            ),
        ));
    };
    let found = if b.to_queue {
        known.queue(&b.vhost, &b.destination)
    } else {
        known.exchange(&b.vhost, &b.destination).is_some()
    };
    if !found {
        let target = if b.to_queue {
            names::queue(&b.vhost, &b.destination)
        } else {
            names::exchange(&b.vhost, &b.destination)
        };
        return Err(Failure::new(
            &what,
            format!("refers to {target}, which neither exists nor is defined"),
        ));
    }
    if kind == "headers" {
        validate_headers_binding(&b.arguments).map_err(|e| Failure::new(&what, e))?;
    }
    Ok(())
}

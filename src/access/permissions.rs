//! The permission check AMQP and the HTTP API share: a user's configure / write /
//! read regexes in one virtual host, and topic permissions on routing keys, compiled
//! once per (user, vhost) and rebuilt when [`Access::generation`] changes.
//!
//! As in rabbit_auth_backend_internal: a regex matches anywhere in the name (the
//! search is not anchored), an empty regex is taken as `^$`, a regex that does not
//! compile refuses. The default exchange is checked as `amq.default`. A user without
//! topic permissions for an exchange may use any routing key on it; topic regexes
//! may name `{username}` and `{vhost}`, replaced by the escaped values first.

use super::{Access, AccessState};
use crate::model::{BrokerError, BrokerResult};
use std::sync::Arc;

/// The three permissions of RabbitMQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

/// What kind of resource a permission is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Exchange,
    Queue,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Exchange => "exchange",
            Resource::Queue => "queue",
        }
    }
}

/// A compiled regex, or `None` for one that did not compile (it matches nothing).
type Pattern = Option<crate::access::pattern::Pattern>;

fn compile(pattern: &str) -> Pattern {
    let pattern = if pattern.is_empty() { "^$" } else { pattern };
    match crate::access::pattern::Pattern::new(pattern) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(pattern, error = %e, "permission regex does not compile: it refuses");
            None
        }
    }
}

fn matches(p: &Pattern, name: &str) -> bool {
    p.as_ref().is_some_and(|r| r.is_match(name))
}

/// One user's compiled permissions in one virtual host.
#[derive(Debug)]
pub struct Permissions {
    user: String,
    vhost: String,
    generation: u64,
    /// configure, write, read; `None`: the user has no permissions in the vhost.
    resources: Option<[Pattern; 3]>,
    /// Per exchange: the write and read regexes on routing keys.
    topics: Vec<(String, [Pattern; 2])>,
}

impl Permissions {
    /// Compiles the permissions of `user` in `vhost` from `state`.
    pub fn compile(state: &AccessState, user: &str, vhost: &str, generation: u64) -> Permissions {
        let resources = state
            .permission(user, vhost)
            .map(|p| [compile(&p.configure), compile(&p.write), compile(&p.read)]);
        let expand = |pattern: &str| {
            compile(
                &pattern
                    .replace("{username}", &regex::escape(user))
                    .replace("{vhost}", &regex::escape(vhost)),
            )
        };
        let topics = state
            .topic_permissions
            .iter()
            .filter(|t| t.user == user && t.vhost == vhost)
            .map(|t| (t.exchange.clone(), [expand(&t.write), expand(&t.read)]))
            .collect();
        Permissions {
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            generation,
            resources,
            topics,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The [`Access::generation`] these were compiled at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the user may use the vhost at all (has a permission entry there).
    pub fn vhost_access(&self) -> bool {
        self.resources.is_some()
    }

    /// Whether `perm` on a resource named `name` is granted.
    pub fn allows(&self, perm: Perm, name: &str) -> bool {
        let Some(r) = &self.resources else {
            return false;
        };
        let index = match perm {
            Perm::Configure => 0,
            Perm::Write => 1,
            Perm::Read => 2,
        };
        matches(&r[index], name)
    }

    /// `perm` on the exchange or queue `name`, or RabbitMQ's refusal.
    pub fn check(&self, perm: Perm, kind: Resource, name: &str) -> BrokerResult<()> {
        let name = match (kind, name) {
            (Resource::Exchange, "") => "amq.default",
            _ => name,
        };
        if self.allows(perm, name) {
            return Ok(());
        }
        Err(BrokerError::AccessRefused(format!(
            "{} access to {} '{name}' in vhost '{}' refused for user '{}'",
            perm.as_str(),
            kind.as_str(),
            self.vhost,
            self.user
        )))
    }

    /// Any one of the three permissions (passive declares); refused as a configure
    /// refusal, as RabbitMQ tries configure last.
    pub fn check_any(&self, kind: Resource, name: &str) -> BrokerResult<()> {
        self.check(Perm::Read, kind, name)
            .or_else(|_| self.check(Perm::Write, kind, name))
            .or_else(|_| self.check(Perm::Configure, kind, name))
    }

    /// Whether the user has topic permissions on any exchange of the vhost.
    pub fn has_topic_permissions(&self) -> bool {
        !self.topics.is_empty()
    }

    /// `perm` (write or read) on routing key `key` of topic exchange `exchange`:
    /// allowed when the user has no topic permissions for that exchange.
    pub fn check_topic(&self, perm: Perm, exchange: &str, key: &str) -> BrokerResult<()> {
        let Some((_, patterns)) = self.topics.iter().find(|(x, _)| x == exchange) else {
            return Ok(());
        };
        let pattern = match perm {
            Perm::Read => &patterns[1],
            _ => &patterns[0],
        };
        if matches(pattern, key) {
            return Ok(());
        }
        Err(BrokerError::AccessRefused(format!(
            "{} access to topic '{key}' in exchange '{exchange}' in vhost '{}' refused for user '{}'",
            perm.as_str(),
            self.vhost,
            self.user
        )))
    }
}

impl Access {
    /// The compiled permissions of `user` in `vhost`, as of now.
    pub fn permissions(&self, user: &str, vhost: &str) -> Arc<Permissions> {
        // The generation changes under the write lock: read under the read lock, it
        // belongs to the state compiled.
        self.read(|s| Arc::new(Permissions::compile(s, user, vhost, self.generation())))
    }

    /// Recompiles `p` if anything changed since it was compiled.
    pub fn refresh(&self, p: &mut Arc<Permissions>) {
        if p.generation != self.generation() {
            *p = self.permissions(&p.user, &p.vhost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Permission, TopicPermission};

    fn state(configure: &str, write: &str, read: &str) -> AccessState {
        AccessState {
            permissions: vec![Permission {
                user: "u".into(),
                vhost: "/".into(),
                configure: configure.into(),
                write: write.into(),
                read: read.into(),
            }],
            topic_permissions: vec![TopicPermission {
                user: "u".into(),
                vhost: "/".into(),
                exchange: "t".into(),
                write: "^{username}\\.".into(),
                read: "".into(),
            }],
            ..AccessState::default()
        }
    }

    #[test]
    fn regexes_are_unanchored_and_empty_matches_only_empty() {
        let p = Permissions::compile(&state("c", "", "(unclosed"), "u", "/", 1);
        assert!(p.allows(Perm::Configure, "abc"));
        assert!(!p.allows(Perm::Write, "x"));
        assert!(!p.allows(Perm::Read, "x"));
        assert!(p.check_any(Resource::Queue, "x").is_err());
        assert!(p.check_any(Resource::Queue, "c").is_ok());
        let e = p.check(Perm::Write, Resource::Exchange, "").unwrap_err();
        assert_eq!(
            e,
            BrokerError::AccessRefused(
                "write access to exchange 'amq.default' in vhost '/' refused for user 'u'".into()
            )
        );
        assert!(!Permissions::compile(&state("", "", ""), "v", "/", 1).vhost_access());
    }

    #[test]
    fn topic_regexes_expand_variables() {
        let p = Permissions::compile(&state(".*", ".*", ".*"), "u", "/", 1);
        assert!(p.check_topic(Perm::Write, "t", "u.x").is_ok());
        assert!(p.check_topic(Perm::Write, "t", "v.x").is_err());
        assert!(p.check_topic(Perm::Read, "t", "a").is_err());
        assert!(p.check_topic(Perm::Write, "other", "v.x").is_ok());
    }
}

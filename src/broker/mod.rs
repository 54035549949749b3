//! The broker's domain: virtual hosts, exchanges, bindings, queues and consumers.
//! Nothing here knows about sockets or frames; connections call in, and queues hand
//! deliveries back to connections through each consumer's event sender.

pub mod admin;
pub mod args;
pub mod channels;
pub mod deadletter;
pub mod exchange;
pub mod policies;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod registry;
mod users;
pub mod vhost;

use crate::access::{Access, AccessState, Permission, User, VHostInfo, model, password};
use crate::store::{Recovered, Store};
use std::collections::HashMap;
use std::sync::Arc;

pub use queue::{Consumer, ConsumerEvent, Enqueued, Flow, Published, Queue, QueueEntry, QueueKind};
pub use registry::{ConnectionInfo, Connections, VHosts};
pub use vhost::VHost;

/// A random url-safe name suffix, as RabbitMQ's generated names use.
pub fn random_name() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Users, virtual hosts and connections of one broker.
pub struct Broker {
    pub memory: Arc<crate::model::memory::MemoryGauge>,
    /// Event counters for the metrics endpoint.
    pub metrics: Arc<crate::metrics::Counters>,
    vhosts: VHosts,
    connections: Arc<Connections>,
    access: Access,
    /// The store had no operator records when the broker started (see [`Broker::fresh`]).
    fresh: bool,
    store: Option<Arc<Store>>,
}

impl Broker {
    /// A broker with the users, virtual hosts and durable entities the store
    /// recovered. A store without operator records (a new file, or one written before
    /// format 2) gets RabbitMQ's defaults when `defaults` is set: `user` with
    /// password `pass`, tagged administrator, and virtual host `vhost` on which that
    /// user may do everything. Any vhost the recovered entities name is created too.
    pub fn new(
        defaults: bool,
        user: &str,
        pass: &str,
        vhost: &str,
        store: Option<(Arc<Store>, Recovered)>,
        memory: Arc<crate::model::memory::MemoryGauge>,
    ) -> Result<Broker, String> {
        let (store, recovered) = match store {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        let stored = match recovered.as_ref().and_then(|r| r.access.as_ref()) {
            Some(json) => Some(
                serde_json::from_slice::<AccessState>(json)
                    .map_err(|e| format!("the stored users and permissions are unreadable: {e}"))?,
            ),
            None => None,
        };
        let fresh = stored.is_none();
        let broker = Broker {
            memory,
            metrics: Arc::default(),
            vhosts: VHosts::default(),
            connections: Arc::new(Connections::default()),
            access: Access::new(stored.unwrap_or_default(), store.clone()),
            store,
            fresh,
        };
        if fresh && defaults {
            broker.create_defaults(user, pass, vhost);
        }
        for name in broker
            .access
            .read(|s| s.vhosts.iter().map(|v| v.name.clone()).collect::<Vec<_>>())
        {
            broker.live_vhost(&name);
        }
        if let Some(r) = recovered {
            type Parts = (
                Vec<crate::store::RecoveredExchange>,
                Vec<crate::store::RecoveredQueue>,
                Vec<crate::store::RecoveredBinding>,
            );
            let mut per: HashMap<String, Parts> = HashMap::new();
            for x in r.exchanges {
                per.entry(x.vhost.clone()).or_default().0.push(x);
            }
            for q in r.queues {
                per.entry(q.vhost.clone()).or_default().1.push(q);
            }
            for b in r.bindings {
                per.entry(b.vhost.clone()).or_default().2.push(b);
            }
            for (name, (xs, qs, bs)) in per {
                // Entities of a vhost without a record: a store from before format 2
                // knew vhosts only through them.
                broker.add_vhost(&name).restore(xs, qs, bs);
            }
        }
        Ok(broker)
    }

    /// Whether the store held no users, vhosts or permissions at start: a new data
    /// directory, or one written before format 2.
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    /// RabbitMQ's first-boot defaults: the default user (administrator), the default
    /// vhost, and full permissions for the one on the other.
    pub fn create_defaults(&self, user: &str, pass: &str, vhost: &str) {
        self.access.update(|s| {
            if s.user(user).is_none() {
                s.users.push(User {
                    name: user.to_owned(),
                    password_hash: password::hash(model::SHA256, pass),
                    hashing_algorithm: model::SHA256.to_owned(),
                    tags: vec!["administrator".to_owned()],
                    limits: Default::default(),
                });
            }
            if s.vhost(vhost).is_none() {
                s.vhosts.push(VHostInfo::named(vhost));
            }
            if s.permission(user, vhost).is_none() {
                s.permissions.push(Permission {
                    user: user.to_owned(),
                    vhost: vhost.to_owned(),
                    configure: ".*".to_owned(),
                    write: ".*".to_owned(),
                    read: ".*".to_owned(),
                });
            }
        });
    }

    /// The users, permissions, policies and vhost records.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Persists what a clean stop must remember, then closes the store.
    pub fn close(&self) {
        let Some(store) = &self.store else {
            return;
        };
        for vhost in self.vhosts.all() {
            for q in vhost.queues() {
                q.persist_redelivered();
            }
        }
        store.close();
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name)
    }

    /// Adds a virtual host (with its default exchanges) unless it exists, recording
    /// it in the store; returns it.
    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        if self.access.read(|s| s.vhost(name).is_none()) {
            self.access.update(|s| {
                if s.vhost(name).is_none() {
                    s.vhosts.push(VHostInfo::named(name));
                }
            });
        }
        self.live_vhost(name)
    }

    fn live_vhost(&self, name: &str) -> Arc<VHost> {
        self.vhosts.add(name, || {
            let v = VHost::new(
                name,
                self.store.clone(),
                self.memory.clone(),
                self.metrics.clone(),
            );
            v.set_policies(|| self.policy_set(name));
            v
        })
    }

    /// Removes a virtual host: no connection can open it any more, and those open
    /// to it are closed (320, as RabbitMQ closes them when their vhost is deleted).
    /// Its queues (with their messages), exchanges and bindings are deleted from the
    /// store too, so that a restart does not bring them back. Returns false if there
    /// was none of that name.
    pub fn remove_vhost(&self, name: &str) -> bool {
        let removed = self.vhosts.remove(name);
        self.access.update(|s| {
            s.vhosts.retain(|v| v.name != name);
            s.permissions.retain(|p| p.vhost != name);
            s.topic_permissions.retain(|p| p.vhost != name);
            s.policies.retain(|p| p.vhost != name);
            s.operator_policies.retain(|p| p.vhost != name);
            s.parameters.retain(|p| p.vhost != name);
        });
        let Some(vhost) = removed else {
            return false;
        };
        self.connections
            .close_vhost(name, &format!("vhost '{name}' is deleted"));
        self.delete_entities(&vhost);
        true
    }

    /// Deletes a removed vhost's queues (cancelling their consumers, dropping their
    /// messages) and the stored form of its exchanges and bindings.
    fn delete_entities(&self, vhost: &VHost) {
        for q in vhost.queues() {
            vhost.remove_queue(&q);
        }
        if let Some(store) = &self.store {
            // Built-in exchanges are not stored, but bindings between them are:
            // deleting each name drops every stored binding that touches it.
            for x in vhost.exchange_names() {
                store.delete_exchange(&vhost.name, &x);
            }
        }
    }

    /// How many queues all virtual hosts hold.
    pub fn queue_count(&self) -> usize {
        self.vhosts.all().iter().map(|v| v.queues().len()).sum()
    }

    /// The names of the virtual hosts.
    pub fn vhost_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .vhosts
            .all()
            .iter()
            .map(|v| v.name.to_string())
            .collect();
        names.sort();
        names
    }

    /// The open connections, each with the handle that closes it.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Checks a user's password.
    pub fn authenticate(&self, user: &str, pass: &str) -> bool {
        self.access.authenticate(user, pass).is_some()
    }
}

#[cfg(test)]
mod stack_tests;

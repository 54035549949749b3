//! The broker's domain: virtual hosts, exchanges, bindings, queues and consumers.
//! Nothing here knows about sockets or frames; connections call in, and queues hand
//! deliveries back to connections through each consumer's event sender.

pub mod args;
pub mod deadletter;
pub mod exchange;
pub mod publish;
pub mod queue;
pub mod registry;
pub mod vhost;

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
    vhosts: VHosts,
    connections: Arc<Connections>,
    users: HashMap<String, String>,
    store: Option<Arc<Store>>,
}

impl Broker {
    /// A broker with one user and one virtual host, as RabbitMQ starts out, plus
    /// whatever durable state the store recovered.
    pub fn new(
        user: &str,
        pass: &str,
        vhost: &str,
        store: Option<(Arc<Store>, Recovered)>,
        memory: Arc<crate::model::memory::MemoryGauge>,
    ) -> Broker {
        let (store, recovered) = match store {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        let mut broker = Broker {
            memory,
            vhosts: VHosts::default(),
            connections: Arc::new(Connections::default()),
            users: HashMap::new(),
            store,
        };
        broker.add_vhost(vhost);
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
                broker.add_vhost(&name).restore(xs, qs, bs);
            }
        }
        broker.users.insert(user.to_owned(), pass.to_owned());
        broker
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

    /// Adds a virtual host (with its default exchanges) unless it exists; returns it.
    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        self.vhosts.add(name, || {
            VHost::new(name, self.store.clone(), self.memory.clone())
        })
    }

    /// Removes a virtual host: no connection can open it any more, and those open
    /// to it are closed (320, as RabbitMQ closes them when their vhost is deleted).
    /// Returns false if there was none of that name.
    pub fn remove_vhost(&self, name: &str) -> bool {
        let removed = self.vhosts.remove(name).is_some();
        if removed {
            self.connections
                .close_vhost(name, &format!("vhost '{name}' is deleted"));
        }
        removed
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
        self.users.get(user).is_some_and(|p| p == pass)
    }
}

#[cfg(test)]
mod stack_tests;

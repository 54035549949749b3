//! The broker's domain: virtual hosts, exchanges, bindings, queues and consumers.
//! Nothing here knows about sockets or frames; connections call in, and queues hand
//! deliveries back to connections through each consumer's event sender.

pub mod args;
pub mod deadletter;
pub mod exchange;
pub mod queue;
pub mod vhost;

use crate::store::{Recovered, Store};
use std::collections::HashMap;
use std::sync::Arc;

pub use queue::{Consumer, ConsumerEvent, Enqueued, Flow, Published, Queue, QueueEntry};
pub use vhost::VHost;

/// A random url-safe name suffix, as RabbitMQ's generated names use.
pub fn random_name() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Users and virtual hosts of one broker.
pub struct Broker {
    pub memory: Arc<crate::model::memory::MemoryGauge>,
    vhosts: HashMap<String, Arc<VHost>>,
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
        let mut vhosts: HashMap<String, Arc<VHost>> = HashMap::new();
        let (store, recovered) = match store {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        let mut vhost_of = |name: &str| {
            vhosts
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(VHost::new(name, store.clone(), memory.clone())))
                .clone()
        };
        vhost_of(vhost);
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
                vhost_of(&name).restore(xs, qs, bs);
            }
        }
        let mut users = HashMap::new();
        users.insert(user.to_owned(), pass.to_owned());
        Broker {
            memory,
            vhosts,
            users,
            store,
        }
    }

    /// Persists what a clean stop must remember, then closes the store.
    pub fn close(&self) {
        let Some(store) = &self.store else {
            return;
        };
        for vhost in self.vhosts.values() {
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
        self.vhosts.get(name).cloned()
    }

    /// Checks a user's password.
    pub fn authenticate(&self, user: &str, pass: &str) -> bool {
        self.users.get(user).is_some_and(|p| p == pass)
    }
}

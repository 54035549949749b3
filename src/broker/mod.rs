//! The broker's domain: virtual hosts, exchanges, bindings, queues and consumers.
//! Nothing here knows about sockets or frames; connections call in, and queues hand
//! deliveries back to connections through each consumer's event sender.

pub mod exchange;
pub mod message;
pub mod queue;
pub mod vhost;

use std::collections::HashMap;
use std::sync::Arc;

pub use message::Message;
pub use queue::{Consumer, ConsumerEvent, Queue, QueueEntry};
pub use vhost::VHost;

/// What a broker operation can fail with; `protocol::error` maps each to its reply code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    NotFound(String),
    AccessRefused(String),
    ResourceLocked(String),
    PreconditionFailed(String),
    NotAllowed(String),
    CommandInvalid(String),
    NotImplemented(String),
    Internal(String),
}

pub type BrokerResult<T> = Result<T, BrokerError>;

/// Users and virtual hosts of one broker.
pub struct Broker {
    vhosts: HashMap<String, Arc<VHost>>,
    users: HashMap<String, String>,
}

impl Broker {
    /// A broker with one user and one virtual host, as RabbitMQ starts out.
    pub fn new(user: &str, pass: &str, vhost: &str) -> Broker {
        let mut vhosts = HashMap::new();
        vhosts.insert(vhost.to_owned(), Arc::new(VHost::new(vhost)));
        let mut users = HashMap::new();
        users.insert(user.to_owned(), pass.to_owned());
        Broker { vhosts, users }
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).cloned()
    }

    /// Checks a user's password.
    pub fn authenticate(&self, user: &str, pass: &str) -> bool {
        self.users.get(user).is_some_and(|p| p == pass)
    }
}

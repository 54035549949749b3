//! Who may do what: users and their password hashes, virtual hosts as records,
//! permissions, topic permissions, policies and runtime parameters. One [`Access`]
//! per broker holds them; every change is persisted in the store at once. AMQP and
//! the HTTP API ask the same functions.

pub mod model;
pub mod password;
pub mod pattern;
pub mod permissions;

use crate::store::Store;
pub use model::{
    AccessState, GlobalParameter, Parameter, Permission, Policy, TopicPermission, User, VHostInfo,
};
pub use permissions::{Perm, Permissions, Resource};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The operator-managed records of one broker.
pub struct Access {
    state: RwLock<AccessState>,
    /// Goes up with every change, so that caches built from the state know when to
    /// rebuild.
    generation: AtomicU64,
    store: Option<Arc<Store>>,
}

impl Access {
    pub fn new(state: AccessState, store: Option<Arc<Store>>) -> Access {
        Access {
            state: RwLock::new(state),
            generation: AtomicU64::new(1),
            store,
        }
    }

    /// The current generation: differs from a cached value once anything changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the records.
    pub fn read<R>(&self, f: impl FnOnce(&AccessState) -> R) -> R {
        // Changes replace whole records under the write lock: a poisoned lock still
        // guards consistent data.
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&state)
    }

    /// A copy of every record (for export).
    pub fn snapshot(&self) -> AccessState {
        self.read(Clone::clone)
    }

    /// Changes the records and persists the result; returns what `f` returns. The
    /// returned store ticket (0 without a store) is committed once
    /// [`Store::wait_committed`] says so.
    pub fn update<R>(&self, f: impl FnOnce(&mut AccessState) -> R) -> (R, u64) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut state);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let ticket = match &self.store {
            Some(store) => match serde_json::to_vec(&*state) {
                Ok(bytes) => store.put_access(bytes),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode users and permissions");
                    0
                }
            },
            None => 0,
        };
        (r, ticket)
    }

    /// Checks a user's password; the user's record when it matches. A blank password
    /// never matches (RabbitMQ refuses it), nor does any password of a user without
    /// a password hash.
    pub fn authenticate(&self, user: &str, pass: &str) -> Option<User> {
        if pass.is_empty() {
            return None;
        }
        self.read(|s| {
            let u = s.user(user)?;
            password::verify(&u.hashing_algorithm, &u.password_hash, pass).then(|| u.clone())
        })
    }
}

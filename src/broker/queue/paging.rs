//! Paging: a durable queue past its in-memory budget keeps only the index of its
//! persistent messages, and reads their bodies back from the store before delivery,
//! off the queue lock and off the async workers where it can.

use super::{Queue, QueueEntry, QueueState};
use crate::model::{Message, Slot};
use std::sync::Arc;

/// How many paged-out messages one read of the store brings back.
const PAGE_IN_BATCH: usize = 256;

impl Queue {
    /// Takes the head message, reading it back from the store if it was paged out.
    pub(super) fn pop_loaded(&self, state: &mut QueueState) -> Option<QueueEntry> {
        loop {
            let e = state.ready.pop_front()?;
            let msg = match &e.slot {
                Slot::Loaded(m) => Some(m.clone()),
                Slot::Paged { store_id, .. } => self.page_in(state, *store_id),
            };
            match msg {
                Some(msg) => {
                    return Some(QueueEntry {
                        seq: e.seq,
                        msg,
                        redelivered: e.redelivered,
                        expires: e.expires,
                    });
                }
                None => {
                    tracing::error!(queue = %self.name, seq = e.seq, "paged message unreadable, dropped");
                    self.remove_stored_id(e.seq, e.store_id());
                }
            }
        }
    }

    /// The head message for a consumer, never reading the store under the lock: a
    /// paged-out head starts a background read of the batch at the head and gives
    /// None; the read dispatches again when it is done.
    pub(super) fn pop_for_dispatch(self: &Arc<Self>, state: &mut QueueState) -> Option<QueueEntry> {
        let head = state.ready.front_mut()?;
        if let Slot::Paged { store_id, .. } = head.slot {
            let recent = state.recent.iter().find(|(_, m)| m.store_id == store_id);
            match (recent, tokio::runtime::Handle::try_current()) {
                (Some((_, m)), _) => {
                    let m = m.clone();
                    if let Some(head) = state.ready.front_mut() {
                        head.slot = Slot::Loaded(m);
                    }
                }
                (None, Ok(runtime)) => {
                    self.start_page_in(state, &runtime);
                    return None;
                }
                (None, Err(_)) => {}
            }
        }
        self.pop_loaded(state)
    }

    /// Reads the paged-out messages at the head back on a blocking thread, off the
    /// queue lock, then fills them in and dispatches.
    pub(super) fn start_page_in(
        self: &Arc<Self>,
        state: &mut QueueState,
        runtime: &tokio::runtime::Handle,
    ) {
        if state.paging {
            return;
        }
        let Some((store, _)) = &self.stored else {
            return;
        };
        let ids: Vec<u64> = state
            .ready
            .paged_ahead(PAGE_IN_BATCH)
            .into_iter()
            .map(|(_, _, id)| id)
            .collect();
        let Some(&head) = ids.first() else {
            return;
        };
        state.paging = true;
        let store = store.clone();
        let weak = Arc::downgrade(self);
        runtime.spawn_blocking(move || {
            let loaded = store.load(&ids);
            let Some(q) = weak.upgrade() else {
                return;
            };
            let mut found: std::collections::HashMap<u64, Arc<Message>> = ids
                .iter()
                .zip(loaded)
                .filter_map(|(id, m)| m.map(|m| (*id, m)))
                .collect();
            let mut state = q.lock();
            state.paging = false;
            q.fill_paged(&mut state, &mut found, head);
            if !state.deleted {
                q.dispatch_locked(&mut state);
            }
            q.finish(state);
        });
    }

    /// Puts messages read back from the store into their entries (those still
    /// there). A head that the store could not give back, and that is not waiting
    /// for its commit, is dropped as unreadable rather than retried forever.
    pub(super) fn fill_paged(
        &self,
        state: &mut QueueState,
        found: &mut std::collections::HashMap<u64, Arc<Message>>,
        head: u64,
    ) {
        let head_missing = !found.contains_key(&head);
        for level in state.ready.levels.iter_mut().rev() {
            for e in level.iter_mut().take(2 * PAGE_IN_BATCH) {
                if found.is_empty() {
                    break;
                }
                if let Slot::Paged { store_id, .. } = e.slot
                    && let Some(m) = found.remove(&store_id)
                {
                    e.slot = Slot::Loaded(m);
                }
            }
        }
        if head_missing
            && !state.recent.iter().any(|(_, m)| m.store_id == head)
            && state
                .ready
                .front_mut()
                .is_some_and(|e| matches!(e.slot, Slot::Paged { store_id, .. } if store_id == head))
            && let Some(e) = state.ready.pop_front()
        {
            tracing::error!(queue = %self.name, seq = e.seq, "paged message unreadable, dropped");
            self.remove_stored_id(e.seq, e.store_id());
        }
    }

    /// Reads a paged-out message back, with the paged messages right behind it at
    /// the head of the queue in the same store read.
    pub(super) fn page_in(&self, state: &mut QueueState, first: u64) -> Option<Arc<Message>> {
        if let Some((_, m)) = state.recent.iter().find(|(_, m)| m.store_id == first) {
            return Some(m.clone());
        }
        let (store, _) = self.stored.as_ref()?;
        let ahead = state.ready.paged_ahead(PAGE_IN_BATCH);
        let mut ids: Vec<u64> = Vec::with_capacity(ahead.len() + 1);
        ids.push(first);
        ids.extend(ahead.iter().map(|&(_, _, id)| id));
        let mut loaded = store.load(&ids).into_iter();
        let first_msg = loaded.next().flatten();
        for ((l, i, _), m) in ahead.into_iter().zip(loaded) {
            if let Some(m) = m
                && let Some(e) = state.ready.levels[l].get_mut(i)
            {
                e.slot = Slot::Loaded(m);
            }
        }
        first_msg
    }
}

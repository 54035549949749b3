//! Paging: a durable queue past its in-memory budget keeps only a compact index of
//! its persistent messages (runs of [`crate::model::paged::PagedRun`]) and reads them
//! back from the store in batches, never under the queue lock and never on an async
//! worker thread: a consumer's dispatch reads ahead in the background, basic.get
//! reads outside the lock (on a thread allowed to block), and dead letters wait for
//! their reads in order on a task of their own.

use super::ready::ReadyEntry;
use super::{Queue, QueueEntry, QueueState};
use crate::broker::deadletter::Reason;
use crate::model::{Message, Slot};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// How many paged-out messages one read of the store brings back.
pub(super) const PAGE_IN_BATCH: usize = 256;
/// A read starts when paged-out messages come this close to the head.
const READ_AHEAD: usize = PAGE_IN_BATCH / 2;

/// Dead letters of paged-out messages, waiting for them to be read back; later dead
/// letters of the queue wait behind them, so that they leave in order.
#[derive(Default)]
pub(super) struct DeadLetters {
    /// Batches, each with the store ticket after which its messages can be read.
    pending: VecDeque<(Vec<(ReadyEntry, Reason)>, u64)>,
    /// A task is working through `pending`.
    running: bool,
}

/// The message of a loaded entry as the queue hands it out.
pub(super) fn handed_out(e: ReadyEntry) -> Option<QueueEntry> {
    match e.slot {
        Slot::Loaded(msg) => Some(QueueEntry {
            seq: e.seq,
            msg,
            redelivered: e.redelivered,
            expires: e.expires,
        }),
        Slot::Paged { .. } => None,
    }
}

/// Pairs ids with what the store gave back for them.
fn found_by_id(ids: &[u64], loaded: Vec<Option<Arc<Message>>>) -> HashMap<u64, Arc<Message>> {
    ids.iter()
        .zip(loaded)
        .filter_map(|(id, m)| m.map(|m| (*id, m)))
        .collect()
}

impl Queue {
    /// The head message for a consumer, never reading the store under the lock: a
    /// paged-out head starts a background read of the batch at the head and gives
    /// None; the read dispatches again when it is done. Reads ahead when paged
    /// messages come close to the head.
    pub(super) fn pop_for_dispatch(self: &Arc<Self>, state: &mut QueueState) -> Option<QueueEntry> {
        loop {
            let head = state.ready.head()?;
            if head.paged != 0 {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    self.start_page_in(state, &runtime);
                    return None;
                }
                // No runtime to read on (a caller outside the server): read here.
                let (ids, ticket) = state.ready.paged_ahead(PAGE_IN_BATCH);
                let mut found = self.read_paged(&ids, ticket);
                self.fill_paged(state, &mut found, head.paged);
                continue;
            }
            let e = state.ready.pop_front()?;
            if !state.paging
                && state.ready.paged_soon(READ_AHEAD)
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                self.start_page_in(state, &runtime);
            }
            return handed_out(e);
        }
    }

    /// Reads the paged-out messages near the head back on a blocking thread, once
    /// their store writes are committed, then fills them in and dispatches.
    pub(super) fn start_page_in(
        self: &Arc<Self>,
        state: &mut QueueState,
        runtime: &tokio::runtime::Handle,
    ) {
        if state.paging {
            return;
        }
        let Some((store, queue_id)) = &self.stored else {
            return;
        };
        let queue_id = *queue_id;
        let (ids, ticket) = state.ready.paged_ahead(PAGE_IN_BATCH);
        let Some(&head) = ids.first() else {
            return;
        };
        state.paging = true;
        let store = store.clone();
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            if ticket > store.committed_now() {
                store.wait_committed(ticket).await;
            }
            let read = tokio::task::spawn_blocking(move || {
                let loaded = store.load(queue_id, &ids);
                found_by_id(&ids, loaded)
            })
            .await;
            let Some(q) = weak.upgrade() else {
                return;
            };
            let mut state = q.lock();
            state.paging = false;
            if let Ok(mut found) = read {
                q.fill_paged(&mut state, &mut found, head);
            }
            if !state.deleted {
                q.dispatch_locked(&mut state);
            }
            q.finish(state);
        });
    }

    /// Reads stored messages back on the calling thread, outside the queue lock;
    /// on a worker of the multi-threaded runtime the runtime first moves its other
    /// tasks away, so only the caller waits.
    pub(super) fn read_paged(&self, ids: &[u64], ticket: u64) -> HashMap<u64, Arc<Message>> {
        let Some((store, queue_id)) = &self.stored else {
            return HashMap::new();
        };
        let read = || {
            store.wait_committed_blocking(ticket);
            store.load(*queue_id, ids)
        };
        let loaded = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(read)
            }
            _ => read(),
        };
        found_by_id(ids, loaded)
    }

    /// Puts messages read back from the store into their entries (those still
    /// there). A head that the store could not give back, though its write was
    /// committed, is dropped as unreadable rather than retried forever.
    pub(super) fn fill_paged(
        &self,
        state: &mut QueueState,
        found: &mut HashMap<u64, Arc<Message>>,
        head: u64,
    ) {
        let head_missing = !found.contains_key(&head);
        state.ready.fill(found, 4 * PAGE_IN_BATCH);
        if head_missing
            && state.ready.head().is_some_and(|h| h.paged == head)
            && let Some(e) = state.ready.pop_front()
        {
            tracing::error!(queue = %self.name, seq = e.seq, "paged message unreadable, dropped");
            self.remove_stored_id(e.seq, e.store_id());
        }
    }

    /// Dead-letters messages some of which are paged out (or behind others that
    /// are): a task reads them back off the async workers, then publishes them, batch
    /// after batch in order.
    pub(super) fn dead_letter_later(self: &Arc<Self>, dead: Vec<(ReadyEntry, Reason)>) {
        let ticket = self.stored.as_ref().map_or(0, |(s, _)| s.last_ticket());
        {
            let mut dl = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
            dl.pending.push_back((dead, ticket));
            if dl.running {
                return;
            }
            dl.running = true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a caller outside the server): work through them here.
            while let Some((dead, ticket)) = self.next_dead_letters() {
                let ids = paged_ids(&dead);
                let mut found = self.read_paged(&ids, ticket);
                self.publish_dead_letters(dead, &mut found);
            }
            return;
        };
        let q = self.clone();
        runtime.spawn(async move {
            while let Some((dead, ticket)) = q.next_dead_letters() {
                let ids = paged_ids(&dead);
                let mut found = HashMap::new();
                if let (Some((store, queue_id)), false) = (&q.stored, ids.is_empty()) {
                    if ticket > store.committed_now() {
                        store.wait_committed(ticket).await;
                    }
                    let (store, queue_id) = (store.clone(), *queue_id);
                    if let Ok(f) = tokio::task::spawn_blocking(move || {
                        let loaded = store.load(queue_id, &ids);
                        found_by_id(&ids, loaded)
                    })
                    .await
                    {
                        found = f;
                    }
                }
                q.publish_dead_letters(dead, &mut found);
                // Expiry held back while these waited: let it go on.
                let state = q.lock();
                q.finish(state);
            }
        });
    }

    /// The next batch of dead letters waiting; None (and the task ends) when none.
    fn next_dead_letters(&self) -> Option<(Vec<(ReadyEntry, Reason)>, u64)> {
        let mut dl = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        let next = dl.pending.pop_front();
        if next.is_none() {
            dl.running = false;
        }
        next
    }

    /// How many batches of dead letters wait for their messages to be read back.
    pub(super) fn dead_letter_backlog(&self) -> usize {
        self.dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .len()
    }

    /// Whether dead letters wait for their messages to be read back.
    pub(super) fn dead_letters_waiting(&self) -> bool {
        self.dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
    }
}

/// The store ids of the paged-out messages among dead letters.
fn paged_ids(dead: &[(ReadyEntry, Reason)]) -> Vec<u64> {
    dead.iter()
        .filter(|(e, _)| e.is_paged())
        .map(|(e, _)| e.store_id())
        .collect()
}

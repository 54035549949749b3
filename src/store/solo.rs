//! Messages held by one durable queue only (the common case) are stored in a single
//! record with their queue entry: table `solo`, key (queue id, message id), value the
//! entry's position, redelivered flag and expiry, then the message as `messages`
//! stores it. Storing such a message and removing it after its ack are one B-tree
//! insert and one delete, where a message in `messages` plus its `index` entry take
//! four operations. Messages held by several queues keep the shared form.

use super::recovery::{RecoveredMessages, decode_message, peek_message};
use super::{MESSAGES, StoreError};
use crate::model::memory::MemoryGauge;
use crate::model::paged::PagedEntry;
use crate::model::{Message, Slot};
use redb::{ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub(super) const SOLO: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("solo");

/// Bytes before the message in a `solo` value: position, redelivered, expiry.
const HEADER: usize = 17;
/// Where the redelivered flag sits in a `solo` value.
const REDELIVERED_AT: usize = 8;

/// A queue entry's fields: position, redelivered, expiry in a `solo` value; message
/// id, redelivered, expiry as an `index` value.
pub(super) type EntryHead = (u64, bool, u64);

/// The queue-entry part of a `solo` value.
pub(super) fn put_header(out: &mut Vec<u8>, seq: u64, redelivered: bool, expires: u64) {
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(u8::from(redelivered));
    out.extend_from_slice(&expires.to_be_bytes());
}

/// A `solo` value's queue entry (position, redelivered, expiry) and message record.
pub(super) fn split(v: &[u8]) -> Option<(EntryHead, &[u8])> {
    let (head, message) = v.split_at_checked(HEADER)?;
    let seq = u64::from_be_bytes(head[..8].try_into().ok()?);
    let expires = u64::from_be_bytes(head[9..].try_into().ok()?);
    Some(((seq, head[REDELIVERED_AT] == 1, expires), message))
}

/// A copy of a `solo` value with its redelivered flag set (None: too short).
pub(super) fn redelivered(v: &[u8]) -> Option<Vec<u8>> {
    let mut v = v.to_vec();
    *v.get_mut(REDELIVERED_AT)? = 1;
    Some(v)
}

/// One entry of a queue at recovery, from either form.
struct Entry {
    seq: u64,
    msg_id: u64,
    redelivered: bool,
    expires: u64,
    /// A `solo` message's body length and priority, read during the scan (None: the
    /// message lives in `messages`).
    solo: Option<(u32, u8)>,
}

/// What recovering one queue's messages reads and shares across queues.
pub(super) struct QueueRecovery<'a, S, I, M> {
    pub path: &'a Path,
    pub solo: &'a S,
    pub index: &'a I,
    pub messages: &'a M,
    pub memory: &'a Arc<MemoryGauge>,
    /// Messages read back whole so far, by id: shared messages are read once.
    pub loaded: HashMap<u64, Arc<Message>>,
    /// How many messages per queue are read back whole.
    pub in_memory: usize,
    /// Whether the last stop was clean (else every message counts as redelivered).
    pub clean: bool,
    /// The highest message id seen in `solo`.
    pub max_solo_id: u64,
}

impl<S, I, M> QueueRecovery<'_, S, I, M>
where
    S: ReadableTable<(u64, u64), &'static [u8]>,
    I: ReadableTable<(u64, u64), (u64, bool, u64)>,
    M: ReadableTable<u64, &'static [u8]>,
{
    /// A queue's messages in position order, both forms merged; the first
    /// `in_memory` read back whole, the rest as paged-out entries.
    pub fn queue(
        &mut self,
        id: u64,
        name: &str,
        max_priority: Option<u8>,
    ) -> Result<RecoveredMessages, StoreError> {
        let io = |e: redb::StorageError| StoreError::Io(self.path.to_owned(), e.to_string());
        let corrupt = || StoreError::Format(self.path.to_owned(), "corrupt message record".into());
        let prioritized = max_priority.is_some();
        let mut entries = Vec::new();
        for row in self.solo.range((id, 0)..=(id, u64::MAX)).map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let msg_id = k.value().1;
            self.max_solo_id = self.max_solo_id.max(msg_id);
            let found = split(v.value())
                .and_then(|(head, message)| Some((head, peek_message(message, prioritized)?)));
            let Some(((seq, redelivered, expires), peeked)) = found else {
                tracing::warn!(queue = name, msg_id, "unreadable stored message, skipped");
                continue;
            };
            entries.push(Entry {
                seq,
                msg_id,
                redelivered,
                expires,
                solo: Some(peeked),
            });
        }
        let solo_count = entries.len();
        for row in self.index.range((id, 0)..=(id, u64::MAX)).map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let (msg_id, redelivered, expires) = v.value();
            entries.push(Entry {
                seq: k.value().1,
                msg_id,
                redelivered,
                expires,
                solo: None,
            });
        }
        if solo_count > 0 {
            // Message ids follow publication, positions follow enqueueing: mostly the
            // same order, but not always, and the two forms interleave.
            entries.sort_unstable_by_key(|e| e.seq);
        }
        let mut msgs = RecoveredMessages::default();
        // Per priority level, the index of its latest item in `msgs`.
        let mut last: HashMap<u8, usize> = HashMap::new();
        for e in entries {
            let redelivered = e.redelivered || !self.clean;
            if msgs.len() >= self.in_memory && !self.loaded.contains_key(&e.msg_id) {
                // Beyond the in-memory budget: keep only what the index needs.
                let peeked = match e.solo {
                    Some(p) => Some(p),
                    None => match self.messages.get(e.msg_id).map_err(io)? {
                        Some(data) => {
                            Some(peek_message(data.value(), prioritized).ok_or_else(corrupt)?)
                        }
                        None => None,
                    },
                };
                let Some((body_len, priority)) = peeked else {
                    tracing::warn!(
                        queue = name,
                        e.msg_id,
                        "index entry without message, skipped"
                    );
                    continue;
                };
                let entry = PagedEntry {
                    seq: e.seq,
                    store_id: e.msg_id,
                    expires: e.expires,
                    body_len,
                    redelivered,
                };
                let level = priority.min(max_priority.unwrap_or(0));
                msgs.push_paged(level, entry, &mut last);
                continue;
            }
            let msg = match self.loaded.get(&e.msg_id) {
                Some(m) => m.clone(),
                None => {
                    let read = if e.solo.is_some() {
                        self.solo.get((id, e.msg_id)).map_err(io)?.map(|v| {
                            split(v.value()).and_then(|(_, m)| decode_message(m, self.memory))
                        })
                    } else {
                        self.messages
                            .get(e.msg_id)
                            .map_err(io)?
                            .map(|v| decode_message(v.value(), self.memory))
                    };
                    let Some(m) = read else {
                        tracing::warn!(
                            queue = name,
                            e.msg_id,
                            "index entry without message, skipped"
                        );
                        continue;
                    };
                    let mut m = m.ok_or_else(corrupt)?;
                    m.store_id = e.msg_id;
                    let m = Arc::new(m);
                    if e.solo.is_none() {
                        self.loaded.insert(e.msg_id, m.clone());
                    }
                    m
                }
            };
            let level = msg.priority().min(max_priority.unwrap_or(0));
            last.remove(&level);
            msgs.push_one(e.seq, Slot::Loaded(msg), redelivered, e.expires);
        }
        Ok(msgs)
    }
}

/// Reads messages back for one queue (paged-out bodies), each from whichever form
/// holds it.
pub(super) fn load(
    txn: &redb::ReadTransaction,
    queue: u64,
    ids: &[u64],
    memory: &Arc<MemoryGauge>,
) -> Result<Vec<Option<Arc<Message>>>, redb::Error> {
    let solo = txn.open_table(SOLO)?;
    let messages = txn.open_table(MESSAGES)?;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let msg = match solo.get((queue, id))? {
            Some(v) => split(v.value()).and_then(|(_, m)| decode_message(m, memory)),
            None => messages
                .get(id)?
                .and_then(|v| decode_message(v.value(), memory)),
        };
        out.push(msg.map(|mut m| {
            m.store_id = id;
            Arc::new(m)
        }));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "solo_tests.rs"]
mod tests;

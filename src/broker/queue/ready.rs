//! The ready messages of a queue, in delivery order: one FIFO, or one per priority
//! level, each entry holding its message or, paged out, only its index.

use super::QueueEntry;
use crate::broker::deadletter::Reason;
use crate::model::Slot;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub(super) struct ReadyEntry {
    pub(super) seq: u64,
    pub(super) slot: Slot,
    pub(super) redelivered: bool,
    pub(super) expires: u64,
}

impl ReadyEntry {
    pub(super) fn store_id(&self) -> u64 {
        match &self.slot {
            Slot::Loaded(m) => m.store_id,
            Slot::Paged { store_id, .. } => *store_id,
        }
    }

    pub(super) fn body_len(&self) -> u64 {
        match &self.slot {
            Slot::Loaded(m) => m.body.len() as u64,
            Slot::Paged { body_len, .. } => u64::from(*body_len),
        }
    }

    pub(super) fn priority(&self) -> u8 {
        match &self.slot {
            Slot::Loaded(m) => m.priority(),
            Slot::Paged { priority, .. } => *priority,
        }
    }
}

impl From<QueueEntry> for ReadyEntry {
    fn from(e: QueueEntry) -> Self {
        ReadyEntry {
            seq: e.seq,
            slot: Slot::Loaded(e.msg),
            redelivered: e.redelivered,
            expires: e.expires,
        }
    }
}

/// Ready messages in delivery order: one FIFO, or one per priority level.
pub(super) struct Ready {
    pub(super) levels: Vec<VecDeque<ReadyEntry>>,
    pub(super) len: usize,
    /// Body bytes of the ready messages (`x-max-length-bytes`).
    pub(super) bytes: u64,
}

impl Ready {
    pub(super) fn new(max_priority: Option<u8>) -> Ready {
        let n = max_priority.map_or(1, |m| usize::from(m) + 1);
        Ready {
            levels: (0..n).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
        }
    }

    pub(super) fn level(&self, e: &ReadyEntry) -> usize {
        if self.levels.len() == 1 {
            return 0;
        }
        usize::from(e.priority()).min(self.levels.len() - 1)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn added(&mut self, e: &ReadyEntry) {
        self.len += 1;
        self.bytes += e.body_len();
    }

    pub(super) fn removed(&mut self, e: &ReadyEntry) {
        self.len -= 1;
        self.bytes -= e.body_len();
    }

    pub(super) fn push_back(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        self.levels[l].push_back(e);
    }

    pub(super) fn push_front(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        self.levels[l].push_front(e);
    }

    /// Puts a message back at its original position.
    pub(super) fn insert(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        let level = &mut self.levels[l];
        let at = level.partition_point(|x| x.seq < e.seq);
        level.insert(at, e);
    }

    /// Puts many messages back at their original positions: one merge per level
    /// rather than one shifting insert per message, so that requeueing a large
    /// unacked window (a consumer that disconnects) costs linear time.
    pub(super) fn insert_many(&mut self, mut entries: Vec<ReadyEntry>) {
        if entries.len() < 8 {
            for e in entries {
                self.insert(e);
            }
            return;
        }
        entries.sort_by_key(|e| e.seq);
        let mut per_level: Vec<Vec<ReadyEntry>> =
            (0..self.levels.len()).map(|_| Vec::new()).collect();
        for e in entries {
            self.added(&e);
            let l = self.level(&e);
            per_level[l].push(e);
        }
        for (l, back) in per_level.into_iter().enumerate() {
            if back.is_empty() {
                continue;
            }
            let level = &mut self.levels[l];
            if level
                .front()
                .is_none_or(|f| back[back.len() - 1].seq < f.seq)
            {
                // The usual case: everything requeued was ahead of what is ready.
                for e in back.into_iter().rev() {
                    level.push_front(e);
                }
                continue;
            }
            let old = std::mem::take(level);
            let mut merged = VecDeque::with_capacity(old.len() + back.len());
            let mut a = old.into_iter().peekable();
            let mut b = back.into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => x.seq < y.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let next = if take_a { a.next() } else { b.next() };
                if let Some(e) = next {
                    merged.push_back(e);
                }
            }
            *level = merged;
        }
    }

    /// The next message in delivery order.
    pub(super) fn front_mut(&mut self) -> Option<&mut ReadyEntry> {
        self.levels.iter_mut().rev().find_map(|l| l.front_mut())
    }

    pub(super) fn pop_front(&mut self) -> Option<ReadyEntry> {
        let e = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.removed(&e);
        Some(e)
    }

    /// Removes the messages at the heads whose time ran out.
    pub(super) fn drop_expired(&mut self, now: u64, out: &mut Vec<(ReadyEntry, Reason)>) {
        for l in 0..self.levels.len() {
            while self.levels[l]
                .front()
                .is_some_and(|e| e.expires != 0 && e.expires <= now)
            {
                if let Some(e) = self.levels[l].pop_front() {
                    self.removed(&e);
                    out.push((e, Reason::Expired));
                }
            }
        }
    }

    /// The earliest expiry among the heads.
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.levels
            .iter()
            .filter_map(|l| l.front().map(|e| e.expires).filter(|&t| t != 0))
            .min()
    }

    pub(super) fn take_all(&mut self) -> Vec<ReadyEntry> {
        self.len = 0;
        self.bytes = 0;
        self.levels.iter_mut().flat_map(std::mem::take).collect()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &ReadyEntry> {
        self.levels.iter().flatten()
    }

    /// The paged-out messages at the head, in delivery order: (level, index, id).
    pub(super) fn paged_ahead(&self, n: usize) -> Vec<(usize, usize, u64)> {
        let mut out = Vec::new();
        for l in (0..self.levels.len()).rev() {
            for (i, e) in self.levels[l].iter().enumerate().take(n - out.len()) {
                if let Slot::Paged { store_id, .. } = e.slot {
                    out.push((l, i, store_id));
                }
            }
            if out.len() >= n {
                break;
            }
        }
        out
    }
}

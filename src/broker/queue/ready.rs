//! The ready messages of a queue, in delivery order: one FIFO, or one per priority
//! level. Loaded messages are single items; paged-out ones sit in compact runs
//! ([`PagedRun`]), a few bits each, so that millions of them cost little memory.

use super::QueueEntry;
use crate::broker::deadletter::Reason;
use crate::model::paged::{PagedEntry, PagedRun};
use crate::model::{Message, Slot};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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

    pub(super) fn is_paged(&self) -> bool {
        matches!(self.slot, Slot::Paged { .. })
    }

    fn paged(&self) -> Option<PagedEntry> {
        match self.slot {
            Slot::Paged {
                store_id, body_len, ..
            } => Some(PagedEntry {
                seq: self.seq,
                store_id,
                expires: self.expires,
                body_len,
                redelivered: self.redelivered,
            }),
            Slot::Loaded(_) => None,
        }
    }

    /// A paged entry taken from level `level` (its priority as far as the queue cares).
    fn from_paged(e: PagedEntry, level: usize) -> ReadyEntry {
        ReadyEntry {
            seq: e.seq,
            slot: Slot::Paged {
                store_id: e.store_id,
                body_len: e.body_len,
                priority: level.min(255) as u8,
            },
            redelivered: e.redelivered,
            expires: e.expires,
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

/// What a level holds: one message, or a run of paged-out ones.
pub(super) enum Item {
    One(ReadyEntry),
    Run(Box<PagedRun>),
}

impl Item {
    fn first_seq(&self) -> u64 {
        match self {
            Item::One(e) => e.seq,
            Item::Run(r) => r.head().map_or(0, |e| e.seq),
        }
    }

    fn last_seq(&self) -> u64 {
        match self {
            Item::One(e) => e.seq,
            Item::Run(r) => r.tail().map_or(0, |e| e.seq),
        }
    }
}

/// The head of the queue, as much as dispatch needs to know of it.
pub(super) struct Head {
    /// The store id of a paged-out head (0: loaded).
    pub(super) paged: u64,
}

type Level = VecDeque<Item>;

/// Appends a paged entry to the run at the back of `level`, or to a new run.
fn push_paged(level: &mut Level, e: PagedEntry, ticket: u64) {
    if let Some(Item::Run(r)) = level.back_mut()
        && r.push(e, ticket)
    {
        return;
    }
    let mut run = PagedRun::new();
    run.push(e, ticket);
    level.push_back(Item::Run(Box::new(run)));
}

fn push_entry(level: &mut Level, e: ReadyEntry, ticket: u64) {
    match e.paged() {
        Some(p) => push_paged(level, p, ticket),
        None => level.push_back(Item::One(e)),
    }
}

/// Ready messages in delivery order: one FIFO, or one per priority level.
pub(super) struct Ready {
    levels: Vec<Level>,
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

    pub(super) fn level_of(&self, priority: u8) -> usize {
        usize::from(priority).min(self.levels.len() - 1)
    }

    fn level(&self, e: &ReadyEntry) -> usize {
        if self.levels.len() == 1 {
            return 0;
        }
        self.level_of(e.priority())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn added(&mut self, e: &ReadyEntry) {
        self.len += 1;
        self.bytes += e.body_len();
    }

    fn removed(&mut self, e: &ReadyEntry) {
        self.len -= 1;
        self.bytes -= e.body_len();
    }

    /// Appends a message; a paged one joins the run at the back. `ticket`: the store
    /// ticket after which a paged message can be read back (0: already on disk).
    pub(super) fn push_back(&mut self, e: ReadyEntry, ticket: u64) {
        self.added(&e);
        let l = self.level(&e);
        push_entry(&mut self.levels[l], e, ticket);
    }

    /// Appends a whole run of paged messages at `priority` (recovery).
    pub(super) fn push_run(&mut self, priority: u8, run: PagedRun) {
        let l = self.level_of(priority);
        let ordered = self.levels[l]
            .back()
            .is_none_or(|b| run.head().is_some_and(|h| h.seq > b.last_seq()));
        if ordered {
            self.len += run.len();
            self.bytes += run.bytes();
            self.levels[l].push_back(Item::Run(Box::new(run)));
            return;
        }
        for e in run.iter() {
            self.insert(ReadyEntry::from_paged(e, l));
        }
    }

    pub(super) fn push_front(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        let item = match e.paged() {
            Some(p) => {
                let mut run = PagedRun::new();
                run.push(p, 0);
                Item::Run(Box::new(run))
            }
            None => Item::One(e),
        };
        self.levels[l].push_front(item);
    }

    /// Puts a message back at its original position.
    pub(super) fn insert(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        let level = &mut self.levels[l];
        let at = level.partition_point(|x| x.last_seq() < e.seq);
        let mut at_after = at;
        if let Some(Item::Run(r)) = level.get_mut(at)
            && r.head().is_some_and(|h| h.seq < e.seq)
        {
            let after = r.split_off(e.seq);
            level.insert(at + 1, Item::Run(Box::new(after)));
            at_after = at + 1;
        }
        let item = match e.paged() {
            Some(p) => {
                let mut run = PagedRun::new();
                run.push(p, 0);
                Item::Run(Box::new(run))
            }
            None => Item::One(e),
        };
        level.insert(at_after, item);
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
                .is_none_or(|f| back[back.len() - 1].seq < f.first_seq())
            {
                // The usual case: everything requeued was ahead of what is ready.
                let mut front = Level::with_capacity(back.len() + level.len());
                for e in back {
                    push_entry(&mut front, e, 0);
                }
                front.append(level);
                *level = front;
                continue;
            }
            let old = std::mem::take(level);
            let mut merged = Level::with_capacity(old.len() + back.len());
            let mut b = back.into_iter().peekable();
            for item in old {
                match item {
                    Item::One(x) => {
                        flush_before(&mut merged, &mut b, x.seq);
                        merged.push_back(Item::One(x));
                    }
                    Item::Run(mut r) => {
                        flush_before(&mut merged, &mut b, r.head().map_or(0, |h| h.seq));
                        let last = r.tail().map_or(0, |t| t.seq);
                        if b.peek().is_none_or(|e| e.seq > last) {
                            merged.push_back(Item::Run(r));
                            continue;
                        }
                        // Something goes back into the middle of this run.
                        let ticket = r.ticket();
                        while let Some(p) = r.pop_front() {
                            flush_before(&mut merged, &mut b, p.seq);
                            push_paged(&mut merged, p, ticket);
                        }
                    }
                }
            }
            flush_before(&mut merged, &mut b, u64::MAX);
            *level = merged;
        }
    }

    /// The next message in delivery order.
    pub(super) fn head(&self) -> Option<Head> {
        let item = self.levels.iter().rev().find_map(|l| l.front())?;
        Some(match item {
            Item::One(_) => Head { paged: 0 },
            Item::Run(r) => Head {
                paged: r.head().map_or(0, |h| h.store_id),
            },
        })
    }

    /// Whether paged-out messages are at the head or close behind it (the top level's
    /// `within`-th item): time to read them back.
    pub(super) fn paged_soon(&self, within: usize) -> bool {
        let Some(level) = self.levels.iter().rev().find(|l| !l.is_empty()) else {
            return false;
        };
        let is_run = |i: Option<&Item>| matches!(i, Some(Item::Run(_)));
        is_run(level.front())
            || is_run(level.get(within))
            || (level.len() <= within && is_run(level.back()))
    }

    pub(super) fn pop_front(&mut self) -> Option<ReadyEntry> {
        let l = self.levels.iter().rposition(|l| !l.is_empty())?;
        let e = pop_level(&mut self.levels[l], l)?;
        self.removed(&e);
        Some(e)
    }

    /// Removes the messages at the heads whose time ran out, at most `limit`.
    pub(super) fn drop_expired(
        &mut self,
        now: u64,
        out: &mut Vec<(ReadyEntry, Reason)>,
        limit: usize,
    ) {
        let mut n = 0;
        for l in 0..self.levels.len() {
            while n < limit && front_expires(&self.levels[l]).is_some_and(|t| t != 0 && t <= now) {
                if let Some(e) = pop_level(&mut self.levels[l], l) {
                    self.removed(&e);
                    out.push((e, Reason::Expired));
                    n += 1;
                }
            }
        }
    }

    /// The earliest expiry among the heads.
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.levels
            .iter()
            .filter_map(|l| front_expires(l).filter(|&t| t != 0))
            .min()
    }

    /// Takes every message out, as the items they are kept in.
    pub(super) fn take_all(&mut self) -> Vec<Item> {
        self.len = 0;
        self.bytes = 0;
        self.levels.iter_mut().flat_map(std::mem::take).collect()
    }

    /// Calls `f(seq, store_id, redelivered)` for every message.
    pub(super) fn for_each(&self, mut f: impl FnMut(u64, u64, bool)) {
        for item in self.levels.iter().flatten() {
            match item {
                Item::One(e) => f(e.seq, e.store_id(), e.redelivered),
                Item::Run(r) => r.iter().for_each(|e| f(e.seq, e.store_id, e.redelivered)),
            }
        }
    }

    /// The store ids of up to `n` paged-out messages near the head, in delivery order,
    /// and the store ticket after which they can all be read.
    pub(super) fn paged_ahead(&self, n: usize) -> (Vec<u64>, u64) {
        let mut ids = Vec::new();
        let mut ticket = 0;
        let mut scanned = 0;
        'levels: for level in self.levels.iter().rev() {
            for item in level {
                if ids.len() >= n || scanned >= 2 * n {
                    break 'levels;
                }
                match item {
                    Item::One(_) => scanned += 1,
                    Item::Run(r) => {
                        ticket = ticket.max(r.ticket());
                        let before = ids.len();
                        ids.extend(r.iter().take(n - before).map(|e| e.store_id));
                        scanned += ids.len() - before;
                    }
                }
            }
        }
        (ids, ticket)
    }

    /// Puts messages read back from the store into place: each paged message near the
    /// head whose store id is in `found` becomes a loaded one.
    pub(super) fn fill(&mut self, found: &mut HashMap<u64, Arc<Message>>, scan: usize) {
        for level in self.levels.iter_mut().rev() {
            let mut i = 0;
            while i < level.len() && i < scan && !found.is_empty() {
                let Item::Run(r) = &mut level[i] else {
                    i += 1;
                    continue;
                };
                let mut loaded = Vec::new();
                while let Some(h) = r.head()
                    && let Some(m) = found.remove(&h.store_id)
                    && let Some(e) = r.pop_front()
                {
                    loaded.push(ReadyEntry {
                        seq: e.seq,
                        slot: Slot::Loaded(m),
                        redelivered: e.redelivered,
                        expires: e.expires,
                    });
                }
                if r.is_empty() {
                    level.remove(i);
                }
                let n = loaded.len();
                for (k, e) in loaded.into_iter().enumerate() {
                    level.insert(i + k, Item::One(e));
                }
                // Past what was filled and the run that follows it.
                i += n + 1;
            }
        }
    }
}

/// Moves the entries to put back that come before position `before` to `merged`.
fn flush_before(
    merged: &mut Level,
    b: &mut std::iter::Peekable<std::vec::IntoIter<ReadyEntry>>,
    before: u64,
) {
    while let Some(e) = b.next_if(|e| e.seq < before) {
        push_entry(merged, e, 0);
    }
}

fn front_expires(level: &Level) -> Option<u64> {
    match level.front()? {
        Item::One(e) => Some(e.expires),
        Item::Run(r) => r.head().map(|h| h.expires),
    }
}

fn pop_level(level: &mut Level, l: usize) -> Option<ReadyEntry> {
    match level.front_mut()? {
        Item::One(_) => match level.pop_front() {
            Some(Item::One(e)) => Some(e),
            _ => None,
        },
        Item::Run(r) => {
            let e = r.pop_front();
            if r.is_empty() {
                level.pop_front();
            }
            e.map(|e| ReadyEntry::from_paged(e, l))
        }
    }
}

#[cfg(test)]
#[path = "ready_tests.rs"]
mod tests;

//! A compact run of paged-out queue entries: what a durable queue keeps in memory of
//! the persistent messages it paged out to the store.
//!
//! Each entry is encoded relative to the one before it. A queue's paged messages
//! mostly follow each other in position and store id, with the same body size, expiry
//! and redelivered flag: such an entry costs nothing but a share of a repeat byte
//! (up to 127 entries per byte). Other entries cost a flags byte and the varints of
//! what differs. The first entry of a run is kept decoded, so looking at the head of
//! a queue decodes nothing.

/// One paged-out entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagedEntry {
    /// Position in the queue.
    pub seq: u64,
    /// Id of the stored message.
    pub store_id: u64,
    /// When it expires (ms since the epoch); 0: never.
    pub expires: u64,
    pub body_len: u32,
    pub redelivered: bool,
}

impl PagedEntry {
    /// The entry that costs nothing after `self`: the next position and store id.
    fn successor(&self) -> PagedEntry {
        PagedEntry {
            seq: self.seq.wrapping_add(1),
            store_id: self.store_id.wrapping_add(1),
            ..*self
        }
    }
}

/// Most entries in one run: a run split to put a message back into its middle is
/// re-encoded whole.
const MAX_LEN: u32 = 1 << 16;
/// Most encoded bytes in one run (a run consumed at its head while it grows at its
/// tail would otherwise never be freed).
const MAX_BYTES: usize = 16 * 1024;

/// A token with this bit is a repeat: `token & 0x7f` successor entries.
const REPEAT: u8 = 0x80;
const MAX_REPEAT: u8 = 0x7f;
/// Flags of a full token: what differs from the previous entry's successor.
const TOGGLE_REDELIVERED: u8 = 1;
const SEQ: u8 = 2;
const STORE_ID: u8 = 4;
const BODY_LEN: u8 = 8;
const EXPIRES: u8 = 16;

/// Paged-out entries in position order, each encoded relative to the one before.
#[derive(Debug, Clone, Default)]
pub struct PagedRun {
    /// The first entry (meaningful while `len` > 0).
    head: PagedEntry,
    /// The last entry, which the next one is encoded against.
    tail: PagedEntry,
    /// The entries after `head`; `data[..pos]` is consumed.
    data: Vec<u8>,
    pos: usize,
    /// Where the last token starts (a repeat token there can count one more).
    last_token: usize,
    len: u32,
    /// Body bytes of the entries.
    bytes: u64,
    /// The highest store ticket of the entries: their writes are on disk, and they can
    /// be read back, once it is committed.
    ticket: u64,
}

impl PagedRun {
    pub fn new() -> PagedRun {
        PagedRun {
            last_token: usize::MAX,
            ..PagedRun::default()
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Body bytes of the entries.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The store ticket after whose commit every entry can be read back.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    pub fn head(&self) -> Option<&PagedEntry> {
        (self.len > 0).then_some(&self.head)
    }

    /// The last entry.
    pub fn tail(&self) -> Option<&PagedEntry> {
        (self.len > 0).then_some(&self.tail)
    }

    /// Memory the run holds beyond its own struct.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
    }

    /// Appends an entry placed after every entry in the run; false (nothing done) when
    /// it comes before the tail or the run is full.
    pub fn push(&mut self, e: PagedEntry, ticket: u64) -> bool {
        if self.len == 0 {
            self.head = e;
            self.tail = e;
            self.data.clear();
            self.pos = 0;
            self.last_token = usize::MAX;
        } else {
            if e.seq <= self.tail.seq || self.len >= MAX_LEN || self.data.len() >= MAX_BYTES {
                return false;
            }
            self.encode(e);
            self.tail = e;
        }
        self.len += 1;
        self.bytes += u64::from(e.body_len);
        self.ticket = self.ticket.max(ticket);
        true
    }

    fn encode(&mut self, e: PagedEntry) {
        let prev = self.tail;
        let next = prev.successor();
        if e == next {
            if self.last_token != usize::MAX
                && self.last_token >= self.pos
                && let Some(t) = self.data.get_mut(self.last_token)
                && *t & REPEAT != 0
                && *t & MAX_REPEAT < MAX_REPEAT
            {
                *t += 1;
                return;
            }
            self.last_token = self.data.len();
            self.data.push(REPEAT | 1);
            return;
        }
        self.last_token = self.data.len();
        let mut flags = 0;
        if e.redelivered != prev.redelivered {
            flags |= TOGGLE_REDELIVERED;
        }
        let at = self.data.len();
        self.data.push(0);
        if e.seq != next.seq {
            flags |= SEQ;
            put_varint(&mut self.data, e.seq - prev.seq);
        }
        if e.store_id != next.store_id {
            flags |= STORE_ID;
            put_varint(
                &mut self.data,
                zigzag(e.store_id.wrapping_sub(prev.store_id)),
            );
        }
        if e.body_len != prev.body_len {
            flags |= BODY_LEN;
            put_varint(&mut self.data, u64::from(e.body_len));
        }
        if e.expires != prev.expires {
            flags |= EXPIRES;
            put_varint(&mut self.data, zigzag(e.expires.wrapping_sub(prev.expires)));
        }
        self.data[at] = flags;
    }

    /// Takes the first entry.
    pub fn pop_front(&mut self) -> Option<PagedEntry> {
        if self.len == 0 {
            return None;
        }
        let first = self.head;
        self.len -= 1;
        self.bytes -= u64::from(first.body_len);
        if self.len == 0 {
            self.data = Vec::new();
            self.pos = 0;
            self.last_token = usize::MAX;
            return Some(first);
        }
        let token = self.data[self.pos];
        if token & REPEAT != 0 {
            self.head = first.successor();
            if token & MAX_REPEAT == 1 {
                self.pos += 1;
            } else {
                self.data[self.pos] = token - 1;
            }
        } else {
            let mut at = self.pos;
            self.head = decode_full(&self.data, &mut at, &first);
            self.pos = at;
        }
        Some(first)
    }

    /// The entries in order, without taking them.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            run: self,
            pos: self.pos,
            prev: None,
            repeat: 0,
            left: self.len,
        }
    }

    /// Moves the entries at positions `seq` and after into a new run.
    pub fn split_off(&mut self, seq: u64) -> PagedRun {
        let ticket = self.ticket;
        let mut before = PagedRun::new();
        let mut after = PagedRun::new();
        while let Some(e) = self.pop_front() {
            let run = if e.seq < seq { &mut before } else { &mut after };
            // Entries come in order: a run only refuses one when full, and a split
            // half holds no more than the whole did, which fit.
            run.push_unbounded(e, ticket);
        }
        *self = before;
        after
    }

    /// Appends an entry the caller knows comes after the tail, whatever the run's size.
    fn push_unbounded(&mut self, e: PagedEntry, ticket: u64) {
        if self.len == 0 {
            self.push(e, ticket);
            return;
        }
        self.encode(e);
        self.tail = e;
        self.len += 1;
        self.bytes += u64::from(e.body_len);
        self.ticket = self.ticket.max(ticket);
    }
}

/// The entries of a run in order.
pub struct Iter<'a> {
    run: &'a PagedRun,
    pos: usize,
    prev: Option<PagedEntry>,
    repeat: u8,
    left: u32,
}

impl Iterator for Iter<'_> {
    type Item = PagedEntry;

    fn next(&mut self) -> Option<PagedEntry> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let e = match self.prev {
            None => self.run.head,
            Some(prev) if self.repeat > 0 => {
                self.repeat -= 1;
                prev.successor()
            }
            Some(prev) => {
                let token = self.run.data[self.pos];
                if token & REPEAT != 0 {
                    self.pos += 1;
                    self.repeat = (token & MAX_REPEAT) - 1;
                    prev.successor()
                } else {
                    decode_full(&self.run.data, &mut self.pos, &prev)
                }
            }
        };
        self.prev = Some(e);
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// Decodes the full token at `*at` (not a repeat) against the entry before it.
fn decode_full(data: &[u8], at: &mut usize, prev: &PagedEntry) -> PagedEntry {
    let flags = data[*at];
    *at += 1;
    let mut e = prev.successor();
    if flags & TOGGLE_REDELIVERED != 0 {
        e.redelivered = !prev.redelivered;
    }
    if flags & SEQ != 0 {
        e.seq = prev.seq.wrapping_add(get_varint(data, at));
    }
    if flags & STORE_ID != 0 {
        e.store_id = prev.store_id.wrapping_add(unzigzag(get_varint(data, at)));
    }
    if flags & BODY_LEN != 0 {
        e.body_len = get_varint(data, at) as u32;
    }
    if flags & EXPIRES != 0 {
        e.expires = prev.expires.wrapping_add(unzigzag(get_varint(data, at)));
    }
    e
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint the run wrote itself (so well formed and in bounds).
fn get_varint(data: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&b) = data.get(*at) {
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

/// A wrapping difference as a small unsigned number either way.
fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(v: u64) -> u64 {
    ((v >> 1) as i64 ^ -((v & 1) as i64)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, store_id: u64) -> PagedEntry {
        PagedEntry {
            seq,
            store_id,
            expires: 0,
            body_len: 100,
            redelivered: false,
        }
    }

    #[test]
    fn consecutive_entries_cost_a_share_of_a_byte() {
        let mut run = PagedRun::new();
        for i in 0..10_000 {
            assert!(run.push(entry(i, 1000 + i), 0));
        }
        assert!(run.heap_bytes() < 200, "{} bytes", run.heap_bytes());
        assert_eq!(run.bytes(), 1_000_000);
        let all: Vec<_> = run.iter().collect();
        assert_eq!(
            all,
            (0..10_000).map(|i| entry(i, 1000 + i)).collect::<Vec<_>>()
        );
        for i in 0..10_000 {
            assert_eq!(run.pop_front(), Some(entry(i, 1000 + i)));
        }
        assert!(run.is_empty());
        assert_eq!(run.pop_front(), None);
    }

    #[test]
    fn any_sequence_in_order_comes_back_whole() {
        // Gaps, store ids going back and forth, expiries, sizes, redelivered flags.
        let mut expected = Vec::new();
        let mut seq = 5;
        let mut id: u64 = 1 << 40;
        for i in 0u64..2_000 {
            seq += 1 + (i % 7 == 0) as u64 * 1000;
            id = if i % 5 == 0 { id - 3 } else { id + 1 + i % 3 };
            expected.push(PagedEntry {
                seq,
                store_id: id,
                expires: if i % 11 < 5 {
                    0
                } else {
                    1_700_000_000_000 + i * 3
                },
                body_len: if i % 13 == 0 { 70_000 } else { 100 },
                redelivered: i % 17 < 3,
            });
        }
        let mut run = PagedRun::new();
        for e in &expected {
            assert!(run.push(*e, 7));
        }
        assert_eq!(run.iter().collect::<Vec<_>>(), expected);
        assert_eq!(run.ticket(), 7);
        // Taken from the front while more arrive at the back.
        let mut got = Vec::new();
        for _ in 0..1_000 {
            got.extend(run.pop_front());
        }
        let more = PagedEntry {
            seq: seq + 1,
            ..expected[expected.len() - 1].successor()
        };
        expected.push(more);
        assert!(run.push(more, 9));
        assert_eq!(run.ticket(), 9);
        assert_eq!(run.iter().collect::<Vec<_>>(), expected[1_000..]);
        while let Some(e) = run.pop_front() {
            got.push(e);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_run_refuses_what_would_break_its_order() {
        let mut run = PagedRun::new();
        assert!(run.push(entry(10, 1), 0));
        assert!(!run.push(entry(10, 2), 0));
        assert!(!run.push(entry(3, 2), 0));
        assert!(run.push(entry(11, 2), 0));
        assert_eq!(run.len(), 2);
    }

    #[test]
    fn a_split_keeps_both_halves_in_order() {
        let mut run = PagedRun::new();
        for i in 0..1_000 {
            run.push(entry(i * 2, i), 3);
        }
        let after = run.split_off(1001);
        assert_eq!(run.len(), 501);
        assert_eq!(after.len(), 499);
        assert_eq!(run.tail().map(|e| e.seq), Some(1000));
        assert_eq!(after.head().map(|e| e.seq), Some(1002));
        assert_eq!(after.ticket(), 3);
        let all: Vec<_> = run.iter().chain(after.iter()).collect();
        assert_eq!(all, (0..1_000).map(|i| entry(i * 2, i)).collect::<Vec<_>>());
    }

    #[test]
    fn a_repeat_token_being_consumed_can_still_grow() {
        let mut run = PagedRun::new();
        for i in 0..3 {
            run.push(entry(i, i), 0);
        }
        assert_eq!(run.pop_front(), Some(entry(0, 0)));
        run.push(entry(3, 3), 0);
        assert_eq!(run.pop_front(), Some(entry(1, 1)));
        assert_eq!(run.pop_front(), Some(entry(2, 2)));
        run.push(entry(4, 4), 0);
        assert_eq!(
            run.iter().collect::<Vec<_>>(),
            vec![entry(3, 3), entry(4, 4)]
        );
        assert_eq!(run.pop_front(), Some(entry(3, 3)));
        assert_eq!(run.pop_front(), Some(entry(4, 4)));
        assert_eq!(run.pop_front(), None);
    }
}

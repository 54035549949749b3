//! The ready list with paged runs: order, positions and counts whatever mix of
//! loaded and paged messages it holds.

use super::*;
use crate::model::memory::MemoryGauge;
use amq_protocol::protocol::BasicProperties;

fn loaded(seq: u64, priority: u8) -> ReadyEntry {
    let gauge = MemoryGauge::new(usize::MAX);
    let props = BasicProperties::default().with_priority(priority);
    let mut m = Message::new(
        "".into(),
        "q".into(),
        &props,
        bytes::Bytes::new(),
        bytes::Bytes::from(vec![b'x'; 10]),
        gauge.charge(10),
    );
    m.store_id = 1000 + seq;
    ReadyEntry {
        seq,
        slot: Slot::Loaded(Arc::new(m)),
        redelivered: true,
        expires: 0,
    }
}

fn paged(seq: u64, priority: u8) -> ReadyEntry {
    ReadyEntry {
        seq,
        slot: Slot::Paged {
            store_id: 1000 + seq,
            body_len: 10,
            priority,
        },
        redelivered: false,
        expires: 0,
    }
}

fn drain(r: &mut Ready) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    while let Some(e) = r.pop_front() {
        assert_eq!(e.store_id(), 1000 + e.seq);
        out.push((e.seq, e.is_paged()));
    }
    assert_eq!((r.len, r.bytes), (0, 0));
    out
}

#[test]
fn messages_put_back_into_the_middle_of_a_run_split_it_in_order() {
    let mut r = Ready::new(None);
    for seq in 0..1_000 {
        r.push_back(paged(seq * 2, 0), 0);
    }
    assert_eq!(r.levels[0].len(), 1, "one run");
    r.insert(loaded(501, 0));
    r.insert(loaded(3, 0));
    r.insert_many((0..20).map(|i| loaded(1_001 + i * 40, 0)).collect());
    assert_eq!(r.len, 1_022);
    assert_eq!(r.bytes, 10_220);
    let got = drain(&mut r);
    let mut expected: Vec<(u64, bool)> = (0..1_000).map(|s| (s * 2, true)).collect();
    expected.extend([(501, false), (3, false)]);
    expected.extend((0..20).map(|i| (1_001 + i * 40, false)));
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn loaded_and_paged_messages_interleave_in_order() {
    let mut r = Ready::new(None);
    for seq in 0..300 {
        let e = if seq % 7 == 0 || seq < 10 {
            loaded(seq, 0)
        } else {
            paged(seq, 0)
        };
        r.push_back(e, 0);
    }
    let expected: Vec<(u64, bool)> = (0..300).map(|s| (s, !(s % 7 == 0 || s < 10))).collect();
    let mut seen = Vec::new();
    r.for_each(|seq, id, _| seen.push((seq, id)));
    assert_eq!(seen, (0..300).map(|s| (s, 1000 + s)).collect::<Vec<_>>());
    assert_eq!(drain(&mut r), expected);
}

#[test]
fn reading_back_fills_the_paged_head_in_place() {
    let mut r = Ready::new(None);
    r.push_back(loaded(0, 0), 0);
    for seq in 1..100 {
        r.push_back(paged(seq, 0), 5);
    }
    let (ids, ticket) = r.paged_ahead(10);
    assert_eq!(ids, (1001..1011).collect::<Vec<_>>());
    assert_eq!(ticket, 5);
    let mut found: HashMap<u64, Arc<Message>> = HashMap::new();
    for id in &ids {
        if let Slot::Loaded(m) = loaded(id - 1000, 0).slot {
            found.insert(*id, m);
        }
    }
    r.fill(&mut found, 100);
    assert!(found.is_empty());
    let got = drain(&mut r);
    assert_eq!(got[..11], (0..11).map(|s| (s, false)).collect::<Vec<_>>());
    assert!(got[11..].iter().all(|(_, p)| *p));
    assert_eq!(got.len(), 100);
}

#[test]
fn priority_levels_keep_their_own_runs() {
    let mut r = Ready::new(Some(2));
    for seq in 0..90 {
        // Priority 5 is above the maximum: it shares level 2.
        r.push_back(paged(seq, [0, 1, 2, 5, 1][seq as usize % 5]), 0);
    }
    let got: Vec<u64> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
    let level = |s: u64| [0, 1, 2, 2, 1][s as usize % 5];
    let mut expected: Vec<u64> = (0..90).collect();
    expected.sort_by_key(|&s| (std::cmp::Reverse(level(s)), s));
    assert_eq!(got, expected);
}

#[test]
fn expiry_takes_paged_heads_in_batches() {
    let mut r = Ready::new(None);
    for seq in 0..100 {
        let mut e = paged(seq, 0);
        e.expires = if seq < 60 { 5 } else { 0 };
        r.push_back(e, 0);
    }
    assert_eq!(r.next_expiry(), Some(5));
    let mut dead = Vec::new();
    r.drop_expired(10, &mut dead, 25);
    assert_eq!(dead.len(), 25);
    r.drop_expired(10, &mut dead, 1_000);
    assert_eq!(dead.len(), 60);
    assert!(dead.iter().enumerate().all(|(i, (e, _))| e.seq == i as u64));
    assert_eq!(r.next_expiry(), None);
    assert_eq!(r.len, 40);
}

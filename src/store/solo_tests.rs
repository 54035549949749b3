//! The `solo` form on a real store: what its records hold after deletes and acks, and
//! reading paged messages of both forms back by queue.

use super::*;
use crate::store::{Op, Store};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::FieldTable;
use bytes::Bytes;
use redb::{Database, ReadableDatabase};

use crate::store::stream::tests::{OPTIONS, unstored};

fn message(store: &Store, memory: &Arc<MemoryGauge>, body: &str) -> Arc<Message> {
    let mut m = unstored(memory, body);
    m.store_id = store.new_message_id();
    Arc::new(m)
}

/// The `solo` records of `queue` in the closed store at `dir`.
fn solo_records(dir: &Path, queue: u64) -> usize {
    let db = Database::open(dir.join("warren.redb")).expect("reopen");
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(SOLO).expect("solo table");
    table
        .range((queue, 0)..=(queue, u64::MAX))
        .expect("range")
        .count()
}

#[tokio::test]
async fn a_deleted_queue_leaves_no_record_and_an_acked_message_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = MemoryGauge::new(usize::MAX);
    let (store, _) = Store::open(dir.path(), &memory, OPTIONS).expect("open");
    let (gone, kept) = (store.new_queue_id(), store.new_queue_id());
    store.put_queue("/", "gone", gone, false, &FieldTable::default());
    store.put_queue("/", "kept", kept, false, &FieldTable::default());
    let mut ticket = 0;
    for seq in 0..3 {
        ticket = store.put_solo(gone, seq, message(&store, &memory, "g"), 0);
    }
    store.wait_committed(ticket).await;
    let acked = message(&store, &memory, "acked");
    store.put_solo(kept, 0, acked.clone(), 0);
    store.put_solo(kept, 1, message(&store, &memory, "stays"), 0);
    store.remove(kept, 0, acked.store_id);
    let ticket = store.delete_queue("/", "gone", gone);
    assert!(store.wait_committed(ticket).await);
    store.close();
    assert_eq!(
        solo_records(dir.path(), gone),
        0,
        "the deleted queue's records"
    );
    assert_eq!(solo_records(dir.path(), kept), 1, "only the unacked record");
}

#[tokio::test]
async fn paged_messages_are_read_back_per_queue_from_either_form() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = MemoryGauge::new(usize::MAX);
    let (store, _) = Store::open(dir.path(), &memory, OPTIONS).expect("open");
    let (a, b) = (store.new_queue_id(), store.new_queue_id());
    let own = message(&store, &memory, "own");
    let shared = message(&store, &memory, "shared");
    store.put_solo(a, 0, own.clone(), 0);
    store.put_message(shared.store_id, 2, shared.clone());
    store.enqueue(a, 1, shared.store_id, 0);
    let ticket = store.enqueue(b, 0, shared.store_id, 0);
    assert!(store.wait_committed(ticket).await);
    let bodies = |loaded: Vec<Option<Arc<Message>>>| -> Vec<Option<Bytes>> {
        loaded
            .into_iter()
            .map(|m| m.map(|m| m.body.clone()))
            .collect()
    };
    assert_eq!(
        bodies(store.load(a, &[own.store_id, shared.store_id])),
        vec![Some(Bytes::from("own")), Some(Bytes::from("shared"))]
    );
    // Another queue does not see a's own message; the shared body is there for it.
    assert_eq!(
        bodies(store.load(b, &[own.store_id, shared.store_id])),
        vec![None, Some(Bytes::from("shared"))]
    );
    store.close();
}

#[test]
fn a_message_stored_and_acked_in_one_batch_is_never_written() {
    let memory = MemoryGauge::new(usize::MAX);
    let msg = |id: u64| {
        let mut m = Message::new(
            "".into(),
            "q".into(),
            &BasicProperties::default(),
            Bytes::from_static(&[0, 0]),
            Bytes::from_static(b"x"),
            memory.charge(1),
        );
        m.store_id = id;
        Arc::new(m)
    };
    let put = |queue, seq, id| Op::PutSolo {
        queue,
        seq,
        msg: msg(id),
        expires: 0,
    };
    let mut batch = vec![
        (1, put(1, 0, 10)),
        (2, put(1, 1, 11)),
        (3, put(2, 0, 12)),
        // Acked in the batch: 10 in queue 1. Not 12: the remove names queue 1.
        (
            4,
            Op::Remove {
                queue: 1,
                seq: 0,
                msg: 10,
            },
        ),
        (
            5,
            Op::Remove {
                queue: 1,
                seq: 0,
                msg: 12,
            },
        ),
    ];
    super::super::writer::cancel_consumed(&mut batch);
    let skipped: Vec<u64> = batch
        .iter()
        .filter(|(_, op)| matches!(op, Op::Skip))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(skipped, vec![1, 4]);
}

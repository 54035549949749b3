//! The stream log on a real store: appends, reads, seeks, truncation, recovery.

use super::*;
use crate::store::{Store, StoreOptions};
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

/// Small store options for tests (shared with the `solo` tests).
pub(in crate::store) const OPTIONS: StoreOptions = StoreOptions {
    cache_bytes: 1 << 20,
    page_after: 1000,
    max_batch: 1000,
    backlog_bytes: 1 << 20,
};

/// A message with empty properties and `body` (shared with the `solo` tests).
pub(in crate::store) fn unstored(memory: &Arc<MemoryGauge>, body: &str) -> Message {
    Message::new(
        "".into(),
        "s".into(),
        &BasicProperties::default(),
        // Empty properties: a zero flags word.
        Bytes::from_static(&[0, 0]),
        Bytes::copy_from_slice(body.as_bytes()),
        memory.charge(body.len()),
    )
}

fn message(memory: &Arc<MemoryGauge>, body: &str) -> Arc<Message> {
    Arc::new(unstored(memory, body))
}

fn body(e: &StreamEntry) -> &[u8] {
    &e.message.body
}

#[tokio::test]
async fn appends_read_back_in_order_survive_a_restart_and_truncate_by_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = MemoryGauge::new(usize::MAX);
    let (store, _) = Store::open(dir.path(), &memory, OPTIONS).expect("open");
    // Two segments: offsets 0..3 (chunks at 0 and 2) and 3..5 (chunk at 3).
    let mut ticket = 0;
    for (offset, ts, segment, chunk) in [
        (0, 100, 0, true),
        (1, 100, 0, false),
        (2, 200, 0, true),
        (3, 300, 3, true),
        (4, 300, 3, false),
    ] {
        ticket = store.stream_append(
            7,
            offset,
            ts,
            segment,
            chunk,
            message(&memory, &format!("m{offset}")),
        );
    }
    assert!(store.wait_committed(ticket).await);

    let all = store.stream_read(7, 0, 100, usize::MAX).expect("read");
    let bodies: Vec<&[u8]> = all.iter().map(body).collect();
    assert_eq!(bodies, [b"m0", b"m1", b"m2", b"m3", b"m4"]);
    assert_eq!(all[3].offset, 3);
    assert_eq!(all[3].timestamp, 300);
    let some = store.stream_read(7, 2, 2, usize::MAX).expect("read");
    assert_eq!(some.iter().map(|e| e.offset).collect::<Vec<_>>(), [2, 3]);
    // At least one message, however small the byte budget.
    assert_eq!(store.stream_read(7, 1, 100, 1).expect("read").len(), 1);
    assert!(
        store
            .stream_read(8, 0, 100, usize::MAX)
            .expect("read")
            .is_empty()
    );

    assert_eq!(store.stream_seek_time(7, 0, 150).expect("seek"), Some(2));
    assert_eq!(store.stream_seek_time(7, 0, 100).expect("seek"), Some(0));
    assert_eq!(store.stream_seek_time(7, 0, 301).expect("seek"), None);

    store.close();
    drop(store);
    let (store, recovered) = Store::open(dir.path(), &memory, OPTIONS).expect("reopen");
    // No queue record names stream 7: recovery reads logs of declared streams
    // only, so read the tables through the store.
    assert!(recovered.queues.is_empty());
    let txn_log = {
        let db = store.db.lock().expect("lock").clone().expect("open db");
        let txn = redb::ReadableDatabase::begin_read(&*db).expect("read txn");
        let segments = txn.open_table(STREAM_SEGMENTS).expect("segments");
        let chunks = txn.open_table(STREAM_CHUNKS).expect("chunks");
        let tracking = txn.open_table(STREAM_TRACKING).expect("tracking");
        recover(&segments, &chunks, &tracking, 7).expect("recover")
    };
    assert_eq!(txn_log.first(), 0);
    assert_eq!(txn_log.next(), 5);
    assert_eq!(txn_log.last_chunk, 3);
    assert_eq!(txn_log.segments.len(), 2);
    assert_eq!(txn_log.segments[0].count, 3);
    assert_eq!(
        (txn_log.segments[1].first_ts, txn_log.segments[1].last_ts),
        (300, 300)
    );

    let t = store.stream_truncate(7, 3);
    assert!(store.wait_committed(t).await);
    let rest = store.stream_read(7, 0, 100, usize::MAX).expect("read");
    assert_eq!(rest.iter().map(|e| e.offset).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(store.stream_seek_time(7, 0, 0).expect("seek"), Some(3));
    store.close();
}

#[tokio::test]
async fn a_truncate_in_the_same_batch_as_appends_leaves_no_stale_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = MemoryGauge::new(usize::MAX);
    let (store, _) = Store::open(dir.path(), &memory, OPTIONS).expect("open");
    store.stream_append(1, 0, 10, 0, true, message(&memory, "a"));
    store.stream_append(1, 1, 20, 1, true, message(&memory, "b"));
    let t = store.stream_truncate(1, 1);
    assert!(store.wait_committed(t).await);
    let db = store.db.lock().expect("lock").clone().expect("open db");
    let txn = redb::ReadableDatabase::begin_read(&*db).expect("read txn");
    let segments = txn.open_table(STREAM_SEGMENTS).expect("segments");
    let chunks = txn.open_table(STREAM_CHUNKS).expect("chunks");
    let tracking = txn.open_table(STREAM_TRACKING).expect("tracking");
    let log = recover(&segments, &chunks, &tracking, 1).expect("recover");
    assert_eq!(
        log.segments.iter().map(|s| s.first).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!((log.first(), log.next(), log.last_chunk), (1, 2, 1));
    drop((segments, chunks, tracking, txn, db));
    store.close();
}

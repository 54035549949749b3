//! Durable queues past their in-memory budget keep only a compact index of their
//! paged-out persistent messages: memory stays flat however many are queued, with
//! stalled consumers of either kind, and every message still comes back in order,
//! through consumers, basic.get, expiry, length limits and dead-lettering, and across
//! a restart.

mod common;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, connection};
use common::binary::{resident, start_warren};
use common::counts::{number, ready, settled, wait_ready};
use common::raw::{Got, Raw, method_frame};
use common::{TestBroker, persistent, unique};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use std::time::Duration;

/// Publishes messages `from..to` (fire and forget), then waits until all are queued.
async fn fill(uri: &str, publisher: &mut Raw, queue: &str, from: u32, to: u32) {
    let mut batch = Vec::new();
    for n in from..to {
        batch.extend(common::counts::persistent_publish(1, queue, n));
        if batch.len() > 1 << 20 {
            publisher.send(&batch).await;
            batch.clear();
        }
    }
    publisher.send(&batch).await;
    assert_eq!(wait_ready(uri, queue, to).await, to, "all published");
    // A confirmed persistent message is committed with everything sent before it:
    // then nothing waits in the store's write backlog.
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = common::confirm_channel(&conn).await;
    let scratch = unique("barrier");
    declare(&ch, &scratch, &[]).await;
    common::publish_confirmed(&ch, "", &scratch, b"x", persistent()).await;
    ch.queue_delete(scratch.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = conn.close(200, "bye".into()).await;
}

async fn stalled_consumer(uri: &str, queue: &str, no_ack: bool, tag: &str) -> Raw {
    let mut raw = Raw::opened(uri, 131_072).await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.into(),
            consumer_tag: tag.into(),
            no_local: false,
            no_ack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    raw
}

/// Bytes of resident memory each queued message may add: its share of the paged
/// index is a fraction of a byte; the old index took 40 bytes and more.
const BYTES_PER_MESSAGE: usize = 12;
/// What else may move between two samples (allocator caches, buffers).
const SLACK: usize = 12 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_paged_messages_and_stalled_consumers_keep_memory_flat() {
    const WARM: u32 = 200_000;
    const N: u32 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("warren.toml");
    let (child, uri) = start_warren(|port| {
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nlog_level = \"warn\"\n\
                 queue_memory_messages = 1000\nstore_cache_mb = 8\nstore_backlog_mb = 4\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config written");
        vec!["--config".into(), file.clone().into()]
    })
    .await;
    let pid = child.id().expect("pid");
    let queue = unique("paged");
    let mut publisher = Raw::opened(&uri, 131_072).await;
    publisher.declare_queue(1, &queue, true, false).await;
    // A first share warms up what does not grow with the queue (the store's cache,
    // its write backlog, buffers); then memory must stay flat.
    fill(&uri, &mut publisher, &queue, 0, WARM).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warm = resident(pid);
    fill(&uri, &mut publisher, &queue, WARM, N).await;
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full = resident(pid);
    let bound = warm + (N - WARM) as usize * BYTES_PER_MESSAGE + SLACK;
    assert!(
        full < bound,
        "{} more messages took resident memory from {} to {} MB",
        N - WARM,
        warm >> 20,
        full >> 20
    );

    // Stalled consumers of both kinds: each is handed a bounded share, never the queue.
    let mut no_ack = stalled_consumer(&uri, &queue, true, "no-ack").await;
    settled(&uri, &queue).await;
    let manual = stalled_consumer(&uri, &queue, false, "manual").await;
    let left = settled(&uri, &queue).await;
    assert!(left > N / 2, "stalled consumers took {} messages", N - left);
    let stalled = resident(pid);
    assert!(
        stalled < bound + (16 << 20),
        "with stalled consumers resident memory went from {} to {} MB",
        full >> 20,
        stalled >> 20
    );

    // The no-ack consumer closes, reading what it was sent until close-ok: those
    // are gone, the rest of its share is back. The manual-ack one vanishes: all its
    // unacked deliveries come back.
    no_ack
        .send(&method_frame(0, common::raw::connection_close()))
        .await;
    let mut received = Vec::new();
    loop {
        match no_ack.next().await {
            Got::Frame(AMQPFrame::Body(1, body)) => received.push(number(&body)),
            Got::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
            )) => break,
            Got::Frame(_) => {}
            Got::Eof => panic!("socket closed before close-ok"),
        }
    }
    drop(manual);
    let k = received.len() as u32;
    assert_eq!(
        wait_ready(&uri, &queue, N - k).await,
        N - k,
        "the rest is back"
    );

    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let received: std::collections::HashSet<u32> = received.into_iter().collect();
    let mut expected = (0..N).filter(|n| !received.contains(n));
    let mut redelivered = 0;
    for i in 0..N - k {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("the rest arrives")
            .expect("consumer open")
            .expect("delivery");
        assert_eq!(
            Some(number(&d.data)),
            expected.next(),
            "delivery {i} in order"
        );
        if d.redelivered {
            redelivered += 1;
        }
        if i % 500 == 499 || i == N - k - 1 {
            d.ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    // Only what the manual-ack consumer was sent can come back redelivered.
    assert!(
        redelivered <= N - left,
        "{redelivered} redelivered of {} handed out",
        N - left
    );
    assert_eq!(ready(&uri, &queue).await, 0);
    let drained = resident(pid);
    assert!(
        drained < bound + (16 << 20),
        "drained: {} MB",
        drained >> 20
    );
    eprintln!(
        "resident memory: {} MB warm ({WARM} queued), {} MB with {N}, {} MB with stalled \
         consumers, {} MB drained",
        warm >> 20,
        full >> 20,
        stalled >> 20,
        drained >> 20
    );
    let _ = conn.close(200, "bye".into()).await;
    drop(child);
}

/// A broker whose durable queues keep 10 messages in memory: everything else is paged.
async fn small_budget() -> Option<TestBroker> {
    let broker = TestBroker::start_with(|c| c.queue_memory_messages = 10).await;
    // The budget is the broker's own setting: meaningless against another broker.
    (!broker.external()).then_some(broker)
}

fn body(i: u32) -> Vec<u8> {
    let mut b = format!("{i:010}").into_bytes();
    b.resize(100, b'.');
    b
}

async fn declare(ch: &Channel, name: &str, args: &[(&str, AMQPValue)]) {
    let mut table = FieldTable::default();
    for (k, v) in args {
        table.insert((*k).into(), v.clone());
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), options, table)
        .await
        .expect("declare");
}

/// Publishes persistent messages `0..n` (priority `priority(i)`) and waits for every
/// confirm.
async fn publish_all(ch: &Channel, queue: &str, n: u32, priority: impl Fn(u32) -> u8) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut confirms = Vec::new();
    for i in 0..n {
        let props = persistent().with_priority(priority(i));
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body(i),
                props,
            )
            .await
            .expect("publish");
        confirms.push(c);
    }
    for c in confirms {
        assert!(c.await.expect("confirm").is_ack());
    }
}

async fn get_numbers(ch: &Channel, queue: &str) -> Vec<(u32, bool)> {
    common::get_all(ch, queue)
        .await
        .into_iter()
        .map(|(b, r)| (number(&b), r))
        .collect()
}

async fn wait_for(conn: &Connection, queue: &str, n: u32) -> u32 {
    let mut last = 0;
    for _ in 0..300 {
        last = common::ready(conn, queue).await;
        if last == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_messages_expire_into_the_dead_letter_queue_in_order() {
    let Some(broker) = small_budget().await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let (source, target) = (unique("ttl-src"), unique("ttl-dlq"));
    declare(&ch, &target, &[]).await;
    declare(
        &ch,
        &source,
        &[
            ("x-message-ttl", AMQPValue::LongInt(300)),
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(target.as_str().into()),
            ),
        ],
    )
    .await;
    publish_all(&ch, &source, 2_000, |_| 0).await;
    assert_eq!(
        wait_for(&conn, &target, 2_000).await,
        2_000,
        "all dead-lettered"
    );
    assert_eq!(common::ready(&conn, &source).await, 0);
    let got: Vec<u32> = get_numbers(&ch, &target)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, (0..2_000).collect::<Vec<_>>(), "in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_paged_heads_to_the_dead_letter_queue_in_order() {
    let Some(broker) = small_budget().await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let (source, target) = (unique("maxlen-src"), unique("maxlen-dlq"));
    declare(&ch, &target, &[]).await;
    declare(
        &ch,
        &source,
        &[
            ("x-max-length", AMQPValue::LongInt(100)),
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(target.as_str().into()),
            ),
        ],
    )
    .await;
    publish_all(&ch, &source, 2_000, |_| 0).await;
    assert_eq!(wait_for(&conn, &target, 1_900).await, 1_900);
    let kept = get_numbers(&ch, &source).await;
    assert_eq!(
        kept,
        (1_900..2_000).map(|n| (n, false)).collect::<Vec<_>>(),
        "the newest 100 stay, in order"
    );
    let dropped: Vec<u32> = get_numbers(&ch, &target)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        dropped,
        (0..1_900).collect::<Vec<_>>(),
        "dropped heads in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_priority_messages_survive_a_restart_and_requeue_to_their_positions() {
    let Some(broker) = small_budget().await else {
        return;
    };
    let queue = unique("paged-prio");
    {
        let (conn, ch) = broker.channel().await;
        declare(
            &ch,
            &queue,
            &[("x-max-priority", AMQPValue::ShortShortInt(3))],
        )
        .await;
        // Priorities 0..=4: 4 is above the maximum and counts as 3.
        publish_all(&ch, &queue, 1_000, |i| (i % 5) as u8).await;
        conn.close(200, "bye".into()).await.expect("close");
    }
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    let level = |i: u32| (i % 5).min(3);
    let mut expected: Vec<u32> = (0..1_000).collect();
    expected.sort_by_key(|&i| (std::cmp::Reverse(level(i)), i));

    // Take a few without acking, give them back in another order: each returns to
    // its own position, marked redelivered.
    let mut taken = Vec::new();
    for _ in 0..7 {
        let m = ch
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("a message");
        taken.push(m);
    }
    let numbers: Vec<u32> = taken.iter().map(|m| number(&m.delivery.data)).collect();
    assert_eq!(
        numbers,
        expected[..7],
        "the head, by priority then position"
    );
    for m in taken.iter().rev() {
        m.delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack");
    }
    let all = get_numbers(&ch, &queue).await;
    let order: Vec<u32> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(order, expected, "priority order, positions kept");
    assert!(
        all[..7].iter().all(|(_, r)| *r),
        "requeued ones are redelivered"
    );
    assert!(all[7..].iter().all(|(_, r)| !r), "the others are not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_and_expired_paged_messages_leave_the_store() {
    let Some(broker) = small_budget().await else {
        return;
    };
    let (purged, expired) = (unique("paged-purge"), unique("paged-expire"));
    {
        let (conn, ch) = broker.channel().await;
        declare(&ch, &purged, &[]).await;
        declare(&ch, &expired, &[("x-message-ttl", AMQPValue::LongInt(200))]).await;
        publish_all(&ch, &purged, 500, |_| 0).await;
        publish_all(&ch, &expired, 500, |_| 0).await;
        let n = ch
            .queue_purge(purged.as_str().into(), QueuePurgeOptions::default())
            .await
            .expect("purge");
        assert_eq!(n, 500);
        assert_eq!(wait_for(&conn, &expired, 0).await, 0, "all expired");
        // One more after them, to see that the queues still work.
        publish_all(&ch, &purged, 1, |_| 0).await;
        conn.close(200, "bye".into()).await.expect("close");
    }
    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(common::ready(&conn, &expired).await, 0);
    assert_eq!(get_numbers(&ch, &purged).await, vec![(0, false)]);
}

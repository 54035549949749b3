//! Resource alarms as RabbitMQ raises them: memory over the high watermark (the
//! process's resident memory counts, not only what messages hold) and free disk space
//! under its limit block publishing connections (connection.blocked) until they clear.

mod common;

use common::TestBroker;
use common::binary::{resident, start_warren};
use futures_lite::StreamExt;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, Event};
use std::time::Duration;
use tokio::process::Child;

const WAIT: Duration = Duration::from_secs(60);

/// The real binary with `config` (TOML) as its configuration file.
async fn start_binary(dir: &std::path::Path, config: &str) -> (Child, String) {
    let file = dir.join("warren.toml");
    start_warren(|port| {
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nlog_level = \"warn\"\n{config}",
                dir.join("data").display()
            ),
        )
        .expect("config written");
        vec!["--config".into(), file.clone().into()]
    })
    .await
}

async fn next_blocked(events: &mut (impl futures_lite::Stream<Item = Event> + Unpin)) -> String {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let Event::ConnectionBlocked(reason) = e {
                return reason;
            }
        }
        panic!("connection gone before connection.blocked");
    })
    .await
    .expect("connection.blocked arrives")
}

async fn next_unblocked(events: &mut (impl futures_lite::Stream<Item = Event> + Unpin)) {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let Event::ConnectionUnblocked = e {
                return;
            }
        }
        panic!("connection gone before connection.unblocked");
    })
    .await
    .expect("connection.unblocked arrives")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_flood_is_stopped_near_the_watermark_and_resumes_when_drained() {
    const WATERMARK: usize = 256 * 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, uri) = start_binary(
        dir.path(),
        &format!("memory_high_watermark = {WATERMARK}\n"),
    )
    .await;
    let pid = child.id().expect("pid");
    let publisher = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let mut events = publisher.events_listener();
    let ch = publisher.create_channel().await.expect("channel");
    ch.queue_declare(
        "flood".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // A queue with no consumer, fed as fast as the client can: only the alarm stops it.
    let flood = tokio::spawn(async move {
        let body = vec![b'x'; 4096];
        loop {
            if ch
                .basic_publish(
                    "".into(),
                    "flood".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .is_err()
            {
                return;
            }
        }
    });
    assert_eq!(next_blocked(&mut events).await, "low on memory");
    // Blocked connections are not read: memory stops growing near the watermark (the
    // margin covers what was in flight and the sampling interval).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = resident(pid);
    assert!(
        rss < WATERMARK + 192 * 1024 * 1024,
        "resident memory {} MB with a {} MB watermark",
        rss >> 20,
        WATERMARK >> 20
    );

    // A connection that has not published is not blocked: it drains the queue, and
    // the publisher is unblocked once the memory is back under the watermark.
    let other = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let drain = other.create_channel().await.expect("channel");
    let purged = drain
        .queue_purge("flood".into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert!(purged > 10_000, "{purged} messages were queued");
    next_unblocked(&mut events).await;
    flood.abort();
    drop(child);
}

#[tokio::test]
async fn low_disk_space_blocks_publishers_but_not_consumers() {
    // No file system has this much free space: the disk alarm goes on at the
    // first sample.
    let broker = TestBroker::start_with(|c| c.disk_free_limit_bytes = u64::MAX).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_consumer_conn, consumer_ch) = broker.channel().await;
    consumer_ch
        .queue_declare(
            "disk".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let mut deliveries = common::consume_no_ack(&consumer_ch, "disk", "c").await;

    let publisher = broker.connect().await;
    let mut events = publisher.events_listener();
    let ch = publisher.create_channel().await.expect("channel");
    ch.basic_publish(
        "".into(),
        "disk".into(),
        BasicPublishOptions::default(),
        b"before the block",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(next_blocked(&mut events).await, "low on disk");
    // The message published before the block reaches the consumer.
    let d = common::next(&mut deliveries).await;
    assert_eq!(d.data, b"before the block");
}

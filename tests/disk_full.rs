//! A full disk while running: publishers waiting on confirms get basic.nack, nothing
//! confirmed is lost, and the broker takes writes again once space returns.
//!
//! The "full disk" is the process's file size limit (RLIMIT_FSIZE) set to the store
//! file's current size: the store's writes beyond it fail as they would on a full
//! disk. This file holds one test, because the limit applies to the whole process.

mod common;

use common::TestBroker;
use lapin::options::*;
use lapin::{Channel, Confirmation, PublisherConfirm};

fn set_file_limit(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct passed by reference.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) };
    assert_eq!(rc, 0, "setrlimit");
}

/// Sends a persistent message to "precious"; the confirm is awaited separately.
async fn send(ch: &Channel, body: &[u8]) -> PublisherConfirm {
    ch.basic_publish(
        "".into(),
        "precious".into(),
        BasicPublishOptions::default(),
        body,
        common::persistent(),
    )
    .await
    .expect("publish")
}

async fn publish(ch: &Channel, body: &[u8]) -> Confirmation {
    send(ch, body).await.await.expect("confirm")
}

#[tokio::test]
async fn full_disk_nacks_publishes_and_recovers_when_space_returns() {
    // SAFETY: ignoring SIGXFSZ makes an over-limit write fail with EFBIG instead of
    // killing the process; nothing else in this test binary handles that signal.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Once with group commit as configured by default, and once with one commit per
    // store operation: there a message's body and its index entry always land in
    // different commits, and the first may fail while the second succeeds.
    fill_the_disk(TestBroker::start().await).await;
    fill_the_disk(TestBroker::start_with(|c| c.store_max_batch = 1).await).await;
}

async fn fill_the_disk(broker: TestBroker) {
    let Some(dir) = broker.data_dir() else {
        return;
    };
    let (_conn, ch) = broker.channel().await;
    common::declare_durable(&ch, "precious").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut confirmed: Vec<Vec<u8>> = Vec::new();
    for i in 0..10u8 {
        let body = vec![i; 100];
        assert!(matches!(publish(&ch, &body).await, Confirmation::Ack(_)));
        confirmed.push(body);
    }

    // The disk fills up, leaving room for a few of the larger messages.
    let size = std::fs::metadata(dir.join("warren.redb"))
        .expect("store file")
        .len();
    set_file_limit(size + 512 * 1024);
    // Several publishes in flight at once, from two channels, so that a message's
    // writes (its body, its index entry) often land in different commits.
    let (_conn2, ch2) = broker.channel().await;
    ch2.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut nacked = 0;
    for round in 0..16u8 {
        let mut pending = Vec::new();
        for i in 0..8u8 {
            let body = vec![100 + round * 8 + i; 16 * 1024 * (1 + usize::from(i % 4))];
            let channel = if i % 2 == 0 { &ch } else { &ch2 };
            let confirm = send(channel, &body).await;
            pending.push((body, confirm));
        }
        for (body, confirm) in pending {
            match confirm.await.expect("confirm") {
                Confirmation::Nack(_) => nacked += 1,
                Confirmation::Ack(_) => confirmed.push(body),
                Confirmation::NotRequested => panic!("confirms are on"),
            }
        }
    }
    assert!(nacked > 0, "writes past the full disk are nacked");

    // A transaction whose writes fail is not committed: tx.commit gets an error
    // (the connection closes with 541) rather than commit-ok.
    let (_conn3, tx) = broker.channel().await;
    tx.tx_select().await.expect("tx.select");
    let mut refused = false;
    for i in 0..16u8 {
        let body = vec![240 + i % 16; 48 * 1024];
        drop(send(&tx, &body).await);
        match tx.tx_commit().await {
            Ok(()) => confirmed.push(body),
            Err(e) => {
                let (code, text) = common::amqp_error(&e);
                assert_eq!(code, 541, "{text}");
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "a transaction past the full disk is refused");

    // Space returns: new publishes are confirmed again.
    set_file_limit(libc::RLIM_INFINITY);
    let mut recovered = false;
    for _ in 0..50 {
        let body = b"after".to_vec();
        if let Confirmation::Ack(_) = publish(&ch, &body).await {
            confirmed.push(body);
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store takes writes again");

    // Everything confirmed is there after a restart; nacked messages may or may not be.
    drop(ch);
    drop(ch2);
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    let mut found = Vec::new();
    while let Some(m) = ch
        .basic_get("precious".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        found.push(m.delivery.data);
    }
    for body in &confirmed {
        assert!(
            found.contains(body),
            "a confirmed message of {} bytes is missing",
            body.len()
        );
    }
    broker.stop().await;
}

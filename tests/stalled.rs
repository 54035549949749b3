//! Consumers whose peer stops reading: a queue hands such a connection only a bounded
//! number of deliveries (the rest wait in the queue, paged out if durable), nothing
//! that never reached the socket is lost when it closes, and every unacked delivery
//! is back in its queue, in order, as soon as the connection goes.

mod common;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, connection};
use amq_protocol::types::FieldTable;
use common::counts::{number, persistent_publish};
use common::raw::{Got, Raw, method_frame};
use common::{TestBroker, unique};
use futures_lite::StreamExt;
use std::time::Duration;

/// Messages in each test: far more than a stalled connection may be handed.
const N: u32 = 100_000;

/// A broker whose durable queues keep 1,000 messages in memory, and a durable queue
/// holding `N` persistent messages numbered 0..N.
async fn filled_queue() -> (TestBroker, String) {
    let broker = TestBroker::start_with(|c| c.queue_memory_messages = 1_000).await;
    let queue = unique("stalled");
    let mut publisher = Raw::opened(&broker.uri, 131_072).await;
    publisher.declare_queue(1, &queue, true, false).await;
    let mut batch = Vec::new();
    for n in 0..N {
        batch.extend(persistent_publish(1, &queue, n));
        if batch.len() > 1 << 20 {
            publisher.send(&batch).await;
            batch.clear();
        }
    }
    publisher.send(&batch).await;
    assert_eq!(
        common::counts::wait_ready(&broker.uri, &queue, N).await,
        N,
        "all published"
    );
    drop(publisher);
    (broker, queue)
}

/// Opens a raw connection that subscribes to `queue` and then reads nothing.
async fn stalled_consumer(broker: &TestBroker, queue: &str, no_ack: bool) -> Raw {
    let mut raw = Raw::opened(&broker.uri, 131_072).await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.into(),
            consumer_tag: "stalled".into(),
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

/// Consumes everything left in `queue` with lapin; returns (number, redelivered).
async fn drain(broker: &TestBroker, queue: &str, expected: u32) -> Vec<(u32, bool)> {
    let (conn, ch) = broker.channel().await;
    let mut consumer = common::consume_no_ack(&ch, queue, "drain").await;
    let mut got = Vec::with_capacity(expected as usize);
    while got.len() < expected as usize {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("the rest arrives")
            .expect("consumer open")
            .expect("delivery");
        got.push((number(&d.data), d.redelivered));
    }
    let _ = conn.close(200, "bye".into()).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_no_ack_consumer_is_handed_a_bounded_share_and_loses_nothing_on_close() {
    let (broker, queue) = filled_queue().await;
    let mut stalled = stalled_consumer(&broker, &queue, true).await;
    let left = common::counts::settled(&broker.uri, &queue).await;
    // What the socket buffers and the connection's bounded backlog hold: a small
    // part of the queue. Unbounded dispatch would empty it.
    assert!(
        left > N / 2,
        "a consumer that reads nothing took {} of {N} messages",
        N - left
    );

    // The client asks to close and reads everything the broker wrote until close-ok:
    // what it did not receive must still be in the queue.
    stalled
        .send(&method_frame(0, common::raw::connection_close()))
        .await;
    let mut received = Vec::new();
    loop {
        match stalled.next().await {
            Got::Frame(AMQPFrame::Body(1, body)) => received.push(number(&body)),
            Got::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
            )) => break,
            Got::Frame(_) => {}
            Got::Eof => panic!("socket closed before close-ok"),
        }
    }
    let k = received.len() as u32;
    assert_eq!(received, (0..k).collect::<Vec<_>>(), "delivered in order");
    assert_eq!(
        common::counts::wait_ready(&broker.uri, &queue, N - k).await,
        N - k,
        "the {} messages the client never received are back in the queue",
        N - k
    );
    let rest = drain(&broker, &queue, N - k).await;
    assert_eq!(
        rest,
        (k..N).map(|n| (n, false)).collect::<Vec<_>>(),
        "the rest, in order, not marked redelivered (they never reached the client)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_manual_ack_consumer_gives_every_unacked_message_back_when_it_goes() {
    let (broker, queue) = filled_queue().await;
    let stalled = stalled_consumer(&broker, &queue, false).await;
    let left = common::counts::settled(&broker.uri, &queue).await;
    assert!(
        left > N / 2,
        "a consumer with no prefetch limit that reads nothing took {} of {N} messages",
        N - left
    );
    // The peer vanishes without a close.
    drop(stalled);
    assert_eq!(
        common::counts::wait_ready(&broker.uri, &queue, N).await,
        N,
        "every unacked message is back as soon as the connection is gone"
    );
    let all = drain(&broker, &queue, N).await;
    let numbers: Vec<u32> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (0..N).collect::<Vec<_>>(),
        "in their original order"
    );
    // Those written to the socket are redelivered; those that never left the broker
    // are not: the redelivered ones form the head.
    let redelivered = all.iter().take_while(|(_, r)| *r).count();
    assert!(
        all[redelivered..].iter().all(|(_, r)| !r),
        "redelivered messages are the ones delivered first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_reads_again_gets_the_rest() {
    // The queue resumes a connection that drained: nothing stays stuck behind the bound.
    let (broker, queue) = filled_queue().await;
    let mut slow = stalled_consumer(&broker, &queue, true).await;
    let left = common::counts::settled(&broker.uri, &queue).await;
    assert!(left > N / 2, "bounded while stalled");
    let mut seen = 0u32;
    while seen < N {
        match slow.next().await {
            Got::Frame(AMQPFrame::Body(1, body)) => {
                assert_eq!(number(&body), seen, "in order");
                seen += 1;
            }
            Got::Frame(_) => {}
            Got::Eof => panic!("socket closed"),
        }
    }
    assert_eq!(common::counts::ready(&broker.uri, &queue).await, 0);
}

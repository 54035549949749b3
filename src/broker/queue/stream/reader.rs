//! A stream consumer's reader: a task with a cursor that reads committed entries
//! from the store in batches, off the async threads, and hands them to the
//! consumer's connection as its prefetch credit and the connection's backlog allow.

use super::Stream;
use super::offset::Filter;
use crate::broker::queue::{Consumer, ConsumerEvent, Queue, QueueEntry};
use crate::model::Message;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where a reader starts.
pub(super) enum Start {
    At(u64),
    /// The first chunk from offset `from` on at or after time `at` (ms).
    Time {
        from: u64,
        at: u64,
    },
}

/// One consumer's place in the stream.
pub(super) struct Reader {
    consumer: Arc<Consumer>,
    stopped: AtomicBool,
    /// The broker remembers where this consumer got to (by its tag).
    tracking: bool,
    /// The offset of the next delivery: where it starts, then one past the last
    /// delivered (for the management API).
    next: AtomicU64,
    /// Messages delivered.
    consumed: AtomicU64,
}

/// Where a consumer is in its stream, as the management API shows it (the names
/// of RabbitMQ's stream consumer listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The offset of the last message delivered, or where it starts before any.
    pub offset: u64,
    /// Messages stored after that offset, not delivered yet.
    pub offset_lag: u64,
    /// Messages delivered.
    pub consumed: u64,
}

impl Reader {
    pub(super) fn new(consumer: Arc<Consumer>, tracking: bool, start: u64) -> Reader {
        Reader {
            consumer,
            stopped: AtomicBool::new(false),
            tracking,
            next: AtomicU64::new(start),
            consumed: AtomicU64::new(0),
        }
    }

    /// Where the reader is, given the stream's first stored and committed end offsets.
    pub(super) fn position(&self, first: u64, readable: u64) -> Position {
        let next = self.next.load(Ordering::Relaxed).max(first);
        let consumed = self.consumed.load(Ordering::Relaxed);
        Position {
            offset: if consumed > 0 { next - 1 } else { next },
            offset_lag: readable.saturating_sub(next),
            consumed,
        }
    }

    pub(super) fn tracking(&self) -> bool {
        self.tracking
    }

    pub(super) fn consumer(&self) -> &Arc<Consumer> {
        &self.consumer
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

pub(super) fn spawn(
    stream: Arc<Stream>,
    queue: Arc<Queue>,
    reader: Arc<Reader>,
    start: Start,
    filter: Option<Filter>,
) {
    tokio::spawn(async move {
        if let Err(error) = run(&stream, &queue, &reader, start, filter).await {
            tracing::error!(queue = %queue.name, %error, "stream reader stopped");
        }
    });
}

async fn run(
    stream: &Arc<Stream>,
    queue: &Arc<Queue>,
    reader: &Reader,
    start: Start,
    filter: Option<Filter>,
) -> Result<(), String> {
    let consumer = &reader.consumer;
    let mut committed = stream.store.committed();
    let mut cursor = match start {
        Start::At(offset) => offset,
        Start::Time { from, at } => {
            let (store, id) = (stream.store.clone(), stream.id);
            let found = tokio::task::spawn_blocking(move || store.stream_seek_time(id, from, at))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            found.unwrap_or_else(|| stream.lock().log.next())
        }
    };
    reader.next.store(cursor, Ordering::Relaxed);
    // Entries read (with their offset header) and admitted by the filter, waiting
    // for credit.
    let mut buffer: VecDeque<(u64, Arc<Message>)> = VecDeque::new();
    loop {
        let woken = stream.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        committed.borrow_and_update();
        if reader.stopped() {
            return Ok(());
        }
        let readable = stream.readable();
        let first = stream.first();
        if cursor < first {
            // Retention removed what this reader had not read yet.
            cursor = first;
            buffer.retain(|(o, _)| *o >= first);
        }
        if buffer.is_empty() && cursor < readable && consumer.has_credit() {
            let batch = stream.batch(cursor, readable).await?;
            // The cursor is where the next read starts: past this batch, or past a
            // gap (a commit that failed), never past what is committed.
            cursor = batch.last().map_or(readable, |(o, _)| o + 1).min(readable);
            buffer.extend(
                batch
                    .into_iter()
                    .filter(|(_, m)| filter.as_ref().is_none_or(|f| f.admits(&m.properties()))),
            );
        }
        let mut progress = false;
        while !buffer.is_empty() {
            if consumer.flow.full() {
                consumer.flow.stall(queue);
                break;
            }
            if !consumer.try_acquire() {
                break;
            }
            let Some((offset, msg)) = buffer.pop_front() else {
                break;
            };
            progress = true;
            reader.next.store(offset + 1, Ordering::Relaxed);
            reader.consumed.fetch_add(1, Ordering::Relaxed);
            consumer.flow.added(msg.body.len());
            let event = ConsumerEvent::Deliver {
                consumer: consumer.clone(),
                queue: queue.clone(),
                entry: QueueEntry {
                    seq: offset,
                    msg,
                    redelivered: false,
                    expires: 0,
                },
            };
            if consumer.events.send(event).is_err() {
                // The connection is gone; its cleanup removes the consumer.
                return Ok(());
            }
        }
        if progress || (buffer.is_empty() && cursor < readable && consumer.has_credit()) {
            continue;
        }
        tokio::select! {
            _ = woken => {}
            changed = committed.changed() => {
                if changed.is_err() {
                    // The store stopped: so does the broker.
                    return Ok(());
                }
            }
        }
    }
}

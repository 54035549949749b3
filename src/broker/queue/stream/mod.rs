//! Streams (`x-queue-type: stream`): an append-only log on disk that every consumer
//! reads from the offset it chose, at its own pace. Appends take the stream's lock
//! only to number the message and account for it; the store writes it in its next
//! group commit. Each consumer has a reader task with a cursor that reads committed
//! entries back in batches as its prefetch credit allows, so memory does not grow
//! with the stream's length, and a slow consumer holds back nobody else.

pub mod args;
mod cache;
mod header;
pub mod offset;
mod reader;

pub use reader::Position;

use crate::broker::queue::{Consumer, Queue};
use crate::model::{BrokerError, BrokerResult, Message, now_ms};
use crate::store::Store;
use crate::store::stream::{Segment, StreamLog, stored_size};
use amq_protocol::types::FieldTable;
use args::StreamArgs;
use offset::{Filter, OffsetSpec};
use reader::Reader;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// A stream's log and its readers.
pub struct Stream {
    store: Arc<Store>,
    /// The stream's id in the store.
    id: u64,
    state: Mutex<StreamState>,
    /// Wakes the readers: credit came back, a connection drained, a reader stops.
    wake: Notify,
    /// Recently read blocks of entries, shared by the readers.
    blocks: Mutex<cache::Blocks>,
}

struct StreamState {
    log: StreamLog,
    settings: StreamArgs,
    /// Appends whose commit is not known yet: (store ticket, the offset after them).
    pending: VecDeque<(u64, u64)>,
    /// Offsets below this are committed, so readers may read them.
    readable: u64,
    readers: Vec<Arc<Reader>>,
    /// The stream was deleted: appends are refused.
    deleted: bool,
}

impl StreamState {
    /// Moves the readable end past the appends committed up to ticket `committed`.
    fn drain_pending(&mut self, committed: u64) {
        while let Some(&(ticket, end)) = self.pending.front() {
            if ticket > committed {
                break;
            }
            self.readable = end;
            self.pending.pop_front();
        }
    }
}

impl Stream {
    pub fn new(store: Arc<Store>, id: u64, log: StreamLog, settings: StreamArgs) -> Stream {
        let readable = log.next();
        Stream {
            store,
            id,
            state: Mutex::new(StreamState {
                log,
                settings,
                pending: VecDeque::new(),
                readable,
                readers: Vec::new(),
                deleted: false,
            }),
            wake: Notify::new(),
            blocks: Mutex::new(cache::Blocks::default()),
        }
    }

    fn blocks(&self) -> MutexGuard<'_, cache::Blocks> {
        // Held only to look up or add a block: never poisoned by a panic inside.
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        // Only short, non-panicking sections hold it: a poisoned lock still guards
        // consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message; returns the store ticket its confirm waits for, or None
    /// if the stream was deleted.
    pub fn append(&self, msg: Arc<Message>) -> Option<u64> {
        let now = now_ms();
        let size = stored_size(&msg);
        let mut st = self.lock();
        if st.deleted {
            return None;
        }
        let offset = st.log.next();
        let segment_bytes = st.settings.segment_bytes;
        let mut rolled = false;
        match st.log.segments.back_mut() {
            Some(s) if s.count == 0 || s.bytes + size <= segment_bytes => {
                s.bytes += size;
                s.count += 1;
                s.last_ts = now;
            }
            _ => {
                rolled = !st.log.segments.is_empty();
                st.log.segments.push_back(Segment {
                    first: offset,
                    first_ts: now,
                    last_ts: now,
                    bytes: size,
                    count: 1,
                });
            }
        }
        let segment = st.log.segments.back().map_or(offset, |s| s.first);
        st.drain_pending(self.store.committed_now());
        // A new chunk starts when everything appended before is committed.
        let chunk = st.pending.is_empty();
        if chunk {
            st.log.last_chunk = offset;
        }
        let ticket = self
            .store
            .stream_append(self.id, offset, now, segment, chunk, msg);
        st.pending.push_back((ticket, offset + 1));
        if rolled {
            self.apply_retention(&mut st, now);
        }
        Some(ticket)
    }

    /// Drops whole segments from the old end while the stream is over its size or
    /// its oldest segment is past its age, keeping the newest segment (RabbitMQ
    /// evaluates retention when a segment rolls over).
    fn apply_retention(&self, st: &mut StreamState, now: u64) {
        let mut total = st.log.bytes();
        let mut before = None;
        while st.log.segments.len() > 1 {
            let Some(front) = st.log.segments.front().copied() else {
                break;
            };
            let too_big = st.settings.max_bytes.is_some_and(|m| total > m);
            let too_old = st
                .settings
                .max_age
                .is_some_and(|a| front.last_ts.saturating_add(a) < now);
            if !too_big && !too_old {
                break;
            }
            st.log.segments.pop_front();
            total -= front.bytes;
            before = Some(front.end());
        }
        if let Some(b) = before {
            self.store.stream_truncate(self.id, b);
        }
    }

    /// The committed end of the log: readers read below it.
    fn readable(&self) -> u64 {
        let committed = self.store.committed_now();
        let mut st = self.lock();
        st.drain_pending(committed);
        st.readable
    }

    /// The first offset still stored.
    fn first(&self) -> u64 {
        self.lock().log.first()
    }

    /// Messages stored.
    pub fn message_count(&self) -> u64 {
        self.lock().log.count()
    }

    /// The consumers reading the stream, in the order they subscribed.
    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.lock()
            .readers
            .iter()
            .map(|r| r.consumer().clone())
            .collect()
    }

    /// Each consumer and where it is, in the order they subscribed.
    pub fn positions(&self) -> Vec<(Arc<Consumer>, Position)> {
        let readable = self.readable();
        let st = self.lock();
        let first = st.log.first();
        st.readers
            .iter()
            .map(|r| (r.consumer().clone(), r.position(first, readable)))
            .collect()
    }

    pub fn consumer_count(&self) -> usize {
        self.lock().readers.len()
    }

    /// Where a new consumer starts, for the specs that need no store lookup.
    fn start(&self, spec: OffsetSpec) -> reader::Start {
        let st = self.lock();
        let (first, next) = (st.log.first(), st.log.next());
        reader::Start::At(match spec {
            OffsetSpec::First => first,
            OffsetSpec::Last => st.log.last_chunk.max(first),
            OffsetSpec::Next => next,
            OffsetSpec::At(n) => n.clamp(first, next),
            OffsetSpec::Back(n) => next.saturating_sub(n).max(first),
            OffsetSpec::Time(t) => {
                // The segment holding that time narrows the chunk search.
                let from = st
                    .log
                    .segments
                    .iter()
                    .find(|s| s.last_ts >= t)
                    .map_or(next, |s| s.first);
                return reader::Start::Time { from, at: t };
            }
        })
    }

    /// Starts delivering to a consumer: where its tag's tracked offset says if it
    /// tracks offsets and has one, else from its offset spec.
    pub fn add_consumer(
        self: &Arc<Self>,
        queue: &Arc<Queue>,
        consumer: Arc<Consumer>,
        how: StreamConsume,
    ) {
        let tracked = how
            .tracking
            .then(|| self.lock().log.tracking.get(consumer.tag.as_str()).copied())
            .flatten();
        let start = match tracked {
            Some(next) => self.start(OffsetSpec::At(next)),
            None => self.start(how.spec),
        };
        let from = match start {
            reader::Start::At(n) => n,
            reader::Start::Time { from, .. } => from,
        };
        let r = Arc::new(Reader::new(consumer, how.tracking, from));
        self.lock().readers.push(r.clone());
        reader::spawn(self.clone(), queue.clone(), r, start, how.filter);
    }

    /// A delivery at `offset` to `consumer` was acknowledged: a tracking consumer's
    /// place moves past it, in memory and in the store.
    fn acked(&self, consumer: &Arc<Consumer>, offset: u64) {
        let mut st = self.lock();
        let tracks = st
            .readers
            .iter()
            .any(|r| r.tracking() && Arc::ptr_eq(r.consumer(), consumer));
        if !tracks {
            return;
        }
        let next = offset + 1;
        let entry = st.log.tracking.entry(consumer.tag.to_string()).or_insert(0);
        if *entry < next {
            *entry = next;
            self.store
                .stream_track(self.id, consumer.tag.as_str(), next);
        }
    }

    /// Stops a consumer's reader; false if it was not one of this stream's.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) -> bool {
        let removed = {
            let mut st = self.lock();
            let before = st.readers.len();
            st.readers.retain(|r| {
                let keep = !Arc::ptr_eq(r.consumer(), consumer);
                if !keep {
                    r.stop();
                }
                keep
            });
            before != st.readers.len()
        };
        self.wake();
        removed
    }

    /// Stops every reader (the stream is deleted); returns their consumers.
    pub fn remove_all(&self) -> Vec<Arc<Consumer>> {
        let readers = {
            let mut st = self.lock();
            st.deleted = true;
            std::mem::take(&mut st.readers)
        };
        for r in &readers {
            r.stop();
        }
        self.wake();
        readers.iter().map(|r| r.consumer().clone()).collect()
    }

    /// New retention settings (a policy changed): retention is evaluated with them
    /// at once, as RabbitMQ does when a stream's retention changes; from then on at
    /// each segment roll-over.
    pub fn set_settings(&self, settings: StreamArgs) {
        let mut st = self.lock();
        st.settings = settings;
        if !st.deleted {
            self.apply_retention(&mut st, now_ms());
        }
    }

    /// Wakes the readers to look at their credit and the log again.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }
}

/// How a consumer reads a stream: where it starts, what it wants, and whether the
/// broker remembers where it got to.
pub struct StreamConsume {
    pub spec: OffsetSpec,
    pub filter: Option<Filter>,
    pub tracking: bool,
}

impl Queue {
    /// Refuses an operation streams do not have (basic.get, queue.purge) with
    /// RabbitMQ's 540.
    pub fn refuse_on_stream(&self, operation: &str) -> BrokerResult<()> {
        if self.stream.is_none() {
            return Ok(());
        }
        Err(BrokerError::NotImplemented(format!(
            "{operation} not supported by stream queues queue '{}' in vhost '{}'",
            self.name, self.vhost_name
        )))
    }

    /// Checks a consume on a stream as RabbitMQ does, in its order: the offset
    /// argument, a prefetch is required, no automatic acknowledgement, no global
    /// prefetch. Returns where the consumer starts and what it filters.
    pub fn check_stream_consume(
        &self,
        arguments: &FieldTable,
        prefetch: u32,
        no_ack: bool,
        global_prefetch: bool,
    ) -> BrokerResult<StreamConsume> {
        let what = format!("queue '{}' in vhost '{}'", self.name, self.vhost_name);
        let spec = OffsetSpec::parse(arguments, &what)?;
        if prefetch == 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "consumer prefetch count is not set for stream {what}"
            )));
        }
        if no_ack {
            return Err(BrokerError::NotImplemented(format!(
                "automatic acknowledgement not supported by stream {what}"
            )));
        }
        if global_prefetch {
            return Err(BrokerError::NotImplemented(format!(
                "{what} does not support global qos"
            )));
        }
        Ok(StreamConsume {
            spec,
            filter: Filter::parse(arguments),
            tracking: offset::tracking(arguments),
        })
    }

    /// The stream's log, for a stream.
    pub fn stream(&self) -> Option<&Arc<Stream>> {
        self.stream.as_ref()
    }

    /// Adds a consumer to a stream, reading from `spec` on; a classic queue takes it
    /// as any consumer.
    pub fn add_stream_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        how: StreamConsume,
    ) -> crate::model::BrokerResult<()> {
        match &self.stream {
            Some(s) => {
                s.add_consumer(self, consumer, how);
                Ok(())
            }
            None => self.add_consumer(consumer),
        }
    }

    /// A stream delivery was acknowledged: a tracking consumer resumes after it.
    pub fn stream_acked(&self, consumer: &Arc<Consumer>, offset: u64) {
        if let Some(s) = &self.stream {
            s.acked(consumer, offset);
        }
    }

    /// Puts a recovered stream's log back, before any client connects.
    pub fn restore_stream(&self, log: StreamLog) {
        if let Some(s) = &self.stream {
            let mut st = s.lock();
            st.readable = log.next();
            st.log = log;
        }
    }
}

//! Streams on disk: an append-only log per stream, keyed by (stream id, offset), with
//! two small tables beside it that let a reader find its place without scanning the
//! log and let retention drop whole segments in one range delete.
//!
//! - `stream_log`: (stream, offset) -> timestamp (8 bytes, ms since the epoch) and the
//!   message in the `messages` table's encoding.
//! - `stream_chunks`: (stream, first offset of a chunk) -> its timestamp. A chunk is
//!   what one publisher burst appended between two commits: "last" starts at the last
//!   chunk, a timestamp offset at the first chunk at or after that time.
//! - `stream_segments`: (stream, first offset of a segment) -> (first timestamp, last
//!   timestamp, bytes, messages). Segments close at the stream's segment size;
//!   retention removes whole segments from the old end, never the newest one.
//!
//! Offsets, chunk starts and segment starts are decided by the broker's stream (one
//! writer per stream, under its lock); the store's writer thread applies appends in
//! its group commits, adding up a batch's appends per segment before touching the
//! segment table.

use super::codec::put_bytes;
use super::recovery::decode_message;
use super::{Op, Store, StoreError, backlog_size};
use crate::model::Message;
use crate::model::memory::MemoryGauge;
use redb::ReadableDatabase;
use redb::{ReadableTable, TableDefinition};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) const STREAM_LOG: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("stream_log");
pub(super) const STREAM_CHUNKS: TableDefinition<(u64, u64), u64> =
    TableDefinition::new("stream_chunks");
pub(super) const STREAM_SEGMENTS: TableDefinition<(u64, u64), (u64, u64, u64, u64)> =
    TableDefinition::new("stream_segments");
/// (stream, consumer tag) -> the offset a tracking consumer resumes at.
pub(super) const STREAM_TRACKING: TableDefinition<(u64, &str), u64> =
    TableDefinition::new("stream_tracking");

/// One segment of a stream's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of its first message.
    pub first: u64,
    /// Timestamps (ms since the epoch) of its first and last messages.
    pub first_ts: u64,
    pub last_ts: u64,
    /// Bytes of its messages as stored.
    pub bytes: u64,
    /// Messages in it.
    pub count: u64,
}

impl Segment {
    /// The offset after its last message.
    pub fn end(&self) -> u64 {
        self.first + self.count
    }
}

/// Where a stream's log stands: what recovery finds, what the broker keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamLog {
    /// Its segments, oldest first (retention removed the ones before).
    pub segments: VecDeque<Segment>,
    /// The first offset of the last chunk (RabbitMQ's `last`).
    pub last_chunk: u64,
    /// Where each offset-tracking consumer (by tag) resumes.
    pub tracking: HashMap<String, u64>,
}

impl StreamLog {
    /// The first offset still stored (the next one when the log is empty).
    pub fn first(&self) -> u64 {
        self.segments.front().map_or(self.next(), |s| s.first)
    }

    /// The offset the next message gets.
    pub fn next(&self) -> u64 {
        self.segments.back().map_or(0, Segment::end)
    }

    /// Messages stored.
    pub fn count(&self) -> u64 {
        self.segments.iter().map(|s| s.count).sum()
    }

    /// Bytes stored.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// One message read back from a stream.
pub struct StreamEntry {
    pub offset: u64,
    /// When it was appended, in ms since the epoch.
    pub timestamp: u64,
    pub message: Message,
}

/// An append, as the writer thread applies it.
pub(super) struct Append {
    pub stream: u64,
    pub offset: u64,
    pub timestamp: u64,
    /// First offset of the segment it belongs to.
    pub segment: u64,
    /// It starts a chunk.
    pub chunk: bool,
    pub message: Arc<Message>,
}

/// What a message counts for in a segment's size: its stored form.
pub fn stored_size(msg: &Message) -> u64 {
    (8 + 4 + msg.exchange.as_str().len() + 4 + msg.routing_key.as_str().len() + 4) as u64
        + msg.raw_properties.len() as u64
        + msg.body.len() as u64
}

/// The segment totals a batch of appends adds, keyed by (stream, segment).
#[derive(Default)]
pub(super) struct SegmentTotals(HashMap<(u64, u64), Segment>);

impl SegmentTotals {
    fn add(&mut self, a: &Append, bytes: u64) {
        let s = self.0.entry((a.stream, a.segment)).or_insert(Segment {
            first: a.segment,
            first_ts: a.timestamp,
            last_ts: a.timestamp,
            bytes: 0,
            count: 0,
        });
        s.last_ts = a.timestamp;
        s.bytes += bytes;
        s.count += 1;
    }

    /// Drops what the batch added to a stream that the batch then truncated or
    /// deleted before `before`.
    fn forget_before(&mut self, stream: u64, before: u64) {
        self.0
            .retain(|&(s, seg), total| s != stream || seg.max(total.first) >= before);
    }

    /// Merges the totals into the segment table.
    pub(super) fn write(
        self,
        segments: &mut redb::Table<(u64, u64), (u64, u64, u64, u64)>,
    ) -> Result<(), redb::Error> {
        for ((stream, first), add) in self.0 {
            let current = segments.get((stream, first))?.map(|v| v.value());
            let row = match current {
                Some((first_ts, _, bytes, count)) => {
                    (first_ts, add.last_ts, bytes + add.bytes, count + add.count)
                }
                None => (add.first_ts, add.last_ts, add.bytes, add.count),
            };
            segments.insert((stream, first), row)?;
        }
        Ok(())
    }
}

/// The tables an apply touches, opened once per batch.
pub(super) struct Tables<'t> {
    pub log: redb::Table<'t, (u64, u64), &'static [u8]>,
    pub chunks: redb::Table<'t, (u64, u64), u64>,
    pub tracking: redb::Table<'t, (u64, &'static str), u64>,
    pub segments: redb::Table<'t, (u64, u64), (u64, u64, u64, u64)>,
    pub totals: SegmentTotals,
}

impl<'t> Tables<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Tables<'t>, redb::Error> {
        Ok(Tables {
            log: txn.open_table(STREAM_LOG)?,
            chunks: txn.open_table(STREAM_CHUNKS)?,
            tracking: txn.open_table(STREAM_TRACKING)?,
            segments: txn.open_table(STREAM_SEGMENTS)?,
            totals: SegmentTotals::default(),
        })
    }

    pub(super) fn append(&mut self, a: &Append, scratch: &mut Vec<u8>) -> Result<(), redb::Error> {
        scratch.clear();
        scratch.extend_from_slice(&a.timestamp.to_be_bytes());
        put_bytes(scratch, a.message.exchange.as_str().as_bytes());
        put_bytes(scratch, a.message.routing_key.as_str().as_bytes());
        put_bytes(scratch, &a.message.raw_properties);
        scratch.extend_from_slice(&a.message.body);
        self.log.insert((a.stream, a.offset), scratch.as_slice())?;
        if a.chunk {
            self.chunks.insert((a.stream, a.offset), a.timestamp)?;
        }
        self.totals.add(a, scratch.len() as u64);
        Ok(())
    }

    /// Removes everything of `stream` before offset `before` (whole segments: the
    /// broker passes a segment's first offset).
    pub(super) fn truncate(&mut self, stream: u64, before: u64) -> Result<(), redb::Error> {
        if before == 0 {
            return Ok(());
        }
        let range = (stream, 0)..(stream, before);
        self.log.retain_in(range.clone(), |_, _| false)?;
        self.chunks.retain_in(range.clone(), |_, _| false)?;
        self.segments.retain_in(range, |_, _| false)?;
        self.totals.forget_before(stream, before);
        Ok(())
    }

    /// Removes a stream's whole log and its consumers' offsets.
    pub(super) fn delete(&mut self, stream: u64) -> Result<(), redb::Error> {
        self.truncate(stream, u64::MAX)?;
        self.tracking
            .retain_in((stream, "")..(stream.saturating_add(1), ""), |_, _| false)?;
        Ok(())
    }

    /// Records where a tracking consumer resumes.
    pub(super) fn track(&mut self, stream: u64, tag: &str, next: u64) -> Result<(), redb::Error> {
        self.tracking.insert((stream, tag), next)?;
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), redb::Error> {
        let Tables {
            mut segments,
            totals,
            ..
        } = self;
        totals.write(&mut segments)
    }
}

/// The store's stream operations; appends and truncations go through the writer
/// thread like every write, reads open their own read transaction.
impl Store {
    /// Appends `msg` to stream `stream` at `offset`; `segment` is the first offset of
    /// the segment it belongs to, `chunk` whether it starts a chunk. Returns the
    /// ticket to wait for.
    pub fn stream_append(
        &self,
        stream: u64,
        offset: u64,
        timestamp: u64,
        segment: u64,
        chunk: bool,
        msg: Arc<Message>,
    ) -> u64 {
        self.backlog
            .fetch_add(backlog_size(&msg), Ordering::Relaxed);
        self.send(Op::StreamAppend(Append {
            stream,
            offset,
            timestamp,
            segment,
            chunk,
            message: msg,
        }))
    }

    /// Records that the tracking consumer `tag` of a stream resumes at `next`.
    pub fn stream_track(&self, stream: u64, tag: &str, next: u64) -> u64 {
        self.send(Op::StreamTrack {
            stream,
            tag: tag.to_owned(),
            next,
        })
    }

    /// Removes the entries of a stream before offset `before` (a segment's start).
    pub fn stream_truncate(&self, stream: u64, before: u64) -> u64 {
        self.send(Op::StreamTruncate { stream, before })
    }

    /// Reads committed entries of a stream from offset `from` on: up to `max_count`
    /// messages and about `max_bytes` (at least one message). Blocking: call it off
    /// the async threads.
    pub fn stream_read(
        &self,
        stream: u64,
        from: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(db) = db else {
            return Err(self.unavailable());
        };
        let read = || -> Result<Vec<StreamEntry>, redb::Error> {
            let txn = db.begin_read()?;
            let log = txn.open_table(STREAM_LOG)?;
            read(&log, &self.memory, stream, from, max_count, max_bytes)
        };
        read().map_err(|e| StoreError::Io(self.path.clone(), e.to_string()))
    }

    /// The first chunk of a stream from offset `from` on whose timestamp is at or
    /// after `ts` (ms since the epoch); None if all are older. Blocking.
    pub fn stream_seek_time(
        &self,
        stream: u64,
        from: u64,
        ts: u64,
    ) -> Result<Option<u64>, StoreError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(db) = db else {
            return Err(self.unavailable());
        };
        let seek = || -> Result<Option<u64>, redb::Error> {
            let txn = db.begin_read()?;
            let chunks = txn.open_table(STREAM_CHUNKS)?;
            seek_time(&chunks, stream, from, ts)
        };
        seek().map_err(|e| StoreError::Io(self.path.clone(), e.to_string()))
    }
}

/// Reads a stream's state back at start.
pub(super) fn recover<T>(
    segments: &T,
    chunks: &impl ReadableTable<(u64, u64), u64>,
    tracking: &impl ReadableTable<(u64, &'static str), u64>,
    stream: u64,
) -> Result<StreamLog, redb::Error>
where
    T: ReadableTable<(u64, u64), (u64, u64, u64, u64)>,
{
    let mut log = StreamLog::default();
    for row in segments.range((stream, 0)..=(stream, u64::MAX))? {
        let (k, v) = row?;
        let (first_ts, last_ts, bytes, count) = v.value();
        log.segments.push_back(Segment {
            first: k.value().1,
            first_ts,
            last_ts,
            bytes,
            count,
        });
    }
    log.last_chunk = chunks
        .range((stream, 0)..=(stream, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(log.first(), |(k, _)| k.value().1);
    for row in tracking.range((stream, "")..(stream.saturating_add(1), ""))? {
        let (k, v) = row?;
        log.tracking.insert(k.value().1.to_owned(), v.value());
    }
    Ok(log)
}

/// Reads up to `max_count` messages (and about `max_bytes`, at least one) from
/// `from` on.
pub(super) fn read(
    log: &impl ReadableTable<(u64, u64), &'static [u8]>,
    memory: &Arc<MemoryGauge>,
    stream: u64,
    from: u64,
    max_count: usize,
    max_bytes: usize,
) -> Result<Vec<StreamEntry>, redb::Error> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in log.range((stream, from)..=(stream, u64::MAX))? {
        let (k, v) = row?;
        let data = v.value();
        let Some((ts, rest)) = data.split_first_chunk::<8>() else {
            tracing::warn!(
                stream,
                offset = k.value().1,
                "corrupt stream entry, skipped"
            );
            continue;
        };
        let Some(message) = decode_message(rest, memory) else {
            tracing::warn!(
                stream,
                offset = k.value().1,
                "corrupt stream entry, skipped"
            );
            continue;
        };
        bytes += data.len();
        out.push(StreamEntry {
            offset: k.value().1,
            timestamp: u64::from_be_bytes(*ts),
            message,
        });
        if out.len() >= max_count || bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// The first chunk of `stream` that starts at or after `from` with a timestamp at or
/// after `ts`; None when every chunk is older.
pub(super) fn seek_time(
    chunks: &impl ReadableTable<(u64, u64), u64>,
    stream: u64,
    from: u64,
    ts: u64,
) -> Result<Option<u64>, redb::Error> {
    for row in chunks.range((stream, from)..=(stream, u64::MAX))? {
        let (k, v) = row?;
        if v.value() >= ts {
            return Ok(Some(k.value().1));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
pub(super) mod tests;

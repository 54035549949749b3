//! Reading the store back at start: definitions first, then every queue's index in
//! position order, with message bodies shared between the queues that hold them.

use super::codec::{self, Reader};
use super::solo;
use super::stream::{self, StreamLog};
use super::{
    BINDINGS, BindingKey, CONFIG, EXCHANGES, FORMAT_VERSION, INDEX, MESSAGES, META, QUEUES, REFS,
    StoreError,
};
use crate::model::memory::MemoryGauge;
use crate::model::paged::{PagedEntry, PagedRun};
use crate::model::{Message, Slot};
use amq_protocol::types::{FieldTable, ShortString};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub struct RecoveredExchange {
    pub vhost: String,
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

pub struct RecoveredQueue {
    pub vhost: String,
    pub name: String,
    pub id: u64,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The queue's messages in position order.
    pub messages: RecoveredMessages,
    /// A stream's log (`x-queue-type` = `stream`); its messages stay on disk.
    pub stream: Option<StreamLog>,
}

pub type RecoveredBinding = BindingKey;

/// A recovered message, or a run of paged-out ones.
pub enum RecoveredMessage {
    One {
        seq: u64,
        slot: Slot,
        redelivered: bool,
        /// Expiry in ms since the epoch; 0: never.
        expires: u64,
    },
    /// Paged-out messages of one priority, in position order.
    Run { priority: u8, run: PagedRun },
}

/// A queue's recovered messages in position order: those read back whole and, past
/// the in-memory budget, compact runs of paged-out ones (per priority).
#[derive(Default)]
pub struct RecoveredMessages {
    pub items: Vec<RecoveredMessage>,
    count: usize,
}

impl RecoveredMessages {
    /// How many messages.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn push_one(&mut self, seq: u64, slot: Slot, redelivered: bool, expires: u64) {
        self.count += 1;
        self.items.push(RecoveredMessage::One {
            seq,
            slot,
            redelivered,
            expires,
        });
    }

    /// Appends a paged-out message to the latest run of its priority, when nothing
    /// of that priority came after it, or to a new run. `last`: per priority, the
    /// index of its latest item.
    pub(super) fn push_paged(
        &mut self,
        priority: u8,
        e: PagedEntry,
        last: &mut HashMap<u8, usize>,
    ) {
        self.count += 1;
        if let Some(&i) = last.get(&priority)
            && let Some(RecoveredMessage::Run { run, .. }) = self.items.get_mut(i)
            && run.push(e, 0)
        {
            return;
        }
        let mut run = PagedRun::new();
        run.push(e, 0);
        last.insert(priority, self.items.len());
        self.items.push(RecoveredMessage::Run { priority, run });
    }
}

/// A queue's `x-max-priority`, as far as recovery needs it: which priorities share
/// a level (None: no priorities).
fn max_priority(arguments: &FieldTable) -> Option<u8> {
    use amq_protocol::types::AMQPValue as V;
    let n: i64 = match arguments.inner().get("x-max-priority")? {
        V::ShortShortInt(n) => (*n).into(),
        V::ShortShortUInt(n) => (*n).into(),
        V::ShortInt(n) => (*n).into(),
        V::ShortUInt(n) => (*n).into(),
        V::LongInt(n) => (*n).into(),
        V::LongUInt(n) => (*n).into(),
        V::LongLongInt(n) => *n,
        _ => 0,
    };
    Some(n.clamp(0, 255) as u8)
}

/// Everything durable, as found at start.
pub struct Recovered {
    pub exchanges: Vec<RecoveredExchange>,
    pub queues: Vec<RecoveredQueue>,
    pub bindings: Vec<RecoveredBinding>,
    /// The previous run stopped cleanly.
    pub clean: bool,
    /// The format the file had before this start: None for a new file.
    pub previous_format: Option<u64>,
    /// The operator-managed records as stored (JSON), absent in a new file and in one
    /// written before format 2.
    pub access: Option<Vec<u8>>,
    pub next_message_id: u64,
    pub next_queue_id: u64,
}

fn split_key(k: &str) -> (String, String) {
    match k.split_once('\0') {
        Some((v, n)) => (v.to_owned(), n.to_owned()),
        None => (String::new(), k.to_owned()),
    }
}

pub fn decode_binding(k: &[u8]) -> Option<BindingKey> {
    let mut r = Reader::new(k);
    Some(BindingKey {
        vhost: r.string()?,
        source: r.string()?,
        to_queue: r.u8()? == 1,
        destination: r.string()?,
        routing_key: r.string()?,
        arguments: r.table()?,
    })
}

pub fn binding_touches_exchange(k: &[u8], vhost: &str, name: &str) -> bool {
    decode_binding(k).is_some_and(|b| {
        b.vhost == vhost && (b.source == name || (!b.to_queue && b.destination == name))
    })
}

pub fn binding_touches_queue(k: &[u8], vhost: &str, name: &str) -> bool {
    decode_binding(k).is_some_and(|b| b.vhost == vhost && b.to_queue && b.destination == name)
}

pub(super) fn decode_message(data: &[u8], memory: &Arc<MemoryGauge>) -> Option<Message> {
    let mut r = Reader::new(data);
    let exchange = r.string()?;
    let routing_key = r.string()?;
    let raw = r.bytes()?;
    let properties = codec::properties(raw)?;
    Some(Message::new(
        ShortString::try_new(exchange).ok()?,
        ShortString::try_new(routing_key).ok()?,
        &properties,
        Bytes::copy_from_slice(raw),
        Bytes::copy_from_slice(r.rest()),
        memory.charge(data.len()),
    ))
}

/// Whether a queue's declared arguments make it a stream.
fn is_stream(arguments: &FieldTable) -> bool {
    use amq_protocol::types::AMQPValue;
    matches!(
        arguments.inner().get("x-queue-type"),
        Some(AMQPValue::LongString(s)) if s.as_bytes() == b"stream"
    ) || matches!(
        arguments.inner().get("x-queue-type"),
        Some(AMQPValue::ShortString(s)) if s.as_str() == "stream"
    )
}

/// Messages per queue read back whole at start; the rest stay paged out until they
/// near the head (they are read back in batches then).
const RECOVERED_IN_MEMORY: usize = 10_000;

/// The body length and priority of a stored message, without keeping it.
pub(super) fn peek_message(data: &[u8], prioritized: bool) -> Option<(u32, u8)> {
    let mut r = Reader::new(data);
    r.bytes()?;
    r.bytes()?;
    let raw = r.bytes()?;
    let priority = if prioritized {
        codec::properties(raw)?.priority().unwrap_or(0)
    } else {
        0
    };
    Some((r.rest().len() as u32, priority))
}

/// Checks an existing file without writing to it: it must be a redb database whose
/// format this build understands. A file that only needs redb's crash repair passes
/// (the read-write open repairs it).
pub fn check_read_only(path: &Path) -> Result<(), StoreError> {
    let opened = std::panic::catch_unwind(|| redb::ReadOnlyDatabase::open(path));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(redb::DatabaseError::RepairAborted)) => return Ok(()),
        Ok(Err(e)) => return Err(StoreError::Open(path.to_owned(), e.to_string())),
        Err(_) => {
            return Err(StoreError::Open(
                path.to_owned(),
                "the file is corrupt (not a readable redb database)".into(),
            ));
        }
    };
    let format = (|| -> Result<Option<u64>, redb::Error> {
        let txn = db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(meta.get("format")?.map(|v| v.value()))
    })()
    .map_err(|e| StoreError::Open(path.to_owned(), e.to_string()))?;
    if let Some(v) = format
        && v > FORMAT_VERSION
    {
        return Err(StoreError::Format(
            path.to_owned(),
            format!(
                "written by a newer Warren (format {v}; this build reads up to {FORMAT_VERSION})"
            ),
        ));
    }
    Ok(())
}

pub fn recover(
    db: &Database,
    path: &Path,
    memory: &Arc<MemoryGauge>,
    page_after: usize,
) -> Result<Recovered, StoreError> {
    let io = |e: redb::Error| StoreError::Io(path.to_owned(), e.to_string());
    let corrupt =
        |what: &str| StoreError::Format(path.to_owned(), format!("corrupt {what} record"));

    // Create the tables and record the format on a new file; refuse a newer format;
    // migrate an older one (format 1 lacked the config table, created here).
    let previous_format;
    {
        let txn = db.begin_write().map_err(|e| io(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
            let format = meta
                .get("format")
                .map_err(|e| io(e.into()))?
                .map(|v| v.value());
            previous_format = format;
            match format {
                None => {
                    meta.insert("format", FORMAT_VERSION)
                        .map_err(|e| io(e.into()))?;
                }
                Some(v) if v < FORMAT_VERSION => {
                    tracing::info!(file = %path.display(), from = v, to = FORMAT_VERSION, "migrating the store format");
                    meta.insert("format", FORMAT_VERSION)
                        .map_err(|e| io(e.into()))?;
                }
                Some(v) if v > FORMAT_VERSION => {
                    return Err(StoreError::Format(
                        path.to_owned(),
                        format!(
                            "written by a newer Warren (format {v}; this build reads up to {FORMAT_VERSION})"
                        ),
                    ));
                }
                Some(_) => {}
            }
            txn.open_table(EXCHANGES).map_err(|e| io(e.into()))?;
            txn.open_table(QUEUES).map_err(|e| io(e.into()))?;
            txn.open_table(BINDINGS).map_err(|e| io(e.into()))?;
            txn.open_table(MESSAGES).map_err(|e| io(e.into()))?;
            txn.open_table(REFS).map_err(|e| io(e.into()))?;
            txn.open_table(INDEX).map_err(|e| io(e.into()))?;
            txn.open_table(solo::SOLO).map_err(|e| io(e.into()))?;
            txn.open_table(CONFIG).map_err(|e| io(e.into()))?;
            txn.open_table(stream::STREAM_LOG)
                .map_err(|e| io(e.into()))?;
            txn.open_table(stream::STREAM_CHUNKS)
                .map_err(|e| io(e.into()))?;
            txn.open_table(stream::STREAM_SEGMENTS)
                .map_err(|e| io(e.into()))?;
            txn.open_table(stream::STREAM_TRACKING)
                .map_err(|e| io(e.into()))?;
        }
        txn.commit().map_err(|e| io(e.into()))?;
    }

    let txn = db.begin_read().map_err(|e| io(e.into()))?;
    let meta = txn.open_table(META).map_err(|e| io(e.into()))?;
    let clean = meta
        .get("clean")
        .map_err(|e| io(e.into()))?
        .is_none_or(|v| v.value() == 1);
    let access = txn
        .open_table(CONFIG)
        .map_err(|e| io(e.into()))?
        .get("access")
        .map_err(|e| io(e.into()))?
        .map(|v| v.value().to_vec());

    let mut exchanges = Vec::new();
    for row in txn
        .open_table(EXCHANGES)
        .map_err(|e| io(e.into()))?
        .iter()
        .map_err(|e| io(e.into()))?
    {
        let (k, v) = row.map_err(|e| io(e.into()))?;
        let (vhost, name) = split_key(k.value());
        let mut r = Reader::new(v.value());
        let x = (|| {
            Some(RecoveredExchange {
                vhost,
                name,
                kind: r.string()?,
                auto_delete: r.u8()? == 1,
                internal: r.u8()? == 1,
                arguments: r.table()?,
            })
        })()
        .ok_or_else(|| corrupt("exchange"))?;
        exchanges.push(x);
    }

    let messages_table = txn.open_table(MESSAGES).map_err(|e| io(e.into()))?;
    let index = txn.open_table(INDEX).map_err(|e| io(e.into()))?;
    let stream_segments = txn
        .open_table(stream::STREAM_SEGMENTS)
        .map_err(|e| io(e.into()))?;
    let stream_chunks = txn
        .open_table(stream::STREAM_CHUNKS)
        .map_err(|e| io(e.into()))?;
    let stream_tracking = txn
        .open_table(stream::STREAM_TRACKING)
        .map_err(|e| io(e.into()))?;
    let solo_table = txn.open_table(solo::SOLO).map_err(|e| io(e.into()))?;
    let mut rq = solo::QueueRecovery {
        path,
        solo: &solo_table,
        index: &index,
        messages: &messages_table,
        memory,
        loaded: HashMap::new(),
        in_memory: page_after.min(RECOVERED_IN_MEMORY),
        clean,
        max_solo_id: 0,
    };
    let mut queues = Vec::new();
    let mut next_queue_id = 1;
    for row in txn
        .open_table(QUEUES)
        .map_err(|e| io(e.into()))?
        .iter()
        .map_err(|e| io(e.into()))?
    {
        let (k, v) = row.map_err(|e| io(e.into()))?;
        let (vhost, name) = split_key(k.value());
        let mut r = Reader::new(v.value());
        let (id, auto_delete, arguments) =
            (|| Some((r.u64()?, r.u8()? == 1, r.table()?)))().ok_or_else(|| corrupt("queue"))?;
        next_queue_id = next_queue_id.max(id + 1);
        if is_stream(&arguments) {
            let log = stream::recover(&stream_segments, &stream_chunks, &stream_tracking, id)
                .map_err(io)?;
            queues.push(RecoveredQueue {
                vhost,
                name,
                id,
                auto_delete,
                arguments,
                messages: RecoveredMessages::default(),
                stream: Some(log),
            });
            continue;
        }
        let msgs = rq.queue(id, &name, max_priority(&arguments))?;
        queues.push(RecoveredQueue {
            vhost,
            name,
            id,
            auto_delete,
            arguments,
            messages: msgs,
            stream: None,
        });
    }
    let next_message_id = messages_table
        .last()
        .map_err(|e| io(e.into()))?
        .map_or(1, |(k, _)| k.value() + 1)
        .max(rq.max_solo_id + 1);

    let mut bindings = Vec::new();
    for row in txn
        .open_table(BINDINGS)
        .map_err(|e| io(e.into()))?
        .iter()
        .map_err(|e| io(e.into()))?
    {
        let (k, _) = row.map_err(|e| io(e.into()))?;
        bindings.push(decode_binding(k.value()).ok_or_else(|| corrupt("binding"))?);
    }
    Ok(Recovered {
        exchanges,
        queues,
        bindings,
        clean,
        previous_format,
        access,
        next_message_id,
        next_queue_id,
    })
}

//! The store's writer thread: it owns every write, drains the operations waiting,
//! applies them in one redb transaction and commits them with one fsync (group
//! commit), then publishes the ticket of the last one committed.

use super::codec::put_bytes;
use super::recovery;
use super::solo::{self, SOLO};
use super::stream;
use super::{
    BINDINGS, CONFIG, DbSlot, EXCHANGES, INDEX, MESSAGES, META, Op, QUEUES, REFS, backlog_size,
    entity_key,
};
use redb::{Database, ReadableTable, ReadableTableMetadata};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::watch;

/// The thread that owns all writes.
pub(super) struct Writer {
    pub(super) db: Arc<DbSlot>,
    pub(super) path: PathBuf,
    pub(super) cache_bytes: usize,
    pub(super) max_batch: usize,
    pub(super) backlog: Arc<AtomicUsize>,
}

impl Writer {
    pub(super) fn run(
        self,
        rx: mpsc::Receiver<(u64, Op)>,
        committed: watch::Sender<u64>,
        failed: Arc<Mutex<Vec<(u64, u64)>>>,
    ) {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut batch: Vec<(u64, Op)> = Vec::with_capacity(1024);
        let mut scratch = Vec::new();
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let (lo, hi) = (batch[0].0, batch[batch.len() - 1].0);
            let written: usize = batch
                .iter()
                .map(|(_, op)| match op {
                    Op::PutMessage { msg, .. } | Op::PutSolo { msg, .. } => backlog_size(msg),
                    Op::StreamAppend(a) => backlog_size(&a.message),
                    _ => 0,
                })
                .sum();
            if db.is_none() {
                db = self.reopen();
            }
            let result = match &db {
                Some(d) => apply(d, &mut batch, &mut scratch).map_err(|e| e.to_string()),
                None => Err("the store is unavailable since a failed write".to_owned()),
            };
            if let Err(error) = result {
                tracing::error!(file = %self.path.display(), %error, "store commit failed");
                failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((lo, hi));
                // After a failed write (a full disk, say) redb refuses further writes
                // until the file is opened again; the next batch tries that.
                if db.take().is_some() {
                    *self.db.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
            }
            self.backlog.fetch_sub(written, Ordering::Relaxed);
            batch.clear();
            committed.send_replace(hi);
        }
    }

    /// Opens the file again after a write failure; None while that still fails.
    fn reopen(&self) -> Option<Arc<Database>> {
        match Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
        {
            Ok(d) => {
                let d = Arc::new(d);
                *self.db.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.clone());
                tracing::info!(file = %self.path.display(), "store writable again");
                Some(d)
            }
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "store still unavailable");
                None
            }
        }
    }
}

/// Drops the writes of messages consumed within the batch that stores them: a message
/// held by one queue, enqueued and removed (acked) before the commit, never needs to
/// reach the disk. Under load most acks of a fast consumer arrive this way.
pub(super) fn cancel_consumed(batch: &mut [(u64, Op)]) {
    // Message id -> position of its PutMessage; (queue, seq) -> position of the Enqueue;
    // (queue, message id) -> position of a PutSolo.
    let mut puts = crate::model::FastMap::default();
    let mut enqueued = crate::model::FastMap::default();
    let mut solos = crate::model::FastMap::default();
    for i in 0..batch.len() {
        match &batch[i].1 {
            Op::PutMessage { id, refs: 1, .. } => {
                puts.insert(*id, i);
            }
            Op::PutSolo { queue, msg, .. } => {
                solos.insert((*queue, msg.store_id), i);
            }
            Op::Enqueue {
                queue, seq, msg, ..
            } if puts.contains_key(msg) => {
                enqueued.insert((*queue, *seq), i);
            }
            Op::Remove { queue, seq, msg } => {
                if let Some(p) = solos.remove(&(*queue, *msg)) {
                    batch[p].1 = Op::Skip;
                    batch[i].1 = Op::Skip;
                } else if let (Some(&e), Some(&p)) = (enqueued.get(&(*queue, *seq)), puts.get(msg))
                {
                    batch[p].1 = Op::Skip;
                    batch[e].1 = Op::Skip;
                    batch[i].1 = Op::Skip;
                }
            }
            _ => {}
        }
    }
}

pub(super) fn apply(
    db: &Database,
    batch: &mut [(u64, Op)],
    scratch: &mut Vec<u8>,
) -> Result<(), redb::Error> {
    cancel_consumed(batch);
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let mut exchanges = txn.open_table(EXCHANGES)?;
        let mut queues = txn.open_table(QUEUES)?;
        let mut bindings = txn.open_table(BINDINGS)?;
        let mut messages = txn.open_table(MESSAGES)?;
        let refs = txn.open_table(REFS)?;
        let mut refs = Refs {
            any: !refs.is_empty()?,
            table: refs,
        };
        let mut index = txn.open_table(INDEX)?;
        let mut solo_t = txn.open_table(SOLO)?;
        let mut config = txn.open_table(CONFIG)?;
        let mut streams = stream::Tables::open(&txn)?;
        for (_, op) in batch.iter() {
            match op {
                Op::PutExchange(k, v) => {
                    exchanges.insert(k.as_str(), v.as_slice())?;
                }
                Op::DeleteExchange { vhost, name } => {
                    exchanges.remove(entity_key(vhost, name).as_str())?;
                    bindings.retain(|k, ()| !recovery::binding_touches_exchange(k, vhost, name))?;
                }
                Op::PutQueue(k, v) => {
                    queues.insert(k.as_str(), v.as_slice())?;
                }
                Op::DeleteQueue { vhost, name, id } => {
                    queues.remove(entity_key(vhost, name).as_str())?;
                    bindings.retain(|k, ()| !recovery::binding_touches_queue(k, vhost, name))?;
                    let mut gone = Vec::new();
                    for entry in index.extract_from_if((*id, 0)..=(*id, u64::MAX), |_, _| true)? {
                        let (_, v) = entry?;
                        gone.push(v.value().0);
                    }
                    for msg in gone {
                        release(&mut messages, &mut refs, msg)?;
                    }
                    solo_t.retain_in((*id, 0)..=(*id, u64::MAX), |_, _| false)?;
                    streams.delete(*id)?;
                }
                Op::PutBinding(k) => {
                    bindings.insert(k.as_slice(), ())?;
                }
                Op::DeleteBinding(k) => {
                    bindings.remove(k.as_slice())?;
                }
                Op::PutMessage { id, refs: n, msg } => {
                    scratch.clear();
                    encode_message(scratch, msg);
                    messages.insert(*id, scratch.as_slice())?;
                    if *n > 1 {
                        refs.table.insert(*id, *n)?;
                        refs.any = true;
                    }
                }
                Op::Enqueue {
                    queue,
                    seq,
                    msg,
                    expires,
                } => {
                    index.insert((*queue, *seq), (*msg, false, *expires))?;
                }
                Op::PutSolo {
                    queue,
                    seq,
                    msg,
                    expires,
                } => {
                    scratch.clear();
                    solo::put_header(scratch, *seq, false, *expires);
                    encode_message(scratch, msg);
                    solo_t.insert((*queue, msg.store_id), scratch.as_slice())?;
                }
                Op::Unref(msg) => {
                    release(&mut messages, &mut refs, *msg)?;
                }
                Op::Remove { queue, seq, msg } => {
                    if solo_t.remove((*queue, *msg))?.is_none()
                        && index.remove((*queue, *seq))?.is_some()
                    {
                        release(&mut messages, &mut refs, *msg)?;
                    }
                }
                Op::RemoveRun { queue, run } => {
                    for e in run.iter() {
                        if solo_t.remove((*queue, e.store_id))?.is_none()
                            && index.remove((*queue, e.seq))?.is_some()
                        {
                            release(&mut messages, &mut refs, e.store_id)?;
                        }
                    }
                }
                Op::SetRedelivered { queue, seq, msg } => {
                    let in_solo = solo_t
                        .get((*queue, *msg))?
                        .map(|v| solo::redelivered(v.value()));
                    if let Some(value) = in_solo {
                        if let Some(value) = value {
                            solo_t.insert((*queue, *msg), value.as_slice())?;
                        }
                    } else {
                        let current = index.get((*queue, *seq))?.map(|v| v.value());
                        if let Some((msg, _, expires)) = current {
                            index.insert((*queue, *seq), (msg, true, expires))?;
                        }
                    }
                }
                Op::SetClean(clean) => {
                    meta.insert("clean", u64::from(*clean))?;
                }
                Op::PutAccess(json) => {
                    config.insert("access", json.as_slice())?;
                }
                Op::StreamAppend(a) => streams.append(a, scratch)?,
                Op::StreamTruncate { stream, before } => streams.truncate(*stream, *before)?,
                Op::StreamTrack { stream, tag, next } => streams.track(*stream, tag, *next)?,
                Op::Skip => {}
            }
        }
        streams.finish()?;
    }
    txn.commit()?;
    Ok(())
}

/// A message as `messages` (and a `solo` record after its queue entry) stores it:
/// exchange, routing key, encoded properties, body.
fn encode_message(out: &mut Vec<u8>, msg: &crate::model::Message) {
    put_bytes(out, msg.exchange.as_str().as_bytes());
    put_bytes(out, msg.routing_key.as_str().as_bytes());
    put_bytes(out, &msg.raw_properties);
    out.extend_from_slice(&msg.body);
}

/// The reference counts of messages stored for several queues, and whether the
/// table may hold any: a message stored for one queue has no entry, and while the
/// table is empty its lookup before each delete is skipped.
pub(super) struct Refs<'t> {
    table: redb::Table<'t, u64, u32>,
    any: bool,
}

/// Drops one reference to a stored message, deleting it with the last one.
pub(super) fn release(
    messages: &mut redb::Table<u64, &[u8]>,
    refs: &mut Refs<'_>,
    msg: u64,
) -> Result<(), redb::Error> {
    let n = if refs.any {
        refs.table.get(msg)?.map(|v| v.value())
    } else {
        None
    };
    match n {
        Some(n) if n > 2 => {
            refs.table.insert(msg, n - 1)?;
        }
        Some(_) => {
            refs.table.remove(msg)?;
        }
        None => {
            messages.remove(msg)?;
        }
    }
    Ok(())
}

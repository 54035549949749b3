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
use redb::{Database, ReadableTable, ReadableTableMetadata, Table};
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
/// held by one queue, stored (`PutSolo`) and removed (acked) before the commit, never
/// needs to reach the disk. Under load most acks of a fast consumer arrive this way.
/// (A message shared by several queues is stored as `PutMessage` + `Enqueue`s and
/// always written.)
pub(super) fn cancel_consumed(batch: &mut [(u64, Op)]) {
    // (queue, message id) -> position of its PutSolo.
    let mut solos = crate::model::FastMap::default();
    for i in 0..batch.len() {
        match &batch[i].1 {
            Op::PutSolo { queue, msg, .. } => {
                solos.insert((*queue, msg.store_id), i);
            }
            Op::Remove { queue, msg, .. } => {
                if let Some(p) = solos.remove(&(*queue, *msg)) {
                    batch[p].1 = Op::Skip;
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
        let mut t = Tables::new(&txn);
        for (_, op) in batch.iter() {
            t.apply(op, scratch)?;
        }
        if let Some(streams) = t.streams {
            streams.finish()?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// The tables of one batch's transaction, each opened when an operation first needs
/// it: a small batch (one publish under a confirm window of 1) touches one or two of
/// the fourteen, and opening a table costs about as much as a B-tree operation.
struct Tables<'t> {
    txn: &'t redb::WriteTransaction,
    meta: Option<Table<'t, &'static str, u64>>,
    exchanges: Option<Table<'t, &'static str, &'static [u8]>>,
    queues: Option<Table<'t, &'static str, &'static [u8]>>,
    bindings: Option<Table<'t, &'static [u8], ()>>,
    messages: Option<Table<'t, u64, &'static [u8]>>,
    refs: Option<Refs<'t>>,
    index: Option<Table<'t, (u64, u64), solo::EntryHead>>,
    solo: Option<Table<'t, (u64, u64), &'static [u8]>>,
    config: Option<Table<'t, &'static str, &'static [u8]>>,
    streams: Option<stream::Tables<'t>>,
}

/// `slot`'s table, opened in `txn` if it is not yet.
fn open<'s, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'t redb::WriteTransaction,
    slot: &'s mut Option<Table<'t, K, V>>,
    def: redb::TableDefinition<K, V>,
) -> Result<&'s mut Table<'t, K, V>, redb::Error> {
    let table = match slot.take() {
        Some(t) => t,
        None => txn.open_table(def)?,
    };
    Ok(slot.insert(table))
}

/// The refs table, opened in `txn` (with whether it holds any entry) if it is not yet.
fn open_refs<'s, 't>(
    txn: &'t redb::WriteTransaction,
    slot: &'s mut Option<Refs<'t>>,
) -> Result<&'s mut Refs<'t>, redb::Error> {
    let refs = match slot.take() {
        Some(r) => r,
        None => {
            let table = txn.open_table(REFS)?;
            Refs {
                any: !table.is_empty()?,
                table,
            }
        }
    };
    Ok(slot.insert(refs))
}

impl<'t> Tables<'t> {
    fn new(txn: &'t redb::WriteTransaction) -> Tables<'t> {
        Tables {
            txn,
            meta: None,
            exchanges: None,
            queues: None,
            bindings: None,
            messages: None,
            refs: None,
            index: None,
            solo: None,
            config: None,
            streams: None,
        }
    }

    fn streams(&mut self) -> Result<&mut stream::Tables<'t>, redb::Error> {
        let tables = match self.streams.take() {
            Some(t) => t,
            None => stream::Tables::open(self.txn)?,
        };
        Ok(self.streams.insert(tables))
    }

    /// Drops one reference to a stored message, deleting it with the last one.
    fn release(&mut self, msg: u64) -> Result<(), redb::Error> {
        let refs = open_refs(self.txn, &mut self.refs)?;
        let messages = open(self.txn, &mut self.messages, MESSAGES)?;
        release(messages, refs, msg)
    }

    fn apply(&mut self, op: &Op, scratch: &mut Vec<u8>) -> Result<(), redb::Error> {
        let txn = self.txn;
        match op {
            Op::PutExchange(k, v) => {
                open(txn, &mut self.exchanges, EXCHANGES)?.insert(k.as_str(), v.as_slice())?;
            }
            Op::DeleteExchange { vhost, name } => {
                open(txn, &mut self.exchanges, EXCHANGES)?
                    .remove(entity_key(vhost, name).as_str())?;
                open(txn, &mut self.bindings, BINDINGS)?
                    .retain(|k, ()| !recovery::binding_touches_exchange(k, vhost, name))?;
            }
            Op::PutQueue(k, v) => {
                open(txn, &mut self.queues, QUEUES)?.insert(k.as_str(), v.as_slice())?;
            }
            Op::DeleteQueue { vhost, name, id } => {
                open(txn, &mut self.queues, QUEUES)?.remove(entity_key(vhost, name).as_str())?;
                open(txn, &mut self.bindings, BINDINGS)?
                    .retain(|k, ()| !recovery::binding_touches_queue(k, vhost, name))?;
                let mut gone = Vec::new();
                let index = open(txn, &mut self.index, INDEX)?;
                for entry in index.extract_from_if((*id, 0)..=(*id, u64::MAX), |_, _| true)? {
                    let (_, v) = entry?;
                    gone.push(v.value().0);
                }
                for msg in gone {
                    self.release(msg)?;
                }
                open(txn, &mut self.solo, SOLO)?
                    .retain_in((*id, 0)..=(*id, u64::MAX), |_, _| false)?;
                self.streams()?.delete(*id)?;
            }
            Op::PutBinding(k) => {
                open(txn, &mut self.bindings, BINDINGS)?.insert(k.as_slice(), ())?;
            }
            Op::DeleteBinding(k) => {
                open(txn, &mut self.bindings, BINDINGS)?.remove(k.as_slice())?;
            }
            Op::PutMessage { id, refs: n, msg } => {
                scratch.clear();
                encode_message(scratch, msg);
                open(txn, &mut self.messages, MESSAGES)?.insert(*id, scratch.as_slice())?;
                if *n > 1 {
                    let refs = open_refs(txn, &mut self.refs)?;
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
                open(txn, &mut self.index, INDEX)?
                    .insert((*queue, *seq), (*msg, false, *expires))?;
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
                open(txn, &mut self.solo, SOLO)?
                    .insert((*queue, msg.store_id), scratch.as_slice())?;
            }
            Op::Unref(msg) => self.release(*msg)?,
            Op::Remove { queue, seq, msg } => {
                if open(txn, &mut self.solo, SOLO)?
                    .remove((*queue, *msg))?
                    .is_none()
                    && open(txn, &mut self.index, INDEX)?
                        .remove((*queue, *seq))?
                        .is_some()
                {
                    self.release(*msg)?;
                }
            }
            Op::RemoveRun { queue, run } => {
                for e in run.iter() {
                    if open(txn, &mut self.solo, SOLO)?
                        .remove((*queue, e.store_id))?
                        .is_none()
                        && open(txn, &mut self.index, INDEX)?
                            .remove((*queue, e.seq))?
                            .is_some()
                    {
                        self.release(e.store_id)?;
                    }
                }
            }
            Op::SetRedelivered { queue, seq, msg } => {
                let solo_t = open(txn, &mut self.solo, SOLO)?;
                let in_solo = solo_t
                    .get((*queue, *msg))?
                    .map(|v| solo::redelivered(v.value()));
                if let Some(value) = in_solo {
                    if let Some(value) = value {
                        solo_t.insert((*queue, *msg), value.as_slice())?;
                    }
                } else {
                    let index = open(txn, &mut self.index, INDEX)?;
                    let current = index.get((*queue, *seq))?.map(|v| v.value());
                    if let Some((msg, _, expires)) = current {
                        index.insert((*queue, *seq), (msg, true, expires))?;
                    }
                }
            }
            Op::SetClean(clean) => {
                open(txn, &mut self.meta, META)?.insert("clean", u64::from(*clean))?;
            }
            Op::PutAccess(json) => {
                open(txn, &mut self.config, CONFIG)?.insert("access", json.as_slice())?;
            }
            Op::StreamAppend(a) => self.streams()?.append(a, scratch)?,
            Op::StreamTruncate { stream, before } => self.streams()?.truncate(*stream, *before)?,
            Op::StreamTrack { stream, tag, next } => self.streams()?.track(*stream, tag, *next)?,
            Op::Skip => {}
        }
        Ok(())
    }
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

//! Durable storage on redb: one file, `warren.redb`, under the data directory.
//!
//! One writer thread owns all writes. Connections and queues send it operations; it
//! drains every operation waiting, applies them in one write transaction and commits
//! (one fsync), then publishes the ticket of the last operation committed. Publisher
//! confirms and tx.commit-ok wait for that ticket: under load one fsync covers
//! thousands of messages, and when idle a single publish is committed at once.

pub mod codec;
mod error;
mod keys;
mod recovery;
mod solo;
pub mod stream;
mod writer;

use crate::model::Message;
use amq_protocol::types::FieldTable;
use codec::{put_bytes, put_table};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::watch;
use writer::Writer;

pub use error::StoreError;
pub use keys::BindingKey;
use keys::entity_key;
pub use recovery::{
    Recovered, RecoveredBinding, RecoveredExchange, RecoveredMessage, RecoveredMessages,
    RecoveredQueue,
};

/// Version of the layout below, recorded in the file. 2 added the `config` table
/// (users, vhosts, permissions, policies), 3 the stream tables ([`stream`]), 4 the
/// `solo` table ([`solo`]); an older file is migrated on open (the new tables are
/// created empty, and what the old ones hold is read as before).
pub const FORMAT_VERSION: u64 = 4;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Operator-managed records: key `access` holds [`crate::access::AccessState`] as JSON.
const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");
const EXCHANGES: TableDefinition<&str, &[u8]> = TableDefinition::new("exchanges");
const QUEUES: TableDefinition<&str, &[u8]> = TableDefinition::new("queues");
const BINDINGS: TableDefinition<&[u8], ()> = TableDefinition::new("bindings");
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// Reference counts of messages held by more than one queue (absent means one).
const REFS: TableDefinition<u64, u32> = TableDefinition::new("refs");
/// (queue id, position) -> (message id, redelivered, expiry in ms since the epoch or 0).
const INDEX: TableDefinition<(u64, u64), (u64, bool, u64)> = TableDefinition::new("index");

enum Op {
    PutExchange(String, Vec<u8>),
    DeleteExchange {
        vhost: String,
        name: String,
    },
    PutQueue(String, Vec<u8>),
    DeleteQueue {
        vhost: String,
        name: String,
        id: u64,
    },
    PutBinding(Vec<u8>),
    DeleteBinding(Vec<u8>),
    PutMessage {
        id: u64,
        refs: u32,
        msg: Arc<Message>,
    },
    Enqueue {
        queue: u64,
        seq: u64,
        msg: u64,
        expires: u64,
    },
    /// Stores a message held by one durable queue with its queue entry ([`solo`]).
    PutSolo {
        queue: u64,
        seq: u64,
        msg: Arc<Message>,
        expires: u64,
    },
    /// Drops one reference to a message that a queue refused.
    Unref(u64),
    Remove {
        queue: u64,
        seq: u64,
        msg: u64,
    },
    /// Removes a run of paged-out messages (a purge), kept in its compact form.
    RemoveRun {
        queue: u64,
        run: crate::model::paged::PagedRun,
    },
    SetRedelivered {
        queue: u64,
        seq: u64,
        msg: u64,
    },
    SetClean(bool),
    /// Replaces the operator-managed records (JSON).
    PutAccess(Vec<u8>),
    /// Appends a message to a stream's log.
    StreamAppend(stream::Append),
    /// Removes a stream's entries before an offset (retention).
    StreamTruncate {
        stream: u64,
        before: u64,
    },
    /// Where a tracking consumer of a stream resumes.
    StreamTrack {
        stream: u64,
        tag: String,
        next: u64,
    },
    /// An operation cancelled out within its batch (see [`cancel_consumed`]).
    Skip,
}

struct Sender {
    tx: mpsc::Sender<(u64, Op)>,
    next_ticket: u64,
}

/// The handle everyone shares; cheap to call from any thread.
pub struct Store {
    path: PathBuf,
    sender: Mutex<Option<Sender>>,
    committed: watch::Receiver<u64>,
    /// Tickets whose commit failed, as inclusive ranges; their confirms become nacks.
    failed: Arc<Mutex<Vec<(u64, u64)>>>,
    next_message_id: AtomicU64,
    next_queue_id: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Read access for paging message bodies back in; the writer thread writes.
    db: Arc<DbSlot>,
    memory: Arc<crate::model::memory::MemoryGauge>,
    page_after: usize,
    /// Bytes of messages sent to the writer and not yet committed.
    backlog: Arc<AtomicUsize>,
    backlog_high: usize,
}

/// The open database, shared by the writer thread (which replaces it after a write
/// failure) and the readers that page messages back in.
type DbSlot = Mutex<Option<Arc<Database>>>;

/// Tunables of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// Ready messages a durable queue keeps in memory; persistent messages beyond
    /// that stay only in the store until they are about to be delivered.
    pub page_after: usize,
    /// Most operations committed in one transaction (1: one commit per operation).
    pub max_batch: usize,
    /// Uncommitted message bytes above which publishers are held back.
    pub backlog_bytes: usize,
}

impl Store {
    /// Opens (or creates) `data_dir/warren.redb` and reads back everything durable.
    pub fn open(
        data_dir: &Path,
        memory: &Arc<crate::model::memory::MemoryGauge>,
        options: StoreOptions,
    ) -> Result<(Arc<Store>, Recovered), StoreError> {
        let path = data_dir.join("warren.redb");
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Open(path.clone(), format!("cannot create data directory: {e}"))
        })?;
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            recovery::check_read_only(&path)?;
        }
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_cache_size(options.cache_bytes)
                .create(&path)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(StoreError::Open(path, e.to_string())),
            Err(_) => {
                return Err(StoreError::Open(
                    path,
                    "the file is corrupt (not a readable redb database)".into(),
                ));
            }
        };
        let recovered = recovery::recover(&db, &path, memory, options.page_after)?;
        let db: Arc<DbSlot> = Arc::new(Mutex::new(Some(Arc::new(db))));
        let (committed_tx, committed) = watch::channel(0);
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(Mutex::new(Vec::new()));
        let backlog = Arc::new(AtomicUsize::new(0));
        let writer = {
            let failed = failed.clone();
            let backlog = backlog.clone();
            let file = path.clone();
            let db = db.clone();
            std::thread::Builder::new()
                .name("warren-store".into())
                .spawn(move || {
                    let w = Writer {
                        db,
                        path: file,
                        cache_bytes: options.cache_bytes,
                        max_batch: options.max_batch,
                        backlog,
                    };
                    w.run(rx, committed_tx, failed)
                })
                .map_err(|e| StoreError::Open(path.clone(), e.to_string()))?
        };
        let store = Arc::new(Store {
            path,
            sender: Mutex::new(Some(Sender { tx, next_ticket: 1 })),
            committed,
            failed,
            next_message_id: AtomicU64::new(recovered.next_message_id),
            next_queue_id: AtomicU64::new(recovered.next_queue_id),
            writer: Mutex::new(Some(writer)),
            db,
            memory: memory.clone(),
            page_after: options.page_after,
            backlog,
            backlog_high: options.backlog_bytes,
        });
        // Until a clean stop says otherwise, the next start treats the file as crashed.
        store.send(Op::SetClean(false));
        Ok((store, recovered))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many ready messages a durable queue keeps in memory.
    pub fn page_after(&self) -> usize {
        self.page_after
    }

    /// The last ticket known to be on disk.
    pub fn committed_now(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Reads a queue's stored messages back (paged-out bodies), in one read
    /// transaction. A message that is missing or unreadable comes back as None.
    pub fn load(&self, queue: u64, ids: &[u64]) -> Vec<Option<Arc<Message>>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let read = || -> Result<Vec<Option<Arc<Message>>>, redb::Error> {
            let Some(db) = db else {
                return Ok(vec![None; ids.len()]);
            };
            solo::load(&db.begin_read()?, queue, ids, &self.memory)
        };
        read().unwrap_or_else(|e| {
            tracing::error!(error = %e, file = %self.path.display(), "cannot read paged messages");
            vec![None; ids.len()]
        })
    }

    /// Queues an operation; returns its ticket (0 if the store is closed).
    fn send(&self, op: Op) -> u64 {
        let mut guard = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_mut() else {
            return 0;
        };
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        if s.tx.send((ticket, op)).is_err() {
            return 0;
        }
        ticket
    }

    /// The ticket of the last operation queued so far.
    pub fn last_ticket(&self) -> u64 {
        let guard = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map_or(0, |s| s.next_ticket - 1)
    }

    /// Persists the operator-managed records (users, vhosts, permissions, policies)
    /// as one JSON document; returns the ticket to wait for.
    pub fn put_access(&self, json: Vec<u8>) -> u64 {
        self.send(Op::PutAccess(json))
    }

    /// Waits until `ticket` is committed (or the store stopped); false if its commit
    /// failed or the store closed first.
    pub async fn wait_committed(&self, ticket: u64) -> bool {
        if ticket == 0 {
            return true;
        }
        let mut rx = self.committed.clone();
        let reached = rx.wait_for(|c| *c >= ticket).await.is_ok();
        reached && !self.failed(ticket, ticket)
    }

    /// Blocks the calling thread (one allowed to block) until `ticket` is committed
    /// or the store is closed.
    pub fn wait_committed_blocking(&self, ticket: u64) {
        while self.committed_now() < ticket {
            if self
                .sender
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// A receiver of the highest committed ticket.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Whether a commit holding any ticket from `first` to `last` failed.
    pub fn failed(&self, first: u64, last: u64) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.iter().any(|(lo, hi)| *lo <= last && first <= *hi)
    }

    pub fn new_message_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn new_queue_id(&self) -> u64 {
        self.next_queue_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn put_exchange(
        &self,
        vhost: &str,
        name: &str,
        kind: &str,
        auto_delete: bool,
        internal: bool,
        arguments: &FieldTable,
    ) {
        let mut v = Vec::new();
        put_bytes(&mut v, kind.as_bytes());
        v.push(u8::from(auto_delete));
        v.push(u8::from(internal));
        put_table(&mut v, arguments);
        self.send(Op::PutExchange(entity_key(vhost, name), v));
    }

    pub fn delete_exchange(&self, vhost: &str, name: &str) {
        self.send(Op::DeleteExchange {
            vhost: vhost.into(),
            name: name.into(),
        });
    }

    pub fn put_queue(
        &self,
        vhost: &str,
        name: &str,
        id: u64,
        auto_delete: bool,
        arguments: &FieldTable,
    ) {
        let mut v = Vec::new();
        v.extend_from_slice(&id.to_be_bytes());
        v.push(u8::from(auto_delete));
        put_table(&mut v, arguments);
        self.send(Op::PutQueue(entity_key(vhost, name), v));
    }

    pub fn delete_queue(&self, vhost: &str, name: &str, id: u64) -> u64 {
        self.send(Op::DeleteQueue {
            vhost: vhost.into(),
            name: name.into(),
            id,
        })
    }

    pub fn put_binding(&self, b: &BindingKey) {
        self.send(Op::PutBinding(b.encode()));
    }

    pub fn delete_binding(&self, b: &BindingKey) {
        self.send(Op::DeleteBinding(b.encode()));
    }

    /// Stores a message body once, for `refs` durable queues.
    pub fn put_message(&self, id: u64, refs: u32, msg: Arc<Message>) -> u64 {
        self.backlog
            .fetch_add(backlog_size(&msg), Ordering::Relaxed);
        self.send(Op::PutMessage { id, refs, msg })
    }

    /// Whether more message data waits for a commit than publishers may run ahead by.
    pub fn backlogged(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) > self.backlog_high
    }

    /// Whether the backlog is down to half its limit, where held-back publishers resume.
    pub fn caught_up(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) <= self.backlog_high / 2
    }

    /// Stores a message that one durable queue holds, with its entry in that queue:
    /// one record instead of a body and an index entry.
    pub fn put_solo(&self, queue: u64, seq: u64, msg: Arc<Message>, expires: u64) -> u64 {
        self.backlog
            .fetch_add(backlog_size(&msg), Ordering::Relaxed);
        self.send(Op::PutSolo {
            queue,
            seq,
            msg,
            expires,
        })
    }

    pub fn enqueue(&self, queue: u64, seq: u64, msg: u64, expires: u64) -> u64 {
        self.send(Op::Enqueue {
            queue,
            seq,
            msg,
            expires,
        })
    }

    /// Gives back the reference a durable queue would have held on a stored message
    /// it refused (a full queue).
    pub fn unref(&self, msg: u64) {
        self.send(Op::Unref(msg));
    }

    pub fn remove(&self, queue: u64, seq: u64, msg: u64) -> u64 {
        self.send(Op::Remove { queue, seq, msg })
    }

    /// Forgets the stored copies of a run of paged-out messages.
    pub fn remove_run(&self, queue: u64, run: crate::model::paged::PagedRun) -> u64 {
        self.send(Op::RemoveRun { queue, run })
    }

    pub fn set_redelivered(&self, queue: u64, seq: u64, msg: u64) {
        self.send(Op::SetRedelivered { queue, seq, msg });
    }

    fn unavailable(&self) -> StoreError {
        StoreError::Io(
            self.path.clone(),
            "the store is unavailable since a failed write".into(),
        )
    }

    /// Marks the stop as clean, commits everything pending and stops the writer.
    pub fn close(&self) {
        self.send(Op::SetClean(true));
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(sender);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = writer {
            let _ = w.join();
        }
        // The writer is done: close the file now, so that it can be opened again.
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Ok(db)) = db.map(Arc::try_unwrap)
            && let Err(error) = db.close()
        {
            tracing::error!(file = %self.path.display(), %error, "store close failed");
        }
    }
}

/// What a stored message waiting for its commit costs in memory beyond its body and
/// properties: the message itself, the operations that store and enqueue it, and the
/// share of the connection's read buffer its body is a slice of. Measured: about
/// 700 bytes in all for a 100-byte message published without confirms.
const BACKLOG_OVERHEAD: usize = 600;

/// What a stored message counts for in the store's backlog.
fn backlog_size(msg: &Message) -> usize {
    msg.body.len() + msg.raw_properties.len() + BACKLOG_OVERHEAD
}

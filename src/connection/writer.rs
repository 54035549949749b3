//! The writer task: the only owner of a socket's write half.
//!
//! The connection task encodes frames into its own buffer and hands the whole buffer
//! to the [`Outbox`] once per wake-up; the writer swaps it out and writes it with one
//! syscall (or a few, for large bodies). When nothing has been written for a
//! heartbeat interval, it sends a heartbeat frame.

use crate::protocol::codec::write_heartbeat;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Write what is pending, then shut the socket down and stop.
    close: bool,
}

/// The hand-off point between a connection task and its writer.
#[derive(Default)]
pub struct Outbox {
    pending: Mutex<Pending>,
    notify: Notify,
    /// Seconds of write silence before a heartbeat is sent (0: never).
    heartbeat: AtomicU32,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Only plain buffer operations happen under this lock; poison cannot leave
        // the buffer half-written in a way that matters more than the panic itself.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues encoded frames; `frames` is left empty (with its capacity kept when
    /// the writer was idle).
    pub fn push(&self, frames: &mut Vec<u8>) {
        if frames.is_empty() {
            return;
        }
        {
            let mut p = self.lock();
            if p.buf.is_empty() {
                std::mem::swap(&mut p.buf, frames);
            } else {
                p.buf.append(frames);
            }
        }
        self.notify.notify_one();
    }

    /// Asks the writer to flush what is pending, then close the socket.
    pub fn close(&self) {
        self.lock().close = true;
        self.notify.notify_one();
    }

    pub fn set_heartbeat(&self, secs: u16) {
        self.heartbeat.store(u32::from(secs), Ordering::Relaxed);
        self.notify.notify_one();
    }
}

/// Runs until the outbox is closed or the socket fails.
pub async fn run(outbox: Arc<Outbox>, mut socket: OwnedWriteHalf) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let (close, wrote) = {
            let mut p = outbox.lock();
            std::mem::swap(&mut p.buf, &mut spare);
            (p.close, !spare.is_empty())
        };
        if wrote {
            if let Err(error) = socket.write_all(&spare).await {
                tracing::debug!(%error, "socket write failed");
                return;
            }
            spare.clear();
            if spare.capacity() > 4 * 1024 * 1024 {
                spare = Vec::with_capacity(64 * 1024);
            }
            continue;
        }
        if close {
            let _ = socket.shutdown().await;
            return;
        }
        let heartbeat = outbox.heartbeat.load(Ordering::Relaxed);
        if heartbeat == 0 {
            outbox.notify.notified().await;
        } else {
            let idle = Duration::from_secs(u64::from(heartbeat));
            if tokio::time::timeout(idle, outbox.notify.notified())
                .await
                .is_err()
            {
                let mut p = outbox.lock();
                write_heartbeat(&mut p.buf);
            }
        }
    }
}

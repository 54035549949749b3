//! Writing to a socket.
//!
//! The connection task encodes frames into its own buffer and hands the whole buffer
//! to the [`Outbox`] once per wake-up. When nothing is queued or being written, the
//! outbox writes it straight away with a non-blocking write (the common case: no
//! task switch); whatever the socket does not take goes to the writer task, which
//! waits for the socket and writes the rest in order. When nothing has been written
//! for a heartbeat interval, the writer sends a heartbeat frame.
//!
//! A TLS connection has no non-blocking write: its outbox holds no socket, every
//! buffer goes to the writer task, which owns the TLS write half.

use crate::protocol::codec::write_heartbeat;
use crate::tls::stream::TlsWriteHalf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// The writer task holds bytes it has not written yet: nothing may overtake them.
    writing: bool,
    /// Write what is pending, then shut the socket down and stop.
    close: bool,
}

/// The hand-off point between a connection task and its writer.
pub struct Outbox {
    pending: Mutex<Pending>,
    notify: Notify,
    /// Signalled each time the writer task finished writing a buffer.
    written: Notify,
    /// The plain-TCP socket (none for TLS: the writer task owns that one).
    socket: Option<OwnedWriteHalf>,
    /// Seconds of write silence before a heartbeat is sent (0: never).
    heartbeat: AtomicU32,
    /// Bytes handed to the writer since the connection opened.
    sent: AtomicU64,
}

impl Outbox {
    pub fn new(socket: Option<OwnedWriteHalf>) -> Outbox {
        Outbox {
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
            sent: AtomicU64::new(0),
            written: Notify::new(),
            socket,
            heartbeat: AtomicU32::new(0),
        }
    }

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
        self.sent.fetch_add(frames.len() as u64, Ordering::Relaxed);
        {
            let mut p = self.lock();
            if p.buf.is_empty()
                && !p.writing
                && !p.close
                && let Some(socket) = &self.socket
            {
                // Nothing queued: try the socket now, under the lock so that nothing
                // can be queued meanwhile and overtake these bytes.
                let written = match socket.try_write(frames) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    // The writer task finds the same error and ends the connection.
                    Err(_) => 0,
                };
                if written == frames.len() {
                    frames.clear();
                    return;
                }
                frames.drain(..written);
                std::mem::swap(&mut p.buf, frames);
            } else {
                p.buf.append(frames);
            }
        }
        self.notify.notify_one();
    }

    /// Bytes handed to the writer since the connection opened (heartbeats aside).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes queued behind a socket that is not keeping up, beyond which the
    /// connection stops taking deliveries from queues (they wait in the queue, and
    /// publishers are held back) until the peer reads.
    const BACKLOG: usize = 256 * 1024;

    /// Whether the peer is not reading as fast as we write.
    pub fn backlogged(&self) -> bool {
        let p = self.lock();
        p.writing && p.buf.len() > Self::BACKLOG
    }

    /// Waits until the writer task has written another buffer.
    pub async fn wait_written(&self) {
        let written = self.written.notified();
        tokio::pin!(written);
        written.as_mut().enable();
        if !self.backlogged() {
            return;
        }
        written.await;
    }

    /// Gives up the write half without shutting it down (no FIN): the socket closes
    /// when the read half goes.
    pub fn forget(self) {
        if let Some(socket) = self.socket {
            socket.forget();
        }
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

/// Runs until the outbox is closed or the socket fails; `tls` is the socket of a TLS
/// connection (the outbox holds a plain one).
pub async fn run(outbox: Arc<Outbox>, mut tls: Option<TlsWriteHalf>) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let (close, wrote) = {
            let mut p = outbox.lock();
            std::mem::swap(&mut p.buf, &mut spare);
            p.writing = !spare.is_empty();
            (p.close, p.writing)
        };
        if !wrote {
            outbox.written.notify_waiters();
        }
        if wrote {
            let result = match (&mut tls, &outbox.socket) {
                (Some(tls), _) => write_tls(tls, &spare).await,
                (None, Some(socket)) => write_all(socket, &spare).await,
                (None, None) => Err(std::io::ErrorKind::NotConnected.into()),
            };
            if let Err(error) = result {
                tracing::debug!(%error, "socket write failed");
                return;
            }
            spare.clear();
            if spare.capacity() > 4 * 1024 * 1024 {
                spare = Vec::with_capacity(64 * 1024);
            }
            outbox.written.notify_waiters();
            continue;
        }
        if close {
            // Dropping the last handle of the write half shuts the socket down; TLS
            // sends its close_notify first.
            // Bounded: a peer that reads nothing must not hold the task.
            if let Some(tls) = &mut tls {
                let _ = tokio::time::timeout(Duration::from_secs(5), tls.shutdown()).await;
            }
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

/// Writes a whole buffer, waiting for the socket whenever it is full.
async fn write_all(socket: &OwnedWriteHalf, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        socket.writable().await?;
        match socket.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a whole buffer through TLS and flushes the records out.
async fn write_tls(socket: &mut TlsWriteHalf, buf: &[u8]) -> std::io::Result<()> {
    socket.write_all(buf).await?;
    socket.flush().await
}

//! Resource alarms: memory and disk, as RabbitMQ raises them.
//!
//! Every message in the broker holds a [`MemoryCharge`] for its size, and the server
//! samples the process's resident memory and the data directory's free disk space
//! every second. When the charges or the resident memory go over the high watermark,
//! or free disk space falls below its limit, an alarm goes on: connections that
//! publish are blocked (connection.blocked, and their sockets are not read) until
//! every alarm is off again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::watch;

/// Bytes a message costs beyond its body and properties (headers, indexes).
const MESSAGE_OVERHEAD: usize = 256;

/// The resource alarms in force. Either one blocks publishing connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alarms {
    /// Memory above the high watermark.
    pub memory: bool,
    /// Free disk space below the limit.
    pub disk: bool,
}

impl Alarms {
    pub fn any(&self) -> bool {
        self.memory || self.disk
    }

    /// The reason connection.blocked carries, in RabbitMQ's words.
    pub fn reason(&self) -> &'static str {
        match (self.memory, self.disk) {
            (true, true) => "low on memory & low on disk",
            (false, true) => "low on disk",
            _ => "low on memory",
        }
    }
}

pub struct MemoryGauge {
    used: AtomicUsize,
    high_watermark: usize,
    /// The messages' charges are over the watermark.
    charged_over: AtomicBool,
    /// The process's resident memory, last sampled, is over the watermark.
    resident_over: AtomicBool,
    disk_low: AtomicBool,
    alarm_tx: watch::Sender<Alarms>,
}

impl MemoryGauge {
    pub fn new(high_watermark: usize) -> Arc<MemoryGauge> {
        Arc::new(MemoryGauge {
            used: AtomicUsize::new(0),
            high_watermark,
            charged_over: AtomicBool::new(false),
            resident_over: AtomicBool::new(false),
            disk_low: AtomicBool::new(false),
            alarm_tx: watch::channel(Alarms::default()).0,
        })
    }

    /// Charges `bytes` until the returned charge is dropped.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> MemoryCharge {
        let bytes = bytes + MESSAGE_OVERHEAD;
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.high_watermark && !self.charged_over.load(Ordering::Relaxed) {
            self.charged_over.store(true, Ordering::Relaxed);
            self.publish();
        }
        MemoryCharge {
            gauge: self.clone(),
            bytes,
        }
    }

    pub fn high_watermark(&self) -> usize {
        self.high_watermark
    }

    /// Recomputes the alarms and tells the connections if they changed.
    fn publish(&self) {
        let now = Alarms {
            memory: self.charged_over.load(Ordering::Relaxed)
                || self.resident_over.load(Ordering::Relaxed),
            disk: self.disk_low.load(Ordering::Relaxed),
        };
        self.alarm_tx.send_if_modified(|was| {
            if *was == now {
                return false;
            }
            if now.memory != was.memory {
                if now.memory {
                    tracing::warn!(
                        charged = self.used(),
                        high_watermark = self.high_watermark,
                        "memory resource limit alarm set: publishers are blocked"
                    );
                } else {
                    tracing::info!(charged = self.used(), "memory resource limit alarm cleared");
                }
            }
            if now.disk != was.disk {
                if now.disk {
                    tracing::warn!("disk resource limit alarm set: publishers are blocked");
                } else {
                    tracing::info!("disk resource limit alarm cleared");
                }
            }
            *was = now;
            true
        });
    }

    /// Records a sample of the process's resident memory (RabbitMQ's default
    /// strategy measures the same): the alarm acts on everything the broker holds,
    /// not only on what its messages were charged.
    pub fn set_resident(&self, resident: usize) {
        let over = resident > self.high_watermark;
        if self.resident_over.swap(over, Ordering::Relaxed) != over {
            if over {
                tracing::warn!(
                    resident,
                    high_watermark = self.high_watermark,
                    "resident memory over the high watermark"
                );
            }
            self.publish();
        }
    }

    /// Records whether free disk space is below the limit.
    pub fn set_disk_low(&self, low: bool) {
        if self.disk_low.swap(low, Ordering::Relaxed) != low {
            self.publish();
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Watches the alarms.
    pub fn subscribe(&self) -> watch::Receiver<Alarms> {
        self.alarm_tx.subscribe()
    }
}

/// The memory a message holds; released when the message is dropped.
pub struct MemoryCharge {
    gauge: Arc<MemoryGauge>,
    bytes: usize,
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        let used = self.gauge.used.fetch_sub(self.bytes, Ordering::Relaxed) - self.bytes;
        if used <= self.gauge.high_watermark && self.gauge.charged_over.load(Ordering::Relaxed) {
            self.gauge.charged_over.store(false, Ordering::Relaxed);
            self.gauge.publish();
        }
    }
}

impl std::fmt::Debug for MemoryCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryCharge({})", self.bytes)
    }
}

/// The process's resident memory in bytes (Linux: /proc/self/status), if known.
pub fn resident_memory() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Hands memory the allocator keeps but no longer uses back to the system, so that
/// resident memory falls again once queues drain (glibc keeps freed small blocks).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Free space on the file system holding `path`, in bytes, if known.
pub fn disk_free(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory
    // of the right type; statvfs writes it completely when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the structure.
    let st = unsafe { st.assume_init() };
    // The field types are platform aliases (u64 on 64-bit Linux, u32 elsewhere).
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

//! Memory accounting for the memory alarm.
//!
//! Every message in the broker holds a [`MemoryCharge`] for its size; when the total
//! goes over the high watermark the alarm goes on, and connections that publish are
//! blocked (connection.blocked) until it goes off again, as RabbitMQ's memory alarm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::watch;

/// Bytes a message costs beyond its body and properties (headers, indexes).
const MESSAGE_OVERHEAD: usize = 256;

pub struct MemoryGauge {
    used: AtomicUsize,
    high_watermark: usize,
    alarm: AtomicBool,
    alarm_tx: watch::Sender<bool>,
}

impl MemoryGauge {
    pub fn new(high_watermark: usize) -> Arc<MemoryGauge> {
        Arc::new(MemoryGauge {
            used: AtomicUsize::new(0),
            high_watermark,
            alarm: AtomicBool::new(false),
            alarm_tx: watch::channel(false).0,
        })
    }

    /// Charges `bytes` until the returned charge is dropped.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> MemoryCharge {
        let bytes = bytes + MESSAGE_OVERHEAD;
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.high_watermark && !self.alarm.load(Ordering::Relaxed) {
            self.set_alarm(true, used);
        }
        MemoryCharge {
            gauge: self.clone(),
            bytes,
        }
    }

    fn set_alarm(&self, on: bool, used: usize) {
        if self.alarm.swap(on, Ordering::AcqRel) != on {
            if on {
                tracing::warn!(
                    used,
                    high_watermark = self.high_watermark,
                    "memory alarm set: blocking publishers"
                );
            } else {
                tracing::info!(used, "memory alarm cleared");
            }
            self.alarm_tx.send_replace(on);
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Watches the alarm state.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
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
        if used <= self.gauge.high_watermark && self.gauge.alarm.load(Ordering::Relaxed) {
            self.gauge.set_alarm(false, used);
        }
    }
}

impl std::fmt::Debug for MemoryCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryCharge({})", self.bytes)
    }
}

/// The default high watermark: 40% of physical memory, as RabbitMQ's default.
pub fn default_high_watermark() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30);
    total / 10 * 4
}

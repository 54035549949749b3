//! A coarse monotonic clock for the message path: reading it is one relaxed atomic
//! load, where asking the system for the time on every delivery would cost more
//! than the rest of the bookkeeping. One thread per process advances it every
//! [`RESOLUTION`]; it starts with the first reading.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far the clock may lag behind the real time.
pub const RESOLUTION: Duration = Duration::from_millis(50);

static NOW_MS: AtomicU64 = AtomicU64::new(0);
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the clock started, at most [`RESOLUTION`] behind.
pub fn coarse_ms() -> u64 {
    STARTED.get_or_init(start);
    NOW_MS.load(Ordering::Relaxed)
}

fn start() -> Instant {
    let origin = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("warren-clock".into())
        .spawn(move || {
            loop {
                std::thread::sleep(RESOLUTION);
                let ms = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
                NOW_MS.store(ms, Ordering::Relaxed);
            }
        });
    if let Err(e) = spawned {
        // Without the thread the clock stands still: timeouts measured on it never
        // fire, nothing else depends on it.
        tracing::error!(error = %e, "could not start the clock thread");
    }
    origin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances() {
        let a = coarse_ms();
        std::thread::sleep(RESOLUTION * 4);
        assert!(coarse_ms() > a);
    }
}

//! Releasing freed memory to the system after waves of connections close.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Connections being served, and the most there were since freed memory was last
/// handed back to the system.
static SERVING: AtomicUsize = AtomicUsize::new(0);
static SERVING_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts a connection while it is served. glibc keeps what a connection frees in its
/// arenas (only their top goes back to the system), so after many connections close the
/// resident memory stays at its peak, and grows with each new wave as their buffers
/// land on other pages: once half of the connections since the last release are gone,
/// the free memory is released (not for fewer than 64: too little to matter).
pub(super) struct Served;

impl Served {
    pub(super) fn new() -> Served {
        let serving = SERVING.fetch_add(1, Ordering::Relaxed) + 1;
        SERVING_PEAK.fetch_max(serving, Ordering::Relaxed);
        Served
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let serving = SERVING.fetch_sub(1, Ordering::Relaxed) - 1;
        let peak = SERVING_PEAK.load(Ordering::Relaxed);
        if peak >= 64
            && serving <= peak / 2
            && SERVING_PEAK
                .compare_exchange(peak, serving, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            crate::model::memory::release_free_memory();
        }
    }
}

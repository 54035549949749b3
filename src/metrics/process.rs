//! The process's own figures that the metrics report: file descriptors.

/// Open file descriptors of the process (Linux), if known.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The process's file descriptor limit, if known.
pub fn max_fds() -> Option<u64> {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: `limit` points to writable memory of the right type; getrlimit fills
    // it completely when it returns 0.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrlimit returned 0, so it filled the structure.
    let limit = unsafe { limit.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

//! Why the store failed.

use std::path::PathBuf;

/// Why the store failed.
#[derive(Debug)]
pub enum StoreError {
    Open(PathBuf, String),
    Io(PathBuf, String),
    Format(PathBuf, String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Open(p, e) => write!(f, "cannot open store {}: {e}", p.display()),
            StoreError::Io(p, e) => write!(f, "store {} failed: {e}", p.display()),
            StoreError::Format(p, e) => write!(f, "store {} is unusable: {e}", p.display()),
        }
    }
}

impl std::error::Error for StoreError {}

//! Checks run by the fuzz targets, one function per target, and the seed inputs.
//!
//! `checks.rs` and `session.rs` are also compiled into the broker's own test suite
//! (`tests/fuzz_regressions.rs`), which replays the committed seeds and crashers with a
//! plain `cargo test`: they use only crates the broker's tests already have.

pub mod checks;
pub mod seeds;
pub mod session;

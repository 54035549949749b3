//! Replays the fuzz harness's inputs with a plain `cargo test`: the seed corpus
//! (`fuzz/seeds/<target>/`) and every input that once failed a check
//! (`fuzz/regressions/<target>/`), through the same checks the fuzz targets run
//! (`fuzz/src/`). `WARREN_WRITE_SEEDS=1` rewrites the seed corpus from `seeds.rs`.

#[path = "../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../fuzz/src/seeds.rs"]
mod seeds;
#[path = "../fuzz/src/session.rs"]
#[allow(dead_code)]
mod session;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every committed input of `target`: seeds, then regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).expect("input readable");
            all.push((path, bytes));
        }
    }
    all
}

fn replay(target: &str, check: fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no inputs for {target}");
    for (path, bytes) in all {
        eprintln!("{target}: {}", path.display());
        check(&bytes);
    }
}

#[test]
fn frame_codec_inputs_pass() {
    replay("frame_codec", checks::frame_codec);
}

#[test]
fn tables_inputs_pass() {
    replay("tables", checks::tables);
}

static PANICKED: AtomicBool = AtomicBool::new(false);

#[test]
fn session_inputs_pass() {
    // A panic in one of the broker's tasks would only end that task: record it. The
    // broker runs on threads of its own (other tests' threads are not counted).
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        if name == "broker" || name.starts_with("tokio-") {
            PANICKED.store(true, Ordering::SeqCst);
        }
        default(info);
    }));
    replay("session", session::session);
    session::handshake_completes(session::broker());
    assert!(!PANICKED.load(Ordering::SeqCst), "the broker panicked");
}

#[test]
fn seed_corpus_is_current() {
    let write = std::env::var_os("WARREN_WRITE_SEEDS").is_some();
    for (target, name, bytes) in seeds::all() {
        let path = fuzz_dir().join("seeds").join(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("seed directory");
            std::fs::write(&path, &bytes).expect("seed written");
        } else {
            let stored = std::fs::read(&path).unwrap_or_default();
            assert!(
                stored == bytes,
                "{} is stale: run WARREN_WRITE_SEEDS=1 cargo test --test fuzz_regressions",
                path.display()
            );
        }
    }
}

//! A store that cannot be used stops the broker with a clear error and is never
//! modified.

use std::process::Command;

fn run_warren(data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(["--management-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--prometheus-listen")
        .arg("127.0.0.1:0")
        .output()
        .expect("run warren")
}

#[test]
fn corrupt_store_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("warren.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &garbage).expect("write");
    let out = run_warren(dir.path());
    assert!(
        !out.status.success(),
        "warren must not start on a corrupt store"
    );
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&file.display().to_string()),
        "the error names the file: {log}"
    );
    assert!(
        std::fs::read(&file).expect("read") == garbage,
        "file untouched"
    );
}

#[test]
fn store_written_by_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("warren.redb");
    {
        let db = redb::Database::create(&file).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(meta).expect("table");
            t.insert("format", 999).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let before = std::fs::read(&file).expect("read");
    let out = run_warren(dir.path());
    assert!(!out.status.success());
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("newer"), "the error says why: {log}");
    assert!(
        std::fs::read(&file).expect("read") == before,
        "file untouched"
    );
}

#[test]
fn unwritable_data_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    let out = run_warren(&blocker.join("data"));
    assert!(!out.status.success());
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("warren.redb"),
        "the error names the file: {log}"
    );
}

//! Fixtures committed in a compact form: data files made by older builds.

use std::path::Path;

/// Decodes a zero-run encoded file (tests/fixtures/store-format-1/encode.py wrote
/// it: records of [zeros: u32 LE][literal length: u32 LE][literal]) into `to`.
pub fn decode_zero_runs(from: &Path, to: &Path) {
    let data = std::fs::read(from).expect("fixture");
    let mut out = Vec::new();
    let mut i = 0;
    let word = |at: usize| -> usize {
        let bytes: [u8; 4] = data[at..at + 4].try_into().expect("4 bytes");
        u32::from_le_bytes(bytes) as usize
    };
    while i < data.len() {
        let (zeros, literal) = (word(i), word(i + 4));
        i += 8;
        out.resize(out.len() + zeros, 0);
        out.extend_from_slice(&data[i..i + literal]);
        i += literal;
    }
    std::fs::write(to, out).expect("write the decoded fixture");
}

/// A fixture file under tests/fixtures.
pub fn path(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

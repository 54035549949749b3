//! RabbitMQ's password hashes: base64 of a 4-byte random salt followed by
//! digest(salt ++ password), with SHA-256 (the default), SHA-512 or MD5.

use super::model::{MD5, SHA256, SHA512};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest;

fn digest(algorithm: &str, salt: &[u8], pass: &[u8]) -> Option<Vec<u8>> {
    let joined = [salt, pass].concat();
    Some(match algorithm {
        SHA256 => sha2::Sha256::digest(&joined).to_vec(),
        SHA512 => sha2::Sha512::digest(&joined).to_vec(),
        MD5 => md5::Md5::digest(&joined).to_vec(),
        _ => return None,
    })
}

/// Whether `algorithm` names a hashing module Warren knows.
pub fn known(algorithm: &str) -> bool {
    matches!(algorithm, SHA256 | SHA512 | MD5)
}

/// A new salted hash of `pass` with `algorithm` (SHA-256 when unknown).
pub fn hash(algorithm: &str, pass: &str) -> String {
    let salt: [u8; 4] = rand::random();
    let algorithm = if known(algorithm) { algorithm } else { SHA256 };
    let mut out = salt.to_vec();
    out.extend(digest(algorithm, &salt, pass.as_bytes()).unwrap_or_default());
    STANDARD.encode(out)
}

/// Whether `pass` matches `stored` (as [`hash`] writes it). An empty or malformed
/// hash matches nothing, as RabbitMQ refuses password login for a user without one.
pub fn verify(algorithm: &str, stored: &str, pass: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(stored) else {
        return false;
    };
    if bytes.len() <= 4 {
        return false;
    }
    let (salt, expected) = bytes.split_at(4);
    digest(algorithm, salt, pass.as_bytes()).is_some_and(|d| d == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        for algorithm in [SHA256, SHA512, MD5] {
            let h = hash(algorithm, "s3cret");
            assert!(verify(algorithm, &h, "s3cret"));
            assert!(!verify(algorithm, &h, "s3creT"));
        }
        assert!(!verify(SHA256, "", ""));
    }
}

//! Small cryptographic helpers over aws-lc-rs: random tokens, hashes for what
//! Stepgate generates itself, keys derived from the master key.
//!
//! Tokens Stepgate generates (session ids, email links, later codes and
//! refresh tokens) carry 256 random bits, so a fast hash is enough to store
//! them (docs/security.md, "What is stored"); only passwords need argon2id.

use aws_lc_rs::{digest, hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` has the shape `random_token` gives (43 base64url
/// characters): a cheap check before a value from a URL is looked up, and so
/// nothing else (newlines, kilobytes) travels on as if it were one.
pub fn is_token_shaped(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 128 random bits, base64url without padding (22 characters): public
/// identifiers that must be unguessable but are not secrets (client ids).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes).expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `value`, lower-case hex: how generated secrets are stored.
pub fn sha256_hex(value: &str) -> String {
    hex(digest::digest(&digest::SHA256, value.as_bytes()).as_ref())
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // verify_slices_are_equal is constant-time for equal lengths; lengths are
    // not secret here (they are fixed by the token formats).
    #[allow(deprecated)]
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A key for one purpose, derived from the master key with HMAC-SHA256 and a
/// label, so that no two purposes share a key (and the master key itself is
/// only ever an HMAC key, never exposed).
#[derive(Clone)]
pub struct PurposeKey(hmac::Key);

impl PurposeKey {
    pub fn derive(master: &[u8; 32], label: &str) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let tag = hmac::sign(&root, label.as_bytes());
        Self(hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()))
    }

    /// HMAC-SHA256 of `message`, base64url.
    pub fn sign(&self, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.0, message).as_ref())
    }

    /// Checks `tag` against `message` in constant time.
    pub fn verify(&self, message: &[u8], tag: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(tag) {
            Ok(tag) => hmac::verify(&self.0, message, &tag).is_ok(),
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurposeKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_shape_of_a_token_is_token_shaped() {
        assert!(is_token_shaped(&random_token()));
        let good = "A".repeat(43);
        assert!(is_token_shaped(&good));
        for bad in [
            String::new(),
            "A".repeat(42),
            "A".repeat(44),
            format!("{}\n", "A".repeat(42)),
            format!("{}=", "A".repeat(42)),
            format!("{}é", "A".repeat(41)),
        ] {
            assert!(!is_token_shaped(&bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_128_bits_and_distinct() {
        let a = random_id();
        assert_eq!(a.len(), 22);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
        assert_ne!(a, random_id());
    }

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 example "abc".
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn purpose_keys_differ_and_verify() {
        let master = [7u8; 32];
        let csrf = PurposeKey::derive(&master, "csrf");
        let other = PurposeKey::derive(&master, "other");
        let tag = csrf.sign(b"session");
        assert!(csrf.verify(b"session", &tag));
        assert!(!csrf.verify(b"session2", &tag));
        assert!(!other.verify(b"session", &tag));
        assert!(!csrf.verify(b"session", "not base64 !"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}

//! TOTP codes computed by the tests themselves: HMAC-SHA1 written for the
//! test (RFC 4226 §5.3) with RFC 6238's time counter, independently of the
//! server's totp-rs. Shared by `tests/it`, `tests/e2e` and `tests/cluster`.

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};

/// RFC 4648 base32 (no padding) decoding, written for the test.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u64, 0);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// RFC 4226 HOTP with RFC 6238's time counter, SHA1, 6 digits, 30 s.
pub fn totp_code(secret_base32: &str, at: DateTime<Utc>) -> String {
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        &base32_decode(secret_base32),
    );
    let counter = (at.timestamp() as u64 / 30).to_be_bytes();
    let mac = hmac::sign(&key, &counter);
    let mac = mac.as_ref();
    let offset = (mac[19] & 0x0f) as usize;
    let binary = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    format!("{:06}", binary % 1_000_000)
}

//! TOTP (RFC 6238) over HOTP (RFC 4226), with totp-rs doing the arithmetic.
//!
//! `verify` returns the matched time-step, never just a bool: the caller
//! stores the last accepted step and refuses that step and every earlier one
//! (RFC 6238 §5.2, NIST SP 800-63B §5.1.4.2), which a bool could not express.
//! Pure: the time is passed in.

use base64::Engine;
use totp_rs::{Algorithm, Builder, Totp};

/// A secret is 160 bits (RFC 4226 §4 recommends 160; the HMAC-SHA1 block).
pub const SECRET_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TotpAlgorithm {
    SHA1,
    SHA256,
    SHA512,
}

impl TotpAlgorithm {
    fn as_totp_rs(self) -> Algorithm {
        match self {
            TotpAlgorithm::SHA1 => Algorithm::SHA1,
            TotpAlgorithm::SHA256 => Algorithm::SHA256,
            TotpAlgorithm::SHA512 => Algorithm::SHA512,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TotpAlgorithm::SHA1 => "SHA1",
            TotpAlgorithm::SHA256 => "SHA256",
            TotpAlgorithm::SHA512 => "SHA512",
        }
    }
}

/// How codes are made: what the authenticator app is told in the QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: TotpAlgorithm,
    pub digits: u8,
    pub period_secs: u64,
    /// Steps accepted either side of the current one (clock drift).
    pub skew: u16,
}

impl Default for TotpParams {
    /// What Google Authenticator reads: SHA1, 6 digits, 30 s, ±1 step.
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::SHA1,
            digits: 6,
            period_secs: 30,
            skew: 1,
        }
    }
}

fn totp(secret: &[u8], params: &TotpParams) -> Totp {
    Builder::new()
        .with_algorithm(params.algorithm.as_totp_rs())
        .with_digits(params.digits)
        .with_step_duration(params.period_secs)
        .with_skew(params.skew)
        .with_secret(secret.to_vec())
        // Secrets are generated here at 160 bits and parameters validated at
        // configuration load; the non-compliant builder skips re-checking.
        .build_noncompliant()
}

/// A fresh secret from the CSPRNG.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut secret).expect("the system RNG works");
    secret
}

/// The code for the time `unix_secs`.
pub fn code_at(secret: &[u8], params: &TotpParams, unix_secs: u64) -> String {
    totp(secret, params).generate(unix_secs).to_string()
}

/// Checks `code` at `unix_secs` within the skew window, comparing in
/// constant time. Returns the time-step it matched, if any.
pub fn verify(secret: &[u8], params: &TotpParams, code: &str, unix_secs: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != params.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, params).check(code, unix_secs)
}

/// RFC 4648 §6 base32 without padding: what authenticator apps expect.
pub fn base32(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(secret.len().div_ceil(5) * 8);
    let mut buffer = 0u32;
    let mut bits = 0;
    for &byte in secret {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The key URI Google Authenticator reads from the QR code:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…&algorithm=…&digits=…&period=…`.
/// The issuer goes both in the label prefix and in the parameter, as the
/// format recommends.
pub fn otpauth_uri(secret: &[u8], params: &TotpParams, issuer: &str, account: &str) -> String {
    format!(
        "otpauth://totp/{issuer_label}:{account}?secret={secret}&issuer={issuer_param}&algorithm={alg}&digits={digits}&period={period}",
        issuer_label = percent_encode(&issuer.replace(':', "")),
        account = percent_encode(&account.replace(':', "")),
        secret = base32(secret),
        issuer_param = percent_encode(issuer),
        alg = params.algorithm.name(),
        digits = params.digits,
        period = params.period_secs,
    )
}

/// Percent-encodes all but RFC 3986 unreserved characters and `@` (which
/// Google Authenticator's own examples leave as is in the label).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Recovery codes: 16 characters each, drawn uniformly from an alphabet of
/// 31 without look-alikes (no 0/o, 1/l/i), so about 79 random bits; shown
/// as four groups of four.
pub const RECOVERY_CODES: usize = 10;
const RECOVERY_ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_CHARS: usize = 16;

/// One character drawn uniformly: bytes at or above the largest multiple of
/// 31 below 256 are redrawn, so no character is likelier than another.
fn recovery_char() -> char {
    const LIMIT: u8 = (256 / RECOVERY_ALPHABET.len() * RECOVERY_ALPHABET.len()) as u8;
    loop {
        let mut byte = [0u8; 1];
        aws_lc_rs::rand::fill(&mut byte).expect("the system RNG works");
        if byte[0] < LIMIT {
            return RECOVERY_ALPHABET[byte[0] as usize % RECOVERY_ALPHABET.len()] as char;
        }
    }
}

pub fn generate_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..RECOVERY_CHARS).map(|_| recovery_char()).collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, with or without dashes or spaces) in
/// the form that is hashed, or `None` if it cannot be one.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    (code.len() == RECOVERY_CHARS && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
        .then_some(code)
}

/// AES-256-GCM for secrets at rest, with the owner's id as associated
/// data, so a ciphertext moved to another row does not decrypt. Two forms:
/// `v1.` + base64(nonce ‖ ciphertext ‖ tag), and `v2.<key id>.` + the same,
/// which names the master key that sealed it (`keys::MasterKey::id`,
/// base64url, so it holds no `.`): a rotation can tell what is left to
/// re-seal, and a node which of its keys opens it.
pub mod sealed {
    use super::*;
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    use base64::engine::general_purpose::STANDARD;

    const PREFIX: &str = "v1.";
    const TAGGED_PREFIX: &str = "v2.";

    pub fn seal(key: &[u8; 32], owner: &str, plaintext: &[u8]) -> String {
        format!("{PREFIX}{}", seal_body(key, owner, plaintext))
    }

    /// Seals in the `v2.` form, naming the master key `key_id`.
    pub fn seal_tagged(key: &[u8; 32], key_id: &str, owner: &str, plaintext: &[u8]) -> String {
        debug_assert!(!key_id.contains('.'));
        format!(
            "{TAGGED_PREFIX}{key_id}.{}",
            seal_body(key, owner, plaintext)
        )
    }

    /// The `v2.<key id>.` prefix of the values sealed under `key_id`.
    pub fn tagged_prefix(key_id: &str) -> String {
        format!("{TAGGED_PREFIX}{key_id}.")
    }

    /// The key id a `v2.` value names; `None` for a `v1.` value (or what is
    /// not a sealed value at all).
    pub fn key_id(sealed: &str) -> Option<&str> {
        sealed
            .strip_prefix(TAGGED_PREFIX)?
            .split_once('.')
            .map(|(id, _)| id)
    }

    fn seal_body(key: &[u8; 32], owner: &str, plaintext: &[u8]) -> String {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system RNG works");
        let mut data = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(owner.as_bytes()),
            &mut data,
        )
        .expect("AES-GCM sealing");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        STANDARD.encode(out)
    }

    /// Opens either form with `key`.
    pub fn open(key: &[u8; 32], owner: &str, sealed: &str) -> Option<Vec<u8>> {
        let body = match sealed.strip_prefix(PREFIX) {
            Some(body) => body,
            None => sealed.strip_prefix(TAGGED_PREFIX)?.split_once('.')?.1,
        };
        let bytes = STANDARD.decode(body).ok()?;
        if bytes.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
        let mut data = data.to_vec();
        let plain = key
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(owner.as_bytes()),
                &mut data,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: the seeds are ASCII digits repeated to the hash's
    /// block-ish length; 8-digit codes at the listed times.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, c1, c256, c512) in vectors {
            for (secret, alg, expected) in [
                (&sha1, TotpAlgorithm::SHA1, c1),
                (&sha256, TotpAlgorithm::SHA256, c256),
                (&sha512, TotpAlgorithm::SHA512, c512),
            ] {
                let params = TotpParams {
                    algorithm: alg,
                    digits: 8,
                    period_secs: 30,
                    skew: 0,
                };
                assert_eq!(
                    code_at(secret, &params, time),
                    expected,
                    "{alg:?} at {time}"
                );
                assert_eq!(verify(secret, &params, expected, time), Some(time / 30));
            }
        }
    }

    #[test]
    fn the_window_is_current_step_plus_minus_skew() {
        let secret = generate_secret();
        let p = TotpParams::default();
        let t = 1_800_000_015; // inside step 60_000_000
        let step = t / 30;
        let code = |s: u64| code_at(&secret, &p, s * 30);
        assert_eq!(verify(&secret, &p, &code(step), t), Some(step));
        assert_eq!(verify(&secret, &p, &code(step - 1), t), Some(step - 1));
        assert_eq!(verify(&secret, &p, &code(step + 1), t), Some(step + 1));
        assert_eq!(verify(&secret, &p, &code(step - 2), t), None);
        assert_eq!(verify(&secret, &p, &code(step + 2), t), None);
        let strict = TotpParams { skew: 0, ..p };
        assert_eq!(verify(&secret, &strict, &code(step - 1), t), None);
    }

    #[test]
    fn malformed_codes_never_match() {
        let secret = generate_secret();
        let p = TotpParams::default();
        for bad in ["", "12345", "1234567", "abcdef", "12 456", "１２３４５６"] {
            assert_eq!(verify(&secret, &p, bad, 1_000_000_000), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10 (without padding).
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0u8; 20]).len(), 32);
    }

    #[test]
    fn otpauth_uri_has_the_google_authenticator_shape() {
        let uri = otpauth_uri(
            b"12345678901234567890",
            &TotpParams::default(),
            "NAO Cloud",
            "ada@example.com",
        );
        assert_eq!(
            uri,
            "otpauth://totp/NAO%20Cloud:ada@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=NAO%20Cloud&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn the_recovery_alphabet_has_no_repeats_or_look_alikes() {
        let mut symbols = RECOVERY_ALPHABET.to_vec();
        symbols.sort();
        symbols.dedup();
        assert_eq!(symbols.len(), RECOVERY_ALPHABET.len(), "each symbol once");
        for look_alike in [b'0', b'o', b'1', b'l', b'i'] {
            assert!(!RECOVERY_ALPHABET.contains(&look_alike));
        }
        // Every symbol turns up: none is unreachable.
        let drawn: std::collections::BTreeSet<char> = (0..5000).map(|_| recovery_char()).collect();
        assert_eq!(drawn.len(), RECOVERY_ALPHABET.len());
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 19);
            let normal = normalize_recovery_code(code).unwrap();
            assert_eq!(
                normalize_recovery_code(&code.to_uppercase()).as_ref(),
                Some(&normal)
            );
            assert_eq!(
                normalize_recovery_code(&code.replace('-', " ")).as_ref(),
                Some(&normal)
            );
        }
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-jkmn-pqr0"), None);
    }

    #[test]
    fn sealed_secrets_round_trip_and_bind_to_their_owner() {
        let key = [9u8; 32];
        let sealed = sealed::seal(&key, "user-1", b"secret bytes");
        assert!(sealed.starts_with("v1."));
        assert_eq!(
            sealed::open(&key, "user-1", &sealed).unwrap(),
            b"secret bytes"
        );
        assert_eq!(sealed::open(&key, "user-2", &sealed), None);
        assert_eq!(sealed::open(&[8u8; 32], "user-1", &sealed), None);
        assert_eq!(sealed::open(&key, "user-1", "v1.AAAA"), None);
        assert_eq!(sealed::open(&key, "user-1", "garbage"), None);
        assert_ne!(
            sealed,
            sealed::seal(&key, "user-1", b"secret bytes"),
            "fresh nonce"
        );
        assert_eq!(sealed::key_id(&sealed), None);
    }

    #[test]
    fn tagged_values_name_their_key_and_open_like_v1() {
        let key = [9u8; 32];
        let tagged = sealed::seal_tagged(&key, "Ab-_9", "user-1", b"secret bytes");
        assert!(tagged.starts_with(&sealed::tagged_prefix("Ab-_9")));
        assert_eq!(sealed::key_id(&tagged), Some("Ab-_9"));
        assert_eq!(
            sealed::open(&key, "user-1", &tagged).unwrap(),
            b"secret bytes"
        );
        assert_eq!(sealed::open(&key, "user-2", &tagged), None);
        assert_eq!(sealed::open(&[8u8; 32], "user-1", &tagged), None);
        assert_eq!(sealed::open(&key, "user-1", "v2.nodot"), None);
        assert_eq!(sealed::key_id("v2.nodot"), None);
        assert_eq!(sealed::key_id("garbage"), None);
    }
}

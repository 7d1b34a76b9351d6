//! Signing keys and the master key, kept as files in `keys_dir`.
//!
//! - `signing-<millis>.pem`: RSA-2048 private keys, PKCS#8 PEM, mode 0600. The
//!   number is the creation time in Unix milliseconds; the newest key signs,
//!   every key in the directory is published in the JWKS until its file is
//!   removed.
//! - `master.key`: 256 random bits, base64, mode 0600: the key that encrypts
//!   secrets at rest (TOTP secrets, AES-256-GCM).
//!
//! Keys are generated and used with aws-lc-rs: the private key is parsed once
//! at start and held, so a signature costs one RSA operation and no parsing.
//! Files are created with `create_new` and linked into place, so nothing is
//! ever overwritten, and a file that cannot be read or parsed stops the start.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Serialize;

const SIGNING_PREFIX: &str = "signing-";
const SIGNING_SUFFIX: &str = ".pem";
const MASTER_KEY_FILE: &str = "master.key";
const PEM_LABEL: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("keys directory {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

fn file_error(path: &Path, reason: impl ToString) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// One RSA signing key, parsed once.
pub struct SigningKey {
    /// RFC 7638 JWK thumbprint (SHA-256), base64url.
    pub kid: String,
    pub created_at: DateTime<Utc>,
    pub path: PathBuf,
    key_pair: KeyPair,
    /// The public half, parsed once, for verifying our own tokens.
    verifier: ParsedPublicKey,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("path", &self.path)
            .finish()
    }
}

impl SigningKey {
    fn from_pkcs8(der: &[u8], created_at: DateTime<Utc>, path: PathBuf) -> Result<Self, String> {
        let key_pair = KeyPair::from_pkcs8(der).map_err(|e| format!("not an RSA key: {e}"))?;
        if key_pair.public_modulus_len() < 256 {
            return Err("RSA keys must be at least 2048 bits".into());
        }
        let public = aws_lc_rs::signature::KeyPair::public_key(&key_pair);
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let verifier = ParsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            public.as_ref(),
        )
        .map_err(|e| format!("its public key does not parse: {e}"))?;
        Ok(Self {
            kid: rsa_thumbprint(&n, &e),
            created_at,
            path,
            key_pair,
            verifier,
            n,
            e,
        })
    }

    /// RS256 (RFC 7518 §3.3): RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign_rs256(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("RSA signing with a validated key does not fail");
        signature
    }

    /// The public key, parsed once, for verifying our own tokens.
    pub fn verifier(&self) -> &ParsedPublicKey {
        &self.verifier
    }

    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "RSA",
            use_: "sig",
            alg: "RS256",
            kid: self.kid.clone(),
            n: URL_SAFE_NO_PAD.encode(&self.n),
            e: URL_SAFE_NO_PAD.encode(&self.e),
        }
    }
}

/// RFC 7638 §3.2: the thumbprint hashes the required members only, in
/// lexicographic order, with no whitespace: `{"e":…,"kty":"RSA","n":…}`.
pub fn rsa_thumbprint(n: &[u8], e: &[u8]) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(e),
        URL_SAFE_NO_PAD.encode(n)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// A public key as RFC 7517 §4 writes it. openidconnect's `CoreJsonWebKey`
/// cannot carry `alg` when built (its field is private), so the server writes
/// its own; the tests parse it back with openidconnect.
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The 256-bit key that encrypts secrets at rest.
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Every key in `keys_dir`, loaded and parsed.
#[derive(Debug)]
pub struct KeyStore {
    /// Oldest first; the last one is the active signing key. Never empty.
    signing: Vec<SigningKey>,
    master: MasterKey,
}

/// What `load_or_create` did, for the start-up log.
#[derive(Debug, Default)]
pub struct Created {
    pub signing_key: Option<String>,
    pub master_key: bool,
}

impl KeyStore {
    /// Loads the keys, creating the directory, a first signing key and the
    /// master key when they are missing. Existing files are never touched.
    pub fn load_or_create(dir: &Path) -> Result<(Self, Created), KeyError> {
        ensure_dir(dir)?;
        let mut created = Created::default();
        let master_path = dir.join(MASTER_KEY_FILE);
        if !master_path.exists() {
            let mut bytes = [0u8; 32];
            random_bytes(&mut bytes)?;
            let text = format!("{}\n", STANDARD.encode(bytes));
            write_new_secret_file(&master_path, text.as_bytes())?;
            created.master_key = true;
        }
        if signing_key_paths(dir)?.is_empty() {
            created.signing_key = Some(create_signing_key(dir)?.kid);
        }
        Ok((Self::load(dir)?, created))
    }

    /// Loads the keys; every file must be present and well formed.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let master = load_master_key(&dir.join(MASTER_KEY_FILE))?;
        let mut signing = Vec::new();
        for (created_at, path) in signing_key_paths(dir)? {
            warn_if_readable_by_others(&path);
            let pem = fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
            let der = pem_decode(&pem).map_err(|reason| file_error(&path, reason))?;
            let key = SigningKey::from_pkcs8(&der, created_at, path.clone())
                .map_err(|reason| file_error(&path, reason))?;
            signing.push(key);
        }
        if signing.is_empty() {
            return Err(KeyError::Dir {
                path: dir.to_owned(),
                reason: "holds no signing key (signing-*.pem)".into(),
            });
        }
        Ok(Self { signing, master })
    }

    /// Adds a new signing key that becomes the active one; the old ones stay
    /// published until their files are removed.
    pub fn rotate(dir: &Path) -> Result<Self, KeyError> {
        let (_, _) = Self::load_or_create(dir)?;
        create_signing_key(dir)?;
        Self::load(dir)
    }

    pub fn active(&self) -> &SigningKey {
        self.signing.last().expect("a key store is never empty")
    }

    /// Every signing key, oldest first.
    pub fn signing_keys(&self) -> &[SigningKey] {
        &self.signing
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The JWKS, newest key first (clients that try keys in order find the
    /// active one first).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.signing.iter().rev().map(SigningKey::jwk).collect(),
        }
    }
}

fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| KeyError::Dir {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| KeyError::Generate("the system RNG failed".into()))
}

/// The signing key files, oldest first, with the creation time their name holds.
fn signing_key_paths(dir: &Path) -> Result<Vec<(DateTime<Utc>, PathBuf)>, KeyError> {
    let entries = fs::read_dir(dir).map_err(|e| KeyError::Dir {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| KeyError::Dir {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stamp) = name
            .strip_prefix(SIGNING_PREFIX)
            .and_then(|rest| rest.strip_suffix(SIGNING_SUFFIX))
        else {
            continue;
        };
        let path = entry.path();
        let created_at = stamp
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| {
                file_error(
                    &path,
                    "name must be signing-<unix milliseconds>.pem (as `stepgate keys rotate` writes it)",
                )
            })?;
        keys.push((created_at, path));
    }
    keys.sort();
    Ok(keys)
}

fn create_signing_key(dir: &Path) -> Result<SigningKey, KeyError> {
    let key_pair =
        KeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Generate(e.to_string()))?;
    let der =
        AsDer::<Pkcs8V1Der>::as_der(&key_pair).map_err(|e| KeyError::Generate(e.to_string()))?;
    let der = der.as_ref();
    // A name strictly newer than every existing key keeps "newest is active"
    // true even when two rotations fall in the same millisecond.
    let newest = signing_key_paths(dir)?
        .last()
        .map(|(t, _)| t.timestamp_millis());
    let mut millis = Utc::now().timestamp_millis();
    if let Some(newest) = newest {
        millis = millis.max(newest + 1);
    }
    let created_at = DateTime::from_timestamp_millis(millis).expect("current time is in range");
    let path = dir.join(format!("{SIGNING_PREFIX}{millis:013}{SIGNING_SUFFIX}"));
    write_new_secret_file(&path, pem_encode(der).as_bytes())?;
    SigningKey::from_pkcs8(der, created_at, path.clone())
        .map_err(|reason| file_error(&path, reason))
}

fn load_master_key(path: &Path) -> Result<MasterKey, KeyError> {
    warn_if_readable_by_others(path);
    let text = fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| file_error(path, "not base64"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| file_error(path, "must hold exactly 32 bytes (256 bits), base64"))?;
    Ok(MasterKey(bytes))
}

/// Writes a new file with mode 0600 and never replaces an existing one: the
/// content goes to a temporary file, which is then hard-linked to its name
/// (`link` fails when the name exists), so readers never see half a key.
fn write_new_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut suffix = [0u8; 8];
    random_bytes(&mut suffix)?;
    let tmp = path.with_extension(format!("tmp-{}", URL_SAFE_NO_PAD.encode(suffix)));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| file_error(path, e))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "key file is accessible to group or others; chmod 600 it");
    }
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

/// RFC 7468 §10 (strict): one `PRIVATE KEY` block, base64 lines in between.
fn pem_decode(pem: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let body = pem
        .trim()
        .strip_prefix(&begin)
        .and_then(|rest| rest.strip_suffix(&end))
        .ok_or("not a PKCS#8 PEM file (-----BEGIN PRIVATE KEY-----)")?;
    let b64: String = body.split_whitespace().collect();
    STANDARD
        .decode(b64)
        .map_err(|_| "the PEM body is not base64".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// RFC 7638 §3.1's example key and its thumbprint.
    #[test]
    fn rfc7638_thumbprint_vector() {
        let n = URL_SAFE_NO_PAD
            .decode(concat!(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP",
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY",
                "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f",
                "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            ))
            .unwrap();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
        assert_eq!(
            rsa_thumbprint(&n, &e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn pem_round_trip_and_rejects() {
        let der = b"\x30\x03\x02\x01\x00".repeat(30);
        assert_eq!(pem_decode(&pem_encode(&der)).unwrap(), der);
        assert!(pem_decode("garbage").is_err());
        assert!(pem_decode("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----").is_err());
        assert!(
            pem_decode("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----")
                .is_err()
        );
    }
}

//! Signing keys and the master key.
//!
//! - The signing keys live in the database (`signing_keys`), sealed, so that
//!   every node reads the same keys: the database is the one thing every
//!   node already shares and agrees on, a rotation or retirement is one
//!   atomic statement every node sees at its next read, no shared writable
//!   filesystem is needed (a mounted Kubernetes secret is read-only), and a
//!   backup of the database carries the keys. `service::signing_keys` reads
//!   and writes them; `protocol::signing_keys` says which one signs and
//!   which are published; this module holds them, parsed once.
//! - The private keys are sealed with AES-256-GCM (the kid as associated
//!   data) under a key derived from the master key for that one purpose, so
//!   a copy of the database alone reveals no private key.
//! - `keys_dir/master.key`: 256 random bits, base64, mode 0600, the root of
//!   every key that protects secrets at rest (signing keys, TOTP secrets).
//!   It stays beside the process, never beside what it protects.
//!   `stepgate keys rotate-master` adds `keys_dir/master-<millis>.key`
//!   files: every node loads all of them ([`MasterKeys`]), the newest
//!   seals, any opens, and a file is renamed `….retired` (never deleted)
//!   once nothing is sealed under it (docs/operating.md, "The master key").
//! - `keys_dir/signing-<millis>.pem` files are what versions before the
//!   database kept: they are imported once at start (docs/operating.md,
//!   "Keys and rotation") and may then be removed.
//!
//! Keys are generated and used with aws-lc-rs: a private key is parsed once
//! when a node first reads it and held, so a signature costs one RSA
//! operation and no parsing.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::ParsedPublicKey;
use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::totp::sealed;
use crate::crypto::PurposeKey;
use crate::protocol::jwt::VerifyKey;
use crate::protocol::signing_keys::{self as lifecycle, KeyState, KeyStatus, KeyTimes};

const SIGNING_PREFIX: &str = "signing-";
const SIGNING_SUFFIX: &str = ".pem";
const MASTER_KEY_FILE: &str = "master.key";
const MASTER_PREFIX: &str = "master-";
const MASTER_SUFFIX: &str = ".key";
/// Appended to a master key file nothing is sealed under any more: it is
/// no longer loaded, and kept for backups of the database from before.
pub const RETIRED_SUFFIX: &str = ".retired";
const PEM_LABEL: &str = "PRIVATE KEY";
/// The derivation label of the key that seals signing keys.
const SEAL_LABEL: &str = "stepgate/signing-key-seal/v1";
/// The one algorithm the keys sign with (RFC 7518 §3.3).
pub const ALG: &str = "RS256";

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
            .finish()
    }
}

impl SigningKey {
    /// A new RSA-2048 key, and its PKCS#8 DER to seal and store.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let key_pair =
            KeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = AsDer::<Pkcs8V1Der>::as_der(&key_pair)
            .map_err(|e| KeyError::Generate(e.to_string()))?
            .as_ref()
            .to_vec();
        let key = Self::from_pkcs8(&der).map_err(KeyError::Generate)?;
        Ok((key, der))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
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
            alg: ALG,
            kid: self.kid.clone(),
            n: URL_SAFE_NO_PAD.encode(&self.n),
            e: URL_SAFE_NO_PAD.encode(&self.e),
        }
    }
}

impl VerifyKey for SigningKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verifies(message, signature)
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

    /// A public name for this master key (an HMAC of a label, so it reveals
    /// nothing of the key): recorded beside what it sealed.
    pub fn id(&self) -> String {
        let tag = PurposeKey::derive(&self.0, "stepgate/master-key-id/v1").sign(b"id");
        tag[..16].to_owned()
    }

    fn seal_key(&self) -> [u8; 32] {
        let tag = PurposeKey::derive(&self.0, SEAL_LABEL).sign(b"aes-256-gcm");
        URL_SAFE_NO_PAD
            .decode(tag)
            .expect("an HMAC tag is valid base64url")
            .try_into()
            .expect("HMAC-SHA256 is 32 bytes")
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Seals a signing key's PKCS#8 DER for its row; the kid is the associated
/// data, so a sealed key moved to another row does not open.
pub fn seal_private_key(master: &MasterKey, kid: &str, der: &[u8]) -> String {
    sealed::seal(&master.seal_key(), kid, der)
}

/// The PKCS#8 DER of a sealed key; `None` under another master key or kid.
pub fn unseal_private_key(master: &MasterKey, kid: &str, sealed_key: &str) -> Option<Vec<u8>> {
    sealed::open(&master.seal_key(), kid, sealed_key)
}

/// One master key file of `keys_dir`.
#[derive(Debug)]
pub struct MasterKeyFile {
    pub path: PathBuf,
    /// Unix milliseconds from a `master-<millis>.key` name; `0` for
    /// `master.key`, which is older than any other.
    pub created_at: i64,
    pub key: MasterKey,
}

impl MasterKeyFile {
    /// Whether this is `master.key`, the one versions before rotation knew.
    pub fn is_original(&self) -> bool {
        self.created_at == 0
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Every master key a node has loaded from `keys_dir`, oldest first (never
/// empty, one per id): the newest seals, any of them opens.
#[derive(Debug)]
pub struct MasterKeys {
    files: Vec<MasterKeyFile>,
}

impl MasterKeys {
    /// The keys of `files`; `None` when there is none. Of two files holding
    /// the same key, the older one is kept.
    pub fn new(mut files: Vec<MasterKeyFile>) -> Option<Self> {
        files.sort_by_key(|f| f.created_at);
        let mut seen = HashSet::new();
        files.retain(|f| seen.insert(f.key.id()));
        (!files.is_empty()).then_some(Self { files })
    }

    /// The file of the key that seals: the newest.
    pub fn newest(&self) -> &MasterKeyFile {
        self.files.last().expect("never empty")
    }

    /// The key that seals: the newest.
    pub fn sealing(&self) -> &MasterKey {
        &self.newest().key
    }

    /// The key with this id, if loaded.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.files.iter().map(|f| &f.key).find(|k| k.id() == id)
    }

    /// Every file, oldest first.
    pub fn files(&self) -> &[MasterKeyFile] {
        &self.files
    }

    /// Every key, newest first (the likeliest to open a value first).
    pub fn newest_first(&self) -> impl Iterator<Item = &MasterKey> {
        self.files.iter().rev().map(|f| &f.key)
    }

    /// The ids, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.files.iter().map(|f| f.key.id()).collect()
    }
}

/// Loads every master key file of `dir` (`master.key`, `master-<millis>.key`;
/// not the `.retired` ones). A file that cannot be read or is not a key is
/// an error naming it, and so is a directory without any.
pub fn load_master_keys(dir: &Path) -> Result<MasterKeys, KeyError> {
    let mut files = Vec::new();
    for (created_at, path) in master_key_paths(dir)? {
        let key = load_master_key(&path)?;
        files.push(MasterKeyFile {
            path,
            created_at,
            key,
        });
    }
    MasterKeys::new(files).ok_or_else(|| KeyError::Dir {
        path: dir.to_owned(),
        reason: "holds no master key (master.key or master-<unix milliseconds>.key)".into(),
    })
}

/// Loads the master keys of `dir`, creating the directory and `master.key`
/// when it holds no master key file at all (`true` then). An existing file
/// is never touched.
pub fn load_or_create_master(dir: &Path) -> Result<(MasterKeys, bool), KeyError> {
    ensure_dir(dir)?;
    let mut created = false;
    if master_key_paths(dir)?.is_empty() {
        let path = dir.join(MASTER_KEY_FILE);
        match write_new_secret_file(&path, &new_master_text()?) {
            Ok(()) => created = true,
            // Another process created it first: use theirs.
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok((load_master_keys(dir)?, created))
}

fn new_master_text() -> Result<Vec<u8>, KeyError> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(format!("{}\n", STANDARD.encode(bytes)).into_bytes())
}

/// Writes a new master key as `dir/master-<millis>.key` (mode 0600, never
/// over an existing file) and returns it as loaded back from the file.
pub fn write_new_master(dir: &Path, created_at: DateTime<Utc>) -> Result<MasterKeyFile, KeyError> {
    ensure_dir(dir)?;
    let millis = created_at.timestamp_millis();
    let path = dir.join(format!("{MASTER_PREFIX}{millis:013}{MASTER_SUFFIX}"));
    write_new_secret_file(&path, &new_master_text()?)?;
    let key = load_master_key(&path)?;
    Ok(MasterKeyFile {
        path,
        created_at: millis,
        key,
    })
}

/// Renames a master key file to `<name>.retired`: nodes stop loading it at
/// their next scan. Never deletes it and never replaces a file already
/// there (a link to the new name, then the old name removed).
pub fn retire_master_file(path: &Path) -> Result<PathBuf, KeyError> {
    let mut name = path.as_os_str().to_owned();
    name.push(RETIRED_SUFFIX);
    let retired = PathBuf::from(name);
    match fs::hard_link(path, &retired) {
        Ok(()) => {}
        // Another run retiring the same file at the same moment.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && retired.exists() => {
            return Ok(retired);
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::AlreadyExists
                && fs::read(path).ok() == fs::read(&retired).ok() => {}
        Err(e) => return Err(file_error(&retired, e)),
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_error(path, e)),
        _ => Ok(retired),
    }
}

/// The master key files, oldest first, with the creation time their name
/// holds (`0` for `master.key`).
fn master_key_paths(dir: &Path) -> Result<Vec<(i64, PathBuf)>, KeyError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for (name, path) in dir_entries(dir)? {
        if name == MASTER_KEY_FILE {
            keys.push((0, path));
            continue;
        }
        let Some(stamp) = name
            .strip_prefix(MASTER_PREFIX)
            .and_then(|rest| rest.strip_suffix(MASTER_SUFFIX))
        else {
            continue;
        };
        let millis = stamp
            .parse::<i64>()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                file_error(
                    &path,
                    "name must be master-<unix milliseconds>.key (as keys rotate-master writes it)",
                )
            })?;
        keys.push((millis, path));
    }
    keys.sort();
    Ok(keys)
}

/// The entries of `dir` whose names are UTF-8 (the key files' names are),
/// with their paths.
fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, KeyError> {
    let failed = |e: std::io::Error| KeyError::Dir {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if let Ok(name) = entry.file_name().into_string() {
            entries.push((name, entry.path()));
        }
    }
    Ok(entries)
}

/// A signing key file of the layout before the database.
#[derive(Debug)]
pub struct LegacyKeyFile {
    pub path: PathBuf,
    /// Unix milliseconds, from the file name.
    pub created_at: i64,
    pub key: SigningKey,
    pub der: Vec<u8>,
}

/// Every `signing-<millis>.pem` in `dir`, oldest first, parsed: one that
/// cannot be read or parsed is an error naming it (and is left untouched).
pub fn legacy_key_files(dir: &Path) -> Result<Vec<LegacyKeyFile>, KeyError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for (created_at, path) in signing_key_paths(dir)? {
        warn_if_readable_by_others(&path);
        let pem = fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        let der = pem_decode(&pem).map_err(|reason| file_error(&path, reason))?;
        let key = SigningKey::from_pkcs8(&der).map_err(|reason| file_error(&path, reason))?;
        keys.push(LegacyKeyFile {
            path,
            created_at: created_at.timestamp_millis(),
            key,
            der,
        });
    }
    Ok(keys)
}

/// Writes a new RSA key as `signing-<millis>.pem`, the layout before the
/// database: what an installation being upgraded holds (tests build such
/// directories with it, and reuse one key to save RSA generation).
pub fn write_legacy_key_file(dir: &Path, created_at: DateTime<Utc>) -> Result<PathBuf, KeyError> {
    ensure_dir(dir)?;
    let (_, der) = SigningKey::generate()?;
    let millis = created_at.timestamp_millis();
    let path = dir.join(format!("{SIGNING_PREFIX}{millis:013}{SIGNING_SUFFIX}"));
    write_new_secret_file(&path, pem_encode(&der).as_bytes())?;
    Ok(path)
}

/// One key of the ring: its recorded times and, unless it was already out
/// of the JWKS when read, the key itself.
#[derive(Debug, Clone)]
struct RingEntry {
    times: KeyTimes,
    key: Option<Arc<SigningKey>>,
}

/// The keys one node holds, as last read from the database: which one
/// signs and which are published is decided at the time asked
/// (`protocol::signing_keys`), so a next key starts signing at its
/// activation even between two reads. The JWKS document is serialized
/// when the ring is built (at every read).
#[derive(Debug)]
pub struct KeyRing {
    entries: Vec<RingEntry>,
    /// How long a key that signed stays published after it stopped.
    linger: lifecycle::Linger,
    jwks: Bytes,
}

impl KeyRing {
    /// A ring of `keys` (with their parsed key where the caller has one),
    /// its JWKS as published at `now`.
    pub fn new(
        keys: Vec<(KeyTimes, Option<Arc<SigningKey>>)>,
        linger: lifecycle::Linger,
        now: i64,
    ) -> Self {
        let entries: Vec<RingEntry> = keys
            .into_iter()
            .map(|(times, key)| RingEntry { times, key })
            .collect();
        let mut ring = Self {
            entries,
            linger,
            jwks: Bytes::new(),
        };
        ring.jwks = ring.build_jwks(now);
        ring
    }

    /// The same keys, the JWKS rebuilt as published at `now` (when the
    /// database cannot be read, keys still come and go by time).
    pub fn at(&self, now: i64) -> Self {
        Self::new(
            self.entries
                .iter()
                .map(|e| (e.times.clone(), e.key.clone()))
                .collect(),
            self.linger,
            now,
        )
    }

    fn times(&self) -> Vec<KeyTimes> {
        self.entries.iter().map(|e| e.times.clone()).collect()
    }

    /// Every key with its status at `now`, in activation order.
    pub fn statuses(&self, now: i64) -> Vec<(KeyTimes, KeyStatus)> {
        let times = self.times();
        let statuses = lifecycle::statuses(&times, self.linger, now);
        times.into_iter().zip(statuses).collect()
    }

    /// The key that signs at `now`: `None` only when the database holds no
    /// active key (the start and `keys retire` make sure it does) or it
    /// could not be unsealed.
    pub fn signer(&self, now: i64) -> Option<Arc<SigningKey>> {
        let index = lifecycle::active(&self.times(), self.linger, now)?;
        self.entries[index].key.clone()
    }

    /// The key with this kid if it is published at `now`: what our own
    /// tokens are verified with.
    pub fn published(&self, kid: &str, now: i64) -> Option<Arc<SigningKey>> {
        let times = self.times();
        let statuses = lifecycle::statuses(&times, self.linger, now);
        self.entries
            .iter()
            .zip(statuses)
            .find(|(e, s)| e.times.kid == kid && s.state.is_published())
            .and_then(|(e, _)| e.key.clone())
    }

    /// The parsed key with this kid, whatever its state (a later read
    /// reuses it instead of unsealing it again).
    pub fn parsed(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.entries
            .iter()
            .find(|e| e.times.kid == kid)
            .and_then(|e| e.key.clone())
    }

    /// The JWKS document as built.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The published keys at `now`: the active one first (clients that try
    /// keys in order find it first), then the others newest first.
    pub fn published_kids(&self, now: i64) -> Vec<String> {
        let mut published: Vec<(bool, i64, String)> = self
            .statuses(now)
            .into_iter()
            .zip(&self.entries)
            .filter(|((_, s), e)| s.state.is_published() && e.key.is_some())
            .map(|((t, s), _)| (s.state == KeyState::Active, t.activates_at, t.kid))
            .collect();
        published.sort_by(|a, b| b.cmp(a));
        published.into_iter().map(|(_, _, kid)| kid).collect()
    }

    fn build_jwks(&self, now: i64) -> Bytes {
        let keys = self
            .published_kids(now)
            .iter()
            .filter_map(|kid| self.parsed(kid))
            .map(|k| k.jwk())
            .collect();
        Bytes::from(serde_json::to_vec(&Jwks { keys }).expect("the JWKS serializes"))
    }
}

/// What `AppState` holds: the master keys, swapped whole by each scan of
/// `keys_dir`, and the ring, swapped whole by each read of the table, while
/// requests keep using the ones they took.
#[derive(Debug)]
pub struct Keys {
    masters: RwLock<Arc<MasterKeys>>,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keys {
    pub fn new(masters: MasterKeys, ring: KeyRing) -> Self {
        Self {
            masters: RwLock::new(Arc::new(masters)),
            ring: RwLock::new(Arc::new(ring)),
        }
    }

    /// The master keys as last loaded.
    pub fn masters(&self) -> Arc<MasterKeys> {
        self.masters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace_masters(&self, masters: MasterKeys) {
        *self
            .masters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(masters);
    }

    /// The ring as last read.
    pub fn ring(&self) -> Arc<KeyRing> {
        // A poisoned lock only means a panic while swapping an Arc: the
        // value inside is whole.
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, ring: KeyRing) {
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
    }

    /// The key that signs at `now` (Unix milliseconds).
    pub fn signer(&self, now: i64) -> Option<Arc<SigningKey>> {
        self.ring().signer(now)
    }

    /// The published key with this kid at `now` (Unix milliseconds).
    pub fn verifier(&self, kid: &str, now: i64) -> Option<Arc<SigningKey>> {
        self.ring().published(kid, now)
    }

    /// The JWKS document, as built at the last read.
    pub fn jwks(&self) -> Bytes {
        self.ring().jwks()
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
    let mut keys = Vec::new();
    for (name, path) in dir_entries(dir)? {
        let Some(stamp) = name
            .strip_prefix(SIGNING_PREFIX)
            .and_then(|rest| rest.strip_suffix(SIGNING_SUFFIX))
        else {
            continue;
        };
        let created_at = stamp
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| {
                file_error(
                    &path,
                    "name must be signing-<unix milliseconds>.pem (as earlier versions wrote it)",
                )
            })?;
        keys.push((created_at, path));
    }
    keys.sort();
    Ok(keys)
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

//! Typed settings. Layers, later ones winning: the built-in defaults below, the
//! TOML file given with `--config`, then `STEPGATE_<KEY>` environment variables
//! for top-level keys and `STEPGATE_<SECTION>__<KEY>` for sectioned ones.
//!
//! Every field documents its default; `config/default.toml` repeats them and a
//! test checks that the file and `Settings::default()` agree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

/// The prefix of every environment variable that configures Stepgate.
pub const ENV_PREFIX: &str = "STEPGATE_";

/// Environment variables with the prefix that are not settings: `STEPGATE_CONFIG`
/// names the configuration file itself (the `--config` flag's fallback).
const ENV_NOT_SETTINGS: &[&str] = &["config"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The issuer identifier (OpenID Connect Discovery 1.0 §3): an https URL (or
    /// http on a loopback host) with no query or fragment. Every endpoint URL is
    /// built under it. Default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// The address the HTTP server binds. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `sqlite://PATH?mode=rwc` or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    /// Default `sqlite://data/stepgate.db?mode=rwc`.
    pub database_url: String,
    /// Directory holding the master key (`master.key`); signing key files
    /// left by earlier versions are imported from it. Default `keys`.
    pub keys_dir: PathBuf,
    pub keys: KeySettings,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub ui: UiSettings,
    pub email: EmailSettings,
    pub password: PasswordSettings,
    pub session: SessionSettings,
    pub login: LoginSettings,
    pub account: AccountSettings,
    pub totp: TotpSettings,
    pub passkeys: PasskeySettings,
    pub oauth: OAuthSettings,
    pub sweep: SweepSettings,
    pub metrics: MetricsSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Apply pending migrations when `serve` starts. Default `true`. Nodes
    /// starting together on PostgreSQL take turns (`store::migrate`); turn
    /// it off when `stepgate migrate` runs first, as for upgrades.
    pub migrate_on_start: bool,
    /// Connections in the pool (SQLite also opens one of its own for the
    /// writer of token rows and audit events, and read-only ones for token
    /// lookups, at most one per runtime thread: `store::local_read`).
    /// Default `10`.
    pub max_connections: u32,
    /// Seconds to wait for a connection (at start and per query). Default `5`.
    pub connect_timeout_secs: u64,
    /// SQLite only: milliseconds a writer waits for a lock. Default `5000`.
    pub sqlite_busy_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes; larger ones get 413. Default `65536`.
    pub body_limit_bytes: usize,
    /// Seconds a request may take before it is answered 408. Default `30`.
    pub request_timeout_secs: u64,
    /// Seconds SIGTERM waits for the requests in flight to finish before
    /// the process stops anyway; new connections are refused from the
    /// signal on. Default `10`.
    pub shutdown_grace_secs: u64,
    /// Proxies (IP addresses or CIDR blocks) whose `Forwarded` /
    /// `X-Forwarded-For` headers say who the client is. Default empty: the
    /// TCP peer is the client and those headers are ignored.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `human` or `json`. Default `human`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `stepgate=debug,info`; `RUST_LOG`
    /// overrides it when set. Default `info`.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSettings {
    /// The name shown on the hosted pages and in emails. Default `Stepgate`.
    pub product_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    /// Each message becomes an `.eml` file in `outbox_dir`.
    File,
    /// Sent through an SMTP server.
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refuses servers without it.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a test server.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    /// `file` or `smtp`. Default `file`, so a first run needs no mail server.
    pub transport: EmailTransport,
    /// Where the `file` transport writes `.eml` files. Default `data/outbox`.
    pub outbox_dir: PathBuf,
    /// The sender. Default `Stepgate <no-reply@localhost>`.
    pub from: String,
    /// SMTP server host. Default `localhost`.
    pub smtp_host: String,
    /// SMTP server port. Default `587`.
    pub smtp_port: u16,
    /// `starttls`, `tls` or `none`. Default `starttls`.
    pub smtp_security: SmtpSecurity,
    /// SMTP user name; empty for no authentication. Default empty.
    pub smtp_username: String,
    /// SMTP password (prefer STEPGATE_EMAIL__SMTP_PASSWORD). Default empty.
    pub smtp_password: String,
    /// Seconds one SMTP delivery may take, connection to final reply. Default `10`.
    pub smtp_timeout_secs: u64,
    /// Emails that forms can make Stepgate send (confirmation and reset
    /// links, "someone tried to sign up") to one address per hour; more
    /// are dropped. Default `5`.
    pub address_mails_per_hour: u32,
    /// Seconds between two looks at the mail queue for rows queued by other nodes, retries and run-out leases. Default `5`.
    pub queue_poll_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// argon2id memory in KiB. Default `19456` (OWASP).
    pub argon2_memory_kib: u32,
    /// argon2id passes. Default `2` (OWASP).
    pub argon2_iterations: u32,
    /// argon2id lanes. Default `1` (OWASP).
    pub argon2_parallelism: u32,
    /// Hashes computed at once, on that many hashing threads (nice +10); 0 means one per CPU. Default `0`.
    pub hash_concurrency: usize,
    /// Shortest password accepted (NIST SP 800-63B §3.1.1.2: at least 8). Default `8`.
    pub min_length: usize,
    /// Longest password accepted (NIST: at least 64). Default `256`.
    pub max_length: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// A session unused this long ends. Default `1800` (NIST SP 800-63B §4.2.3, AAL2).
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in, used or not. Default `43200` (12 hours).
    pub absolute_timeout_secs: u64,
    /// Seconds a passed second factor counts as recent, for actions that
    /// need one (creating an API key). Default `300`.
    pub mfa_fresh_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// Consecutive failed sign-ins allowed before delays start. Default `5`.
    pub free_failures: u32,
    /// The first delay, in seconds; each further failure doubles it. Default `30`.
    pub base_delay_secs: u64,
    /// The longest lockout, in seconds. Default `900`.
    pub max_delay_secs: u64,
    /// Wrong passwords from one address (an IPv6 /64), any accounts, per
    /// hour; then that address waits for the window to end. The same budget,
    /// counted apart, bounds refused passkey ceremonies. Default `100`.
    pub address_failures_per_hour: u32,
    /// Wrong passwords for one account from all addresses together, per
    /// hour. Default `50`.
    pub account_failures_per_hour: u32,
}

/// The signing keys in the database (docs/operating.md, "Keys and
/// rotation").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// Seconds between two reads of the signing keys, and two scans of the
    /// master key files in `keys_dir`, by every node: a rotation or
    /// retirement reaches all nodes within it (`keys rotate-master` waits
    /// this plus 2 s before sealing under a new master key). At least 1.
    /// Default `30`.
    pub refresh_secs: u64,
    /// Seconds a new key is published before it signs, so that relying
    /// parties' cached JWKS hold it first. It must cover `refresh_secs`
    /// plus how long relying parties cache the JWKS (`/jwks` says
    /// `max-age=300`; some libraries keep it longer): at least
    /// `refresh_secs`. Default `3600`.
    pub publish_ahead_secs: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            refresh_secs: 30,
            publish_ahead_secs: 3600,
        }
    }
}

/// The background sweep that deletes rows nothing can use any more
/// (`service::sweep`). Every node runs it; the deletes are idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSettings {
    /// Seconds between sweeps; the first runs one interval after start.
    /// `0` turns the sweep off. Default `300`.
    pub interval_secs: u64,
    /// Rows deleted per statement, so no sweep holds a long lock.
    /// Default `500`.
    pub batch_size: u32,
    /// A run of failed attempts with no failure for this long, and no lock
    /// left, is forgotten. Default `86400`.
    pub forget_failures_secs: u64,
}

/// The Prometheus `/metrics` listener (docs/operating.md, "Metrics").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// The address `/metrics` is served on, apart from the public
    /// `listen` (never on the public port); empty turns metrics off.
    /// Default `127.0.0.1:9464`.
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsSettings {
    /// The address to serve `/metrics` on, `None` when metrics are off,
    /// or why the setting is not an address.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen
            .parse()
            .map(Some)
            .map_err(|_| format!("not an address such as 127.0.0.1:9464 (got {listen:?})"))
    }
}

/// Passkeys (WebAuthn). They are offered only when the issuer has a host
/// name: browsers refuse an IP address as the rp id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeySettings {
    /// Passkeys one user may register, 1 to 100. Default `10`.
    pub max_per_user: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSettings {
    /// Lifetime of an email confirmation link, seconds. Default `86400`.
    pub confirm_ttl_secs: u64,
    /// Lifetime of a password reset link, seconds. Default `3600`.
    pub reset_ttl_secs: u64,
    /// Sign-ups, password reset requests and confirmation resends from one
    /// address (an IPv6 /64), each, per hour. Default `20`.
    pub address_requests_per_hour: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpSettings {
    /// `SHA1`, `SHA256` or `SHA512`. Default `SHA1` (what Google Authenticator reads).
    pub algorithm: crate::auth::totp::TotpAlgorithm,
    /// Digits per code, 6 to 8. Default `6`.
    pub digits: u8,
    /// Seconds per code. Default `30`.
    pub period_secs: u64,
    /// Codes accepted either side of the current one, for clock drift. Default `1`.
    pub skew: u16,
    /// Consecutive wrong codes allowed before delays start. Default `5`.
    pub free_failures: u32,
    /// The first delay, in seconds; each further failure doubles it. Default `60`.
    pub base_delay_secs: u64,
    /// The longest lockout, in seconds. Default `900`.
    pub max_delay_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthSettings {
    /// Seconds an authorization code can be redeemed. Default `60` (RFC 6749 §4.1.2: short).
    pub code_ttl_secs: u64,
    /// Seconds an access token is valid. Default `600` (RFC 9068: short-lived).
    pub access_token_ttl_secs: u64,
    /// Seconds an ID token is valid. Default `3600`.
    pub id_token_ttl_secs: u64,
    /// Seconds a person has to finish signing in for one authorization request. Default `900`.
    pub interaction_ttl_secs: u64,
    /// Require PKCE (S256) from confidential clients too; public clients always
    /// need it. Default `true` (RFC 9700 §2.1.1).
    pub require_pkce: bool,
    /// Seconds a refresh token may go unused before it expires. Default `1209600` (14 days).
    pub refresh_token_idle_secs: u64,
    /// Seconds a refresh token family lives, however often it is used. Default `2592000` (30 days).
    pub refresh_token_absolute_secs: u64,
    /// Seconds a node keeps a client it read for client authentication
    /// (0: read it on every request). A secret rotated or a client deleted
    /// with the CLI stops working on running nodes within this time; a new
    /// secret works at once. Default `5`, at most `300`.
    pub client_cache_secs: u64,
    /// Failed client authentications from one address (an IPv6 /64) per
    /// hour at `/token`, `/introspect` and `/revoke`; then 429. Default `100`.
    pub address_client_auth_failures_per_hour: u32,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            code_ttl_secs: 60,
            access_token_ttl_secs: 600,
            id_token_ttl_secs: 3600,
            interaction_ttl_secs: 900,
            require_pkce: true,
            refresh_token_idle_secs: 14 * 24 * 3600,
            refresh_token_absolute_secs: 30 * 24 * 3600,
            client_cache_secs: 5,
            address_client_auth_failures_per_hour: 100,
        }
    }
}

impl Default for TotpSettings {
    fn default() -> Self {
        Self {
            algorithm: crate::auth::totp::TotpAlgorithm::SHA1,
            digits: 6,
            period_secs: 30,
            skew: 1,
            free_failures: 5,
            base_delay_secs: 60,
            max_delay_secs: 900,
        }
    }
}

impl TotpSettings {
    pub fn params(&self) -> crate::auth::totp::TotpParams {
        crate::auth::totp::TotpParams {
            algorithm: self.algorithm,
            digits: self.digits,
            period_secs: self.period_secs,
            skew: self.skew,
        }
    }
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            product_name: "Stepgate".into(),
        }
    }
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            transport: EmailTransport::File,
            outbox_dir: PathBuf::from("data/outbox"),
            from: "Stepgate <no-reply@localhost>".into(),
            smtp_host: "localhost".into(),
            smtp_port: 587,
            smtp_security: SmtpSecurity::Starttls,
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_timeout_secs: 10,
            address_mails_per_hour: 5,
            queue_poll_secs: 5,
        }
    }
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 0,
            min_length: 8,
            max_length: 256,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 1800,
            absolute_timeout_secs: 43200,
            mfa_fresh_secs: 300,
        }
    }
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay_secs: 30,
            max_delay_secs: 900,
            address_failures_per_hour: 100,
            account_failures_per_hour: 50,
        }
    }
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            batch_size: 500,
            forget_failures_secs: 86400,
        }
    }
}

impl Default for PasskeySettings {
    fn default() -> Self {
        Self { max_per_user: 10 }
    }
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            confirm_ttl_secs: 86400,
            reset_ttl_secs: 3600,
            address_requests_per_hour: 20,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/stepgate.db?mode=rwc".into(),
            keys_dir: PathBuf::from("keys"),
            keys: KeySettings::default(),
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
            ui: UiSettings::default(),
            email: EmailSettings::default(),
            password: PasswordSettings::default(),
            session: SessionSettings::default(),
            login: LoginSettings::default(),
            account: AccountSettings::default(),
            totp: TotpSettings::default(),
            passkeys: PasskeySettings::default(),
            oauth: OAuthSettings::default(),
            sweep: SweepSettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            migrate_on_start: true,
            max_connections: 10,
            connect_timeout_secs: 5,
            sqlite_busy_timeout_ms: 5000,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} cannot be read: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layers. `file` is the `--config` file; it must exist when given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            // Toml::file silently skips a missing file; a file the operator named must exist.
            std::fs::metadata(path).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(ENV_NOT_SETTINGS)
                .split("__"),
        );
        let settings: Settings = figment.extract().map_err(describe_figment_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that serde's types cannot express, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_issuer(&self.issuer).map_err(|reason| {
            ConfigError::Invalid(format!("key `issuer`: {reason} (got {:?})", self.issuer))
        })?;
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "key `database_url`: must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::Invalid(format!(
                "key `log.level`: not a log filter (got {:?}; try \"info\" or \"stepgate=debug,info\")",
                self.log.level
            )));
        }
        if !(1..=100).contains(&self.passkeys.max_per_user) {
            return Err(ConfigError::Invalid(format!(
                "key `passkeys.max_per_user`: must be from 1 to 100 (got {})",
                self.passkeys.max_per_user
            )));
        }
        if self.keys.refresh_secs == 0 {
            return Err(ConfigError::Invalid(
                "key `keys.refresh_secs`: must be at least 1".into(),
            ));
        }
        if self.keys.publish_ahead_secs < self.keys.refresh_secs {
            return Err(ConfigError::Invalid(format!(
                "key `keys.publish_ahead_secs`: must be at least keys.refresh_secs ({}), or a node could sign with a key it has not published yet",
                self.keys.refresh_secs
            )));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "key `database.max_connections`: must be at least 1".into(),
            ));
        }
        if self.http.body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "key `http.body_limit_bytes`: must be at least 1024".into(),
            ));
        }
        if self.http.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "key `http.request_timeout_secs`: must be at least 1".into(),
            ));
        }
        if let Err(reason) =
            crate::http::client_ip::TrustedProxies::parse(&self.http.trusted_proxies)
        {
            return Err(ConfigError::Invalid(format!(
                "key `http.trusted_proxies`: {reason}"
            )));
        }
        let p = &self.password;
        if p.min_length < 8 {
            return Err(ConfigError::Invalid(
                "key `password.min_length`: must be at least 8 (NIST SP 800-63B)".into(),
            ));
        }
        if p.max_length < 64 || p.max_length < p.min_length {
            return Err(ConfigError::Invalid(
                "key `password.max_length`: must be at least 64 and at least min_length".into(),
            ));
        }
        if argon2::Params::new(
            p.argon2_memory_kib,
            p.argon2_iterations,
            p.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return Err(ConfigError::Invalid(
                "key `password.argon2_*`: not valid argon2id parameters".into(),
            ));
        }
        if self.session.idle_timeout_secs == 0
            || self.session.absolute_timeout_secs < self.session.idle_timeout_secs
        {
            return Err(ConfigError::Invalid(
                "key `session.absolute_timeout_secs`: must be at least session.idle_timeout_secs, which must be positive".into(),
            ));
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "key `email.from`: not an email address (got {:?})",
                self.email.from
            )));
        }
        if !(6..=8).contains(&self.totp.digits) {
            return Err(ConfigError::Invalid(
                "key `totp.digits`: must be 6, 7 or 8 (RFC 4226 §5.3)".into(),
            ));
        }
        if !(15..=300).contains(&self.totp.period_secs) {
            return Err(ConfigError::Invalid(
                "key `totp.period_secs`: must be between 15 and 300".into(),
            ));
        }
        if self.totp.skew > 3 {
            return Err(ConfigError::Invalid(
                "key `totp.skew`: at most 3 (RFC 6238 §5.2 recommends 1)".into(),
            ));
        }
        if self.totp.free_failures > 20 || self.login.free_failures > 20 {
            return Err(ConfigError::Invalid(
                "key `totp.free_failures` / `login.free_failures`: at most 20, so throttling starts well under NIST SP 800-63B's 100".into(),
            ));
        }
        if self.totp.base_delay_secs == 0 || self.login.base_delay_secs == 0 {
            return Err(ConfigError::Invalid(
                "key `totp.base_delay_secs` / `login.base_delay_secs`: must be positive".into(),
            ));
        }
        let o = &self.oauth;
        if o.code_ttl_secs == 0
            || o.code_ttl_secs > 600
            || o.access_token_ttl_secs == 0
            || o.id_token_ttl_secs == 0
            || o.interaction_ttl_secs == 0
            || o.refresh_token_idle_secs == 0
            || o.refresh_token_absolute_secs < o.refresh_token_idle_secs
            || o.client_cache_secs > 300
        {
            return Err(ConfigError::Invalid(
                "key `oauth.*_secs`: must be positive, code_ttl_secs at most 600 (RFC 6749 §4.1.2), refresh_token_absolute_secs at least refresh_token_idle_secs, client_cache_secs at most 300".into(),
            ));
        }
        if self.email.address_mails_per_hour == 0
            || self.login.address_failures_per_hour == 0
            || self.login.account_failures_per_hour == 0
            || self.account.address_requests_per_hour == 0
            || self.oauth.address_client_auth_failures_per_hour == 0
        {
            return Err(ConfigError::Invalid(
                "key `*_per_hour` (email, login, account, oauth): must be positive".into(),
            ));
        }
        if self.sweep.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "key `sweep.batch_size`: must be positive".into(),
            ));
        }
        if let Err(reason) = self.metrics.listen_addr() {
            return Err(ConfigError::Invalid(format!(
                "key `metrics.listen`: {reason}; empty turns metrics off"
            )));
        }
        if self.ui.product_name.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "key `ui.product_name`: must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// The issuer as a URL; `validate` has already checked it.
    pub fn issuer_url(&self) -> Url {
        parse_issuer(&self.issuer).expect("issuer validated at load")
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.database.connect_timeout_secs)
    }
}

/// OpenID Connect Discovery 1.0 §3: the issuer is a case-sensitive https URL with
/// scheme, host and optionally port and path, and no query or fragment. RFC 9700
/// §2.6 asks for TLS everywhere; plain http is allowed on loopback hosts only,
/// for development.
fn parse_issuer(issuer: &str) -> Result<Url, String> {
    let url = Url::parse(issuer).map_err(|e| format!("not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if issuer.ends_with('/') {
        // The issuer is compared as a string by relying parties; "https://x/" and
        // "https://x" are different issuers, and endpoint URLs are built by appending.
        return Err("must not end with '/'".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => Err("must be https (http is allowed only on a loopback host)".into()),
        _ => Err("must be an https URL".into()),
    }
}

pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Figment reports the failing key as a path plus the source (file or
/// environment); this turns that into one line that names the key.
fn describe_figment_error(error: figment::Error) -> ConfigError {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {src})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            match &e.kind {
                // Figment's path already ends with the unknown field's name.
                figment::error::Kind::UnknownField(..) => format!("unknown key `{key}`{source}"),
                kind => format!("key `{key}`: {kind}{source}"),
            }
        })
        .collect();
    ConfigError::Invalid(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_matches_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let from_file: Settings = Figment::new()
            .merge(Toml::file_exact(&path))
            .extract()
            .expect("config/default.toml parses");
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn issuer_rules() {
        assert!(parse_issuer("https://id.example.com").is_ok());
        assert!(parse_issuer("https://id.example.com/tenant").is_ok());
        assert!(parse_issuer("http://127.0.0.1:8080").is_ok());
        assert!(parse_issuer("http://localhost:8080").is_ok());
        assert!(parse_issuer("http://[::1]:8080").is_ok());
        assert!(parse_issuer("http://id.example.com").is_err());
        assert!(parse_issuer("https://id.example.com/").is_err());
        assert!(parse_issuer("https://id.example.com?x=1").is_err());
        assert!(parse_issuer("https://id.example.com#f").is_err());
        assert!(parse_issuer("ftp://id.example.com").is_err());
        assert!(parse_issuer("not a url").is_err());
    }
}

#[cfg(test)]
mod docs_tests {
    /// Every option in config/default.toml appears in docs/operating.md's
    /// table, and every option of the table is in the file.
    #[test]
    fn operating_docs_list_every_option() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let toml = std::fs::read_to_string(root.join("config/default.toml")).unwrap();
        let docs = std::fs::read_to_string(root.join("docs/operating.md")).unwrap();
        let mut section = String::new();
        let mut in_file = std::collections::BTreeSet::new();
        for line in toml.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((key, _)) = line.split_once('=')
                && !line.starts_with('#')
            {
                in_file.insert(format!("{section}{}", key.trim()));
            }
        }
        // The options table: from its header to the first line that is not a row.
        let in_docs: std::collections::BTreeSet<String> = docs
            .lines()
            .skip_while(|l| !l.starts_with("| key | default | meaning |"))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(key, _)| key.to_owned())
            .collect();
        assert_eq!(
            in_file, in_docs,
            "config/default.toml and docs/operating.md differ"
        );
    }
}

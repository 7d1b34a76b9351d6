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
    /// Directory holding the signing keys and the master key. Default `keys`.
    pub keys_dir: PathBuf,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Apply pending migrations when `serve` starts. Default `true`; turn it off
    /// when several nodes start at once and `stepgate migrate` runs first.
    pub migrate_on_start: bool,
    /// Connections in the pool. Default `10`.
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/stepgate.db?mode=rwc".into(),
            keys_dir: PathBuf::from("keys"),
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
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

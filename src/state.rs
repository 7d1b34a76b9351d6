//! What every handler and service can reach. It sits beneath the
//! services: it holds the store, the keys, the settings, the clock, the
//! mailer and the password hasher, and imports nothing from `service` or
//! `http`.

use std::sync::Arc;

use axum::body::Bytes;
use sea_orm::DatabaseConnection;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::PurposeKey;
use crate::email::{EmailError, Mailer};
use crate::hasher::Hasher;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::protocol::discovery::ProviderMetadata;
use crate::store::Store;

/// Cloned for every request (axum hands each handler and middleware its
/// own copy): one reference count, whatever the state holds.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// The database, its writer, read path and client cache.
    pub store: Store,
    /// The master key and the signing keys as last read
    /// (`service::signing_keys` re-reads them every `keys.refresh_secs`).
    pub keys: Keys,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub mailer: Mailer,
    /// Wakes this node's mail worker when a request queued an email.
    pub mail_wakeup: tokio::sync::Notify,
    pub hasher: Hasher,
    /// `scheme://host[:port]` of the issuer, for `Origin` checks.
    issuer_origin: Arc<str>,
    /// Documents that never change while the process runs, serialized once
    /// (the JWKS changes with the keys: `keys`).
    pub documents: Documents,
    /// The WebAuthn relying party: `None` when the issuer's host is an IP
    /// address, which browsers refuse as an rp id (WebAuthn Level 3 §5.1.3
    /// step 8; the rp id is a registrable domain suffix of the origin), and
    /// passkeys are not offered.
    pub webauthn: Option<webauthn_rs::Webauthn>,
    /// This server's Prometheus registry; `None` when `metrics.listen` is
    /// empty, and then nothing is counted.
    pub metrics: Option<Arc<Metrics>>,
}

impl AppState {
    pub fn new(
        settings: Settings,
        keys: Keys,
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EmailError> {
        let webauthn = relying_party(&settings);
        let metrics =
            matches!(settings.metrics.listen_addr(), Ok(Some(_))).then(|| Arc::new(Metrics::new()));
        let documents = Documents {
            // `phr` is offered only where a passkey can be used.
            discovery: to_json(&ProviderMetadata::new(&settings.issuer, webauthn.is_some())),
        };
        Ok(Self(Arc::new(Shared {
            documents,
            mailer: Mailer::from_settings(&settings.email)?,
            mail_wakeup: tokio::sync::Notify::new(),
            hasher: Hasher::new(&settings.password),
            issuer_origin: settings.issuer_url().origin().ascii_serialization().into(),
            store: Store::counting(
                db,
                std::time::Duration::from_secs(settings.oauth.client_cache_secs),
                metrics.clone(),
            ),
            metrics,
            keys,
            webauthn,
            settings,
            clock,
        })))
    }
}

/// How long a passkey ceremony may take, from its options to its finish:
/// the challenge expires then (WebAuthn Level 3 §15.4 recommends 300 s for
/// user verification required).
pub const PASSKEY_CEREMONY_SECS: u64 = 300;

/// The relying party: the rp id is the issuer's host, the one origin the
/// issuer's origin.
fn relying_party(settings: &Settings) -> Option<webauthn_rs::Webauthn> {
    let issuer = settings.issuer_url();
    let Some(host) = issuer.domain() else {
        tracing::warn!(
            issuer = %settings.issuer,
            "passkeys are off: the issuer's host is an IP address, which browsers refuse as a WebAuthn rp id; use a host name (http://localhost:PORT in development)"
        );
        return None;
    };
    let origin = url::Url::parse(&issuer.origin().ascii_serialization()).ok()?;
    let built = webauthn_rs::WebauthnBuilder::new(host, &origin).and_then(|b| {
        b.rp_name(&settings.ui.product_name)
            .timeout(std::time::Duration::from_secs(PASSKEY_CEREMONY_SECS))
            .build()
    });
    match built {
        Ok(webauthn) => Some(webauthn),
        Err(error) => {
            tracing::warn!(%error, "passkeys are off: the issuer is not a WebAuthn relying party");
            None
        }
    }
}

/// The derivation labels of the keys that are not sealing keys.
const CSRF_LABEL: &str = "stepgate/csrf/v1";
const THROTTLE_LABEL: &str = "stepgate/login-throttle/v1";

impl Shared {
    /// Signs CSRF tokens: derived from the newest master key. Derived at
    /// each use (two HMACs), since the master keys change without a
    /// restart (`service::master_key`).
    pub fn csrf_key(&self) -> PurposeKey {
        PurposeKey::derive(self.keys.masters().sealing().bytes(), CSRF_LABEL)
    }

    /// Every key a CSRF token may verify with: one per loaded master key,
    /// so a form rendered before a master-key rotation still posts until
    /// its key's file is retired (docs/operating.md, "The master key").
    pub fn csrf_keys(&self) -> Vec<PurposeKey> {
        self.keys
            .masters()
            .newest_first()
            .map(|master| PurposeKey::derive(master.bytes(), CSRF_LABEL))
            .collect()
    }

    /// Keys the sign-in throttle's rows (an HMAC of the email): derived
    /// from the newest master key, so every node that loaded the same keys
    /// counts in the same rows.
    pub fn throttle_key(&self) -> PurposeKey {
        PurposeKey::derive(self.keys.masters().sealing().bytes(), THROTTLE_LABEL)
    }

    /// Unix seconds at the state's clock (`clock.rs`; tests pass a fixed
    /// clock): the one way services read the time.
    pub fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Unix milliseconds at the state's clock: the signing keys' times.
    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Whether the issuer is https: cookies are then `Secure` and `__Host-`.
    pub fn https(&self) -> bool {
        self.settings.issuer.starts_with("https://")
    }

    pub fn issuer_origin(&self) -> &str {
        &self.issuer_origin
    }
}

pub struct Documents {
    pub discovery: Bytes,
}

fn to_json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("documents serialize"))
}

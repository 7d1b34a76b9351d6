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
use crate::keys::KeyStore;
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
    pub keys: KeyStore,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub mailer: Mailer,
    /// Wakes this node's mail worker when a request queued an email.
    pub mail_wakeup: tokio::sync::Notify,
    pub hasher: Hasher,
    /// Signs CSRF tokens.
    pub csrf_key: PurposeKey,
    /// Keys the sign-in throttle's rows (an HMAC of the email).
    pub throttle_key: PurposeKey,
    /// `scheme://host[:port]` of the issuer, for `Origin` checks.
    issuer_origin: Arc<str>,
    /// Documents that never change while the process runs, serialized once.
    pub documents: Documents,
}

impl AppState {
    pub fn new(
        settings: Settings,
        keys: KeyStore,
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EmailError> {
        let master = *keys.master().bytes();
        let documents = Documents {
            // No passkey ceremony is served yet (issue 16 in progress), so
            // `phr` is not offered.
            discovery: to_json(&ProviderMetadata::new(&settings.issuer, false)),
            jwks: to_json(&keys.jwks()),
        };
        Ok(Self(Arc::new(Shared {
            documents,
            mailer: Mailer::from_settings(&settings.email)?,
            mail_wakeup: tokio::sync::Notify::new(),
            hasher: Hasher::new(&settings.password),
            csrf_key: PurposeKey::derive(&master, "stepgate/csrf/v1"),
            throttle_key: PurposeKey::derive(&master, "stepgate/login-throttle/v1"),
            issuer_origin: settings.issuer_url().origin().ascii_serialization().into(),
            store: Store::new(
                db,
                std::time::Duration::from_secs(settings.oauth.client_cache_secs),
            ),
            keys,
            settings,
            clock,
        })))
    }
}

impl Shared {
    /// Unix seconds at the state's clock (`clock.rs`; tests pass a fixed
    /// clock): the one way services read the time.
    pub fn now(&self) -> i64 {
        self.clock.now().timestamp()
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
    pub jwks: Bytes,
}

fn to_json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("documents serialize"))
}

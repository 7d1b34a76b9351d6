//! The client registry: relying parties an operator registers (`stepgate
//! client …`), and client authentication at the token endpoint.
//!
//! A confidential client gets a 256-bit secret, shown once and stored only as
//! its SHA-256: the secret is generated here with full entropy, so a fast hash
//! compared in constant time is enough (PRODUCT.md security model); argon2 is
//! for what people choose. A public client (a native or browser app) has no
//! secret and authenticates with `none`, so PKCE is what protects its codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::{constant_time_eq, random_id, random_token, sha256_hex};
use crate::protocol::client_metadata::{
    AUTH_METHOD_CLIENT_SECRET_BASIC, AUTH_METHOD_NONE, Invalid, NewClient, check_new_client,
};
use crate::protocol::grant::GrantType;
use crate::service::Error;
use crate::state::AppState;
use crate::store::audit::{self, Event};
use crate::store::clients::{self as store, NewClientRow, decode_list};
use crate::store::entities::clients::Model as ClientRow;

/// A registered client, as the rest of Stepgate sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// `client_secret_basic` for a confidential client (`client_secret_post`
    /// is accepted too), `none` for a public one.
    pub token_endpoint_auth_method: String,
    pub require_mfa: bool,
    pub first_party: bool,
    /// A resource server: may introspect access tokens issued to any
    /// client, and API keys (RFC 7662 §4; `protocol::introspect`). Set at
    /// registration only, so a cached client (`ClientCache`) never carries
    /// a stale value of it.
    pub introspect: bool,
    pub created_at: i64,
}

impl Client {
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether the client is registered for `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.allows_grant(grant.as_str())
    }

    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Exact string comparison, with no normalization of any kind (RFC 9700
    /// §4.1.3; OIDC Core §3.1.2.1).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u == uri)
    }

    /// Exact string comparison, like `has_redirect_uri` (RP-Initiated
    /// Logout 1.0 §3).
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|u| u == uri)
    }

    fn from_row(row: ClientRow) -> Result<Self, sea_orm::DbErr> {
        Ok(Self {
            redirect_uris: decode_list("redirect_uris", &row.redirect_uris)?,
            post_logout_redirect_uris: decode_list(
                "post_logout_redirect_uris",
                &row.post_logout_redirect_uris,
            )?,
            grant_types: decode_list("grant_types", &row.grant_types)?,
            scopes: decode_list("scopes", &row.scopes)?,
            client_id: row.client_id,
            name: row.name,
            public: row.public,
            token_endpoint_auth_method: row.token_endpoint_auth_method,
            require_mfa: row.require_mfa,
            first_party: row.first_party,
            introspect: row.introspect,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A registration rule refused it (`protocol::client_metadata`).
    #[error(transparent)]
    Metadata(#[from] Invalid),
    /// The operation does not apply to this client (`reason` in plain
    /// words).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Account(#[from] Error),
}

impl From<sea_orm::DbErr> for ClientError {
    fn from(e: sea_orm::DbErr) -> Self {
        ClientError::Account(e.into())
    }
}

async fn audit(
    state: &AppState,
    kind: &str,
    client_id: &str,
    detail: Option<&str>,
) -> Result<(), Error> {
    audit::record(
        &state.appender,
        Event {
            kind,
            outcome: "success",
            user_id: None,
            client_id: Some(client_id),
            ip: None,
            detail,
        },
        state.now(),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- registry

/// Registers a client. The secret (for a confidential client) is returned
/// here once and never again: only its hash is kept.
pub async fn create(
    state: &AppState,
    new: NewClient,
) -> Result<(Client, Option<String>), ClientError> {
    let (public, require_mfa, first_party, introspect) =
        (new.public, new.require_mfa, new.first_party, new.introspect);
    let checked = check_new_client(new)?;
    let client_id = random_id();
    let secret = (!public).then(random_token);
    let secret_hash = secret.as_deref().map(sha256_hex);
    let row = store::insert(
        &state.db,
        NewClientRow {
            client_id: &client_id,
            name: &checked.name,
            secret_hash: secret_hash.as_deref(),
            public,
            redirect_uris: &checked.redirect_uris,
            post_logout_redirect_uris: &checked.post_logout_redirect_uris,
            grant_types: &checked.grant_types,
            scopes: &checked.scopes,
            token_endpoint_auth_method: if public {
                AUTH_METHOD_NONE
            } else {
                AUTH_METHOD_CLIENT_SECRET_BASIC
            },
            require_mfa,
            first_party,
            introspect,
        },
        state.now(),
    )
    .await?;
    let client = Client::from_row(row)?;
    let kind = if public { "public" } else { "confidential" };
    let detail = format!("{kind}: {}", client.name);
    audit(state, "client.created", &client.client_id, Some(&detail)).await?;
    tracing::info!(client_id = %client.client_id, public, "client registered");
    Ok((client, secret))
}

pub async fn find(state: &AppState, client_id: &str) -> Result<Option<Client>, Error> {
    match store::find_by_id(&state.db, client_id).await? {
        Some(row) => Ok(Some(Client::from_row(row)?)),
        None => Ok(None),
    }
}

/// Every client, oldest first.
pub async fn list(state: &AppState) -> Result<Vec<Client>, Error> {
    let rows = store::list(&state.db).await?;
    let clients = rows
        .into_iter()
        .map(Client::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(clients)
}

/// Deletes a client with its pending requests, codes, tokens and consents.
/// Whether there was such a client.
pub async fn delete(state: &AppState, client_id: &str) -> Result<bool, Error> {
    let deleted = store::delete(&state.db, client_id).await?;
    if deleted {
        audit(state, "client.deleted", client_id, None).await?;
        tracing::info!(%client_id, "client deleted");
    }
    Ok(deleted)
}

/// Gives a confidential client a new secret, returned once; the old one stops
/// working at once. `None` when there is no such client; a public client is
/// refused (it has no secret).
pub async fn rotate_secret(
    state: &AppState,
    client_id: &str,
) -> Result<Option<String>, ClientError> {
    let Some(row) = store::find_by_id(&state.db, client_id).await? else {
        return Ok(None);
    };
    if row.public {
        return Err(ClientError::Refused(format!(
            "client {client_id} is public: it has no secret to rotate"
        )));
    }
    let secret = random_token();
    if !store::set_secret_hash(&state.db, client_id, &sha256_hex(&secret), state.now()).await? {
        // Deleted in the meantime.
        return Ok(None);
    }
    audit(state, "client.secret_rotated", client_id, None).await?;
    tracing::info!(%client_id, "client secret rotated");
    Ok(Some(secret))
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1): a
/// confidential client must present its secret; a public client must present
/// none. Ok(None) = authentication failed (unknown client, wrong/missing
/// secret, or a secret from a public client), reported by the caller as
/// invalid_client.
/// A presented client secret against its stored SHA-256 hex, in constant
/// time. Both sides are SHA-256 hex, so the lengths match and say nothing.
/// Pure (no database), so the benchmarks measure exactly what the token
/// endpoint does per request.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    constant_time_eq(sha256_hex(secret).as_bytes(), stored_hash.as_bytes())
}

/// The client `client_id` if `secret` authenticates it (RFC 6749 §2.3.1):
/// a public client with no secret, a confidential one with its secret.
///
/// The row comes from `state.client_cache` while it is fresh. A secret that
/// does not match the cached hash is checked again against a fresh read, so
/// a rotated secret works at once; the cache only lets a replaced secret or
/// a deleted client live on for `oauth.client_cache_secs`.
pub async fn authenticate(
    state: &AppState,
    client_id: &str,
    secret: Option<&str>,
) -> Result<Option<Arc<Client>>, Error> {
    if let Some(cached) = state.client_cache.get(client_id)
        && cached.authenticates(secret)
    {
        return Ok(Some(cached.client.clone()));
    }
    let Some(row) = store::find_by_id(&state.db, client_id).await? else {
        state.client_cache.forget(client_id);
        return Ok(None);
    };
    let cached = CachedClient {
        secret_hash: row.secret_hash.clone(),
        client: Arc::new(Client::from_row(row)?),
    };
    let authenticated = cached.authenticates(secret);
    let client = cached.client.clone();
    state.client_cache.put(client_id, cached);
    Ok(authenticated.then_some(client))
}

/// A client as read for authentication, with its secret's hash.
struct CachedClient {
    secret_hash: Option<String>,
    client: Arc<Client>,
}

impl CachedClient {
    fn authenticates(&self, secret: Option<&str>) -> bool {
        match (self.client.public, secret, self.secret_hash.as_deref()) {
            (true, None, _) => true,
            (false, Some(secret), Some(hash)) => secret_matches(secret, hash),
            _ => false,
        }
    }
}

/// Clients read for client authentication, kept `oauth.client_cache_secs`
/// (PRODUCT.md: a node's state is only caches that may be lost). Only
/// clients that exist are kept, so unknown ids cannot grow it; it is bounded
/// anyway and starts over when full.
pub struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<CachedClient>)>>,
}

impl ClientCache {
    const MAX_ENTRIES: usize = 10_000;

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<CachedClient>)>> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters: every entry is replaced whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, client_id: &str) -> Option<Arc<CachedClient>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.lock();
        let (read_at, cached) = entries.get(client_id)?;
        (read_at.elapsed() < self.ttl).then(|| cached.clone())
    }

    fn put(&self, client_id: &str, cached: CachedClient) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(client_id) {
            entries.clear();
        }
        entries.insert(client_id.to_owned(), (Instant::now(), Arc::new(cached)));
    }

    fn forget(&self, client_id: &str) {
        self.lock().remove(client_id);
    }
}

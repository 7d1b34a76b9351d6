//! The client registry: relying parties an operator registers (`stepgate
//! client …`), and client authentication at the token endpoint.
//!
//! A confidential client gets a 256-bit secret, shown once and stored only as
//! its SHA-256: the secret is generated here with full entropy, so a fast hash
//! compared in constant time is enough (docs/security.md, "What is stored"); argon2 is
//! for what people choose. A public client (a native or browser app) has no
//! secret and authenticates with `none`, so PKCE is what protects its codes.

use std::sync::Arc;

use crate::crypto::{constant_time_eq, random_id, random_token, sha256_hex};
use crate::protocol::client_metadata::{
    AUTH_METHOD_CLIENT_SECRET_BASIC, AUTH_METHOD_NONE, Client, Invalid, NewClient, check_new_client,
};

use crate::service::Error;
use crate::state::AppState;
use crate::store::audit::{self, AuditEvent, Kind, Outcome as AuditOutcome};
use crate::store::client_cache::CachedClient;
use crate::store::clients::{self as store, NewClientRow};

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
    kind: Kind,
    client_id: &str,
    detail: Option<&str>,
) -> Result<(), Error> {
    audit::record(
        &state.store.appender,
        AuditEvent {
            kind,
            outcome: AuditOutcome::Success,
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
        &state.store.db,
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
    let client = store::decode(row)?;
    let kind = if public { "public" } else { "confidential" };
    let detail = format!("{kind}: {}", client.name);
    audit(state, Kind::ClientCreated, &client.client_id, Some(&detail)).await?;
    tracing::info!(client_id = %client.client_id, public, "client registered");
    Ok((client, secret))
}

pub async fn find(state: &AppState, client_id: &str) -> Result<Option<Client>, Error> {
    match store::find_by_id(&state.store.db, client_id).await? {
        Some(row) => Ok(Some(store::decode(row)?)),
        None => Ok(None),
    }
}

/// Every client, oldest first.
pub async fn list(state: &AppState) -> Result<Vec<Client>, Error> {
    let rows = store::list(&state.store.db).await?;
    let clients = rows
        .into_iter()
        .map(store::decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(clients)
}

/// Deletes a client with its pending requests, codes, tokens and consents.
/// Whether there was such a client.
pub async fn delete(state: &AppState, client_id: &str) -> Result<bool, Error> {
    let deleted = store::delete(&state.store.db, client_id).await?;
    if deleted {
        audit(state, Kind::ClientDeleted, client_id, None).await?;
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
    let Some(row) = store::find_by_id(&state.store.db, client_id).await? else {
        return Ok(None);
    };
    if row.public {
        return Err(ClientError::Refused(format!(
            "client {client_id} is public: it has no secret to rotate"
        )));
    }
    let secret = random_token();
    if !store::set_secret_hash(
        &state.store.db,
        client_id,
        &sha256_hex(&secret),
        state.now(),
    )
    .await?
    {
        // Deleted in the meantime.
        return Ok(None);
    }
    audit(state, Kind::ClientSecretRotated, client_id, None).await?;
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
/// The row comes from `state.store.clients` while it is fresh. A secret that
/// does not match the cached hash is checked again against a fresh read, so
/// a rotated secret works at once; the cache only lets a replaced secret or
/// a deleted client live on for `oauth.client_cache_secs`.
pub async fn authenticate(
    state: &AppState,
    client_id: &str,
    secret: Option<&str>,
) -> Result<Option<Arc<Client>>, Error> {
    if let Some(cached) = state.store.clients.get(client_id)
        && authenticates(&cached, secret)
    {
        return Ok(Some(cached.client.clone()));
    }
    let Some(row) = store::find_by_id(&state.store.db, client_id).await? else {
        state.store.clients.forget(client_id);
        return Ok(None);
    };
    let cached = CachedClient {
        secret_hash: row.secret_hash.clone(),
        client: Arc::new(store::decode(row)?),
    };
    let authenticated = authenticates(&cached, secret);
    let client = cached.client.clone();
    state.store.clients.put(client_id, cached);
    Ok(authenticated.then_some(client))
}

/// Whether `secret` authenticates the client as read (RFC 6749 §2.3.1): a
/// public client presents none, a confidential one its own.
fn authenticates(cached: &CachedClient, secret: Option<&str>) -> bool {
    match (cached.client.public, secret, cached.secret_hash.as_deref()) {
        (true, None, _) => true,
        (false, Some(secret), Some(hash)) => secret_matches(secret, hash),
        _ => false,
    }
}

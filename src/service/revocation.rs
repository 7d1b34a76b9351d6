//! Token revocation (RFC 7009), behind client authentication.

use crate::crypto::sha256_hex;
use crate::protocol::client_metadata::Client;
use crate::service::Error;
use crate::service::token::{access_token_jti, audit_event};
use crate::state::AppState;
use crate::store::audit::{Kind, Outcome as AuditOutcome};
use crate::store::{access_tokens, refresh_tokens};

/// RFC 7009 §2.1: revokes an access token (by its `jti`) or a refresh token
/// (and its family) that belongs to `client`. Unknown tokens, and tokens of
/// other clients, change nothing and answer the same: no oracle for which
/// tokens exist. The hint only orders the lookups.
pub async fn revoke(
    state: &AppState,
    client: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<(), Error> {
    if hint == Some("refresh_token") {
        if !revoke_refresh(state, client, token).await? {
            revoke_access(state, client, token).await?;
        }
    } else if !revoke_access(state, client, token).await? {
        revoke_refresh(state, client, token).await?;
    }
    Ok(())
}

/// Revokes a refresh token's family if the token is `client`'s.
async fn revoke_refresh(state: &AppState, client: &Client, token: &str) -> Result<bool, Error> {
    let Some(row) = refresh_tokens::find(&state.store.db, &sha256_hex(token)).await? else {
        return Ok(false);
    };
    if row.client_id != client.client_id {
        return Ok(false);
    }
    refresh_tokens::revoke_family(&state.store.db, &row.family_id, state.now()).await?;
    audit_event(
        state,
        Kind::TokenRevoked,
        AuditOutcome::Success,
        Some(&row.user_id),
        &client.client_id,
        Some("refresh_token"),
    )
    .await?;
    Ok(true)
}

/// Revokes an access token if it is `client`'s.
async fn revoke_access(state: &AppState, client: &Client, token: &str) -> Result<bool, Error> {
    let Some(jti) = access_token_jti(state, token) else {
        return Ok(false);
    };
    if !access_tokens::revoke(&state.store.db, &jti, &client.client_id, state.now()).await? {
        return Ok(false);
    }
    audit_event(
        state,
        Kind::TokenRevoked,
        AuditOutcome::Success,
        None,
        &client.client_id,
        Some("access_token"),
    )
    .await?;
    Ok(true)
}

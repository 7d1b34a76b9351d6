//! The `refresh_token` grant (RFC 6749 §6) with rotation: every use returns
//! a new refresh token and kills the old one; presenting a dead one revokes
//! its whole family (RFC 9700 §4.14.2). The service loads the token with
//! its user and consent (one query), `protocol::token::check_refresh`
//! decides, and the old token is retired in the transaction that writes
//! the new ones.

use super::{Grant, Outcome, RefreshPlan, audit_event, audit_row, mint};
use crate::crypto::sha256_hex;
use crate::protocol::client_metadata::Client;
use crate::protocol::error::OAuthError;
use crate::protocol::grant::GrantType;
use crate::protocol::scope::Scopes;
use crate::protocol::token::{
    Presented, REFRESH_NOT_VALID, RefreshFacts, Rejection, Subject, check_refresh,
};
use crate::service::second_factor;
use crate::state::AppState;
use crate::store::audit::{Kind, Outcome as AuditOutcome};
use crate::store::entities::refresh_tokens::Model as RefreshToken;
use crate::store::refresh_tokens;

/// Refreshes with `token`, for `scope` when the client narrows it.
pub async fn refresh(
    state: &AppState,
    client: &Client,
    token: &str,
    scope: Option<&str>,
) -> Outcome {
    let now = state.now();
    let hash = sha256_hex(token);
    let Some((row, user, consent)) = refresh_tokens::find_with_grant(&state.store, &hash).await?
    else {
        return Err(OAuthError::invalid_grant(REFRESH_NOT_VALID).into());
    };
    let amr: Vec<String> = row.amr.split(' ').map(str::to_owned).collect();
    let stands = match &user {
        Some(user) => {
            let at = row.auth_time.max(row.issued_at);
            second_factor::grant_still_stands(state, &user.id, &amr, at).await?
        }
        None => true,
    };
    let granted = Scopes::parse(&row.scope);
    let consented = consent.map(|c| Scopes::parse(&c.scope));
    let facts = RefreshFacts {
        client_id: &row.client_id,
        revoked: row.revoked_at.is_some(),
        used: row.used_at.is_some(),
        idle_expires_at: row.idle_expires_at,
        family_expires_at: row.family_expires_at,
        subject: Subject::of(user.as_ref().map(|u| u.disabled)),
        granted: &granted,
        first_party: client.first_party,
        consented: consented.as_ref(),
        second_factor_stands: stands,
    };
    let scope = match check_refresh(&facts, &client.client_id, scope, now) {
        Ok(scope) => scope,
        Err(Rejection::Refuse(e)) => return Err(e.into()),
        Err(Rejection::Replayed) => return reuse_detected(state, client, &row).await,
    };
    // check_refresh refused a token whose user is gone; this only unwraps.
    let Some(user) = user else {
        return Err(OAuthError::invalid_grant(REFRESH_NOT_VALID).into());
    };
    let grant = Grant {
        user: &user,
        scope,
        auth_time: row.auth_time,
        acr: row.acr.clone(),
        amr,
        sid: row.sid.clone(),
        nonce: None,
        code_hash: row.code_hash.clone(),
    };
    // The new refresh token keeps the family's scope, whatever the access
    // token was narrowed to.
    let plan = client.allows(GrantType::RefreshToken).then(|| RefreshPlan {
        family_id: row.family_id.clone(),
        family_expires_at: row.family_expires_at,
        scope: granted,
    });
    let (response, mut rows) = mint(state, client, &grant, plan)?;
    rows.push(audit_row(
        state,
        Kind::TokenRefreshed,
        AuditOutcome::Success,
        Some(&user.id),
        &client.client_id,
        None,
    ));
    // The presented token is retired in the transaction that writes the
    // new ones (`append::Claim`). Whoever then finds it retired (a
    // concurrent or later use: reuse, RFC 9700 §4.14.2) revokes the family
    // with the new tokens in it; there is no moment at which one exists
    // without the other.
    if !state
        .store
        .appender
        .add_claimed(refresh_tokens::rotation(&hash, now), rows)
        .await?
    {
        // Another request used it first: that is reuse too. Nothing of this
        // request was written; the family, the winner's tokens included,
        // is revoked.
        let row = refresh_tokens::find(&state.store.db, &hash)
            .await?
            .unwrap_or(row);
        return reuse_detected(state, client, &row).await;
    }
    Ok(response)
}

async fn reuse_detected(state: &AppState, client: &Client, row: &RefreshToken) -> Outcome {
    refresh_tokens::revoke_family(&state.store.db, &row.family_id, state.now()).await?;
    tracing::warn!(client_id = %client.client_id, "refresh token reuse: family revoked");
    audit_event(
        state,
        Kind::RefreshReuseDetected,
        AuditOutcome::Revoked,
        Some(&row.user_id),
        &client.client_id,
        Some("a rotated refresh token was presented; its family is revoked"),
    )
    .await?;
    Err(Rejection::replayed_error(Presented::RefreshToken).into())
}

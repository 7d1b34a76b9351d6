//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6): the
//! service loads the code and its user, `protocol::token::check_code`
//! decides, and the code is spent in the transaction that writes the
//! tokens.

use super::{Grant, Outcome, RefreshPlan, audit_event, audit_row, mint};
use crate::crypto::{random_token, sha256_hex};
use crate::protocol::client_metadata::Client;
use crate::protocol::error::OAuthError;
use crate::protocol::grant::GrantType;
use crate::protocol::scope::Scopes;
use crate::protocol::token::{
    CODE_NOT_VALID, CodeFacts, CodeRedemption, Presented, Rejection, Subject, check_code,
};
use crate::service::Error;
use crate::state::AppState;
use crate::store::audit::{Kind, Outcome as AuditOutcome};
use crate::store::{access_tokens, authorization_codes, refresh_tokens, users};

/// What the client sent at `/token` with `grant_type=authorization_code`.
pub struct Request<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// Redeems a code for tokens.
pub async fn redeem(state: &AppState, client: &Client, sent: Request<'_>) -> Outcome {
    let now = state.now();
    let code_hash = sha256_hex(sent.code);
    let Some(row) = authorization_codes::find(&state.store.db, &code_hash).await? else {
        return Err(OAuthError::invalid_grant(CODE_NOT_VALID).into());
    };
    let user = users::find_by_id(&state.store.db, &row.user_id).await?;
    let facts = CodeFacts {
        client_id: &row.client_id,
        redirect_uri: &row.redirect_uri,
        used: row.used_at.is_some(),
        expires_at: row.expires_at,
        code_challenge: row.code_challenge.as_deref(),
        subject: Subject::of(user.as_ref().map(|u| u.disabled)),
    };
    let redemption = CodeRedemption {
        client_id: &client.client_id,
        redirect_uri: sent.redirect_uri,
        code_verifier: sent.code_verifier,
    };
    match check_code(&facts, &redemption, now) {
        Ok(()) => {}
        Err(Rejection::Refuse(e)) => return Err(e.into()),
        Err(Rejection::Replayed) => {
            return replayed(state, client, &code_hash, &row.user_id).await;
        }
    }
    // check_code refused a code whose user is gone; this only unwraps.
    let Some(user) = user else {
        return Err(OAuthError::invalid_grant(CODE_NOT_VALID).into());
    };
    let grant = Grant {
        user: &user,
        scope: Scopes::parse(&row.scope),
        auth_time: row.auth_time,
        acr: row.acr.clone(),
        amr: row.amr.split(' ').map(str::to_owned).collect(),
        sid: row.sid.clone(),
        nonce: row.nonce.clone(),
        code_hash: Some(code_hash.clone()),
    };
    // OIDC Core §11: a refresh token only for offline_access the user
    // granted, to a client allowed the grant; it starts a new family.
    let refresh = (grant.scope.contains("offline_access")
        && client.allows(GrantType::RefreshToken))
    .then(|| RefreshPlan {
        family_id: random_token(),
        family_expires_at: now
            .saturating_add(state.settings.oauth.refresh_token_absolute_secs as i64),
        scope: grant.scope.clone(),
    });
    let (response, mut rows) = mint(state, client, &grant, refresh)?;
    rows.push(audit_row(
        state,
        Kind::TokenIssued,
        AuditOutcome::Success,
        Some(&user.id),
        &client.client_id,
        Some("authorization_code"),
    ));
    // The code is marked used in the transaction that writes the tokens
    // (`append::Claim`), so whoever finds it used (a replay, RFC 6749
    // §4.1.2) finds the tokens too, and revokes them by the code's hash.
    let spend = authorization_codes::redemption(&code_hash, now);
    if !state.store.appender.add_claimed(spend, rows).await? {
        // Lost a race with another redemption of the same code: nothing of
        // this request was written; what the other one bought is revoked,
        // as for any replay.
        return replayed(state, client, &code_hash, &user.id).await;
    }
    Ok(response)
}

/// RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
async fn replayed(state: &AppState, client: &Client, code_hash: &str, user_id: &str) -> Outcome {
    revoke_what_it_bought(state, code_hash).await?;
    audit_event(
        state,
        Kind::CodeReplayed,
        AuditOutcome::Revoked,
        Some(user_id),
        &client.client_id,
        None,
    )
    .await?;
    Err(Rejection::replayed_error(Presented::Code).into())
}

/// Revokes a code's access tokens and refresh families.
async fn revoke_what_it_bought(state: &AppState, code_hash: &str) -> Result<(), Error> {
    let now = state.now();
    access_tokens::revoke_for_code(&state.store.db, code_hash, now).await?;
    for family in refresh_tokens::families_for_code(&state.store.db, code_hash).await? {
        refresh_tokens::revoke_family(&state.store.db, &family, now).await?;
    }
    Ok(())
}

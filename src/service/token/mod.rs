//! The grants of the token endpoint, behind client authentication (RFC 6749
//! §3.2): one file per grant (`authorization_code`, `refresh_token`,
//! `client_credentials`), and here what they share: the token response and
//! minting (RFC 9068 access tokens, ID tokens, refresh-token rows), and the
//! audit rows written with them. A new grant is a new file here and a
//! variant of `protocol::grant::GrantType`. Their rules are pure checks in
//! `protocol::token`; revocation and introspection are services of their
//! own (`service::revocation`, `service::introspection`).

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use std::sync::Arc;

use crate::crypto::{random_token, sha256_hex};
use crate::keys::SigningKey;
use crate::protocol::client_metadata::Client;
use crate::protocol::jwt::{self, AccessTokenClaims, IdTokenClaims};
use crate::protocol::scope::Scopes;
use crate::service::Error;
use crate::service::error::Refused;
use crate::service::oidc::decode_ours_any_age;
use crate::state::AppState;
use crate::store::append::Row;
use crate::store::audit::{self, AuditEvent, Kind, Outcome as AuditOutcome};
use crate::store::entities::refresh_tokens::Model as RefreshToken;
use crate::store::entities::users::Model as User;
use crate::store::{access_tokens, refresh_tokens};

/// A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// What a grant answers: tokens, or why not.
pub type Outcome = Result<TokenResponse, Refused>;

/// What a user's tokens are minted from: one authentication and its grant.
struct Grant<'a> {
    user: &'a User,
    scope: Scopes,
    auth_time: i64,
    acr: String,
    amr: Vec<String>,
    sid: String,
    nonce: Option<String>,
    code_hash: Option<String>,
}

pub(crate) async fn audit_event(
    state: &AppState,
    kind: Kind,
    outcome: AuditOutcome,
    user_id: Option<&str>,
    client_id: &str,
    detail: Option<&str>,
) -> Result<(), Error> {
    let event = audit_row(state, kind, outcome, user_id, client_id, detail);
    state.store.appender.add(vec![event]).await?;
    Ok(())
}

fn audit_row(
    state: &AppState,
    kind: Kind,
    outcome: AuditOutcome,
    user_id: Option<&str>,
    client_id: &str,
    detail: Option<&str>,
) -> Row {
    audit::row(
        AuditEvent {
            kind,
            outcome,
            user_id,
            client_id: Some(client_id),
            ip: None,
            detail,
        },
        state.now(),
    )
}

/// Commits a response's token rows with its audit event, together (one
/// group commit: `store::append`), before the response is sent.
async fn record_issue(state: &AppState, mut rows: Vec<Row>, event: Row) -> Result<(), Error> {
    rows.push(event);
    state.store.appender.add(rows).await?;
    Ok(())
}

/// Who and what an access token is for.
struct AccessGrant<'a> {
    sub: &'a str,
    user_id: Option<&'a str>,
    scope: &'a Scopes,
    /// `auth_time`, `acr`, `amr` of the user's authentication.
    assurance: Option<(i64, &'a str, &'a [String])>,
    code_hash: Option<&'a str>,
    family_id: Option<&'a str>,
}

/// An RFC 9068 access token, and the row that records it so that it can be
/// revoked (for the caller to commit before answering).
fn access_token(
    state: &AppState,
    client: &Client,
    grant: AccessGrant<'_>,
) -> Result<(String, u64, Row), Error> {
    let AccessGrant {
        sub,
        user_id,
        scope,
        assurance,
        code_hash,
        family_id,
    } = grant;
    let now = state.now();
    let ttl = state.settings.oauth.access_token_ttl_secs;
    let jti = random_token();
    let key = signer(state)?;
    let claims = AccessTokenClaims {
        iss: state.settings.issuer.clone(),
        sub: sub.to_owned(),
        aud: state.settings.issuer.clone(),
        client_id: client.client_id.clone(),
        exp: now + ttl as i64,
        iat: now,
        jti: jti.clone(),
        scope: scope.to_wire(),
        auth_time: assurance.map(|a| a.0),
        acr: assurance.map(|a| a.1.to_owned()),
        amr: assurance.map(|a| a.2.to_vec()),
    };
    let token = jwt::encode_rs256(&key.kid, jwt::TYP_ACCESS_TOKEN, &claims, |m| {
        key.sign_rs256(m)
    });
    let row = access_tokens::row(access_tokens::NewAccessToken {
        jti: &jti,
        client_id: &client.client_id,
        user_id,
        scope: &scope.to_wire(),
        code_hash,
        issued_at: now,
        expires_at: now + ttl as i64,
        family_id,
    });
    Ok((token, ttl, row))
}

/// The key that signs now. None only when no key is active, which the
/// start and `keys retire` prevent, or when it does not open here.
fn signer(state: &AppState) -> Result<Arc<SigningKey>, Error> {
    state
        .keys
        .signer(state.now_ms())
        .ok_or_else(|| Error::Internal("no active signing key: see `stepgate keys list`".into()))
}

/// Where a refresh token goes: its family, when that family ends, and the
/// scope it carries (a refreshed access token may be narrower).
struct RefreshPlan {
    family_id: String,
    family_expires_at: i64,
    scope: Scopes,
}

/// Access token, ID token (with `openid`) and, per `refresh`, a refresh
/// token; with the rows that record them, for the caller to commit before
/// answering.
fn mint(
    state: &AppState,
    client: &Client,
    grant: &Grant<'_>,
    refresh: Option<RefreshPlan>,
) -> Result<(TokenResponse, Vec<Row>), Error> {
    let now = state.now();
    let (access, ttl, access_row) = access_token(
        state,
        client,
        AccessGrant {
            sub: &grant.user.id,
            user_id: Some(&grant.user.id),
            scope: &grant.scope,
            assurance: Some((grant.auth_time, &grant.acr, &grant.amr)),
            code_hash: grant.code_hash.as_deref(),
            family_id: refresh.as_ref().map(|r| r.family_id.as_str()),
        },
    )?;
    let mut rows = vec![access_row];

    let refresh_token = match refresh {
        Some(plan) => {
            let token = random_token();
            rows.push(refresh_tokens::row(RefreshToken {
                token_hash: sha256_hex(&token),
                family_id: plan.family_id,
                client_id: client.client_id.clone(),
                user_id: grant.user.id.clone(),
                scope: plan.scope.to_wire(),
                sid: grant.sid.clone(),
                auth_time: grant.auth_time,
                acr: grant.acr.clone(),
                amr: grant.amr.join(" "),
                code_hash: grant.code_hash.clone(),
                issued_at: now,
                idle_expires_at: now
                    .saturating_add(state.settings.oauth.refresh_token_idle_secs as i64)
                    .min(plan.family_expires_at),
                family_expires_at: plan.family_expires_at,
                used_at: None,
                revoked_at: None,
            }));
            Some(token)
        }
        None => None,
    };

    let key = signer(state)?;
    let id_token = grant.scope.contains("openid").then(|| {
        let user = grant.user;
        let claims = IdTokenClaims {
            iss: state.settings.issuer.clone(),
            sub: user.id.clone(),
            aud: client.client_id.clone(),
            exp: now + state.settings.oauth.id_token_ttl_secs as i64,
            iat: now,
            auth_time: grant.auth_time,
            nonce: grant.nonce.clone(),
            acr: grant.acr.clone(),
            amr: grant.amr.clone(),
            at_hash: jwt::at_hash(&access),
            sid: grant.sid.clone(),
            name: grant.scope.contains("profile").then(|| user.name.clone()),
            email: grant.scope.contains("email").then(|| user.email.clone()),
            email_verified: grant.scope.contains("email").then_some(user.email_verified),
        };
        jwt::encode_rs256(&key.kid, jwt::TYP_ID_TOKEN, &claims, |m| key.sign_rs256(m))
    });

    let response = TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: ttl,
        scope: grant.scope.to_wire(),
        refresh_token,
        id_token,
    };
    Ok((response, rows))
}

/// The `jti` of an access token we signed (expired ones included: revoking
/// an expired token is harmless, and introspection refuses it by its row).
pub(crate) fn access_token_jti(state: &AppState, token: &str) -> Option<String> {
    decode_ours_any_age::<AccessTokenClaims>(state, token, jwt::TYP_ACCESS_TOKEN).map(|c| c.jti)
}

//! What the token endpoint family does, behind client authentication: the
//! `authorization_code`, `refresh_token` and `client_credentials` grants
//! (RFC 6749 §4.1.3, §6, §4.4), revocation (RFC 7009) and introspection
//! (RFC 7662).

use serde_json::{Value, json};

use crate::crypto::{random_token, sha256_hex};
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::protocol::grant::GrantType;
use crate::protocol::introspect::{Caller, Presented, may_introspect};
use crate::protocol::jwt::{self, AccessTokenClaims, IdTokenClaims};
use crate::protocol::pkce;
use crate::protocol::scope::Scopes;
use crate::service::accounts::AccountError;
use crate::service::api_keys;
use crate::service::clients::Client;
use crate::service::oidc::{PresentedAccessToken, presented_access_token, public_key};
use crate::service::second_factor;
use crate::state::AppState;
use crate::store::append::Row;
use crate::store::audit::{self, Event};
use crate::store::entities::refresh_tokens::Model as RefreshToken;
use crate::store::entities::users::Model as User;
use crate::store::{access_tokens, authorization_codes, refresh_tokens, users};

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

type Outcome = Result<Result<TokenResponse, OAuthError>, AccountError>;

fn invalid_grant(description: &str) -> Outcome {
    Ok(Err(OAuthError::invalid_grant(description)))
}

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

async fn audit_event(
    state: &AppState,
    kind: &str,
    outcome: &str,
    user_id: Option<&str>,
    client_id: &str,
    detail: Option<&str>,
) -> Result<(), AccountError> {
    let event = audit_row(state, kind, outcome, user_id, client_id, detail);
    state.appender.add(vec![event]).await?;
    Ok(())
}

fn audit_row(
    state: &AppState,
    kind: &str,
    outcome: &str,
    user_id: Option<&str>,
    client_id: &str,
    detail: Option<&str>,
) -> Row {
    audit::row(
        Event {
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
async fn record_issue(
    state: &AppState,
    mut rows: Vec<Row>,
    event: Row,
) -> Result<(), AccountError> {
    rows.push(event);
    state.appender.add(rows).await?;
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
fn access_token(state: &AppState, client: &Client, grant: AccessGrant<'_>) -> (String, u64, Row) {
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
    let key = state.keys.active();
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
    (token, ttl, row)
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
) -> (TokenResponse, Vec<Row>) {
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
    );
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

    let id_token = grant.scope.contains("openid").then(|| {
        let key = state.keys.active();
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
    (response, rows)
}

/// Revokes what a code bought: its access tokens and refresh families.
async fn revoke_code(state: &AppState, code_hash: &str) -> Result<(), AccountError> {
    let now = state.now();
    access_tokens::revoke_for_code(&state.db, code_hash, now).await?;
    for family in refresh_tokens::families_for_code(&state.db, code_hash).await? {
        refresh_tokens::revoke_family(&state.db, &family, now).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- authorization_code

/// What any client but the code's own hears about a code, known or not.
const CODE_NOT_VALID: &str = "the code is not valid";

/// RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
async fn code_replayed(
    state: &AppState,
    client: &Client,
    code_hash: &str,
    user_id: &str,
) -> Outcome {
    revoke_code(state, code_hash).await?;
    audit_event(
        state,
        "code.replayed",
        "revoked",
        Some(user_id),
        &client.client_id,
        None,
    )
    .await?;
    invalid_grant("the code was already used")
}

/// The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
pub async fn redeem_code(
    state: &AppState,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Outcome {
    let now = state.now();
    let code_hash = sha256_hex(code);
    let Some(row) = authorization_codes::find(&state.db, &code_hash).await? else {
        return invalid_grant(CODE_NOT_VALID);
    };
    // RFC 6749 §4.1.3: the code must have been issued to the authenticated
    // client, and redirect_uri must be the authorization request's. Both
    // are checked before anything else about the code: to any other client
    // it is an unknown code (the same words), so a foreign client learns
    // nothing (used, expired) and cannot set off the replay revocation
    // below against the client that owns the code.
    if row.client_id != client.client_id {
        return invalid_grant(CODE_NOT_VALID);
    }
    if redirect_uri != Some(row.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    // RFC 6749 §4.1.2, RFC 9700 §4.5: the code's own client presenting it
    // again revokes what it bought (one of the two redemptions was not the
    // client's).
    if row.used_at.is_some() {
        return code_replayed(state, client, &code_hash, &row.user_id).await;
    }
    if row.expires_at <= now {
        return invalid_grant("the code has expired");
    }
    match (&row.code_challenge, code_verifier) {
        (Some(challenge), Some(verifier)) => {
            if let Err(e) = pkce::check_code_verifier(verifier) {
                return Ok(Err(e));
            }
            if !pkce::verify_s256(verifier, challenge) {
                return invalid_grant("code_verifier does not match the code_challenge");
            }
        }
        (Some(_), None) => return invalid_grant("code_verifier is required"),
        // RFC 9700 §2.1.1: a verifier without a challenge is refused, so a
        // PKCE downgrade cannot pass unnoticed.
        (None, Some(_)) => return invalid_grant("code_verifier sent but no code_challenge was"),
        (None, None) => {}
    }
    let Some(user) = users::find_by_id(&state.db, &row.user_id).await? else {
        return invalid_grant("the user no longer exists");
    };
    if user.disabled {
        return invalid_grant("the user is disabled");
    }
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
    let (response, mut rows) = mint(state, client, &grant, refresh);
    rows.push(audit_row(
        state,
        "token.issued",
        "success",
        Some(&user.id),
        &client.client_id,
        Some("authorization_code"),
    ));
    // The code is marked used in the transaction that writes the tokens
    // (`append::Claim`), so whoever finds it used (a replay, RFC 6749
    // §4.1.2) finds the tokens too, and revokes them by the code's hash.
    let redemption = authorization_codes::redemption(&code_hash, now);
    if !state.appender.add_claimed(redemption, rows).await? {
        // Lost a race with another redemption of the same code: nothing of
        // this request was written; what the other one bought is revoked,
        // as for any replay.
        return code_replayed(state, client, &code_hash, &user.id).await;
    }
    Ok(Ok(response))
}

// ---------------------------------------------------------------- refresh_token

/// The `refresh_token` grant (RFC 6749 §6) with rotation: every use returns
/// a new refresh token and kills the old one; presenting a dead one revokes
/// its whole family (RFC 9700 §4.14.2).
pub async fn refresh(
    state: &AppState,
    client: &Client,
    token: &str,
    scope: Option<&str>,
) -> Outcome {
    let now = state.now();
    let hash = sha256_hex(token);
    let Some((row, user, consent)) =
        refresh_tokens::find_with_grant(&state.db, state.local_reader.as_ref(), &hash).await?
    else {
        return invalid_grant("the refresh token is not valid");
    };
    if row.client_id != client.client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    if row.revoked_at.is_some() {
        return invalid_grant("the refresh token was revoked");
    }
    if row.used_at.is_some() {
        return reuse_detected(state, client, &row).await;
    }
    if row.idle_expires_at <= now || row.family_expires_at <= now {
        return invalid_grant("the refresh token has expired");
    }
    let Some(user) = user else {
        return invalid_grant("the user no longer exists");
    };
    if user.disabled {
        return invalid_grant("the user is disabled");
    }
    let granted = Scopes::parse(&row.scope);
    if !client.first_party && !consent.is_some_and(|c| granted.is_subset(&Scopes::parse(&c.scope)))
    {
        return invalid_grant("the user withdrew consent");
    }
    // A grant that rests on a second factor ends when that factor is reset.
    let amr: Vec<String> = row.amr.split(' ').map(str::to_owned).collect();
    let at = row.auth_time.max(row.issued_at);
    if !second_factor::grant_still_stands(state, &user.id, &amr, at).await? {
        return invalid_grant("two-factor authentication was reset");
    }
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let scope = match scope {
        None => granted.clone(),
        Some(asked) => {
            let asked = Scopes::parse(asked);
            if !asked.is_subset(&granted) {
                return Ok(Err(OAuthError::invalid_scope(
                    "the requested scope exceeds what was granted",
                )));
            }
            asked
        }
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
    let (response, mut rows) = mint(state, client, &grant, plan);
    rows.push(audit_row(
        state,
        "token.refreshed",
        "success",
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
        .appender
        .add_claimed(refresh_tokens::rotation(&hash, now), rows)
        .await?
    {
        // Another request used it first: that is reuse too. Nothing of this
        // request was written; the family, the winner's tokens included,
        // is revoked.
        let row = refresh_tokens::find(&state.db, &hash).await?.unwrap_or(row);
        return reuse_detected(state, client, &row).await;
    }
    Ok(Ok(response))
}

async fn reuse_detected(state: &AppState, client: &Client, row: &RefreshToken) -> Outcome {
    refresh_tokens::revoke_family(&state.db, &row.family_id, state.now()).await?;
    tracing::warn!(client_id = %client.client_id, "refresh token reuse: family revoked");
    audit_event(
        state,
        "refresh.reuse_detected",
        "revoked",
        Some(&row.user_id),
        &client.client_id,
        Some("a rotated refresh token was presented; its family is revoked"),
    )
    .await?;
    invalid_grant("the refresh token was already used")
}

// ---------------------------------------------------------------- client_credentials

/// The `client_credentials` grant (RFC 6749 §4.4): a token for the client
/// itself; no ID token, no refresh token (§4.4.3).
pub async fn client_credentials(state: &AppState, client: &Client, scope: Option<&str>) -> Outcome {
    if client.public {
        return Ok(Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "public clients cannot use client_credentials",
        )));
    }
    // User scopes mean nothing for a client acting for itself.
    let usable: Vec<String> = client
        .scopes
        .iter()
        .filter(|s| !matches!(s.as_str(), "openid" | "offline_access"))
        .cloned()
        .collect();
    let scope = match scope {
        None => Scopes::parse(&usable.join(" ")),
        Some(asked) => {
            let asked = Scopes::parse(asked);
            let allowed = asked.intersect(&usable);
            if allowed != asked {
                return Ok(Err(OAuthError::invalid_scope(
                    "the requested scope is not allowed for this client",
                )));
            }
            allowed
        }
    };
    let (token, ttl, row) = access_token(
        state,
        client,
        AccessGrant {
            sub: &client.client_id,
            user_id: None,
            scope: &scope,
            assurance: None,
            code_hash: None,
            family_id: None,
        },
    );
    let event = audit_row(
        state,
        "token.issued",
        "success",
        None,
        &client.client_id,
        Some("client_credentials"),
    );
    record_issue(state, vec![row], event).await?;
    Ok(Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: scope.to_wire(),
        refresh_token: None,
        id_token: None,
    }))
}

// ---------------------------------------------------------------- revocation

/// RFC 7009 §2.1: revokes an access token (by its `jti`) or a refresh token
/// (and its family) that belongs to `client`. Unknown tokens, and tokens of
/// other clients, change nothing and answer the same: no oracle for which
/// tokens exist. The hint only orders the lookups.
pub async fn revoke(
    state: &AppState,
    client: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<(), AccountError> {
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
async fn revoke_refresh(
    state: &AppState,
    client: &Client,
    token: &str,
) -> Result<bool, AccountError> {
    let Some(row) = refresh_tokens::find(&state.db, &sha256_hex(token)).await? else {
        return Ok(false);
    };
    if row.client_id != client.client_id {
        return Ok(false);
    }
    refresh_tokens::revoke_family(&state.db, &row.family_id, state.now()).await?;
    audit_event(
        state,
        "token.revoked",
        "success",
        Some(&row.user_id),
        &client.client_id,
        Some("refresh_token"),
    )
    .await?;
    Ok(true)
}

/// Revokes an access token if it is `client`'s.
async fn revoke_access(
    state: &AppState,
    client: &Client,
    token: &str,
) -> Result<bool, AccountError> {
    let Some(jti) = access_token_jti(state, token) else {
        return Ok(false);
    };
    if !access_tokens::revoke(&state.db, &jti, &client.client_id, state.now()).await? {
        return Ok(false);
    }
    audit_event(
        state,
        "token.revoked",
        "success",
        None,
        &client.client_id,
        Some("access_token"),
    )
    .await?;
    Ok(true)
}

/// The `jti` of an access token we signed (expired ones included: revoking
/// an expired token is harmless).
fn access_token_jti(state: &AppState, token: &str) -> Option<String> {
    jwt::decode_rs256::<AccessTokenClaims, _>(
        token,
        Some(jwt::TYP_ACCESS_TOKEN),
        &state.settings.issuer,
        i64::MIN,
        |kid| public_key(state, kid),
    )
    .ok()
    .map(|c| c.jti)
}

// ---------------------------------------------------------------- introspection

/// RFC 7662 §2.2: what a token is, or `{"active": false}` when it is not
/// usable (unknown, expired, revoked, or its user disabled) or not for
/// `client` to know (§4: `protocol::introspect::may_introspect`; the same
/// answer, so a refusal does not tell that the token exists). Answers for
/// personal API keys too (`token_type: "api_key"`), so resource servers
/// validate them the same way.
pub async fn introspect(
    state: &AppState,
    client: &Client,
    token: &str,
) -> Result<Value, AccountError> {
    let now = state.now();
    let inactive = json!({ "active": false });
    let caller = Caller {
        client_id: &client.client_id,
        resource_server: client.introspect,
    };
    if api_keys::is_api_key(token) {
        // Decided before the key is looked up, so a refused caller neither
        // learns anything from timing nor marks the key as used.
        if !may_introspect(caller, Presented::ApiKey) {
            return Ok(inactive);
        }
        return Ok(match api_keys::verify(state, token).await? {
            Some((key, user)) => {
                let mut answer = json!({
                    "active": true,
                    "token_type": "api_key",
                    "sub": user.id,
                    "scope": key.scope,
                    "iat": key.created_at,
                    "iss": state.settings.issuer,
                });
                if let Some(exp) = key.expires_at {
                    answer["exp"] = exp.into();
                }
                answer
            }
            None => inactive,
        });
    }
    if !may_introspect(caller, Presented::AccessToken) {
        // An access token is known by its signature alone (expired ones
        // too), before any database read: to this caller it is inactive.
        // Anything else may still be the caller's own refresh token.
        if access_token_jti(state, token).is_some() {
            return Ok(inactive);
        }
    } else {
        match presented_access_token(state, token, now).await? {
            PresentedAccessToken::NotOurs => {}
            PresentedAccessToken::Dead => return Ok(inactive),
            PresentedAccessToken::Live { claims, row, user } => {
                // A user's token lives only while the user exists and is
                // enabled.
                if row.user_id.is_some() && user.is_none_or(|u| u.disabled) {
                    return Ok(inactive);
                }
                return Ok(json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": claims.scope,
                    "client_id": claims.client_id,
                    "sub": claims.sub,
                    "aud": claims.aud,
                    "iss": claims.iss,
                    "exp": claims.exp,
                    "iat": claims.iat,
                    "jti": claims.jti,
                }));
            }
        }
    }
    if let Some(row) = refresh_tokens::find(&state.db, &sha256_hex(token)).await? {
        let issued_to = Presented::RefreshToken {
            issued_to: &row.client_id,
        };
        if !may_introspect(caller, issued_to) {
            return Ok(inactive);
        }
        let live = row.used_at.is_none()
            && row.revoked_at.is_none()
            && row.idle_expires_at > now
            && row.family_expires_at > now
            && users::find_by_id(&state.db, &row.user_id)
                .await?
                .is_some_and(|u| !u.disabled);
        if !live {
            return Ok(inactive);
        }
        return Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": row.user_id,
            "aud": row.client_id,
            "iss": state.settings.issuer,
            "exp": row.idle_expires_at.min(row.family_expires_at),
            "iat": row.issued_at,
        }));
    }
    Ok(inactive)
}

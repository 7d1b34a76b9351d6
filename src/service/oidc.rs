//! The authorization pipeline (docs/integrate.md, section 3): a validated
//! request becomes an interaction, each step (login → second factor →
//! consent) is decided by `protocol::interaction::decide` from what
//! `decide` here loads, and the end is a single-use code; the token
//! endpoint turns that code into tokens.

use crate::crypto::{is_token_shaped, random_token, sha256_hex};
use crate::protocol::authorize::{AuthorizationRequest, RedirectError, ResponseMode};
use crate::protocol::client_metadata::Client;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::protocol::interaction::{self, Consent, Facts, SessionFacts};
use crate::protocol::jwt::{self, AccessTokenClaims};
use crate::protocol::scope::Scopes;
use crate::service::Error;
use crate::service::accounts::LiveSession;
use crate::service::api_keys;
use crate::service::error::Refused;
use crate::service::second_factor;
use crate::state::AppState;
use crate::store::clients as store_clients;
use crate::store::entities::access_tokens::Model as AccessToken;
use crate::store::entities::authorization_codes::Model as Code;
use crate::store::entities::interactions::Model as InteractionRow;
use crate::store::entities::sessions::Model as Session;
use crate::store::entities::users::Model as User;
use crate::store::{access_tokens, authorization_codes, consents, interactions, refresh_tokens};
use std::sync::Arc;

use crate::keys::SigningKey;

/// A stored authorization request and its raw id (the id travels in page
/// URLs; the database keeps its hash).
pub struct Interaction {
    pub id: String,
    pub row: InteractionRow,
    pub request: AuthorizationRequest,
    /// True while `/authorize` answers the request that created it: no
    /// sign-in or consent can have been given for it yet, whatever their
    /// timestamps (whole seconds) say.
    pub arriving: bool,
}

/// Stores a validated request; returns its id.
pub async fn start_interaction(
    state: &AppState,
    request: &AuthorizationRequest,
) -> Result<String, Error> {
    let id = random_token();
    let now = state.now();
    let json = serde_json::to_string(request).expect("requests serialize");
    interactions::create(
        &state.store.db,
        &sha256_hex(&id),
        &request.client_id,
        &json,
        now,
        now.saturating_add(state.settings.oauth.interaction_ttl_secs as i64),
    )
    .await?;
    Ok(id)
}

/// The live interaction with this id, if any. A value that is not shaped
/// like an id we issue (`random_token`) is no interaction, unlooked-up.
pub async fn find_interaction(state: &AppState, id: &str) -> Result<Option<Interaction>, Error> {
    if !is_token_shaped(id) {
        return Ok(None);
    }
    let Some(row) = interactions::find_live(&state.store.db, &sha256_hex(id), state.now()).await?
    else {
        return Ok(None);
    };
    let Ok(request) = serde_json::from_str::<AuthorizationRequest>(&row.request) else {
        return Ok(None);
    };
    Ok(Some(Interaction {
        id: id.to_owned(),
        row,
        request,
        arriving: false,
    }))
}

/// Where the pipeline goes next.
#[derive(Debug)]
pub enum Next {
    Login,
    SecondFactor,
    /// The user has no 2FA but this sign-in needs it: activate it in-flow.
    EnrollSecondFactor,
    /// phr is demanded: use a passkey.
    Passkey,
    /// phr is demanded and the user has no passkey: add one in-flow.
    EnrollPasskey,
    Consent,
    /// Done: redirect to the client with these parameters.
    Respond(AuthorizationResponse),
    /// Redirect to the client with an error (`prompt=none`, …).
    Fail(RedirectError),
}

#[derive(Debug)]
pub struct AuthorizationResponse {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    /// `code`, `state` (when sent) and `iss` (RFC 9207).
    pub params: Vec<(String, String)>,
}

fn fail(request: &AuthorizationRequest, code: OAuthErrorCode, description: &str) -> Next {
    Next::Fail(RedirectError {
        redirect_uri: request.redirect_uri.clone(),
        response_mode: request.response_mode,
        state: request.state.clone(),
        error: OAuthError::new(code, description),
    })
}

/// The interaction policy (OIDC Core §3.1.2.1–§3.1.2.6): loads the facts
/// `protocol::interaction::decide` needs, and applies its answer; at the
/// end the interaction is spent and a code issued.
pub async fn decide(
    state: &AppState,
    interaction: &Interaction,
    client: &Client,
    session: Option<&LiveSession>,
) -> Result<Next, Error> {
    let request = &interaction.request;
    let now = state.now();
    let consented;
    let session_facts = match session {
        None => None,
        Some(LiveSession { session, user }) => {
            let hint_matches = request
                .id_token_hint
                .as_deref()
                .map(|hint| hint_subject(state, hint).as_deref() == Some(user.id.as_str()));
            let owed = second_factor::owed(state, session, client.require_mfa, &request.acr_values)
                .await?;
            let remembered = if client.first_party {
                None
            } else {
                consents::get(&state.store.db, &user.id, &client.client_id).await?
            };
            consented = remembered.map(|c| (Scopes::parse(&c.scope), c.granted_at));
            Some(SessionFacts {
                pwd_at: session.pwd_at,
                hint_matches,
                owed,
                first_party: client.first_party,
                consent: consented.as_ref().map(|(scope, granted_at)| Consent {
                    scope,
                    granted_at: *granted_at,
                }),
            })
        }
    };
    let facts = Facts {
        request,
        created_at: interaction.row.created_at,
        arriving: interaction.arriving,
        session: session_facts,
    };
    Ok(match interaction::decide(&facts, now) {
        interaction::Next::Login => Next::Login,
        interaction::Next::SecondFactor => Next::SecondFactor,
        interaction::Next::EnrollSecondFactor => Next::EnrollSecondFactor,
        interaction::Next::Passkey => Next::Passkey,
        interaction::Next::EnrollPasskey => Next::EnrollPasskey,
        interaction::Next::Consent => Next::Consent,
        interaction::Next::Refuse(code, description) => fail(request, code, description),
        interaction::Next::Issue => match session {
            Some(who) => complete(state, interaction, &who.session, &who.user).await?,
            // decide issues only for a session; this only unwraps.
            None => Next::Login,
        },
    })
}

/// The interaction is used up, a code is issued.
async fn complete(
    state: &AppState,
    interaction: &Interaction,
    session: &Session,
    user: &User,
) -> Result<Next, Error> {
    let request = &interaction.request;
    if !interactions::complete(&state.store.db, &interaction.row.id_hash, state.now()).await? {
        return Ok(fail(
            request,
            OAuthErrorCode::InvalidRequest,
            "this authorization request was already completed",
        ));
    }
    let code = issue_code(state, request, session, user).await?;
    let mut params = vec![("code".to_owned(), code)];
    if let Some(s) = &request.state {
        params.push(("state".to_owned(), s.clone()));
    }
    params.push(("iss".to_owned(), state.settings.issuer.clone()));
    Ok(Next::Respond(AuthorizationResponse {
        redirect_uri: request.redirect_uri.clone(),
        response_mode: request.response_mode,
        params,
    }))
}

/// The subject of an ID token we issued (signature and issuer checked,
/// expiry not: OIDC Core §3.1.2.1 allows an expired hint).
fn hint_subject(state: &AppState, token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Sub {
        sub: String,
    }
    // typ JWT: an access token (at+jwt) is no ID token hint.
    decode_ours_any_age::<Sub>(state, token, jwt::TYP_ID_TOKEN).map(|s| s.sub)
}

/// The claims of a JWT we signed with this `typ`, whatever its age: the
/// signature, `typ` (RFC 8725 §3.11) and issuer are checked, `exp` is not.
/// For what an expired token may still do: be a hint (OIDC Core §3.1.2.1,
/// RP-Initiated Logout §2) or be revoked (RFC 7009).
pub fn decode_ours_any_age<T: serde::de::DeserializeOwned>(
    state: &AppState,
    token: &str,
    typ: &str,
) -> Option<T> {
    jwt::decode_rs256::<T, _>(token, Some(typ), &state.settings.issuer, i64::MIN, |kid| {
        public_key(state, kid)
    })
    .ok()
}

/// The public key of our signing key with this kid.
/// The public key of our signing key with this kid, if it is published now
/// (any published key: a token outlives the key's turn at signing).
pub fn public_key(state: &AppState, kid: &str) -> Option<Arc<SigningKey>> {
    state.keys.verifier(kid, state.now_ms())
}

/// What an access token presented to `/userinfo` or `/introspect` is.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and taken apart at once; boxing would add an allocation"
)]
pub enum PresentedAccessToken {
    /// Not an RFC 9068 access token we signed, or past its own `exp`.
    NotOurs,
    /// Ours, but revoked or expired by its row.
    Dead,
    /// Ours and live: its claims, its row, and the row's user if it has one
    /// that still exists.
    Live {
        claims: AccessTokenClaims,
        row: AccessToken,
        user: Option<User>,
    },
}

/// Verifies `token`'s signature and claims, then reads its row (one query:
/// `access_tokens::find_live_with_user`).
pub async fn presented_access_token(
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<PresentedAccessToken, sea_orm::DbErr> {
    let Ok(claims) = jwt::decode_rs256::<AccessTokenClaims, _>(
        token,
        Some(jwt::TYP_ACCESS_TOKEN),
        &state.settings.issuer,
        now,
        |kid| public_key(state, kid),
    ) else {
        return Ok(PresentedAccessToken::NotOurs);
    };
    let live = access_tokens::find_live_with_user(&state.store, &claims.jti, now).await?;
    Ok(match live {
        None => PresentedAccessToken::Dead,
        Some((row, user)) => PresentedAccessToken::Live { claims, row, user },
    })
}

/// Records the user's consent to the request's scopes for its client.
pub async fn grant_consent(
    state: &AppState,
    user_id: &str,
    request: &AuthorizationRequest,
) -> Result<(), Error> {
    // Remember the union with what was granted before, so one narrower
    // request does not shrink an earlier, wider consent.
    let mut scope = request.scope.clone();
    if let Some(previous) = consents::get(&state.store.db, user_id, &request.client_id).await? {
        scope.0.extend(Scopes::parse(&previous.scope).0);
    }
    consents::put(
        &state.store.db,
        user_id,
        &request.client_id,
        &scope.to_wire(),
        state.now(),
    )
    .await?;
    Ok(())
}

/// An application the user allowed, with the scopes it was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedApp {
    pub client_id: String,
    pub client_name: String,
    pub scope: Scopes,
}

/// The applications the user consented to, oldest consent first (two
/// queries, whatever their number). A consent whose client was deleted
/// is not listed.
pub async fn allowed_apps(state: &AppState, user_id: &str) -> Result<Vec<AllowedApp>, Error> {
    let consents = consents::list_for_user(&state.store.db, user_id).await?;
    let ids: Vec<String> = consents.iter().map(|c| c.client_id.clone()).collect();
    let names: std::collections::HashMap<String, String> =
        store_clients::find_many(&state.store.db, &ids)
            .await?
            .into_iter()
            .map(|c| (c.client_id, c.name))
            .collect();
    Ok(consents
        .into_iter()
        .filter_map(|c| {
            let client_name = names.get(&c.client_id)?.clone();
            Some(AllowedApp {
                client_name,
                scope: Scopes::parse(&c.scope),
                client_id: c.client_id,
            })
        })
        .collect())
}

/// Forgets a user's consent to a client and revokes the access tokens the
/// client holds for them (the next request asks again).
pub async fn revoke_consent(state: &AppState, user_id: &str, client_id: &str) -> Result<(), Error> {
    let now = state.now();
    consents::delete(&state.store.db, user_id, client_id).await?;
    access_tokens::revoke_for_user_client(&state.store.db, user_id, client_id, now).await?;
    refresh_tokens::revoke_for_user_client(&state.store.db, user_id, client_id, now).await?;
    Ok(())
}

/// Ends an interaction with `access_denied` (consent refused).
pub async fn deny(state: &AppState, interaction: &Interaction) -> Result<Next, Error> {
    interactions::complete(&state.store.db, &interaction.row.id_hash, state.now()).await?;
    Ok(fail(
        &interaction.request,
        OAuthErrorCode::AccessDenied,
        "the user did not allow access",
    ))
}

async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    session: &Session,
    user: &User,
) -> Result<String, Error> {
    let code = random_token();
    let now = state.now();
    let (acr, amr) = session.factors().assurance();
    authorization_codes::create(
        &state.store.db,
        Code {
            code_hash: sha256_hex(&code),
            client_id: request.client_id.clone(),
            user_id: user.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            scope: request.scope.to_wire(),
            sid: session.sid.clone().unwrap_or_default(),
            auth_time: session.pwd_at,
            acr: acr.to_owned(),
            amr: amr.join(" "),
            created_at: now,
            expires_at: now.saturating_add(state.settings.oauth.code_ttl_secs as i64),
            used_at: None,
        },
    )
    .await?;
    Ok(code)
}

// ---------------------------------------------------------------- userinfo

/// RFC 6750 §3.1 `invalid_token`.
fn invalid_token(description: &str) -> Refused {
    OAuthError::new(OAuthErrorCode::InvalidToken, description).into()
}

/// The claims `/userinfo` returns for an access token (OIDC Core §5.3),
/// by granted scope. A personal API key (`sgk_…`) is accepted as the bearer
/// token too, and answered by the key's scopes.
pub async fn userinfo(state: &AppState, token: &str) -> Result<serde_json::Value, Refused> {
    if api_keys::is_api_key(token) {
        return match api_keys::verify(state, token).await? {
            Some((key, user)) => claims_for(&user, &Scopes::parse(&key.scope)),
            // Unknown, revoked, expired or its user disabled: one answer,
            // the same as for a bad JWT.
            None => Err(invalid_token("the access token is not valid")),
        };
    }
    let (claims, user) = match presented_access_token(state, token, state.now()).await? {
        PresentedAccessToken::NotOurs => {
            return Err(invalid_token("the access token is not valid"));
        }
        PresentedAccessToken::Dead => {
            return Err(invalid_token("the access token was revoked or has expired"));
        }
        PresentedAccessToken::Live { claims, user, .. } => (claims, user),
    };
    // A client_credentials token has no user: nothing to tell about.
    let Some(user) = user.filter(|u| u.id == claims.sub) else {
        return Err(invalid_token("the user no longer exists"));
    };
    if user.disabled {
        return Err(invalid_token("the user is disabled"));
    }
    claims_for(&user, &Scopes::parse(&claims.scope))
}

/// The UserInfo claims of `user` that `scope` grants (OIDC Core §5.4).
fn claims_for(user: &User, scope: &Scopes) -> Result<serde_json::Value, Refused> {
    if !scope.contains("openid") {
        return Err(OAuthError::new(
            OAuthErrorCode::InsufficientScope,
            "the token lacks the openid scope",
        )
        .into());
    }
    let mut out = serde_json::json!({ "sub": user.id });
    if scope.contains("profile") {
        out["name"] = user.name.clone().into();
    }
    if scope.contains("email") {
        out["email"] = user.email.clone().into();
        out["email_verified"] = user.email_verified.into();
    }
    Ok(out)
}

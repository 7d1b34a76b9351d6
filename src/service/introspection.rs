//! Token introspection (RFC 7662), behind client authentication: access
//! tokens, refresh tokens and personal API keys, each answered only to a
//! caller allowed to know (§4).

use serde_json::{Value, json};

use crate::crypto::sha256_hex;
use crate::protocol::client_metadata::Client;
use crate::protocol::introspect::{Caller, Presented, may_introspect};
use crate::service::Error;
use crate::service::api_keys;
use crate::service::oidc::{PresentedAccessToken, presented_access_token};
use crate::service::token::access_token_jti;
use crate::state::AppState;
use crate::store::{refresh_tokens, users};

/// RFC 7662 §2.2: what a token is, or `{"active": false}` when it is not
/// usable (unknown, expired, revoked, or its user disabled) or not for
/// `client` to know (§4: `protocol::introspect::may_introspect`; the same
/// answer, so a refusal does not tell that the token exists). Answers for
/// personal API keys too (`token_type: "api_key"`), so resource servers
/// validate them the same way.
pub async fn introspect(state: &AppState, client: &Client, token: &str) -> Result<Value, Error> {
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
    if let Some(row) = refresh_tokens::find(&state.store.db, &sha256_hex(token)).await? {
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
            && users::find_by_id(&state.store.db, &row.user_id)
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

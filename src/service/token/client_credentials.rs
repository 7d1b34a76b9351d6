//! The `client_credentials` grant (RFC 6749 §4.4): a token for the client
//! itself; no ID token, no refresh token (§4.4.3).

use super::{AccessGrant, Outcome, TokenResponse, access_token, audit_row, record_issue};
use crate::protocol::client_metadata::Client;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::protocol::scope::Scopes;
use crate::state::AppState;
use crate::store::audit::{Kind, Outcome as AuditOutcome};

/// Issues the client a token for `scope`, or for all it may have.
pub async fn issue(state: &AppState, client: &Client, scope: Option<&str>) -> Outcome {
    if client.public {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "public clients cannot use client_credentials",
        )
        .into());
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
                return Err(OAuthError::invalid_scope(
                    "the requested scope is not allowed for this client",
                )
                .into());
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
    )?;
    let event = audit_row(
        state,
        Kind::TokenIssued,
        AuditOutcome::Success,
        None,
        &client.client_id,
        Some("client_credentials"),
    );
    record_issue(state, vec![row], event).await?;
    Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: scope.to_wire(),
        refresh_token: None,
        id_token: None,
    })
}

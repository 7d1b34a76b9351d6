//! RP-initiated logout and sign-out: checks the `id_token_hint` against our
//! keys, finds the client and its registered post-logout redirect URI, ends
//! the session and records it in the audit log. The rules are in
//! `protocol::logout`; this adds the keys, the database and the clock.

use crate::protocol::jwt::{self, IdTokenClaims, TYP_ID_TOKEN};
use crate::protocol::logout::{
    LogoutRequest, check_hint_client, logout_client_id, post_logout_location,
};
use crate::service::accounts::{self, AccountError};
use crate::service::{clients, oidc};
use crate::state::AppState;
use crate::store::audit::Event;

/// A logout request checked against what we know.
#[derive(Debug, Clone)]
pub struct Logout {
    /// The hint, when we signed it and it names the same client as
    /// `client_id` (if sent). Anything else is treated as no hint.
    pub hint: Option<IdTokenClaims>,
    /// The client the request speaks for (the hint's `aud`, else
    /// `client_id`): recorded in the audit log, not proof of anything
    /// without a hint.
    pub client_id: Option<String>,
    /// Where to send the browser afterwards: the registered
    /// `post_logout_redirect_uri` with `state`, or nowhere.
    pub redirect: Option<String>,
}

/// The claims of an ID token we signed, or `None`. An expired one is still
/// good (RP-Initiated Logout §2: the OP SHOULD accept it), so expiry is not
/// checked; the `typ` is, so an access token cannot pass for an ID token
/// (RFC 8725 §3.11).
pub fn verify_id_token_hint(state: &AppState, token: &str) -> Option<IdTokenClaims> {
    jwt::decode_rs256::<IdTokenClaims, _>(
        token,
        Some(TYP_ID_TOKEN),
        &state.settings.issuer,
        i64::MIN,
        |kid| oidc::public_key(state, kid),
    )
    .ok()
}

/// Checks the hint, finds the client, and allows the redirect only to a URI
/// that client registered (never an open redirect, RFC 9700 §4.1.3).
pub async fn resolve(state: &AppState, request: &LogoutRequest) -> Result<Logout, AccountError> {
    let hint = request
        .id_token_hint
        .as_deref()
        .and_then(|token| verify_id_token_hint(state, token))
        .filter(|hint| check_hint_client(hint, request.client_id.as_deref()).is_ok());
    let client_id = logout_client_id(hint.as_ref(), request).map(str::to_owned);
    let mut redirect = None;
    if let (Some(client_id), Some(uri)) = (&client_id, &request.post_logout_redirect_uri)
        && let Some(client) = clients::find(state, client_id).await?
        && client.has_post_logout_redirect_uri(uri)
    {
        redirect = Some(post_logout_location(uri, request.state.as_deref()));
    }
    Ok(Logout {
        hint,
        client_id,
        redirect,
    })
}

/// How a sign-out was asked for, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The sign-out button of our own pages.
    Button,
    /// A relying party's request with a hint for this user: no question asked.
    IdTokenHint,
    /// A relying party's request, confirmed on the confirmation page.
    Confirmed,
}

impl Via {
    fn detail(self) -> &'static str {
        match self {
            Via::Button => "sign-out button",
            Via::IdTokenHint => "rp-initiated, id_token_hint",
            Via::Confirmed => "rp-initiated, confirmed",
        }
    }
}

/// Ends the session behind the cookie value `token` server-side (the cookie
/// is worthless afterwards) and records `session.logout` when there was a
/// live one.
pub async fn sign_out(
    state: &AppState,
    token: &str,
    client_id: Option<&str>,
    ip: Option<&str>,
    via: Via,
) -> Result<(), AccountError> {
    let user = accounts::current_session(state, token)
        .await?
        .map(|(_, user)| user);
    accounts::end_session(state, token).await?;
    if let Some(user) = user {
        accounts::record(
            state,
            Event {
                kind: "session.logout",
                outcome: "success",
                user_id: Some(&user.id),
                client_id,
                ip,
                detail: Some(via.detail()),
            },
        )
        .await?;
    }
    Ok(())
}

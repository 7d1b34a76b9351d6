//! RP-initiated logout and sign-out: checks the `id_token_hint` against our
//! keys, finds the client and its registered post-logout redirect URI, ends
//! the session and records it in the audit log. The rules are in
//! `protocol::logout`; this adds the keys, the database and the clock.

use crate::protocol::jwt::{IdTokenClaims, TYP_ID_TOKEN};
use crate::protocol::logout::{
    Ignored, LogoutRequest, check_hint_client, logout_client_id, post_logout_location,
};
use crate::service::Error;
use crate::service::accounts;
use crate::service::{clients, oidc};
use crate::state::AppState;
use crate::store::audit::{AuditEvent, Kind, Outcome as AuditOutcome};

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
    /// What was sent but not used, and why: for the log and the audit event.
    pub ignored: Vec<Ignored>,
}

/// The claims of an ID token we signed, or `None`. An expired one is still
/// good (RP-Initiated Logout §2: the OP SHOULD accept it), so expiry is not
/// checked; the `typ` is, so an access token cannot pass for an ID token
/// (RFC 8725 §3.11).
pub fn verify_id_token_hint(state: &AppState, token: &str) -> Option<IdTokenClaims> {
    oidc::decode_ours_any_age::<IdTokenClaims>(state, token, TYP_ID_TOKEN)
}

/// Checks the hint, finds the client, and allows the redirect only to a URI
/// that client registered (never an open redirect, RFC 9700 §4.1.3). What
/// goes unused is ignored for the user (RP-Initiated Logout §3) and logged
/// as a warning with the client id and the reason.
pub async fn resolve(state: &AppState, request: &LogoutRequest) -> Result<Logout, Error> {
    let mut ignored = Vec::new();
    let hint = request
        .id_token_hint
        .as_deref()
        .and_then(|token| verify_id_token_hint(state, token))
        .filter(|hint| check_hint_client(hint, request.client_id.as_deref()).is_ok());
    if request.id_token_hint.is_some() && hint.is_none() {
        ignored.push(Ignored::InvalidHint);
    }
    let client_id = logout_client_id(hint.as_ref(), request).map(str::to_owned);
    let mut redirect = None;
    if let Some(uri) = &request.post_logout_redirect_uri {
        match &client_id {
            None => ignored.push(Ignored::NoClient),
            Some(id) => match clients::find(state, id).await? {
                None => ignored.push(Ignored::UnknownClient),
                Some(client) if client.has_post_logout_redirect_uri(uri) => {
                    redirect = Some(post_logout_location(uri, request.state.as_deref()));
                }
                Some(_) => ignored.push(Ignored::NotRegistered),
            },
        }
    }
    for reason in &ignored {
        // Debug-quoted: the client id comes from the request, as is.
        tracing::warn!(
            client_id = ?client_id.as_deref().unwrap_or(""),
            reason = reason.reason(),
            "logout request: part of it was ignored"
        );
    }
    Ok(Logout {
        hint,
        client_id,
        redirect,
        ignored,
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
/// live one, with how it was asked for and what of the request was ignored.
pub async fn sign_out(
    state: &AppState,
    token: &str,
    client_id: Option<&str>,
    ip: Option<&str>,
    via: Via,
    ignored: &[Ignored],
) -> Result<(), Error> {
    let user = accounts::current_session(state, token)
        .await?
        .map(|who| who.user);
    accounts::end_session(state, token).await?;
    if let Some(user) = user {
        let detail = std::iter::once(via.detail())
            .chain(ignored.iter().map(|i| i.reason()))
            .collect::<Vec<_>>()
            .join("; ");
        accounts::record(
            state,
            AuditEvent {
                kind: Kind::SessionLogout,
                outcome: AuditOutcome::Success,
                user_id: Some(&user.id),
                client_id,
                ip,
                detail: Some(&detail),
            },
        )
        .await?;
    }
    Ok(())
}

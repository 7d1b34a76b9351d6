//! `GET`/`POST /logout`: RP-initiated logout (OpenID Connect RP-Initiated
//! Logout 1.0, the `end_session_endpoint`) and the sign-out button of our own
//! pages, which posts here with only its `csrf_token`.
//!
//! A `GET` with a valid `id_token_hint` for the signed-in user ends the
//! session at once; any other `GET` only shows a confirmation form, so a
//! forged link signs no one out. Every `POST` is CSRF-checked, then ends the
//! session. Afterwards the browser goes to the client's registered
//! `post_logout_redirect_uri` (with `state`), or stays with us.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::http::client_ip::ClientIp;
use crate::http::cookies;
use crate::http::csrf::Csrf;
use crate::http::pages::{
    FormInput, Layout, PageError, checked_form, csrf_form, message, render, respond, see_other,
    session_token, with_cookie,
};
use crate::protocol::authorize::RawParams;
use crate::protocol::logout::{LogoutDecision, LogoutRequest, decide_logout, parse_logout_request};
use crate::service::accounts;
use crate::service::logout::{self, Via};
use crate::state::AppState;

/// Where our own sign-out ends when no client asked for a redirect.
const SIGNED_OUT: &str = "/login?signed_out=1";

#[derive(Template)]
#[template(path = "logout.html")]
struct ConfirmPage {
    page: Layout,
    csrf_token: String,
    /// The signed-in account, if any.
    email: Option<String>,
    /// The request's parameters, carried on to the POST.
    params: Vec<(String, String)>,
}

csrf_form!(LogoutForm {
    id_token_hint,
    post_logout_redirect_uri,
    client_id,
    state,
});

/// The `Set-Cookie` that deletes the session cookie.
fn clear_session_cookie(state: &AppState) -> HeaderValue {
    let secure = state.https();
    cookies::set(
        &cookies::name(cookies::SESSION, secure),
        "",
        Some(0),
        secure,
    )
}

fn bad_request(state: &AppState, reason: &str) -> Response {
    tracing::debug!(%reason, "unreadable logout request");
    message(
        state,
        StatusCode::BAD_REQUEST,
        "Invalid sign-out request",
        "The application sent a sign-out request this service cannot read, so nothing was changed. Go back to the application and try again.",
        None,
    )
}

/// `GET /logout?id_token_hint=…&post_logout_redirect_uri=…&state=…&client_id=…`
pub async fn logout_get(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = RawParams::from_pairs(
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    relying_party_logout(&state, &ip, &headers, &params).await
}

/// A logout request from a relying party (RP-Initiated Logout 1.0 §2, by
/// GET or by a cross-site POST): a valid hint for the signed-in user signs
/// out at once; anything else asks the person to confirm, so a forged link
/// signs no one out.
async fn relying_party_logout(
    state: &AppState,
    ip: &ClientIp,
    headers: &HeaderMap,
    params: &RawParams,
) -> Response {
    let state = state.clone();
    let request = match parse_logout_request(params) {
        Ok(request) => request,
        Err(e) => return bad_request(&state, &e.to_string()),
    };
    let result = async {
        let resolved = logout::resolve(&state, &request).await?;
        let token = session_token(&state, headers);
        let signed_in = match &token {
            Some(token) => accounts::current_session(&state, token).await?,
            None => None,
        };
        let user_id = signed_in.as_ref().map(|who| who.user_id());
        match decide_logout(resolved.hint.as_ref(), user_id) {
            LogoutDecision::EndSession => {
                if let Some(token) = &token {
                    logout::sign_out(
                        &state,
                        token,
                        resolved.client_id.as_deref(),
                        ip.as_deref(),
                        Via::IdTokenHint,
                        &resolved.ignored,
                    )
                    .await?;
                }
                let answer = match &resolved.redirect {
                    Some(to) => see_other(to),
                    None => signed_out_page(&state),
                };
                // Clear the cookie even when its session was already gone.
                Ok(with_cookie(answer, Some(clear_session_cookie(&state))))
            }
            LogoutDecision::Confirm => {
                let email = signed_in.map(|who| who.email().to_owned());
                Ok(confirm_page(&state, headers, &request, email))
            }
        }
    }
    .await;
    respond(&state, result)
}

fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &LogoutRequest,
    email: Option<String>,
) -> Response {
    let csrf = Csrf::for_page(state, headers);
    let page = ConfirmPage {
        page: Layout::new(state, "Sign out?"),
        csrf_token: csrf.token(state),
        email,
        params: request
            .params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    with_cookie(render(StatusCode::OK, &page), csrf.set_cookie)
}

/// Where RP-initiated logout ends when the client gave no usable
/// `post_logout_redirect_uri` (§3: the OP then shows its own page).
fn signed_out_page(state: &AppState) -> Response {
    message(
        state,
        StatusCode::OK,
        "You are signed out",
        "You are signed out. You can close this window, or sign in again.",
        Some(("/login", "Sign in")),
    )
}

/// `POST /logout`: the confirmation form, or the sign-out button of our own
/// pages (only `csrf_token`). Ends the session, clears the cookie, then goes
/// to the client's registered `post_logout_redirect_uri` when the form
/// names one, else to the sign-in page with "You are signed out".
pub async fn logout_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<LogoutForm>,
) -> Response {
    // RP-Initiated Logout §2: relying parties may POST the request too. Such a
    // cross-site POST has no CSRF token of ours; it is handled exactly like
    // the GET (a confirmation unless a valid hint names the signed-in user),
    // which is no weaker, while every POST that acts on its own (our sign-out
    // button, the confirmation form) still needs the token.
    let form = match form {
        Ok(axum::Form(f))
            if f.csrf_token.as_deref().unwrap_or("").is_empty()
                && [&f.id_token_hint, &f.post_logout_redirect_uri, &f.client_id]
                    .iter()
                    .any(|v| !v.is_empty()) =>
        {
            let params = RawParams::from_pairs(
                [
                    ("id_token_hint", f.id_token_hint),
                    ("post_logout_redirect_uri", f.post_logout_redirect_uri),
                    ("client_id", f.client_id),
                    ("state", f.state),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            return relying_party_logout(&state, &ip, &headers, &params).await;
        }
        other => other,
    };
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        // The form's fields go through the same reader as a GET's query.
        let params = RawParams::from_pairs(
            [
                ("id_token_hint", form.id_token_hint),
                ("post_logout_redirect_uri", form.post_logout_redirect_uri),
                ("client_id", form.client_id),
                ("state", form.state),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let request = match parse_logout_request(&params) {
            Ok(request) => request,
            Err(e) => return Ok(bad_request(&state, &e.to_string())),
        };
        let (via, resolved) = if request.is_empty() {
            (Via::Button, None)
        } else {
            (
                Via::Confirmed,
                Some(logout::resolve(&state, &request).await?),
            )
        };
        if let Some(token) = session_token(&state, &headers) {
            let client_id = resolved.as_ref().and_then(|r| r.client_id.as_deref());
            let ignored = resolved.as_ref().map_or(&[][..], |r| &r.ignored[..]);
            logout::sign_out(&state, &token, client_id, ip.as_deref(), via, ignored).await?;
        }
        let to = resolved
            .and_then(|r| r.redirect)
            .unwrap_or_else(|| SIGNED_OUT.to_owned());
        Ok::<_, PageError>(with_cookie(
            see_other(&to),
            Some(clear_session_cookie(&state)),
        ))
    }
    .await;
    respond(&state, result)
}

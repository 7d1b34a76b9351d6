//! Every error answer, in the shape its surface needs: a page for people
//! (`PageError`), a JSON body for the token endpoint family (RFC 6749 §5.2),
//! a `WWW-Authenticate` challenge for bearer-token endpoints (RFC 6750 §3).
//! The layers below return typed errors (`protocol::error::OAuthError`,
//! `service::Error`, `service::error::Refused`); only here do they become
//! responses, and only here is an internal failure logged and hidden.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::pages;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::service;
use crate::state::AppState;

pub async fn not_found(State(state): State<AppState>) -> Response {
    pages::message(
        &state,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
        None,
    )
}

/// An RFC 6749 §5.2 error response from the token endpoint family.
#[derive(Debug, Serialize)]
pub struct OAuthErrorBody {
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

pub fn oauth_json(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut response = (
        status,
        Json(OAuthErrorBody {
            error,
            error_description: Some(description.to_owned()),
        }),
    )
        .into_response();
    // RFC 6749 §5.1/§5.2: token endpoint answers are never cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An OAuth error as these endpoints answer it (RFC 6749 §5.2): JSON,
/// `no-store`; `invalid_client` is 401, with a Basic challenge when the
/// client tried Basic.
pub fn error(e: &OAuthError, basic: bool) -> Response {
    let status = match e.code {
        OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = oauth_json(status, e.code.as_str(), &e.description_wire());
    if status == StatusCode::UNAUTHORIZED && basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"stepgate\""),
        );
    }
    response
}

pub fn invalid_request(d: &str) -> Response {
    error(&OAuthError::invalid_request(d), false)
}

/// What the token endpoint family answers when a service failed beneath:
/// 503 `temporarily_unavailable` with `Retry-After` while the database is
/// away (the request may be sent again), else a logged `server_error`.
pub fn server_error(e: service::Error) -> Response {
    if matches!(e, service::Error::Db(_)) {
        crate::metrics::db_error();
    }
    if e.is_unavailable() {
        tracing::warn!(error = %e, "database unavailable");
        return with_retry_after(oauth_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the service is temporarily unavailable; try again shortly",
        ));
    }
    tracing::error!(error = %e, "token endpoint family failed");
    oauth_json(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the server could not complete the request",
    )
}

/// Seconds a client is told to wait (`Retry-After`, RFC 9110 §10.2.3)
/// before sending again a request refused because the database was away:
/// a restarting PostgreSQL or a failover is usually back within that.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Adds `Retry-After: RETRY_AFTER_SECS` to a 503 answer.
pub fn with_retry_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// An answer of a bearer-token endpoint (`/userinfo`) that is not a success
/// (RFC 6750 §3): a challenge, with the error code when the request had a
/// token (§3.1).
#[derive(Debug)]
pub enum Bearer {
    /// No token at all: a bare challenge, no error code (§3).
    NoToken,
    /// `invalid_request` (400), `invalid_token` (401) or
    /// `insufficient_scope` (403).
    Refused(OAuthError),
    /// Logged; a bare 500.
    Failed(service::Error),
}

impl IntoResponse for Bearer {
    fn into_response(self) -> Response {
        let (status, value) = match self {
            Bearer::NoToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"stepgate\"".to_owned(),
            ),
            Bearer::Refused(e) => {
                let status = match e.code {
                    OAuthErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
                    OAuthErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNAUTHORIZED,
                };
                // description_wire keeps to the characters a quoted string
                // may hold (RFC 6750 §3).
                let value = format!(
                    "Bearer realm=\"stepgate\", error=\"{}\", error_description=\"{}\"",
                    e.code.as_str(),
                    e.description_wire()
                );
                (status, value)
            }
            // RFC 6750 has no code for "not now": the token family's JSON
            // `temporarily_unavailable` with `Retry-After`.
            Bearer::Failed(e) if e.is_unavailable() => return server_error(e),
            Bearer::Failed(e) => {
                if matches!(e, service::Error::Db(_)) {
                    crate::metrics::db_error();
                }
                tracing::error!(error = %e, "userinfo failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        let mut response = status.into_response();
        let h = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(header::WWW_AUTHENTICATE, value);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Why a page request failed before its own logic could answer.
#[derive(Debug)]
pub enum PageError {
    /// The form's CSRF token is missing or wrong: 403, nothing changed.
    Csrf,
    /// The body is not a readable form.
    BadForm(String),
    /// The body is over `http.body_limit_bytes`. One sent with a
    /// `Content-Length` never gets here (`limit::limit_body` refuses it);
    /// one sent without is cut off by the form extractor: 413 too.
    TooLarge,
    /// The database is away (`service::Error::is_unavailable`): 503 with
    /// `Retry-After`; nothing was changed, and the form may be sent again.
    Unavailable(String),
    /// Anything unexpected: logged, shown as a generic 500 page.
    Internal(String),
}

impl From<service::Error> for PageError {
    fn from(e: service::Error) -> Self {
        if matches!(e, service::Error::Db(_)) {
            crate::metrics::db_error();
        }
        if e.is_unavailable() {
            PageError::Unavailable(e.to_string())
        } else {
            PageError::Internal(e.to_string())
        }
    }
}

impl PageError {
    pub fn into_page(self, state: &AppState) -> Response {
        match self {
            PageError::Csrf => pages::message(
                state,
                StatusCode::FORBIDDEN,
                "This form has expired",
                "For your security the form could not be accepted (its security token is missing or out of date). Nothing was changed. Go back, reload the page and try again.",
                None,
            ),
            PageError::BadForm(reason) => {
                tracing::debug!(%reason, "unreadable form");
                pages::message(
                    state,
                    StatusCode::BAD_REQUEST,
                    "The form could not be read",
                    "The submitted form was not in the expected format. Nothing was changed. Go back, reload the page and try again.",
                    None,
                )
            }
            PageError::TooLarge => pages::message(
                state,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large",
                "The submitted form is larger than this server accepts. Nothing was changed. Go back, reload the page and try again.",
                None,
            ),
            PageError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                with_retry_after(pages::message(
                    state,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "We cannot complete your request right now. Please try again in a few seconds.",
                    None,
                ))
            }
            PageError::Internal(reason) => {
                tracing::error!(%reason, "page failed");
                pages::message(
                    state,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "We could not complete your request. Please try again in a moment.",
                    None,
                )
            }
        }
    }
}

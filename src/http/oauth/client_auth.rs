//! Client authentication for the token, revocation and introspection
//! endpoints (RFC 6749 §2.3.1): HTTP Basic (`client_secret_basic`), the
//! `client_id`/`client_secret` form fields (`client_secret_post`), or for a
//! public client its `client_id` alone. One method per request (§2.3).
//! Also the shared reading of the form body and the JSON error answers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::http::error::oauth_json;
pub use crate::http::error::{error, invalid_request, server_error};
use crate::protocol::authorize::RawParams;
use crate::protocol::client_metadata::Client;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::service::clients;
use crate::service::limits::{Action, Limit, Limited};
use crate::state::AppState;

/// A JSON body answer that is never cached.
pub fn json_no_store(value: impl serde::Serialize) -> Response {
    let mut response = (StatusCode::OK, axum::Json(value)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The request body, or the JSON refusal for one that could not be read. A
/// body over the limit sent without a Content-Length is cut off by the
/// extractor (`limit::limit_body` answers those with one): still JSON
/// (RFC 6749 §5.2), never axum's plain-text rejection.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response>> {
    match body {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(Box::new(oauth_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large",
            )))
        }
        Err(_) => Err(Box::new(invalid_request(
            "the request body could not be read",
        ))),
    }
}

/// The form body's parameters (RFC 6749 §3.2: application/x-www-form-urlencoded,
/// no parameter twice).
pub fn form_params(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<RawParams, Box<Response>> {
    let body = body_bytes(body)?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(Box::new(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )));
    }
    let params = RawParams::from_pairs(
        url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    if let Some(name) = params.repeated.iter().next() {
        return Err(Box::new(invalid_request(&format!(
            "the parameter {name} is repeated"
        ))));
    }
    Ok(params)
}

/// RFC 6749 §2.3.1: Basic carries `urlencode(id):urlencode(secret)`.
pub fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Some(Err(()));
    };
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((unescape(id), unescape(secret))))
}

/// The authenticated client, and whether it used Basic (for error answers).
///
/// A failed check counts against the hourly budget of failed client
/// authentications of the address `ip` (`service::limits`); a full budget
/// is 429 with `Retry-After` (RFC 6585 §4), in RFC 6749 §5.2's JSON shape.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &RawParams,
    ip: Option<&str>,
) -> Result<(Arc<Client>, bool), Response> {
    let invalid_client =
        |basic: bool, d: &str| error(&OAuthError::new(OAuthErrorCode::InvalidClient, d), basic);
    let (client_id, secret, basic) = match basic_credentials(headers) {
        Some(Err(())) => return Err(invalid_client(true, "malformed Basic credentials")),
        Some(Ok((id, secret))) => {
            // RFC 6749 §2.3: one authentication method per request.
            if params.get("client_secret").is_some() {
                return Err(invalid_request(
                    "use either HTTP Basic or client_secret, not both",
                ));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(invalid_client(
                    true,
                    "client_id does not match the credentials",
                ));
            }
            (id, Some(secret), true)
        }
        None => match params.get("client_id") {
            Some(id) => (
                id.to_owned(),
                params.get("client_secret").map(str::to_owned),
                false,
            ),
            None => return Err(invalid_client(false, "client authentication is required")),
        },
    };
    // Client secrets are long and random, so the budget is about load, not
    // guessing: it is read before the check and counted only on a failure
    // (no write on the hot path), and a burst may pass it by what is in
    // flight. A full budget refuses even the right secret until the window
    // ends.
    let limit = Limit::per_address(state, Action::ClientAuthFailure, ip);
    let too_many = |limited: Limited| {
        let mut response = oauth_json(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many failed client authentications from this address; try again later",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(limited.retry_after_secs),
        );
        response
    };
    match limit.check(state).await {
        Ok(Ok(())) => {}
        Ok(Err(limited)) => return Err(too_many(limited)),
        Err(e) => return Err(server_error(e)),
    }
    match clients::authenticate(state, &client_id, secret.as_deref()).await {
        Ok(Some(client)) => Ok((client, basic)),
        Ok(None) => match limit.hit(state).await {
            Ok(Ok(())) => Err(invalid_client(basic, "client authentication failed")),
            Ok(Err(limited)) => Err(too_many(limited)),
            Err(e) => Err(server_error(e)),
        },
        Err(e) => Err(server_error(e)),
    }
}

/// The prologue of the three endpoints: the form body, then the client
/// that authenticated. `Err` is the answer to send.
pub async fn authenticated_form(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    ip: Option<&str>,
) -> Result<(RawParams, Arc<Client>, bool), Box<Response>> {
    let params = form_params(headers, body)?;
    let (client, basic) = authenticate(state, headers, &params, ip)
        .await
        .map_err(Box::new)?;
    Ok((params, client, basic))
}

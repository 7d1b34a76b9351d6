//! `POST /token` (RFC 6749 §3.2, §4.1.3, OIDC Core §3.1.3).
//!
//! Client authentication first (RFC 6749 §2.3.1: HTTP Basic, or the
//! client_id/client_secret form fields; a public client sends only its
//! client_id), then the grant. Every answer is JSON and `no-store`;
//! `invalid_client` is 401, with `WWW-Authenticate` when Basic was used.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::http::error::oauth_json;
use crate::protocol::authorize::RawParams;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::service::clients::{self, Client, GRANT_AUTHORIZATION_CODE};
use crate::service::oidc;
use crate::state::AppState;

/// An OAuth error as the token endpoint answers it (RFC 6749 §5.2).
fn error(e: &OAuthError, basic: bool) -> Response {
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

fn invalid_request(d: &str) -> Response {
    error(&OAuthError::invalid_request(d), false)
}

/// The credentials a request carries.
struct Credentials {
    client_id: String,
    secret: Option<String>,
    basic: bool,
}

/// RFC 6749 §2.3.1: Basic carries `urlencode(id):urlencode(secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        return Some(Err(()));
    };
    let Some((id, secret)) = decoded.split_once(':') else {
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

fn credentials(headers: &HeaderMap, params: &RawParams) -> Result<Credentials, Box<Response>> {
    let invalid_client = |basic: bool, d: &str| {
        Box::new(error(
            &OAuthError::new(OAuthErrorCode::InvalidClient, d),
            basic,
        ))
    };
    match basic_credentials(headers) {
        Some(Err(())) => Err(invalid_client(true, "malformed Basic credentials")),
        Some(Ok((id, secret))) => {
            // RFC 6749 §2.3: one authentication method per request.
            if params.get("client_secret").is_some() {
                return Err(Box::new(invalid_request(
                    "use either HTTP Basic or client_secret, not both",
                )));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(invalid_client(
                    true,
                    "client_id does not match the credentials",
                ));
            }
            Ok(Credentials {
                client_id: id,
                secret: Some(secret),
                basic: true,
            })
        }
        None => match params.get("client_id") {
            Some(id) => Ok(Credentials {
                client_id: id.to_owned(),
                secret: params.get("client_secret").map(str::to_owned),
                basic: false,
            }),
            None => Err(invalid_client(false, "client authentication is required")),
        },
    }
}

pub async fn token_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A body over the limit sent without a Content-Length is cut off here
    // (`limit::limit_body` answers those with one); the refusal is JSON too
    // (RFC 6749 §5.2), not axum's plain-text rejection.
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return oauth_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large",
            );
        }
        Err(_) => return invalid_request("the request body could not be read"),
    };
    // RFC 6749 §3.2: the request is application/x-www-form-urlencoded.
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return invalid_request("the body must be application/x-www-form-urlencoded");
    }
    let params = RawParams::from_pairs(
        url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    if let Some(name) = params.repeated.iter().next() {
        return invalid_request(&format!("the parameter {name} is repeated"));
    }
    let credentials = match credentials(&headers, &params) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let client = match clients::authenticate(
        &state,
        &credentials.client_id,
        credentials.secret.as_deref(),
    )
    .await
    {
        Ok(Some(client)) => client,
        Ok(None) => {
            return error(
                &OAuthError::new(
                    OAuthErrorCode::InvalidClient,
                    "client authentication failed",
                ),
                credentials.basic,
            );
        }
        Err(e) => return server_error(e),
    };
    let Some(grant_type) = params.get("grant_type") else {
        return invalid_request("grant_type is required");
    };
    let result = match grant_type {
        GRANT_AUTHORIZATION_CODE => authorization_code(&state, &client, &params).await,
        _ => {
            return error(
                &OAuthError::new(
                    OAuthErrorCode::UnsupportedGrantType,
                    "this grant type is not supported",
                ),
                false,
            );
        }
    };
    match result {
        Ok(Ok(tokens)) => {
            let mut response = (StatusCode::OK, axum::Json(tokens)).into_response();
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Ok(Err(e)) => error(&e, credentials.basic),
        Err(e) => server_error(e),
    }
}

async fn authorization_code(
    state: &AppState,
    client: &Client,
    params: &RawParams,
) -> Result<Result<oidc::TokenResponse, OAuthError>, crate::service::accounts::AccountError> {
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return Ok(Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client may not use the authorization_code grant",
        )));
    }
    let Some(code) = params.get("code") else {
        return Ok(Err(OAuthError::invalid_request("code is required")));
    };
    oidc::redeem_code(
        state,
        client,
        code,
        params.get("redirect_uri"),
        params.get("code_verifier"),
    )
    .await
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "token endpoint failed");
    oauth_json(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the server could not complete the request",
    )
}

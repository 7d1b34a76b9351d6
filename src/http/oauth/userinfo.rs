//! `GET`/`POST /userinfo` (OIDC Core §5.3) with bearer tokens (RFC 6750):
//! in the `Authorization` header, or for POST in the form body (§2.2), not
//! both. Errors follow RFC 6750 §3.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::service::oidc::{self, BearerError};
use crate::state::AppState;

fn challenge(status: StatusCode, error: Option<(&str, &str)>) -> Response {
    // RFC 6750 §3: no error code when the request had no token at all.
    let value = match error {
        None => "Bearer realm=\"stepgate\"".to_owned(),
        Some((code, description)) => {
            format!(
                "Bearer realm=\"stepgate\", error=\"{code}\", error_description=\"{description}\""
            )
        }
    };
    let mut response = status.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&value).expect("ASCII header"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn invalid_request(description: &str) -> Response {
    challenge(
        StatusCode::BAD_REQUEST,
        Some(("invalid_request", description)),
    )
}

pub async fn userinfo(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let from_body = (method == Method::POST && is_form)
        .then(|| {
            url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        })
        .flatten();
    let token = match (from_header, from_body) {
        (Some(_), Some(_)) => return invalid_request("send the token one way only"),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return challenge(StatusCode::UNAUTHORIZED, None),
    };
    match oidc::userinfo(&state, &token).await {
        Ok(Ok(claims)) => {
            let mut response = axum::Json(claims).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(Err(BearerError::InvalidToken(why))) => {
            challenge(StatusCode::UNAUTHORIZED, Some(("invalid_token", why)))
        }
        Ok(Err(BearerError::InsufficientScope)) => challenge(
            StatusCode::FORBIDDEN,
            Some(("insufficient_scope", "the token lacks the openid scope")),
        ),
        Err(e) => {
            tracing::error!(error = %e, "userinfo failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

//! `GET`/`POST /userinfo` (OIDC Core §5.3) with bearer tokens (RFC 6750):
//! in the `Authorization` header, or for POST in the form body (§2.2), not
//! both. Errors follow RFC 6750 §3.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::Bearer;
use crate::protocol::error::OAuthError;
use crate::service::error::Refused;
use crate::service::oidc;
use crate::state::AppState;

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
        (Some(_), Some(_)) => {
            return Bearer::Refused(OAuthError::invalid_request("send the token one way only"))
                .into_response();
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Bearer::NoToken.into_response(),
    };
    match oidc::userinfo(&state, &token).await {
        Ok(claims) => {
            let mut response = axum::Json(claims).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(Refused::Protocol(e)) => Bearer::Refused(e).into_response(),
        Err(Refused::Failed(e)) => Bearer::Failed(e).into_response(),
    }
}

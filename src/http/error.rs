//! Error answers in the shape each surface needs: a page for people, a JSON
//! body for OAuth clients (RFC 6749 §5.2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::pages;
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

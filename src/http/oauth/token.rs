//! `POST /token` (RFC 6749 §3.2).
//!
//! No grant type is enabled yet (the authorization code grant arrives with the
//! OpenID Connect capability), so every request gets RFC 6749 §5.2's
//! `unsupported_grant_type`, in the endpoint's JSON shape, never cached.

use axum::http::StatusCode;
use axum::response::Response;

use crate::http::error;

pub async fn token_post() -> Response {
    error::oauth_json(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "no grant type is enabled on this server yet",
    )
}

//! `GET`/`POST /authorize` (RFC 6749 §3.1).
//!
//! No relying party can be registered yet (client registration arrives with
//! the OpenID Connect capability), so every request names an unknown client.
//! RFC 6749 §4.1.2.1: with an unknown client the error is shown to the user,
//! never redirected, since the redirect URI cannot be trusted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::http::pages;
use crate::state::AppState;

pub async fn authorize(State(state): State<AppState>) -> Response {
    pages::message(
        &state,
        StatusCode::BAD_REQUEST,
        "Unknown application",
        "The application that sent you here is not registered with this sign-in service.",
        None,
    )
}

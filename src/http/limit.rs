//! Request body limits that always answer.
//!
//! A body over `http.body_limit_bytes` gets 413. Answering before the client
//! has finished sending makes most clients see a broken pipe instead of the
//! answer, so a too-large body whose `Content-Length` is still modest is read
//! and discarded first (the request timeout bounds how long that may take).
//! Bodies without a length are capped by axum's `DefaultBodyLimit` in the
//! extractors, which also answer 413.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};

use crate::state::AppState;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

/// Above this many bytes the body is not drained: the connection is closed
/// right after the 413 (a client sending that much to a login form is not
/// owed a graceful answer).
const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;

pub async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.settings.http.body_limit_bytes;
    // OAuth endpoints answer in their JSON shape (RFC 6749 §5.2); pages with a page.
    let json = is_api_path(request.uri().path());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            let drained = length <= DRAIN_MAX_BYTES;
            if drained {
                drain(request.into_body()).await;
            }
            let mut response = too_large(&state, json);
            if !drained {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
        _ => next.run(request).await,
    }
}

/// Paths whose clients are programs expecting JSON errors.
pub fn is_api_path(path: &str) -> bool {
    matches!(path, "/token" | "/revoke" | "/introspect" | "/userinfo")
}

fn too_large(state: &AppState, json: bool) -> Response {
    if json {
        return crate::http::error::oauth_json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        );
    }
    crate::http::pages::message(
        state,
        StatusCode::PAYLOAD_TOO_LARGE,
        "That was too much to send",
        "The form was larger than this server accepts. Nothing was changed. Go back and try again with less.",
        None,
    )
}

async fn drain(mut body: Body) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

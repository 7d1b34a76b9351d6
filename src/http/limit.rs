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
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// Above this many bytes the body is not drained: the connection is closed
/// right after the 413 (a client sending that much to a login form is not
/// owed a graceful answer).
const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;

pub async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            if length <= DRAIN_MAX_BYTES {
                drain(request.into_body()).await;
                too_large().into_response()
            } else {
                ([(header::CONNECTION, "close")], too_large()).into_response()
            }
        }
        _ => next.run(request).await,
    }
}

fn too_large() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(serde_json::json!({
            "error": "invalid_request",
            "error_description": "the request body is too large",
        })),
    )
}

async fn drain(mut body: Body) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

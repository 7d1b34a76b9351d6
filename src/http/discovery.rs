//! `GET /.well-known/openid-configuration` and `GET /jwks`: both documents are
//! served from memory (discovery serialized once at start, the JWKS at each
//! read of the signing keys), so they answer while the database is away.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Relying parties cache both documents; five minutes keeps a rotated key's
/// arrival prompt (clients also refetch the JWKS on an unknown `kid`).
const CACHE: HeaderValue = HeaderValue::from_static("public, max-age=300");

pub async fn openid_configuration_get(State(state): State<AppState>) -> Response {
    json_document(state.documents.discovery.clone())
}

pub async fn jwks_get(State(state): State<AppState>) -> Response {
    // RFC 7517 §8.5: application/jwk-set+json is the registered type; most
    // clients only accept JSON, which that type is.
    json_document(state.keys.jwks())
}

fn json_document(body: axum::body::Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, CACHE),
            // Discovery is read by browser-based relying parties too.
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response()
}

//! The one stylesheet, the passkey script and the icon, compiled into the
//! binary.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const STYLE_CSS: &str = include_str!("../../assets/style.css");
const FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");
const WEBAUTHN_JS: &str = include_str!("../../assets/webauthn.js");

pub async fn style_css() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLE_CSS,
    )
        .into_response()
}

/// `GET /assets/webauthn.js`: the passkey ceremonies (the pages' only
/// script; CSP `script-src 'self'`).
pub async fn webauthn_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        WEBAUTHN_JS,
    )
        .into_response()
}

/// `GET /favicon.ico`: browsers ask every site for it, so it is served from
/// memory rather than answered 404 (a log line and a page render per visit).
/// An SVG under the conventional name: browsers read it by its content type.
/// It never changes between releases, so caches keep it for a week.
pub async fn favicon_get() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=604800"),
            ),
        ],
        FAVICON_SVG,
    )
        .into_response()
}

//! CSRF protection for every state-changing form (OWASP: synchronizer token,
//! stateless variant). The token is an HMAC, under a key derived from the
//! master key, of the session cookie's value, or before sign-in of a random
//! pre-session cookie's value. A forged cross-site form cannot read either
//! cookie, so it cannot produce the token; nothing is stored server-side.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::crypto::random_token;
use crate::http::cookies;
use crate::state::AppState;

/// The CSRF context of one request: what the token is bound to, and the
/// pre-session cookie to set when the browser has none yet.
pub struct Csrf {
    binding: String,
    pub set_cookie: Option<HeaderValue>,
}

impl Csrf {
    /// For a page that renders forms: binds to the session cookie, else the
    /// pre-session cookie, creating that when missing.
    pub fn for_page(state: &AppState, headers: &HeaderMap) -> Self {
        if let Some(binding) = binding(state, headers) {
            return Self {
                binding,
                set_cookie: None,
            };
        }
        let value = random_token();
        let secure = state.https();
        Self {
            set_cookie: Some(cookies::set(
                &cookies::name(cookies::CSRF, secure),
                &value,
                None,
                secure,
            )),
            binding: value,
        }
    }

    /// For a page rendered right after sign-in, bound to the new session.
    pub fn for_session(session_token: &str) -> Self {
        Self {
            binding: session_token.to_owned(),
            set_cookie: None,
        }
    }

    pub fn token(&self, state: &AppState) -> String {
        state.csrf_key().sign(self.binding.as_bytes())
    }
}

/// What the request's CSRF token is bound to: the session cookie's value,
/// else the pre-session cookie's. Passkey ceremonies bind their challenge
/// to the same value (`service::passkeys`).
pub fn binding(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let secure = state.https();
    cookies::get(headers, &cookies::name(cookies::SESSION, secure))
        .or_else(|| cookies::get(headers, &cookies::name(cookies::CSRF, secure)))
}

/// Checks a submitted form's `csrf_token`. Also refuses a cross-origin
/// `Origin` header; `Origin: null` is accepted because our own pages send
/// `Referrer-Policy: no-referrer`, which makes browsers send `null`.
pub fn check(state: &AppState, headers: &HeaderMap, token: Option<&str>) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != "null"
        && origin != state.issuer_origin()
    {
        return false;
    }
    match (binding(state, headers), token) {
        (Some(binding), Some(token)) if !token.is_empty() => state
            .csrf_keys()
            .iter()
            .any(|key| key.verify(binding.as_bytes(), token)),
        _ => false,
    }
}

/// The header a script sends the page's CSRF token in (the passkey
/// endpoints: their body is the credential's JSON).
pub const HEADER: &str = "x-csrf-token";

/// `check` for a request that carries the token in [`HEADER`].
pub fn check_header(state: &AppState, headers: &HeaderMap) -> bool {
    let token = headers.get(HEADER).and_then(|v| v.to_str().ok());
    check(state, headers, token)
}

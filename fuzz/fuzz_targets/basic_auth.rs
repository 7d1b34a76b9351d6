//! The HTTP Basic client credentials (RFC 6749 §2.3.1): any header value is
//! answered without a panic, and credentials encoded the RFC's way decode to
//! themselves.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use stepgate::http::oauth::client_auth::basic_credentials;

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fuzz_target!(|data: &[u8]| {
    // The raw header value.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        let _ = basic_credentials(&headers);
    }
    // Round trip: urlencode(id):urlencode(secret), base64.
    let text = String::from_utf8_lossy(data);
    let (id, secret) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let joined = format!("{}:{}", encode(id), encode(secret));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(joined)
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&value).unwrap(),
    );
    assert_eq!(
        basic_credentials(&headers),
        Some(Ok((id.to_owned(), secret.to_owned())))
    );
});

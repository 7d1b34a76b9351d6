//! Form bodies at the OAuth endpoints (`form_params`, RFC 6749 §3.2) and
//! the pages (serde_urlencoded, as axum's `Form` reads them): any body and
//! content type is answered without a panic, and an accepted body has no
//! parameter twice.
#![no_main]

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use stepgate::http::oauth::client_auth::form_params;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"application/x-www-form-urlencoded"[..], data),
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(params) = form_params(&headers, Ok(Bytes::copy_from_slice(body))) {
        assert!(params.repeated.is_empty());
    }
    let _ = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body);
});

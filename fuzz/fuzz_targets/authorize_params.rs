//! `/authorize` parameters: a query string or form body through
//! `RawParams::from_pairs` and the whole of `validate`, for a public and a
//! confidential client. Never panics; what `from_pairs` keeps obeys RFC 6749
//! §3.1 (no empty value, the first of a repeated name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepgate::protocol::authorize::{ClientView, RawParams, validate};

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let params = RawParams::from_pairs(pairs.clone());
    for (name, value) in &params.values {
        assert!(!value.is_empty(), "an empty value is kept for {name}");
        let first = pairs.iter().find(|(k, v)| k == name && !v.is_empty());
        assert_eq!(first.map(|(_, v)| v), Some(value), "not the first value");
    }
    for name in &params.repeated {
        assert!(params.values.contains_key(name));
    }

    let redirect_uris = vec![
        "https://rp.example.com/cb".to_owned(),
        "http://127.0.0.1:8080/cb?x=1".to_owned(),
    ];
    let scopes = vec![
        "openid".to_owned(),
        "email".to_owned(),
        "offline_access".to_owned(),
    ];
    for public in [false, true] {
        let client = ClientView {
            client_id: "rp",
            redirect_uris: &redirect_uris,
            public,
            allowed_scopes: &scopes,
        };
        if let Ok(request) = validate(&params, Some(&client), public) {
            // Accepted: the redirect URI is one registered, character for
            // character (RFC 9700 §4.1.3).
            assert!(redirect_uris.contains(&request.redirect_uri));
        }
        let _ = validate(&params, None, public);
    }
});

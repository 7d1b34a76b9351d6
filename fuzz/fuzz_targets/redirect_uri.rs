//! Redirect-URI building (`redirect_with`, RFC 6749 §4.1.2 and Appendix B;
//! RP-Initiated Logout §3): the registered URI is kept as is, and the
//! parameters read back exactly from the query, whatever their bytes, so no
//! value can add or change a parameter or move the browser elsewhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepgate::protocol::authorize::redirect_with;
use stepgate::protocol::logout::post_logout_location;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let path = parts.next().unwrap_or("");
    let state = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    // A registered URI: no fragment (RFC 6749 §3.1.2), any path and query.
    let base: String = format!("https://rp.example.com/{path}").replace('#', "");
    let out = redirect_with(&base, &[("code", code), ("state", state)]);
    assert!(out.starts_with(&base), "the registered URI is kept: {out}");
    let added = &out[base.len()..];
    let query = added.trim_start_matches(['?', '&']);
    assert!(!query.contains('#') && !query.contains(' '));
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("code".to_owned(), code.to_owned()),
            ("state".to_owned(), state.to_owned())
        ]
    );
    let logout = post_logout_location(&base, Some(state));
    assert!(logout.starts_with(&base));
});

//! Reading and writing the few cookies Stepgate sets. Every cookie is
//! `HttpOnly`, `SameSite=Lax` and `Path=/`; when the issuer is https it is
//! also `Secure` and `__Host-` prefixed (RFC 6265bis §4.1.3.2: the browser then
//! refuses it from plain http or another subdomain).

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie: a random 256-bit id; the database holds its hash.
pub const SESSION: &str = "stepgate_session";
/// The pre-session cookie: binds CSRF tokens before sign-in.
pub const CSRF: &str = "stepgate_csrf";

/// The cookie's name as sent, with the `__Host-` prefix under https.
pub fn name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// The value of the cookie `name` in the request, if any.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value. `max_age` in seconds; `Some(0)` deletes the cookie.
pub fn set(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&cookie).expect("cookie names and base64url values are valid header text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_cookie_among_many() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; stepgate_session=abc; b=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(get(&headers, "stepgate_session").as_deref(), Some("abc"));
        assert_eq!(get(&headers, "c").as_deref(), Some("3"));
        assert_eq!(get(&headers, "missing"), None);
    }

    #[test]
    fn secure_cookies_get_the_host_prefix() {
        assert_eq!(name(SESSION, true), "__Host-stepgate_session");
        let v = set("__Host-x", "v", Some(60), true);
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-x=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
        );
        let v = set("x", "v", None, false);
        assert_eq!(v.to_str().unwrap(), "x=v; Path=/; HttpOnly; SameSite=Lax");
    }
}

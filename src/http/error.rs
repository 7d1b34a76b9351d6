//! Error answers in the shape each surface needs: a page for people, a JSON
//! body for OAuth clients (RFC 6749 §5.2).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

/// A plain error page. The hosted pages' layout replaces this markup when the
/// sign-in pages land; the status and the `role="alert"` element stay.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Stepgate</title></head>\
         <body><main><h1>{title}</h1><p role=\"alert\">{message}</p></main></body></html>\n",
        title = escape(title),
        message = escape(message),
    );
    (status, Html(body)).into_response()
}

pub async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
    )
}

/// An RFC 6749 §5.2 error response from the token endpoint family.
#[derive(Debug, Serialize)]
pub struct OAuthErrorBody {
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

pub fn oauth_json(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut response = (
        status,
        Json(OAuthErrorBody {
            error,
            error_description: Some(description.to_owned()),
        }),
    )
        .into_response();
    // RFC 6749 §5.1/§5.2: token endpoint answers are never cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }
}

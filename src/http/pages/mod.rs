//! The hosted pages: server-rendered HTML (askama: templates are checked at
//! compile time, so a typo in a field name is a build error, not a 500), plain
//! `<form method="post">` forms, no JavaScript but the passkey ceremony's
//! one script (`assets/webauthn.js`). Field names and element ids
//! are a stable contract that scripts and tests drive (tests/e2e); they
//! never change with a page's wording.

pub mod account;
pub mod api_keys;
pub mod passkeys;
pub mod password;
pub mod profile;
pub mod two_factor;

use askama::Template;
use axum::Form;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::http::cookies;
pub use crate::http::error::PageError;
use crate::service::accounts::{self, LiveSession};
use crate::service::second_factor;
use crate::state::AppState;

/// What the layout needs on every page.
pub struct Layout {
    pub title: String,
    pub product: String,
    /// On a page with a passkey ceremony: the CSRF token the script sends
    /// (`<meta name="csrf-token">`); the script is loaded only then.
    pub script_csrf: Option<String>,
}

impl Layout {
    pub fn new(state: &AppState, title: &str) -> Self {
        Self {
            title: title.to_owned(),
            product: state.settings.ui.product_name.clone(),
            script_csrf: None,
        }
    }

    /// The layout of a page that offers a passkey ceremony.
    pub fn with_script(mut self, csrf_token: &str) -> Self {
        self.script_csrf = Some(csrf_token.to_owned());
        self
    }
}

/// The element the passkey script drives (`id="webauthn"`, the contract
/// in docs/integrate.md), rendered by `templates/passkey_button.html`.
pub struct PasskeyElement {
    pub options_url: String,
    pub finish_url: String,
    /// `create` (register) or `get` (use a passkey).
    pub mode: &'static str,
    /// Offer passkeys in the email field's autofill too (the sign-in page).
    pub conditional: bool,
    pub label: &'static str,
    /// `primary` or `secondary`: the button's weight on its page.
    pub class: &'static str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub page: Layout,
    pub message: String,
    pub is_error: bool,
    pub action: Option<(String, String)>,
}

/// Renders a template. Pages carry forms, tokens or personal data, so none
/// is stored by caches (`no-store`).
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page with a title, one message, and optionally one link onwards.
pub fn message(
    state: &AppState,
    status: StatusCode,
    title: &str,
    message: &str,
    action: Option<(&str, &str)>,
) -> Response {
    render(
        status,
        &MessagePage {
            page: Layout::new(state, title),
            message: message.to_owned(),
            is_error: status.is_client_error() || status.is_server_error(),
            action: action.map(|(href, text)| (href.to_owned(), text.to_owned())),
        },
    )
}

/// Counts one `action` from the address `ip` (`service::limits`); when the
/// address has used its hourly budget, the answer is a 429 page with
/// `Retry-After` (RFC 6585 §4), the same whatever the form held.
pub async fn address_limit(
    state: &AppState,
    action: crate::service::limits::Action,
    ip: Option<&str>,
) -> Result<Option<Response>, PageError> {
    let limit = crate::service::limits::Limit::per_address(state, action, ip);
    Ok(match limit.hit(state).await? {
        Ok(()) => None,
        Err(limited) => {
            let mut response = message(
                state,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                &format!(
                    "Too many requests from your network. {}",
                    account::retry_after_text(limited.retry_after_secs)
                ),
                None,
            );
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(limited.retry_after_secs),
            );
            Some(response)
        }
    })
}

/// Turns a handler's result into the answer, rendering errors as pages.
pub fn respond(state: &AppState, result: Result<Response, PageError>) -> Response {
    result.unwrap_or_else(|e| e.into_page(state))
}

pub type FormInput<T> = Result<Form<T>, FormRejection>;

/// A posted form, its CSRF token checked first: a form with a missing or
/// wrong token is refused before anything else is read from it.
pub fn checked_form<T: HasCsrf>(
    state: &AppState,
    headers: &HeaderMap,
    input: FormInput<T>,
) -> Result<T, PageError> {
    let Form(form) = input.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => PageError::TooLarge,
        _ => PageError::BadForm(e.body_text()),
    })?;
    if !crate::http::csrf::check(state, headers, form.csrf_token()) {
        return Err(PageError::Csrf);
    }
    Ok(form)
}

/// A posted form kept as its name/value pairs, for forms with a repeatable
/// field (`scope` on the API key form), which `Form` cannot collect.
#[derive(Debug)]
pub struct FormPairs(Vec<(String, String)>);

impl FormPairs {
    /// The value of a single-valued field; empty when missing. A repeated
    /// one is a bad form, as `Form` would answer.
    pub fn one(&self, name: &str) -> Result<String, PageError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        match (values.next(), values.next()) {
            (None, _) => Ok(String::new()),
            (Some((_, v)), None) => Ok(v.clone()),
            (Some(_), Some(_)) => Err(PageError::BadForm(format!("`{name}` is repeated"))),
        }
    }

    /// Every value of a repeatable field, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// `checked_form` for `FormPairs`: the body must be a urlencoded form (as
/// `Form` requires) and carry exactly one valid `csrf_token`, checked before
/// anything else is read from it.
pub fn checked_pairs(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<FormPairs, PageError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => PageError::TooLarge,
        _ => PageError::BadForm(e.body_text()),
    })?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(PageError::BadForm("not a urlencoded form".into()));
    }
    let form = FormPairs(url::form_urlencoded::parse(&body).into_owned().collect());
    let token = form.one("csrf_token").map_err(|_| PageError::Csrf)?;
    if !crate::http::csrf::check(state, headers, Some(&token)) {
        return Err(PageError::Csrf);
    }
    Ok(form)
}

/// Declares a form struct whose fields are all optional strings (a missing
/// field reads as empty, so validation, not the parser, answers), plus its
/// `csrf_token`.
macro_rules! csrf_form {
    ($name:ident { $($field:ident),* $(,)? }) => {
        #[derive(Debug, ::serde::Deserialize)]
        pub struct $name {
            #[serde(default)]
            pub csrf_token: Option<String>,
            $(#[serde(default)] pub $field: String,)*
        }
        impl $crate::http::pages::HasCsrf for $name {
            fn csrf_token(&self) -> Option<&str> {
                self.csrf_token.as_deref()
            }
        }
    };
}
pub(crate) use csrf_form;

/// Forms that carry `csrf_token`.
pub trait HasCsrf {
    fn csrf_token(&self) -> Option<&str>;
}

/// The signed-in session behind the request's cookie, if live.
pub struct SignedIn {
    pub account: LiveSession,
    pub token: String,
}

/// Who is behind a request.
pub enum Visitor {
    Anonymous,
    /// Passed the password; the account has 2FA and the code is still owed.
    NeedsSecondFactor(SignedIn),
    SignedIn(SignedIn),
}

pub async fn visitor(state: &AppState, headers: &HeaderMap) -> Result<Visitor, PageError> {
    let Some(token) = session_token(state, headers) else {
        return Ok(Visitor::Anonymous);
    };
    let Some(account) = accounts::current_session(state, &token).await? else {
        return Ok(Visitor::Anonymous);
    };
    let needs_otp = second_factor::owed_for_account(state, &account).await?;
    let who = SignedIn { account, token };
    Ok(if needs_otp {
        Visitor::NeedsSecondFactor(who)
    } else {
        Visitor::SignedIn(who)
    })
}

/// The fully signed-in user, or where to send the browser instead: to the
/// code prompt when the second factor is owed, else to sign-in.
pub async fn require_signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Result<SignedIn, Response>, PageError> {
    Ok(match visitor(state, headers).await? {
        Visitor::SignedIn(who) => Ok(who),
        Visitor::NeedsSecondFactor(_) => Err(see_other("/login/2fa")),
        Visitor::Anonymous => Err(see_other("/login")),
    })
}

/// The session cookie's value in the request, if any.
pub fn session_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    cookies::get(headers, &cookies::name(cookies::SESSION, state.https()))
}

/// The session cookie carrying `token`.
pub fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    let secure = state.https();
    cookies::set(
        &cookies::name(cookies::SESSION, secure),
        token,
        Some(state.settings.session.absolute_timeout_secs),
        secure,
    )
}

/// 303 to `to` (POST → GET, RFC 9110 §15.4.4).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Adds a `Set-Cookie` to a response.
pub fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

//! Sign-up, email confirmation, sign-in and sign-out.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::{
    FormInput, Layout, Visitor, checked_form, csrf_form, message, render, respond, see_other,
    session_cookie, visitor, with_cookie,
};
use crate::http::cookies;
use crate::http::csrf::Csrf;
use crate::service::accounts::{self, FieldErrors, LinkError, LoginError};
use crate::service::totp;
use crate::state::AppState;

csrf_form!(SignupForm {
    email,
    password,
    name
});
csrf_form!(LoginForm { email, password });
csrf_form!(EmailForm { email });
csrf_form!(EmptyForm {});

// ---------------------------------------------------------------- sign-up

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    page: Layout,
    csrf_token: String,
    email: String,
    name: String,
    min_length: usize,
    email_error: Option<String>,
    password_error: Option<String>,
    name_error: Option<String>,
}

fn signup_page(
    state: &AppState,
    csrf: &Csrf,
    status: StatusCode,
    email: &str,
    name: &str,
    errors: FieldErrors,
) -> Response {
    let page = SignupPage {
        page: Layout::new(state, "Create your account"),
        csrf_token: csrf.token(state),
        email: email.to_owned(),
        name: name.to_owned(),
        min_length: state.settings.password.min_length,
        email_error: errors.email,
        password_error: errors.password,
        name_error: errors.name,
    };
    with_cookie(render(status, &page), csrf.set_cookie.clone())
}

pub async fn signup_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = Csrf::for_page(&state, &headers);
    signup_page(
        &state,
        &csrf,
        StatusCode::OK,
        "",
        "",
        FieldErrors::default(),
    )
}

pub async fn signup_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<SignupForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        match accounts::signup(&state, &form.email, &form.password, &form.name).await? {
            Ok(()) => Ok(message(
                &state,
                StatusCode::OK,
                "Check your email",
                "We sent a link to the address you entered. Open it to confirm your email address, then sign in. If the address already has an account, the email tells you how to sign in instead.",
                Some(("/login", "Go to sign in")),
            )),
            Err(errors) => {
                let csrf = Csrf::for_page(&state, &headers);
                Ok(signup_page(
                    &state,
                    &csrf,
                    StatusCode::BAD_REQUEST,
                    &form.email,
                    &form.name,
                    errors,
                ))
            }
        }
    }
    .await;
    respond(&state, result)
}

// ---------------------------------------------------------------- confirmation

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub token: String,
}

pub fn link_problem(state: &AppState, error: LinkError) -> Response {
    let (title, text) = match error {
        LinkError::Invalid => (
            "This link does not work",
            "The link is incomplete or was never issued. Copy the whole link from the email, or ask for a new one.",
        ),
        LinkError::Used => (
            "This link was already used",
            "Each link works once, and a newer link replaces older ones. If you still need to, ask for a new one.",
        ),
        LinkError::Expired => (
            "This link has expired",
            "Links from our emails work for a limited time. Ask for a new one.",
        ),
    };
    message(
        state,
        StatusCode::BAD_REQUEST,
        title,
        text,
        Some(("/login", "Go to sign in")),
    )
}

/// `GET /confirm?token=…`: the link from the confirmation email.
pub async fn confirm_get(
    State(state): State<AppState>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = query.map(|Query(q)| q.token).unwrap_or_default();
    let result = async {
        Ok(match accounts::confirm_email(&state, &token).await? {
            Ok(()) => message(
                &state,
                StatusCode::OK,
                "Email confirmed",
                "Your email address is confirmed. You can sign in now.",
                Some(("/login", "Sign in")),
            ),
            Err(e) => link_problem(&state, e),
        })
    }
    .await;
    respond(&state, result)
}

/// `POST /confirm/resend`: a new confirmation link; the same answer whether or
/// not the email has an unconfirmed account.
pub async fn confirm_resend_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<EmailForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        accounts::resend_confirmation(&state, &form.email).await?;
        Ok(message(
            &state,
            StatusCode::OK,
            "Check your email",
            "If this address belongs to an account that is not confirmed yet, we sent it a new confirmation link.",
            Some(("/login", "Go to sign in")),
        ))
    }
    .await;
    respond(&state, result)
}

// ---------------------------------------------------------------- sign-in

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Layout,
    csrf_token: String,
    email: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "unconfirmed.html")]
struct UnconfirmedPage {
    page: Layout,
    csrf_token: String,
    email: String,
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    error: Option<String>,
    notice: Option<&str>,
) -> Response {
    let csrf = Csrf::for_page(state, headers);
    let page = LoginPage {
        page: Layout::new(state, "Sign in"),
        csrf_token: csrf.token(state),
        email: email.to_owned(),
        error,
        notice: notice.map(str::to_owned),
    };
    with_cookie(render(status, &page), csrf.set_cookie)
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    pub signed_out: Option<String>,
    #[serde(default)]
    pub reset: Option<String>,
}

pub async fn login_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        match visitor(&state, &headers).await? {
            Visitor::SignedIn(_) => return Ok(see_other("/profile")),
            Visitor::NeedsSecondFactor(_) => return Ok(see_other("/login/2fa")),
            Visitor::Anonymous => {}
        }
        let query = query.ok().map(|Query(q)| q);
        let notice = match &query {
            Some(q) if q.signed_out.is_some() => Some("You are signed out."),
            Some(q) if q.reset.is_some() => Some("Your password is changed. Sign in with it."),
            _ => None,
        };
        Ok(login_page(
            &state,
            &headers,
            StatusCode::OK,
            "",
            None,
            notice,
        ))
    }
    .await;
    respond(&state, result)
}

/// The one message for a wrong email or a wrong password.
pub const LOGIN_FAILED: &str = "Wrong email or password.";

pub fn retry_after_text(secs: u64) -> String {
    let minutes = secs.div_ceil(60);
    if minutes <= 1 {
        "Too many attempts. Try again in a minute.".to_owned()
    } else {
        format!("Too many attempts. Try again in {minutes} minutes.")
    }
}

pub async fn login_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<LoginForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        Ok(match accounts::login(&state, &form.email, &form.password).await? {
            Ok(session) => {
                // With 2FA on, this session has only the password so far;
                // the code prompt completes it (and gives it a new id).
                let next = if totp::is_enabled(&state, &session.user.id).await? {
                    "/login/2fa"
                } else {
                    "/profile"
                };
                with_cookie(see_other(next), Some(session_cookie(&state, &session.token)))
            }
            Err(LoginError::Invalid) => login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                &form.email,
                Some(LOGIN_FAILED.to_owned()),
                None,
            ),
            Err(LoginError::Locked { retry_after_secs }) => {
                let mut response = login_page(
                    &state,
                    &headers,
                    StatusCode::TOO_MANY_REQUESTS,
                    &form.email,
                    Some(retry_after_text(retry_after_secs)),
                    None,
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs),
                );
                response
            }
            Err(LoginError::Unconfirmed) => {
                let csrf = Csrf::for_page(&state, &headers);
                let page = UnconfirmedPage {
                    page: Layout::new(&state, "Confirm your email first"),
                    csrf_token: csrf.token(&state),
                    email: form.email.trim().to_owned(),
                };
                with_cookie(render(StatusCode::FORBIDDEN, &page), csrf.set_cookie)
            }
            Err(LoginError::Disabled) => message(
                &state,
                StatusCode::FORBIDDEN,
                "This account is disabled",
                "An administrator has disabled this account, so it cannot sign in. Contact them if you think this is a mistake.",
                None,
            ),
        })
    }
    .await;
    respond(&state, result)
}

/// `POST /logout` from the profile page: ends the session server-side and
/// clears the cookie.
pub async fn logout_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<EmptyForm>,
) -> Response {
    let result = async {
        checked_form(&state, &headers, form)?;
        let secure = state.https();
        let name = cookies::name(cookies::SESSION, secure);
        if let Some(token) = cookies::get(&headers, &name) {
            accounts::end_session(&state, &token).await?;
        }
        let clear = cookies::set(&name, "", Some(0), secure);
        Ok(with_cookie(see_other("/login?signed_out=1"), Some(clear)))
    }
    .await;
    respond(&state, result)
}

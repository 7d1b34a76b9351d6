//! Sign-up, email confirmation and sign-in. (Sign-out is `POST /logout`, in
//! `http::oauth::logout`, together with RP-initiated logout.)

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::{
    FormInput, Layout, Visitor, checked_form, csrf_form, message, render, respond, see_other,
    session_cookie, visitor, with_cookie,
};
use crate::http::client_ip::ClientIp;
use crate::http::csrf::Csrf;
use crate::http::interaction::{after_sign_in, with_interaction};
use crate::service::accounts::{self, FieldErrors, LinkError, LoginError};
use crate::service::limits::Action;
use crate::service::{oidc, second_factor};
use crate::state::AppState;

csrf_form!(SignupForm {
    email,
    password,
    name
});
csrf_form!(LoginForm { email, password });
csrf_form!(EmailForm { email });

// ---------------------------------------------------------------- sign-up

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    page: Layout,
    csrf_token: String,
    action: String,
    login: String,
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
    interaction: Option<&str>,
    email: &str,
    name: &str,
    errors: FieldErrors,
) -> Response {
    let (action, login) = match interaction {
        Some(id) => (
            with_interaction("/signup", id),
            with_interaction("/login", id),
        ),
        None => ("/signup".to_owned(), "/login".to_owned()),
    };
    let page = SignupPage {
        page: Layout::new(state, "Create your account"),
        csrf_token: csrf.token(state),
        action,
        login,
        email: email.to_owned(),
        name: name.to_owned(),
        min_length: state.settings.password.min_length,
        email_error: errors.email,
        password_error: errors.password,
        name_error: errors.name,
    };
    with_cookie(render(status, &page), csrf.set_cookie.clone())
}

/// `?interaction=ID`: the page is part of an authorization in progress.
#[derive(Debug, Deserialize)]
pub struct FlowQuery {
    #[serde(default)]
    pub interaction: Option<String>,
}

pub type FlowInput = Result<Query<FlowQuery>, axum::extract::rejection::QueryRejection>;

pub fn flow(query: FlowInput) -> Option<String> {
    query
        .ok()
        .and_then(|Query(q)| q.interaction)
        .filter(|i| !i.is_empty())
}

pub async fn signup_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: FlowInput,
) -> Response {
    let csrf = Csrf::for_page(&state, &headers);
    let interaction = flow(query);
    signup_page(
        &state,
        &csrf,
        StatusCode::OK,
        interaction.as_deref(),
        "",
        "",
        FieldErrors::default(),
    )
}

pub async fn signup_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query: FlowInput,
    form: FormInput<SignupForm>,
) -> Response {
    let interaction = flow(query);
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        if let Some(limited) = super::address_limit(&state, Action::SignUp, ip.as_deref()).await? {
            return Ok(limited);
        }
        let signed_up = accounts::signup(
            &state,
            &form.email,
            &form.password,
            &form.name,
            interaction.as_deref(),
        )
        .await?;
        match signed_up {
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
                    interaction.as_deref(),
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
    #[serde(default)]
    pub interaction: Option<String>,
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
    let (token, interaction) = query
        .map(|Query(q)| (q.token, q.interaction))
        .unwrap_or_default();
    let result = async {
        // Back into the authorization that the sign-up started from, if any.
        let sign_in = match interaction.as_deref() {
            Some(id) if !id.is_empty() => with_interaction("/login", id),
            _ => "/login".to_owned(),
        };
        Ok(match accounts::confirm_email(&state, &token).await? {
            Ok(()) => message(
                &state,
                StatusCode::OK,
                "Email confirmed",
                "Your email address is confirmed. You can sign in now.",
                Some((&sign_in, "Sign in")),
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
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<EmailForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        if let Some(limited) =
            super::address_limit(&state, Action::ConfirmationResend, ip.as_deref()).await?
        {
            return Ok(limited);
        }
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
    /// `/login`, or `/login?interaction=ID` during an authorization.
    action: String,
    signup: String,
    email: String,
    error: Option<String>,
    notice: Option<String>,
    /// "Sign in with a passkey", where passkeys are offered.
    passkey: Option<super::PasskeyElement>,
}

#[derive(Template)]
#[template(path = "unconfirmed.html")]
struct UnconfirmedPage {
    page: Layout,
    csrf_token: String,
    email: String,
}

#[allow(clippy::too_many_arguments)]
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    interaction: Option<&str>,
    email: &str,
    error: Option<String>,
    notice: Option<&str>,
) -> Response {
    let csrf = Csrf::for_page(state, headers);
    let (action, signup) = match interaction {
        Some(id) => (
            with_interaction("/login", id),
            with_interaction("/signup", id),
        ),
        None => ("/login".to_owned(), "/signup".to_owned()),
    };
    let csrf_token = csrf.token(state);
    let passkey = state
        .webauthn
        .is_some()
        .then(|| super::passkeys::passwordless_element(interaction));
    let mut layout = Layout::new(state, "Sign in");
    if passkey.is_some() {
        layout = layout.with_script(&csrf_token);
    }
    let page = LoginPage {
        page: layout,
        csrf_token,
        action,
        signup,
        email: email.to_owned(),
        error,
        notice: notice.map(str::to_owned),
        passkey,
    };
    with_cookie(render(status, &page), csrf.set_cookie)
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    pub signed_out: Option<String>,
    #[serde(default)]
    pub reset: Option<String>,
    #[serde(default)]
    pub interaction: Option<String>,
}

pub async fn login_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let query = query.ok().map(|Query(q)| q);
        let interaction = query.as_ref().and_then(|q| q.interaction.clone());
        // During an authorization the form is shown even to a signed-in
        // browser: prompt=login and max_age send people here for a new sign-in.
        let mut email = String::new();
        match &interaction {
            Some(id) => {
                if let Some(found) = oidc::find_interaction(&state, id).await? {
                    email = found.request.login_hint.unwrap_or_default();
                }
            }
            None => match visitor(&state, &headers).await? {
                Visitor::SignedIn(_) => return Ok(see_other("/profile")),
                Visitor::NeedsSecondFactor(_) => return Ok(see_other("/login/2fa")),
                Visitor::Anonymous => {}
            },
        }
        let notice = match &query {
            Some(q) if q.signed_out.is_some() => Some("You are signed out."),
            Some(q) if q.reset.is_some() => Some(
                "Your password is changed. You are signed out everywhere, and every app's access and your API keys are revoked. Sign in with the new password.",
            ),
            _ => None,
        };
        Ok(login_page(
            &state,
            &headers,
            StatusCode::OK,
            interaction.as_deref(),
            &email,
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
    ip: ClientIp,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
    form: FormInput<LoginForm>,
) -> Response {
    let interaction = query.ok().and_then(|Query(q)| q.interaction);
    let interaction = interaction.as_deref();
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        Ok(match accounts::login(&state, &form.email, &form.password, ip.as_deref()).await? {
            Ok(session) => {
                // A sign-in replaces whatever session this browser had.
                if let Some(old) = super::session_token(&state, &headers) {
                    accounts::end_session(&state, &old).await?;
                }
                // With 2FA on, this session has only the password so far;
                // the code prompt completes it (and gives it a new id).
                let next = if second_factor::enrolled(&state, session.user_id()).await? {
                    match interaction {
                        Some(id) => with_interaction("/login/2fa", id),
                        None => "/login/2fa".to_owned(),
                    }
                } else {
                    after_sign_in(interaction)
                };
                with_cookie(see_other(&next), Some(session_cookie(&state, &session.token)))
            }
            Err(LoginError::Invalid) => login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                interaction,
                &form.email,
                Some(LOGIN_FAILED.to_owned()),
                None,
            ),
            Err(LoginError::Locked { retry_after_secs }) => {
                let mut response = login_page(
                    &state,
                    &headers,
                    StatusCode::TOO_MANY_REQUESTS,
                    interaction,
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

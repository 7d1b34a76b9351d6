//! `/password/forgot` and `/password/reset`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::account::{TokenQuery, link_problem};
use super::{
    FormInput, Layout, checked_form, csrf_form, message, render, respond, see_other, with_cookie,
};
use crate::http::client_ip::ClientIp;
use crate::http::csrf::Csrf;
use crate::service::accounts::{self, ResetError};
use crate::service::limits::Action;
use crate::state::AppState;

csrf_form!(ForgotForm { email });
csrf_form!(ResetForm { token, password });

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    page: Layout,
    csrf_token: String,
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    page: Layout,
    csrf_token: String,
    token: String,
    min_length: usize,
    error: Option<String>,
}

pub async fn forgot_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = Csrf::for_page(&state, &headers);
    let page = ForgotPage {
        page: Layout::new(&state, "Reset your password"),
        csrf_token: csrf.token(&state),
        email: String::new(),
        error: None,
    };
    with_cookie(render(StatusCode::OK, &page), csrf.set_cookie)
}

pub async fn forgot_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<ForgotForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        if let Some(error) = accounts::check_email(&form.email) {
            let csrf = Csrf::for_page(&state, &headers);
            let page = ForgotPage {
                page: Layout::new(&state, "Reset your password"),
                csrf_token: csrf.token(&state),
                email: form.email.clone(),
                error: Some(error),
            };
            return Ok(with_cookie(render(StatusCode::BAD_REQUEST, &page), csrf.set_cookie));
        }
        if let Some(limited) =
            super::address_limit(&state, Action::PasswordResetRequest, ip.as_deref()).await?
        {
            return Ok(limited);
        }
        accounts::request_password_reset(&state, &form.email).await?;
        Ok(message(
            &state,
            StatusCode::OK,
            "Check your email",
            "If this address belongs to an account, we sent it a link to choose a new password. The link works once and expires soon.",
            Some(("/login", "Back to sign in")),
        ))
    }
    .await;
    respond(&state, result)
}

fn reset_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    token: &str,
    error: Option<String>,
) -> Response {
    let csrf = Csrf::for_page(state, headers);
    let page = ResetPage {
        page: Layout::new(state, "Choose a new password"),
        csrf_token: csrf.token(state),
        token: token.to_owned(),
        min_length: state.settings.password.min_length,
        error,
    };
    with_cookie(render(status, &page), csrf.set_cookie)
}

/// `GET /password/reset?token=…`: the form, when the link is still good.
pub async fn reset_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = query.map(|Query(q)| q.token).unwrap_or_default();
    let result = async {
        Ok(match accounts::check_reset_link(&state, &token).await? {
            Ok(()) => reset_page(&state, &headers, StatusCode::OK, &token, None),
            Err(e) => link_problem(&state, e),
        })
    }
    .await;
    respond(&state, result)
}

pub async fn reset_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<ResetForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        Ok(
            match accounts::reset_password(&state, &form.token, &form.password).await? {
                Ok(()) => see_other("/login?reset=1"),
                Err(ResetError::Password(error)) => reset_page(
                    &state,
                    &headers,
                    StatusCode::BAD_REQUEST,
                    &form.token,
                    Some(error),
                ),
                Err(ResetError::Link(e)) => link_problem(&state, e),
            },
        )
    }
    .await;
    respond(&state, result)
}

//! Two-factor authentication pages: the sign-in challenge (`/login/2fa`),
//! activation by QR code, recovery codes and deactivation (`/profile/2fa/…`).

use crate::auth::factor::Factor;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::account::{FlowInput, flow};
use super::profile::{ProfileSections, TwoFactorStatus, profile_page};
use super::{
    FormInput, Layout, PageError, SignedIn, Visitor, checked_form, csrf_form, render,
    require_signed_in, respond, see_other, session_cookie, visitor, with_cookie,
};
use crate::http::client_ip::ClientIp;
use crate::http::csrf::Csrf;
use crate::http::interaction::{after_sign_in, with_interaction};
use crate::service::accounts;
use crate::service::totp::{self, CodeError, DeactivateError};
use crate::state::AppState;

csrf_form!(CodeForm { code });
csrf_form!(DeactivateForm { password, code });

/// What a person is told about a rejected code.
pub(super) fn code_problem(error: &CodeError) -> String {
    match error {
        CodeError::Invalid => {
            "That code is not right. Enter the code your app shows now; each code works once."
                .to_owned()
        }
        CodeError::Locked { retry_after_secs } => {
            let minutes = retry_after_secs.div_ceil(60);
            if minutes <= 1 {
                "Too many wrong codes. Try again in a minute.".to_owned()
            } else {
                format!("Too many wrong codes. Try again in {minutes} minutes.")
            }
        }
        CodeError::NoCredential => {
            "Two-factor authentication is not set up for this account any more. Reload the page."
                .to_owned()
        }
    }
}

/// 401 for a wrong code, 429 with `Retry-After` when locked.
pub(super) fn code_status(error: &CodeError) -> StatusCode {
    match error {
        CodeError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
        CodeError::Invalid => StatusCode::UNAUTHORIZED,
        CodeError::NoCredential => StatusCode::CONFLICT,
    }
}

pub(super) fn with_retry_after(mut response: Response, error: &CodeError) -> Response {
    if let CodeError::Locked { retry_after_secs } = error {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    response
}

/// Pages that show a secret are never stored by caches or the back button.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---------------------------------------------------------------- sign-in challenge

#[derive(Template)]
#[template(path = "login_2fa.html")]
struct ChallengePage {
    page: Layout,
    csrf_token: String,
    action: String,
    error: Option<String>,
}

fn in_flow(path: &str, interaction: Option<&str>) -> String {
    match interaction {
        Some(id) => with_interaction(path, id),
        None => path.to_owned(),
    }
}

fn challenge_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    interaction: Option<&str>,
    error: Option<String>,
) -> Response {
    let page = ChallengePage {
        page: Layout::new(state, "Enter your code"),
        csrf_token: Csrf::for_session(&who.token).token(state),
        action: in_flow("/login/2fa", interaction),
        error,
    };
    render(status, &page)
}

pub async fn login_2fa_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: FlowInput,
) -> Response {
    let interaction = flow(query);
    let interaction = interaction.as_deref();
    let result = async {
        // The prompt is for a 2FA account whose session has only the password.
        Ok(match visitor(&state, &headers).await? {
            Visitor::NeedsSecondFactor(who) => {
                challenge_page(&state, &who, StatusCode::OK, interaction, None)
            }
            Visitor::SignedIn(_) => see_other(&after_sign_in(interaction)),
            Visitor::Anonymous => see_other(&in_flow("/login", interaction)),
        })
    }
    .await;
    respond(&state, result)
}

pub async fn login_2fa_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query: FlowInput,
    form: FormInput<CodeForm>,
) -> Response {
    let interaction = flow(query);
    let interaction = interaction.as_deref();
    let result = async {
        let who = match visitor(&state, &headers).await? {
            Visitor::NeedsSecondFactor(who) => who,
            Visitor::SignedIn(_) => return Ok(see_other(&after_sign_in(interaction))),
            Visitor::Anonymous => return Ok(see_other(&in_flow("/login", interaction))),
        };
        let form = checked_form(&state, &headers, form)?;
        match totp::verify_second_factor(&state, &who.account, &form.code, ip.as_deref()).await? {
            Ok(passed) => {
                let token =
                    accounts::add_second_factor(&state, &who.token, &who.account, passed.factor())
                        .await?;
                tracing::info!(user_id = %who.account.user_id(), "second factor passed");
                Ok(with_cookie(
                    see_other(&after_sign_in(interaction)),
                    Some(session_cookie(&state, &token)),
                ))
            }
            Err(error) => Ok(with_retry_after(
                challenge_page(
                    &state,
                    &who,
                    code_status(&error),
                    interaction,
                    Some(code_problem(&error)),
                ),
                &error,
            )),
        }
    }
    .await;
    respond(&state, result)
}

// ---------------------------------------------------------------- activation

#[derive(Template)]
#[template(path = "totp_activate.html")]
struct ActivatePage {
    page: Layout,
    csrf_token: String,
    action: String,
    qr_svg: String,
    secret: String,
    digits: u8,
    period: u64,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage {
    page: Layout,
    heading: String,
    lead: String,
    codes: Vec<String>,
    /// During an authorization: the "Continue" form back into it.
    continue_action: Option<String>,
    csrf_token: String,
}

/// The QR code as inline SVG, without the XML prolog, labelled for screen readers.
fn qr_svg(uri: &str) -> Result<String, PageError> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| PageError::Internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code to scan with your authenticator app\" ",
        1,
    ))
}

async fn activate_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    interaction: Option<&str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    // A new visit starts afresh; a page shown again after a wrong code keeps
    // the secret the app has just scanned.
    let activation = match error {
        None => totp::begin_activation(state, &who.account).await?,
        Some(_) => totp::current_activation(state, &who.account).await?,
    };
    let Some(activation) = activation else {
        // Already on: nothing to activate.
        return Ok(see_other(&after_sign_in(interaction)));
    };
    let params = state.settings.totp.params();
    let page = ActivatePage {
        page: Layout::new(state, "Activate two-factor authentication"),
        csrf_token: Csrf::for_session(&who.token).token(state),
        action: in_flow("/profile/2fa/activate", interaction),
        qr_svg: qr_svg(&activation.otpauth_uri)?,
        secret: activation.secret_base32,
        digits: params.digits,
        period: params.period_secs,
        error,
    };
    Ok(no_store(render(status, &page)))
}

pub async fn activate_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: FlowInput,
) -> Response {
    let interaction = flow(query);
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        activate_page(&state, &who, StatusCode::OK, interaction.as_deref(), None).await
    }
    .await;
    respond(&state, result)
}

pub async fn activate_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query: FlowInput,
    form: FormInput<CodeForm>,
) -> Response {
    let interaction = flow(query);
    let interaction = interaction.as_deref();
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        match totp::confirm_activation(&state, &who.account, &form.code, ip.as_deref())
            .await? {
            Ok(codes) => {
                // The code proved the second factor: this session now has it.
                let token =
                    accounts::add_second_factor(&state, &who.token, &who.account, Factor::Totp)
                        .await?;
                let page = RecoveryCodesPage {
                    page: Layout::new(&state, "Two-factor authentication is on"),
                    heading: "Two-factor authentication is on".into(),
                    lead: "Your account is secured: from now on, signing in asks for a code from your app.".into(),
                    codes,
                    continue_action: interaction
                        .map(|id| with_interaction("/authorize/resume", id)),
                    // The form posts with the renewed session's cookie.
                    csrf_token: Csrf::for_session(&token).token(&state),
                };
                Ok(with_cookie(
                    no_store(render(StatusCode::OK, &page)),
                    Some(session_cookie(&state, &token)),
                ))
            }
            Err(CodeError::NoCredential) => Ok(see_other(&after_sign_in(interaction))),
            Err(error) => Ok(with_retry_after(
                activate_page(
                    &state,
                    &who,
                    code_status(&error),
                    interaction,
                    Some(code_problem(&error)),
                )
                .await?,
                &error,
            )),
        }
    }
    .await;
    respond(&state, result)
}

// ---------------------------------------------------------------- management

async fn profile_with(
    state: &AppState,
    who: &SignedIn,
    error: &CodeError,
    place: impl FnOnce(&mut TwoFactorStatus, String),
) -> Result<Response, PageError> {
    let mut sections = ProfileSections::load(state, who.account.user_id()).await?;
    let Some(status) = sections.two_factor.as_mut() else {
        return Ok(see_other("/profile"));
    };
    place(status, code_problem(error));
    Ok(with_retry_after(
        profile_page(
            state,
            who,
            code_status(error),
            who.account.name(),
            None,
            None,
            sections,
        ),
        error,
    ))
}

pub async fn recovery_codes_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<CodeForm>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        match totp::regenerate_recovery_codes(&state, &who.account, &form.code, ip.as_deref())
            .await?
        {
            Ok(codes) => {
                let page = RecoveryCodesPage {
                    page: Layout::new(&state, "New recovery codes"),
                    heading: "New recovery codes".into(),
                    lead: "Your old recovery codes no longer work.".into(),
                    codes,
                    continue_action: None,
                    csrf_token: String::new(),
                };
                Ok(no_store(render(StatusCode::OK, &page)))
            }
            Err(CodeError::NoCredential) => Ok(see_other("/profile")),
            Err(error) => {
                profile_with(&state, &who, &error, |s, e| s.regenerate_error = Some(e)).await
            }
        }
    }
    .await;
    respond(&state, result)
}

pub async fn deactivate_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<DeactivateForm>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        match totp::deactivate(
            &state,
            &who.account,
            &form.password,
            &form.code,
            ip.as_deref(),
        )
        .await?
        {
            Ok(()) => Ok(see_other("/profile?two_factor=off")),
            Err(DeactivateError::WrongPassword) => {
                // Shown like a wrong code: the form does not say which was wrong first.
                profile_with(&state, &who, &CodeError::Invalid, |s, _| {
                    s.deactivate_error =
                        Some("The password or the code is not right. Nothing was changed.".into())
                })
                .await
            }
            Err(DeactivateError::Code(CodeError::NoCredential)) => Ok(see_other("/profile")),
            Err(DeactivateError::Code(error)) => {
                profile_with(&state, &who, &error, |s, e| {
                    s.deactivate_error = Some(match error {
                        CodeError::Locked { .. } => e,
                        _ => "The password or the code is not right. Nothing was changed.".into(),
                    })
                })
                .await
            }
        }
    }
    .await;
    respond(&state, result)
}

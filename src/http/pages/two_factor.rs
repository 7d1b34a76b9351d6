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
    FormInput, Layout, PageError, PasskeyElement, SignedIn, Visitor, checked_form, csrf_form,
    render, require_signed_in, respond, see_other, session_cookie, visitor, with_cookie,
};
use crate::http::client_ip::ClientIp;
use crate::http::csrf::Csrf;
use crate::http::interaction::{after_sign_in, with_interaction};
use crate::service::totp::{self, CodeError, DeactivateError};
use crate::service::{accounts, second_factor};
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
    /// The first passkey was just added on this session.
    added: bool,
    /// The user has TOTP: the code form is shown.
    has_totp: bool,
    /// The user has a passkey: it is offered beside the code.
    passkey: Option<PasskeyElement>,
}

fn in_flow(path: &str, interaction: Option<&str>) -> String {
    match interaction {
        Some(id) => with_interaction(path, id),
        None => path.to_owned(),
    }
}

/// What the challenge page says above its forms.
enum Prompted {
    /// A wrong code, a lock.
    Error(String),
    /// The first passkey was just added: use it once.
    Added,
}

async fn challenge_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    interaction: Option<&str>,
    prompted: Option<Prompted>,
) -> Result<Response, PageError> {
    let added = matches!(prompted, Some(Prompted::Added));
    let error = match prompted {
        Some(Prompted::Error(e)) => Some(e),
        _ => None,
    };
    let user_id = who.account.user_id();
    let has_totp = totp::is_enabled(state, user_id).await?;
    let passkey = (state.webauthn.is_some() && second_factor::has_passkey(state, user_id).await?)
        .then(|| {
            super::passkeys::verify_element(
                interaction,
                added.then_some("passkeys"),
                if has_totp { "secondary" } else { "primary" },
            )
        });
    let csrf_token = Csrf::for_session(&who.token).token(state);
    let mut layout = Layout::new(
        state,
        if has_totp {
            "Enter your code"
        } else {
            "Use your passkey"
        },
    );
    if passkey.is_some() {
        layout = layout.with_script(&csrf_token);
    }
    let page = ChallengePage {
        page: layout,
        csrf_token,
        action: in_flow("/login/2fa", interaction),
        error,
        added,
        has_totp,
        passkey,
    };
    Ok(render(status, &page))
}

pub async fn login_2fa_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    query: FlowInput,
) -> Response {
    let interaction = flow(query);
    let interaction = interaction.as_deref();
    // `?added=1`: the user's first passkey was just added on this session;
    // it has not been used yet (registration proves no possession with
    // attestation "none"), so it is asked for once, back to the list.
    let added = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "added=1"));
    let result = async {
        // The prompt is for a 2FA account whose session has only the password.
        Ok(match visitor(&state, &headers).await? {
            Visitor::NeedsSecondFactor(who) if added && interaction.is_none() => {
                challenge_page(&state, &who, StatusCode::OK, None, Some(Prompted::Added)).await?
            }
            Visitor::NeedsSecondFactor(who) => {
                challenge_page(&state, &who, StatusCode::OK, interaction, None).await?
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
                    Some(Prompted::Error(code_problem(&error))),
                )
                .await?,
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
    /// In an authorization that needs a second factor, where passkeys are
    /// offered: the way to add one instead.
    passkey_link: Option<String>,
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
        passkey_link: interaction
            .filter(|_| state.webauthn.is_some())
            .map(|id| with_interaction("/profile/passkeys", id)),
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

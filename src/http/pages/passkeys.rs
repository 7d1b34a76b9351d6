//! Passkeys on the web: `/profile/passkeys` (list, add, rename, remove),
//! "Sign in with a passkey" (`/login/passkey/…`), the passkey as the
//! second factor and as the fresh factor a change needs
//! (`/login/2fa/passkey/…`), and the step-up page a phishing-resistant
//! sign-in asks for (`/login/passkey`).
//!
//! The ceremony endpoints speak JSON, as `assets/webauthn.js` (and any
//! script or software authenticator) calls them: `options` answers
//! `{"publicKey": {...}}`, `finish` takes the credential and answers
//! `{"redirect": URL}`, or a 4xx `{"error", "error_description"}`. The
//! CSRF token travels in `X-CSRF-Token`.

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::retry_after_text;
use super::api_keys::date;
use super::two_factor::{code_problem, code_status, with_retry_after};
use super::{
    FormInput, Layout, PageError, PasskeyElement, SignedIn, Visitor, checked_form, csrf_form,
    render, require_signed_in, respond, see_other, session_cookie, visitor, with_cookie,
};
use crate::auth::factor::Factor;
use crate::http::client_ip::ClientIp;
use crate::http::csrf::{self, Csrf};
use crate::http::interaction::{after_sign_in, with_interaction};
use crate::service::accounts::{self, ReauthError, ReauthFor};
use crate::service::passkeys::{self, PasskeyView, Refused};
use crate::service::second_factor::{self, Reauth};
use crate::service::totp::{self, CodeError};
use crate::state::AppState;

const PATH: &str = "/profile/passkeys";

csrf_form!(ConfirmForm { code, password });
csrf_form!(RenameForm {
    credential_id,
    name
});
csrf_form!(RemoveForm { credential_id });

/// `?interaction=ID` (an authorization in progress), `?then=` (where a
/// fresh-factor check returns: `passkeys` or `api-keys`), `?done=` (what
/// the page reports).
#[derive(Debug, Default, Deserialize)]
pub struct PasskeyQuery {
    #[serde(default)]
    interaction: Option<String>,
    #[serde(default)]
    then: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

pub type PasskeyInput = Result<Query<PasskeyQuery>, QueryRejection>;

fn query(input: PasskeyInput) -> PasskeyQuery {
    input.map(|Query(q)| q).unwrap_or_default()
}

impl PasskeyQuery {
    fn interaction(&self) -> Option<&str> {
        self.interaction.as_deref().filter(|i| !i.is_empty())
    }
}

fn in_flow(path: &str, interaction: Option<&str>) -> String {
    match interaction {
        Some(id) => with_interaction(path, id),
        None => path.to_owned(),
    }
}

// ---------------------------------------------------------------- JSON

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    no_store(
        (
            status,
            Json(json!({ "error": code, "error_description": description })),
        )
            .into_response(),
    )
}

fn refused(refusal: &Refused) -> Response {
    let mut response = json_error(
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST),
        refusal.code(),
        &refusal.description(),
    );
    if let Refused::Limited { retry_after_secs } = refusal {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(*retry_after_secs),
        );
    }
    response
}

fn options(result: Result<Value, Refused>) -> Response {
    match result {
        Ok(options) => no_store(Json(options).into_response()),
        Err(refusal) => refused(&refusal),
    }
}

fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response {
    with_cookie(
        no_store(Json(json!({ "redirect": to })).into_response()),
        cookie,
    )
}

fn csrf_refused() -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        "invalid_csrf_token",
        "the X-CSRF-Token header is missing or out of date: reload the page",
    )
}

fn not_signed_in() -> Response {
    json_error(StatusCode::UNAUTHORIZED, "login_required", "sign in first")
}

/// A JSON endpoint's result: failures beneath are logged and answered as
/// `server_error`, never as a page.
fn json_respond(result: Result<Response, PageError>) -> Response {
    result.unwrap_or_else(|error| match error {
        PageError::Csrf => csrf_refused(),
        PageError::TooLarge => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the body is too large",
        ),
        PageError::BadForm(reason) => {
            json_error(StatusCode::BAD_REQUEST, "invalid_request", &reason)
        }
        PageError::Unavailable(reason) => {
            tracing::warn!(%reason, "database unavailable");
            crate::http::error::with_retry_after(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the service is temporarily unavailable; try again shortly",
            ))
        }
        PageError::Internal(reason) => {
            tracing::error!(%reason, "passkey endpoint failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "something went wrong; try again",
            )
        }
    })
}

/// The request body, its CSRF header checked first.
fn checked_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, PageError> {
    if !csrf::check_header(state, headers) {
        return Err(PageError::Csrf);
    }
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => PageError::TooLarge,
        _ => PageError::BadForm(e.body_text()),
    })
}

// ---------------------------------------------------------------- passwordless

pub async fn passwordless_options(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    json_respond(
        async {
            checked_body(&state, &headers, body)?;
            let binding = csrf::binding(&state, &headers).ok_or(PageError::Csrf)?;
            Ok(options(
                passkeys::begin_passwordless(&state, &binding, ip.as_deref()).await?,
            ))
        }
        .await,
    )
}

pub async fn passwordless_finish(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query_input: PasskeyInput,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let q = query(query_input);
    json_respond(
        async {
            let body = checked_body(&state, &headers, body)?;
            let binding = csrf::binding(&state, &headers).ok_or(PageError::Csrf)?;
            Ok(
                match passkeys::finish_passwordless(&state, &binding, &body, ip.as_deref()).await? {
                    Ok(session) => redirect(
                        &after_sign_in(q.interaction()),
                        Some(session_cookie(&state, &session.token)),
                    ),
                    Err(refusal) => refused(&refusal),
                },
            )
        }
        .await,
    )
}

// ---------------------------------------------------------------- verification

/// The session behind a verification: one owing its second factor, or a
/// signed-in one proving a fresh factor.
async fn any_session(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, PageError> {
    Ok(match visitor(state, headers).await? {
        Visitor::NeedsSecondFactor(who) | Visitor::SignedIn(who) => Some(who),
        Visitor::Anonymous => None,
    })
}

pub async fn verify_options(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    json_respond(
        async {
            checked_body(&state, &headers, body)?;
            let Some(who) = any_session(&state, &headers).await? else {
                return Ok(not_signed_in());
            };
            Ok(options(
                passkeys::begin_verify(&state, &who.account, &who.token, ip.as_deref()).await?,
            ))
        }
        .await,
    )
}

pub async fn verify_finish(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query_input: PasskeyInput,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let q = query(query_input);
    json_respond(
        async {
            let body = checked_body(&state, &headers, body)?;
            let Some(who) = any_session(&state, &headers).await? else {
                return Ok(not_signed_in());
            };
            match passkeys::finish_verify(&state, &who.account, &who.token, &body, ip.as_deref())
                .await?
            {
                Ok(()) => {
                    let token = accounts::add_second_factor(
                        &state,
                        &who.token,
                        &who.account,
                        Factor::Passkey,
                    )
                    .await?;
                    tracing::info!(user_id = %who.account.user_id(), "passkey passed");
                    let to = match (q.interaction(), q.then.as_deref()) {
                        (Some(id), _) => after_sign_in(Some(id)),
                        (None, Some("passkeys")) => format!("{PATH}?done=verified"),
                        (None, Some("api-keys")) => "/profile/api-keys".to_owned(),
                        (None, _) => after_sign_in(None),
                    };
                    Ok(redirect(&to, Some(session_cookie(&state, &token))))
                }
                Err(refusal) => Ok(refused(&refusal)),
            }
        }
        .await,
    )
}

/// The element that uses one of the signed-in user's passkeys, returning
/// to `interaction` or to `then`.
pub(super) fn verify_element(
    interaction: Option<&str>,
    then: Option<&str>,
    class: &'static str,
) -> PasskeyElement {
    let finish = match (interaction, then) {
        (Some(id), _) => with_interaction("/login/2fa/passkey/finish", id),
        (None, Some(then)) => format!("/login/2fa/passkey/finish?then={then}"),
        (None, None) => "/login/2fa/passkey/finish".to_owned(),
    };
    PasskeyElement {
        options_url: "/login/2fa/passkey/options".into(),
        finish_url: finish,
        mode: "get",
        conditional: false,
        label: "Use a passkey",
        class,
    }
}

/// The element for "Sign in with a passkey" on the sign-in page.
pub(super) fn passwordless_element(interaction: Option<&str>) -> PasskeyElement {
    PasskeyElement {
        options_url: "/login/passkey/options".into(),
        finish_url: in_flow("/login/passkey/finish", interaction),
        mode: "get",
        conditional: true,
        label: "Sign in with a passkey",
        class: "secondary",
    }
}

#[derive(Template)]
#[template(path = "login_passkey.html")]
struct StepUpPage {
    page: Layout,
    csrf_token: String,
    passkey: PasskeyElement,
}

/// `GET /login/passkey?interaction=ID`: a relying party asked for a
/// phishing-resistant sign-in (`acr_values=urn:stepgate:acr:phr`), and the
/// user has a passkey: use it.
pub async fn step_up_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query_input: PasskeyInput,
) -> Response {
    let q = query(query_input);
    let interaction = q.interaction();
    let result = async {
        let Some(who) = any_session(&state, &headers).await? else {
            return Ok(see_other(&in_flow("/login", interaction)));
        };
        if state.webauthn.is_none()
            || !second_factor::has_passkey(&state, who.account.user_id()).await?
        {
            // Nothing to use here: the authorization decides what next.
            return Ok(see_other(&after_sign_in(interaction)));
        }
        let csrf_token = Csrf::for_session(&who.token).token(&state);
        let page = StepUpPage {
            page: Layout::new(&state, "Use your passkey").with_script(&csrf_token),
            csrf_token,
            passkey: verify_element(interaction, None, "primary"),
        };
        Ok(render(StatusCode::OK, &page))
    }
    .await;
    respond(&state, result)
}

// ---------------------------------------------------------------- the profile page

/// A passkey as the list shows it.
struct PasskeyRow {
    credential_id: String,
    name: String,
    created: String,
    last_used: String,
    synced: bool,
}

impl PasskeyRow {
    fn of(view: PasskeyView) -> Self {
        Self {
            created: date(view.created_at),
            last_used: view.last_used_at.map_or_else(|| "Never".to_owned(), date),
            credential_id: view.credential_id,
            name: view.name,
            synced: view.synced,
        }
    }
}

/// What the page asks before a passkey can be added or removed.
struct Confirm {
    /// Ask for the 6-digit code (the user has TOTP).
    code: bool,
    /// Ask for the password (the user has no second factor).
    password: bool,
}

#[derive(Template)]
#[template(path = "passkeys.html")]
struct PasskeysPage {
    page: Layout,
    csrf_token: String,
    passkeys: Vec<PasskeyRow>,
    /// Passkeys are offered on this server.
    available: bool,
    /// The registration element, when a passkey can be added now.
    add: Option<PasskeyElement>,
    at_limit: bool,
    max: u32,
    /// The fresh factor asked first, when one is needed.
    confirm: Option<Confirm>,
    /// Confirming with a passkey (the user has one): the element.
    confirm_passkey: Option<PasskeyElement>,
    confirm_action: String,
    in_flow: bool,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// What a page shows besides the list.
#[derive(Default)]
struct Shown {
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn passkeys_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    interaction: Option<&str>,
    shown: Shown,
) -> Result<Response, PageError> {
    let user_id = who.account.user_id();
    let list: Vec<PasskeyRow> = passkeys::list(state, user_id)
        .await?
        .into_iter()
        .map(PasskeyRow::of)
        .collect();
    let available = state.webauthn.is_some();
    let max = state.settings.passkeys.max_per_user;
    let at_limit = list.len() as u64 >= u64::from(max);
    let reauth = second_factor::reauth_needed(state, &who.account).await?;
    let (confirm, confirm_passkey) = match reauth {
        None => (None, None),
        Some(Reauth::Password) => (
            Some(Confirm {
                code: false,
                password: true,
            }),
            None,
        ),
        Some(Reauth::SecondFactor) => (
            Some(Confirm {
                code: totp::is_enabled(state, user_id).await?,
                password: false,
            }),
            (available && !list.is_empty())
                .then(|| verify_element(interaction, Some("passkeys"), "secondary")),
        ),
    };
    let add = (available && !at_limit && confirm.is_none()).then(|| PasskeyElement {
        options_url: "/profile/passkeys/options".into(),
        finish_url: in_flow("/profile/passkeys/finish", interaction),
        mode: "create",
        conditional: false,
        label: "Add a passkey",
        class: "primary",
    });
    let csrf_token = Csrf::for_session(&who.token).token(state);
    let mut layout = Layout::new(state, "Passkeys");
    if add.is_some() || confirm_passkey.is_some() {
        layout = layout.with_script(&csrf_token);
    }
    let page = PasskeysPage {
        page: layout,
        csrf_token,
        passkeys: list,
        available,
        add,
        at_limit,
        max,
        confirm,
        confirm_passkey,
        confirm_action: in_flow("/profile/passkeys/confirm", interaction),
        in_flow: interaction.is_some(),
        notice: shown.notice,
        error: shown.error,
    };
    Ok(render(status, &page))
}

pub async fn passkeys_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query_input: PasskeyInput,
) -> Response {
    let q = query(query_input);
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let notice = match q.done.as_deref() {
            Some("added") => Some("Your passkey was added. You can now sign in with it."),
            Some("removed") => Some("The passkey was removed."),
            Some("renamed") => Some("The passkey was renamed."),
            Some("verified") => Some("Your passkey works."),
            _ => None,
        };
        passkeys_page(
            &state,
            &who,
            StatusCode::OK,
            q.interaction(),
            Shown {
                notice,
                error: None,
            },
        )
        .await
    }
    .await;
    respond(&state, result)
}

/// The fully signed-in user behind a JSON request.
async fn signed_in_json(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SignedIn>, PageError> {
    Ok(match visitor(state, headers).await? {
        Visitor::SignedIn(who) => Some(who),
        _ => None,
    })
}

pub async fn register_options(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    json_respond(
        async {
            checked_body(&state, &headers, body)?;
            let Some(who) = signed_in_json(&state, &headers).await? else {
                return Ok(not_signed_in());
            };
            // NIST SP 800-63B §6.1.2.1: an authenticator is bound only
            // after one the account already has was proved, freshly.
            if second_factor::reauth_needed(&state, &who.account)
                .await?
                .is_some()
            {
                return Ok(json_error(
                    StatusCode::FORBIDDEN,
                    "reauthentication_required",
                    "confirm it is you first (your code, a passkey or your password)",
                ));
            }
            Ok(options(
                passkeys::begin_registration(&state, &who.account, &who.token, ip.as_deref())
                    .await?,
            ))
        }
        .await,
    )
}

pub async fn register_finish(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query_input: PasskeyInput,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let q = query(query_input);
    json_respond(
        async {
            let body = checked_body(&state, &headers, body)?;
            let Some(who) = signed_in_json(&state, &headers).await? else {
                return Ok(not_signed_in());
            };
            Ok(
                match passkeys::finish_registration(
                    &state,
                    &who.account,
                    &who.token,
                    &body,
                    ip.as_deref(),
                )
                .await?
                {
                    // In an authorization, it decides what follows (a
                    // phishing-resistant sign-in then asks for the new
                    // passkey to be used).
                    Ok(_) => match q.interaction() {
                        Some(id) => redirect(&after_sign_in(Some(id)), None),
                        // The account's first second factor: this session
                        // has not passed it, and a registration (attestation
                        // "none") proves no possession; it is used once now.
                        None if !second_factor::session_has_second_factor(&who.account) => {
                            redirect("/login/2fa?added=1", None)
                        }
                        None => redirect(&format!("{PATH}?done=added"), None),
                    },
                    Err(refusal) => refused(&refusal),
                },
            )
        }
        .await,
    )
}

/// `POST /profile/passkeys/confirm`: the fresh factor before a passkey is
/// added or removed: the 6-digit code (or a recovery code), or the
/// password when the user has no second factor.
pub async fn confirm_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    query_input: PasskeyInput,
    form: FormInput<ConfirmForm>,
) -> Response {
    let q = query(query_input);
    let interaction = q.interaction();
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        let back = in_flow(PATH, interaction);
        match second_factor::reauth_needed(&state, &who.account).await? {
            None => Ok(see_other(&back)),
            Some(Reauth::SecondFactor) => {
                match totp::verify_second_factor(&state, &who.account, &form.code, ip.as_deref())
                    .await?
                {
                    Ok(passed) => {
                        let token = accounts::add_second_factor(
                            &state,
                            &who.token,
                            &who.account,
                            passed.factor(),
                        )
                        .await?;
                        Ok(with_cookie(
                            see_other(&back),
                            Some(session_cookie(&state, &token)),
                        ))
                    }
                    Err(error) => {
                        let page = passkeys_page(
                            &state,
                            &who,
                            code_status(&error),
                            interaction,
                            Shown {
                                notice: None,
                                error: Some(code_problem(&error)),
                            },
                        )
                        .await?;
                        Ok(with_retry_after(page, &error))
                    }
                }
            }
            Some(Reauth::Password) => {
                let checked = accounts::reauthenticate(
                    &state,
                    &who.account,
                    &form.password,
                    ip.as_deref(),
                    ReauthFor::Passkey,
                )
                .await?;
                let (status, error, locked) = match checked {
                    Ok(()) => {
                        accounts::password_proved(&state, &who.account).await?;
                        return Ok(see_other(&back));
                    }
                    Err(ReauthError::WrongPassword) => (
                        StatusCode::UNAUTHORIZED,
                        "That password is not right.".to_owned(),
                        None,
                    ),
                    Err(ReauthError::Locked { retry_after_secs }) => (
                        StatusCode::TOO_MANY_REQUESTS,
                        retry_after_text(retry_after_secs),
                        Some(CodeError::Locked { retry_after_secs }),
                    ),
                };
                let page = passkeys_page(
                    &state,
                    &who,
                    status,
                    interaction,
                    Shown {
                        notice: None,
                        error: Some(error),
                    },
                )
                .await?;
                Ok(match locked {
                    Some(error) => with_retry_after(page, &error),
                    None => page,
                })
            }
        }
    }
    .await;
    respond(&state, result)
}

pub async fn rename_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<RenameForm>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        match passkeys::rename(
            &state,
            &who.account,
            &form.credential_id,
            &form.name,
            ip.as_deref(),
        )
        .await?
        {
            Ok(true) => Ok(see_other(&format!("{PATH}?done=renamed"))),
            // Not one of this user's passkeys (removed meanwhile).
            Ok(false) => Ok(see_other(PATH)),
            Err(why) => {
                passkeys_page(
                    &state,
                    &who,
                    StatusCode::BAD_REQUEST,
                    None,
                    Shown {
                        notice: None,
                        error: Some(why),
                    },
                )
                .await
            }
        }
    }
    .await;
    respond(&state, result)
}

pub async fn remove_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<RemoveForm>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        // Removing a factor needs the same fresh proof as adding one: an
        // open session alone does not weaken the account.
        if second_factor::reauth_needed(&state, &who.account)
            .await?
            .is_some()
        {
            return passkeys_page(
                &state,
                &who,
                StatusCode::FORBIDDEN,
                None,
                Shown {
                    notice: None,
                    error: Some("Confirm it is you first, then remove the passkey.".into()),
                },
            )
            .await;
        }
        if passkeys::remove(&state, &who.account, &form.credential_id, ip.as_deref()).await? {
            Ok(see_other(&format!("{PATH}?done=removed")))
        } else {
            Ok(see_other(PATH))
        }
    }
    .await;
    respond(&state, result)
}

//! `/profile/api-keys`: the user's personal API keys (docs/operating.md,
//! "API keys"): the list, a create form (`name`, repeatable `scope`, optional
//! `expires_in_days`), the new key shown once in `#api-key`, and a revoke
//! form per key. With 2FA on and no recent second factor, creating a key
//! first asks for a `code`; without 2FA and no recent password, for the
//! `password`.

use askama::Template;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::account::retry_after_text;
use super::two_factor::{code_problem, code_status, with_retry_after};
use super::{
    FormInput, Layout, PageError, SignedIn, checked_form, checked_pairs, csrf_form, render,
    require_signed_in, respond, see_other, session_cookie, with_cookie,
};
use crate::http::client_ip::ClientIp;
use crate::http::csrf::Csrf;
use crate::protocol::scope;
use crate::service::accounts::{self, ReauthError, ReauthFor};
use crate::service::api_keys::{self, ApiKeyModel, KeyFieldErrors, KeyStatus};
use crate::service::second_factor::{self, Reauth};
use crate::service::totp::{self, CodeError};
use crate::state::AppState;

const PATH: &str = "/profile/api-keys";

csrf_form!(RevokeKeyForm { key_id });

/// One listed key.
struct KeyView {
    id: String,
    name: String,
    scopes: String,
    created: String,
    last_used: String,
    expires: String,
    status: &'static str,
    active: bool,
}

impl KeyView {
    fn of(key: &ApiKeyModel, now: i64) -> Self {
        let status = api_keys::status(key, now);
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            scopes: key.scope.replace(' ', ", "),
            created: date(key.created_at),
            last_used: key.last_used_at.map_or_else(|| "Never".to_owned(), date),
            expires: key.expires_at.map_or_else(|| "Never".to_owned(), date),
            status: match status {
                KeyStatus::Active => "Active",
                KeyStatus::Expired => "Expired",
                KeyStatus::Revoked => "Revoked",
            },
            active: status == KeyStatus::Active,
        }
    }
}

/// A time as the page shows it: UTC to the minute.
pub(super) fn date(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A scope the create form offers as a checkbox.
struct ScopeChoice {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

/// What the create form shows: the values typed so far, and what is wrong.
#[derive(Default)]
struct CreateForm {
    name: String,
    scopes: Vec<String>,
    expires_in_days: String,
    errors: KeyFieldErrors,
}

impl CreateForm {
    /// `openid` is always granted, so only the others are choices.
    fn choices(&self) -> Vec<ScopeChoice> {
        api_keys::KEY_SCOPES
            .iter()
            .filter(|s| **s != "openid")
            .map(|s| ScopeChoice {
                value: s,
                label: scope::describe(s).unwrap_or(s),
                checked: self.scopes.iter().any(|v| v.split(' ').any(|t| t == *s)),
            })
            .collect()
    }
}

/// The key just created, shown once.
struct CreatedView {
    name: String,
    key: String,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    page: Layout,
    csrf_token: String,
    keys: Vec<KeyView>,
    created: Option<CreatedView>,
    notice: Option<String>,
    error: Option<String>,
    form: CreateForm,
    choices: Vec<ScopeChoice>,
    max_days: u32,
}

/// The step before a key is created that asks for a code (or, without 2FA,
/// the password): the form's values travel along as hidden fields.
#[derive(Template)]
#[template(path = "api_key_code.html")]
struct CodePage {
    page: Layout,
    csrf_token: String,
    /// The password is asked for (no 2FA), not a code.
    ask_password: bool,
    /// The 6-digit code is asked for (the user has TOTP).
    ask_code: bool,
    /// The user has a passkey: it can confirm too.
    passkey: Option<super::PasskeyElement>,
    name: String,
    scopes: Vec<String>,
    expires_in_days: String,
    error: Option<String>,
}

/// What the page shows besides the list.
#[derive(Default)]
struct Extras {
    created: Option<CreatedView>,
    notice: Option<&'static str>,
    error: Option<String>,
    form: CreateForm,
}

impl Extras {
    fn with(form: CreateForm) -> Self {
        Self {
            form,
            ..Self::default()
        }
    }
}

async fn keys_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    extras: Extras,
) -> Result<Response, PageError> {
    let now = state.now();
    let keys = api_keys::list(state, who.account.user_id())
        .await?
        .iter()
        .map(|k| KeyView::of(k, now))
        .collect();
    let page = ApiKeysPage {
        page: Layout::new(state, "API keys"),
        csrf_token: Csrf::for_session(&who.token).token(state),
        keys,
        created: extras.created,
        notice: extras.notice.map(str::to_owned),
        error: extras.error,
        choices: extras.form.choices(),
        form: extras.form,
        max_days: api_keys::MAX_EXPIRY_DAYS,
    };
    // `render` sends `Cache-Control: no-store`: the page can hold a new key.
    Ok(render(status, &page))
}

#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    #[serde(default)]
    revoked: Option<String>,
}

pub async fn api_keys_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<KeysQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let revoked = query.is_ok_and(|Query(q)| q.revoked.is_some());
        let extras = Extras {
            notice: revoked.then_some("The key is revoked: it no longer works."),
            ..Extras::default()
        };
        keys_page(&state, &who, StatusCode::OK, extras).await
    }
    .await;
    respond(&state, result)
}

/// Creates a key. The body is read as pairs because `scope` repeats.
pub async fn api_keys_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let mut who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let fields = checked_pairs(&state, &headers, body)?;
        let form = CreateForm {
            name: fields.one("name")?,
            scopes: fields.all("scope"),
            expires_in_days: fields.one("expires_in_days")?,
            errors: KeyFieldErrors::default(),
        };
        let code = fields.has("code").then(|| fields.one("code")).transpose()?;
        let password = fields
            .has("password")
            .then(|| fields.one("password"))
            .transpose()?;

        // The form first: a code is not asked for a key that cannot be made.
        let expires = match api_keys::check_form(&form.name, &form.scopes, &form.expires_in_days) {
            Ok(expires) => expires,
            Err(errors) => {
                let form = CreateForm { errors, ..form };
                return keys_page(&state, &who, StatusCode::BAD_REQUEST, Extras::with(form)).await;
            }
        };

        let mut renewed = None;
        match second_factor::reauth_needed(&state, &who.account).await? {
            None => {}
            Some(Reauth::SecondFactor) => {
                let Some(code) = code else {
                    return reauth_page(
                        &state,
                        &who,
                        StatusCode::OK,
                        &form,
                        Reauth::SecondFactor,
                        None,
                    )
                    .await;
                };
                match totp::verify_second_factor(&state, &who.account, &code, ip.as_deref()).await?
                {
                    Ok(passed) => {
                        // A fresh factor on this session, under a new session id.
                        let token = accounts::add_second_factor(
                            &state,
                            &who.token,
                            &who.account,
                            passed.factor(),
                        )
                        .await?;
                        renewed = Some(session_cookie(&state, &token));
                        who.token = token;
                    }
                    // 2FA was turned off meanwhile: start again from the page.
                    Err(CodeError::NoCredential) => return Ok(see_other(PATH)),
                    Err(error) => {
                        let page = reauth_page(
                            &state,
                            &who,
                            code_status(&error),
                            &form,
                            Reauth::SecondFactor,
                            Some(code_problem(&error)),
                        )
                        .await?;
                        return Ok(with_retry_after(page, &error));
                    }
                }
            }
            Some(Reauth::Password) => {
                let Some(password) = password else {
                    return reauth_page(
                        &state,
                        &who,
                        StatusCode::OK,
                        &form,
                        Reauth::Password,
                        None,
                    )
                    .await;
                };
                let checked = accounts::reauthenticate(
                    &state,
                    &who.account,
                    &password,
                    ip.as_deref(),
                    ReauthFor::ApiKey,
                )
                .await?;
                match checked {
                    Ok(()) => accounts::password_proved(&state, &who.account).await?,
                    Err(ReauthError::WrongPassword) => {
                        return reauth_page(
                            &state,
                            &who,
                            StatusCode::UNAUTHORIZED,
                            &form,
                            Reauth::Password,
                            Some("That password is not right. No key was created.".into()),
                        )
                        .await;
                    }
                    Err(ReauthError::Locked { retry_after_secs }) => {
                        let error = CodeError::Locked { retry_after_secs };
                        let page = reauth_page(
                            &state,
                            &who,
                            code_status(&error),
                            &form,
                            Reauth::Password,
                            Some(retry_after_text(retry_after_secs)),
                        )
                        .await?;
                        return Ok(with_retry_after(page, &error));
                    }
                }
            }
        }

        let created = api_keys::create(
            &state,
            &who.account,
            &form.name,
            &form.scopes,
            expires,
            ip.as_deref(),
        )
        .await?;
        let page = match created {
            Ok(created) => {
                let extras = Extras {
                    created: Some(CreatedView {
                        name: created.row.name,
                        key: created.key,
                    }),
                    ..Extras::default()
                };
                keys_page(&state, &who, StatusCode::OK, extras).await?
            }
            Err(errors) => {
                let form = CreateForm { errors, ..form };
                keys_page(&state, &who, StatusCode::BAD_REQUEST, Extras::with(form)).await?
            }
        };
        Ok(with_cookie(page, renewed))
    }
    .await;
    respond(&state, result)
}

async fn reauth_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    form: &CreateForm,
    ask: Reauth,
    error: Option<String>,
) -> Result<Response, PageError> {
    let user_id = who.account.user_id();
    let (ask_code, passkey) = match ask {
        Reauth::Password => (false, None),
        Reauth::SecondFactor => (
            totp::is_enabled(state, user_id).await?,
            (state.webauthn.is_some() && second_factor::has_passkey(state, user_id).await?)
                .then(|| super::passkeys::verify_element(None, Some("api-keys"), "secondary")),
        ),
    };
    let title = match (ask, ask_code) {
        (Reauth::Password, _) => "Confirm with your password",
        (Reauth::SecondFactor, true) => "Confirm with your code",
        (Reauth::SecondFactor, false) => "Confirm with your passkey",
    };
    let csrf_token = Csrf::for_session(&who.token).token(state);
    let mut layout = Layout::new(state, title);
    if passkey.is_some() {
        layout = layout.with_script(&csrf_token);
    }
    let page = CodePage {
        page: layout,
        csrf_token,
        ask_password: ask == Reauth::Password,
        ask_code,
        passkey,
        name: form.name.clone(),
        scopes: form.scopes.clone(),
        expires_in_days: form.expires_in_days.clone(),
        error,
    };
    Ok(render(status, &page))
}

/// `POST /profile/api-keys/revoke`: revokes one of the user's own keys.
pub async fn api_key_revoke_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: FormInput<RevokeKeyForm>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        if api_keys::revoke(&state, who.account.user_id(), &form.key_id, ip.as_deref()).await? {
            return Ok(see_other(&format!("{PATH}?revoked=1")));
        }
        // Unknown, already revoked, or another user's: the same answer.
        let extras = Extras {
            error: Some("There is no such active key on your account. Nothing was changed.".into()),
            ..Extras::default()
        };
        keys_page(&state, &who, StatusCode::NOT_FOUND, extras).await
    }
    .await;
    respond(&state, result)
}

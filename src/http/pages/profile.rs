//! `/profile` ("My profile"): name, email, and the two-factor and API key
//! sections that later capabilities fill.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{
    FormInput, Layout, PageError, SignedIn, checked_form, csrf_form, render, require_signed_in,
    respond, see_other,
};
use crate::http::csrf::Csrf;
use crate::service::{accounts, oidc, totp};
use crate::state::AppState;

csrf_form!(ProfileForm { name });

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    page: Layout,
    csrf_token: String,
    name: String,
    email: String,
    name_error: Option<String>,
    notice: Option<String>,
    two_factor: Option<TwoFactorStatus>,
    consents: Vec<ConsentView>,
}

/// One application the user allowed, with what it may see.
pub struct ConsentView {
    pub client_id: String,
    pub client_name: String,
    pub scopes: String,
}

/// The parts of the profile page read from the database.
pub struct ProfileSections {
    pub two_factor: Option<TwoFactorStatus>,
    pub consents: Vec<ConsentView>,
}

impl ProfileSections {
    pub async fn load(state: &AppState, user_id: &str) -> Result<Self, PageError> {
        let consents = oidc::allowed_apps(state, user_id)
            .await?
            .into_iter()
            .map(|app| ConsentView {
                client_id: app.client_id,
                client_name: app.client_name,
                scopes: app.scope.to_wire().replace(' ', ", "),
            })
            .collect();
        Ok(Self {
            two_factor: TwoFactorStatus::of(state, user_id).await?,
            consents,
        })
    }
}

/// The "Two-factor authentication" section when 2FA is on.
pub struct TwoFactorStatus {
    pub recovery_codes_left: u64,
    pub regenerate_error: Option<String>,
    pub deactivate_error: Option<String>,
}

impl TwoFactorStatus {
    pub async fn of(state: &AppState, user_id: &str) -> Result<Option<Self>, PageError> {
        if !totp::is_enabled(state, user_id).await? {
            return Ok(None);
        }
        Ok(Some(Self {
            recovery_codes_left: totp::unused_recovery_codes(state, user_id).await?,
            regenerate_error: None,
            deactivate_error: None,
        }))
    }
}

pub fn profile_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    name: &str,
    name_error: Option<String>,
    notice: Option<&str>,
    sections: ProfileSections,
) -> Response {
    let page = ProfilePage {
        two_factor: sections.two_factor,
        consents: sections.consents,
        page: Layout::new(state, "My profile"),
        csrf_token: Csrf::for_session(&who.token).token(state),
        name: name.to_owned(),
        email: who.account.email().to_owned(),
        name_error,
        notice: notice.map(str::to_owned),
    };
    render(status, &page)
}

#[derive(Debug, Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    pub saved: Option<String>,
    #[serde(default)]
    pub two_factor: Option<String>,
    #[serde(default)]
    pub revoked: Option<String>,
}

impl ProfileQuery {
    /// The notice a redirect back to the profile asked for.
    fn notice(&self) -> Option<&'static str> {
        if self.saved.is_some() {
            return Some("Your profile is saved.");
        }
        if self.revoked.is_some() {
            return Some("The application's access is removed.");
        }
        match self.two_factor.as_deref() {
            Some("on") => Some("Two-factor authentication is on."),
            Some("off") => Some("Two-factor authentication is off."),
            _ => None,
        }
    }
}

pub async fn profile_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let notice = query.ok().and_then(|Query(q)| q.notice());
        let sections = ProfileSections::load(&state, who.account.user_id()).await?;
        Ok(profile_page(
            &state,
            &who,
            StatusCode::OK,
            who.account.name(),
            None,
            notice,
            sections,
        ))
    }
    .await;
    respond(&state, result)
}

pub async fn profile_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<ProfileForm>,
) -> Response {
    let result: Result<Response, PageError> = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        Ok(
            match accounts::update_name(&state, who.account.user_id(), &form.name).await? {
                Ok(()) => see_other("/profile?saved=1"),
                Err(error) => profile_page(
                    &state,
                    &who,
                    StatusCode::BAD_REQUEST,
                    &form.name,
                    Some(error),
                    None,
                    ProfileSections::load(&state, who.account.user_id()).await?,
                ),
            },
        )
    }
    .await;
    respond(&state, result)
}

csrf_form!(RevokeConsentForm { client_id });

/// `POST /profile/consents/revoke`: forgets what the user allowed an
/// application and revokes the access tokens it holds for them.
pub async fn consent_revoke_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormInput<RevokeConsentForm>,
) -> Response {
    let result: Result<Response, PageError> = async {
        let who = match require_signed_in(&state, &headers).await? {
            Ok(who) => who,
            Err(redirect) => return Ok(redirect),
        };
        let form = checked_form(&state, &headers, form)?;
        oidc::revoke_consent(&state, who.account.user_id(), &form.client_id).await?;
        Ok(see_other("/profile?revoked=1"))
    }
    .await;
    respond(&state, result)
}

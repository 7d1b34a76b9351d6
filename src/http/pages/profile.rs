//! `/profile` ("My profile"): name, email, and the two-factor and API key
//! sections that later capabilities fill.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{
    FormInput, Layout, PageError, SignedIn, checked_form, csrf_form, render, respond, see_other,
    signed_in,
};
use crate::http::csrf::Csrf;
use crate::service::accounts;
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
}

fn profile_page(
    state: &AppState,
    who: &SignedIn,
    status: StatusCode,
    name: &str,
    name_error: Option<String>,
    notice: Option<&str>,
) -> Response {
    let page = ProfilePage {
        page: Layout::new(state, "My profile"),
        csrf_token: Csrf::for_session(&who.token).token(state),
        name: name.to_owned(),
        email: who.user.email.clone(),
        name_error,
        notice: notice.map(str::to_owned),
    };
    render(status, &page)
}

#[derive(Debug, Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    pub saved: Option<String>,
}

pub async fn profile_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Some(who) = signed_in(&state, &headers).await? else {
            return Ok(see_other("/login"));
        };
        let notice = query
            .ok()
            .and_then(|Query(q)| q.saved)
            .map(|_| "Your profile is saved.");
        Ok(profile_page(
            &state,
            &who,
            StatusCode::OK,
            &who.user.name,
            None,
            notice,
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
        let Some(who) = signed_in(&state, &headers).await? else {
            return Ok(see_other("/login"));
        };
        let form = checked_form(&state, &headers, form)?;
        Ok(
            match accounts::update_name(&state, &who.user.id, &form.name).await? {
                Ok(()) => see_other("/profile?saved=1"),
                Err(error) => profile_page(
                    &state,
                    &who,
                    StatusCode::BAD_REQUEST,
                    &form.name,
                    Some(error),
                    None,
                ),
            },
        )
    }
    .await;
    respond(&state, result)
}

//! `GET`/`POST /authorize` (RFC 6749 §3.1, OIDC Core §3.1.2), the resume
//! point every sign-in step returns to, and consent.
//!
//! Order matters (RFC 6749 §4.1.2.1): until the client and its exact
//! redirect URI are known good, an error is shown on a page, never
//! redirected; after that, errors go back to the client with `state` and
//! `iss` (RFC 9207).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use crate::http::csrf::Csrf;
use crate::http::interaction::with_interaction;
use crate::http::pages::{
    self, FormInput, Layout, PageError, Visitor, checked_form, csrf_form, message, render, respond,
    see_other, visitor,
};
use crate::protocol::authorize::{self, ClientView, RawParams, RedirectError, ResponseMode};
use crate::protocol::client_metadata::Client;
use crate::protocol::scope;
use crate::service::accounts;
use crate::service::clients;
use crate::service::oidc::{self, AuthorizationResponse, Interaction, Next};
use crate::state::AppState;

pub async fn authorize(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    // OIDC Core §3.1.2.1: GET with a query, or POST with a form body.
    let source: &[u8] = if method == Method::POST {
        &body
    } else {
        query.as_deref().unwrap_or("").as_bytes()
    };
    let params = RawParams::from_pairs(
        url::form_urlencoded::parse(source).map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    let result = async {
        let client_id = match authorize::client_id(&params) {
            Ok(id) => id.to_owned(),
            Err(e) => return Ok(page_error(&state, &e)),
        };
        let client = clients::find(&state, &client_id).await?;
        let view = client.as_ref().map(client_view);
        let request =
            match authorize::validate(&params, view.as_ref(), state.settings.oauth.require_pkce) {
                Ok(request) => request,
                Err(Err(e)) => return Ok(page_error(&state, &e)),
                Err(Ok(e)) => return Ok(redirect_error(&state, e)),
            };
        let client = client.expect("validate accepts only a known client");
        let id = oidc::start_interaction(&state, &request).await?;
        let mut interaction = oidc::find_interaction(&state, &id)
            .await?
            .ok_or_else(|| PageError::Internal("a new interaction vanished".into()))?;
        // prompt=login and prompt=consent are not satisfied by what the
        // browser already had when the request came in.
        interaction.arriving = true;
        drive(&state, &headers, &interaction, &client).await
    }
    .await;
    respond(&state, result)
}

fn client_view(client: &Client) -> ClientView<'_> {
    ClientView {
        client_id: &client.client_id,
        redirect_uris: &client.redirect_uris,
        public: client.public,
        allowed_scopes: &client.scopes,
    }
}

fn page_error(state: &AppState, error: &authorize::PageError) -> Response {
    message(
        state,
        StatusCode::BAD_REQUEST,
        error.title(),
        error.message(),
        None,
    )
}

/// Runs the interaction policy for the current browser and goes where it says.
async fn drive(
    state: &AppState,
    headers: &HeaderMap,
    interaction: &Interaction,
    client: &Client,
) -> Result<Response, PageError> {
    let session = match pages::session_token(state, headers) {
        Some(token) => accounts::current_session(state, &token).await?,
        None => None,
    };
    let next = oidc::decide(state, interaction, client, session.as_ref()).await?;
    Ok(go(state, next, &interaction.id))
}

fn go(state: &AppState, next: Next, id: &str) -> Response {
    match next {
        Next::Login => see_other(&with_interaction("/login", id)),
        Next::SecondFactor => see_other(&with_interaction("/login/2fa", id)),
        Next::EnrollSecondFactor => see_other(&with_interaction("/profile/2fa/activate", id)),
        Next::Passkey => see_other(&with_interaction("/login/passkey", id)),
        Next::EnrollPasskey => see_other(&with_interaction("/profile/passkeys", id)),
        Next::Consent => see_other(&with_interaction("/consent", id)),
        Next::Respond(response) => respond_to_client(response),
        Next::Fail(error) => redirect_error(state, error),
    }
}

/// An error sent back to the client (RFC 6749 §4.1.2.1), with `iss` (RFC 9207).
fn redirect_error(state: &AppState, error: RedirectError) -> Response {
    let params = error
        .params(&state.settings.issuer)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    respond_to_client(AuthorizationResponse {
        redirect_uri: error.redirect_uri,
        response_mode: error.response_mode,
        params,
    })
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage {
    redirect_uri: String,
    params: Vec<(String, String)>,
    script: &'static str,
}

/// The one inline script Stepgate serves (the other script is the file
/// `/assets/webauthn.js`): it submits the form_post form. The CSP of that
/// one page allows exactly this script by its hash.
const FORM_POST_SCRIPT: &str = "document.forms[0].submit();";

/// The authorization response, as a redirect (`query`) or an auto-submitted
/// form (`form_post`, OAuth 2.0 Form Post Response Mode §2).
fn respond_to_client(response: AuthorizationResponse) -> Response {
    match response.response_mode {
        ResponseMode::Query => {
            let pairs: Vec<(&str, &str)> = response
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            see_other(&authorize::redirect_with(&response.redirect_uri, &pairs))
        }
        ResponseMode::FormPost => {
            let page = FormPostPage {
                redirect_uri: response.redirect_uri,
                params: response.params,
                script: FORM_POST_SCRIPT,
            };
            let mut answer = render(StatusCode::OK, &page);
            let hash = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, FORM_POST_SCRIPT.as_bytes()),
            );
            let csp = format!(
                "default-src 'none'; script-src 'sha256-{hash}'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
            );
            answer.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&csp).expect("ASCII header"),
            );
            answer
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct InteractionQuery {
    #[serde(default)]
    pub interaction: String,
}

/// The interaction named in the query, with its client, or the page that
/// says it is gone.
async fn load(
    state: &AppState,
    query: Result<Query<InteractionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Result<(Interaction, Client), Response>, PageError> {
    let id = query.map(|Query(q)| q.interaction).unwrap_or_default();
    let gone = || {
        message(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in request has ended",
            "It expired or was already completed. Go back to the application and start again.",
            None,
        )
    };
    if id.is_empty() {
        return Ok(Err(gone()));
    }
    let Some(interaction) = oidc::find_interaction(state, &id).await? else {
        return Ok(Err(gone()));
    };
    let Some(client) = clients::find(state, &interaction.request.client_id).await? else {
        return Ok(Err(gone()));
    };
    Ok(Ok((interaction, client)))
}

/// `GET /authorize/resume?interaction=ID`: where each step returns to.
pub async fn resume_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<InteractionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let (interaction, client) = match load(&state, query).await? {
            Ok(found) => found,
            Err(page) => return Ok(page),
        };
        drive(&state, &headers, &interaction, &client).await
    }
    .await;
    respond(&state, result)
}

csrf_form!(ContinueForm {});

/// `POST /authorize/resume?interaction=ID`: the "Continue" button after the
/// recovery codes of an in-flow activation.
pub async fn resume_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<InteractionQuery>, axum::extract::rejection::QueryRejection>,
    form: FormInput<ContinueForm>,
) -> Response {
    let result = async {
        checked_form(&state, &headers, form)?;
        let (interaction, client) = match load(&state, query).await? {
            Ok(found) => found,
            Err(page) => return Ok(page),
        };
        drive(&state, &headers, &interaction, &client).await
    }
    .await;
    respond(&state, result)
}

// ---------------------------------------------------------------- consent

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    page: Layout,
    csrf_token: String,
    client_name: String,
    email: String,
    scopes: Vec<String>,
    action: String,
}

csrf_form!(ConsentForm { decision });

pub async fn consent_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<InteractionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let (interaction, client) = match load(&state, query).await? {
            Ok(found) => found,
            Err(page) => return Ok(page),
        };
        let who = match visitor(&state, &headers).await? {
            Visitor::SignedIn(who) => who,
            // Not signed in (any more): the pipeline decides where to go.
            _ => return drive(&state, &headers, &interaction, &client).await,
        };
        let scopes = interaction
            .request
            .scope
            .0
            .iter()
            .filter_map(|s| scope::describe(s).map(str::to_owned))
            .collect();
        let page = ConsentPage {
            page: Layout::new(&state, &format!("Allow {}?", client.name)),
            csrf_token: Csrf::for_session(&who.token).token(&state),
            client_name: client.name.clone(),
            email: who.account.email().to_owned(),
            scopes,
            action: with_interaction("/consent", &interaction.id),
        };
        Ok(render(StatusCode::OK, &page))
    }
    .await;
    respond(&state, result)
}

pub async fn consent_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<InteractionQuery>, axum::extract::rejection::QueryRejection>,
    form: FormInput<ConsentForm>,
) -> Response {
    let result = async {
        let form = checked_form(&state, &headers, form)?;
        let (interaction, client) = match load(&state, query).await? {
            Ok(found) => found,
            Err(page) => return Ok(page),
        };
        let who = match visitor(&state, &headers).await? {
            Visitor::SignedIn(who) => who,
            _ => return drive(&state, &headers, &interaction, &client).await,
        };
        match form.decision.as_str() {
            "allow" => {
                oidc::grant_consent(&state, who.account.user_id(), &interaction.request).await?;
                drive(&state, &headers, &interaction, &client).await
            }
            "deny" => Ok(go(
                &state,
                oidc::deny(&state, &interaction).await?,
                &interaction.id,
            )),
            _ => Err(PageError::BadForm("decision must be allow or deny".into())),
        }
    }
    .await;
    respond(&state, result)
}

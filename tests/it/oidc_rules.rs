//! The rules of the authorization pipeline, one by one, as a relying party and
//! a browser meet them: `prompt` and `max_age` (OIDC Core §3.1.2.1), which
//! errors are pages and which go back to the client (RFC 6749 §4.1.2.1, RFC
//! 9207), consent, `response_mode=form_post`, the token endpoint's checks
//! (RFC 6749 §4.1.3, §5.2, RFC 7636 §4.6), UserInfo (OIDC Core §5.3, RFC 6750
//! §3) and what discovery publishes (Discovery 1.0 §3).
//!
//! Requests are written by hand here (not by a relying-party library) so each
//! test controls every parameter, repeated and malformed ones included.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use chrono::Duration;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use stepgate::clock::Clock;

use crate::accounts::PASSWORD;
use crate::accounts_bad_paths::post_chunked_4_mib;
use crate::browser::{Browser, Page};
use crate::helpers::{Backend, TestApp, stderr, stepgate, write_config};
use crate::oidc::{REDIRECT, TestClient, payload, query, register, spawn, until_client};
use crate::on_both_backends;

on_both_backends!(
    prompt_none_answers_without_a_page,
    prompt_login_and_max_age_ask_for_a_new_sign_in,
    bad_client_or_redirect_uri_gets_a_page_never_a_redirect,
    other_request_errors_go_back_to_the_client,
    ignored_parameters_login_hint_and_post,
    consent_is_asked_remembered_and_refusable,
    form_post_answers_with_a_self_submitting_form,
    token_endpoint_checks_the_code_and_the_client,
    only_the_codes_own_client_can_set_off_its_replay_revocation,
    userinfo_follows_the_token_and_the_scopes,
    discovery_publishes_what_is_implemented,
);

const STATE: &str = "st-7_x";
const NONCE: &str = "n-0S6_WzA2Mj";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const EMAIL: &str = "rules@example.com";

// ---------------------------------------------------------------- helpers

/// A complete, valid authorization request for `client_id`.
fn base_params(client_id: &str) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
        ("state", STATE),
        ("nonce", NONCE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The base request with `changes` applied: each replaces the parameter of
/// its name, and an empty value removes it.
fn params(client_id: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs = base_params(client_id);
    for (name, value) in changes {
        pairs.retain(|(k, _)| k != name);
        if !value.is_empty() {
            pairs.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    pairs
}

fn encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `/authorize?…` for the base request with `changes`.
fn authorize(client_id: &str, changes: &[(&str, &str)]) -> String {
    format!("/authorize?{}", encode(&params(client_id, changes)))
}

/// `/authorize?…` with exactly these pairs, repeats included.
fn authorize_pairs(pairs: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    format!("/authorize?{}", encode(&owned))
}

fn location(page: &Page) -> Option<String> {
    page.headers
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
}

/// The answer is a redirect to the client carrying `error`, the request's
/// `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207 §2), and no code.
fn assert_error_redirect(app: &TestApp, page: &Page, error: &str, why: &str) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{why}: {}", page.html);
    let location = location(page).unwrap_or_else(|| panic!("{why}: a Location"));
    assert!(
        location.starts_with(&format!("{REDIRECT}?")),
        "{why}: goes to the client: {location}"
    );
    let params = query(&location);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some(error),
        "{why}"
    );
    assert!(params.contains_key("error_description"), "{why}");
    assert_eq!(
        params.get("state").map(String::as_str),
        Some(STATE),
        "{why}"
    );
    assert_eq!(params.get("iss"), Some(&app.issuer), "{why}");
    assert!(!params.contains_key("code"), "{why}");
}

/// The answer is an error page for the person: a 4xx with an alert, no
/// redirect anywhere and no sign-in form.
fn assert_error_page(page: &Page, status: StatusCode, why: &str) {
    assert_eq!(page.status, status, "{why}: {}", page.html);
    assert!(location(page).is_none(), "{why}: never a redirect");
    assert!(page.alert().is_some(), "{why}: says what is wrong");
    assert!(
        !page.contains("name=\"password\""),
        "{why}: no sign-in form"
    );
}

/// The answer to /authorize sends the browser to the sign-in form of an
/// interaction; returns that form's page.
async fn expect_sign_in_form(browser: &Browser, answer: Page, why: &str) -> Page {
    assert_eq!(
        answer.status,
        StatusCode::SEE_OTHER,
        "{why}: {}",
        answer.html
    );
    let location = location(&answer).unwrap();
    assert!(
        location.starts_with("/login?interaction="),
        "{why}: the sign-in page, not {location}"
    );
    let login = browser.get_raw(&location).await;
    assert_eq!(login.status, StatusCode::OK, "{why}");
    assert!(
        login.form("/login").fields.contains_key("password"),
        "{why}: {}",
        login.html
    );
    login
}

/// Signs in on `login` and allows consent if asked; returns the
/// authorization response's parameters.
async fn sign_in_and_allow(
    browser: &Browser,
    login: &Page,
    email: &str,
) -> BTreeMap<String, String> {
    let after = browser
        .submit_raw(login, "/login", &[("email", email), ("password", PASSWORD)])
        .await;
    match until_client(browser, after).await {
        Ok(location) => query(&location),
        Err(consent) => {
            assert!(consent.contains("Allow"), "{}", consent.html);
            let allowed = browser
                .submit_raw(&consent, "/consent", &[("decision", "allow")])
                .await;
            query(
                &until_client(browser, allowed)
                    .await
                    .expect("back at the client"),
            )
        }
    }
}

/// A whole authorization through the pages: sign-in form, then consent
/// when asked. Returns the response's parameters.
async fn authorize_through_pages(
    browser: &Browser,
    url: &str,
    email: &str,
) -> BTreeMap<String, String> {
    let answer = browser.get_raw(url).await;
    let login = expect_sign_in_form(browser, answer, url).await;
    sign_in_and_allow(browser, &login, email).await
}

/// With a live session and remembered consent: the code, with no page.
async fn code_without_pages(app: &TestApp, browser: &Browser, url: &str) -> String {
    let answer = browser.get_raw(url).await;
    let location = until_client(browser, answer)
        .await
        .unwrap_or_else(|page| panic!("no page expected for {url}: {}", page.html));
    let params = query(&location);
    assert_eq!(params["state"], STATE);
    assert_eq!(params["iss"], app.issuer);
    params["code"].clone()
}

/// How a token request authenticates the client.
enum Auth<'a> {
    /// `client_secret_basic`.
    Basic(&'a TestClient),
    /// `client_secret_post`.
    Post(&'a TestClient),
    /// Only `client_id` in the body: a public client, or a confidential one
    /// that forgot its secret.
    IdOnly(&'a TestClient),
    /// Basic and a `client_secret` in the body too.
    BasicAndPost(&'a TestClient),
}

/// POSTs a form to /token; every answer must be JSON and `no-store`
/// (RFC 6749 §5.1, §5.2).
async fn token(app: &TestApp, auth: Auth<'_>, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut request = app.client.post(app.url("/token"));
    let secret = |c: &TestClient| c.secret.clone().expect("a confidential client");
    match auth {
        Auth::Basic(c) => request = request.basic_auth(&c.id, Some(secret(c))),
        Auth::Post(c) => {
            fields.push(("client_id".into(), c.id.clone()));
            fields.push(("client_secret".into(), secret(c)));
        }
        Auth::IdOnly(c) => fields.push(("client_id".into(), c.id.clone())),
        Auth::BasicAndPost(c) => {
            request = request.basic_auth(&c.id, Some(secret(c)));
            fields.push(("client_secret".into(), secret(c)));
        }
    }
    let response = request.form(&fields).send().await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "every /token answer is no-store ({status})"
    );
    let json: Value = response.json().await.expect("a JSON body");
    (status, json)
}

/// The fields that redeem `code` issued for the base request.
fn redeem(code: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]
}

/// The granted scopes of a token response: a set, since order carries no
/// meaning (RFC 6749 §3.3).
fn scopes(response: &Value) -> BTreeSet<&str> {
    response["scope"]
        .as_str()
        .unwrap_or_else(|| panic!("a scope: {response}"))
        .split(' ')
        .collect()
}

fn assert_token_error(answer: &(StatusCode, Value), status: StatusCode, error: &str, why: &str) {
    assert_eq!(answer.0, status, "{why}: {}", answer.1);
    assert_eq!(answer.1["error"], error, "{why}: {}", answer.1);
    assert!(answer.1.get("access_token").is_none(), "{why}");
}

/// The ID token's claims from a successful token response.
fn id_token_claims(answer: &(StatusCode, Value)) -> Value {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    payload(answer.1["id_token"].as_str().expect("an ID token"))
}

async fn userinfo(app: &TestApp, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let mut request = app.client.get(app.url("/userinfo"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let json = response.json().await.unwrap_or(Value::Null);
    (status, headers, json)
}

fn www_authenticate(headers: &HeaderMap) -> String {
    headers["www-authenticate"].to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- prompt

/// OIDC Core §3.1.2.1 `prompt=none`: never a page; §3.1.2.6 names the
/// errors: `login_required`, `consent_required`, `interaction_required`.
async fn prompt_none_answers_without_a_page(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &[]);
    let browser = app.browser();

    // No session: login_required, with state and iss, and no page.
    let answer = browser
        .get_raw(&authorize(&client.id, &[("prompt", "none")]))
        .await;
    assert_error_redirect(&app, &answer, "login_required", "no session");

    // prompt=none with another value: invalid_request (§3.1.2.1: "none"
    // MUST NOT be combined with any other value).
    for prompt in ["none login", "login none", "none consent"] {
        let answer = browser
            .get_raw(&authorize(&client.id, &[("prompt", prompt)]))
            .await;
        assert_error_redirect(&app, &answer, "invalid_request", prompt);
    }

    // A live session and remembered consent: a code straight away.
    let first = authorize_through_pages(&browser, &authorize(&client.id, &[]), EMAIL).await;
    assert!(first.contains_key("code"));
    let code = code_without_pages(
        &app,
        &browser,
        &authorize(&client.id, &[("prompt", "none")]),
    )
    .await;
    let answer = token(&app, Auth::Basic(&client), &redeem(&code)).await;
    let claims = id_token_claims(&answer);
    assert_eq!(claims["nonce"], NONCE);

    // A session, but this client has no consent yet: consent_required.
    let other = register(&app, &[]);
    let answer = browser
        .get_raw(&authorize(&other.id, &[("prompt", "none")]))
        .await;
    assert_error_redirect(&app, &answer, "consent_required", "no consent yet");

    // A client that requires MFA and a password-only session: the second
    // factor is an interaction, so interaction_required.
    let mfa = register(&app, &["--require-mfa", "--first-party"]);
    let answer = browser
        .get_raw(&authorize(&mfa.id, &[("prompt", "none")]))
        .await;
    assert_error_redirect(&app, &answer, "interaction_required", "MFA required");

    // The session was not disturbed by any of that.
    code_without_pages(
        &app,
        &browser,
        &authorize(&client.id, &[("prompt", "none")]),
    )
    .await;

    // A session older than max_age: a sign-in would be needed, so
    // login_required.
    clock.advance(Duration::seconds(2));
    let answer = browser
        .get_raw(&authorize(
            &client.id,
            &[("prompt", "none"), ("max_age", "1")],
        ))
        .await;
    assert_error_redirect(&app, &answer, "login_required", "max_age passed");
}

/// OIDC Core §3.1.2.1 `prompt=login` / `select_account` and `max_age`: a new
/// sign-in even with a live session, and the ID token's `auth_time` is the
/// new sign-in's (§2).
async fn prompt_login_and_max_age_ask_for_a_new_sign_in(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &[]);
    let browser = app.browser();

    let first = authorize_through_pages(&browser, &authorize(&client.id, &[]), EMAIL).await;
    let answer = token(&app, Auth::Basic(&client), &redeem(&first["code"])).await;
    let first_auth_time = id_token_claims(&answer)["auth_time"].as_i64().unwrap();
    assert_eq!(first_auth_time, clock.now().timestamp());

    // prompt=login in the same second as that sign-in: still a new sign-in
    // (the session's sign-in was not made for this request).
    let answer = browser
        .get_raw(&authorize(&client.id, &[("prompt", "login")]))
        .await;
    let login = expect_sign_in_form(&browser, answer, "prompt=login at once").await;
    let again = sign_in_and_allow(&browser, &login, EMAIL).await;
    assert!(again.contains_key("code"));
    // max_age=0 is prompt=login (OpenID Connect WG, Core issue #993).
    let answer = browser
        .get_raw(&authorize(&client.id, &[("max_age", "0")]))
        .await;
    let login = expect_sign_in_form(&browser, answer, "max_age=0 at once").await;
    let again = sign_in_and_allow(&browser, &login, EMAIL).await;
    assert!(again.contains_key("code"));

    // max_age that the session satisfies: no page, the same auth_time.
    clock.advance(Duration::seconds(2));
    let code = code_without_pages(
        &app,
        &browser,
        &authorize(&client.id, &[("max_age", "3600")]),
    )
    .await;
    let answer = token(&app, Auth::Basic(&client), &redeem(&code)).await;
    assert_eq!(id_token_claims(&answer)["auth_time"], first_auth_time);

    for (name, value) in [
        ("prompt", "login"),
        ("max_age", "1"),
        ("max_age", "0"),
        ("prompt", "select_account"),
    ] {
        let why = format!("{name}={value}");
        clock.advance(Duration::seconds(2));
        let answer = browser
            .get_raw(&authorize(&client.id, &[(name, value)]))
            .await;
        let login = expect_sign_in_form(&browser, answer, &why).await;
        let params = sign_in_and_allow(&browser, &login, EMAIL).await;
        assert_eq!(params["state"], STATE, "{why}");
        let answer = token(&app, Auth::Basic(&client), &redeem(&params["code"])).await;
        let auth_time = id_token_claims(&answer)["auth_time"].as_i64().unwrap();
        assert_eq!(auth_time, clock.now().timestamp(), "{why}: the new sign-in");
        assert!(auth_time > first_auth_time, "{why}");
    }
}

// ---------------------------------------------------------------- request errors

/// RFC 6749 §4.1.2.1, RFC 9700 §4.1.3: until the client and its exact
/// redirect URI are known, an error is a page and never a redirect.
async fn bad_client_or_redirect_uri_gets_a_page_never_a_redirect(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &[]);
    let browser = app.browser();
    let bad = StatusCode::BAD_REQUEST;

    let unknown = browser.get_raw(&authorize("no-such-client", &[])).await;
    assert_error_page(&unknown, bad, "unknown client_id");
    let missing = browser
        .get_raw(&authorize(&client.id, &[("client_id", "")]))
        .await;
    assert_error_page(&missing, bad, "missing client_id");
    let missing = browser
        .get_raw(&authorize(&client.id, &[("redirect_uri", "")]))
        .await;
    assert_error_page(&missing, bad, "missing redirect_uri");

    // REDIRECT is http://127.0.0.1:9/callback.
    for (what, uri) in [
        ("path", "http://127.0.0.1:9/other"),
        ("longer path", "http://127.0.0.1:9/callback/x"),
        ("query", "http://127.0.0.1:9/callback?x=1"),
        ("empty query", "http://127.0.0.1:9/callback?"),
        ("trailing slash", "http://127.0.0.1:9/callback/"),
        ("case of the path", "http://127.0.0.1:9/Callback"),
        ("case of the scheme", "HTTP://127.0.0.1:9/callback"),
        ("port", "http://127.0.0.1:10/callback"),
        ("no port", "http://127.0.0.1/callback"),
        ("host", "http://127.0.0.2:9/callback"),
        ("host name", "http://localhost:9/callback"),
        ("scheme", "https://127.0.0.1:9/callback"),
        ("fragment", "http://127.0.0.1:9/callback#x"),
    ] {
        let answer = browser
            .get_raw(&authorize(&client.id, &[("redirect_uri", uri)]))
            .await;
        assert_error_page(&answer, bad, &format!("redirect_uri differs by {what}"));
    }

    // A bad redirect URI is a page even when the rest is wrong too.
    let answer = browser
        .get_raw(&authorize(
            &client.id,
            &[
                ("redirect_uri", "http://127.0.0.1:9/other"),
                ("response_type", "token"),
                ("prompt", "none"),
            ],
        ))
        .await;
    assert_error_page(&answer, bad, "bad redirect_uri and response_type");

    // RFC 6749 §3.1: a repeated client_id or redirect_uri has no single
    // value to trust, even when both copies are equal.
    let base = params(&client.id, &[]);
    let base: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for repeated in [
        ("client_id", client.id.as_str()),
        ("client_id", "other"),
        ("redirect_uri", REDIRECT),
        ("redirect_uri", "http://127.0.0.1:9/other"),
    ] {
        let mut pairs = base.clone();
        pairs.push(repeated);
        let answer = browser.get_raw(&authorize_pairs(&pairs)).await;
        assert_error_page(&answer, bad, &format!("repeated {}", repeated.0));
    }

    // The same, signed in: still pages, never a code.
    let good = authorize_through_pages(&browser, &authorize(&client.id, &[]), EMAIL).await;
    assert!(good.contains_key("code"));
    let answer = browser
        .get_raw(&authorize(
            &client.id,
            &[("redirect_uri", "http://127.0.0.1:9/callback/")],
        ))
        .await;
    assert_error_page(&answer, bad, "mismatch with a session");
}

/// Once the client and redirect URI are trusted, errors go back to the
/// client with `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207 §2).
async fn other_request_errors_go_back_to_the_client(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let client = register(&app, &[]);
    let public = register(&app, &["--public"]);
    let browser = app.browser();

    // RFC 6749 §3.1: parameters MUST NOT be included more than once.
    let base = params(&client.id, &[]);
    let base: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (name, value) in [
        ("scope", "openid"),
        ("response_type", "code"),
        ("nonce", "again"),
        ("code_challenge", CHALLENGE),
    ] {
        let mut pairs = base.clone();
        pairs.push((name, value));
        let answer = browser.get_raw(&authorize_pairs(&pairs)).await;
        assert_error_redirect(
            &app,
            &answer,
            "invalid_request",
            &format!("repeated {name}"),
        );
    }

    // (parameter, value, error); an empty value leaves the parameter out.
    for (name, value, error) in [
        // RFC 6749 §4.1.2.1: the code flow only (RFC 9700 §2.1.2).
        ("response_type", "token", "unsupported_response_type"),
        (
            "response_type",
            "code id_token",
            "unsupported_response_type",
        ),
        ("response_type", "", "invalid_request"),
        // OIDC Core §3.1.2.1: scope must contain openid.
        ("scope", "profile email", "invalid_scope"),
        // OIDC Core §3.1.2.6: request objects are not supported.
        (
            "request",
            "eyJhbGciOiJub25lIn0.e30.",
            "request_not_supported",
        ),
        (
            "request_uri",
            "https://rp.example.com/request/1",
            "request_uri_not_supported",
        ),
        // RFC 7636 §4.4.1, RFC 9700 §2.1.1: S256 only.
        ("code_challenge_method", "plain", "invalid_request"),
        ("prompt", "always", "invalid_request"),
        ("max_age", "-1", "invalid_request"),
    ] {
        let answer = browser
            .get_raw(&authorize(&client.id, &[(name, value)]))
            .await;
        assert_error_redirect(&app, &answer, error, &format!("{name}={value:?}"));
    }

    // RFC 9700 §2.1.1: a public client must send a code_challenge.
    let answer = browser
        .get_raw(&authorize(
            &public.id,
            &[("code_challenge", ""), ("code_challenge_method", "")],
        ))
        .await;
    assert_error_redirect(&app, &answer, "invalid_request", "public client, no PKCE");
    // ... and with one, it gets to the sign-in page.
    let answer = browser.get_raw(&authorize(&public.id, &[])).await;
    expect_sign_in_form(&browser, answer, "public client with PKCE").await;
}

/// OIDC Core §3.1.2.1: `display`, `ui_locales`, `claims_locales` are
/// optional hints, unknown parameters are ignored (RFC 6749 §3.1),
/// `login_hint` fills in the email, and POST with a form body works as GET.
async fn ignored_parameters_login_hint_and_post(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &[]);
    let browser = app.browser();

    let answer = browser
        .get_raw(&authorize(
            &client.id,
            &[
                ("display", "popup"),
                ("ui_locales", "fr-CA fr en"),
                ("claims_locales", "fr"),
                ("something_unknown", "x"),
                ("another", ""),
            ],
        ))
        .await;
    let login = expect_sign_in_form(&browser, answer, "hints and unknown parameters").await;
    assert_eq!(
        login.form("/login").fields["email"],
        "",
        "no hint, no email"
    );

    let answer = browser
        .get_raw(&authorize(&client.id, &[("login_hint", EMAIL)]))
        .await;
    let login = expect_sign_in_form(&browser, answer, "login_hint").await;
    assert_eq!(login.form("/login").fields["email"], EMAIL);

    // POST /authorize with the same parameters as a form body.
    let response = browser
        .client
        .post(app.url("/authorize"))
        .form(&params(&client.id, &[("login_hint", EMAIL)]))
        .send()
        .await
        .unwrap();
    let answer = Page {
        status: response.status(),
        url: response.url().to_string(),
        headers: response.headers().clone(),
        html: response.text().await.unwrap(),
    };
    let login = expect_sign_in_form(&browser, answer, "POST /authorize").await;
    assert_eq!(login.form("/login").fields["email"], EMAIL);
    let params_back = sign_in_and_allow(&browser, &login, EMAIL).await;
    assert_eq!(params_back["state"], STATE);
    assert_eq!(params_back["iss"], app.issuer);
    let answer = token(&app, Auth::Basic(&client), &redeem(&params_back["code"])).await;
    assert_eq!(id_token_claims(&answer)["nonce"], NONCE);

    // An error in a POSTed request goes back the same way.
    let response = browser
        .client
        .post(app.url("/authorize"))
        .form(&params(&client.id, &[("response_type", "token")]))
        .send()
        .await
        .unwrap();
    let answer = Page {
        status: response.status(),
        url: response.url().to_string(),
        headers: response.headers().clone(),
        html: response.text().await.unwrap(),
    };
    assert_error_redirect(&app, &answer, "unsupported_response_type", "POST");
}

// ---------------------------------------------------------------- consent

/// Consent (OIDC Core §3.1.2.4): a refusal is `access_denied` (RFC 6749
/// §4.1.2.1), an approval is remembered, `prompt=consent` asks again, a
/// first-party client never asks; unknown scopes are dropped (RFC 6749 §3.3).
async fn consent_is_asked_remembered_and_refusable(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &[]);
    let browser = app.browser();

    // Deny.
    let answer = browser.get_raw(&authorize(&client.id, &[])).await;
    let login = expect_sign_in_form(&browser, answer, "first").await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let consent = until_client(&browser, after).await.expect_err("consent");
    assert!(consent.contains("Allow NAO Cloud?"), "{}", consent.html);
    let denied = browser
        .submit_raw(&consent, "/consent", &[("decision", "deny")])
        .await;
    assert_error_redirect(&app, &denied, "access_denied", "denied");

    // Denial is not remembered as consent: the next request asks again.
    let answer = browser.get_raw(&authorize(&client.id, &[])).await;
    let consent = until_client(&browser, answer)
        .await
        .expect_err("asked again after a denial");
    assert!(consent.contains("Allow NAO Cloud?"));
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let location = until_client(&browser, allowed).await.expect("a code");
    assert!(query(&location).contains_key("code"));

    // Remembered: the next request skips the page.
    code_without_pages(&app, &browser, &authorize(&client.id, &[])).await;
    // A narrower request is covered by the wider consent.
    code_without_pages(
        &app,
        &browser,
        &authorize(&client.id, &[("scope", "openid")]),
    )
    .await;

    // prompt=consent asks again even though it is remembered.
    let answer = browser
        .get_raw(&authorize(&client.id, &[("prompt", "consent")]))
        .await;
    let consent = until_client(&browser, answer)
        .await
        .expect_err("prompt=consent shows the consent page");
    assert!(consent.contains("Allow NAO Cloud?"), "{}", consent.html);
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let code = query(&until_client(&browser, allowed).await.expect("a code"))["code"].clone();
    let answer = token(&app, Auth::Basic(&client), &redeem(&code)).await;
    assert_eq!(answer.0, StatusCode::OK);

    // Unknown scopes alongside openid are dropped from what is granted.
    let answer = browser
        .get_raw(&authorize(
            &client.id,
            &[("scope", "openid profile payments:write admin")],
        ))
        .await;
    let location = until_client(&browser, answer)
        .await
        .expect("openid profile is covered: no page");
    let answer = token(
        &app,
        Auth::Basic(&client),
        &redeem(&query(&location)["code"]),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(scopes(&answer.1), BTreeSet::from(["openid", "profile"]));
    let claims = id_token_claims(&answer);
    assert_eq!(claims["name"], "Test User");
    assert!(claims.get("email").is_none());

    // A first-party client never shows consent, not even for prompt=consent.
    let first_party = register(&app, &["--first-party"]);
    for prompt in ["", "consent"] {
        code_without_pages(
            &app,
            &browser,
            &authorize(&first_party.id, &[("prompt", prompt)]),
        )
        .await;
    }
    // Also on a first sign-in in a new browser.
    let fresh = app.browser();
    let answer = fresh.get_raw(&authorize(&first_party.id, &[])).await;
    let login = expect_sign_in_form(&fresh, answer, "first party").await;
    let after = fresh
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let location = until_client(&fresh, after)
        .await
        .expect("no consent page for a first-party client");
    assert!(query(&location).contains_key("code"));
}

// ---------------------------------------------------------------- form_post

/// OAuth 2.0 Form Post Response Mode §2: the answer is an HTML form that
/// POSTs the parameters to the redirect URI, for codes and errors alike.
async fn form_post_answers_with_a_self_submitting_form(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &[]);
    let browser = app.browser();
    let url = authorize(&client.id, &[("response_mode", "form_post")]);

    // Consent refused: the error travels in the form too.
    let answer = browser.get_raw(&url).await;
    let login = expect_sign_in_form(&browser, answer, "form_post").await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let consent = until_client(&browser, after).await.expect_err("consent");
    let denied = browser
        .submit_raw(&consent, "/consent", &[("decision", "deny")])
        .await;
    let fields = assert_form_post(&denied);
    assert_eq!(fields["error"], "access_denied");
    assert_eq!(fields["state"], STATE);
    assert_eq!(fields["iss"], app.issuer);
    assert!(!fields.contains_key("code"));

    // Allowed: the code in the form, and it redeems.
    let answer = browser.get_raw(&url).await;
    let consent = until_client(&browser, answer).await.expect_err("consent");
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let fields = assert_form_post(&allowed);
    assert_eq!(fields["state"], STATE);
    assert_eq!(fields["iss"], app.issuer);
    let answer = token(&app, Auth::Basic(&client), &redeem(&fields["code"])).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);

    // Straight from /authorize when nothing needs a page.
    let direct = browser.get_raw(&url).await;
    let fields = assert_form_post(&direct);
    assert!(fields.contains_key("code"));

    // A request error after the redirect URI is trusted: also a form post.
    let error = browser
        .get_raw(&authorize(
            &client.id,
            &[("response_mode", "form_post"), ("response_type", "token")],
        ))
        .await;
    let fields = assert_form_post(&error);
    assert_eq!(fields["error"], "unsupported_response_type");
    assert_eq!(fields["state"], STATE);
    assert_eq!(fields["iss"], app.issuer);

    // A state that tries to break out of the attribute stays a value
    // (`assert_form_post` checks that the page still has one script).
    let nasty = "a\"><script>alert(1)</script><input name=\"code\" value=\"x&'";
    let answer = browser
        .get_raw(&authorize(
            &client.id,
            &[
                ("response_mode", "form_post"),
                ("response_type", "token"),
                ("state", nasty),
            ],
        ))
        .await;
    let fields = assert_form_post(&answer);
    assert_eq!(fields["state"], nasty);
    assert!(!fields.contains_key("code"), "{}", answer.html);
}

/// The page is a 200 whose one form POSTs to the redirect URI, and whose
/// CSP allows exactly the one inline script by its hash. Returns the form's
/// hidden fields.
fn assert_form_post(page: &Page) -> BTreeMap<String, String> {
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(location(page).is_none());
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        page.headers["cache-control"], "no-store",
        "it carries a code"
    );
    let forms = page.forms();
    assert_eq!(forms.len(), 1, "{}", page.html);
    assert_eq!(forms[0].action, REDIRECT);
    assert!(page.html.contains("method=\"post\""));
    assert!(
        page.html.contains("type=\"hidden\" name=\"state\""),
        "{}",
        page.html
    );

    // The inline script, and the CSP that allows it and nothing else.
    let start = page.html.find("<script>").expect("a script") + "<script>".len();
    let end = start + page.html[start..].find("</script>").unwrap();
    let script = &page.html[start..end];
    assert_eq!(page.html.matches("<script").count(), 1);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, script.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    let directives: BTreeMap<&str, &str> = csp
        .split(';')
        .filter_map(|d| d.trim().split_once(' '))
        .collect();
    assert_eq!(
        directives["script-src"],
        format!("'sha256-{hash}'"),
        "{csp}"
    );
    assert_eq!(directives["default-src"], "'none'", "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    forms[0].fields.clone()
}

// ---------------------------------------------------------------- token endpoint

/// RFC 6749 §4.1.3 and RFC 7636 §4.6 at the token endpoint; client
/// authentication (RFC 6749 §2.3.1, §3.2.1); `no-store` (§5.1); and bodies
/// too large still get an answer in the endpoint's JSON shape (§5.2).
async fn token_endpoint_checks_the_code_and_the_client(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let other_uri = "http://127.0.0.1:9/other";
    let a = register(&app, &["--first-party", "--redirect-uri", other_uri]);
    let b = register(&app, &["--first-party"]);
    let public = register(&app, &["--first-party", "--public"]);
    let browser = app.browser();
    let bad = StatusCode::BAD_REQUEST;

    let first = authorize_through_pages(&browser, &authorize(&a.id, &[]), EMAIL).await;
    let url = authorize(&a.id, &[]);

    // Expired: past oauth.code_ttl_secs (60 s).
    clock.advance(Duration::seconds(61));
    let answer = token(&app, Auth::Basic(&a), &redeem(&first["code"])).await;
    assert_token_error(&answer, bad, "invalid_grant", "expired code");

    // A wrong verifier (well-formed), and none at all, after a challenge.
    let code = code_without_pages(&app, &browser, &url).await;
    let wrong = "x".repeat(43);
    let mut fields = redeem(&code);
    fields[3] = ("code_verifier", wrong.as_str());
    let answer = token(&app, Auth::Basic(&a), &fields).await;
    assert_token_error(&answer, bad, "invalid_grant", "wrong code_verifier");
    let code = code_without_pages(&app, &browser, &url).await;
    let answer = token(&app, Auth::Basic(&a), &redeem(&code)[..3]).await;
    assert_token_error(&answer, bad, "invalid_grant", "no code_verifier");

    // redirect_uri differing from the authorization request's, even one
    // that is registered for the client.
    let code = code_without_pages(&app, &browser, &url).await;
    let mut fields = redeem(&code);
    fields[2] = ("redirect_uri", other_uri);
    let answer = token(&app, Auth::Basic(&a), &fields).await;
    assert_token_error(&answer, bad, "invalid_grant", "another redirect_uri");
    let code = code_without_pages(&app, &browser, &url).await;
    let mut fields = redeem(&code);
    fields[2] = ("redirect_uri", "http://127.0.0.1:9/callback/");
    let answer = token(&app, Auth::Basic(&a), &fields).await;
    assert_token_error(&answer, bad, "invalid_grant", "redirect_uri with a slash");

    // A's code redeemed by B, who authenticates correctly.
    let code = code_without_pages(&app, &browser, &url).await;
    let answer = token(&app, Auth::Basic(&b), &redeem(&code)).await;
    assert_token_error(&answer, bad, "invalid_grant", "another client's code");

    // client_secret_post works.
    let code = code_without_pages(&app, &browser, &url).await;
    let answer = token(&app, Auth::Post(&a), &redeem(&code)).await;
    let claims = id_token_claims(&answer);
    assert_eq!(claims["aud"], a.id.as_str());
    assert_eq!(answer.1["token_type"], "Bearer");

    // Basic and client_secret in the body: one method per request (§2.3).
    let code = code_without_pages(&app, &browser, &url).await;
    let answer = token(&app, Auth::BasicAndPost(&a), &redeem(&code)).await;
    assert_token_error(&answer, bad, "invalid_request", "two auth methods");

    // A confidential client that sends no secret: 401 invalid_client.
    let code = code_without_pages(&app, &browser, &url).await;
    let answer = token(&app, Auth::IdOnly(&a), &redeem(&code)).await;
    assert_token_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "no secret",
    );

    // A public client sends none, and gets its tokens.
    let code = code_without_pages(&app, &browser, &authorize(&public.id, &[])).await;
    let answer = token(&app, Auth::IdOnly(&public), &redeem(&code)).await;
    assert_eq!(id_token_claims(&answer)["aud"], public.id.as_str());

    // 4 MiB with a Content-Length: 413 or 400, JSON, no-store.
    let mut big = "grant_type=authorization_code&code=x&padding=".to_owned();
    big.extend(std::iter::repeat_n('a', 4 * 1024 * 1024 - big.len()));
    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth(&a.id, a.secret.as_deref())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = response.status();
    assert!(
        [StatusCode::PAYLOAD_TOO_LARGE, bad].contains(&status),
        "{status}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let json: Value = response.json().await.expect("a JSON error");
    assert!(json["error"].is_string(), "{json}");

    // 4 MiB sent in chunks, without a length: the same JSON shape.
    let (status, answer) =
        post_chunked_4_mib(&app, "/token", "", "grant_type=authorization_code").await;
    assert!([413, 400].contains(&status), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{answer}");
    assert!(head.contains("cache-control: no-store"), "{answer}");
    assert!(body.contains("\"error\""), "{answer}");

    // The server still answers, and codes still work.
    let code = code_without_pages(&app, &browser, &url).await;
    let answer = token(&app, Auth::Basic(&a), &redeem(&code)).await;
    assert_eq!(answer.0, StatusCode::OK);
}

/// RFC 6749 §4.1.3 before §4.1.2: a code is checked against the presenting
/// client and its redirect_uri before anything else, so another client (a
/// public one with a bare client_id, or a confidential one) hears exactly
/// what an unknown code gets and revokes nothing of the owner's, and a
/// wrong redirect_uri revokes nothing either; the owner presenting its used
/// code again still revokes what the code bought (audit issue 14, item 8).
async fn only_the_codes_own_client_can_set_off_its_replay_revocation(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let owner = register(&app, &["--first-party"]);
    let other = register(&app, &["--first-party"]);
    let public = register(&app, &["--first-party", "--public"]);
    let resource_server = register(&app, &["--introspect"]);
    let browser = app.browser();
    let bad = StatusCode::BAD_REQUEST;
    let offline = [("scope", "openid offline_access")];

    let first = authorize_through_pages(&browser, &authorize(&owner.id, &offline), EMAIL).await;
    let code = first["code"].clone();
    let tokens = token(&app, Auth::Basic(&owner), &redeem(&code)).await;
    assert_eq!(tokens.0, StatusCode::OK, "{}", tokens.1);
    let access = tokens.1["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens.1["refresh_token"].as_str().unwrap().to_owned();

    let unknown = token(&app, Auth::Basic(&other), &redeem("no-such-code")).await;
    assert_token_error(&unknown, bad, "invalid_grant", "an unknown code");
    let not_valid = unknown.1["error_description"].clone();
    assert!(not_valid.is_string(), "{}", unknown.1);

    // The used code, from two foreign clients: an unknown code to them.
    let answer = token(&app, Auth::Basic(&other), &redeem(&code)).await;
    assert_token_error(&answer, bad, "invalid_grant", "confidential thief");
    assert_eq!(answer.1["error_description"], not_valid, "{}", answer.1);
    let answer = token(&app, Auth::IdOnly(&public), &redeem(&code)).await;
    assert_token_error(&answer, bad, "invalid_grant", "public thief");
    assert_eq!(answer.1["error_description"], not_valid, "{}", answer.1);
    // The owner's client with a redirect_uri the code was not issued for.
    let mut fields = redeem(&code);
    fields[2] = ("redirect_uri", "http://127.0.0.1:9/callback/");
    let answer = token(&app, Auth::Basic(&owner), &fields).await;
    assert_token_error(&answer, bad, "invalid_grant", "another redirect_uri");

    // None of it revoked the owner's tokens.
    let (status, info) = post_form(&app, "/introspect", &resource_server, &access).await;
    assert_eq!(
        (status, &info["active"]),
        (StatusCode::OK, &Value::Bool(true))
    );
    let refreshed = token(
        &app,
        Auth::Basic(&owner),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(
        refreshed.0,
        StatusCode::OK,
        "still refreshes: {}",
        refreshed.1
    );
    let refresh_token = refreshed.1["refresh_token"].as_str().unwrap().to_owned();

    // An expired code says so only to its own client.
    let second = code_without_pages(&app, &browser, &authorize(&owner.id, &offline)).await;
    clock.advance(Duration::seconds(61));
    let answer = token(&app, Auth::Basic(&other), &redeem(&second)).await;
    assert_eq!(answer.1["error_description"], not_valid, "{}", answer.1);
    let answer = token(&app, Auth::Basic(&owner), &redeem(&second)).await;
    assert_token_error(&answer, bad, "invalid_grant", "expired");
    assert_ne!(answer.1["error_description"], not_valid, "{}", answer.1);

    // The owner replaying its own code: the replay revocation (RFC 6749
    // §4.1.2) still takes everything the code bought, refreshed tokens too.
    let answer = token(&app, Auth::Basic(&owner), &redeem(&code)).await;
    assert_token_error(&answer, bad, "invalid_grant", "the owner's replay");
    let (_, info) = post_form(&app, "/introspect", &resource_server, &access).await;
    assert_eq!(info, serde_json::json!({ "active": false }));
    let answer = token(
        &app,
        Auth::Basic(&owner),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_token_error(&answer, bad, "invalid_grant", "the family is revoked");
}

/// POSTs a `token` form to `path` with `client`'s HTTP Basic credentials.
async fn post_form(
    app: &TestApp,
    path: &str,
    client: &TestClient,
    token: &str,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------- userinfo

/// OIDC Core §5.3 with RFC 6750: the challenge without and with an error
/// code (§3, §3.1), claims by scope (OIDC Core §5.4), the token in a form
/// body (RFC 6750 §2.2), and a disabled user's token refused.
async fn userinfo_follows_the_token_and_the_scopes(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &["--first-party"]);
    let browser = app.browser();

    // No token: 401 with a Bearer challenge and no error code (RFC 6750 §3.1).
    let (status, headers, _) = userinfo(&app, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = www_authenticate(&headers);
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error"), "{challenge}");

    // Garbage: invalid_token.
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        let (status, headers, _) = userinfo(&app, Some(garbage)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{garbage}");
        let challenge = www_authenticate(&headers);
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }

    let access_token = |scope: &'static str| {
        let (app, browser, client) = (&app, &browser, &client);
        async move {
            let url = authorize(&client.id, &[("scope", scope)]);
            let code = code_without_pages(app, browser, &url).await;
            let answer = token(app, Auth::Basic(client), &redeem(&code)).await;
            assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
            let expected: BTreeSet<&str> = scope.split(' ').collect();
            assert_eq!(scopes(&answer.1), expected);
            answer.1["access_token"].as_str().unwrap().to_owned()
        }
    };
    authorize_through_pages(&browser, &authorize(&client.id, &[]), EMAIL).await;

    // profile alone: name, no email.
    let profile_token = access_token("openid profile").await;
    let (status, _, claims) = userinfo(&app, Some(&profile_token)).await;
    assert_eq!(status, StatusCode::OK, "{claims}");
    assert_eq!(claims["name"], "Test User");
    assert!(claims.get("email").is_none(), "{claims}");
    assert!(claims.get("email_verified").is_none(), "{claims}");
    let sub = claims["sub"].as_str().unwrap().to_owned();

    // The same live token with one bit of its signature flipped: refused,
    // though its jti is in the database (the key parsed once at start
    // still checks every signature).
    let forged = {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (signed, signature) = profile_token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[7] ^= 0x01;
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
    };
    let (status, headers, _) = userinfo(&app, Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www_authenticate(&headers).contains("error=\"invalid_token\""));

    // email alone: email and email_verified, no name.
    let email_token = access_token("openid email").await;
    let (status, _, claims) = userinfo(&app, Some(&email_token)).await;
    assert_eq!(status, StatusCode::OK, "{claims}");
    assert_eq!(claims["email"], EMAIL);
    assert_eq!(claims["email_verified"], true);
    assert!(claims.get("name").is_none(), "{claims}");
    assert_eq!(claims["sub"], sub.as_str());

    // POST with the token in a form body (RFC 6750 §2.2).
    let response = app
        .client
        .post(app.url("/userinfo"))
        .form(&[("access_token", email_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["email"], EMAIL);

    // The user is disabled: their tokens stop working.
    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "user",
            "disable",
            EMAIL,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for token in [&profile_token, &email_token] {
        let (status, headers, _) = userinfo(&app, Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            www_authenticate(&headers).contains("error=\"invalid_token\""),
            "{}",
            www_authenticate(&headers)
        );
    }
}

// ---------------------------------------------------------------- discovery

/// Discovery 1.0 §3 fields that docs/integrate.md names, and RFC 9207
/// §3's `authorization_response_iss_parameter_supported`.
async fn discovery_publishes_what_is_implemented(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let doc: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    // request_uri_parameter_supported defaults to true: it must be said.
    assert_eq!(doc["request_uri_parameter_supported"], false);
    assert_eq!(doc["request_parameter_supported"], false);
    assert_eq!(doc["claims_parameter_supported"], false);
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let strings = |name: &str| -> Vec<String> {
        doc[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is a list: {doc}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(strings("response_modes_supported"), ["query", "form_post"]);
    let methods = strings("token_endpoint_auth_methods_supported");
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
    }
    let scopes = strings("scopes_supported");
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(scopes.iter().any(|s| s == scope), "{scope}: {scopes:?}");
    }
    let claims = strings("claims_supported");
    for claim in [
        "sub",
        "iss",
        "auth_time",
        "acr",
        "amr",
        "sid",
        "name",
        "email",
        "email_verified",
    ] {
        assert!(claims.iter().any(|c| c == claim), "{claim}: {claims:?}");
    }
    let acr = strings("acr_values_supported");
    for value in ["urn:stepgate:acr:pwd", "urn:stepgate:acr:mfa"] {
        assert!(acr.iter().any(|a| a == value), "{value}: {acr:?}");
    }
    assert_eq!(strings("code_challenge_methods_supported"), ["S256"]);
    assert_eq!(strings("response_types_supported"), ["code"]);
}

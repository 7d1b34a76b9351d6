//! OpenID Connect single sign-on, with the `openidconnect` crate as the
//! relying party and a cookie-keeping browser on the hosted pages.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::Value;
use stepgate::clock::{Clock, FixedClock};

use crate::accounts::PASSWORD;
use crate::browser::{Browser, Page};
use crate::helpers::{
    Backend, TestApp, oidc_http, spawn_app_with_clock, stderr, stdout, stepgate, write_config,
};
use crate::on_both_backends;
use crate::two_factor::{activate, totp_code};

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

on_both_backends!(
    confidential_client_signs_a_user_in,
    public_client_with_pkce,
    two_factor_user_gets_mfa_in_the_id_token,
    require_mfa_client_enrolls_a_user_in_flow,
    acr_values_step_up_asks_only_for_the_code,
    phr_without_a_passkey_is_refused_and_any_listed_value_suffices,
    token_endpoint_refuses_bad_requests,
    a_replayed_code_revokes_its_tokens,
    consents_are_listed_and_revocable,
);

/// A registered client, made with the CLI.
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
}

pub fn register(app: &TestApp, extra: &[&str]) -> TestClient {
    let config = write_config(app.dir.path(), &app.db, "");
    let mut args = vec![
        "client",
        "create",
        "--name",
        "NAO Cloud",
        "--redirect-uri",
        REDIRECT,
        "--json",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = stepgate(&args, &[]);
    assert!(out.status.success(), "client create: {}", stderr(&out));
    let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    TestClient {
        id: json["client_id"].as_str().unwrap().to_owned(),
        secret: json["client_secret"].as_str().map(str::to_owned),
    }
}

pub async fn spawn(backend: Backend) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 5, 0).unwrap());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    (app, clock)
}

pub type Rp = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The relying party, configured by discovery.
pub async fn relying_party(app: &TestApp, client: &TestClient) -> Rp {
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.issuer.clone()).unwrap(),
        &oidc_http,
    )
    .await
    .expect("discovery");
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
}

/// One authorization request made by the relying party.
pub struct Flow {
    pub url: String,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

pub fn start(rp: &Rp, acr: Option<&str>) -> Flow {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge);
    if let Some(acr) = acr {
        request = request.add_auth_context_value(AuthenticationContextClass::new(acr.into()));
    }
    let (url, state, nonce) = request.url();
    Flow {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

/// Follows redirects until one leaves for the client's redirect URI, and
/// returns that Location (never fetched: nothing listens there).
pub async fn until_client(browser: &Browser, mut page: Page) -> Result<String, Page> {
    for _ in 0..12 {
        if !page.status.is_redirection() {
            return Err(page);
        }
        let location = page.headers["location"].to_str().unwrap().to_owned();
        if location.starts_with(REDIRECT) {
            return Ok(location);
        }
        page = browser.get_raw(&location).await;
    }
    panic!("too many redirects");
}

/// The query parameters of a URL.
pub fn query(url: &str) -> std::collections::BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Exchanges the code at the token endpoint and verifies the ID token as a
/// relying party must (signature, iss, aud, nonce, at_hash).
pub async fn exchange(
    rp: &Rp,
    flow: Flow,
    code: &str,
) -> (openidconnect::core::CoreTokenResponse, CoreIdTokenClaims) {
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .unwrap()
        .set_pkce_verifier(flow.verifier)
        .request_async(&oidc_http)
        .await
        .expect("the token endpoint answers");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = rp.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &flow.nonce)
        .expect("the ID token verifies")
        .clone();
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(expected, &actual, "at_hash binds the access token");
    (tokens, claims)
}

fn amr(claims: &CoreIdTokenClaims) -> Vec<String> {
    claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect()
}

/// Sign in and consent through the pages for `flow`; returns the code.
pub async fn sign_in_and_consent(browser: &Browser, flow: &Flow, email: &str) -> String {
    let start = browser.get_raw(&flow.url).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.html);
    let login = browser.follow(start).await;
    assert!(login.contains("Sign in"), "{}", login.html);
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
    let consent = until_client(browser, after)
        .await
        .expect_err("consent first");
    assert!(consent.contains("Allow NAO Cloud?"), "{}", consent.html);
    assert_eq!(
        consent.form("/consent").buttons,
        vec![
            ("decision".to_owned(), "allow".to_owned()),
            ("decision".to_owned(), "deny".to_owned())
        ]
    );
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let location = until_client(browser, allowed)
        .await
        .expect("back at the client");
    let params = query(&location);
    assert_eq!(params["state"], *flow.state.secret());
    params["code"].clone()
}

async fn confidential_client_signs_a_user_in(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    assert!(client.secret.is_some());
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();

    let flow = start(&rp, None);
    let code = sign_in_and_consent(&browser, &flow, "ada@example.com").await;
    let (tokens, claims) = exchange(&rp, flow, &code).await;
    assert_eq!(claims.issuer().as_str(), app.issuer);
    assert_eq!(amr(&claims), ["pwd"]);
    assert_eq!(
        claims.auth_context_ref().unwrap().as_str(),
        "urn:stepgate:acr:pwd"
    );
    assert_eq!(
        claims.auth_time().unwrap().timestamp(),
        clock.now().timestamp()
    );
    assert_eq!(claims.email().unwrap().as_str(), "ada@example.com");
    let sub = claims.subject().as_str().to_owned();
    assert_ne!(sub, "ada@example.com", "sub is never the email");

    // UserInfo through the relying-party library.
    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&oidc_http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.email().unwrap().as_str(), "ada@example.com");

    // The raw ID token carries sid; the access token is an RFC 9068 JWT.
    let raw: Value = payload(tokens.id_token().unwrap().to_string().as_str());
    assert!(raw["sid"].is_string());
    let header: Value = header(tokens.access_token().secret());
    assert_eq!(header["typ"], "at+jwt");
    let access: Value = payload(tokens.access_token().secret());
    for claim in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
        assert!(
            !access[claim].is_null(),
            "access token lacks {claim}: {access}"
        );
    }
    assert_eq!(access["sub"], sub.as_str());

    // A second sign-in: the session and the remembered consent go straight back.
    let again = start(&rp, None);
    let answer = browser.get_raw(&again.url).await;
    let location = until_client(&browser, answer)
        .await
        .expect("no pages this time");
    assert!(query(&location).contains_key("code"));
    assert_eq!(query(&location)["iss"], app.issuer);
}

/// The base64url JSON part `index` of a JWT.
fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

pub fn payload(token: &str) -> Value {
    jwt_part(token, 1)
}

fn header(token: &str) -> Value {
    jwt_part(token, 0)
}

async fn public_client_with_pkce(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("pub@example.com", PASSWORD, true).await;
    let client = register(&app, &["--public"]);
    assert!(client.secret.is_none());
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let flow = start(&rp, None);
    let code = sign_in_and_consent(&browser, &flow, "pub@example.com").await;
    let (_, claims) = exchange(&rp, flow, &code).await;
    assert_eq!(claims.audiences()[0].as_str(), client.id);
}

async fn two_factor_user_gets_mfa_in_the_id_token(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("mfa@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "mfa@example.com").await;
    let profile = browser.get("/profile").await;
    browser.submit(&profile, "/logout", &[]).await;
    clock.advance(Duration::seconds(30));

    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let login = browser.get(&flow.url).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "mfa@example.com"), ("password", PASSWORD)],
        )
        .await;
    let prompt = until_client(&browser, after)
        .await
        .expect_err("the code prompt");
    assert!(prompt.contains("Enter your code"), "{}", prompt.html);
    let code = totp_code(&secret, clock.now());
    let after = browser
        .submit_raw(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    let consent = until_client(&browser, after).await.expect_err("consent");
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let location = until_client(&browser, allowed).await.unwrap();
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(
        claims.auth_context_ref().unwrap().as_str(),
        "urn:stepgate:acr:mfa"
    );
}

async fn require_mfa_client_enrolls_a_user_in_flow(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("new2fa@example.com", PASSWORD, true).await;
    let client = register(&app, &["--require-mfa"]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let flow = start(&rp, None);
    let login = browser.get(&flow.url).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "new2fa@example.com"), ("password", PASSWORD)],
        )
        .await;
    let enroll = until_client(&browser, after)
        .await
        .expect_err("activation page");
    assert!(
        enroll.contains("Activate two-factor authentication"),
        "{}",
        enroll.html
    );
    let secret = enroll.element_text("totp-secret").unwrap();
    let code = totp_code(&secret, clock.now());
    let form = enroll
        .forms()
        .into_iter()
        .find(|f| f.action.starts_with("/profile/2fa/activate"))
        .unwrap();
    let codes = browser
        .submit(&enroll, &form.action, &[("code", &code)])
        .await;
    assert_eq!(codes.list_items("recovery-codes").len(), 10);
    // "Continue" is a POST form back into the authorization.
    let cont = codes
        .forms()
        .into_iter()
        .find(|f| f.action.starts_with("/authorize/resume"))
        .expect("a Continue form");
    let after = browser.submit_raw(&codes, &cont.action, &[]).await;
    let consent = until_client(&browser, after).await.expect_err("consent");
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let location = until_client(&browser, allowed).await.unwrap();
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
}

async fn acr_values_step_up_asks_only_for_the_code(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("step@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "step@example.com").await;
    let client = register(&app, &["--first-party"]);
    let rp = relying_party(&app, &client).await;
    browser.get("/profile").await;
    // Sign in anew with the password only ... then a client asks for MFA.
    let profile = browser.get("/profile").await;
    browser.submit(&profile, "/logout", &[]).await;
    clock.advance(Duration::seconds(30));
    let flow = start(&rp, Some("urn:stepgate:acr:mfa"));
    let login = browser.get(&flow.url).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "step@example.com"), ("password", PASSWORD)],
        )
        .await;
    let prompt = until_client(&browser, after)
        .await
        .expect_err("only the code");
    assert!(prompt.contains("Enter your code"));
    assert!(!prompt.contains("Password"), "no second password prompt");
    let code = totp_code(&secret, clock.now());
    let after = browser
        .submit_raw(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    // First-party: no consent page.
    let location = until_client(&browser, after).await.expect("straight back");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(
        claims.auth_context_ref().unwrap().as_str(),
        "urn:stepgate:acr:mfa"
    );
}

/// `acr_values` phr cannot be met where passkeys are off (this server's
/// issuer is `http://127.0.0.1:PORT`, an IP address): the client gets `unmet_authentication_requirements`,
/// never a code. With `phr mfa` either value suffices (OpenID Connect Core
/// §3.1.2.1), and the code meets mfa.
async fn phr_without_a_passkey_is_refused_and_any_listed_value_suffices(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("phr@example.com", PASSWORD, true).await;
    let browser = app.browser();
    // Activation leaves the session with the password and a code (mfa).
    activate(&app, &browser, "phr@example.com").await;
    let client = register(&app, &["--first-party"]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, Some("urn:stepgate:acr:phr"));
    let page = browser.get_raw(&flow.url).await;
    let location = until_client(&browser, page)
        .await
        .expect("refused straight back to the client");
    let params = query(&location);
    assert_eq!(params["error"], "unmet_authentication_requirements");
    assert!(!params.contains_key("code"));

    let flow = start(&rp, Some("urn:stepgate:acr:phr urn:stepgate:acr:mfa"));
    clock.advance(Duration::seconds(30));
    let page = browser.get_raw(&flow.url).await;
    let location = until_client(&browser, page).await.expect("mfa is met");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(
        claims.auth_context_ref().unwrap().as_str(),
        "urn:stepgate:acr:mfa"
    );
}

/// Raw POST to /token.
async fn token_raw(
    app: &TestApp,
    content_type: Option<&str>,
    body: &str,
    basic: Option<(&str, &str)>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app.client.post(app.url("/token")).body(body.to_owned());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let json: Value = response.json().await.expect("a JSON body");
    (status, headers, json)
}

async fn token_endpoint_refuses_bad_requests(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let client = register(&app, &[]);
    let secret = client.secret.clone().unwrap();
    let form = Some("application/x-www-form-urlencoded");

    // Not a form: a JSON error, never axum's plain-text 415.
    for (ct, body) in [
        (
            Some("application/json"),
            "{\"grant_type\":\"authorization_code\"}",
        ),
        (Some("multipart/form-data; boundary=x"), "--x--"),
        (None, "grant_type=authorization_code"),
    ] {
        let (status, headers, json) = token_raw(&app, ct, body, Some((&client.id, &secret))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{ct:?}");
        assert_eq!(json["error"], "invalid_request");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // Wrong secret with Basic: 401 and a Basic challenge.
    let (status, headers, json) = token_raw(
        &app,
        form,
        "grant_type=authorization_code&code=x",
        Some((&client.id, "wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "invalid_client");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // Wrong secret in the body: 401 too.
    let body = format!(
        "grant_type=authorization_code&code=x&client_id={}&client_secret=wrong",
        client.id
    );
    let (status, _, json) = token_raw(&app, form, &body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "invalid_client");
    // Unknown grant type, unknown code, repeated parameter.
    let (status, _, json) = token_raw(
        &app,
        form,
        "grant_type=password",
        Some((&client.id, &secret)),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (_, _, json) = token_raw(
        &app,
        form,
        &format!("grant_type=authorization_code&code=nope&redirect_uri={REDIRECT}"),
        Some((&client.id, &secret)),
    )
    .await;
    assert_eq!(json["error"], "invalid_grant");
    let (_, _, json) = token_raw(
        &app,
        form,
        "grant_type=authorization_code&code=a&code=b",
        Some((&client.id, &secret)),
    )
    .await;
    assert_eq!(json["error"], "invalid_request");
}

async fn a_replayed_code_revokes_its_tokens(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("replay@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let flow = start(&rp, None);
    let code = sign_in_and_consent(&browser, &flow, "replay@example.com").await;
    let verifier = flow.verifier.secret().clone();
    let (tokens, _) = exchange(&rp, flow, &code).await;
    let userinfo = |token: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/userinfo"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        userinfo(tokens.access_token().secret().clone()).await,
        StatusCode::OK
    );

    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={REDIRECT}&code_verifier={verifier}"
    );
    let (status, _, json) = token_raw(
        &app,
        Some("application/x-www-form-urlencoded"),
        &body,
        Some((&client.id, client.secret.as_deref().unwrap())),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "invalid_grant");
    // RFC 6749 §4.1.2: what the first redemption bought is revoked.
    assert_eq!(
        userinfo(tokens.access_token().secret().clone()).await,
        StatusCode::UNAUTHORIZED
    );
}

async fn consents_are_listed_and_revocable(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("apps@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let flow = start(&rp, None);
    let code = sign_in_and_consent(&browser, &flow, "apps@example.com").await;
    let (tokens, _) = exchange(&rp, flow, &code).await;

    let profile = browser.get("/profile").await;
    assert!(profile.contains("Connected applications"));
    assert!(
        profile.contains("<strong>NAO Cloud</strong>"),
        "{}",
        profile.html
    );
    let form = profile.form("/profile/consents/revoke");
    assert_eq!(form.fields["client_id"], client.id);
    let after = browser
        .submit(&profile, "/profile/consents/revoke", &[])
        .await;
    assert!(after.contains("access is removed"));
    assert!(!after.contains("<strong>NAO Cloud</strong>"));

    // Its access token stops working, and the next sign-in asks again.
    let status = app
        .client
        .get(app.url("/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let again = start(&rp, None);
    let answer = browser.get_raw(&again.url).await;
    let page = until_client(&browser, answer)
        .await
        .expect_err("consent again");
    assert!(page.contains("Allow NAO Cloud?"));
}

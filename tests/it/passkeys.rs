//! Passkeys end to end over HTTP, with the tests' software authenticator
//! (`passkey_authenticator`): registration on the profile, passwordless
//! sign-in through an authorization, the passkey as second factor beside
//! TOTP, the phr rules, and every refusal, each audited.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, QueryResult, Statement};
use serde_json::{Value, json};
use stepgate::clock::FixedClock;

use crate::accounts::{PASSWORD, sign_in};
use crate::browser::{Browser, Page};
use crate::helpers::{Backend, LOCALHOST, TestApp, spawn_app_with_clock, stepgate, write_config};
use crate::oidc::{Flow, exchange, query, register, relying_party, start, until_client};
use crate::on_both_backends;
use crate::passkey_authenticator::Authenticator;
use crate::two_factor::{activate, totp_code};

on_both_backends!(
    a_passkey_registered_on_the_profile_signs_in_without_a_password,
    a_passkey_is_the_second_factor_beside_totp,
    require_mfa_is_met_by_a_passkey_and_phr_asks_for_one,
    every_refusal_is_a_json_error_and_audited,
    a_ceremony_begun_on_one_node_finishes_on_another_once,
    reset_2fa_and_removal_take_passkeys_away,
    an_address_with_too_many_refused_ceremonies_waits,
    a_refresh_keeps_the_passkey_sign_in_until_the_passkey_is_gone,
    in_flow_enrolment_offers_a_passkey_beside_the_app,
);

const EMAIL: &str = "pia@example.com";

/// A server whose issuer is `http://localhost:PORT` (passkeys need a host
/// name), on a fixed clock.
async fn spawn(backend: Backend) -> (TestApp, FixedClock) {
    spawn_with(backend, |_| {}).await
}

async fn spawn_with(
    backend: Backend,
    configure: impl FnOnce(&mut stepgate::config::Settings),
) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 5, 0).unwrap());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |s| {
        s.issuer = LOCALHOST.into();
        configure(s);
    })
    .await;
    assert!(app.issuer.starts_with("http://localhost:"));
    (app, clock)
}

/// The page's `<meta name="csrf-token">`.
fn csrf_meta(page: &Page) -> String {
    let start = page
        .html
        .find("<meta name=\"csrf-token\" content=\"")
        .unwrap_or_else(|| panic!("a csrf-token meta: {}", page.html))
        + "<meta name=\"csrf-token\" content=\"".len();
    let end = start + page.html[start..].find('"').unwrap();
    page.html[start..end].to_owned()
}

/// An attribute of the `id="webauthn"` element.
fn webauthn_attr(page: &Page, name: &str) -> String {
    let element = page
        .html
        .find("id=\"webauthn\"")
        .unwrap_or_else(|| panic!("an id=webauthn element: {}", page.html));
    let tag_end = element + page.html[element..].find('>').unwrap();
    let tag = &page.html[element..tag_end];
    let key = format!("{name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
    let end = start + tag[start..].find('"').unwrap();
    crate::browser::unescape(&tag[start..end])
}

/// POSTs JSON with the CSRF header, as `assets/webauthn.js` does.
async fn post_json(browser: &Browser, path: &str, csrf: &str, body: &Value) -> (StatusCode, Value) {
    let response = browser
        .client
        .post(format!("{}{}", browser.base, path))
        .header("x-csrf-token", csrf)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    let json: Value = response.json().await.expect("a JSON answer");
    (status, json)
}

/// The ceremony on `page` (its `id="webauthn"` element), run by `device`.
/// Returns the finish's status and JSON.
async fn ceremony(
    browser: &Browser,
    page: &Page,
    device: &mut Authenticator,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let csrf = csrf_meta(page);
    let (status, options) = post_json(
        browser,
        &webauthn_attr(page, "data-options-url"),
        &csrf,
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{options}");
    let mut credential = match webauthn_attr(page, "data-mode").as_str() {
        "create" => device.create(&options),
        _ => device.get(&options),
    };
    for (k, v) in extra {
        credential[*k] = json!(v);
    }
    post_json(
        browser,
        &webauthn_attr(page, "data-finish-url"),
        &csrf,
        &credential,
    )
    .await
}

/// Signs in with the password and adds a passkey named `name` from the
/// profile (the password was just proved: fresh enough).
async fn add_passkey(app: &TestApp, browser: &Browser, name: &str) -> Authenticator {
    let page = browser.get("/profile/passkeys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(webauthn_attr(&page, "data-mode"), "create");
    let mut device = Authenticator::new(&app.issuer);
    let csrf = csrf_meta(&page);
    let (status, options) =
        post_json(browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{options}");
    // A discoverable credential, user verification required, this rp.
    let pk = &options["publicKey"];
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(pk["rp"]["id"], "localhost");
    let credential = device.create(&options);
    let mut body = credential.clone();
    body["name"] = json!(name);
    let (status, done) = post_json(browser, "/profile/passkeys/finish", &csrf, &body).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let to = done["redirect"].as_str().unwrap().to_owned();
    if to == "/login/2fa?added=1" {
        // The account's first second factor: this session has not passed
        // it, so it is used once now, back to the list.
        let page = browser.get(&to).await;
        assert!(page.contains("Your passkey was added"), "{}", page.html);
        let (status, done) = ceremony(browser, &page, &mut device, &[]).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert_eq!(done["redirect"], "/profile/passkeys?done=verified");
    } else {
        assert_eq!(to, "/profile/passkeys?done=added");
        let listed = browser.get(&to).await;
        assert!(listed.contains("Your passkey was added"));
    }
    let listed = browser.get("/profile/passkeys").await;
    assert!(listed.contains(name), "{}", listed.html);
    device
}

/// A browser that never takes a cookie back: it keeps sending the
/// pre-session cookie of its first visit to `/login`, so the same finish
/// can be sent again (a replay) after one of them signed in.
struct Replayer {
    client: reqwest::Client,
    cookie: String,
    csrf: String,
    base: String,
}

impl Replayer {
    async fn new(app: &TestApp) -> Self {
        let login = app.browser().get("/login").await;
        let cookie = login
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("stepgate_csrf="))
            .and_then(|v| v.split(';').next())
            .expect("a pre-session cookie")
            .to_owned();
        Self {
            client: reqwest::Client::new(),
            cookie,
            csrf: csrf_meta(&login),
            base: app.address.clone(),
        }
    }

    async fn post_to(&self, base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{base}{path}"))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = response.status();
        (status, response.json().await.expect("a JSON answer"))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_to(&self.base, path, body).await
    }
}

async fn rows(app: &TestApp, sql: &str) -> Vec<QueryResult> {
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap();
    db.close().await.unwrap();
    rows
}

/// The passkey audit trail: (kind, outcome, detail), oldest first.
async fn passkey_audit(app: &TestApp) -> Vec<(String, String, String)> {
    rows(
        app,
        "SELECT kind, outcome, COALESCE(detail, '') FROM audit_events \
         WHERE kind LIKE 'passkey.%' OR kind = 'signin.passkey' ORDER BY id",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.try_get_by_index::<String>(0).unwrap(),
            r.try_get_by_index::<String>(1).unwrap(),
            r.try_get_by_index::<String>(2).unwrap(),
        )
    })
    .collect()
}

fn amr(claims: &openidconnect::core::CoreIdTokenClaims) -> Vec<String> {
    claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect()
}

fn acr(claims: &openidconnect::core::CoreIdTokenClaims) -> String {
    claims.auth_context_ref().unwrap().as_str().to_owned()
}

/// The authorization URL, sent to the server's own address (the browser's
/// cookies live there; the issuer's name is only `localhost`).
fn at_server(app: &TestApp, flow: &Flow) -> String {
    flow.url.replacen(&app.issuer, &app.address, 1)
}

async fn sign_out(browser: &Browser) {
    let profile = browser.get("/profile").await;
    let out = browser.submit(&profile, "/logout", &[]).await;
    assert!(out.url.contains("/login"), "{}", out.url);
}

async fn a_passkey_registered_on_the_profile_signs_in_without_a_password(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, EMAIL, PASSWORD).await;
    let profile = browser.get("/profile").await;
    assert!(
        profile.link("Manage passkeys").is_some(),
        "{}",
        profile.html
    );
    let mut device = add_passkey(&app, &browser, "Pia laptop").await;
    app.mail_settled().await;
    let mails = app.emails_to(EMAIL).await;
    assert!(
        mails.iter().any(|m| m.contains("A passkey was added")),
        "{mails:?}"
    );
    sign_out(&browser).await;

    // Discovery offers phr now that passkeys can be used.
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["acr_values_supported"],
        json!([
            "urn:stepgate:acr:pwd",
            "urn:stepgate:acr:mfa",
            "urn:stepgate:acr:phr"
        ])
    );

    // The authorization lands on the sign-in page, which offers the passkey.
    let client = register(&app, &["--first-party"]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let login = browser.get(&at_server(&app, &flow)).await;
    assert!(login.contains("Sign in with a passkey"), "{}", login.html);
    assert_eq!(webauthn_attr(&login, "data-conditional"), "true");
    assert!(login.html.contains("autocomplete=\"username webauthn\""));
    assert!(
        login
            .html
            .contains("<script src=\"/assets/webauthn.js\" defer>")
    );
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    let script = app.get("/assets/webauthn.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.text().await.unwrap().contains("X-CSRF-Token"));

    let (status, done) = ceremony(&browser, &login, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let to = done["redirect"].as_str().unwrap();
    assert!(to.starts_with("/authorize/resume?interaction="), "{to}");
    let location = until_client(&browser, browser.get_raw(to).await)
        .await
        .expect("a code, no other step");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pop", "user", "mfa"]);
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");

    // The same session meets phr and mfa later without a prompt.
    clock.advance(Duration::seconds(30));
    let flow = start(&rp, Some("urn:stepgate:acr:phr"));
    let location = until_client(&browser, browser.get_raw(&at_server(&app, &flow)).await)
        .await
        .expect("phr is met by the session's passkey");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");

    // The audit has each step: the first passkey was used once right
    // after it was added (the session had no second factor yet).
    let audit = passkey_audit(&app).await;
    let kinds: Vec<(&str, &str)> = audit
        .iter()
        .map(|(k, o, _)| (k.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("passkey.registered", "success"),
            ("passkey.check", "success"),
            ("signin.passkey", "success")
        ],
        "{audit:?}"
    );
}

async fn a_passkey_is_the_second_factor_beside_totp(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _codes) = activate(&app, &browser, EMAIL).await;
    // The activation just proved the code: fresh enough to add a passkey.
    let mut device = add_passkey(&app, &browser, "Phone").await;
    sign_out(&browser).await;

    // Password, then the 2FA page offers the code and the passkey.
    let client = register(&app, &["--first-party"]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let login = browser.get(&at_server(&app, &flow)).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let challenge = browser.follow(after).await;
    assert!(challenge.url.contains("/login/2fa"), "{}", challenge.url);
    assert!(challenge.html.contains("id=\"code\""), "{}", challenge.html);
    assert_eq!(webauthn_attr(&challenge, "data-mode"), "get");
    let (status, done) = ceremony(&browser, &challenge, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let location = until_client(
        &browser,
        browser.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect("a code");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "pop", "mfa"]);
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");
    sign_out(&browser).await;

    // Or the code, as before: mfa, not phr.
    clock.advance(Duration::seconds(30));
    let flow = start(&rp, None);
    let login = browser.get(&at_server(&app, &flow)).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let challenge = browser.follow(after).await;
    let code = totp_code(&secret, app.clock.now());
    let action = "/login/2fa";
    let answer = browser
        .submit_raw(&challenge, action, &[("code", &code)])
        .await;
    let location = until_client(&browser, answer).await.expect("a code");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(acr(&claims), "urn:stepgate:acr:mfa");

    // Step-up to phr from that session asks for the passkey, not a code.
    clock.advance(Duration::seconds(30));
    let flow = start(&rp, Some("urn:stepgate:acr:phr"));
    let step = browser.get_raw(&at_server(&app, &flow)).await;
    assert_eq!(step.status, StatusCode::SEE_OTHER);
    let to = step.headers["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with("/login/passkey?interaction="), "{to}");
    let page = browser.get(&to).await;
    assert!(page.contains("Use your passkey"), "{}", page.html);
    let (status, done) = ceremony(&browser, &page, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let location = until_client(
        &browser,
        browser.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect("a code");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "pop", "mfa"]);
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");
}

async fn require_mfa_is_met_by_a_passkey_and_phr_asks_for_one(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    // A passkey-only user (no TOTP) and a require_mfa client: the
    // passkey alone is multi-factor, no enrolment is asked.
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, EMAIL, PASSWORD).await;
    let mut device = add_passkey(&app, &browser, "Key").await;
    sign_out(&browser).await;
    let client = register(&app, &["--first-party", "--require-mfa"]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let login = browser.get(&at_server(&app, &flow)).await;
    let (status, done) = ceremony(&browser, &login, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let location = until_client(
        &browser,
        browser.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect("a code: the passkey meets require_mfa");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");
    sign_out(&browser).await;

    // The same user with the password only: the 2FA page offers just the
    // passkey (no code form: there is no app).
    clock.advance(Duration::seconds(30));
    let flow = start(&rp, None);
    let login = browser.get(&at_server(&app, &flow)).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let challenge = browser.follow(after).await;
    assert!(challenge.url.contains("/login/2fa"), "{}", challenge.url);
    assert!(
        !challenge.html.contains("id=\"code\""),
        "{}",
        challenge.html
    );
    let (status, done) = ceremony(&browser, &challenge, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    sign_out(&browser).await;

    // A TOTP-only user asked for phr: the code first, then a new passkey
    // in the flow, then that passkey: phr, never the code alone.
    let other = Browser::new(&app.address);
    app.create_user("tom@example.com", PASSWORD, true).await;
    let (secret, _) = activate(&app, &other, "tom@example.com").await;
    let out = other.get("/profile").await;
    other.submit(&out, "/logout", &[]).await;
    clock.advance(Duration::seconds(30));
    let flow = start(&rp, Some("urn:stepgate:acr:phr"));
    let login = other.get(&at_server(&app, &flow)).await;
    let after = other
        .submit_raw(
            &login,
            "/login",
            &[("email", "tom@example.com"), ("password", PASSWORD)],
        )
        .await;
    let challenge = other.follow(after).await;
    assert!(challenge.url.contains("/login/2fa"), "{}", challenge.url);
    let code = totp_code(&secret, app.clock.now());
    let action = "/login/2fa";
    let answer = other
        .submit_raw(&challenge, action, &[("code", &code)])
        .await;
    let enrol = until_client(&other, answer)
        .await
        .expect_err("a passkey to add, not a code");
    assert!(
        enrol.url.contains("/profile/passkeys?interaction="),
        "{}",
        enrol.url
    );
    let mut tom = Authenticator::new(&app.issuer);
    let (status, done) = ceremony(&other, &enrol, &mut tom, &[("name", "Tom's key")]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let use_it = until_client(
        &other,
        other.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect_err("then the new passkey is used");
    assert!(
        use_it.url.contains("/login/passkey?interaction="),
        "{}",
        use_it.url
    );
    let (status, done) = ceremony(&other, &use_it, &mut tom, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let location = until_client(
        &other,
        other.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect("a code");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "pop", "mfa"]);
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");
}

/// What is bent on an authenticator, how, and the error and words expected.
type Bent = (
    &'static str,
    fn(&mut Authenticator),
    &'static str,
    &'static str,
);

async fn every_refusal_is_a_json_error_and_audited(backend: Backend) {
    let (app, clock) = spawn_with(backend, |s| s.passkeys.max_per_user = 2).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, EMAIL, PASSWORD).await;
    let mut device = add_passkey(&app, &browser, "First").await;
    let page = browser.get("/profile/passkeys").await;
    let csrf = csrf_meta(&page);

    // Registration: no CSRF header, a malformed body, bad CBOR, the same
    // credential again, then the limit.
    let response = browser
        .client
        .post(app.url("/profile/passkeys/options"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_csrf_token");
    let response = browser
        .client
        .post(app.url("/profile/passkeys/finish"))
        .header("x-csrf-token", &csrf)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");

    let (_, options) = post_json(&browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    let mut second = Authenticator::new(&app.issuer);
    let mut credential = second.create(&options);
    credential["response"]["attestationObject"] = json!("oWNmbXQ"); // truncated CBOR
    let (status, body) = post_json(&browser, "/profile/passkeys/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");

    let (_, options) = post_json(&browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    let again = device.create(&options); // a credential id registered already
    let (status, body) = post_json(&browser, "/profile/passkeys/finish", &csrf, &again).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "already_registered", "{body}");

    // Registration without user verification is refused too.
    let (_, options) = post_json(&browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    second.verifies_user = false;
    let credential = second.create(&options);
    let (status, body) = post_json(&browser, "/profile/passkeys/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "verification_failed", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("verify the user")
    );
    second.verifies_user = true;

    let (_, options) = post_json(&browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    let credential = second.create(&options);
    let (status, body) = post_json(&browser, "/profile/passkeys/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post_json(&browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "limit_reached", "{body}");
    let full = browser.get("/profile/passkeys").await;
    assert!(
        full.contains("the most an account may have"),
        "{}",
        full.html
    );

    // Without a fresh factor no passkey is added.
    clock.advance(Duration::seconds(
        app.settings.session.mfa_fresh_secs as i64 + 1,
    ));
    let (status, body) = post_json(&browser, "/profile/passkeys/options", &csrf, &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "reauthentication_required", "{body}");
    sign_out(&browser).await;

    // Passwordless: each refusal, on a fresh challenge each time.
    let login = browser.get("/login").await;
    let csrf = csrf_meta(&login);
    let options = || async {
        let (status, options) =
            post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{options}");
        assert!(
            options["publicKey"]["allowCredentials"].is_null()
                || options["publicKey"]["allowCredentials"] == json!([])
        );
        options
    };
    let finish = |credential: Value| {
        let browser = &browser;
        let csrf = csrf.clone();
        async move { post_json(browser, "/login/passkey/finish", &csrf, &credential).await }
    };
    let cases: [Bent; 3] = [
        (
            "a phishing page's origin",
            |d| d.origin = "http://localhost.evil.example".into(),
            "verification_failed",
            "origin",
        ),
        (
            "another site's rp id",
            |d| d.rp_id = "example.com".into(),
            "verification_failed",
            "rp id hash",
        ),
        (
            "no user verification",
            |d| d.verifies_user = false,
            "verification_failed",
            "verify the user",
        ),
    ];
    for (what, bend, code, description) in cases {
        let (origin, rp_id) = (device.origin.clone(), device.rp_id.clone());
        bend(&mut device);
        let credential = device.get(&options().await);
        (device.origin, device.rp_id, device.verifies_user) = (origin, rp_id, true);
        let (status, body) = finish(credential).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(description),
            "{what}: {body}"
        );
    }

    // A challenge works once; a late one has expired.
    let replayer = Replayer::new(&app).await;
    let (_, once) = replayer.post("/login/passkey/options", &json!({})).await;
    let credential = device.get(&once);
    let (status, body) = replayer.post("/login/passkey/finish", &credential).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = replayer.post("/login/passkey/finish", &credential).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_challenge", "{body}");
    let (_, late) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    clock.advance(Duration::seconds(301));
    let credential = device.get(&late);
    let (status, body) = post_json(&browser, "/login/passkey/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_challenge", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // A challenge is bound to the browser that asked for it.
    let (_, mine) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    let stranger = Browser::new(&app.address);
    let their_login = stranger.get("/login").await;
    let credential = device.get(&mine);
    let (status, body) = post_json(
        &stranger,
        "/login/passkey/finish",
        &csrf_meta(&their_login),
        &credential,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_challenge", "{body}");

    // A counter that goes backwards: a cloned authenticator.
    let (_, options) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    let challenge = options["publicKey"]["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let client_data = serde_json::to_vec(&json!({
        "type": "webauthn.get",
        "challenge": challenge,
        "origin": app.issuer,
        "crossOrigin": false,
    }))
    .unwrap();
    let cloned = device.sign(&client_data, 1);
    let (status, body) = post_json(&browser, "/login/passkey/finish", &csrf, &cloned).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "counter_regressed", "{body}");

    // A credential nobody registered, and one of another account.
    let (_, options) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    let mut unknown = Authenticator::new(&app.issuer);
    unknown.user_handle = device.user_handle.clone();
    let credential = unknown.get(&options);
    let (status, body) = post_json(&browser, "/login/passkey/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unknown_credential", "{body}");

    app.create_user("other@example.com", PASSWORD, true).await;
    let other = Browser::new(&app.address);
    sign_in(&other, "other@example.com", PASSWORD).await;
    let mut theirs = add_passkey(&app, &other, "Theirs").await;
    let (_, options) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    theirs.user_handle = device.user_handle.clone(); // claims to be Pia's
    let credential = theirs.get(&options);
    let (status, body) = post_json(&browser, "/login/passkey/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unknown_credential", "{body}");

    // As a second factor: another account's passkey is not this user's.
    let challenge_page = {
        let login = browser.get("/login").await;
        let after = browser
            .submit_raw(
                &login,
                "/login",
                &[("email", EMAIL), ("password", PASSWORD)],
            )
            .await;
        browser.follow(after).await
    };
    assert!(
        challenge_page.url.contains("/login/2fa"),
        "{}",
        challenge_page.url
    );
    let (status, body) = ceremony(&browser, &challenge_page, &mut theirs, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unknown_credential", "{body}");

    // A malformed assertion.
    let (status, body) = post_json(
        &browser,
        "/login/2fa/passkey/finish",
        &csrf_meta(&challenge_page),
        &json!({"id": "x", "type": "public-key"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");

    // Each refusal is in the audit log, the clone on a line of its own.
    let audit = passkey_audit(&app).await;
    let failures = |kind: &str, detail: &str| {
        audit
            .iter()
            .filter(|(k, o, d)| k == kind && o == "failure" && d.contains(detail))
            .count()
    };
    assert!(
        failures("passkey.registered", "invalid_request") >= 2,
        "{audit:?}"
    );
    assert_eq!(
        failures("passkey.registered", "already_registered"),
        1,
        "{audit:?}"
    );
    assert_eq!(
        failures("passkey.registered", "verification_failed"),
        1,
        "{audit:?}"
    );
    assert_eq!(
        failures("passkey.registered", "limit_reached"),
        0,
        "{audit:?}"
    );
    assert_eq!(failures("signin.passkey", "origin"), 1, "{audit:?}");
    assert_eq!(failures("signin.passkey", "rp id hash"), 1, "{audit:?}");
    assert_eq!(
        failures("signin.passkey", "verify the user"),
        1,
        "{audit:?}"
    );
    assert_eq!(
        failures("signin.passkey", "invalid_challenge"),
        3,
        "{audit:?}"
    );
    assert_eq!(
        failures("signin.passkey", "counter_regressed"),
        1,
        "{audit:?}"
    );
    assert_eq!(
        failures("signin.passkey", "unknown_credential"),
        2,
        "{audit:?}"
    );
    assert_eq!(failures("passkey.counter_regressed", ""), 1, "{audit:?}");
    assert_eq!(
        failures("passkey.check", "unknown_credential"),
        1,
        "{audit:?}"
    );
    assert_eq!(failures("passkey.check", "invalid_request"), 1, "{audit:?}");
}

async fn a_ceremony_begun_on_one_node_finishes_on_another_once(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let node2 = app.spawn_sibling().await;
    assert_eq!(node2.issuer, app.issuer, "one site, two nodes");
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, EMAIL, PASSWORD).await;
    let mut device = add_passkey(&app, &browser, "Laptop").await;
    sign_out(&browser).await;

    // Options from node 1, the finish on node 2.
    let login = browser.get("/login").await;
    let csrf = csrf_meta(&login);
    let (_, options) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    let credential = device.get(&options);
    let on_node2 = Browser {
        client: browser.client.clone(),
        base: node2.address.clone(),
    };
    let (status, body) = post_json(&on_node2, "/login/passkey/finish", &csrf, &credential).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sign_out(&browser).await;

    // One assertion sent 50 times at once, to both nodes: one session.
    let replayer = Replayer::new(&app).await;
    let (_, options) = replayer.post("/login/passkey/options", &json!({})).await;
    let credential = device.get(&options);
    let attempts = (0..50).map(|i| {
        let base = if i % 2 == 0 {
            &app.address
        } else {
            &node2.address
        };
        let (replayer, credential) = (&replayer, &credential);
        async move {
            replayer
                .post_to(base, "/login/passkey/finish", credential)
                .await
                .0
        }
    });
    let statuses = crate::helpers::join_all(attempts).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST)
    );
    let sessions = rows(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE kind = 'signin.passkey' AND outcome = 'success'",
    )
    .await;
    assert_eq!(sessions[0].try_get_by_index::<i64>(0).unwrap(), 2);
}

async fn reset_2fa_and_removal_take_passkeys_away(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, EMAIL, PASSWORD).await;
    let mut first = add_passkey(&app, &browser, "First").await;
    let mut second = add_passkey(&app, &browser, "Second").await;

    // Rename, then remove the first: it no longer signs in.
    let page = browser.get("/profile/passkeys").await;
    let id = crate::passkey_authenticator::b64(&first.credential_id);
    assert!(page.html.contains(&id), "{}", page.html);
    let renamed = browser
        .post_raw(
            "/profile/passkeys/rename",
            &[
                (
                    "csrf_token",
                    &page.form("/profile/passkeys/rename").fields["csrf_token"],
                ),
                ("credential_id", &id),
                ("name", "Old laptop"),
            ],
        )
        .await;
    let renamed = browser.follow(renamed).await;
    assert!(renamed.contains("Old laptop"), "{}", renamed.html);
    let empty = browser
        .submit(&renamed, "/profile/passkeys/rename", &[("name", "  ")])
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.alert().is_some());

    // Removing needs a fresh factor too: here the passkey just proved.
    clock.advance(Duration::seconds(
        app.settings.session.mfa_fresh_secs as i64 + 1,
    ));
    let page = browser.get("/profile/passkeys").await;
    let refused = browser
        .submit_raw(&page, "/profile/passkeys/remove", &[("credential_id", &id)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.contains("Confirm it is you"), "{}", refused.html);
    let (status, done) = ceremony(&browser, &refused, &mut second, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["redirect"], "/profile/passkeys?done=verified");
    let page = browser.get("/profile/passkeys").await;
    let removed = browser
        .submit(&page, "/profile/passkeys/remove", &[("credential_id", &id)])
        .await;
    assert!(
        removed.contains("The passkey was removed"),
        "{}",
        removed.html
    );
    assert!(!removed.contains("Old laptop"));
    app.mail_settled().await;
    assert!(
        app.emails_to(EMAIL)
            .await
            .iter()
            .any(|m| m.contains("A passkey was removed"))
    );
    sign_out(&browser).await;
    let login = browser.get("/login").await;
    let csrf = csrf_meta(&login);
    let (_, options) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    let (status, body) = post_json(
        &browser,
        "/login/passkey/finish",
        &csrf,
        &first.get(&options),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unknown_credential", "{body}");

    // The operator's reset removes the rest.
    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "user",
            "reset-2fa",
            EMAIL,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let (_, options) = post_json(&browser, "/login/passkey/options", &csrf, &json!({})).await;
    let (status, body) = post_json(
        &browser,
        "/login/passkey/finish",
        &csrf,
        &second.get(&options),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unknown_credential", "{body}");
    let audit = passkey_audit(&app).await;
    assert!(
        audit
            .iter()
            .any(|(k, _, d)| k == "passkey.removed" && d.contains("by an operator")),
        "{audit:?}"
    );
    assert!(audit.iter().any(|(k, _, _)| k == "passkey.renamed"));
}

async fn an_address_with_too_many_refused_ceremonies_waits(backend: Backend) {
    let (app, clock) = spawn_with(backend, |s| s.login.address_failures_per_hour = 3).await;
    let replayer = Replayer::new(&app).await;
    for _ in 0..3 {
        let (status, body) = replayer
            .post("/login/passkey/finish", &json!({"id": "x"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // The fourth is refused before anything is tried or stored: 429 with
    // Retry-After, for options and finishes alike.
    let response = replayer
        .client
        .post(app.url("/login/passkey/options"))
        .header("cookie", &replayer.cookie)
        .header("x-csrf-token", &replayer.csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 3600, "{wait}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests", "{body}");
    let (status, _) = replayer
        .post("/login/passkey/finish", &json!({"id": "x"}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let stored = rows(&app, "SELECT COUNT(*) FROM webauthn_challenges").await;
    assert_eq!(stored[0].try_get_by_index::<i64>(0).unwrap(), 0);

    // The window ends: options again.
    clock.advance(Duration::seconds(3601));
    let (status, body) = replayer.post("/login/passkey/options", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A refresh keeps what the sign-in proved (`pop user mfa`, phr), and stops
/// once the passkey it rested on is removed.
async fn a_refresh_keeps_the_passkey_sign_in_until_the_passkey_is_gone(backend: Backend) {
    use openidconnect::{
        CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, Scope, TokenResponse,
    };
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, EMAIL, PASSWORD).await;
    let mut device = add_passkey(&app, &browser, "Laptop").await;
    sign_out(&browser).await;

    let client = register(&app, &["--first-party"]);
    let rp = relying_party(&app, &client).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(
            openidconnect::core::CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let login = browser
        .get(&url.as_str().replacen(&app.issuer, &app.address, 1))
        .await;
    let (status, done) = ceremony(&browser, &login, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let location = until_client(
        &browser,
        browser.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect("a code");
    let tokens = rp
        .exchange_code(openidconnect::AuthorizationCode::new(
            query(&location)["code"].clone(),
        ))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&crate::helpers::oidc_http)
        .await
        .unwrap();
    tokens
        .id_token()
        .unwrap()
        .claims(&rp.id_token_verifier(), &nonce)
        .unwrap();
    let refreshed = crate::tokens::refresh(&rp, tokens.refresh_token().unwrap())
        .await
        .expect("a refresh works");
    let claims = refreshed
        .id_token()
        .expect("an ID token on refresh")
        .claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .unwrap()
        .clone();
    assert_eq!(amr(&claims), ["pop", "user", "mfa"]);
    assert_eq!(acr(&claims), "urn:stepgate:acr:phr");

    // Removed (the passkey just signed in: fresh enough), the grant ends.
    let page = browser.get("/profile/passkeys").await;
    let id = crate::passkey_authenticator::b64(&device.credential_id);
    let removed = browser
        .submit(&page, "/profile/passkeys/remove", &[("credential_id", &id)])
        .await;
    assert!(
        removed.contains("The passkey was removed"),
        "{}",
        removed.html
    );
    let refused = crate::tokens::refresh(&rp, refreshed.refresh_token().unwrap()).await;
    assert!(refused.unwrap_err().contains("invalid_grant"));
}

/// A `--require-mfa` client and a user with no second factor: the app's
/// activation page offers a passkey instead, added in the flow, then used.
async fn in_flow_enrolment_offers_a_passkey_beside_the_app(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let browser = app.browser();
    let client = register(&app, &["--first-party", "--require-mfa"]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let login = browser.get(&at_server(&app, &flow)).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let activate = until_client(&browser, after)
        .await
        .expect_err("enrolment first");
    assert!(
        activate.url.contains("/profile/2fa/activate?interaction="),
        "{}",
        activate.url
    );
    let href = activate
        .link("add a passkey instead")
        .expect("a passkey offered beside the app");
    let page = browser.get(&href).await;
    assert!(
        page.url.contains("/profile/passkeys?interaction="),
        "{}",
        page.url
    );
    let mut device = Authenticator::new(&app.issuer);
    let (status, done) = ceremony(&browser, &page, &mut device, &[("name", "Laptop")]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    // Back in the flow, the new passkey is asked for (the registration
    // proved no possession), then the code is issued.
    let challenge = until_client(
        &browser,
        browser.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect_err("the passkey, once");
    assert!(
        challenge.url.contains("/login/2fa?interaction="),
        "{}",
        challenge.url
    );
    let (status, done) = ceremony(&browser, &challenge, &mut device, &[]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let location = until_client(
        &browser,
        browser.get_raw(done["redirect"].as_str().unwrap()).await,
    )
    .await
    .expect("a code");
    let (_, claims) = exchange(&rp, flow, &query(&location)["code"]).await;
    assert_eq!(amr(&claims), ["pwd", "pop", "mfa"]);
}

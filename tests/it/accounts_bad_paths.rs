//! The accounts capability off the happy path: password reset end to end,
//! expiry on a fixed clock, disabled accounts, malformed and oversized form
//! bodies, sign-up validation, and the `user` CLI contract. Driven as a
//! browser (or an operator's shell) would; nothing reads the database.

use std::io::Write;
use std::process::{Output, Stdio};
use std::sync::Arc;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use stepgate::clock::FixedClock;

use crate::accounts::{PASSWORD, sign_in, sign_up};
use crate::browser::{Browser, Page, link_in};
use crate::helpers::{
    Backend, TestApp, spawn_app, spawn_app_with_clock, stderr, stdout, stepgate, write_config,
};
use crate::on_both_backends;

on_both_backends!(
    password_reset_is_single_use_and_ends_every_session,
    a_new_reset_request_retires_the_previous_link,
    links_are_refused_after_their_ttl,
    sessions_end_when_idle_and_at_the_absolute_timeout,
    disabled_accounts_cannot_sign_in_until_enabled,
    unreadable_bodies_are_refused_on_every_form_and_change_nothing,
    oversized_bodies_without_a_length_get_413,
    garbage_field_values_get_the_forms_own_errors,
    links_without_a_usable_token_show_an_alert,
    sign_up_rejections_keep_the_form_and_send_nothing,
    long_passwords_are_accepted,
    user_cli_reads_the_password_from_stdin_and_prints_one_object,
);

const NEW_PASSWORD: &str = "a much better passphrase";

// ---------------------------------------------------------------- helpers

/// Posts `body` as is (any content type, or none) with the browser's cookies;
/// a dropped connection fails the test.
async fn post_bytes(
    browser: &Browser,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Page {
    let mut request = browser
        .client
        .post(format!("{}{path}", browser.base))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: an answer, not a dropped connection: {e}"));
    Page {
        status: response.status(),
        url: response.url().to_string(),
        headers: response.headers().clone(),
        html: response.text().await.expect("a readable body"),
    }
}

fn urlencoded(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

fn json_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let object: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    serde_json::to_vec(&object).unwrap()
}

/// A `multipart/form-data` body and its content type.
fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "----stepgate-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

/// The opening tag of the element with `id`, and its text up to the next tag.
fn element(page: &Page, id: &str) -> Option<(String, String)> {
    let marker = format!("id=\"{id}\"");
    let at = page.html.find(&marker)?;
    let open = page.html[..at].rfind('<')?;
    let close = at + page.html[at..].find('>')?;
    let tag = page.html[open..=close].to_owned();
    let text_end = close + 1 + page.html[close + 1..].find('<')?;
    let text = crate::browser::unescape(page.html[close + 1..text_end].trim());
    Some((tag, text))
}

/// The `role="alert"` text right by the field `field` (`{field}-error`).
fn field_alert(page: &Page, field: &str) -> Option<String> {
    let (tag, text) = element(page, &format!("{field}-error"))?;
    assert!(tag.contains("role=\"alert\""), "{tag}");
    Some(text)
}

/// Whether the answer sets (or clears) the session cookie.
fn sets_session_cookie(page: &Page) -> bool {
    page.headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap_or("").starts_with("stepgate_session="))
}

/// The browser has no live session: `/profile` redirects to `/login`.
async fn assert_signed_out(browser: &Browser, why: &str) {
    let page = browser.get_raw("/profile").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{why}");
    assert_eq!(page.headers["location"], "/login", "{why}");
}

/// The browser's session is live: `/profile` shows the profile.
async fn assert_signed_in(browser: &Browser, why: &str) -> Page {
    let page = browser.get_raw("/profile").await;
    assert_eq!(page.status, StatusCode::OK, "{why}: {}", page.html);
    assert!(page.contains("My profile"), "{why}");
    page
}

/// Requests a reset link through the page and returns it from the outbox.
pub async fn request_reset(app: &TestApp, browser: &Browser, email: &str) -> String {
    let page = browser.get("/password/forgot").await;
    let sent = browser
        .submit(&page, "/password/forgot", &[("email", email)])
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.html);
    let mails = app.emails_to(email).await;
    let mail = mails.last().expect("a reset email");
    link_in(mail, &format!("{}/password/reset?token=", app.issuer))
        .expect("an absolute /password/reset link")
}

fn config_for(app: &TestApp) -> String {
    write_config(app.dir.path(), &app.db, "")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Runs `stepgate ARGS` like `helpers::stepgate` does, with `input` on stdin.
fn stepgate_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut command =
        crate::helpers::clean_command(std::path::Path::new(env!("CARGO_BIN_EXE_stepgate")));
    command.args(args);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the stepgate binary");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Parses stdout as exactly one JSON object on one line.
fn one_json_object(out: &Output) -> Value {
    let text = stdout(out);
    assert_eq!(text.trim().lines().count(), 1, "exactly one line: {text:?}");
    let value: Value = serde_json::from_str(text.trim()).expect("JSON on stdout");
    assert!(value.is_object(), "{value}");
    value
}

// ---------------------------------------------------------------- password reset

async fn password_reset_is_single_use_and_ends_every_session(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("rosa@example.com", PASSWORD, true).await;

    // Another device is signed in before the reset.
    let other_device = app.browser();
    let profile = sign_in(&other_device, "rosa@example.com", PASSWORD).await;
    assert!(profile.contains("My profile"));

    // A registered and an unknown email get the very same answer...
    let browser = app.browser();
    let page = browser.get("/password/forgot").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.form("/password/forgot").fields.contains_key("email"));
    let known = browser
        .submit(&page, "/password/forgot", &[("email", "Rosa@Example.com")])
        .await;
    let page = browser.get("/password/forgot").await;
    let unknown = browser
        .submit(
            &page,
            "/password/forgot",
            &[("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.html, unknown.html, "same page for both emails");
    // ...but only the registered one gets an email.
    assert!(app.emails_to("nobody@example.com").await.is_empty());
    assert_eq!(app.outbox_files().await.len(), 1);
    let mails = app.emails_to("rosa@example.com").await;
    let link = link_in(&mails[0], &format!("{}/password/reset?token=", app.issuer))
        .expect("an absolute reset link");

    // The link shows the form.
    let form = browser.get(&link).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.html);
    assert!(form.form("/password/reset").fields.contains_key("password"));
    assert_eq!(form.headers["cache-control"], "no-store");

    // A too-short password re-shows the form with an alert, and the link
    // stays usable.
    let short = browser
        .submit(&form, "/password/reset", &[("password", "short")])
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(
        short.alert().unwrap().contains("at least 8"),
        "{:?}",
        short.alert()
    );
    assert!(
        short
            .form("/password/reset")
            .fields
            .contains_key("password")
    );
    assert_eq!(browser.get(&link).await.status, StatusCode::OK);
    assert!(
        sign_in(&app.browser(), "rosa@example.com", PASSWORD)
            .await
            .contains("My profile"),
        "the password is unchanged"
    );

    // A good password works and sends the person to sign in.
    let done = browser
        .submit_raw(&short, "/password/reset", &[("password", NEW_PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(!sets_session_cookie(&done), "a reset does not sign in");
    let login = browser.follow(done).await;
    assert!(login.url.contains("/login"), "{}", login.url);
    assert!(login.contains("Your password is changed"));

    // Every session of the user ended, including the one that is in use.
    assert_signed_out(&other_device, "the other device's session ended").await;
    assert_signed_out(&app.browser(), "a fresh browser has no session").await;

    // The old password fails like any wrong password; the new one works.
    let old = sign_in(&app.browser(), "rosa@example.com", PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.alert().as_deref(), Some("Wrong email or password."));
    let new = sign_in(&app.browser(), "rosa@example.com", NEW_PASSWORD).await;
    assert!(new.contains("My profile"), "{}", new.html);

    // The link is used up: by GET and by POST alike.
    let again = browser.get(&link).await;
    assert!(again.status.is_client_error(), "{}", again.status);
    assert!(
        again.contains("This link was already used"),
        "{}",
        again.html
    );
    assert!(again.alert().is_some());
    let replay = browser
        .submit_raw(
            &form,
            "/password/reset",
            &[("password", "yet another password")],
        )
        .await;
    assert!(replay.status.is_client_error(), "{}", replay.status);
    assert!(replay.alert().is_some());
    let attempt = sign_in(&app.browser(), "rosa@example.com", "yet another password").await;
    assert_eq!(
        attempt.status,
        StatusCode::UNAUTHORIZED,
        "the replay changed nothing"
    );
    assert!(
        sign_in(&app.browser(), "rosa@example.com", NEW_PASSWORD)
            .await
            .contains("My profile")
    );
}

async fn a_new_reset_request_retires_the_previous_link(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("twice@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let first = request_reset(&app, &browser, "twice@example.com").await;
    let second = request_reset(&app, &browser, "twice@example.com").await;
    assert_ne!(first, second);
    assert_eq!(app.emails_to("twice@example.com").await.len(), 2);

    // The first link no longer shows the form, nor accepts a password.
    let form = browser.get(&second).await;
    assert_eq!(form.status, StatusCode::OK);
    let retired = browser.get(&first).await;
    assert!(retired.status.is_client_error(), "{}", retired.status);
    assert!(retired.alert().is_some());
    assert!(
        retired.forms().is_empty(),
        "no reset form for a retired link"
    );
    let token = first.split("token=").nth(1).unwrap();
    let csrf = form.form("/password/reset").fields["csrf_token"].clone();
    let posted = browser
        .post_raw(
            "/password/reset",
            &[
                ("csrf_token", &csrf),
                ("token", token),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert!(posted.status.is_client_error(), "{}", posted.status);
    assert!(posted.alert().is_some());
    assert_eq!(
        sign_in(&app.browser(), "twice@example.com", NEW_PASSWORD)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "the retired link changed nothing"
    );

    // The newest link works.
    let done = browser
        .submit(&form, "/password/reset", &[("password", NEW_PASSWORD)])
        .await;
    assert!(done.contains("Your password is changed"), "{}", done.html);
    assert!(
        sign_in(&app.browser(), "twice@example.com", NEW_PASSWORD)
            .await
            .contains("My profile")
    );
}

// ---------------------------------------------------------------- expiry

async fn links_are_refused_after_their_ttl(backend: Backend) {
    let clock = FixedClock::new(Utc::now());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    assert_eq!(app.settings.account.confirm_ttl_secs, 24 * 3600);
    assert_eq!(app.settings.account.reset_ttl_secs, 3600);
    let browser = app.browser();

    // Confirmation links: good until 24 h have passed, refused after.
    let on_time = sign_up(&app, &browser, "on-time@example.com").await;
    let late = sign_up(&app, &browser, "late@example.com").await;
    clock.advance(Duration::hours(23) + Duration::minutes(59));
    let confirmed = browser.get(&on_time).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.html);
    assert!(confirmed.contains("Email confirmed"));
    clock.advance(Duration::minutes(2));
    let expired = browser.get(&late).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert!(
        expired.contains("This link has expired"),
        "{}",
        expired.html
    );
    assert!(expired.alert().is_some());
    let unconfirmed = sign_in(&browser, "late@example.com", PASSWORD).await;
    assert_eq!(
        unconfirmed.status,
        StatusCode::FORBIDDEN,
        "still unconfirmed"
    );
    assert!(unconfirmed.alert().unwrap().contains("not confirmed"));
    let fine = sign_in(&app.browser(), "on-time@example.com", PASSWORD).await;
    assert!(fine.contains("My profile"));

    // Reset links: good for an hour, then refused by GET and by POST.
    app.create_user("slow@example.com", PASSWORD, true).await;
    let link = request_reset(&app, &browser, "slow@example.com").await;
    clock.advance(Duration::minutes(59));
    let form = browser.get(&link).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.html);
    clock.advance(Duration::minutes(2));
    let expired = browser.get(&link).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert!(
        expired.contains("This link has expired"),
        "{}",
        expired.html
    );
    assert!(expired.alert().is_some());
    let posted = browser
        .submit_raw(&form, "/password/reset", &[("password", NEW_PASSWORD)])
        .await;
    assert_eq!(posted.status, StatusCode::BAD_REQUEST);
    assert!(posted.contains("This link has expired"), "{}", posted.html);
    assert!(posted.alert().is_some());
    let new = sign_in(&app.browser(), "slow@example.com", NEW_PASSWORD).await;
    assert_eq!(new.status, StatusCode::UNAUTHORIZED, "password unchanged");
    let old = sign_in(&app.browser(), "slow@example.com", PASSWORD).await;
    assert!(old.contains("My profile"));
}

async fn sessions_end_when_idle_and_at_the_absolute_timeout(backend: Backend) {
    let clock = FixedClock::new(Utc::now());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    assert_eq!(app.settings.session.idle_timeout_secs, 30 * 60);
    assert_eq!(app.settings.session.absolute_timeout_secs, 12 * 3600);
    app.create_user("clock@example.com", PASSWORD, true).await;
    let idle = app.browser();
    let busy = app.browser();
    assert!(
        sign_in(&idle, "clock@example.com", PASSWORD)
            .await
            .contains("My profile")
    );
    assert!(
        sign_in(&busy, "clock@example.com", PASSWORD)
            .await
            .contains("My profile")
    );

    let mut minutes = 0;
    let mut step = |by: i64| {
        clock.advance(Duration::minutes(by));
        minutes += by;
        minutes
    };

    // t = 20 min: both alive; only `busy` is used.
    step(20);
    assert_signed_in(&busy, "busy at 20 min").await;
    // t = 31 min: `idle` was not used for 31 minutes.
    step(11);
    assert_signed_out(&idle, "idle for 31 minutes").await;
    let login = idle.get("/login").await;
    assert_eq!(login.status, StatusCode::OK, "the sign-in form, not a loop");
    assert!(login.form("/login").fields.contains_key("password"));

    // `busy`, used every 20 minutes, lives until the absolute timeout.
    assert_eq!(step(9), 40);
    assert_signed_in(&busy, "busy at 40 min").await;
    let mut at = 40;
    while at + 20 < 12 * 60 {
        at = step(20);
        assert_signed_in(&busy, &format!("busy at {at} min")).await;
    }
    assert_eq!(at, 12 * 60 - 20);
    assert_eq!(step(20), 12 * 60);
    assert_signed_out(&busy, "the absolute timeout (12 h) ended it").await;

    // Signing in again starts a new session.
    assert!(
        sign_in(&busy, "clock@example.com", PASSWORD)
            .await
            .contains("My profile")
    );
}

// ---------------------------------------------------------------- disabled accounts

async fn disabled_accounts_cannot_sign_in_until_enabled(backend: Backend) {
    let app = spawn_app(backend).await;
    let config = config_for(&app);
    app.create_user("dora@example.com", PASSWORD, true).await;
    let browser = app.browser();
    assert!(
        sign_in(&browser, "dora@example.com", PASSWORD)
            .await
            .contains("My profile")
    );

    let out = stepgate(
        &[
            "user",
            "disable",
            "DORA@example.com",
            "--json",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let user = one_json_object(&out);
    assert_eq!(user["email"], "dora@example.com");
    assert_eq!(user["disabled"], true);

    // The live session is over.
    assert_signed_out(&browser, "disabling ended the session").await;

    // The right password: 403, saying why, and no session.
    let refused = sign_in(&browser, "dora@example.com", PASSWORD).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!refused.html.contains("My profile"));
    let alert = refused.alert().expect("an alert");
    assert!(alert.contains("disabled"), "{alert}");
    assert!(refused.contains("This account is disabled"));
    assert_signed_out(&browser, "no session for a disabled account").await;

    // A wrong password: the same 401 as any wrong password.
    let wrong = sign_in(&browser, "dora@example.com", "not the password").await;
    let unknown = sign_in(&browser, "nobody@example.com", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.alert(), unknown.alert());
    assert_eq!(wrong.alert().as_deref(), Some("Wrong email or password."));
    assert!(!wrong.html.contains("disabled"));

    // Disabling an unknown email fails.
    let out = stepgate(
        &["user", "disable", "ghost@example.com", "--config", &config],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no account"), "{}", stderr(&out));

    // Enabled again, the account signs in.
    let out = stepgate(
        &[
            "user",
            "enable",
            "dora@example.com",
            "--json",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(one_json_object(&out)["disabled"], false);
    let back = sign_in(&browser, "dora@example.com", PASSWORD).await;
    assert!(back.contains("My profile"), "{}", back.html);
}

// ---------------------------------------------------------------- malformed input

/// The state-changing forms, signed in as `victim@example.com`, and what
/// each would change if it accepted the body.
struct Forms {
    csrf: String,
    reset_token: String,
}

impl Forms {
    fn all(&self) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
        let t = || ("csrf_token", self.csrf.clone());
        vec![
            (
                "/signup",
                vec![
                    t(),
                    ("email", "newcomer@example.com".into()),
                    ("password", PASSWORD.into()),
                    ("name", "Newcomer".into()),
                ],
            ),
            (
                "/login",
                vec![
                    t(),
                    ("email", "victim@example.com".into()),
                    ("password", PASSWORD.into()),
                ],
            ),
            ("/profile", vec![t(), ("name", "Mallory".into())]),
            (
                "/password/forgot",
                vec![t(), ("email", "victim@example.com".into())],
            ),
            (
                "/password/reset",
                vec![
                    t(),
                    ("token", self.reset_token.clone()),
                    ("password", NEW_PASSWORD.into()),
                ],
            ),
            (
                "/confirm/resend",
                vec![t(), ("email", "pending@example.com".into())],
            ),
            ("/logout", vec![t()]),
        ]
    }
}

/// A body a form must refuse, and the statuses that fit.
struct BadBody<'a> {
    what: &'static str,
    content_type: Option<&'a str>,
    body: Vec<u8>,
    expected: &'static [u16],
}

impl<'a> BadBody<'a> {
    /// A body in a format forms do not take: 400 or 415.
    fn new(what: &'static str, content_type: Option<&'a str>, body: Vec<u8>) -> Self {
        Self {
            what,
            content_type,
            body,
            expected: &[400, 415],
        }
    }
}

async fn unreadable_bodies_are_refused_on_every_form_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("victim@example.com", PASSWORD, true).await;
    app.create_user("pending@example.com", PASSWORD, false)
        .await;
    let browser = app.browser();
    let reset_link = request_reset(&app, &browser, "victim@example.com").await;
    let profile = sign_in(&browser, "victim@example.com", PASSWORD).await;
    assert!(profile.contains("My profile"));
    // Signed in, every form's token is bound to the session: this one token
    // is valid for all of them, so only the body's shape is at fault.
    let forms = Forms {
        csrf: profile.form("/profile").fields["csrf_token"].clone(),
        reset_token: reset_link.split("token=").nth(1).unwrap().to_owned(),
    };
    let mails_before = app.outbox_files().await.len();

    for (path, fields) in forms.all() {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let form_body = urlencoded(&fields);
        let (multipart_type, multipart_body) = multipart(&fields);
        let mut oversized = form_body.clone().into_bytes();
        oversized.extend_from_slice(b"&padding=");
        oversized.resize(4 * 1024 * 1024, b'a');
        let form_type = Some("application/x-www-form-urlencoded");
        let cases = [
            BadBody::new("JSON", Some("application/json"), json_body(&fields)),
            BadBody::new("multipart", Some(&multipart_type), multipart_body),
            BadBody::new("no content type", None, form_body.clone().into_bytes()),
            BadBody::new(
                "text/plain",
                Some("text/plain"),
                form_body.clone().into_bytes(),
            ),
            BadBody {
                expected: &[400, 403],
                ..BadBody::new(
                    "invalid UTF-8 and percent-encoding",
                    form_type,
                    b"\xff\xfe%ZZ%%=&&=%E0%80&csrf_token=%FF%00\x00&email=%C3%28\xc3&password=%"
                        .to_vec(),
                )
            },
            BadBody {
                expected: &[413, 400],
                ..BadBody::new("4 MiB", form_type, oversized)
            },
        ];
        for BadBody {
            what,
            content_type,
            body,
            expected,
        } in cases
        {
            let answer = post_bytes(&browser, path, content_type, body).await;
            let why = format!("POST {path} with {what}");
            assert!(
                expected.contains(&answer.status.as_u16()),
                "{why}: {} {}",
                answer.status,
                answer.html
            );
            assert!(!sets_session_cookie(&answer), "{why}: no cookie change");
            // Every refusal of a form is a page with an alert, 413 included.
            assert!(answer.alert().is_some(), "{why}: an alert: {}", answer.html);
        }
    }

    // Nothing changed: no email went out, no account was created, the
    // session and the name are intact, the reset link and password are as
    // they were, and the server still answers.
    assert_eq!(
        app.outbox_files().await.len(),
        mails_before,
        "no email sent"
    );
    let page = assert_signed_in(&browser, "the session survived").await;
    assert_eq!(page.form("/profile").fields["name"], "Test User");
    let newcomer = sign_in(&app.browser(), "newcomer@example.com", PASSWORD).await;
    assert_eq!(newcomer.status, StatusCode::UNAUTHORIZED, "no new account");
    assert_eq!(browser.get(&reset_link).await.status, StatusCode::OK);
    assert!(
        sign_in(&app.browser(), "victim@example.com", PASSWORD)
            .await
            .contains("My profile"),
        "the password is unchanged"
    );
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);

    // The same token in a well-formed body is accepted: the refusals above
    // were about the bodies.
    let saved = browser
        .post_raw(
            "/profile",
            &[("csrf_token", forms.csrf.as_str()), ("name", "Victor")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
}

/// POSTs a 4 MiB urlencoded body as chunks (no `Content-Length`, so only the
/// form extractor's limit can refuse it) on a raw connection, and returns the
/// status and the body of the answer. The server may close before the whole
/// body is sent; the answer must still have arrived.
pub async fn post_chunked_4_mib(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut body = format!("{fields}&padding=").into_bytes();
    body.resize(4 * 1024 * 1024, b'a');
    let mut sent = stream.write_all(head.as_bytes()).await;
    for chunk in body.chunks(64 * 1024) {
        if sent.is_err() {
            break;
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        sent = stream.write_all(&framed).await;
    }
    if sent.is_ok() {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: an answer, not a dropped connection: {e}"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("POST {path}: an HTTP answer: {answer:?}"));
    (status, answer)
}

async fn oversized_bodies_without_a_length_get_413(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("big@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let login = browser.get("/login").await;
    let answer = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "big@example.com"), ("password", PASSWORD)],
        )
        .await;
    let cookie = answer.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let profile = browser.follow(answer).await;
    let csrf = profile.form("/profile").fields["csrf_token"].clone();
    let token = format!("csrf_token={csrf}");

    for path in [
        "/signup",
        "/login",
        "/profile",
        "/password/forgot",
        "/password/reset",
        "/confirm/resend",
        "/logout",
    ] {
        let (status, answer) = post_chunked_4_mib(&app, path, &cookie, &token).await;
        assert_eq!(status, 413, "POST {path}: {answer}");
        assert!(answer.contains("role=\"alert\""), "POST {path}: {answer}");
        assert!(answer.contains("too large"), "POST {path}: {answer}");
    }

    // Nothing changed, and the server still answers.
    let page = assert_signed_in(&browser, "the session survived").await;
    assert_eq!(page.form("/profile").fields["name"], "Test User");
    assert!(app.outbox_files().await.is_empty(), "no email sent");
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

async fn garbage_field_values_get_the_forms_own_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("gina@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let profile = sign_in(&browser, "gina@example.com", PASSWORD).await;
    let csrf = profile.form("/profile").fields["csrf_token"].clone();
    let form = "application/x-www-form-urlencoded";
    let post = |path: &'static str, rest: &'static str| {
        let body = format!("csrf_token={csrf}&{rest}").into_bytes();
        let browser = &browser;
        async move { post_bytes(browser, path, Some(form), body).await }
    };

    // NUL bytes, lone continuation bytes and broken escapes in every field.
    let signup = post(
        "/signup",
        "email=%FF%FE%00%40example.com&name=%00%07&password=%ZZ%C3",
    )
    .await;
    assert_eq!(signup.status, StatusCode::BAD_REQUEST, "{}", signup.html);
    assert!(field_alert(&signup, "email").is_some());
    assert!(field_alert(&signup, "name").is_some());
    assert!(field_alert(&signup, "password").is_some());

    let login = post("/login", "email=gina%00%40example.com&password=%FF%00%ZZ").await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.html);
    assert_eq!(login.alert().as_deref(), Some("Wrong email or password."));
    assert!(!sets_session_cookie(&login));

    let named = post("/profile", "name=%00%FF%1B").await;
    assert_eq!(named.status, StatusCode::BAD_REQUEST, "{}", named.html);
    assert!(field_alert(&named, "name").is_some());

    let forgot = post("/password/forgot", "email=%00%FF%40%ZZ").await;
    assert_eq!(forgot.status, StatusCode::BAD_REQUEST, "{}", forgot.html);
    assert!(forgot.alert().is_some());

    let reset = post(
        "/password/reset",
        "token=%00%FF%ZZ&password=a+perfectly+good+password",
    )
    .await;
    assert_eq!(reset.status, StatusCode::BAD_REQUEST, "{}", reset.html);
    assert!(reset.contains("This link does not work"), "{}", reset.html);
    assert!(reset.alert().is_some());

    let resend = post("/confirm/resend", "email=%00%FF%40example.com").await;
    assert_eq!(
        resend.status,
        StatusCode::OK,
        "the same answer for any email"
    );

    assert!(app.outbox_files().await.is_empty(), "no email sent");
    let page = assert_signed_in(&browser, "the session survived").await;
    assert_eq!(page.form("/profile").fields["name"], "Test User");
    assert!(
        sign_in(&app.browser(), "gina@example.com", PASSWORD)
            .await
            .contains("My profile")
    );
}

async fn links_without_a_usable_token_show_an_alert(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    for path in [
        "/confirm",
        "/confirm?token=",
        "/confirm?token=not-a-token",
        "/confirm?token=%FF%00%ZZ",
        "/confirm?token=a&token=b",
        "/password/reset",
        "/password/reset?token=not-a-token",
        "/password/reset?token=%FF%00%ZZ",
    ] {
        let page = browser.get(path).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            page.html
        );
        let alert = page.alert().unwrap_or_else(|| panic!("{path}: an alert"));
        assert!(!alert.is_empty(), "{path}");
        assert!(page.contains("This link does not work"), "{path}");
        assert!(page.forms().is_empty(), "{path}: no form to fill");
    }
}

// ---------------------------------------------------------------- sign-up validation

async fn sign_up_rejections_keep_the_form_and_send_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let cases = [
        (
            "email",
            "not-an-email",
            "Ada Lovelace",
            PASSWORD,
            "name@example.com",
        ),
        ("name", "ada@example.com", "", PASSWORD, "Enter your name"),
        (
            "name",
            "ada@example.com",
            "   ",
            PASSWORD,
            "Enter your name",
        ),
        (
            "password",
            "ada@example.com",
            "Ada Lovelace",
            "7-chars",
            "at least 8",
        ),
    ];
    for (field, email, name, password, message) in cases {
        let page = browser.get("/signup").await;
        let answer = browser
            .submit(
                &page,
                "/signup",
                &[("email", email), ("name", name), ("password", password)],
            )
            .await;
        let why = format!("{field} {email:?} {name:?} {password:?}");
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{why}");
        let alert = field_alert(&answer, field).unwrap_or_else(|| panic!("{why}: alert"));
        assert!(alert.contains(message), "{why}: {alert}");
        for other in ["email", "name", "password"] {
            if other != field {
                assert!(field_alert(&answer, other).is_none(), "{why}: {other}");
            }
        }
        let (input, _) = element(&answer, field).expect("the field");
        assert!(input.contains("aria-invalid=\"true\""), "{why}: {input}");

        // The form is back, with what was typed except the password.
        let form = answer.form("/signup");
        assert_eq!(form.fields["email"], email, "{why}");
        assert_eq!(form.fields["name"], name, "{why}");
        assert_eq!(form.fields["password"], "", "{why}");
        assert!(!answer.html.contains(password), "{why}: password echoed");
        assert!(!form.fields["csrf_token"].is_empty());
    }
    assert!(app.outbox_files().await.is_empty(), "no email sent");
    let nobody = sign_in(&browser, "ada@example.com", PASSWORD).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED, "no account made");

    // Past the maximum (256 characters by default) is refused too.
    let page = browser.get("/signup").await;
    let long = "x".repeat(257);
    let answer = browser
        .submit(
            &page,
            "/signup",
            &[
                ("email", "ada@example.com"),
                ("name", "Ada"),
                ("password", &long),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        field_alert(&answer, "password")
            .unwrap()
            .contains("at most 256")
    );
    assert!(app.outbox_files().await.is_empty(), "no email sent");
}

async fn long_passwords_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    // NIST SP 800-63B: at least 64 characters must be allowed.
    let sixty_four: String = "correct horse battery staple ".repeat(3)[..64].to_owned();
    let two_hundred: String = "é-long passphrase ".repeat(12).chars().take(200).collect();
    assert_eq!(sixty_four.chars().count(), 64);
    assert_eq!(two_hundred.chars().count(), 200);
    for (email, password) in [
        ("sixty-four@example.com", &sixty_four),
        ("two-hundred@example.com", &two_hundred),
    ] {
        let browser = app.browser();
        let page = browser.get("/signup").await;
        let done = browser
            .submit(
                &page,
                "/signup",
                &[("email", email), ("name", "Long"), ("password", password)],
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{email}: {}", done.html);
        let mails = app.emails_to(email).await;
        let link = link_in(&mails[0], &format!("{}/confirm?token=", app.issuer)).unwrap();
        assert_eq!(browser.get(&link).await.status, StatusCode::OK);
        let signed = sign_in(&browser, email, password).await;
        assert!(signed.contains("My profile"), "{email}: {}", signed.html);
        let shorter: String = password
            .chars()
            .take(password.chars().count() - 1)
            .collect();
        let wrong = sign_in(&app.browser(), email, &shorter).await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "{email}: all of it counts"
        );
    }
}

// ---------------------------------------------------------------- user CLI

async fn user_cli_reads_the_password_from_stdin_and_prints_one_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let config = config_for(&app);
    let create = |email: &str, input: &[u8]| {
        stepgate_with_stdin(
            &[
                "user",
                "create",
                "--email",
                email,
                "--name",
                "Cli User",
                "--verified",
                "--json",
                "--config",
                &config,
            ],
            input,
        )
    };

    // Without a trailing newline, spaces at the ends are part of the password.
    let bare = create("Bare@Example.com", b"  spaces count here  ");
    assert!(bare.status.success(), "{}", stderr(&bare));
    let bare_user = one_json_object(&bare);
    assert_eq!(bare_user["email"], "Bare@Example.com");
    let id = bare_user["id"].as_str().expect("an id");
    assert!(!id.is_empty());
    // With a trailing newline (echo), or CRLF, the newline is not.
    let echoed = create("echoed@example.com", b"typed then enter\n");
    assert!(echoed.status.success(), "{}", stderr(&echoed));
    let echoed_user = one_json_object(&echoed);
    assert_eq!(echoed_user["email"], "echoed@example.com");
    assert_ne!(echoed_user["id"], bare_user["id"]);
    let crlf = create("crlf@example.com", b"typed on windows\r\n");
    assert!(crlf.status.success(), "{}", stderr(&crlf));
    one_json_object(&crlf);

    for (email, exact, near) in [
        (
            "bare@example.com",
            "  spaces count here  ",
            "spaces count here",
        ),
        (
            "echoed@example.com",
            "typed then enter",
            "typed then enter\n",
        ),
        ("crlf@example.com", "typed on windows", "typed on windows\r"),
    ] {
        let wrong = sign_in(&app.browser(), email, near).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{email} {near:?}");
        let right = sign_in(&app.browser(), email, exact).await;
        assert!(right.contains("My profile"), "{email}: {}", right.html);
    }

    // The same email in another case is refused, and nothing changes.
    let duplicate = create("BARE@example.COM", b"a different password");
    assert!(!duplicate.status.success());
    assert!(
        stdout(&duplicate).trim().is_empty(),
        "{}",
        stdout(&duplicate)
    );
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );
    let still = sign_in(&app.browser(), "bare@example.com", "  spaces count here  ").await;
    assert!(still.contains("My profile"));

    // A password below the minimum is refused with the rule.
    let short = create("short@example.com", b"short\n");
    assert!(!short.status.success());
    assert!(stderr(&short).contains("password"), "{}", stderr(&short));

    // `user list --json`: one object listing exactly the three accounts.
    let list = stepgate(&["user", "list", "--json", "--config", &config], &[]);
    assert!(list.status.success(), "{}", stderr(&list));
    let listed = one_json_object(&list);
    let users = listed["users"].as_array().expect("a users array");
    let mut emails: Vec<&str> = users.iter().map(|u| u["email"].as_str().unwrap()).collect();
    emails.sort_unstable();
    assert_eq!(
        emails,
        ["Bare@Example.com", "crlf@example.com", "echoed@example.com"]
    );
    let bare_listed = users
        .iter()
        .find(|u| u["email"] == "Bare@Example.com")
        .unwrap();
    assert_eq!(bare_listed["id"], bare_user["id"]);
    assert_eq!(bare_listed["email_verified"], true);
    assert_eq!(bare_listed["disabled"], false);
}

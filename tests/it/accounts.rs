//! Accounts through the hosted pages, as a browser uses them.

use std::sync::Arc;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use stepgate::clock::FixedClock;

use crate::browser::{Browser, Page, link_in};
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with_clock};
use crate::on_both_backends;

on_both_backends!(
    sign_up_confirm_sign_in_edit_sign_out,
    wrong_password_and_unknown_email_look_the_same,
    sign_up_with_a_registered_email_reveals_nothing,
    forms_without_a_valid_csrf_token_are_refused,
    repeated_failures_lock_then_release,
);

pub const PASSWORD: &str = "correct horse battery staple";

/// Signs up through the page and returns the confirmation link from the outbox.
pub async fn sign_up(app: &TestApp, browser: &Browser, email: &str) -> String {
    let page = browser.get("/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    let done = browser
        .submit(
            &page,
            "/signup",
            &[
                ("email", email),
                ("password", PASSWORD),
                ("name", "Ada Lovelace"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.contains("Check your email"));
    let mails = app.emails_to(email).await;
    let mail = mails.last().expect("a confirmation email");
    link_in(mail, &format!("{}/confirm?token=", app.issuer)).expect("an absolute /confirm link")
}

/// Signs in through the page; returns the page after redirects.
pub async fn sign_in(browser: &Browser, email: &str, password: &str) -> Page {
    let page = browser.get("/login").await;
    let answer = browser
        .submit_raw(&page, "/login", &[("email", email), ("password", password)])
        .await;
    browser.follow(answer).await
}

async fn sign_up_confirm_sign_in_edit_sign_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let link = sign_up(&app, &browser, "Ada@Example.com").await;

    // Before confirming: the right password explains what to do and offers a new link.
    let unconfirmed = sign_in(&browser, "ada@example.com", PASSWORD).await;
    assert_eq!(unconfirmed.status, StatusCode::FORBIDDEN);
    assert!(unconfirmed.alert().unwrap().contains("not confirmed"));
    let resent = browser.submit(&unconfirmed, "/confirm/resend", &[]).await;
    assert_eq!(resent.status, StatusCode::OK);
    assert_eq!(app.emails_to("ada@example.com").await.len(), 2);

    // The first link still works (a resend does not retire it), once.
    let confirmed = browser.get(&link).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.html);
    assert!(confirmed.contains("Email confirmed"));
    let again = browser.get(&link).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.alert().is_some());

    // Sign in: a session cookie, HttpOnly and SameSite, on the answer itself.
    let login = browser.get("/login").await;
    let answer = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "ADA@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("stepgate_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let profile = browser.follow(answer).await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(profile.contains("My profile"));
    assert!(profile.contains("Ada@Example.com"), "email as entered");
    assert!(profile.contains("Two-factor authentication"));
    assert!(profile.contains("API keys"));
    assert_eq!(profile.headers["cache-control"], "no-store");

    // Edit the name.
    let saved = browser
        .submit(&profile, "/profile", &[("name", "Ada King")])
        .await;
    assert_eq!(saved.status, StatusCode::OK);
    assert_eq!(saved.form("/profile").fields["name"], "Ada King");
    let bad = browser.submit(&saved, "/profile", &[("name", "  ")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.alert().is_some());

    // Sign out ends the session server-side: replaying the old cookie fails.
    let session = cookie.split(';').next().unwrap().to_owned();
    let out = browser.submit(&saved, "/logout", &[]).await;
    assert!(out.url.contains("/login"), "{}", out.url);
    assert!(out.contains("You are signed out"));
    let gone = browser.get_raw("/profile").await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    let replay = app
        .client
        .get(app.url("/profile"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert!(
        replay.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("/login")
    );

    // A new sign-in gets a new session id.
    let again = sign_in(&browser, "ada@example.com", PASSWORD).await;
    assert!(again.contains("My profile"));
}

async fn wrong_password_and_unknown_email_look_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("grace@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let wrong = sign_in(&browser, "grace@example.com", "not the password").await;
    let unknown = sign_in(&browser, "nobody@example.com", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(wrong.alert(), unknown.alert());
    assert_eq!(wrong.alert().as_deref(), Some("Wrong email or password."));
    // The form comes back, with the email kept.
    assert_eq!(wrong.form("/login").fields["email"], "grace@example.com");
    // And no session was made.
    assert_eq!(
        browser.get_raw("/profile").await.status,
        StatusCode::SEE_OTHER
    );
}

async fn sign_up_with_a_registered_email_reveals_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("taken@example.com", PASSWORD, true).await;
    let browser = app.browser();

    let page = browser.get("/signup").await;
    let new = browser
        .submit(
            &page,
            "/signup",
            &[
                ("email", "fresh@example.com"),
                ("password", PASSWORD),
                ("name", "Fresh"),
            ],
        )
        .await;
    let page = browser.get("/signup").await;
    let taken = browser
        .submit(
            &page,
            "/signup",
            &[
                ("email", "TAKEN@example.com"),
                ("password", "another password"),
                ("name", "Eve"),
            ],
        )
        .await;
    assert_eq!(new.status, taken.status);
    assert_eq!(
        new.html, taken.html,
        "same page text for a new and a registered email"
    );

    // The owner is told instead, and the account is unchanged.
    let mails = app.emails_to("taken@example.com").await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("/login"));
    let ok = sign_in(&browser, "taken@example.com", PASSWORD).await;
    assert!(ok.contains("My profile"), "the old password still works");
}

async fn forms_without_a_valid_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    // Establish the pre-session cookie, then post without / with a wrong token.
    browser.get("/signup").await;
    let fields = [
        ("email", "x@example.com"),
        ("password", PASSWORD),
        ("name", "X"),
    ];
    let missing = browser.post_raw("/signup", &fields).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.alert().is_some());
    let mut forged = fields.to_vec();
    forged.push(("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let wrong = browser.post_raw("/signup", &forged).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        app.emails_to("x@example.com").await.is_empty(),
        "nothing happened"
    );

    // A token from another browser does not work in this one.
    let other = app.browser();
    let page = other.get("/signup").await;
    let token = page.form("/signup").fields["csrf_token"].clone();
    let mut stolen = fields.to_vec();
    stolen.push(("csrf_token", &token));
    assert_eq!(
        browser.post_raw("/signup", &stolen).await.status,
        StatusCode::FORBIDDEN
    );

    // Signed in, a profile change without the token changes nothing.
    app.create_user("csrf@example.com", PASSWORD, true).await;
    let profile = crate::accounts::sign_in(&browser, "csrf@example.com", PASSWORD).await;
    let refused = browser.post_raw("/profile", &[("name", "Mallory")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let cross_site = browser
        .client
        .post(app.url("/profile"))
        .header("origin", "https://evil.example")
        .form(&[
            ("name", "Mallory"),
            ("csrf_token", &profile.form("/profile").fields["csrf_token"]),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let after = browser.get("/profile").await;
    assert_eq!(after.form("/profile").fields["name"], "Test User");
    // Origin: null (what browsers send under no-referrer) is accepted.
    let null_origin = browser
        .client
        .post(app.url("/profile"))
        .header("origin", "null")
        .form(&[
            ("name", "Renamed"),
            ("csrf_token", &after.form("/profile").fields["csrf_token"]),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(null_origin.status(), StatusCode::SEE_OTHER);
}

async fn repeated_failures_lock_then_release(backend: Backend) {
    let clock = FixedClock::new(Utc::now());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    app.create_user("locked@example.com", PASSWORD, true).await;
    let browser = app.browser();
    for email in ["locked@example.com", "ghost@example.com"] {
        for attempt in 1..=4 {
            let page = sign_in(&browser, email, "wrong password").await;
            assert_eq!(
                page.status,
                StatusCode::UNAUTHORIZED,
                "{email} attempt {attempt}"
            );
        }
        // The fifth failure starts a 30 s lockout, for a known and an unknown email alike.
        let locked = sign_in(&browser, email, "wrong password").await;
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert_eq!(locked.headers["retry-after"], "30");
        assert!(locked.alert().unwrap().contains("Try again"));
    }
    // Even the right password waits for the lockout to end.
    let still = sign_in(&browser, "locked@example.com", PASSWORD).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    clock.advance(Duration::seconds(31));
    let ok = sign_in(&browser, "locked@example.com", PASSWORD).await;
    assert!(ok.contains("My profile"), "{}", ok.html);
}

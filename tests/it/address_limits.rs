//! Limits per client address beside the per-account ones (audit issue 14,
//! item 11). The test's requests all come from 127.0.0.1; with that as a
//! trusted proxy, `X-Forwarded-For` says which client each one stands for,
//! and without it the header changes nothing. Bursts go half to a second
//! node on the same database.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};
use stepgate::clock::FixedClock;
use stepgate::config::Settings;

use crate::accounts::PASSWORD;
use crate::browser::Browser;
use crate::helpers::{Backend, TestApp, join_all, spawn_app_with_clock};
use crate::oidc::register;
use crate::on_both_backends;

on_both_backends!(
    a_lockout_stays_with_the_address_that_caused_it,
    behind_an_untrusted_proxy_every_client_is_one_address,
    one_address_cannot_spray_a_password_across_accounts,
    many_addresses_share_one_budget_per_account,
    sign_up_reset_and_resend_are_limited_per_address,
    failed_client_authentication_is_limited_per_address,
    forms_send_one_address_a_few_emails_an_hour,
);

const BURST: usize = 50;

async fn spawn(backend: Backend, configure: impl FnOnce(&mut Settings)) -> (TestApp, TestApp) {
    let now = Utc::now().timestamp();
    let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 10, 0).unwrap());
    let app = spawn_app_with_clock(backend, Arc::new(clock), |s| {
        s.http.trusted_proxies = vec!["127.0.0.1".into()];
        configure(s);
    })
    .await;
    let sibling = app.spawn_sibling().await;
    (app, sibling)
}

/// Posts `fields` to `path` from `ip`, with the browser's CSRF token (read
/// from the sign-in form: the token belongs to the browser, not the form).
async fn post_from(
    browser: &Browser,
    node: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    ip: &str,
) -> reqwest::Response {
    let page = browser.get("/login").await;
    let mut form = BTreeMap::new();
    form.insert(
        "csrf_token".to_owned(),
        page.form("/login").fields["csrf_token"].clone(),
    );
    for (k, v) in fields {
        form.insert((*k).to_owned(), (*v).to_owned());
    }
    browser
        .client
        .post(node.url(path))
        .header("x-forwarded-for", ip)
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn sign_in_from(app: &TestApp, email: &str, password: &str, ip: &str) -> StatusCode {
    let browser = app.browser();
    post_from(
        &browser,
        app,
        "/login",
        &[("email", email), ("password", password)],
        ip,
    )
    .await
    .status()
}

/// Passwords verified (one audit outcome each) for sign-ins.
async fn verified(app: &TestApp) -> u64 {
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM audit_events WHERE kind = 'signin.password' \
             AND outcome IN ('failure', 'success')"
                .to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    db.close().await.unwrap();
    row.try_get::<i64>("", "n").unwrap() as u64
}

fn tally(statuses: &[StatusCode]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for s in statuses {
        *counts.entry(s.as_u16()).or_default() += 1;
    }
    counts
}

async fn a_lockout_stays_with_the_address_that_caused_it(backend: Backend) {
    let (app, sibling) = spawn(backend, |_| {}).await;
    let free = app.settings.login.free_failures as usize;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let attacker = "203.0.113.66";
    // The last of the free failures starts the lock (429 already).
    for i in 0..free {
        let status = sign_in_from(&app, "ada@example.com", "wrong password", attacker).await;
        let want = if i + 1 < free { 401 } else { 429 };
        assert_eq!(status.as_u16(), want, "failure {}", i + 1);
    }
    // The attacker's address is locked out of the account, on both nodes,
    // even with the right password...
    for node in [&app, &sibling] {
        let status = sign_in_from(node, "ada@example.com", PASSWORD, attacker).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    // ...the owner, elsewhere, is not: an IPv4 address, and an IPv6 one.
    for owner in ["198.51.100.7", "2001:db8:5::1"] {
        let status = sign_in_from(&sibling, "ada@example.com", PASSWORD, owner).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{owner}");
    }
}

async fn behind_an_untrusted_proxy_every_client_is_one_address(backend: Backend) {
    let (app, _sibling) = spawn(backend, |s| s.http.trusted_proxies.clear()).await;
    let free = app.settings.login.free_failures as usize;
    app.create_user("ada@example.com", PASSWORD, true).await;
    // The header is the client's own claim: each failure "from" a new
    // address still counts against the one real peer.
    for i in 0..free {
        let ip = format!("203.0.113.{}", i + 1);
        let status = sign_in_from(&app, "ada@example.com", "wrong password", &ip).await;
        let want = if i + 1 < free { 401 } else { 429 };
        assert_eq!(status.as_u16(), want, "failure {}", i + 1);
    }
    let status = sign_in_from(&app, "ada@example.com", PASSWORD, "198.51.100.7").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the peer is locked out"
    );
}

async fn one_address_cannot_spray_a_password_across_accounts(backend: Backend) {
    let budget = 10;
    let (app, sibling) = spawn(backend, |s| s.login.address_failures_per_hour = budget).await;
    app.create_user("owner@example.com", PASSWORD, true).await;
    // One guess at each of 50 accounts (most of them unknown, which count
    // the same), released together from one address.
    let browsers: Vec<Browser> = (0..BURST).map(|_| app.browser()).collect();
    let attempts = browsers.iter().enumerate().map(|(i, b)| {
        let node = if i % 2 == 0 { &app } else { &sibling };
        let email = format!("user{i}@example.com");
        async move {
            post_from(
                b,
                node,
                "/login",
                &[("email", &email), ("password", "Summer2026!")],
                "203.0.113.9",
            )
            .await
            .status()
        }
    });
    let statuses = join_all(attempts).await;
    let counts = tally(&statuses);
    assert_eq!(
        counts.get(&401).copied(),
        Some(budget as usize),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&429).copied(),
        Some(BURST - budget as usize),
        "{counts:?}"
    );
    assert_eq!(
        verified(&app).await,
        u64::from(budget),
        "no more passwords verified"
    );
    // The address waits, whatever account it tries; others do not.
    let status = sign_in_from(&sibling, "owner@example.com", PASSWORD, "203.0.113.9").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let status = sign_in_from(&sibling, "owner@example.com", PASSWORD, "198.51.100.7").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

async fn many_addresses_share_one_budget_per_account(backend: Backend) {
    let budget = 8;
    let (app, sibling) = spawn(backend, |s| s.login.account_failures_per_hour = budget).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let browsers: Vec<Browser> = (0..BURST).map(|_| app.browser()).collect();
    let attempts = browsers.iter().enumerate().map(|(i, b)| {
        let node = if i % 2 == 0 { &app } else { &sibling };
        let ip = format!("203.0.113.{}", i + 1);
        async move {
            post_from(
                b,
                node,
                "/login",
                &[("email", "ada@example.com"), ("password", "wrong password")],
                &ip,
            )
            .await
            .status()
        }
    });
    let statuses = join_all(attempts).await;
    let counts = tally(&statuses);
    assert_eq!(
        counts.get(&401).copied(),
        Some(budget as usize),
        "{counts:?}"
    );
    assert_eq!(verified(&app).await, u64::from(budget));
    // The budget is the account's: the owner waits too, for the hour.
    let status = sign_in_from(&app, "ada@example.com", PASSWORD, "198.51.100.7").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn sign_up_reset_and_resend_are_limited_per_address(backend: Backend) {
    let budget = 3;
    let (app, sibling) = spawn(backend, |s| s.account.address_requests_per_hour = budget).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let forms: [(&str, Vec<(&str, String)>); 3] = [
        (
            "/password/forgot",
            vec![("email", "ada@example.com".into())],
        ),
        ("/confirm/resend", vec![("email", "ada@example.com".into())]),
        (
            "/signup",
            vec![
                ("email", "x@example.com".into()),
                ("password", PASSWORD.into()),
                ("name", "X".into()),
            ],
        ),
    ];
    for (path, fields) in &forms {
        let browsers: Vec<Browser> = (0..BURST).map(|_| app.browser()).collect();
        let attempts = browsers.iter().enumerate().map(|(i, b)| {
            let node = if i % 2 == 0 { &app } else { &sibling };
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            async move {
                let answer = post_from(b, node, path, &fields, "203.0.113.5").await;
                let status = answer.status();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    assert!(answer.headers().contains_key("retry-after"), "{path}");
                }
                status
            }
        });
        let counts = tally(&join_all(attempts).await);
        assert_eq!(
            counts.get(&200).copied(),
            Some(budget as usize),
            "{path}: {counts:?}"
        );
        assert_eq!(
            counts.get(&429).copied(),
            Some(BURST - budget as usize),
            "{path}: {counts:?}"
        );
        // Another address is not held back.
        let browser = app.browser();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let other = post_from(&browser, &sibling, path, &fields, "198.51.100.7").await;
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }
}

async fn failed_client_authentication_is_limited_per_address(backend: Backend) {
    let budget = 5;
    let (app, sibling) = spawn(backend, |s| {
        s.oauth.address_client_auth_failures_per_hour = budget
    })
    .await;
    let client = register(&app, &[]);
    let secret = client.secret.clone().unwrap();
    let introspect = |node: &TestApp, secret: String, ip: &'static str| {
        let request = node
            .client
            .post(node.url("/introspect"))
            .basic_auth(&client.id, Some(secret))
            .header("x-forwarded-for", ip)
            .form(&[("token", "not-a-token")]);
        async move { request.send().await.unwrap() }
    };
    for i in 0..budget {
        let node = if i % 2 == 0 { &app } else { &sibling };
        let answer = introspect(node, "wrong".into(), "203.0.113.8").await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    // The address has used its budget: 429, even with the right secret.
    let answer = introspect(&sibling, secret.clone(), "203.0.113.8").await;
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers().contains_key("retry-after"));
    let json: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(json["error"], "temporarily_unavailable");
    // The client from its own address is not affected.
    let answer = introspect(&app, secret, "198.51.100.7").await;
    assert_eq!(answer.status(), StatusCode::OK);
}

async fn forms_send_one_address_a_few_emails_an_hour(backend: Backend) {
    let (app, sibling) = spawn(backend, |_| {}).await;
    let budget = app.settings.email.address_mails_per_hour as usize;
    app.create_user("ada@example.com", PASSWORD, true).await;
    // 50 reset requests for one address, each from its own address, on
    // two nodes at once: every answer is the usual one...
    let browsers: Vec<Browser> = (0..BURST).map(|_| app.browser()).collect();
    let attempts = browsers.iter().enumerate().map(|(i, b)| {
        let node = if i % 2 == 0 { &app } else { &sibling };
        let ip = format!("203.0.113.{}", i + 1);
        async move {
            let answer = post_from(
                b,
                node,
                "/password/forgot",
                &[("email", "ada@example.com")],
                &ip,
            )
            .await;
            (answer.status(), answer.text().await.unwrap())
        }
    });
    let answers = join_all(attempts).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK);
        assert!(body.contains("Check your email"), "{body}");
    }
    // ...and the mailbox gets the budget, no more.
    let mails = app.emails_to("ada@example.com").await;
    assert_eq!(mails.len(), budget, "{} reset emails", mails.len());

    // One after the other, for another address: the budget, then a request
    // whose email is dropped. The link of the last email sent still works
    // (and only it: each new link retires the one before), so a dropped
    // email retired nothing.
    app.create_user("grace@example.com", PASSWORD, true).await;
    let browser = app.browser();
    for i in 0..=budget {
        let ip = format!("198.51.100.{}", i + 1);
        let answer = post_from(
            &browser,
            &app,
            "/password/forgot",
            &[("email", "grace@example.com")],
            &ip,
        )
        .await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let mails = app.emails_to("grace@example.com").await;
    assert_eq!(mails.len(), budget);
    let mut live = 0;
    for mail in &mails {
        let link = crate::browser::link_in(mail, &format!("{}/password/reset?token=", app.issuer))
            .unwrap_or_else(|| panic!("a reset link in {mail}"));
        let page = browser.get(&link).await;
        let has_form = page
            .forms()
            .iter()
            .any(|f| f.action.starts_with("/password/reset") && f.fields.contains_key("password"));
        if page.status == StatusCode::OK && has_form {
            live += 1;
        }
    }
    assert_eq!(live, 1, "the newest link works");
}

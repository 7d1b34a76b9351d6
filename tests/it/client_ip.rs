//! The client address behind a load balancer (audit issue 14, item 11):
//! `Forwarded` / `X-Forwarded-For` count only when the TCP peer is one of
//! `http.trusted_proxies`, and the audit log records the address so found.

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::accounts::PASSWORD;
use crate::helpers::{Backend, TempDir, TestApp, spawn_app_with, stderr, stepgate};
use crate::on_both_backends;

on_both_backends!(forwarded_headers_count_only_from_a_trusted_proxy,);

/// A wrong-password sign-in sent with `headers`; returns the audited IP.
async fn failed_sign_in(app: &TestApp, headers: &[(&str, &str)]) -> Option<String> {
    let browser = app.browser();
    let page = browser.get("/login").await;
    let mut pairs = page.form("/login").pairs;
    pairs.retain(|(k, _)| k != "email" && k != "password");
    pairs.push(("email".into(), "someone@example.com".into()));
    pairs.push(("password".into(), "not the password".into()));
    let mut request = browser.client.post(app.url("/login")).form(&pairs);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT ip FROM audit_events WHERE kind = 'signin.password' ORDER BY id DESC LIMIT 1"
                .to_owned(),
        ))
        .await
        .unwrap()
        .expect("an audit event for the attempt");
    db.close().await.unwrap();
    row.try_get::<Option<String>>("", "ip").unwrap()
}

async fn forwarded_headers_count_only_from_a_trusted_proxy(backend: Backend) {
    app_ignores_headers_by_default(backend.clone()).await;

    // The test's requests come from 127.0.0.1: make that the proxy.
    let app = spawn_app_with(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    })
    .await;
    app.create_user("someone@example.com", PASSWORD, true).await;
    // The rightmost address the trusted hops do not vouch for is the client;
    // what the client wrote further left is ignored.
    let ip = failed_sign_in(
        &app,
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2")],
    )
    .await;
    assert_eq!(ip.as_deref(), Some("203.0.113.7"));
    // RFC 7239 `Forwarded` wins over X-Forwarded-For, IPv6 in brackets.
    let ip = failed_sign_in(
        &app,
        &[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=\"[2001:db8::17]:4711\";proto=https"),
        ],
    )
    .await;
    assert_eq!(ip.as_deref(), Some("2001:db8::17"));
    // Garbage stops the walk at the last trusted hop: the proxy itself.
    let ip = failed_sign_in(&app, &[("x-forwarded-for", "unknown")]).await;
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    // Without a header, the peer.
    let ip = failed_sign_in(&app, &[]).await;
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
}

/// With `http.trusted_proxies` empty (the default), a client cannot choose
/// the address it is logged under.
async fn app_ignores_headers_by_default(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    app.create_user("someone@example.com", PASSWORD, true).await;
    let ip = failed_sign_in(
        &app,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=198.51.100.1"),
        ],
    )
    .await;
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
}

#[test]
fn a_bad_proxy_block_is_refused_by_key() {
    let dir = TempDir::new();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[http]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap();
    let out = stepgate(&["keys", "list", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("key `http.trusted_proxies`"), "{err}");
    assert!(err.contains("host bits set"), "{err}");
}

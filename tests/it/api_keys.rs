//! Personal API keys as a person meets them on `/profile/api-keys`, and as a
//! script uses them at `/userinfo`; on a fixed clock, so expiry, "last used"
//! and the freshness of the second factor are exact.

use std::sync::Arc;

use aws_lc_rs::digest;
use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, QueryResult, Statement};
use stepgate::clock::{Clock, FixedClock};

use crate::accounts::{PASSWORD, sign_in};
use crate::browser::{Browser, Page};
use crate::helpers::{Backend, TestApp, spawn_app_with_clock, stderr, stepgate, write_config};
use crate::on_both_backends;
use crate::two_factor::{activate, totp_code};

on_both_backends!(
    create_use_list_and_revoke_keys,
    keys_expire_and_stop_with_a_disabled_account,
    with_2fa_a_stale_second_factor_asks_for_a_code_first,
    without_2fa_a_stale_password_is_asked_again_and_each_key_is_mailed,
    keys_belong_to_their_owner_and_forms_are_guarded,
    resource_servers_validate_keys_by_introspection,
);

const PAGE: &str = "/profile/api-keys";
const REVOKE: &str = "/profile/api-keys/revoke";

/// A server on a fixed clock set to the middle of a 30 s TOTP step.
async fn spawn(backend: Backend) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let start = DateTime::from_timestamp(now - now % 30 + 10, 0).unwrap();
    let clock = FixedClock::new(start);
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    (app, clock)
}

/// Runs `sql` on the test database.
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

async fn user_id(app: &TestApp, email: &str) -> String {
    let found = rows(
        app,
        &format!("SELECT id FROM users WHERE email = '{email}'"),
    )
    .await;
    found[0].try_get_by_index::<String>(0).unwrap()
}

async fn key_id(app: &TestApp, name: &str) -> String {
    let found = rows(
        app,
        &format!("SELECT id FROM api_keys WHERE name = '{name}'"),
    )
    .await;
    assert_eq!(found.len(), 1, "one key named {name}");
    found[0].try_get_by_index::<String>(0).unwrap()
}

async fn key_count(app: &TestApp) -> i64 {
    rows(app, "SELECT COUNT(*) FROM api_keys").await[0]
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// Fills the create form on `page` and submits it; `scopes` are the ticked boxes.
async fn post_create(
    browser: &Browser,
    page: &Page,
    name: &str,
    scopes: &[&str],
    expires_in_days: &str,
) -> Page {
    let mut values = vec![("name", name), ("expires_in_days", expires_in_days)];
    values.extend(scopes.iter().map(|s| ("scope", *s)));
    browser.submit_pairs_raw(page, PAGE, &values).await
}

/// Creates a key from the page without 2FA in the way; returns the key.
pub(crate) async fn create_key(
    browser: &Browser,
    name: &str,
    scopes: &[&str],
    expires: &str,
) -> String {
    let page = browser.get(PAGE).await;
    let done = post_create(browser, &page, name, scopes, expires).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    shown_key(&done)
}

/// The key shown once on the page, checked for its shape.
fn shown_key(page: &Page) -> String {
    let key = page
        .element_text("api-key")
        .unwrap_or_else(|| panic!("#api-key on:\n{}", page.html));
    assert!(key.starts_with("sgk_"), "{key}");
    assert_eq!(key.len(), 47, "sgk_ + 256 bits in base64url: {key}");
    assert!(page.contains("will not be shown again"));
    assert_eq!(page.headers["cache-control"], "no-store");
    key
}

/// `/userinfo` with the key as the bearer token: status and JSON body.
async fn userinfo(app: &TestApp, key: &str) -> (StatusCode, serde_json::Value) {
    let response = app
        .client
        .get(app.url("/userinfo"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{status}: {challenge}"
        );
        return (status, serde_json::Value::Null);
    }
    (status, response.json().await.unwrap())
}

/// The listed key named `name`, as text.
fn listed(page: &Page, name: &str) -> String {
    page.list_items("api-keys")
        .into_iter()
        .find(|item| item.contains(name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{}", page.html))
}

fn minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn sha256_hex(value: &str) -> String {
    digest::digest(&digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn create_use_list_and_revoke_keys(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let sub = user_id(&app, "ada@example.com").await;
    let browser = app.browser();

    // The profile links to the page.
    let profile = sign_in(&browser, "ada@example.com", PASSWORD).await;
    let href = profile.link("Manage API keys").expect("a link to the page");
    assert_eq!(href, PAGE);
    let page = browser.get(&href).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.contains("You have no API keys"));
    let form = page.form(PAGE);
    for field in ["csrf_token", "name", "scope", "expires_in_days"] {
        assert!(form.fields.contains_key(field), "{field}: {form:?}");
    }

    // Create: the key is shown once.
    let full = create_key(&browser, "backup script", &["profile", "email"], "").await;
    let again = browser.get(PAGE).await;
    assert!(!again.contains(&full), "shown once only");
    assert!(again.element_text("api-key").is_none());

    // /userinfo answers by the key's scopes.
    clock.advance(Duration::seconds(5));
    let (status, claims) = userinfo(&app, &full).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["name"], "Test User");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["email_verified"], true);
    let used_at = clock.now();

    let email_only = create_key(&browser, "mail sync", &["email"], "").await;
    let (_, claims) = userinfo(&app, &email_only).await;
    assert_eq!(claims["email"], "ada@example.com");
    assert!(claims.get("name").is_none(), "{claims}");
    let profile_only = create_key(&browser, "name badge", &["profile"], "").await;
    let (_, claims) = userinfo(&app, &profile_only).await;
    assert_eq!(claims["name"], "Test User");
    assert!(claims.get("email").is_none(), "{claims}");
    // No box ticked: openid alone (always included), the subject only.
    let bare = create_key(&browser, "whoami", &[], "").await;
    let (_, claims) = userinfo(&app, &bare).await;
    assert_eq!(claims, serde_json::json!({ "sub": sub }));

    // The list: name, scopes, created, last used, expiry, status.
    let page = browser.get(PAGE).await;
    let item = listed(&page, "backup script");
    assert!(item.contains("email, openid, profile"), "{item}");
    assert!(
        item.contains(&format!("Last used{}", minute(used_at))),
        "{item}"
    );
    assert!(item.contains("ExpiresNever"), "{item}");
    assert!(item.contains("Active"), "{item}");
    // "Last used" is written at most once a minute.
    clock.advance(Duration::seconds(30));
    userinfo(&app, &full).await;
    let stored = rows(
        &app,
        "SELECT last_used_at FROM api_keys WHERE name = 'backup script'",
    )
    .await;
    assert_eq!(
        stored[0].try_get_by_index::<i64>(0).unwrap(),
        used_at.timestamp()
    );

    // The database holds the key's SHA-256, never the key.
    let id = key_id(&app, "backup script").await;
    let stored = rows(
        &app,
        &format!("SELECT id, user_id, name, key_hash, scope FROM api_keys WHERE id = '{id}'"),
    )
    .await;
    let columns: Vec<String> = (0..5)
        .map(|i| stored[0].try_get_by_index::<String>(i).unwrap())
        .collect();
    assert_eq!(columns[3], sha256_hex(&full));
    assert_eq!(columns[4], "email openid profile");
    assert!(
        columns.iter().all(|c| !c.contains(&full[4..])),
        "{columns:?}"
    );

    // Revoke: the key stops working at once.
    let form = page
        .forms()
        .into_iter()
        .find(|f| f.action == REVOKE && f.fields.get("key_id") == Some(&id))
        .expect("a revoke form for the key");
    let answer = browser.submit_raw(&page, REVOKE, &form_values(&form)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let after = browser.follow(answer).await;
    assert!(after.contains("The key is revoked"), "{}", after.html);
    assert!(listed(&after, "backup script").contains("Revoked"));
    assert!(
        !after
            .forms()
            .iter()
            .any(|f| f.fields.get("key_id") == Some(&id)),
        "a revoked key has no revoke form"
    );
    let (status, _) = userinfo(&app, &full).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The others still work.
    assert_eq!(userinfo(&app, &email_only).await.0, StatusCode::OK);
    // Revoking it again changes nothing.
    let twice = browser
        .post_raw(
            REVOKE,
            &[
                ("csrf_token", form.fields["csrf_token"].as_str()),
                ("key_id", id.as_str()),
            ],
        )
        .await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND);
    assert!(twice.alert().is_some());

    // Audited, without the keys.
    let events = rows(
        &app,
        "SELECT kind, COALESCE(detail, '') FROM audit_events WHERE kind LIKE 'api_key.%'",
    )
    .await;
    let events: Vec<(String, String)> = events
        .iter()
        .map(|r| {
            (
                r.try_get_by_index::<String>(0).unwrap(),
                r.try_get_by_index::<String>(1).unwrap(),
            )
        })
        .collect();
    let count = |kind: &str| events.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("api_key.created"), 4, "{events:?}");
    assert_eq!(count("api_key.revoked"), 1, "{events:?}");
    assert!(
        events.iter().all(|(_, detail)| !detail.contains("sgk_")),
        "{events:?}"
    );
}

/// A form's own fields as submit values.
fn form_values(form: &crate::browser::HtmlForm) -> Vec<(&str, &str)> {
    form.fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

async fn keys_expire_and_stop_with_a_disabled_account(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, "ada@example.com", PASSWORD).await;
    let created_at = clock.now();
    let daily = create_key(&browser, "daily", &["email"], "1").await;
    let lasting = create_key(&browser, "lasting", &["email"], "").await;
    let page = browser.get(PAGE).await;
    let expires = created_at + Duration::days(1);
    assert!(
        listed(&page, "daily").contains(&format!("Expires{}", minute(expires))),
        "{}",
        page.html
    );

    // Works until the expiry, not at it.
    clock.advance(Duration::days(1) - Duration::seconds(1));
    assert_eq!(userinfo(&app, &daily).await.0, StatusCode::OK);
    clock.advance(Duration::seconds(1));
    assert_eq!(userinfo(&app, &daily).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(userinfo(&app, &lasting).await.0, StatusCode::OK);
    // The (new) session's page says so.
    sign_in(&browser, "ada@example.com", PASSWORD).await;
    let page = browser.get(PAGE).await;
    assert!(listed(&page, "daily").contains("Expired"));

    // A disabled account's keys stop working; enabling it brings them back
    // (disabling is not revoking).
    let config = write_config(app.dir.path(), &app.db, "");
    let config = config.to_str().unwrap();
    let out = stepgate(
        &["user", "disable", "ada@example.com", "--config", config],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(userinfo(&app, &lasting).await.0, StatusCode::UNAUTHORIZED);
    let out = stepgate(
        &["user", "enable", "ada@example.com", "--config", config],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(userinfo(&app, &lasting).await.0, StatusCode::OK);

    // Not a key at all, or a made-up one of the right shape.
    assert_eq!(userinfo(&app, "sgk_nope").await.0, StatusCode::UNAUTHORIZED);
    let made_up = format!("sgk_{}", "A".repeat(43));
    assert_eq!(userinfo(&app, &made_up).await.0, StatusCode::UNAUTHORIZED);
}

/// Audit issue 14, item 4: without a second factor, a session whose password
/// is older than `session.mfa_fresh_secs` proves the password again before a
/// key is made, through the password throttle; every new key is mailed.
async fn without_2fa_a_stale_password_is_asked_again_and_each_key_is_mailed(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("lin@example.com", PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, "lin@example.com", PASSWORD).await;

    // Just signed in: the password is fresh, the key is made at once.
    let fresh = create_key(&browser, "fresh", &["email"], "").await;
    assert_eq!(userinfo(&app, &fresh).await.0, StatusCode::OK);
    let mails = app.emails_to("lin@example.com").await;
    let notice = mails
        .iter()
        .find(|m| m.contains("A new API key was created"))
        .unwrap_or_else(|| panic!("a new-key email among {mails:#?}"));
    assert!(notice.contains("\"fresh\""), "{notice}");
    assert!(!notice.contains(&fresh), "the key itself is never mailed");

    // Past session.mfa_fresh_secs (300 s), the password comes first.
    clock.advance(Duration::seconds(301));
    let page = browser.get(PAGE).await;
    let asked = post_create(&browser, &page, "deploy", &["email"], "30").await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.html);
    assert!(
        asked.contains("Confirm with your password"),
        "{}",
        asked.html
    );
    assert!(asked.element_text("api-key").is_none());
    let form = asked.form(PAGE);
    assert!(form.fields.contains_key("password"), "{form:?}");
    assert!(!form.fields.contains_key("code"), "no code without 2FA");
    assert_eq!(form.fields["name"], "deploy");
    assert_eq!(key_count(&app).await, 1, "nothing created yet");

    // A wrong password is refused and asked again; nothing is made.
    let wrong = browser
        .submit_pairs_raw(&asked, PAGE, &[("password", "not the password")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.html);
    assert!(
        wrong.alert().unwrap().contains("not right"),
        "{}",
        wrong.html
    );
    assert!(wrong.form(PAGE).fields.contains_key("password"));
    assert_eq!(key_count(&app).await, 1);

    // The right one makes the key, and the password is fresh again.
    let done = browser
        .submit_pairs_raw(&wrong, PAGE, &[("password", PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    let deploy = shown_key(&done);
    assert_eq!(userinfo(&app, &deploy).await.0, StatusCode::OK);
    assert_eq!(key_count(&app).await, 2);
    let next = post_create(&browser, &done, "next", &[], "").await;
    assert_eq!(next.status, StatusCode::OK, "fresh again: {}", next.html);
    shown_key(&next);
    let notices = app
        .emails_to("lin@example.com")
        .await
        .into_iter()
        .filter(|m| m.contains("A new API key was created"))
        .count();
    assert_eq!(notices, 3, "one email per key");

    // The prompt counts failures with the sign-in throttle of the email:
    // once it locks, the right password is refused too (429), and no key.
    clock.advance(Duration::seconds(301));
    let page = browser.get(PAGE).await;
    let mut asked = post_create(&browser, &page, "locked", &[], "").await;
    let mut locked = None;
    for _ in 0..20 {
        let answer = browser
            .submit_pairs_raw(&asked, PAGE, &[("password", "wrong again")])
            .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            locked = Some(answer);
            break;
        }
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.html);
        asked = answer;
    }
    let locked = locked.expect("the password prompt locks");
    let refused = browser
        .submit_pairs_raw(&locked, PAGE, &[("password", PASSWORD)])
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.html
    );
    assert!(refused.element_text("api-key").is_none());
    assert_eq!(key_count(&app).await, 3);
}

async fn with_2fa_a_stale_second_factor_asks_for_a_code_first(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "ada@example.com").await;

    // Activation just proved the second factor: no code asked.
    let fresh = create_key(&browser, "fresh", &["email"], "").await;
    assert_eq!(userinfo(&app, &fresh).await.0, StatusCode::OK);

    // Past session.mfa_fresh_secs (300 s), the code comes first.
    clock.advance(Duration::seconds(301));
    let page = browser.get(PAGE).await;
    let asked = post_create(&browser, &page, "deploy", &["profile", "email"], "30").await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.html);
    assert!(asked.element_text("api-key").is_none());
    let form = asked.form(PAGE);
    assert!(form.fields.contains_key("code"), "{form:?}");
    let mut scopes: Vec<&str> = form
        .pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    scopes.sort();
    assert_eq!(
        scopes,
        ["email", "profile"],
        "the form's values travel along"
    );
    assert_eq!(form.fields["name"], "deploy");
    assert_eq!(form.fields["expires_in_days"], "30");
    assert_eq!(key_count(&app).await, 1, "nothing created yet");

    // A wrong code is refused and asked again.
    let wrong = browser
        .submit_pairs_raw(&asked, PAGE, &[("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.alert().unwrap().contains("not right"),
        "{}",
        wrong.html
    );
    assert!(wrong.form(PAGE).fields.contains_key("code"));
    assert_eq!(key_count(&app).await, 1);

    // The right one creates the key, on a renewed session.
    let code = totp_code(&secret, clock.now());
    let done = browser
        .submit_pairs_raw(&wrong, PAGE, &[("code", &code)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    let cookie = done.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("stepgate_session="), "{cookie}");
    let deploy = shown_key(&done);
    let (status, claims) = userinfo(&app, &deploy).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claims["name"], "Test User");
    assert_eq!(claims["email"], "ada@example.com");
    // The forms on that page work with the renewed session.
    let next = post_create(&browser, &done, "next", &[], "").await;
    assert_eq!(next.status, StatusCode::OK, "fresh again: {}", next.html);
    shown_key(&next);

    // When the code is locked out: 429, even for the right code.
    clock.advance(Duration::seconds(301));
    let page = browser.get(PAGE).await;
    let mut asked = post_create(&browser, &page, "locked", &[], "").await;
    assert!(asked.form(PAGE).fields.contains_key("code"));
    for _ in 0..10 {
        asked = browser
            .submit_pairs_raw(&asked, PAGE, &[("code", "000000")])
            .await;
        if asked.status != StatusCode::UNAUTHORIZED {
            break;
        }
    }
    assert_eq!(
        asked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        asked.html
    );
    assert!(asked.headers.contains_key("retry-after"));
    let code = totp_code(&secret, clock.now());
    let refused = browser
        .submit_pairs_raw(&asked, PAGE, &[("code", &code)])
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.alert().is_some());
    assert_eq!(key_count(&app).await, 3);
}

async fn keys_belong_to_their_owner_and_forms_are_guarded(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    app.create_user("grace@example.com", PASSWORD, true).await;

    // Signed out: to the sign-in page.
    let anonymous = app.browser();
    let answer = anonymous.get_raw(PAGE).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers["location"], "/login");

    let ada = app.browser();
    sign_in(&ada, "ada@example.com", PASSWORD).await;
    let key = create_key(&ada, "ada-key", &["email"], "").await;
    let id = key_id(&app, "ada-key").await;

    // Grace cannot revoke Ada's key, even with her own valid form.
    let grace = app.browser();
    sign_in(&grace, "grace@example.com", PASSWORD).await;
    create_key(&grace, "grace-key", &[], "").await;
    let page = grace.get(PAGE).await;
    let theirs = grace
        .submit_raw(&page, REVOKE, &[("key_id", id.as_str())])
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert!(theirs.alert().is_some());
    assert!(!theirs.contains("ada-key"), "no word of the other key");
    assert_eq!(userinfo(&app, &key).await.0, StatusCode::OK);

    // Without the CSRF token (or with a wrong one): 403, nothing changes.
    let count = key_count(&app).await;
    let missing = ada
        .post_raw(PAGE, &[("name", "forged"), ("scope", "email")])
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.alert().is_some());
    let wrong = ada
        .post_raw(
            PAGE,
            &[
                ("name", "forged"),
                ("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(key_count(&app).await, count);
    let revoke = ada.post_raw(REVOKE, &[("key_id", id.as_str())]).await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN);
    assert_eq!(userinfo(&app, &key).await.0, StatusCode::OK);

    // Bad input re-shows the form with an alert and what was typed.
    let page = ada.get(PAGE).await;
    for (name, scopes, expires) in [
        ("", &["email"][..], ""),
        (&"x".repeat(101), &["email"][..], ""),
        ("scoped", &["admin"][..], ""),
        ("scoped", &["offline_access"][..], ""),
        ("dated", &[][..], "0"),
        ("dated", &[][..], "3651"),
        ("dated", &[][..], "soon"),
    ] {
        let bad = post_create(&ada, &page, name, scopes, expires).await;
        assert_eq!(
            bad.status,
            StatusCode::BAD_REQUEST,
            "{name} {scopes:?} {expires}"
        );
        assert!(bad.alert().is_some(), "{}", bad.html);
        assert_eq!(bad.form(PAGE).fields["name"], name);
        assert_eq!(bad.form(PAGE).fields["expires_in_days"], expires);
    }
    assert_eq!(key_count(&app).await, count);
    // The longest lifetime is accepted.
    create_key(&ada, "decade", &[], "3650").await;
}

/// RFC 7662: a resource server (a confidential client registered with
/// `--introspect`) checks a key at /introspect and gets `token_type:
/// "api_key"`, `sub` and `scope`; a revoked key is inactive.
async fn resource_servers_validate_keys_by_introspection(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("auto@example.com", PASSWORD, true).await;
    let sub = user_id(&app, "auto@example.com").await;
    let browser = app.browser();
    sign_in(&browser, "auto@example.com", PASSWORD).await;
    let key = create_key(&browser, "deploy bot", &["email"], "30").await;
    let resource = crate::oidc::register(&app, &["--introspect"]);
    let introspect = |token: String| {
        let app = &app;
        let resource = &resource;
        async move {
            let response = app
                .client
                .post(app.url("/introspect"))
                .basic_auth(&resource.id, resource.secret.as_deref())
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let live = introspect(key.clone()).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["token_type"], "api_key");
    assert_eq!(live["sub"], sub.as_str());
    assert_eq!(live["scope"], "email openid");
    assert!(live["exp"].is_i64());

    let id = key_id(&app, "deploy bot").await;
    let page = browser.get(PAGE).await;
    browser
        .submit_raw(&page, REVOKE, &[("key_id", id.as_str())])
        .await;
    assert_eq!(
        introspect(key).await,
        serde_json::json!({ "active": false })
    );
    assert_eq!(
        introspect("sgk_not-a-real-key".into()).await,
        serde_json::json!({ "active": false })
    );
}

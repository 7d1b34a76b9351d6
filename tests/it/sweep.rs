//! Bounded storage (audit issue 14, item 6): oversized authorization
//! parameters are refused before anything is stored, and the background
//! sweep deletes what has expired, on every node, each row once.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};
use stepgate::clock::FixedClock;
use stepgate::state::AppState;

use crate::accounts::PASSWORD;
use crate::helpers::{Backend, TestApp, spawn_app_with_clock};
use crate::oidc::{REDIRECT, register, relying_party, start};
use crate::on_both_backends;
use crate::tokens::offline_tokens;

on_both_backends!(
    an_oversized_parameter_is_refused_and_nothing_is_stored,
    the_sweep_deletes_expired_rows_and_keeps_live_ones,
    concurrent_sweeps_on_two_nodes_delete_each_row_once,
);

/// The tables the sweep empties, as the test fills them.
const SWEPT: &[&str] = &[
    "interactions",
    "sessions",
    "authorization_codes",
    "email_tokens",
    "access_tokens",
    "refresh_tokens",
    "totp_enrollments",
    "login_throttle",
];

async fn count(app: &TestApp, table: &str) -> i64 {
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    db.close().await.unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn counts(app: &TestApp) -> BTreeMap<&'static str, i64> {
    let mut all = BTreeMap::new();
    for table in SWEPT {
        all.insert(*table, count(app, table).await);
    }
    all
}

async fn spawn(backend: Backend, interval_secs: u64) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 5, 0).unwrap());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |s| {
        s.sweep.interval_secs = interval_secs;
    })
    .await;
    (app, clock)
}

/// One row or more in every swept table: a finished sign-in with
/// `offline_access` (interaction, session, code, access and refresh
/// tokens), a 2FA activation left open, an unconfirmed sign-up's link and a
/// wrong password.
async fn fill(app: &TestApp) {
    app.create_user("ada@example.com", PASSWORD, true).await;
    app.create_user("new@example.com", PASSWORD, false).await;
    let client = register(app, &[]);
    let rp = relying_party(app, &client).await;
    let browser = app.browser();
    offline_tokens(app, &rp, &browser, "ada@example.com").await;
    let activation = browser.get("/profile/2fa/activate").await;
    assert_eq!(activation.status, StatusCode::OK, "{}", activation.html);
    wrong_password(app, "ada@example.com").await;
    for (table, n) in counts(app).await {
        assert!(n > 0, "the test put a row in {table}");
    }
}

async fn wrong_password(app: &TestApp, email: &str) {
    let browser = app.browser();
    let page = browser.get("/login").await;
    let answer = browser
        .submit_raw(
            &page,
            "/login",
            &[("email", email), ("password", "wrong password")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

/// Past every lifetime: refresh-token families (30 days), and the day a
/// used code and a throttle run are remembered.
fn advance_past_everything(clock: &FixedClock) {
    clock.advance(Duration::days(32));
}

async fn an_oversized_parameter_is_refused_and_nothing_is_stored(backend: Backend) {
    let (app, _clock) = spawn(backend, 0).await;
    let client = register(&app, &[]);
    let hint = "h".repeat(60 * 1024);
    let long = [
        ("id_token_hint", hint.as_str()),
        ("acr_values", &"a".repeat(3000)),
        ("claims", &"c".repeat(3000)),
        ("ui_locales", &"fr ".repeat(200)),
    ];
    for (name, value) in long {
        let fields = [
            ("client_id", client.id.as_str()),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s1"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
            (name, value),
        ];
        let answer = app
            .client
            .post(app.url("/authorize"))
            .form(&fields)
            .send()
            .await
            .unwrap();
        // The client and redirect URI are good: the error goes back to the
        // client (RFC 6749 §4.1.2.1).
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{name}");
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        let params = crate::oidc::query(&location);
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(params["error"], "invalid_request", "{name}");
        assert!(params["error_description"].contains(name), "{params:?}");
        assert_eq!(params["state"], "s1");
    }
    // An unknown client with the same hint: a page, no redirect.
    let answer = app
        .client
        .post(app.url("/authorize"))
        .form(&[
            ("client_id", "nobody"),
            ("redirect_uri", REDIRECT),
            ("id_token_hint", hint.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(count(&app, "interactions").await, 0, "nothing stored");
    // A request within the bounds is stored as before.
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let answer = app.client.get(&flow.url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(count(&app, "interactions").await, 1);
}

async fn the_sweep_deletes_expired_rows_and_keeps_live_ones(backend: Backend) {
    let (app, clock) = spawn(backend, 1).await;
    let sibling = app.spawn_sibling().await;
    fill(&app).await;

    advance_past_everything(&clock);
    // Made after the clock moved: live, so kept.
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let flow = start(&rp, None);
    let browser = app.browser();
    let login = browser.get_raw(&flow.url).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    wrong_password(&sibling, "grace@example.com").await;

    // Both nodes sweep every second; wait (bounded) for the expired rows.
    let want: BTreeMap<&str, i64> = SWEPT
        .iter()
        .map(|t| {
            (
                *t,
                i64::from(matches!(*t, "interactions" | "login_throttle")),
            )
        })
        .collect();
    let mut seen = counts(&app).await;
    for _ in 0..150 {
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen = counts(&app).await;
    }
    assert_eq!(seen, want, "expired rows are gone, live ones stay");

    // The live interaction still works: the sign-in page it leads to.
    let page = browser.follow(login).await;
    assert!(page.contains("Sign in"), "{}", page.html);
}

/// A node's state on the test database, as `Application` builds it.
async fn node_state(app: &TestApp, clock: &FixedClock, batch_size: u32) -> AppState {
    let mut settings = app.settings.clone();
    settings.sweep.batch_size = batch_size;
    let db = stepgate::store::connect(&settings).await.unwrap();
    stepgate::startup::state_on(settings, db, Arc::new(clock.clone()))
        .await
        .unwrap()
}

async fn concurrent_sweeps_on_two_nodes_delete_each_row_once(backend: Backend) {
    let (app, clock) = spawn(backend, 0).await;
    fill(&app).await;
    // A few more sign-ins, so batches of 2 take several rounds.
    for i in 0..3 {
        wrong_password(&app, &format!("user{i}@example.com")).await;
    }
    let before = counts(&app).await;
    advance_past_everything(&clock);

    let nodes = [
        node_state(&app, &clock, 2).await,
        node_state(&app, &clock, 2).await,
    ];
    let sweeps: Vec<_> = (0..10)
        .map(|i| {
            let state = nodes[i % 2].clone();
            tokio::spawn(async move { stepgate::service::sweep::sweep_once(&state).await })
        })
        .collect();
    let mut deleted: BTreeMap<&str, i64> = BTreeMap::new();
    for sweep in sweeps {
        let swept = sweep.await.unwrap().expect("a sweep never fails on a race");
        for (table, n) in swept {
            *deleted.entry(table).or_default() += n as i64;
        }
    }
    for table in SWEPT {
        assert_eq!(
            deleted.get(table).copied().unwrap_or(0),
            before[table],
            "{table}: every row deleted once, by one sweep"
        );
        assert_eq!(count(&app, table).await, 0, "{table}");
    }
    // Users, clients and consents are not swept.
    assert_eq!(count(&app, "users").await, 2);
    assert_eq!(count(&app, "consents").await, 1);
}

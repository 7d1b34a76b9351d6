//! A node while its database is away: discovery and JWKS answer from
//! memory, everything that needs the database answers 503 with
//! `Retry-After` in its surface's shape (never a 500, never past the
//! request timeout), `/readyz` says so, and the node recovers by itself
//! when the database returns; what it acknowledged before is still true.
//! Also: several nodes migrating one empty database at once, and what the
//! group-commit writer learns of a transaction whose commit failed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use serde_json::Value;
use stepgate::store::append::{Outcome, transaction_outcome};

use crate::accounts::PASSWORD;
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::oidc::{REDIRECT, TestClient, register};
use crate::own_postgres::OwnPostgres;

const EMAIL: &str = "outage@example.com";

async fn token(app: &TestApp, client: &TestClient) -> reqwest::Response {
    app.client
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
}

async fn introspect(app: &TestApp, rs: &TestClient, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/introspect"))
        .basic_auth(&rs.id, rs.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect request")
}

async fn active(app: &TestApp, rs: &TestClient, token: &str) -> bool {
    let response = introspect(app, rs, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["active"] == true
}

/// What one request of the mixed load got.
struct Answer {
    what: &'static str,
    status: StatusCode,
    retry_after: Option<String>,
    error: Option<String>,
    took: Duration,
}

/// One round of mixed load: protocol endpoints, pages, and what is served
/// from memory. `access` is a token issued before.
async fn round(app: &TestApp, service: &TestClient, rs: &TestClient, access: &str) -> Vec<Answer> {
    // A sign-in page needs no database; its form is posted below.
    let browser = app.browser();
    let page = browser.get_raw("/login").await;
    assert_eq!(page.status, StatusCode::OK, "the sign-in page is served");
    let csrf = page.form("/login").fields["csrf_token"].clone();
    let authorize = format!(
        "/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        service.id,
        urlencode(REDIRECT)
    );
    let mut requests: Vec<(&'static str, reqwest::RequestBuilder)> = vec![
        (
            "discovery",
            app.client.get(app.url("/.well-known/openid-configuration")),
        ),
        ("jwks", app.client.get(app.url("/jwks"))),
        ("healthz", app.client.get(app.url("/healthz"))),
        ("readyz", app.client.get(app.url("/readyz"))),
        (
            "token",
            app.client
                .post(app.url("/token"))
                .basic_auth(&service.id, service.secret.as_deref())
                .form(&[("grant_type", "client_credentials")]),
        ),
        (
            "introspect",
            app.client
                .post(app.url("/introspect"))
                .basic_auth(&rs.id, rs.secret.as_deref())
                .form(&[("token", access)]),
        ),
        (
            "userinfo",
            app.client.get(app.url("/userinfo")).bearer_auth(access),
        ),
        (
            "login",
            browser.client.post(app.url("/login")).form(&[
                ("csrf_token", csrf.as_str()),
                ("email", EMAIL),
                ("password", PASSWORD),
            ]),
        ),
        ("authorize", app.client.get(app.url(&authorize))),
    ];
    // More token requests at once, as a client pool would send them.
    for _ in 0..5 {
        requests.push((
            "token",
            app.client
                .post(app.url("/token"))
                .basic_auth(&service.id, service.secret.as_deref())
                .form(&[("grant_type", "client_credentials")]),
        ));
    }
    // All at once: the load is mixed, and a round lasts as long as its
    // slowest request.
    crate::helpers::join_all(requests.into_iter().map(|(what, request)| async move {
        let started = Instant::now();
        let response = request.send().await.expect("the node answers");
        let took = started.elapsed();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
        let body = response.text().await.unwrap_or_default();
        let error = if json {
            serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
        } else {
            None
        };
        Answer {
            what,
            status,
            retry_after,
            error,
            took,
        }
    }))
    .await
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Stops the node's own PostgreSQL for ten seconds under mixed load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rides_out_a_database_outage() {
    let Some(postgres) = OwnPostgres::start() else {
        return;
    };
    let backend = Backend::Postgres {
        admin_url: postgres.url(),
    };
    let request_timeout = Duration::from_secs(10);
    let app = spawn_app_with(backend, |s| {
        s.database.connect_timeout_secs = 2;
        s.http.request_timeout_secs = request_timeout.as_secs();
    })
    .await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let service = register(
        &app,
        &[
            "--grant-type",
            "client_credentials",
            "--grant-type",
            "authorization_code",
            "--scope",
            "openid",
        ],
    );
    let rs = register(&app, &["--introspect"]);

    // Acknowledged before the outage.
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let response = token(&app, &service).await;
        assert_eq!(response.status(), StatusCode::OK);
        let json: Value = response.json().await.unwrap();
        acknowledged.push(json["access_token"].as_str().unwrap().to_owned());
    }
    // A user's access token, for /userinfo.
    let rp = crate::oidc::relying_party(&app, &service).await;
    let flow = crate::oidc::start(&rp, None);
    let code = crate::oidc::sign_in_and_consent(&app.browser(), &flow, EMAIL).await;
    let (tokens, _) = crate::oidc::exchange(&rp, flow, &code).await;
    let access = openidconnect::OAuth2TokenResponse::access_token(&tokens)
        .secret()
        .clone();
    acknowledged.push(access.clone());
    for answer in round(&app, &service, &rs, &access).await {
        assert!(
            answer.status.is_success() || answer.status.is_redirection(),
            "{} before the outage: {}",
            answer.what,
            answer.status
        );
    }

    postgres.stop();
    let down_since = Instant::now();
    let mut rounds = 0;
    while down_since.elapsed() < Duration::from_secs(10) {
        rounds += 1;
        for a in round(&app, &service, &rs, &access).await {
            assert!(
                a.took < request_timeout,
                "{} took {:?}, past the request timeout",
                a.what,
                a.took
            );
            match a.what {
                // From memory, and liveness never asks the database.
                "discovery" | "jwks" | "healthz" => {
                    assert_eq!(a.status, StatusCode::OK, "{} while down", a.what)
                }
                "readyz" => assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE),
                // The token family: JSON `temporarily_unavailable`.
                "token" | "introspect" | "userinfo" => {
                    assert_eq!(
                        a.status,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{} while down",
                        a.what
                    );
                    assert_eq!(
                        a.error.as_deref(),
                        Some("temporarily_unavailable"),
                        "{}",
                        a.what
                    );
                    assert_eq!(a.retry_after.as_deref(), Some("5"), "{}", a.what);
                }
                // Pages: an error page, 503, Retry-After.
                _ => {
                    assert_eq!(
                        a.status,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{} while down",
                        a.what
                    );
                    assert_eq!(a.retry_after.as_deref(), Some("5"), "{}", a.what);
                }
            }
        }
    }
    assert!(
        rounds >= 2,
        "the load ran through the outage ({rounds} rounds)"
    );

    // What the writer makes of a transaction it cannot ask about.
    let pool = app.state.store.db.clone();
    let asked = Instant::now();
    assert_eq!(
        transaction_outcome(&pool, 1_000, Duration::from_secs(1)).await,
        Outcome::Unknown
    );
    assert!(asked.elapsed() < Duration::from_secs(5), "bounded");

    postgres.resume();
    let back_since = Instant::now();
    loop {
        if app.get("/readyz").await.status() == StatusCode::OK {
            break;
        }
        assert!(
            back_since.elapsed() < Duration::from_secs(20),
            "the node is ready again within 20 s of the database's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Recovered without a restart: every kind of request works again.
    for answer in round(&app, &service, &rs, &access).await {
        assert!(
            answer.status.is_success() || answer.status.is_redirection(),
            "{} after the outage: {}",
            answer.what,
            answer.status
        );
    }
    let fresh = token(&app, &service).await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let fresh: Value = fresh.json().await.unwrap();
    assert!(active(&app, &rs, fresh["access_token"].as_str().unwrap()).await);
    for token in &acknowledged {
        assert!(
            active(&app, &rs, token).await,
            "a token acknowledged before the outage is still active"
        );
    }
}

/// `txid_status` tells a committed transaction from a rolled back one,
/// which is how the writer settles a commit whose answer was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_learns_what_became_of_a_transaction() {
    let Some(Backend::Postgres { admin_url }) = Backend::postgres() else {
        return;
    };
    let db = Database::connect(admin_url.as_str()).await.unwrap();
    let committed = db.begin().await.unwrap();
    let committed_xid = xid(&committed).await;
    committed.commit().await.unwrap();
    let aborted = db.begin().await.unwrap();
    let aborted_xid = xid(&aborted).await;
    aborted.rollback().await.unwrap();
    let within = Duration::from_secs(2);
    assert_eq!(
        transaction_outcome(&db, committed_xid, within).await,
        Outcome::Committed
    );
    assert_eq!(
        transaction_outcome(&db, aborted_xid, within).await,
        Outcome::Aborted
    );
    // One that never was (in the future): unknown.
    assert_eq!(
        transaction_outcome(&db, committed_xid + 1_000_000_000, within).await,
        Outcome::Unknown
    );
}

async fn xid(txn: &sea_orm::DatabaseTransaction) -> i64 {
    txn.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT txid_current()",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

/// Three nodes start at once on an empty PostgreSQL database, each
/// migrating it at start: all three serve, and each migration ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_migrate_one_empty_database_at_once() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    for _ in 0..3 {
        let dir = crate::helpers::TempDir::new();
        let db = backend.create_database(dir.path()).await;
        let starts = (0..3).map(|i| {
            let mut settings = crate::helpers::test_settings(dir.path(), &db);
            settings.keys_dir = dir.path().join(format!("keys-{i}"));
            crate::helpers::copy_template_keys(&settings.keys_dir);
            settings.database.migrate_on_start = true;
            async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                settings.listen = listener.local_addr().unwrap();
                settings.issuer = format!("http://{}", settings.listen);
                stepgate::startup::Application::build_with_listener(
                    settings,
                    listener,
                    std::sync::Arc::new(stepgate::clock::SystemClock),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            }
        });
        for started in crate::helpers::join_all(starts).await {
            started.expect("every node starts");
        }
        let conn = Database::connect(db.url.as_str()).await.unwrap();
        let row = conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*), count(DISTINCT version) FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap();
        let (rows, distinct): (i64, i64) = (
            row.try_get_by_index(0).unwrap(),
            row.try_get_by_index(1).unwrap(),
        );
        use migrations::MigratorTrait;
        let expected = migrations::Migrator::migrations().len() as i64;
        assert_eq!((rows, distinct), (expected, expected));
        drop(conn);
    }
}

/// SQLite under `kill -9` (`crash.rs`), on the test profile's binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_token_through_kill_9() {
    crate::crash::sqlite_keeps_every_acknowledged_token_through_kill_9(std::path::Path::new(env!(
        "CARGO_BIN_EXE_stepgate"
    )))
    .await;
}

//! Signing keys in the database: the first key, the import of key files
//! from before, rotation and retirement reaching every node without a
//! restart, the refusals, and what the table stores.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use openidconnect::OAuth2TokenResponse;
use serde_json::Value;
use stepgate::clock::FixedClock;
use stepgate::config::Settings;
use stepgate::protocol::signing_keys::KeyState;
use stepgate::service::signing_keys;

use crate::accounts::PASSWORD;
use crate::helpers::{
    Backend, TempDir, TestApp, copy_template_keys, spawn_app_with, spawn_app_with_clock, stderr,
    stdout, stepgate, test_settings, write_config,
};
use crate::oidc::{TestClient, register, relying_party};
use crate::on_both_backends;

on_both_backends!(
    a_fresh_install_creates_one_active_key_kept_across_restarts,
    key_files_are_imported_once_by_nodes_starting_together,
    rotation_reaches_every_node_and_signs_after_publish_ahead,
    rotate_now_signs_at_once,
    a_retired_key_stays_published_until_its_tokens_expire,
    refusals_change_nothing_and_a_retired_next_key_leaves_at_once,
    the_table_holds_no_plaintext_private_key,
    two_retirements_at_once_never_leave_no_key_that_signs,
);

/// Short settings: nodes read the keys every second, a new key signs two
/// seconds after it is published, tokens live five seconds.
fn short(settings: &mut Settings) {
    settings.keys.refresh_secs = 1;
    settings.keys.publish_ahead_secs = 2;
    settings.oauth.id_token_ttl_secs = 5;
    settings.oauth.access_token_ttl_secs = 5;
}

const SHORT_TOML: &str = "[keys]\nrefresh_secs = 1\npublish_ahead_secs = 2\n[oauth]\nid_token_ttl_secs = 5\naccess_token_ttl_secs = 5\n";

/// Runs `stepgate keys ARGS --json` against the app's database with the
/// short settings; the one JSON object it prints, or its stderr.
fn keys_cli(app: &TestApp, args: &[&str]) -> Result<Value, String> {
    keys_cli_with(app, SHORT_TOML, args)
}

fn keys_cli_with(app: &TestApp, toml: &str, args: &[&str]) -> Result<Value, String> {
    let config = write_config(app.dir.path(), &app.db, toml);
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--config", config.to_str().unwrap()]);
    let out = stepgate(&all, &[]);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
    Ok(serde_json::from_str(text.trim()).expect("one JSON object"))
}

fn listed(app: &TestApp) -> Vec<Value> {
    keys_cli(app, &["list"]).unwrap()["keys"]
        .as_array()
        .unwrap()
        .clone()
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_owned()
}

/// Unix milliseconds of an RFC 3339 time the CLI printed.
fn millis(value: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&text(value))
        .unwrap()
        .timestamp_millis()
}

async fn kids(app: &TestApp) -> Vec<String> {
    let response = app.get("/jwks").await;
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["use"], "sig");
            assert_eq!(k["alg"], "RS256");
            text(&k["kid"])
        })
        .collect()
}

/// Polls until `check` holds of the app's JWKS kids; fails after `secs`.
async fn until_jwks(app: &TestApp, secs: u64, what: &str, check: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = kids(app).await;
        if check(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: JWKS still {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header_kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    text(&header["kid"])
}

/// A client allowed every grant, and a refresh token of a signed-in user,
/// so that each refresh gives a fresh ID token and access token.
async fn signed_in(app: &TestApp) -> (TestClient, String) {
    app.create_user("keys@example.com", PASSWORD, true).await;
    let client = register(
        app,
        &[
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--grant-type",
            "client_credentials",
        ],
    );
    let rp = relying_party(app, &client).await;
    let browser = app.browser();
    let tokens = crate::tokens::offline_tokens(app, &rp, &browser, "keys@example.com").await;
    let refresh = tokens.refresh_token().unwrap().secret().clone();
    (client, refresh)
}

/// Refreshes on `app`: (ID token kid, access token kid), and the next
/// refresh token.
async fn refreshed(app: &TestApp, client: &TestClient, refresh: &str) -> (String, String, String) {
    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    (
        header_kid(json["id_token"].as_str().unwrap()),
        header_kid(json["access_token"].as_str().unwrap()),
        text(&json["refresh_token"]),
    )
}

async fn client_credentials_kid(app: &TestApp, client: &TestClient) -> String {
    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    header_kid(json["access_token"].as_str().unwrap())
}

async fn a_fresh_install_creates_one_active_key_kept_across_restarts(backend: Backend) {
    // A keys dir that starts empty: the first start creates the keys.
    let app = spawn_app_with(backend, |s| {
        s.keys_dir = s.keys_dir.with_file_name("fresh-keys");
    })
    .await;
    let first = kids(&app).await;
    assert_eq!(first.len(), 1);
    let keys = signing_keys::list(&app.state).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].times.kid, first[0]);
    assert_eq!(keys[0].status.state, KeyState::Active);

    let keys_dir = app.settings.keys_dir.clone();
    let master = keys_dir.join("master.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&master).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "master key is private to its owner");
    let master_before = std::fs::read(&master).unwrap();
    let files: Vec<_> = std::fs::read_dir(&keys_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        ["master.key"],
        "the signing key is in the database only"
    );

    let app = app.restart().await;
    assert_eq!(kids(&app).await, first);
    assert_eq!(signing_keys::list(&app.state).await.unwrap().len(), 1);
    assert_eq!(std::fs::read(&master).unwrap(), master_before);
}

async fn key_files_are_imported_once_by_nodes_starting_together(backend: Backend) {
    let dir = TempDir::new();
    let db = backend.create_database(dir.path()).await;
    let settings = test_settings(dir.path(), &db);
    copy_template_keys(&settings.keys_dir);
    // An older key beside the template's (which is a day old).
    let older = Utc::now() - chrono::Duration::days(3);
    stepgate::keys::write_legacy_key_file(&settings.keys_dir, older).unwrap();
    let files = stepgate::keys::legacy_key_files(&settings.keys_dir).unwrap();
    assert_eq!(files.len(), 2);

    let pool = stepgate::store::connect(&settings).await.unwrap();
    stepgate::store::migrate(&pool).await.unwrap();
    let node = |settings: Settings| async move {
        let db = stepgate::store::connect(&settings).await.unwrap();
        let clock = std::sync::Arc::new(stepgate::clock::SystemClock);
        stepgate::startup::state_on(settings, db, clock)
            .await
            .unwrap()
    };
    let (a, b) = tokio::join!(node(settings.clone()), node(settings.clone()));
    let keys = signing_keys::list(&a).await.unwrap();
    assert_eq!(keys.len(), 2, "each file imported once: {keys:?}");
    let newest = &files[1];
    for (file, key) in files.iter().zip(&keys) {
        assert_eq!(key.times.kid, file.key.kid);
        assert_eq!(
            key.times.created_at, file.created_at,
            "keeps its creation time"
        );
    }
    assert_eq!(
        keys[1].status.state,
        KeyState::Active,
        "the newest file signs"
    );
    assert_eq!(
        keys[0].status.state,
        KeyState::Retired,
        "the older one expired long ago"
    );
    for node in [&a, &b] {
        assert_eq!(node.keys.signer(node.now_ms()).unwrap().kid, newest.key.kid);
    }
    // A later start finds them imported.
    let c = node(settings.clone()).await;
    assert_eq!(signing_keys::list(&c).await.unwrap().len(), 2);
}

async fn rotation_reaches_every_node_and_signs_after_publish_ahead(backend: Backend) {
    let app = spawn_app_with(backend, short).await;
    let sibling = app.spawn_sibling().await;
    let old = kids(&app).await;
    assert_eq!(old.len(), 1);
    let old = old[0].clone();
    let (client, mut refresh) = signed_in(&app).await;

    let rotated = keys_cli(&app, &["rotate"]).unwrap();
    let new = text(&rotated["kid"]);
    assert_ne!(new, old);
    assert_eq!(rotated["state"], "next");
    let activates = millis(&rotated["activates_at"]);
    assert_eq!(activates - millis(&rotated["created_at"]), 2000);

    // Both nodes publish it within refresh_secs, the active key first.
    for node in [&app, &sibling] {
        until_jwks(node, 3, "the new key is published", |k| {
            k == [old.clone(), new.clone()]
        })
        .await;
    }
    // Until its activation the old key signs, on both nodes, then the new one.
    let mut seen_old = false;
    let mut seen_new = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen_new {
        assert!(Instant::now() < deadline, "the new key never signed");
        for node in [&app, &sibling] {
            let asked = Utc::now().timestamp_millis();
            let (id_kid, access_kid, next) = refreshed(node, &client, &refresh).await;
            let answered = Utc::now().timestamp_millis();
            refresh = next;
            assert_eq!(id_kid, access_kid);
            if answered < activates {
                assert_eq!(id_kid, old, "signed before the new key activates");
                seen_old = true;
            } else if asked > activates {
                assert_eq!(id_kid, new, "signed after the new key activated");
                seen_new = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_old, "a token was signed before the activation");
    let list = listed(&app);
    let states: Vec<_> = list.iter().map(|k| text(&k["state"])).collect();
    assert_eq!(states, ["retiring", "active"]);
}

async fn rotate_now_signs_at_once(backend: Backend) {
    let app = spawn_app_with(backend, short).await;
    let client = register(&app, &["--grant-type", "client_credentials"]);
    let old = client_credentials_kid(&app, &client).await;
    let rotated = keys_cli(&app, &["rotate", "--now"]).unwrap();
    let new = text(&rotated["kid"]);
    assert_eq!(rotated["state"], "active");
    assert_eq!(rotated["activates_at"], rotated["created_at"]);
    // Within refresh_secs this node signs with it.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let kid = client_credentials_kid(&app, &client).await;
        if kid == new {
            break;
        }
        assert_eq!(kid, old);
        assert!(Instant::now() < deadline, "the new key does not sign");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old one is still published: what it signed still verifies.
    assert_eq!(kids(&app).await, [new, old]);
}

async fn a_retired_key_stays_published_until_its_tokens_expire(backend: Backend) {
    // A fixed clock, moved past the unpublish moment instead of waiting for
    // it (the token lifetimes plus the refresh and the skew margin).
    let clock = FixedClock::new(Utc::now());
    let app = spawn_app_with_clock(backend, std::sync::Arc::new(clock.clone()), short).await;
    let sibling = app.spawn_sibling().await;
    let old = kids(&app).await[0].clone();
    let client = register(&app, &["--grant-type", "client_credentials"]);
    let rotated = keys_cli(&app, &["rotate"]).unwrap();
    let new = text(&rotated["kid"]);
    until_jwks(&app, 3, "the new key is published", |k| k.len() == 2).await;
    // The CLI wrote real times; move the servers' clock past the activation.
    let activates = millis(&rotated["activates_at"]);
    clock.advance(chrono::Duration::milliseconds(
        activates - app.state.now_ms() + 1,
    ));
    let deadline = Instant::now() + Duration::from_secs(3);
    while client_credentials_kid(&app, &client).await != new {
        assert!(Instant::now() < deadline, "the new key does not sign");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let retired = keys_cli(&app, &["retire", &old]).unwrap();
    assert_eq!(retired["kid"], old.as_str());
    let unpublish_at = millis(&retired["unpublish_at"]);
    let stopped_at = millis(&retired["stopped_at"]);
    assert_eq!(
        unpublish_at - stopped_at,
        signing_keys::linger_ms(&app.settings).signed,
        "published for the longest token lifetime, the refresh and the skew margin"
    );
    // Still published after several reads, on both nodes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in [&app, &sibling] {
        assert_eq!(kids(node).await, [new.clone(), old.clone()]);
        let listed = signing_keys::list(&node.state).await.unwrap();
        assert_eq!(listed[0].status.state, KeyState::Retiring);
    }
    // Past the moment it leaves, on both nodes, at their next read.
    let now = app.state.now_ms();
    clock.advance(chrono::Duration::milliseconds(unpublish_at - now + 1));
    for node in [&app, &sibling] {
        until_jwks(node, 3, "the retired key leaves", |k| k == [new.clone()]).await;
        assert!(
            node.state
                .keys
                .verifier(&old, node.state.now_ms())
                .is_none()
        );
    }
    let states: Vec<_> = listed(&app).iter().map(|k| text(&k["state"])).collect();
    // The CLI runs on the real clock, where the key is still retiring.
    assert_eq!(states, ["retiring", "active"]);
}

async fn refusals_change_nothing_and_a_retired_next_key_leaves_at_once(backend: Backend) {
    let app = spawn_app_with(backend, short).await;
    let before = listed(&app);
    assert_eq!(before.len(), 1);
    let only = text(&before[0]["kid"]);

    let refused = keys_cli(&app, &["retire", &only]).unwrap_err();
    assert!(refused.contains("rotate"), "says what to do: {refused}");
    let refused_now = keys_cli(&app, &["retire", &only, "--now"]).unwrap_err();
    assert!(refused_now.contains("rotate"), "{refused_now}");
    let unknown = keys_cli(&app, &["retire", "no-such-kid"]).unwrap_err();
    assert!(unknown.contains("no-such-kid"), "names the kid: {unknown}");
    assert_eq!(listed(&app), before, "nothing changed");

    // A next key retired well before its activation (more than a node's
    // refresh and the skew margin, 61 s here) never signed anywhere: it
    // leaves the JWKS at once. (Retired closer to its activation it may
    // have signed on a node that had not read the retirement, and lingers:
    // `protocol::signing_keys`.)
    let ahead = SHORT_TOML.replace("publish_ahead_secs = 2", "publish_ahead_secs = 90");
    let next = text(&keys_cli_with(&app, &ahead, &["rotate"]).unwrap()["kid"]);
    until_jwks(&app, 3, "the next key is published", |k| k.len() == 2).await;
    let retired = keys_cli(&app, &["retire", &next]).unwrap();
    assert_eq!(retired["state"], "retired");
    assert_eq!(retired["successor"], Value::Null);
    until_jwks(&app, 3, "the retired next key leaves", |k| {
        k == [only.clone()]
    })
    .await;
    // The old key signs on.
    let client = register(&app, &["--grant-type", "client_credentials"]);
    assert_eq!(client_credentials_kid(&app, &client).await, only);

    // Retiring the active key hands over to a next key at once; --now
    // takes it out of the JWKS at once (a compromised key).
    let next = text(&keys_cli_with(&app, &ahead, &["rotate"]).unwrap()["kid"]);
    let retired = keys_cli(&app, &["retire", &only, "--now"]).unwrap();
    assert_eq!(retired["state"], "retired");
    assert_eq!(retired["successor"], next.as_str());
    until_jwks(&app, 3, "the compromised key leaves", |k| {
        k == [next.clone()]
    })
    .await;
    assert_eq!(client_credentials_kid(&app, &client).await, next);
}

async fn the_table_holds_no_plaintext_private_key(backend: Backend) {
    let app = spawn_app_with(backend, short).await;
    let file = stepgate::keys::legacy_key_files(&app.settings.keys_dir)
        .unwrap()
        .remove(0);
    let rows = stepgate::store::signing_keys::all(&app.state.store.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.kid, file.key.kid);
    let pem_body = STANDARD.encode(&file.der);
    for stored in [&row.private_key_sealed, &row.kid, &row.alg] {
        assert!(!stored.contains(&pem_body[..64]), "no PEM in the row");
        assert!(!stored.contains("PRIVATE KEY"));
    }
    let sealed = STANDARD
        .decode(row.private_key_sealed.strip_prefix("v1.").unwrap())
        .unwrap();
    assert!(
        !sealed.windows(64).any(|w| w == &file.der[..64]),
        "no DER in the row"
    );
    let masters = app.state.keys.masters();
    let master = masters.sealing();
    assert_eq!(row.master_key_id, master.id());
    assert_eq!(
        stepgate::keys::unseal_private_key(master, &row.kid, &row.private_key_sealed).unwrap(),
        file.der
    );
    let other_dir = TempDir::new();
    let (other, _) = stepgate::keys::load_or_create_master(other_dir.path()).unwrap();
    assert!(
        stepgate::keys::unseal_private_key(other.sealing(), &row.kid, &row.private_key_sealed)
            .is_none()
    );
    assert!(
        stepgate::keys::unseal_private_key(master, "another-kid", &row.private_key_sealed)
            .is_none(),
        "bound to its kid"
    );
}

/// A damaged key file stops the start with its name, and is left as it was.
#[test]
fn a_corrupt_key_file_stops_the_start_untouched() {
    let dir = TempDir::new();
    let keys = dir.path().join("keys");
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let env = [
        ("STEPGATE_KEYS_DIR", keys.to_str().unwrap()),
        ("STEPGATE_DATABASE_URL", db_url.as_str()),
        ("STEPGATE_LISTEN", "127.0.0.1:0"),
    ];
    let out = stepgate(&["keys", "list", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);

    let file = keys.join("signing-1700000000000.pem");
    let garbage = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
    std::fs::write(&file, garbage).unwrap();
    let out = stepgate(&["serve"], &env);
    assert!(!out.status.success());
    let err = stderr(&out);
    let name = file.to_str().unwrap();
    assert!(err.contains(name), "names the file: {err}");
    assert!(err.contains("not an RSA key"), "says what is wrong: {err}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "left untouched");
    std::fs::remove_file(&file).unwrap();

    // A damaged master key too.
    let master = keys.join("master.key");
    std::fs::write(&master, "too short\n").unwrap();
    let out = stepgate(&["keys", "list"], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("master.key"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&master).unwrap(), "too short\n");

    // Another master key: the keys in the database do not open, and the
    // start says so.
    let other = TempDir::new();
    stepgate::keys::load_or_create_master(other.path()).unwrap();
    std::fs::copy(other.path().join("master.key"), &master).unwrap();
    let out = stepgate(&["keys", "list"], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("master.key"), "{}", stderr(&out));
}

/// While the database refuses connections, a read of the keys fails, the
/// node keeps the keys it has, and `/jwks` and discovery answer from
/// memory; the next read after it returns succeeds. PostgreSQL only (as
/// `health::readiness_follows_the_database`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_answers_while_the_database_is_away() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let app = spawn_app_with(backend, |s| {
        short(s);
        s.database.connect_timeout_secs = 1;
    })
    .await;
    let (_, name) = app.db.postgres.clone().unwrap();
    let before = kids(&app).await;
    app.db
        .admin_execute(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await;
    app.db
        .admin_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    assert!(signing_keys::refresh(&app.state).await.is_err());
    // Several background reads fail meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(kids(&app).await, before);
    let discovery = app.get("/.well-known/openid-configuration").await;
    assert_eq!(discovery.status(), 200);
    assert!(app.state.keys.signer(app.state.now_ms()).is_some());

    app.db
        .admin_execute(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while signing_keys::refresh(&app.state).await.is_err() {
        assert!(Instant::now() < deadline, "the keys are read again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kids(&app).await, before);
}

/// The active key and the next one retired at the same moment, from two
/// nodes, ten times over: the retirements are decided one after the other,
/// so one of them is refused (rotate first) and a key still signs.
async fn two_retirements_at_once_never_leave_no_key_that_signs(backend: Backend) {
    let app = spawn_app_with(backend, short).await;
    let sibling = app.spawn_sibling().await;
    for round in 0..10 {
        let next = signing_keys::rotate(&app.state, false).await.unwrap();
        let keys = signing_keys::list(&app.state).await.unwrap();
        let active = keys
            .iter()
            .find(|k| k.status.state == KeyState::Active)
            .expect("a key signs")
            .times
            .kid
            .clone();
        let (first, second) = tokio::join!(
            signing_keys::retire(&app.state, &active, false),
            signing_keys::retire(&sibling.state, &next.times.kid, false),
        );
        let refused = [first.is_err(), second.is_err()];
        assert_eq!(
            refused.iter().filter(|r| **r).count(),
            1,
            "round {round}: exactly one is refused: {first:?} / {second:?}"
        );
        let keys = signing_keys::list(&app.state).await.unwrap();
        assert_eq!(
            keys.iter()
                .filter(|k| k.status.state == KeyState::Active)
                .count(),
            1,
            "round {round}: one key signs after both"
        );
    }
}

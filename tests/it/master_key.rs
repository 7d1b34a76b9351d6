//! `stepgate keys rotate-master`: the TOTP secrets and signing keys sealed
//! again under a new master key while two nodes serve, no restart; a run
//! cut short resumes and seals nothing twice; a node opens what is sealed
//! under a key it loaded by its scan of `keys_dir`; a damaged key file
//! stops the command before any row changes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use stepgate::auth::totp::sealed;
use stepgate::clock::{Clock, FixedClock};
use stepgate::config::Settings;
use stepgate::keys::{self, SigningKey};
use stepgate::service::{signing_keys, totp as totp_service};
use stepgate::store::{signing_keys as signing_store, totp as totp_store};

use crate::accounts::{PASSWORD, sign_in};
use crate::helpers::{
    Backend, TestApp, spawn_app_with_clock, stderr, stdout, stepgate, write_config,
};
use crate::on_both_backends;
use crate::two_factor::{activate, base32_decode, totp_code};

on_both_backends!(
    rotation_while_two_nodes_serve_keeps_every_secret_and_key,
    an_interrupted_rotation_resumes_and_seals_nothing_twice,
    a_node_opens_values_sealed_under_a_key_it_loaded_by_its_scan,
    a_damaged_new_key_file_stops_the_rotation_and_changes_nothing,
);

/// Nodes scan keys_dir and read the signing keys every second, so the
/// rotation waits 1 + 2 s for them.
fn short(settings: &mut Settings) {
    settings.keys.refresh_secs = 1;
    settings.keys.publish_ahead_secs = 2;
}

const SHORT_TOML: &str = "[keys]\nrefresh_secs = 1\npublish_ahead_secs = 2\n";

/// A server on a fixed clock in the middle of a 30 s step (TOTP codes),
/// with the short key settings.
async fn spawn(backend: Backend) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let start = DateTime::from_timestamp(now - now % 30 + 10, 0).unwrap();
    let clock = FixedClock::new(start);
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), short).await;
    (app, clock)
}

/// Runs `stepgate keys rotate-master ARGS --json` on a blocking thread (the
/// servers of the test keep serving on the runtime meanwhile): the one
/// JSON object it prints, or its stderr.
async fn rotate_master(app: &TestApp, args: &[&str]) -> Result<Value, String> {
    let config = write_config(app.dir.path(), &app.db, SHORT_TOML);
    let mut all: Vec<String> = vec!["keys".into(), "rotate-master".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend([
        "--json".into(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        stepgate(&args, &[])
    })
    .await
    .unwrap();
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
    Ok(serde_json::from_str(text.trim()).expect("one JSON object"))
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("master"))
        .collect();
    names.sort();
    names
}

/// Waits until the node has loaded exactly the master keys `ids` (by its
/// scan of keys_dir); fails after 5 s.
async fn until_loaded(node: &TestApp, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let loaded = node.state.keys.masters().ids();
        if loaded == ids {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node still has {loaded:?}, not {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs in with the password and a TOTP code on `node`, as a person does.
async fn sign_in_with_code(node: &TestApp, email: &str, secret: &str) {
    let browser = node.browser();
    let login = browser.get("/login").await;
    let answer = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    assert_eq!(answer.headers["location"], "/login/2fa");
    let prompt = browser.follow(answer).await;
    let code = totp_code(secret, node.clock.now());
    let answer = browser
        .submit_raw(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SEE_OTHER,
        "the code signs in: {}",
        answer.html
    );
    let profile = browser.follow(answer).await;
    assert!(profile.contains("My profile"), "{}", profile.html);
}

/// A client_credentials access token from `node`: signed, with a kid the
/// node publishes.
async fn token_signs(node: &TestApp, client: &crate::oidc::TestClient) {
    let response = node
        .client
        .post(node.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    let token = json["access_token"].as_str().unwrap();
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap();
    assert!(
        node.state.keys.verifier(kid, node.state.now_ms()).is_some(),
        "signed with a published key"
    );
}

/// Every sealed row of the database, as stored.
async fn sealed_rows(app: &TestApp) -> Vec<String> {
    let db = &app.state.store.db;
    let mut rows: Vec<String> = signing_store::all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {} {}", r.kid, r.master_key_id, r.private_key_sealed))
        .collect();
    // Every credential and enrollment: none is under the prefix "-".
    for c in totp_store::credentials_not_under(db, "-", 1000)
        .await
        .unwrap()
    {
        rows.push(format!("{} {}", c.user_id, c.secret_sealed));
    }
    for e in totp_store::enrollments_not_under(db, "-", 1000)
        .await
        .unwrap()
    {
        rows.push(format!("{} {}", e.session_key, e.secret_sealed));
    }
    rows
}

/// Every row opens with the master keys now in keys_dir, and is sealed
/// under `id`: the signing keys parse to their kid, the TOTP secrets are
/// `secrets` (user id, base32).
async fn all_open_under(app: &TestApp, id: &str, secrets: &[(String, String)]) {
    let db = &app.state.store.db;
    let masters = keys::load_master_keys(&app.settings.keys_dir).unwrap();
    assert_eq!(masters.ids(), [id.to_owned()]);
    for row in signing_store::all(db).await.unwrap() {
        assert_eq!(row.master_key_id, id);
        let der = signing_keys::unseal(&masters, &row).unwrap();
        assert_eq!(SigningKey::from_pkcs8(&der).unwrap().kid, row.kid);
    }
    let credentials = totp_store::credentials_not_under(db, "-", 1000)
        .await
        .unwrap();
    assert_eq!(credentials.len(), secrets.len());
    for (user_id, secret) in secrets {
        let row = credentials.iter().find(|c| &c.user_id == user_id).unwrap();
        assert_eq!(sealed::key_id(&row.secret_sealed), Some(id));
        assert_eq!(
            totp_service::open_secret(&masters, user_id, &row.secret_sealed).unwrap(),
            base32_decode(secret),
            "opens once to the secret: sealed once"
        );
    }
}

async fn user_id(app: &TestApp, email: &str) -> String {
    stepgate::store::users::find_by_email(&app.state.store.db, email)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn rotation_while_two_nodes_serve_keeps_every_secret_and_key(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    let sibling = app.spawn_sibling().await;
    let original = app.state.keys.masters().ids();
    assert_eq!(original.len(), 1);
    let client = crate::oidc::register(&app, &["--grant-type", "client_credentials"]);

    app.create_user("ada@example.com", PASSWORD, true).await;
    let (secret, _) = activate(&app, &app.browser(), "ada@example.com").await;
    // Grace has started an activation, not confirmed it yet: a pending
    // secret, sealed too.
    app.create_user("grace@example.com", PASSWORD, true).await;
    let grace = sibling.browser();
    sign_in(&grace, "grace@example.com", PASSWORD).await;
    let pending = grace.get("/profile/2fa/activate").await;
    let grace_secret = pending.element_text("totp-secret").unwrap();

    // The rotation runs while both nodes answer token requests.
    let config_app = &app;
    let rotation = rotate_master(config_app, &[]);
    tokio::pin!(rotation);
    let mut served = 0;
    let rotated = loop {
        tokio::select! {
            done = &mut rotation => break done.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                token_signs(&app, &client).await;
                token_signs(&sibling, &client).await;
                served += 1;
            }
        }
    };
    assert!(served >= 5, "served throughout the wait ({served} rounds)");
    let new_id = rotated["master_key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, original[0]);
    assert_eq!(rotated["created"], true);
    assert_eq!(rotated["state"], "done");
    assert_eq!(
        rotated["resealed"],
        serde_json::json!({"signing_keys": 1, "totp_credentials": 1, "totp_enrollments": 1})
    );
    assert_eq!(
        rotated["left"],
        serde_json::json!({"signing_keys": 0, "totp_credentials": 0, "totp_enrollments": 0})
    );
    let keys_dir = &app.settings.keys_dir;
    let new_file = rotated["file"].as_str().unwrap();
    assert_eq!(
        rotated["retired_files"],
        serde_json::json!([keys_dir.join("master.key.retired").display().to_string()])
    );
    let new_name = Path::new(new_file).file_name().unwrap().to_str().unwrap();
    assert_eq!(files(keys_dir), [new_name, "master.key.retired"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(new_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Both nodes drop the retired key at their next scan, no restart.
    for node in [&app, &sibling] {
        until_loaded(node, std::slice::from_ref(&new_id)).await;
    }
    let ada = user_id(&app, "ada@example.com").await;
    all_open_under(&app, &new_id, &[(ada, secret.clone())]).await;

    // Ada signs in with a code on either node; Grace finishes her
    // activation; tokens still sign on both.
    clock.advance(chrono::Duration::seconds(30));
    sign_in_with_code(&app, "ada@example.com", &secret).await;
    clock.advance(chrono::Duration::seconds(30));
    sign_in_with_code(&sibling, "ada@example.com", &secret).await;
    // Her pending secret was re-sealed too: it opens under the new key.
    let grace_id = user_id(&app, "grace@example.com").await;
    let enrollments = totp_store::enrollments_not_under(&app.state.store.db, "-", 10)
        .await
        .unwrap();
    assert_eq!(enrollments.len(), 1);
    assert_eq!(
        sealed::key_id(&enrollments[0].secret_sealed),
        Some(new_id.as_str())
    );
    let masters = app.state.keys.masters();
    assert_eq!(
        totp_service::open_secret(&masters, &grace_id, &enrollments[0].secret_sealed).unwrap(),
        base32_decode(&grace_secret)
    );
    // Her page's CSRF token was signed under the retired key: posted now,
    // it is refused once (docs/operating.md, "The master key"); the page
    // shown again works.
    let code = totp_code(&grace_secret, clock.now());
    let stale = grace
        .submit_raw(&pending, "/profile/2fa/activate", &[("code", &code)])
        .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    let page = grace.get("/profile/2fa/activate").await;
    let fresh = page.element_text("totp-secret").unwrap();
    let code = totp_code(&fresh, clock.now());
    let done = grace
        .submit(&page, "/profile/2fa/activate", &[("code", &code)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(done.list_items("recovery-codes").len(), 10);
    for node in [&app, &sibling] {
        token_signs(node, &client).await;
    }
}

async fn an_interrupted_rotation_resumes_and_seals_nothing_twice(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let mut secrets = Vec::new();
    for email in [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ] {
        app.create_user(email, PASSWORD, true).await;
        let (secret, _) = activate(&app, &app.browser(), email).await;
        secrets.push((user_id(&app, email).await, secret));
    }
    // Five rows: one signing key, four TOTP secrets.
    let first = rotate_master(&app, &["--batch-size", "1", "--max-rows", "2"])
        .await
        .unwrap();
    assert_eq!(first["state"], "in_progress");
    assert_eq!(first["created"], true);
    let new_id = first["master_key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        first["resealed"],
        serde_json::json!({"signing_keys": 1, "totp_credentials": 1, "totp_enrollments": 0})
    );
    assert_eq!(first["left"]["totp_credentials"], 3);
    assert_eq!(first["retired_files"], serde_json::json!([]));
    let keys_dir = &app.settings.keys_dir;
    assert_eq!(
        files(keys_dir).len(),
        2,
        "both keys stay while rows are left"
    );
    // Meanwhile the node opens both kinds: the one re-sealed and the others.
    until_loaded(
        &app,
        &[app.state.keys.masters().ids()[0].clone(), new_id.clone()],
    )
    .await;
    let partial = sealed_rows(&app).await;
    assert_eq!(
        partial
            .iter()
            .filter(|r| r.contains(&sealed::tagged_prefix(&new_id)))
            .count(),
        1
    );

    // Two runs at once resume where it stopped (no new file, no wait: the
    // file is older than the wait) and race for the same rows; each
    // re-seals one. Three rows are left, so neither can finish, and neither
    // can find the old key retired by the other and start afresh.
    let (a, b) = tokio::join!(
        rotate_master(&app, &["--batch-size", "1", "--max-rows", "1"]),
        rotate_master(&app, &["--batch-size", "1", "--max-rows", "1"])
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for run in [&a, &b] {
        assert_eq!(run["created"], false);
        assert_eq!(run["master_key_id"], new_id.as_str());
        assert_eq!(run["resealed"]["totp_credentials"], 1, "{run}");
    }
    assert_eq!(
        (&a["state"], &b["state"]),
        (&"in_progress".into(), &"in_progress".into())
    );
    // A third run finishes the last row and retires the old key.
    let last = rotate_master(&app, &[]).await.unwrap();
    assert_eq!(last["created"], false);
    assert_eq!(last["master_key_id"], new_id.as_str());
    assert_eq!(last["resealed"]["totp_credentials"], 1, "{last}");
    assert_eq!(last["state"], "done");
    assert!(!keys_dir.join("master.key").exists());
    assert!(keys_dir.join("master.key.retired").exists());
    all_open_under(&app, &new_id, &secrets).await;

    // Once more: nothing left, so a new rotation starts.
    until_loaded(&app, std::slice::from_ref(&new_id)).await;
    let again = rotate_master(&app, &["--no-wait"]).await.unwrap();
    assert_eq!(again["created"], true);
    assert_ne!(again["master_key_id"], new_id.as_str());
    assert_eq!(again["state"], "done");
}

async fn a_node_opens_values_sealed_under_a_key_it_loaded_by_its_scan(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let (secret, _) = activate(&app, &app.browser(), "ada@example.com").await;
    let ada = user_id(&app, "ada@example.com").await;
    // A sign-in form rendered under the old key only.
    let early = app.browser();
    let early_form = early.get("/login").await;

    let new = keys::write_new_master(&app.settings.keys_dir, Utc::now()).unwrap();
    let new_id = new.key.id();
    let old_id = app.state.keys.masters().ids()[0].clone();
    until_loaded(&app, &[old_id.clone(), new_id.clone()]).await;
    assert_eq!(
        app.state.keys.masters().sealing().id(),
        new_id,
        "the newest seals"
    );

    // Ada's secret sealed under the new key, as a rotation would.
    let masters = keys::load_master_keys(&app.settings.keys_dir).unwrap();
    let row = totp_store::get(&app.state.store.db, &ada)
        .await
        .unwrap()
        .unwrap();
    let plain = totp_service::open_secret(&masters, &ada, &row.secret_sealed).unwrap();
    let resealed = totp_service::seal_secret(&masters, &ada, &plain);
    assert!(resealed.starts_with(&sealed::tagged_prefix(&new_id)));
    assert!(
        totp_store::reseal_credential(&app.state.store.db, &ada, &row.secret_sealed, &resealed)
            .await
            .unwrap()
    );
    assert!(
        !totp_store::reseal_credential(&app.state.store.db, &ada, &row.secret_sealed, "x")
            .await
            .unwrap(),
        "a row that changed is not overwritten"
    );
    clock.advance(chrono::Duration::seconds(30));
    sign_in_with_code(&app, "ada@example.com", &secret).await;

    // The form rendered before still posts (its CSRF token verifies with
    // the older key, still loaded).
    let answer = early
        .submit_raw(
            &early_form,
            "/login",
            &[
                ("email", "nobody@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_ne!(answer.status, StatusCode::FORBIDDEN, "{}", answer.html);

    // A new activation seals under the new key.
    app.create_user("grace@example.com", PASSWORD, true).await;
    let grace = app.browser();
    sign_in(&grace, "grace@example.com", PASSWORD).await;
    grace.get("/profile/2fa/activate").await;
    let pending = totp_store::enrollments_not_under(&app.state.store.db, "-", 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        sealed::key_id(&pending[0].secret_sealed),
        Some(new_id.as_str())
    );
}

async fn a_damaged_new_key_file_stops_the_rotation_and_changes_nothing(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let client = crate::oidc::register(&app, &["--grant-type", "client_credentials"]);
    app.create_user("ada@example.com", PASSWORD, true).await;
    activate(&app, &app.browser(), "ada@example.com").await;
    let before = sealed_rows(&app).await;
    let loaded = app.state.keys.masters().ids();

    // A rotation under way whose new file was damaged (truncated).
    let keys_dir = &app.settings.keys_dir;
    let damaged = keys_dir.join(format!("master-{}.key", Utc::now().timestamp_millis()));
    std::fs::write(&damaged, "dG9vIHNob3J0\n").unwrap();
    let refused = rotate_master(&app, &["--no-wait"]).await.unwrap_err();
    assert!(
        refused.contains(damaged.to_str().unwrap()),
        "names the file: {refused}"
    );
    assert!(
        refused.contains("32 bytes"),
        "says what is wrong: {refused}"
    );
    assert_eq!(sealed_rows(&app).await, before, "no row changed");
    assert_eq!(std::fs::read_to_string(&damaged).unwrap(), "dG9vIHNob3J0\n");
    assert!(keys_dir.join("master.key").exists());

    // The running node keeps the keys it had through its failing scans,
    // and serves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.state.keys.masters().ids(), loaded);
    token_signs(&app, &client).await;

    // A file name that is not master-<millis>.key is refused the same way.
    std::fs::remove_file(&damaged).unwrap();
    let misnamed = keys_dir.join("master-latest.key");
    std::fs::copy(keys_dir.join("master.key"), &misnamed).unwrap();
    let refused = rotate_master(&app, &["--no-wait"]).await.unwrap_err();
    assert!(refused.contains("master-latest.key"), "{refused}");
    assert_eq!(sealed_rows(&app).await, before, "no row changed");
}

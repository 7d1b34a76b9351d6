//! Signing keys across restarts, rotation and damage.

use serde_json::Value;

use crate::helpers::{
    Backend, TempDir, spawn_app, spawn_app_with, stderr, stdout, stepgate, write_config,
};
use crate::on_both_backends;

on_both_backends!(restart_keeps_the_same_kid, rotation_publishes_old_and_new);

async fn kids(app: &crate::helpers::TestApp) -> Vec<String> {
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn restart_keeps_the_same_kid(backend: Backend) {
    // A keys dir that starts empty: the first start creates the keys.
    let app = spawn_app_with(backend, |s| {
        s.keys_dir = s.keys_dir.with_file_name("fresh-keys");
    })
    .await;
    let first = kids(&app).await;
    assert_eq!(first.len(), 1);
    let keys_dir = app.settings.keys_dir.clone();
    let pem = std::fs::read_dir(&keys_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .expect("a signing key file");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pem).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "signing key is private to its owner");
    let master = keys_dir.join("master.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&master).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "master key is private to its owner");
    let master_before = std::fs::read(&master).unwrap();
    assert!(
        std::fs::read_to_string(&pem)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );

    let app = app.restart().await;
    assert_eq!(kids(&app).await, first);
    assert_eq!(std::fs::read(&master).unwrap(), master_before);
}

async fn rotation_publishes_old_and_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = kids(&app).await;
    let config = write_config(app.dir.path(), &app.db, "");
    let config = config.to_str().unwrap();

    let out = stepgate(&["keys", "rotate", "--json", "--config", config], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, before[0]);
    assert_eq!(rotated["published"], 2);

    // `--config` before the subcommand works the same.
    let out = stepgate(&["--config", config, "keys", "list", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let active: Vec<_> = keys.iter().filter(|k| k["active"] == true).collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["kid"], new_kid.as_str());

    // After a restart the JWKS publishes both, the new (active) one first.
    let app = app.restart().await;
    assert_eq!(kids(&app).await, vec![new_kid, before[0].clone()]);
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
    let file = list["keys"][0]["file"].as_str().unwrap().to_owned();

    let garbage = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
    std::fs::write(&file, garbage).unwrap();
    let out = stepgate(&["serve"], &env);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&file), "names the file: {err}");
    assert!(err.contains("not an RSA key"), "says what is wrong: {err}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "left untouched");
    let pems = std::fs::read_dir(&keys)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pem")
        })
        .count();
    assert_eq!(pems, 1, "no replacement key was created");

    // A damaged master key too.
    let master = keys.join("master.key");
    std::fs::write(&master, "too short\n").unwrap();
    let out = stepgate(&["keys", "list"], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("master.key"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&master).unwrap(), "too short\n");
}

//! The SQLite files on disk (issue 14, item 12): other local users cannot
//! read the database, which holds the password hashes.
//!
//! SQLite only: a PostgreSQL database has no file of ours, so this is a
//! plain test rather than one of `on_both_backends!`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::accounts::sign_up;
use crate::helpers::{Backend, spawn_app_with};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_database_is_private_to_its_owner() {
    let mut db_path = None;
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        // A directory two levels deep that does not exist yet.
        let path = settings
            .keys_dir
            .parent()
            .unwrap()
            .join("new")
            .join("data")
            .join("stepgate.db");
        settings.database_url = sqlite_url(&path);
        db_path = Some(path);
    })
    .await;
    let db = db_path.unwrap();
    // Writes through the server, so the WAL and its index are in use.
    sign_up(&app, &app.browser(), "ada@example.com").await;

    let data = db.parent().unwrap();
    assert_eq!(mode(data), 0o700, "the directory Stepgate created");
    assert_eq!(mode(data.parent().unwrap()), 0o700, "and its parent");
    assert_eq!(mode(&db), 0o600, "the database");
    for suffix in ["-wal", "-shm"] {
        let file = Path::new(&format!("{}{suffix}", db.display())).to_owned();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_keeps_its_mode() {
    let mut db_path = None;
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        let dir = settings.keys_dir.parent().unwrap().join("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        // An empty file is an empty SQLite database; the operator chose 0640.
        let path = dir.join("stepgate.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        settings.database_url = sqlite_url(&path);
        db_path = Some(path);
    })
    .await;
    let db = db_path.unwrap();
    sign_up(&app, &app.browser(), "ada@example.com").await;
    assert_eq!(mode(&db), 0o640);
    assert_eq!(mode(db.parent().unwrap()), 0o750);
}

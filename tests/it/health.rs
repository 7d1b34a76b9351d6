//! Liveness and readiness.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    health_and_readiness_answer,
    the_favicon_is_served_from_memory
);

async fn the_favicon_is_served_from_memory(backend: Backend) {
    let app = spawn_app(backend).await;
    let icon = app.get("/favicon.ico").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    let cache = icon.headers()["cache-control"].to_str().unwrap().to_owned();
    let max_age: u64 = cache
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a max-age: {cache}"));
    assert!(cache.contains("public"), "{cache}");
    assert!(max_age >= 86_400, "cached for a day at least: {cache}");
    let body = icon.text().await.unwrap();
    assert!(
        body.starts_with("<svg") && body.trim_end().ends_with("</svg>"),
        "{body}"
    );
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
}

/// `/readyz` turns 503 while the database refuses connections and 200 again
/// once it accepts them, without a restart. PostgreSQL only: the test cuts
/// the server's connections with `pg_terminate_backend` and blocks new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let app = spawn_app_with(backend, |s| s.database.connect_timeout_secs = 2).await;
    let (_, name) = app.db.postgres.clone().unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);

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
    let down = app.get("/readyz").await;
    assert_eq!(down.status(), 503);
    assert_eq!(
        down.json::<Value>().await.unwrap()["database"],
        "unreachable"
    );
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);

    app.db
        .admin_execute(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await;
    // The pool reconnects on the next request; allow it a few attempts.
    let mut status = 0;
    for _ in 0..20 {
        status = app.get("/readyz").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "readiness comes back with the database");
}

/// SQLite runs in WAL mode with foreign keys enforced and a busy timeout on
/// every pooled connection.
#[tokio::test]
async fn sqlite_connections_use_wal_and_foreign_keys() {
    use sea_orm::{ConnectionTrait, Statement};
    let dir = crate::helpers::TempDir::new();
    let db = Backend::Sqlite.create_database(dir.path()).await;
    let settings = crate::helpers::test_settings(dir.path(), &db);
    let conn = stepgate::store::connect(&settings).await.unwrap();
    let pragma = |name: &str| {
        let stmt = Statement::from_string(conn.get_database_backend(), format!("PRAGMA {name}"));
        let conn = conn.clone();
        async move {
            let row = conn.query_one_raw(stmt).await.unwrap().unwrap();
            row.try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                .unwrap()
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("foreign_keys").await, "1");
    assert_eq!(pragma("busy_timeout").await, "5000");
    assert_eq!(pragma("synchronous").await, "1", "NORMAL");

    // The query planner stability guarantee (store::sqlite_pool): a
    // prepared statement keeps its plan, so `LIMIT ?` does not make SQLite
    // compile it again on every call. On the pool and the writer's own.
    for db in [conn.clone(), stepgate::store::writer_connection(&conn)] {
        let mut pooled = db.get_sqlite_connection_pool().acquire().await.unwrap();
        let mut handle = pooled.lock_handle().await.unwrap();
        let mut enabled: std::ffi::c_int = -1;
        // SAFETY: the locked handle keeps the worker thread off this
        // connection; a negative value reads the setting without changing it.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as std::ffi::c_int,
                &mut enabled as *mut std::ffi::c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        assert_eq!(enabled, 1, "QPSG is on");
    }
}

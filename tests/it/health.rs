//! Liveness and readiness.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(health_and_readiness_answer);

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

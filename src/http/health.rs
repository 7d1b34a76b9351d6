//! Liveness and readiness for load balancers and orchestrators.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::service::health;
use crate::state::AppState;

/// The process is up and serving. Never touches the database, so a database
/// outage does not get healthy nodes restarted.
pub async fn healthz_get() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve requests: the database answers. 503 while it does not, and
/// 200 again as soon as it does (the pool reconnects by itself).
pub async fn readyz_get(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let limit = Duration::from_secs(state.settings.database.connect_timeout_secs.clamp(1, 5));
    match tokio::time::timeout(limit, health::database_answers(&state)).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": "ok" })),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            unavailable()
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            unavailable()
        }
    }
}

fn unavailable() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "database": "unreachable" })),
    )
}

//! What every handler can reach.

use std::sync::Arc;

use axum::body::Bytes;
use sea_orm::DatabaseConnection;

use crate::clock::Clock;
use crate::config::Settings;
use crate::keys::KeyStore;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub keys: Arc<KeyStore>,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// Documents that never change while the process runs, serialized once.
    pub documents: Arc<Documents>,
}

pub struct Documents {
    pub discovery: Bytes,
    pub jwks: Bytes,
}

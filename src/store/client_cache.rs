//! Clients read for client authentication, kept in memory for
//! `oauth.client_cache_secs` so the token endpoint does not read the
//! registry on every request (`service::clients::authenticate` decides
//! what a cached entry may answer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::protocol::client_metadata::Client;

/// A client as read for authentication, with its secret's hash.
pub struct CachedClient {
    pub secret_hash: Option<String>,
    pub client: Arc<Client>,
}

/// Clients read for client authentication, kept `oauth.client_cache_secs`
/// (docs/operating.md, "Several nodes": a node's state is only caches that
/// may be lost). Only
/// clients that exist are kept, so unknown ids cannot grow it; it is bounded
/// anyway and starts over when full.
pub struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<CachedClient>)>>,
}

impl ClientCache {
    const MAX_ENTRIES: usize = 10_000;

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<CachedClient>)>> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters: every entry is replaced whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, client_id: &str) -> Option<Arc<CachedClient>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.lock();
        let (read_at, cached) = entries.get(client_id)?;
        (read_at.elapsed() < self.ttl).then(|| cached.clone())
    }

    pub fn put(&self, client_id: &str, cached: CachedClient) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(client_id) {
            entries.clear();
        }
        entries.insert(client_id.to_owned(), (Instant::now(), Arc::new(cached)));
    }

    pub fn forget(&self, client_id: &str) {
        self.lock().remove(client_id);
    }
}

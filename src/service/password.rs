//! argon2id on a bounded blocking pool: at most `hash_concurrency` hashes run
//! at once on tokio's blocking threads, the rest wait their turn without
//! holding a thread, so a sign-in storm never stalls the async runtime.

use std::sync::Arc;

use tokio::sync::{OnceCell, Semaphore};

use crate::auth::password::{hash_password, verify_password};
use crate::config::PasswordSettings;

pub struct Hasher {
    permits: Arc<Semaphore>,
    settings: PasswordSettings,
    /// A hash of a random password, verified against when an email is
    /// unknown so that the answer takes as long as for a known one.
    dummy: OnceCell<String>,
}

impl Hasher {
    pub fn new(settings: &PasswordSettings) -> Self {
        let concurrency = match settings.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            settings: settings.clone(),
            dummy: OnceCell::new(),
        }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the hasher's semaphore is never closed");
        tokio::task::spawn_blocking(work)
            .await
            .expect("argon2 does not panic on valid parameters")
    }

    pub async fn hash(&self, password: String) -> String {
        let settings = self.settings.clone();
        self.run(move || hash_password(&password, &settings)).await
    }

    pub async fn verify(&self, password: String, hash: String) -> bool {
        self.run(move || verify_password(&password, &hash)).await
    }

    /// Spends the time of one verification and always fails.
    pub async fn verify_dummy(&self, password: String) -> bool {
        let dummy = self
            .dummy
            .get_or_init(|| self.hash(crate::crypto::random_token()))
            .await
            .clone();
        let _ = self.verify(password, dummy).await;
        false
    }
}

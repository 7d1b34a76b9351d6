//! argon2id on a few dedicated threads: at most `hash_concurrency` hashes run
//! at once, the rest wait in a queue without holding a thread, so a sign-in
//! storm never stalls the async runtime.
//!
//! The hashing threads run at a lower CPU priority (nice +10, Linux applies
//! it per thread): argon2id is slow on purpose and would otherwise take an
//! equal share of a busy core from the threads answering requests. With it,
//! a sign-in storm leaves the token endpoint ~90% of a contended core
//! (docs/performance.md, scenario 7) while sign-ins still progress: a nice
//! level lowers a share, it never starves. Fixed threads also keep argon2's
//! 19 MiB working memory in one allocator arena per thread instead of one
//! per tokio blocking thread it happened to land on (peak RSS 419 MB → see
//! docs/performance.md).

use std::sync::Mutex;
use std::sync::mpsc;

use tokio::sync::{OnceCell, oneshot};

use crate::auth::password::{hash_password, verify_password};
use crate::config::PasswordSettings;

/// The nice level of the hashing threads (0 normal, 19 lowest).
const HASH_THREAD_NICE: libc::c_int = 10;

type Job = Box<dyn FnOnce() + Send>;

pub struct Hasher {
    /// The queue the hashing threads take work from; they end when it is
    /// dropped with the hasher.
    jobs: Mutex<mpsc::Sender<Job>>,
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
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for i in 0..concurrency {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match receiver.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job drops its answer channel (its
                            // caller sees the panic); the thread carries on.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("a hashing thread starts");
        }
        Self {
            jobs: Mutex::new(sender),
            settings: settings.clone(),
            dummy: OnceCell::new(),
        }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .lock()
            .expect("the hasher's queue lock is never poisoned")
            .send(job)
            .expect("the hashing threads live as long as the hasher");
        result
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

/// nice +10 for the calling thread only (on Linux `setpriority` with a
/// thread id affects just that thread). Best effort: hashing works without it.
#[allow(unsafe_code)] // two FFI calls, SAFETY below
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority only reads its
    // arguments, and a failure is reported through the return value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASH_THREAD_NICE);
    }
}

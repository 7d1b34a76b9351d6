//! The one gate in front of every check of something a person knows or
//! holds: a password (sign-in, 2FA deactivation, any re-authentication) and
//! a second factor (TOTP codes, recovery codes, the fresh-factor prompts).
//!
//! [`attempt`] claims the attempt in the database first
//! (`store::login_throttle::claim`) and only then runs the verification, so
//! a burst of attempts in flight together, on any number of nodes, gets no
//! more verifications than the policy allows (NIST SP 800-63B §5.2.2; OWASP
//! Authentication Cheat Sheet, "Account lockout"). A locked counter never
//! runs the verification at all: the right answer is refused too until the
//! lock ends.

use std::future::Future;

use crate::auth::throttle::ThrottlePolicy;
use crate::service::accounts::AccountError;
use crate::state::AppState;
use crate::store::{login_throttle, users};

/// A run of consecutive failures, counted under one key with one policy.
#[derive(Debug, Clone)]
pub struct Counter {
    key: String,
    policy: ThrottlePolicy,
}

impl Counter {
    /// Passwords, per email: an HMAC of the normalized address, so the table
    /// holds no addresses and unknown emails are counted like known ones.
    pub fn password(state: &AppState, email: &str) -> Self {
        let s = &state.settings.login;
        Self {
            key: state
                .throttle_key
                .sign(users::normalize_email(email).as_bytes()),
            policy: ThrottlePolicy {
                free_failures: s.free_failures,
                base_delay_secs: s.base_delay_secs,
                max_delay_secs: s.max_delay_secs,
            },
        }
    }

    /// Second factors, per user: every code, recovery code and fresh-factor
    /// prompt shares one count, apart from the password's.
    pub fn second_factor(state: &AppState, user_id: &str) -> Self {
        let t = &state.settings.totp;
        Self {
            key: format!("otp:{user_id}"),
            policy: ThrottlePolicy {
                free_failures: t.free_failures,
                base_delay_secs: t.base_delay_secs,
                max_delay_secs: t.max_delay_secs,
            },
        }
    }

    /// Ends the run without an attempt (a password reset, 2FA removed).
    pub async fn reset(&self, state: &AppState) -> Result<(), AccountError> {
        login_throttle::clear(&state.db, &self.key).await?;
        Ok(())
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Verified; the run of failures is over.
    Passed(T),
    /// Verified and wrong. `failures` counts the run so far; `lock_secs` is
    /// the lock this failure began, if it began one.
    Failed {
        failures: u32,
        lock_secs: Option<u64>,
    },
    /// Refused unverified: a lock holds for `retry_after_secs` more.
    Locked { retry_after_secs: u64 },
}

impl<T> Outcome<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Passed(value) => Outcome::Passed(f(value)),
            Outcome::Failed {
                failures,
                lock_secs,
            } => Outcome::Failed {
                failures,
                lock_secs,
            },
            Outcome::Locked { retry_after_secs } => Outcome::Locked { retry_after_secs },
        }
    }
}

/// Claims an attempt on `counter`, then runs `verify` (which answers
/// `Some` when the secret was right). `verify` is not polled when the claim
/// is refused, so a locked attempt costs no argon2 and touches nothing. An
/// error inside `verify` leaves the attempt counted: failing closed.
pub async fn attempt<T>(
    state: &AppState,
    counter: &Counter,
    verify: impl Future<Output = Result<Option<T>, AccountError>>,
) -> Result<Outcome<T>, AccountError> {
    let now = state.clock.now().timestamp();
    match login_throttle::claim(&state.db, &counter.key, now, &counter.policy).await? {
        login_throttle::Claimed::Locked { retry_after_secs } => {
            Ok(Outcome::Locked { retry_after_secs })
        }
        login_throttle::Claimed::Open {
            failures,
            lock_secs,
        } => match verify.await? {
            Some(value) => {
                login_throttle::clear(&state.db, &counter.key).await?;
                Ok(Outcome::Passed(value))
            }
            None => Ok(Outcome::Failed {
                failures,
                lock_secs,
            }),
        },
    }
}

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
use crate::service::Error;
use crate::service::limits::{self, Action, Limit};
use crate::state::AppState;
use crate::store::{login_throttle, users};

/// A run of consecutive failures, counted under one key with one policy.
#[derive(Debug, Clone)]
pub struct Counter {
    key: String,
    policy: ThrottlePolicy,
    /// Windows every failure also counts in (`service::limits`); a success
    /// takes its event back from each.
    limits: Vec<Limit>,
}

/// The throttle key of an email: an HMAC of the normalized address.
fn email_key(state: &AppState, email: &str) -> String {
    state
        .throttle_key()
        .sign(users::normalize_email(email).as_bytes())
}

impl Counter {
    /// Passwords, per email *and client address* (`ip`, an IPv6 /64): an
    /// HMAC of the normalized email, so the table holds no addresses and
    /// unknown emails are counted like known ones, then `@` and the
    /// address. Failures from one source lock that source out of the
    /// account, not the owner elsewhere (OWASP Authentication Cheat Sheet,
    /// "Account lockout"). Each failure also counts against the address's
    /// hourly budget over all accounts (password spraying) and the
    /// account's hourly budget over all addresses (many sources at once).
    pub fn password(state: &AppState, email: &str, ip: Option<&str>) -> Self {
        let s = &state.settings.login;
        let email_key = email_key(state, email);
        Self {
            key: format!("{email_key}@{}", limits::address_bucket(ip)),
            policy: ThrottlePolicy {
                free_failures: s.free_failures,
                base_delay_secs: s.base_delay_secs,
                max_delay_secs: s.max_delay_secs,
            },
            limits: vec![
                Limit::per_address(state, Action::PasswordFailure, ip),
                Limit::account_password_failures(state, &email_key),
            ],
        }
    }

    /// Ends every run of password failures of `email`, from every address,
    /// and its hourly budget (a password reset).
    pub async fn reset_password(state: &AppState, email: &str) -> Result<(), Error> {
        let email_key = email_key(state, email);
        login_throttle::clear_prefix(&state.store.db, &format!("{email_key}@")).await?;
        Limit::account_password_failures(state, &email_key)
            .clear(state)
            .await
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
            limits: Vec::new(),
        }
    }

    /// Ends the run without an attempt (a password reset, 2FA removed).
    pub async fn reset(&self, state: &AppState) -> Result<(), Error> {
        login_throttle::clear(&state.store.db, &self.key).await?;
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
    verify: impl Future<Output = Result<Option<T>, Error>>,
) -> Result<Outcome<T>, Error> {
    // The windows first: a full one refuses before anything else counts.
    if let Err(limited) = limits::hit_all(state, &counter.limits).await? {
        return Ok(Outcome::Locked {
            retry_after_secs: limited.retry_after_secs,
        });
    }
    let now = state.now();
    match login_throttle::claim(&state.store.db, &counter.key, now, &counter.policy).await? {
        login_throttle::Claimed::Locked { retry_after_secs } => {
            // Not verified, so no failure in the windows either.
            limits::refund_all(state, &counter.limits).await?;
            Ok(Outcome::Locked { retry_after_secs })
        }
        login_throttle::Claimed::Open {
            failures,
            lock_secs,
        } => match verify.await? {
            Some(value) => {
                login_throttle::clear(&state.store.db, &counter.key).await?;
                limits::refund_all(state, &counter.limits).await?;
                Ok(Outcome::Passed(value))
            }
            None => Ok(Outcome::Failed {
                failures,
                lock_secs,
            }),
        },
    }
}

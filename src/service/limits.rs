//! Limits per client address, beside the per-account throttle (audit issue
//! 14, item 11; OWASP Authentication Cheat Sheet, "Account lockout" and
//! "Login throttling"): one source can neither spray a password across many
//! accounts nor flood sign-up and mail forms, and a lockout it causes stays
//! with it (the password throttle is keyed by account *and* address, see
//! `attempts::Counter::password`), while a budget per account bounds what
//! many addresses together can try.
//!
//! Each limit is a fixed window of [`WINDOW_SECS`] counted in the database
//! (`store::rate_limits`), so it holds across nodes and under bursts.

use std::net::{IpAddr, Ipv6Addr};

use crate::service::Error;
use crate::state::AppState;
use crate::store::rate_limits::{self, Hit};

/// Every per-address and per-account window is an hour.
pub const WINDOW_SECS: i64 = 3600;

/// The source a limit counts: an IPv4 address as it is, an IPv6 address by
/// its /64 (one subscriber usually holds a whole /64, RFC 6177), and
/// requests with no known address together.
pub fn address_bucket(ip: Option<&str>) -> String {
    match ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        None => "unknown".to_owned(),
    }
}

/// What is counted per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A wrong password (sign-in or re-authentication), any account.
    PasswordFailure,
    SignUp,
    PasswordResetRequest,
    ConfirmationResend,
    /// A client that failed to authenticate at `/token`, `/introspect` or
    /// `/revoke`.
    ClientAuthFailure,
    /// A refused passkey ceremony (a bad assertion, a reused challenge, ...).
    PasskeyFailure,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::PasswordFailure => "pwd",
            Action::SignUp => "signup",
            Action::PasswordResetRequest => "reset",
            Action::ConfirmationResend => "resend",
            Action::ClientAuthFailure => "client",
            Action::PasskeyFailure => "passkey",
        }
    }
}

/// One window: a key and how many events it lets through per hour.
#[derive(Debug, Clone)]
pub struct Limit {
    key: String,
    per_hour: u32,
}

/// The window is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

impl Limit {
    /// `action` from the address `ip`.
    pub fn per_address(state: &AppState, action: Action, ip: Option<&str>) -> Self {
        let s = &state.settings;
        let per_hour = match action {
            Action::PasswordFailure | Action::PasskeyFailure => s.login.address_failures_per_hour,
            Action::SignUp | Action::PasswordResetRequest | Action::ConfirmationResend => {
                s.account.address_requests_per_hour
            }
            Action::ClientAuthFailure => s.oauth.address_client_auth_failures_per_hour,
        };
        Self {
            key: format!("ip:{}:{}", action.name(), address_bucket(ip)),
            per_hour,
        }
    }

    /// Wrong passwords for one account from every address together; keyed
    /// like the throttle (an HMAC of the address, no email in the table).
    pub fn account_password_failures(state: &AppState, email_key: &str) -> Self {
        Self {
            key: format!("acct:{email_key}"),
            per_hour: state.settings.login.account_failures_per_hour,
        }
    }

    /// Emails a request can trigger, to one address: keyed by an HMAC of
    /// the normalized address, so the table holds no addresses.
    pub fn per_recipient(state: &AppState, email: &str) -> Self {
        let key = state
            .throttle_key()
            .sign(crate::store::users::normalize_email(email).as_bytes());
        Self {
            key: format!("mail:{key}"),
            per_hour: state.settings.email.address_mails_per_hour,
        }
    }

    /// Counts one event, unless the window is full.
    pub async fn hit(&self, state: &AppState) -> Result<Result<(), Limited>, Error> {
        let now = state.now();
        Ok(
            match rate_limits::hit(&state.store.db, &self.key, now, WINDOW_SECS, self.per_hour)
                .await?
            {
                Hit::Counted { .. } => Ok(()),
                Hit::Limited { retry_after_secs } => Err(Limited { retry_after_secs }),
            },
        )
    }

    /// Whether the window is full, counting nothing.
    pub async fn check(&self, state: &AppState) -> Result<Result<(), Limited>, Error> {
        let now = state.now();
        Ok(
            match rate_limits::full(&state.store.db, &self.key, now, WINDOW_SECS, self.per_hour)
                .await?
            {
                None => Ok(()),
                Some(retry_after_secs) => Err(Limited { retry_after_secs }),
            },
        )
    }

    /// Takes back the event [`Limit::hit`] counted (it was no failure).
    pub async fn refund(&self, state: &AppState) -> Result<(), Error> {
        rate_limits::refund(&state.store.db, &self.key).await?;
        Ok(())
    }

    /// Forgets the window (a password reset ends an account's failures).
    pub async fn clear(&self, state: &AppState) -> Result<(), Error> {
        rate_limits::clear(&state.store.db, &self.key).await?;
        Ok(())
    }
}

/// Hits every limit in order; when one is full, refunds those already hit
/// and answers the wait.
pub async fn hit_all(state: &AppState, limits: &[Limit]) -> Result<Result<(), Limited>, Error> {
    for (i, limit) in limits.iter().enumerate() {
        if let Err(limited) = limit.hit(state).await? {
            for earlier in &limits[..i] {
                earlier.refund(state).await?;
            }
            return Ok(Err(limited));
        }
    }
    Ok(Ok(()))
}

/// Refunds every limit (the attempt they counted succeeded, or never ran).
pub async fn refund_all(state: &AppState, limits: &[Limit]) -> Result<(), Error> {
    for limit in limits {
        limit.refund(state).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_grouped_by_source() {
        assert_eq!(address_bucket(Some("203.0.113.7")), "203.0.113.7");
        assert_eq!(address_bucket(Some("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(
            address_bucket(Some("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            address_bucket(Some("2001:db8:1:2:ffff::9")),
            address_bucket(Some("2001:db8:1:2::1"))
        );
        assert_ne!(
            address_bucket(Some("2001:db8:1:3::1")),
            address_bucket(Some("2001:db8:1:2::1"))
        );
        assert_eq!(address_bucket(None), "unknown");
        assert_eq!(address_bucket(Some("not an address")), "unknown");
    }
}

//! The second factor, in one place: whether a user has one enrolled,
//! whether a session still owes one, and whether a grant that rested on
//! one still stands. Every caller asks here; a new factor (passkeys) is
//! added here and in `auth::factor`, and its ceremonies in its own
//! service (`service::passkeys`).

use crate::auth::factor::{Acr, Factor, Factors};
use crate::protocol::interaction::Owed;
use crate::service::Error;
use crate::service::accounts::LiveSession;
use crate::service::totp;
use crate::state::AppState;
use crate::store;
use crate::store::entities::sessions::Model as Session;

/// Whether the user has a second factor to be asked for: TOTP, or a
/// passkey.
pub async fn enrolled(state: &AppState, user_id: &str) -> Result<bool, Error> {
    Ok(totp::is_enabled(state, user_id).await? || has_passkey(state, user_id).await?)
}

/// Whether the user has a passkey registered.
pub async fn has_passkey(state: &AppState, user_id: &str) -> Result<bool, Error> {
    Ok(store::passkeys::count(&state.store.db, user_id).await? > 0)
}

/// Whether the session owes a factor to sign in to `client` with
/// `acr_values` (OpenID Connect Core §3.1.2.1, honoured as required: the
/// weakest value listed, `auth::factor::Acr::demanded`):
/// - phr demanded and no passkey in this session: a passkey, never a code
///   instead (it is not phishing-resistant). The user's own passkey when
///   there is one; else a new one, after the code of a user with TOTP
///   (registration needs a fresh second factor); unmeetable where
///   passkeys are not offered (an issuer without a host name);
/// - otherwise nothing once a second factor was passed; else the user's
///   second factor when there is one (it is always asked), or a new one
///   when the client requires one (`require_mfa`) or mfa is demanded.
pub async fn owed(
    state: &AppState,
    session: &Session,
    require_mfa: bool,
    acr_values: &[String],
) -> Result<Option<Owed>, Error> {
    let factors = session.factors();
    let demanded = Acr::demanded(acr_values);
    if demanded == Some(Acr::Phr) && factors.acr() < Acr::Phr {
        if state.webauthn.is_none() {
            return Ok(Some(Owed::Unmeetable));
        }
        if has_passkey(state, &session.user_id).await? {
            return Ok(Some(Owed::Passkey));
        }
        if !factors.has_second_factor() && totp::is_enabled(state, &session.user_id).await? {
            return Ok(Some(Owed::Challenge));
        }
        return Ok(Some(Owed::EnrollPasskey));
    }
    if factors.has_second_factor() {
        return Ok(None);
    }
    if enrolled(state, &session.user_id).await? {
        return Ok(Some(Owed::Challenge));
    }
    let demanded = require_mfa || demanded == Some(Acr::Mfa);
    Ok(demanded.then_some(Owed::Enroll))
}

/// Whether the session passed a second factor (a code, a passkey).
pub fn session_has_second_factor(who: &LiveSession) -> bool {
    who.session.factors().has_second_factor()
}

/// Whether the session owes its user's second factor before the user's
/// own pages open (no client involved: only an enrolled factor is owed).
pub async fn owed_for_account(state: &AppState, who: &LiveSession) -> Result<bool, Error> {
    let session = &who.session;
    Ok(!session.factors().has_second_factor() && enrolled(state, &session.user_id).await?)
}

/// Whether a grant whose sign-in proved `amr` at `at` still stands: one
/// that rested on a one-time password ends when the user's TOTP was reset
/// or turned off after it, and one that rested on a passkey ("pop") when
/// the user has no passkey left from before it (the factor it proved no
/// longer exists).
pub async fn grant_still_stands(
    state: &AppState,
    user_id: &str,
    amr: &[String],
    at: i64,
) -> Result<bool, Error> {
    if amr.iter().any(|m| m == "otp") {
        let credential = store::totp::get(&state.store.db, user_id).await?;
        if !credential.is_some_and(|c| c.enabled && c.enabled_at.is_some_and(|since| since <= at)) {
            return Ok(false);
        }
    }
    if amr.iter().any(|m| m == "pop") {
        return Ok(store::passkeys::has_one_since(&state.store.db, user_id, at).await?);
    }
    Ok(true)
}

/// Whether a factor proved at `at` still counts as recent.
fn is_fresh(at: Option<i64>, now: i64, fresh_secs: u64) -> bool {
    at.is_some_and(|at| now.saturating_sub(at) <= fresh_secs as i64)
}

/// What a sensitive change on this session (a new API key, a new passkey)
/// must ask for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reauth {
    /// The user has a second factor (a code, a passkey) and the session
    /// passed none within `session.mfa_fresh_secs`.
    SecondFactor,
    /// The user has no second factor and the session has not proved the
    /// password within `session.mfa_fresh_secs`.
    Password,
}

/// Whether binding a new credential (an API key, a passkey) on this session
/// must first ask for a second factor or the password: a stolen, still-open
/// session must not be able to mint a long-lived credential without the
/// phone or passkey, or without the password when there is neither (OWASP ASVS 2.5.7 / NIST SP 800-63B §6.1.2.1: proof of
/// an authenticator before binding a new one).
pub async fn reauth_needed(state: &AppState, who: &LiveSession) -> Result<Option<Reauth>, Error> {
    let session = &who.session;
    let now = state.now();
    let fresh_secs = state.settings.session.mfa_fresh_secs;
    if enrolled(state, &session.user_id).await? {
        return Ok((!is_fresh(session.mfa_at, now, fresh_secs)).then_some(Reauth::SecondFactor));
    }
    Ok((!is_fresh(Some(session.pwd_at), now, fresh_secs)).then_some(Reauth::Password))
}

/// The factors of a session that passed the password only.
pub fn password_only() -> Factors {
    Factors::of(Factor::Password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_factor_is_fresh_for_the_configured_time() {
        assert!(is_fresh(Some(1000), 1300, 300));
        assert!(!is_fresh(Some(1000), 1301, 300));
        assert!(!is_fresh(None, 1000, 300));
    }
}

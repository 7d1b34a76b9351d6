//! The second factor, in one place: whether a user has one enrolled,
//! whether a session still owes one, and whether a grant that rested on
//! one still stands. Every caller asks here; a new factor (passkeys) is
//! added here and in `auth::factor`, nowhere else.

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
/// - phr demanded and no passkey in this session: unmeetable for now
///   (never a code instead: it is not phishing-resistant);
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
        // No passkey ceremony is served yet (issue 16 in progress: the
        // ceremonies will ask for a passkey, or for a new one, here), so
        // phr cannot be met: refused, never given without one.
        return Ok(Some(Owed::Unmeetable));
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

/// The factors of a session that passed the password only.
pub fn password_only() -> Factors {
    Factors::of(Factor::Password)
}

//! The second factor, in one place: whether a user has one enrolled,
//! whether a session still owes one, and whether a grant that rested on
//! one still stands. Every caller asks here; a new factor (passkeys) is
//! added here and in `auth::factor`, nowhere else.

use crate::auth::factor::{ACR_MFA, Factors};
use crate::protocol::interaction::Owed;
use crate::service::Error;
use crate::service::accounts::LiveSession;
use crate::service::totp;
use crate::state::AppState;
use crate::store;
use crate::store::entities::sessions::Model as Session;

/// Whether the user has a second factor to be asked for (TOTP today).
pub async fn enrolled(state: &AppState, user_id: &str) -> Result<bool, Error> {
    totp::is_enabled(state, user_id).await
}

/// Whether the session owes a second factor to sign in to `client` with
/// `acr_values`: not when it passed one already; else when the user has
/// one (it is always asked), or when the client requires one
/// (`require_mfa`) or the request asks for the MFA `acr` (OpenID Connect
/// Core §3.1.2.1 `acr_values`, honoured as required).
pub async fn owed(
    state: &AppState,
    session: &Session,
    require_mfa: bool,
    acr_values: &[String],
) -> Result<Option<Owed>, Error> {
    if session.factors().has_second_factor() {
        return Ok(None);
    }
    if enrolled(state, &session.user_id).await? {
        return Ok(Some(Owed::Challenge));
    }
    let demanded = require_mfa || acr_values.iter().any(|v| v == ACR_MFA);
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
/// or turned off after it (the factor it proved no longer exists).
pub async fn grant_still_stands(
    state: &AppState,
    user_id: &str,
    amr: &[String],
    at: i64,
) -> Result<bool, Error> {
    if !amr.iter().any(|m| m == "otp") {
        return Ok(true);
    }
    let credential = store::totp::get(&state.store.db, user_id).await?;
    Ok(credential.is_some_and(|c| c.enabled && c.enabled_at.is_some_and(|since| since <= at)))
}

/// The factors of a session that passed the password only.
pub fn password_only() -> Factors {
    Factors::of(crate::auth::factor::Factor::Password)
}

//! Two-factor authentication: activation by QR code, the code check with
//! replay protection and throttling, recovery codes, deactivation.
//!
//! Every check of a code goes through `check_code`: the attempt is claimed
//! on the user's second-factor counter first (`service::attempts`: a locked
//! user is refused even a valid code, and a burst gets no more checks than
//! the limit), then the code, then the atomic acceptance of its time-step
//! (or of the recovery code) in the database.

use crate::auth::factor::Factor;
use crate::auth::totp::{self, TotpParams, sealed};
use crate::crypto::{PurposeKey, sha256_hex};
use crate::keys::{MasterKey, MasterKeys};
use crate::service::Error;
use crate::service::accounts::{self, LiveSession, ReauthError, ReauthFor};
use crate::service::attempts::{self, Counter, Outcome};
use crate::state::AppState;
use crate::store::audit::{self, AuditEvent, Kind, Outcome as AuditOutcome};
use crate::store::entities::sessions::Model as Session;
use crate::store::entities::totp_credentials::Model as Credential;
use crate::store::entities::users::Model as User;
use crate::store::{recovery_codes, sessions, totp as store, users};

/// The key that seals TOTP secrets under one master key: derived from it
/// for this one purpose, so no other use of the master key can decrypt them.
fn sealing_key(master: &MasterKey) -> [u8; 32] {
    let derived = PurposeKey::derive(master.bytes(), "stepgate/totp-secret/v1");
    let tag = derived.sign(b"aes-256-gcm");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, tag)
        .expect("an HMAC tag is valid base64url");
    bytes.try_into().expect("HMAC-SHA256 is 32 bytes")
}

/// Seals a TOTP secret of `owner` under the newest master key: in the `v1.`
/// form while that is `master.key` (what versions before rotation read),
/// else in the `v2.<id>.` form that names the key (docs/operating.md, "The
/// master key").
pub fn seal_secret(masters: &MasterKeys, owner: &str, secret: &[u8]) -> String {
    let newest = masters.newest();
    let key = sealing_key(&newest.key);
    if newest.is_original() {
        sealed::seal(&key, owner, secret)
    } else {
        sealed::seal_tagged(&key, &newest.key.id(), owner, secret)
    }
}

/// Opens a sealed TOTP secret: a `v2.` value with the key it names, a `v1.`
/// value with whichever loaded key opens it. `None` when none does.
pub fn open_secret(masters: &MasterKeys, owner: &str, value: &str) -> Option<Vec<u8>> {
    match sealed::key_id(value) {
        Some(id) => sealed::open(&sealing_key(masters.get(id)?), owner, value),
        None => masters
            .newest_first()
            .find_map(|master| sealed::open(&sealing_key(master), owner, value)),
    }
}

async fn audit(
    state: &AppState,
    kind: Kind,
    outcome: AuditOutcome,
    user_id: &str,
    ip: Option<&str>,
    detail: Option<&str>,
) -> Result<(), Error> {
    audit::record(
        &state.store.appender,
        AuditEvent {
            kind,
            outcome,
            user_id: Some(user_id),
            client_id: None,
            ip,
            detail,
        },
        state.now(),
    )
    .await?;
    Ok(())
}

/// Queues a two-factor notice to the user (`service::mail`).
async fn notify(state: &AppState, user: &User, subject: &str, text: String) -> Result<(), Error> {
    crate::service::mail::notice(state, &user.email, subject.to_owned(), text).await
}

/// What the activation page shows.
pub struct Activation {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

/// Whether the user has two-factor authentication on.
pub async fn is_enabled(state: &AppState, user_id: &str) -> Result<bool, Error> {
    Ok(store::is_enabled(&state.store.db, user_id).await?)
}

/// How long a pending secret can be confirmed: long enough to scan the QR
/// code and type a code, short enough that a forgotten one dies soon.
pub const ENROLLMENT_TTL_SECS: i64 = 600;

/// The pending secret's key: the session's public `sid`, which survives the
/// renewal of the session id and dies with the session.
fn enrollment_key(session: &Session) -> String {
    session
        .sid
        .clone()
        .unwrap_or_else(|| format!("session:{}", session.id_hash))
}

/// Forgets the activation a session had under way (it is ending).
pub async fn forget_activation(state: &AppState, session: &Session) -> Result<(), Error> {
    store::delete_enrollment(&state.store.db, &enrollment_key(session)).await?;
    Ok(())
}

/// Starts activation on this session: a fresh 160-bit secret, sealed and
/// kept server-side for this session only, for `ENROLLMENT_TTL_SECS`. No
/// other session sees it or can confirm it, and starting again replaces it.
/// `None` when 2FA is already on.
pub async fn begin_activation(
    state: &AppState,
    who: &LiveSession,
) -> Result<Option<Activation>, Error> {
    let (user, session) = (&who.user, &who.session);
    if store::is_enabled(&state.store.db, &user.id).await? {
        return Ok(None);
    }
    let params = state.settings.totp.params();
    let secret = totp::generate_secret();
    let now = state.now();
    store::put_enrollment(
        &state.store.db,
        store::NewEnrollment {
            session_key: &enrollment_key(session),
            user_id: &user.id,
            secret_sealed: &seal_secret(&state.keys.masters(), &user.id, &secret),
            params: &params,
            now,
            expires_at: now + ENROLLMENT_TTL_SECS,
        },
    )
    .await?;
    Ok(Some(activation(state, user, &secret, &params)))
}

/// The activation this session has under way (to show it again after a
/// wrong code), or a fresh one when it has none or it expired.
pub async fn current_activation(
    state: &AppState,
    who: &LiveSession,
) -> Result<Option<Activation>, Error> {
    let (user, session) = (&who.user, &who.session);
    let live = store::live_enrollment(
        &state.store.db,
        &enrollment_key(session),
        &user.id,
        state.now(),
    )
    .await?;
    if let Some(enrollment) = live
        && let (Some(secret), Some(params)) = (
            open_secret(&state.keys.masters(), &user.id, &enrollment.secret_sealed),
            store::enrollment_params(&enrollment, state.settings.totp.skew),
        )
    {
        return Ok(Some(activation(state, user, &secret, &params)));
    }
    begin_activation(state, who).await
}

fn activation(state: &AppState, user: &User, secret: &[u8], params: &TotpParams) -> Activation {
    Activation {
        secret_base32: totp::base32(secret),
        otpauth_uri: totp::otpauth_uri(
            secret,
            params,
            &state.settings.ui.product_name,
            &user.email,
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeError {
    /// Wrong, reused, or not a code at all.
    Invalid,
    /// Too many wrong codes; seconds until the next attempt is accepted.
    Locked { retry_after_secs: u64 },
    /// There is nothing to check the code against (no activated credential,
    /// or no live pending secret on this session).
    NoCredential,
}

/// Which second factor passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    Totp,
    RecoveryCode,
}

impl Passed {
    /// The factor the session passed.
    pub fn factor(self) -> Factor {
        match self {
            Passed::Totp => Factor::Totp,
            Passed::RecoveryCode => Factor::RecoveryCode,
        }
    }
}

/// Checks a code for the user's activated credential. Recovery codes are
/// tried only when `allow_recovery`. Throttled and audited.
async fn check_code(
    state: &AppState,
    user: &User,
    input: &str,
    allow_recovery: bool,
    ip: Option<&str>,
) -> Result<Result<Passed, CodeError>, Error> {
    let now = state.now();
    let Some(credential) = store::get(&state.store.db, &user.id)
        .await?
        .filter(|c| c.enabled)
    else {
        return Ok(Err(CodeError::NoCredential));
    };
    let counter = Counter::second_factor(state, &user.id);
    // What a refused code was, for its audit event: a valid code whose
    // time-step was used already (RFC 6238 §5.2), or a recovery code.
    let mut refused = Refusal::WrongCode;
    let checked = attempts::attempt(state, &counter, async {
        Ok(match totp_step(state, user, &credential, input, now) {
            Some(step) if store::accept_step(&state.store.db, &user.id, step as i64).await? => {
                Some(Passed::Totp)
            }
            Some(_) => {
                // a replay of this step or an older one
                refused = Refusal::Replayed;
                None
            }
            None if allow_recovery => match totp::normalize_recovery_code(input) {
                Some(code)
                    if {
                        refused = Refusal::WrongRecoveryCode;
                        recovery_codes::consume(&state.store.db, &user.id, &sha256_hex(&code), now)
                            .await?
                    } =>
                {
                    Some(Passed::RecoveryCode)
                }
                _ => None,
            },
            None => None,
        })
    })
    .await?;
    audit_code_outcome(state, user, ip, checked, refused).await
}

/// Why a checked code was refused, as its audit event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not a valid code (nor, where allowed, a recovery code's shape).
    WrongCode,
    /// A valid code whose time-step was used already: `totp.check`,
    /// `replayed`.
    Replayed,
    /// A recovery code's shape that matches no unused code:
    /// `recovery_code.used`, `failure`.
    WrongRecoveryCode,
}

/// Audits a checked code and turns the outcome into the caller's answer.
async fn audit_code_outcome(
    state: &AppState,
    user: &User,
    ip: Option<&str>,
    checked: Outcome<Passed>,
    refused: Refusal,
) -> Result<Result<Passed, CodeError>, Error> {
    match checked {
        Outcome::Passed(passed) => {
            let kind = match passed {
                Passed::Totp => Kind::TotpCheck,
                Passed::RecoveryCode => Kind::RecoveryCodeUsed,
            };
            audit(state, kind, AuditOutcome::Success, &user.id, ip, None).await?;
            Ok(Ok(passed))
        }
        Outcome::Locked { retry_after_secs } => {
            audit(
                state,
                Kind::TotpCheck,
                AuditOutcome::Locked,
                &user.id,
                ip,
                None,
            )
            .await?;
            Ok(Err(CodeError::Locked { retry_after_secs }))
        }
        Outcome::Failed {
            failures,
            lock_secs,
        } => {
            let (kind, outcome) = match refused {
                Refusal::WrongCode => (Kind::TotpCheck, AuditOutcome::Failure),
                Refusal::Replayed => (Kind::TotpCheck, AuditOutcome::Replayed),
                Refusal::WrongRecoveryCode => (Kind::RecoveryCodeUsed, AuditOutcome::Failure),
            };
            audit(state, kind, outcome, &user.id, ip, None).await?;
            if let Some(delay) = lock_secs {
                let detail = format!("{failures} consecutive failures; locked {delay} s");
                audit(
                    state,
                    Kind::TotpLockout,
                    AuditOutcome::Locked,
                    &user.id,
                    ip,
                    Some(&detail),
                )
                .await?;
                return Ok(Err(CodeError::Locked {
                    retry_after_secs: delay,
                }));
            }
            Ok(Err(CodeError::Invalid))
        }
    }
}

/// The time-step `input` matches for this credential, if it is a valid code.
fn totp_step(
    state: &AppState,
    user: &User,
    credential: &Credential,
    input: &str,
    now: i64,
) -> Option<u64> {
    let params = store::params_of(credential, state.settings.totp.skew)?;
    let secret = open_secret(&state.keys.masters(), &user.id, &credential.secret_sealed)?;
    totp::verify(&secret, &params, input, u64::try_from(now).ok()?)
}

/// New recovery codes, stored hashed; the plain codes are returned once.
async fn new_recovery_codes(state: &AppState, user_id: &str) -> Result<Vec<String>, Error> {
    let codes = totp::generate_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| sha256_hex(&totp::normalize_recovery_code(c).expect("generated codes are valid")))
        .collect();
    recovery_codes::replace_all(&state.store.db, user_id, &hashes, state.now()).await?;
    Ok(codes)
}

/// Completes activation with a valid code from this session's pending
/// secret (never another session's, never an expired one); returns the
/// recovery codes to show once. The code goes through the second-factor
/// counter like any other, and its time-step counts as used.
pub async fn confirm_activation(
    state: &AppState,
    who: &LiveSession,
    code: &str,
    ip: Option<&str>,
) -> Result<Result<Vec<String>, CodeError>, Error> {
    let (user, session) = (&who.user, &who.session);
    let now = state.now();
    let Some(enrollment) =
        store::live_enrollment(&state.store.db, &enrollment_key(session), &user.id, now).await?
    else {
        // Expired, or started by no one on this session: the page shows a
        // fresh secret. Once 2FA is on there is nothing left to confirm.
        return Ok(Err(
            if store::is_enabled(&state.store.db, &user.id).await? {
                CodeError::NoCredential
            } else {
                CodeError::Invalid
            },
        ));
    };
    let counter = Counter::second_factor(state, &user.id);
    let checked = attempts::attempt(state, &counter, async {
        let step = store::enrollment_params(&enrollment, state.settings.totp.skew)
            .zip(open_secret(
                &state.keys.masters(),
                &user.id,
                &enrollment.secret_sealed,
            ))
            .and_then(|(params, secret)| {
                totp::verify(&secret, &params, code, u64::try_from(now).ok()?)
            });
        Ok(match step {
            // `false`: a right code, but another request of this session
            // activated first (or 2FA came on elsewhere).
            Some(step) => Some(
                store::activate_enrollment(&state.store.db, &enrollment, step as i64, now).await?,
            ),
            None => None,
        })
    })
    .await?;
    let activated = matches!(checked, Outcome::Passed(true));
    if let Err(e) = audit_code_outcome(
        state,
        user,
        ip,
        checked.map(|_| Passed::Totp),
        Refusal::WrongCode,
    )
    .await?
    {
        return Ok(Err(e));
    }
    if !activated {
        return Ok(Err(CodeError::NoCredential));
    }
    let codes = new_recovery_codes(state, &user.id).await?;
    audit(
        state,
        Kind::TotpActivated,
        AuditOutcome::Success,
        &user.id,
        ip,
        None,
    )
    .await?;
    let product = &state.settings.ui.product_name;
    notify(
        state,
        user,
        &format!("Two-factor authentication is on for your {product} account"),
        format!(
            "Hello {name},\n\nTwo-factor authentication is now on for your {product} account. From now on, signing in asks for the 6-digit code from your authenticator app.\n\nIf you did not do this, reset your password at {forgot} and contact your administrator.\n",
            name = user.name,
            forgot = accounts::link(state, "/password/forgot", &[]),
        ),
    )
    .await?;
    Ok(Ok(codes))
}

/// The sign-in challenge: a code from the app or an unused recovery code.
pub async fn verify_second_factor(
    state: &AppState,
    who: &LiveSession,
    input: &str,
    ip: Option<&str>,
) -> Result<Result<Passed, CodeError>, Error> {
    check_code(state, &who.user, input, true, ip).await
}

/// Replaces the recovery codes; needs a valid code from the app.
pub async fn regenerate_recovery_codes(
    state: &AppState,
    who: &LiveSession,
    code: &str,
    ip: Option<&str>,
) -> Result<Result<Vec<String>, CodeError>, Error> {
    let user = &who.user;
    if let Err(e) = check_code(state, user, code, false, ip).await? {
        return Ok(Err(e));
    }
    let codes = new_recovery_codes(state, &user.id).await?;
    audit(
        state,
        Kind::RecoveryCodesRegenerated,
        AuditOutcome::Success,
        &user.id,
        ip,
        None,
    )
    .await?;
    Ok(Ok(codes))
}

pub async fn unused_recovery_codes(state: &AppState, user_id: &str) -> Result<u64, Error> {
    Ok(recovery_codes::count_unused(&state.store.db, user_id).await?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeactivateError {
    WrongPassword,
    Code(CodeError),
}

/// Turns 2FA off; needs the password and a valid code from the app. The
/// user is emailed.
pub async fn deactivate(
    state: &AppState,
    who: &LiveSession,
    password: &str,
    code: &str,
    ip: Option<&str>,
) -> Result<Result<(), DeactivateError>, Error> {
    let user = &who.user;
    match accounts::reauthenticate(state, who, password, ip, ReauthFor::DeactivateTotp).await? {
        Ok(()) => {}
        Err(ReauthError::WrongPassword) => return Ok(Err(DeactivateError::WrongPassword)),
        Err(ReauthError::Locked { retry_after_secs }) => {
            return Ok(Err(DeactivateError::Code(CodeError::Locked {
                retry_after_secs,
            })));
        }
    }
    if let Err(e) = check_code(state, user, code, false, ip).await? {
        return Ok(Err(DeactivateError::Code(e)));
    }
    remove(state, &user.id).await?;
    audit(
        state,
        Kind::TotpDeactivated,
        AuditOutcome::Success,
        &user.id,
        ip,
        None,
    )
    .await?;
    let product = &state.settings.ui.product_name;
    notify(
        state,
        user,
        &format!("Two-factor authentication is off for your {product} account"),
        format!(
            "Hello {name},\n\nTwo-factor authentication was turned off for your {product} account. Signing in now needs only your password.\n\nIf you did not do this, reset your password at {forgot} right away and contact your administrator.\n",
            name = user.name,
            forgot = accounts::link(state, "/password/forgot", &[]),
        ),
    )
    .await?;
    Ok(Ok(()))
}

async fn remove(state: &AppState, user_id: &str) -> Result<(), Error> {
    store::delete(&state.store.db, user_id).await?;
    store::delete_enrollments_for_user(&state.store.db, user_id).await?;
    recovery_codes::delete_all(&state.store.db, user_id).await?;
    Counter::second_factor(state, user_id).reset(state).await?;
    Ok(())
}

/// `stepgate user reset-2fa EMAIL`: removes the credential, the recovery
/// codes and every passkey, clears the lockout and ends the user's
/// sessions; the user is emailed.
pub async fn reset_by_operator(state: &AppState, email: &str) -> Result<Option<User>, Error> {
    let Some(user) = users::find_by_email(&state.store.db, email).await? else {
        return Ok(None);
    };
    remove(state, &user.id).await?;
    crate::service::passkeys::remove_all_by_operator(state, &user.id).await?;
    sessions::delete_for_user(&state.store.db, &user.id).await?;
    audit(
        state,
        Kind::TotpResetByOperator,
        AuditOutcome::Success,
        &user.id,
        None,
        None,
    )
    .await?;
    let product = &state.settings.ui.product_name;
    notify(
        state,
        &user,
        &format!("Two-factor authentication was reset on your {product} account"),
        format!(
            "Hello {name},\n\nAn administrator reset two-factor authentication on your {product} account: your authenticator app and your passkeys no longer sign you in, and you were signed out everywhere. Sign in with your password, then set them up again from your profile.\n",
            name = user.name,
        ),
    )
    .await?;
    Ok(Some(user))
}

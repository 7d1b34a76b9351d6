//! Accounts: sign-up and email confirmation, sign-in with throttling,
//! sessions, profile, password reset. Every answer that could tell whether an
//! email is registered is the same either way.

use crate::auth::factor::{Factor, Factors};
use crate::auth::password::{PasswordRuleError, check_password_rules};
use crate::crypto::{random_token, sha256_hex};
use crate::service::Error;
use crate::service::attempts::{self, Counter, Outcome};
use crate::service::mail::{self, Intent};
use crate::service::second_factor;
use crate::state::AppState;
use crate::store::audit::{self, AuditEvent, Kind, Outcome as AuditOutcome};
use crate::store::email_tokens::{self, Purpose, Unusable};
use crate::store::entities::sessions::Model as Session;
use crate::store::entities::users::Model as User;
use crate::store::users::{CreateUserError, NewUser};
use crate::store::{api_keys, refresh_tokens, sessions, totp as store_totp, users};

/// Longest display name accepted.
pub const MAX_NAME_CHARS: usize = 100;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
pub const MAX_EMAIL_CHARS: usize = 254;

/// What is wrong with a sign-up or profile form, field by field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors {
    pub email: Option<String>,
    pub password: Option<String>,
    pub name: Option<String>,
}

impl FieldErrors {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.password.is_none() && self.name.is_none()
    }
}

pub fn check_email(email: &str) -> Option<String> {
    let email = email.trim();
    if email.is_empty() {
        return Some("Enter your email address.".into());
    }
    let malformed = || Some("Enter an email address like name@example.com.".into());
    let Ok(address) = email.parse::<lettre::Address>() else {
        return malformed();
    };
    if email.chars().count() > MAX_EMAIL_CHARS || users::domain_a_label(address.domain()).is_none()
    {
        return malformed();
    }
    // The address is stored and mailed with its domain as an A-label, which
    // can be longer than what was typed: "Ǆ" + 60 letters is a 61-character
    // label whose A-label has more than the 63 octets a DNS label may have
    // (RFC 1035 §2.3.4), and the address could then never
    // be mailed. The form that is kept must be valid too (found by fuzzing:
    // `fuzz/fuzz_targets/email_address.rs`).
    let canonical = users::canonical_email(email);
    if canonical.len() > MAX_EMAIL_CHARS || canonical.parse::<lettre::Address>().is_err() {
        return malformed();
    }
    // RFC 6531 allows any UTF-8 before the @; we refuse it, the simplest rule
    // under which no two different-looking addresses compare equal (see
    // `users::normalize_email`). Domains may be internationalized: they are
    // compared, stored and mailed as their A-label.
    if !address.user().is_ascii() {
        return Some(
            "Use only ASCII letters, digits and punctuation before the @ (for example name@example.com).".into(),
        );
    }
    None
}

pub fn check_name(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return Some("Enter your name.".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Some(format!("Use at most {MAX_NAME_CHARS} characters."));
    }
    if name.chars().any(char::is_control) {
        return Some("Use letters, digits, spaces and punctuation only.".into());
    }
    None
}

fn password_error(error: PasswordRuleError) -> String {
    error.to_string()
}

/// Records a security event in the audit log, at the clock's time.
pub(crate) async fn record(state: &AppState, event: AuditEvent<'_>) -> Result<(), Error> {
    audit::record(&state.store.appender, event, state.now()).await?;
    Ok(())
}

/// `signin.password`: the outcome of an email + password attempt, with the
/// account when one matched the email (never the email or the password
/// itself: the log is no place for them).
async fn audit_sign_in(
    state: &AppState,
    outcome: AuditOutcome,
    user_id: Option<&str>,
    ip: Option<&str>,
    detail: Option<&str>,
) -> Result<(), Error> {
    record(
        state,
        AuditEvent {
            kind: Kind::SigninPassword,
            outcome,
            user_id,
            client_id: None,
            ip,
            detail,
        },
    )
    .await
}

/// A link under the issuer for an email, every query value URL-encoded.
pub(crate) fn link(state: &AppState, path: &str, query: &[(&str, &str)]) -> String {
    crate::email::link(&state.settings.issuer, path, query)
}

/// Creates a single-use link token; only its hash is stored.
pub(crate) async fn issue_link(
    state: &AppState,
    user_id: &str,
    purpose: Purpose,
    ttl_secs: u64,
) -> Result<String, Error> {
    let token = random_token();
    let now = state.now();
    email_tokens::create(
        &state.store.db,
        &sha256_hex(&token),
        user_id,
        purpose,
        now,
        now.saturating_add(ttl_secs as i64),
    )
    .await?;
    Ok(token)
}

// ---------------------------------------------------------------- sign-up

/// Signs a person up. A registered email gets the same outcome as a new one;
/// its owner receives an email saying someone tried, instead of a new account.
pub async fn signup(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
    interaction: Option<&str>,
) -> Result<Result<(), FieldErrors>, Error> {
    let errors = FieldErrors {
        email: check_email(email),
        password: check_password_rules(password, &state.settings.password)
            .err()
            .map(password_error),
        name: check_name(name),
    };
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    // Hash in every case, so a registered email takes as long as a new one.
    let hash = state.hasher.hash(password.to_owned()).await;
    let created = users::create(
        &state.store.db,
        NewUser {
            email,
            name,
            password_hash: &hash,
            email_verified: false,
        },
        state.now(),
    )
    .await;
    // One row in the outbox either way; the worker looks the account up.
    match created {
        Ok(user) => {
            let interaction = interaction
                .filter(|id| crate::crypto::is_token_shaped(id))
                .map(str::to_owned);
            mail::enqueue(
                state,
                Intent::Confirm {
                    user_id: user.id,
                    interaction,
                },
            )
            .await?;
        }
        Err(CreateUserError::EmailTaken) => {
            mail::enqueue(
                state,
                Intent::SignupTaken {
                    email: email.to_owned(),
                },
            )
            .await?;
        }
        Err(CreateUserError::Db(e)) => return Err(e.into()),
    }
    Ok(Ok(()))
}

/// Why a link from an email did not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Invalid,
    Used,
    Expired,
}

impl From<Unusable> for LinkError {
    fn from(u: Unusable) -> Self {
        match u {
            Unusable::Unknown => LinkError::Invalid,
            Unusable::Used => LinkError::Used,
            Unusable::Expired => LinkError::Expired,
        }
    }
}

/// Consumes a confirmation link and marks the email verified.
pub async fn confirm_email(state: &AppState, token: &str) -> Result<Result<(), LinkError>, Error> {
    let now = state.now();
    match email_tokens::consume(&state.store.db, &sha256_hex(token), Purpose::Confirm, now).await? {
        Ok(user_id) => {
            users::set_email_verified(&state.store.db, &user_id, now).await?;
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(e.into())),
    }
}

/// Queues a new confirmation link for the email; the worker sends it if
/// the email belongs to an unconfirmed, active account. The request does
/// the same work either way (one insert), and the caller answers the same.
pub async fn resend_confirmation(state: &AppState, email: &str) -> Result<(), Error> {
    if check_email(email).is_some() {
        return Ok(());
    }
    mail::enqueue(
        state,
        Intent::ResendConfirmation {
            email: email.to_owned(),
        },
    )
    .await
}

// ---------------------------------------------------------------- sign-in

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong email or password: one answer for both.
    Invalid,
    /// Too many failures; seconds until the next attempt is accepted.
    Locked { retry_after_secs: u64 },
    /// Right password, email not confirmed yet.
    Unconfirmed,
    /// Right password, account disabled by an operator.
    Disabled,
}

/// A new session: the raw cookie value (shown once, to the browser) and what
/// the session records.
pub struct NewSession {
    pub token: String,
    user: User,
}

impl NewSession {
    pub fn user_id(&self) -> &str {
        &self.user.id
    }
}

/// Checks email and password through the password [`Counter`] of the
/// email: the attempt is claimed in the database before argon2 runs (shared
/// by all nodes); past `login.free_failures` each failure locks the email
/// for a doubling delay. Unknown emails are counted and delayed the same way
/// and cost the same argon2 time. Every outcome is recorded in the audit log
/// with `ip`, the client's address.
pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    ip: Option<&str>,
) -> Result<Result<NewSession, LoginError>, Error> {
    let user = if check_email(email).is_none() {
        users::find_by_email(&state.store.db, email).await?
    } else {
        None
    };
    let user_id = user.as_ref().map(|u| u.id.clone());
    let user_id = user_id.as_deref();
    let counter = Counter::password(state, email, ip);
    let verified = attempts::attempt(state, &counter, async {
        let right = match &user {
            Some(user) => {
                state
                    .hasher
                    .verify(password.to_owned(), user.password_hash.clone())
                    .await
            }
            None => state.hasher.verify_dummy(password.to_owned()).await,
        };
        Ok(user.clone().filter(|_| right))
    })
    .await?;
    let user = match verified {
        Outcome::Passed(user) => user,
        Outcome::Locked { retry_after_secs } => {
            audit_sign_in(state, AuditOutcome::Locked, user_id, ip, None).await?;
            return Ok(Err(LoginError::Locked { retry_after_secs }));
        }
        Outcome::Failed {
            failures,
            lock_secs,
        } => {
            let detail = if user_id.is_some() {
                "wrong password"
            } else {
                "unknown email"
            };
            audit_sign_in(state, AuditOutcome::Failure, user_id, ip, Some(detail)).await?;
            let Some(delay) = lock_secs else {
                return Ok(Err(LoginError::Invalid));
            };
            tracing::warn!(
                failures,
                delay_secs = delay,
                "sign-in locked after repeated failures"
            );
            // Like `totp.lockout`: the moment the lock starts, on its own row.
            record(
                state,
                AuditEvent {
                    kind: Kind::SigninLockout,
                    outcome: AuditOutcome::Locked,
                    user_id,
                    client_id: None,
                    ip,
                    detail: Some(&format!(
                        "{failures} consecutive failures; locked {delay} s"
                    )),
                },
            )
            .await?;
            return Ok(Err(LoginError::Locked {
                retry_after_secs: delay,
            }));
        }
    };
    if user.disabled {
        audit_sign_in(
            state,
            AuditOutcome::Failure,
            user_id,
            ip,
            Some("account disabled"),
        )
        .await?;
        return Ok(Err(LoginError::Disabled));
    }
    if !user.email_verified {
        audit_sign_in(
            state,
            AuditOutcome::Failure,
            user_id,
            ip,
            Some("email not confirmed"),
        )
        .await?;
        return Ok(Err(LoginError::Unconfirmed));
    }
    let token = start_session(state, &user.id).await?;
    audit_sign_in(state, AuditOutcome::Success, user_id, ip, None).await?;
    tracing::info!(user_id = %user.id, "signed in");
    Ok(Ok(NewSession { token, user }))
}

/// Why a re-entered password was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReauthError {
    WrongPassword,
    /// Too many failures; seconds until the next attempt is accepted.
    Locked {
        retry_after_secs: u64,
    },
}

/// What a password is asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReauthFor {
    /// Creating an API key without a second factor.
    ApiKey,
    /// Turning two-factor authentication off.
    DeactivateTotp,
    /// Adding or removing a passkey without a second factor.
    Passkey,
}

/// Checks a signed-in user's password again (2FA deactivation, an API key
/// without 2FA), through the same counter as sign-in: no form is a way
/// around the sign-in lockout. Failures and refusals are audited under
/// the purpose's kind.
pub async fn reauthenticate(
    state: &AppState,
    who: &LiveSession,
    password: &str,
    ip: Option<&str>,
    purpose: ReauthFor,
) -> Result<Result<(), ReauthError>, Error> {
    let kind = match purpose {
        ReauthFor::ApiKey => Kind::ApiKeyReauth,
        ReauthFor::DeactivateTotp => Kind::TotpDeactivate,
        ReauthFor::Passkey => Kind::PasskeyRegistered,
    };
    let user = &who.user;
    let counter = Counter::password(state, &user.email, ip);
    let checked = attempts::attempt(state, &counter, async {
        let right = state
            .hasher
            .verify(password.to_owned(), user.password_hash.clone())
            .await;
        Ok(right.then_some(()))
    })
    .await?;
    let (outcome, detail, error) = match checked {
        Outcome::Passed(()) => return Ok(Ok(())),
        Outcome::Locked { retry_after_secs } => (
            AuditOutcome::Locked,
            None,
            ReauthError::Locked { retry_after_secs },
        ),
        Outcome::Failed { lock_secs, .. } => (
            AuditOutcome::Failure,
            Some("wrong password"),
            match lock_secs {
                Some(delay) => ReauthError::Locked {
                    retry_after_secs: delay,
                },
                None => ReauthError::WrongPassword,
            },
        ),
    };
    record(
        state,
        AuditEvent {
            kind,
            outcome,
            user_id: Some(&user.id),
            client_id: None,
            ip,
            detail,
        },
    )
    .await?;
    Ok(Err(error))
}

/// Records on the session that the password was just proved again.
pub async fn password_proved(state: &AppState, who: &LiveSession) -> Result<(), Error> {
    sessions::set_pwd_at(&state.store.db, &who.session.id_hash, state.now()).await?;
    Ok(())
}

/// Creates a server-side session with a fresh 256-bit id (a new one at every
/// sign-in, so a planted cookie is never promoted: session fixation).
pub async fn start_session(state: &AppState, user_id: &str) -> Result<String, Error> {
    create_session(state, user_id, second_factor::password_only()).await
}

/// A session for a sign-in that passed `factors` at once (a passkey, with
/// its user verification): its sign-in time (`auth_time`) is now, and so is
/// its second factor's when one is among them.
pub async fn start_session_with(
    state: &AppState,
    user: &User,
    factors: Factors,
) -> Result<NewSession, Error> {
    let token = create_session(state, &user.id, factors).await?;
    Ok(NewSession {
        token,
        user: user.clone(),
    })
}

async fn create_session(
    state: &AppState,
    user_id: &str,
    factors: Factors,
) -> Result<String, Error> {
    let token = random_token();
    let now = state.now();
    sessions::create(
        &state.store.db,
        sessions::NewSession {
            id_hash: &sha256_hex(&token),
            user_id,
            now,
            expires_at: now.saturating_add(state.settings.session.absolute_timeout_secs as i64),
            // The time of the sign-in step (`auth_time`), whatever proved it.
            pwd_at: now,
            factors,
            mfa_at: factors.has_second_factor().then_some(now),
            sid: &random_token(),
        },
    )
    .await?;
    Ok(token)
}

/// Records a passed second factor on a session. The session gets a new id
/// (OWASP: renew the id when privileges change), keeps its password time and
/// absolute expiry, and the old id stops working. Returns the new cookie value.
pub async fn add_second_factor(
    state: &AppState,
    old_token: &str,
    who: &LiveSession,
    factor: Factor,
) -> Result<String, Error> {
    let session = &who.session;
    let token = random_token();
    let now = state.now();
    sessions::create(
        &state.store.db,
        sessions::NewSession {
            id_hash: &sha256_hex(&token),
            user_id: &session.user_id,
            now,
            expires_at: session.expires_at,
            pwd_at: session.pwd_at,
            factors: session.factors().with(factor),
            mfa_at: Some(now),
            // The same sign-in session: its public id stays.
            sid: &session.sid.clone().unwrap_or_else(random_token),
        },
    )
    .await?;
    sessions::delete(&state.store.db, &sha256_hex(old_token)).await?;
    Ok(token)
}

/// Seconds between writes of `last_seen_at`: idle expiry needs no finer
/// resolution, and most requests then stay read-only.
const TOUCH_EVERY_SECS: i64 = 60;

/// A live session with its user: what the services hand the layer above
/// in place of store rows, and take back. Only services see inside.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub(in crate::service) session: Session,
    pub(in crate::service) user: User,
}

impl LiveSession {
    pub fn user_id(&self) -> &str {
        &self.user.id
    }

    pub fn email(&self) -> &str {
        &self.user.email
    }

    pub fn name(&self) -> &str {
        &self.user.name
    }
}

/// The live session behind a cookie value, with its user; `None` when the
/// session is unknown, expired, idle too long, or its user is disabled.
pub async fn current_session(state: &AppState, token: &str) -> Result<Option<LiveSession>, Error> {
    let now = state.now();
    let idle_cutoff = now - state.settings.session.idle_timeout_secs as i64;
    let id_hash = sha256_hex(token);
    let Some(session) = sessions::find_live(&state.store.db, &id_hash, now, idle_cutoff).await?
    else {
        return Ok(None);
    };
    let Some(user) = users::find_by_id(&state.store.db, &session.user_id).await? else {
        return Ok(None);
    };
    if user.disabled {
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY_SECS {
        sessions::touch(&state.store.db, &id_hash, now).await?;
    }
    Ok(Some(LiveSession { session, user }))
}

/// Ends a session server-side: the cookie is worthless afterwards.
/// A 2FA activation the session had under way ends with it.
pub async fn end_session(state: &AppState, token: &str) -> Result<(), Error> {
    let id_hash = sha256_hex(token);
    if let Some(session) = sessions::find(&state.store.db, &id_hash).await? {
        crate::service::totp::forget_activation(state, &session).await?;
    }
    sessions::delete(&state.store.db, &id_hash).await?;
    Ok(())
}

// ---------------------------------------------------------------- profile

pub async fn update_name(
    state: &AppState,
    user_id: &str,
    name: &str,
) -> Result<Result<(), String>, Error> {
    if let Some(error) = check_name(name) {
        return Ok(Err(error));
    }
    users::set_name(&state.store.db, user_id, name, state.now()).await?;
    Ok(Ok(()))
}

// ---------------------------------------------------------------- password reset

/// Queues a reset link for the email; the worker sends it when the address
/// belongs to an active account whose email is confirmed
/// (`service::mail`). The request does the same work either way (one
/// insert, no lookup), and the caller answers the same.
pub async fn request_password_reset(state: &AppState, email: &str) -> Result<(), Error> {
    if check_email(email).is_some() {
        return Ok(());
    }
    mail::enqueue(
        state,
        Intent::PasswordReset {
            email: email.to_owned(),
        },
    )
    .await
}

/// Whether a reset link can still be used (to decide whether to show the form).
pub async fn check_reset_link(
    state: &AppState,
    token: &str,
) -> Result<Result<(), LinkError>, Error> {
    let found = email_tokens::peek(
        &state.store.db,
        &sha256_hex(token),
        Purpose::Reset,
        state.now(),
    )
    .await?;
    Ok(found.map(|_| ()).map_err(LinkError::from))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetError {
    Link(LinkError),
    Password(String),
}

/// Sets a new password from a reset link: the link is consumed atomically,
/// every session of the user ends, the throttle is cleared, and the email
/// counts as confirmed (the link proved it).
pub async fn reset_password(
    state: &AppState,
    token: &str,
    password: &str,
) -> Result<Result<(), ResetError>, Error> {
    if let Err(e) = check_password_rules(password, &state.settings.password) {
        // Checked first, so a rule error does not use the link up.
        return Ok(Err(ResetError::Password(password_error(e))));
    }
    let now = state.now();
    let user_id =
        match email_tokens::consume(&state.store.db, &sha256_hex(token), Purpose::Reset, now)
            .await?
        {
            Ok(user_id) => user_id,
            Err(e) => return Ok(Err(ResetError::Link(e.into()))),
        };
    let hash = state.hasher.hash(password.to_owned()).await;
    users::set_password_hash(&state.store.db, &user_id, &hash, now).await?;
    users::set_email_verified(&state.store.db, &user_id, now).await?;
    let ended = sessions::delete_for_user(&state.store.db, &user_id).await?;
    // A pending 2FA secret dies with the sessions: one planted before the
    // reset can never be activated after it.
    store_totp::delete_enrollments_for_user(&state.store.db, &user_id).await?;
    // Whoever had the old password may hold tokens and keys it bought: the
    // reset ends them all (RFC 9700 §4.14.2: revoke refresh tokens when the
    // password changes; access tokens and API keys go with them).
    let families = refresh_tokens::revoke_for_user(&state.store.db, &user_id, now).await?;
    let keys = api_keys::revoke_all_for_user(&state.store.db, &user_id, now).await?;
    if let Some(user) = users::find_by_id(&state.store.db, &user_id).await? {
        Counter::reset_password(state, &user.email).await?;
    }
    record(
        state,
        AuditEvent {
            kind: Kind::PasswordReset,
            outcome: AuditOutcome::Success,
            user_id: Some(&user_id),
            client_id: None,
            ip: None,
            detail: Some(&format!(
                "{ended} sessions ended; {families} refresh tokens and {keys} API keys revoked"
            )),
        },
    )
    .await?;
    tracing::info!(%user_id, sessions_ended = ended, "password reset");
    Ok(Ok(()))
}

// ---------------------------------------------------------------- operators

#[derive(Debug, thiserror::Error)]
pub enum CreateByOperatorError {
    #[error("{0}")]
    Invalid(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Account(#[from] Error),
}

/// `stepgate user create`: an operator may learn that an email is taken.
pub async fn create_by_operator(
    state: &AppState,
    email: &str,
    name: &str,
    password: &str,
    verified: bool,
) -> Result<User, CreateByOperatorError> {
    let invalid = |field: &str, message: String| {
        CreateByOperatorError::Invalid(format!("{field}: {message}"))
    };
    if let Some(e) = check_email(email) {
        return Err(invalid("email", e));
    }
    if let Some(e) = check_name(name) {
        return Err(invalid("name", e));
    }
    if let Err(e) = check_password_rules(password, &state.settings.password) {
        return Err(invalid("password", password_error(e)));
    }
    let hash = state.hasher.hash(password.to_owned()).await;
    let user = users::create(
        &state.store.db,
        NewUser {
            email,
            name,
            password_hash: &hash,
            email_verified: verified,
        },
        state.now(),
    )
    .await
    .map_err(|e| match e {
        CreateUserError::EmailTaken => CreateByOperatorError::EmailTaken,
        CreateUserError::Db(e) => CreateByOperatorError::Account(e.into()),
    })?;
    if !verified {
        // The person confirms the address as after a sign-up.
        mail::enqueue(
            state,
            Intent::Confirm {
                user_id: user.id.clone(),
                interaction: None,
            },
        )
        .await?;
    }
    Ok(user)
}

/// Disables or enables an account; disabling also ends its sessions.
pub async fn set_disabled(
    state: &AppState,
    email: &str,
    disabled: bool,
) -> Result<Option<User>, Error> {
    let Some(user) = users::find_by_email(&state.store.db, email).await? else {
        return Ok(None);
    };
    users::set_disabled(&state.store.db, &user.id, disabled, state.now()).await?;
    if disabled {
        sessions::delete_for_user(&state.store.db, &user.id).await?;
    }
    Ok(users::find_by_id(&state.store.db, &user.id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_accepted_only_if_its_stored_form_is_valid() {
        // Found by the `email_address` fuzz target: the typed address is
        // valid, its A-label form is not (a label over 63 octets).
        let typed = format!("N@\u{1C4}{}", "A".repeat(60));
        assert!(
            typed.parse::<lettre::Address>().is_ok(),
            "typed form parses"
        );
        assert!(
            users::canonical_email(&typed)
                .parse::<lettre::Address>()
                .is_err(),
            "stored form does not"
        );
        assert_eq!(
            check_email(&typed).as_deref(),
            Some("Enter an email address like name@example.com.")
        );
        // The same domain, short enough, is fine, and so is its stored form.
        let short = format!("N@\u{1C4}{}.example", "A".repeat(20));
        assert_eq!(check_email(&short), None);
        assert_eq!(check_email(&users::canonical_email(&short)), None);
        // A typed address under 254 octets whose stored form is longer:
        // each label's A-label is six octets longer than its UTF-8.
        let label = format!("{}\u{e9}", "a".repeat(41));
        let long_domain = format!("n@{}.example", vec![label; 5].join("."));
        assert!(long_domain.chars().count() <= MAX_EMAIL_CHARS);
        assert!(long_domain.parse::<lettre::Address>().is_ok());
        assert!(users::canonical_email(&long_domain).len() > MAX_EMAIL_CHARS);
        assert!(check_email(&long_domain).is_some());
    }
}

//! Passkeys (WebAuthn Level 3): registration, passwordless sign-in and the
//! passkey as a second factor, on webauthn-rs's `Passkey` API (user
//! verification always required).
//!
//! Each ceremony's state is kept server-side in `webauthn_challenges`,
//! found again by the SHA-256 of the challenge the browser signed (it is
//! inside `clientDataJSON`), bound to the browser that asked for it (its
//! session, or before sign-in its pre-session CSRF cookie) and taken once
//! by an atomic delete: any node finishes what another began, and a
//! challenge never works twice. It expires after
//! `state::PASSKEY_CEREMONY_SECS`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Uuid, WebauthnError,
};

use crate::auth::factor::{Factor, Factors};
use crate::crypto::sha256_hex;
use crate::service::Error;
use crate::service::accounts::{self, LiveSession, NewSession};
use crate::service::limits::{Action, Limit};
use crate::state::{AppState, PASSKEY_CEREMONY_SECS};
use crate::store;
use crate::store::audit::{self, AuditEvent, Kind, Outcome as AuditOutcome};
use crate::store::entities::passkeys::Model as StoredPasskey;
use crate::store::passkeys::{NewChallenge, NotTaken, Used};
use crate::store::users;

/// The longest passkey name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// What a ceremony is for; stored with its state, so a challenge issued
/// for one purpose never finishes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register,
    Passwordless,
    /// A passkey as the second factor, or as the fresh factor before a
    /// sensitive change, on a signed-in session.
    Verify,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Passwordless => "passwordless",
            Purpose::Verify => "verify",
        }
    }

    fn audit_kind(self) -> Kind {
        match self {
            Purpose::Register => Kind::PasskeyRegistered,
            Purpose::Passwordless => Kind::SigninPasskey,
            Purpose::Verify => Kind::PasskeyCheck,
        }
    }
}

/// Why a ceremony was refused. Each is answered as a JSON error
/// (`code`, `description`) and written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The issuer has no host name: no passkeys here.
    Unavailable,
    /// Not JSON, not a credential, or its CBOR or client data do not parse.
    Malformed(String),
    /// The challenge is unknown to this browser: never issued, issued for
    /// another purpose, or already used.
    ChallengeUnknown,
    ChallengeExpired,
    /// The credential did not verify: origin, rp id hash, user
    /// verification, signature, ...
    Verification(String),
    /// No such credential, or it belongs to someone else, or was removed.
    UnknownCredential,
    /// The sign counter did not move forward: a cloned authenticator.
    CounterRegressed,
    /// The account cannot sign in (disabled, email not confirmed).
    AccountUnusable,
    /// `passkeys.max_per_user` reached.
    TooMany,
    /// This authenticator's credential is registered already.
    AlreadyRegistered,
    /// The user has no passkey to verify with.
    NoPasskey,
    /// This address had too many ceremonies refused this hour
    /// (`login.address_failures_per_hour`).
    Limited {
        retry_after_secs: u64,
    },
}

impl Refused {
    /// The JSON `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::Unavailable => "passkeys_unavailable",
            Refused::Malformed(_) => "invalid_request",
            Refused::ChallengeUnknown | Refused::ChallengeExpired => "invalid_challenge",
            Refused::Verification(_) => "verification_failed",
            Refused::UnknownCredential => "unknown_credential",
            Refused::CounterRegressed => "counter_regressed",
            Refused::AccountUnusable => "access_denied",
            Refused::TooMany => "limit_reached",
            Refused::AlreadyRegistered => "already_registered",
            Refused::NoPasskey => "no_passkey",
            Refused::Limited { .. } => "too_many_requests",
        }
    }

    /// The JSON `error_description`.
    pub fn description(&self) -> String {
        match self {
            Refused::Unavailable => {
                "passkeys are not offered here: the issuer has no host name".into()
            }
            Refused::Malformed(why) => format!("the credential is malformed: {why}"),
            Refused::ChallengeUnknown => {
                "the challenge is unknown or was already used: start again".into()
            }
            Refused::ChallengeExpired => "the challenge expired: start again".into(),
            Refused::Verification(why) => why.clone(),
            Refused::UnknownCredential => {
                "this passkey is not registered here (or was removed)".into()
            }
            Refused::CounterRegressed => "this passkey's sign counter went backwards: it may have been copied; it was refused".into(),
            Refused::AccountUnusable => "this account cannot sign in".into(),
            Refused::TooMany => "the most passkeys an account may have are registered".into(),
            Refused::AlreadyRegistered => "this passkey is registered already".into(),
            Refused::NoPasskey => "there is no passkey on this account".into(),
            Refused::Limited { retry_after_secs } => format!(
                "too many refused passkey attempts from your network; try again in {retry_after_secs} s"
            ),
        }
    }

    /// HTTP status: 409 for a conflict with what is stored, 403 for a
    /// refused account, 404 when passkeys are off, else 400.
    pub fn status(&self) -> u16 {
        match self {
            Refused::Unavailable => 404,
            Refused::AccountUnusable => 403,
            Refused::TooMany | Refused::AlreadyRegistered => 409,
            // RFC 6585 §4, with `Retry-After`.
            Refused::Limited { .. } => 429,
            _ => 400,
        }
    }

    fn from_webauthn(error: &WebauthnError) -> Refused {
        let why = match error {
            WebauthnError::InvalidRPOrigin => "the origin is not this site's",
            WebauthnError::InvalidRPIDHash => "the rp id hash is not this site's",
            WebauthnError::UserNotVerified => {
                "the authenticator did not verify the user (PIN or biometric required)"
            }
            WebauthnError::UserNotPresent => "the authenticator did not see the user",
            WebauthnError::MismatchedChallenge => "the challenge does not match",
            WebauthnError::InvalidClientDataType => "the client data type is wrong",
            WebauthnError::CredentialCrossOrigin => "cross-origin use is not allowed",
            WebauthnError::CredentialNotFound => return Refused::UnknownCredential,
            WebauthnError::CredentialAlreadyExists
            | WebauthnError::CredentialExcludedFromRequest => return Refused::AlreadyRegistered,
            WebauthnError::CredentialPossibleCompromise => return Refused::CounterRegressed,
            WebauthnError::ParseNOMFailure
            | WebauthnError::ParseInsufficientBytesAvailable
            | WebauthnError::ParseJSONFailure(_)
            | WebauthnError::ParseBase64Failure(_)
            | WebauthnError::ParseCBORFailure(_) => {
                return Refused::Malformed(error.to_string());
            }
            WebauthnError::AuthenticatorDataMissingExtension
            | WebauthnError::MissingAttestationCredentialData => {
                return Refused::Malformed(error.to_string());
            }
            _ => return Refused::Verification(format!("the credential did not verify: {error}")),
        };
        Refused::Verification(why.to_owned())
    }

    /// The audit detail: the code, and the reason where there is one.
    fn detail(&self) -> String {
        match self {
            Refused::Malformed(_) | Refused::Verification(_) => {
                format!("{}: {}", self.code(), self.description())
            }
            _ => self.code().to_owned(),
        }
    }
}

/// A passkey as the profile lists it.
#[derive(Debug, Clone)]
pub struct PasskeyView {
    pub credential_id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// Synced between devices (the backup state flag).
    pub synced: bool,
}

pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<PasskeyView>, Error> {
    Ok(store::passkeys::list(&state.store.db, user_id)
        .await?
        .into_iter()
        .map(|p| PasskeyView {
            credential_id: p.credential_id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            synced: p.backup_state,
        })
        .collect())
}

/// A name for a passkey: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no
/// control characters. The error says what is wrong.
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the passkey a name, such as the device it is on.".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "The name can be at most {MAX_NAME_CHARS} characters."
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("The name cannot contain control characters.".into());
    }
    Ok(name.to_owned())
}

fn relying_party(state: &AppState) -> Result<&Webauthn, Refused> {
    state.webauthn.as_ref().ok_or(Refused::Unavailable)
}

/// Where a ceremony's state is found again: the SHA-256 of the challenge
/// (canonical base64url), and of the browser binding.
fn challenge_hash(challenge: &[u8]) -> String {
    sha256_hex(&URL_SAFE_NO_PAD.encode(challenge))
}

/// The challenge inside a credential's `clientDataJSON` (WebAuthn Level 3
/// §5.8.1).
fn signed_challenge(client_data_json: &[u8]) -> Result<Vec<u8>, Refused> {
    let data: Value = serde_json::from_slice(client_data_json)
        .map_err(|_| Refused::Malformed("clientDataJSON is not JSON".into()))?;
    let challenge = data
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or_else(|| Refused::Malformed("clientDataJSON has no challenge".into()))?;
    URL_SAFE_NO_PAD
        .decode(challenge.trim_end_matches('='))
        .map_err(|_| Refused::Malformed("the challenge is not base64url".into()))
}

/// Stores a ceremony's state; `options` is what the browser gets.
async fn put_ceremony<S: serde::Serialize>(
    state: &AppState,
    purpose: Purpose,
    user_id: Option<&str>,
    binding: &str,
    challenge: &[u8],
    ceremony: &S,
) -> Result<(), Error> {
    let now = state.now();
    let json = serde_json::to_string(ceremony).map_err(|e| Error::Internal(e.to_string()))?;
    store::passkeys::put_challenge(
        &state.store.db,
        NewChallenge {
            challenge_hash: &challenge_hash(challenge),
            purpose: purpose.as_str(),
            user_id,
            binding_hash: &sha256_hex(binding),
            state: &json,
            now,
            expires_at: now.saturating_add(PASSKEY_CEREMONY_SECS as i64),
        },
    )
    .await?;
    Ok(())
}

/// Takes the state of the ceremony `client_data_json` answers, once.
async fn take_ceremony<S: serde::de::DeserializeOwned>(
    state: &AppState,
    purpose: Purpose,
    user_id: Option<&str>,
    binding: &str,
    client_data_json: &[u8],
) -> Result<Result<S, Refused>, Error> {
    let challenge = match signed_challenge(client_data_json) {
        Ok(c) => c,
        Err(refused) => return Ok(Err(refused)),
    };
    let taken = store::passkeys::take_challenge(
        &state.store.db,
        &challenge_hash(&challenge),
        purpose.as_str(),
        &sha256_hex(binding),
        state.now(),
    )
    .await?;
    let row = match taken {
        Ok(row) => row,
        Err(NotTaken::Unknown) => return Ok(Err(Refused::ChallengeUnknown)),
        Err(NotTaken::Expired) => return Ok(Err(Refused::ChallengeExpired)),
    };
    // A challenge begun for one user never finishes for another.
    if user_id.is_some() && row.user_id.as_deref() != user_id {
        return Ok(Err(Refused::ChallengeUnknown));
    }
    serde_json::from_str(&row.state)
        .map(Ok)
        .map_err(|e| Error::Internal(format!("stored ceremony state: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, Refused> {
    T::deserialize(body).map_err(|e| Refused::Malformed(e.to_string()))
}

fn json_body(body: &[u8]) -> Result<Value, Refused> {
    serde_json::from_slice(body).map_err(|_| Refused::Malformed("the body is not JSON".into()))
}

async fn audit_passkey(
    state: &AppState,
    kind: Kind,
    outcome: AuditOutcome,
    user_id: Option<&str>,
    ip: Option<&str>,
    detail: Option<&str>,
) -> Result<(), Error> {
    audit::record(
        &state.store.appender,
        AuditEvent {
            kind,
            outcome,
            user_id,
            client_id: None,
            ip,
            detail,
        },
        state.now(),
    )
    .await?;
    Ok(())
}

/// Audits a refusal under the ceremony's kind (and a counter that went
/// backwards under its own kind too), and hands it back.
async fn refuse<T>(
    state: &AppState,
    purpose: Purpose,
    user_id: Option<&str>,
    ip: Option<&str>,
    refused: Refused,
) -> Result<Result<T, Refused>, Error> {
    if refused == Refused::CounterRegressed {
        tracing::warn!(user_id = ?user_id, "a passkey's sign counter went backwards: refused");
        audit_passkey(
            state,
            Kind::PasskeyCounterRegressed,
            AuditOutcome::Failure,
            user_id,
            ip,
            None,
        )
        .await?;
    }
    audit_passkey(
        state,
        purpose.audit_kind(),
        AuditOutcome::Failure,
        user_id,
        ip,
        Some(&refused.detail()),
    )
    .await?;
    // Counted for the address (a full window was refused before this).
    let _ = failures(state, ip).hit(state).await?;
    Ok(Err(refused))
}

/// The budget of refused ceremonies of the address `ip`.
fn failures(state: &AppState, ip: Option<&str>) -> Limit {
    Limit::per_address(state, Action::PasskeyFailure, ip)
}

/// `Err` when the address used up its budget of refused ceremonies: no
/// new challenge is stored for it, and no finish is tried, until the
/// window ends.
async fn within_budget(state: &AppState, ip: Option<&str>) -> Result<Result<(), Refused>, Error> {
    Ok(failures(state, ip)
        .check(state)
        .await?
        .map_err(|l| Refused::Limited {
            retry_after_secs: l.retry_after_secs,
        }))
}

/// The stored passkeys of a user, as webauthn-rs reads them.
fn parsed(rows: &[StoredPasskey]) -> Result<Vec<Passkey>, Error> {
    rows.iter()
        .map(|row| {
            serde_json::from_str(&row.passkey)
                .map_err(|e| Error::Internal(format!("stored passkey: {e}")))
        })
        .collect()
}

/// The credential's flags and transports, read from webauthn-rs's JSON
/// form (the `Credential` inside a `Passkey` is not public API).
fn credential_fields(passkey: &Passkey) -> (i64, bool, bool, String) {
    let value = serde_json::to_value(passkey).unwrap_or(Value::Null);
    let cred = &value["cred"];
    let counter = cred["counter"].as_i64().unwrap_or(0);
    let eligible = cred["backup_eligible"].as_bool().unwrap_or(false);
    let backed_up = cred["backup_state"].as_bool().unwrap_or(false);
    let transports = cred["transports"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    (counter, eligible, backed_up, transports)
}

fn user_handle(user_id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(user_id).map_err(|e| Error::Internal(format!("user id is not a UUID: {e}")))
}

// ---------------------------------------------------------------- registration

/// The options to create a passkey for the signed-in user (`binding`: the
/// session cookie's value). The caller has checked that a fresh factor was
/// proved.
pub async fn begin_registration(
    state: &AppState,
    who: &LiveSession,
    binding: &str,
    ip: Option<&str>,
) -> Result<Result<Value, Refused>, Error> {
    let webauthn = match relying_party(state) {
        Ok(w) => w,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Err(refused) = within_budget(state, ip).await? {
        return Ok(Err(refused));
    }
    let user = &who.user;
    let existing = store::passkeys::list(&state.store.db, &user.id).await?;
    if existing.len() as u64 >= u64::from(state.settings.passkeys.max_per_user) {
        return Ok(Err(Refused::TooMany));
    }
    let exclude = parsed(&existing)?
        .iter()
        .map(|p| p.cred_id().clone())
        .collect::<Vec<_>>();
    let (mut options, registration) = webauthn
        .start_passkey_registration(
            user_handle(&user.id)?,
            &user.email,
            &user.name,
            Some(exclude),
        )
        .map_err(|e| Error::Internal(format!("passkey registration options: {e}")))?;
    // A passkey is a discoverable credential (WebAuthn Level 3 §6.2.2):
    // passwordless sign-in finds it without an email.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.require_resident_key = true;
        selection.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
    }
    put_ceremony(
        state,
        Purpose::Register,
        Some(&user.id),
        binding,
        options.public_key.challenge.as_ref(),
        &registration,
    )
    .await?;
    Ok(Ok(
        serde_json::to_value(&options).map_err(|e| Error::Internal(e.to_string()))?
    ))
}

/// A passkey just registered.
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
}

/// Verifies and stores the credential the browser created (`body`: the
/// credential as JSON, with its `name`).
pub async fn finish_registration(
    state: &AppState,
    who: &LiveSession,
    binding: &str,
    body: &[u8],
    ip: Option<&str>,
) -> Result<Result<Registered, Refused>, Error> {
    let user_id = who.user.id.as_str();
    let purpose = Purpose::Register;
    let webauthn = match relying_party(state) {
        Ok(w) => w,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Err(refused) = within_budget(state, ip).await? {
        return Ok(Err(refused));
    }
    let parsed_body = json_body(body).and_then(|value| {
        let credential: RegisterPublicKeyCredential = parse(&value)?;
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("Passkey");
        let name = check_name(name).map_err(Refused::Malformed)?;
        Ok((credential, name))
    });
    let (credential, name) = match parsed_body {
        Ok(parts) => parts,
        Err(refused) => return refuse(state, purpose, Some(user_id), ip, refused).await,
    };
    let registration: PasskeyRegistration = match take_ceremony(
        state,
        purpose,
        Some(user_id),
        binding,
        credential.response.client_data_json.as_ref(),
    )
    .await?
    {
        Ok(r) => r,
        Err(refused) => return refuse(state, purpose, Some(user_id), ip, refused).await,
    };
    // A credential id registered already, to anyone (WebAuthn Level 3
    // §7.1 step 26). webauthn-rs refuses the user's own (the exclude list)
    // under a misleading name; asked first, the answer says what it is.
    let raw_id = URL_SAFE_NO_PAD.encode(&credential.raw_id);
    if store::passkeys::find(&state.store.db, &raw_id)
        .await?
        .is_some()
    {
        return refuse(
            state,
            purpose,
            Some(user_id),
            ip,
            Refused::AlreadyRegistered,
        )
        .await;
    }
    let passkey = match webauthn.finish_passkey_registration(&credential, &registration) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                state,
                purpose,
                Some(user_id),
                ip,
                Refused::from_webauthn(&e),
            )
            .await;
        }
    };
    // The limit again: two ceremonies may have begun under it.
    if store::passkeys::count(&state.store.db, user_id).await?
        >= u64::from(state.settings.passkeys.max_per_user)
    {
        return refuse(state, purpose, Some(user_id), ip, Refused::TooMany).await;
    }
    let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id().as_ref() as &[u8]);
    let (sign_count, backup_eligible, backup_state, transports) = credential_fields(&passkey);
    let now = state.now();
    let inserted = store::passkeys::insert(
        &state.store.db,
        StoredPasskey {
            credential_id: credential_id.clone(),
            user_id: user_id.to_owned(),
            name: name.clone(),
            passkey: serde_json::to_string(&passkey).map_err(|e| Error::Internal(e.to_string()))?,
            sign_count,
            backup_eligible,
            backup_state,
            transports,
            created_at: now,
            last_used_at: None,
        },
    )
    .await?;
    if !inserted {
        return refuse(
            state,
            purpose,
            Some(user_id),
            ip,
            Refused::AlreadyRegistered,
        )
        .await;
    }
    let detail = format!("credential {}", short(&credential_id));
    audit_passkey(
        state,
        Kind::PasskeyRegistered,
        AuditOutcome::Success,
        Some(user_id),
        ip,
        Some(&detail),
    )
    .await?;
    let product = &state.settings.ui.product_name;
    crate::service::mail::notice(
        state,
        &who.user.email,
        format!("A passkey was added to your {product} account"),
        format!(
            "Hello {user},\n\nA passkey named \"{name}\" was added to your {product} account. It can now sign you in.\n\nIf you did not do this, remove it at {passkeys} and reset your password at {forgot}.\n",
            user = who.user.name,
            passkeys = accounts::link(state, "/profile/passkeys", &[]),
            forgot = accounts::link(state, "/password/forgot", &[]),
        ),
    )
    .await?;
    tracing::info!(user_id, "passkey registered");
    Ok(Ok(Registered { name }))
}

/// The first characters of a credential id, for logs and audit details.
fn short(credential_id: &str) -> &str {
    credential_id
        .char_indices()
        .nth(12)
        .map_or(credential_id, |(i, _)| &credential_id[..i])
}

// ---------------------------------------------------------------- passwordless

/// The options for "Sign in with a passkey": any discoverable credential
/// for this site, user verification required. `binding`: the browser's
/// session or pre-session cookie value.
pub async fn begin_passwordless(
    state: &AppState,
    binding: &str,
    ip: Option<&str>,
) -> Result<Result<Value, Refused>, Error> {
    let webauthn = match relying_party(state) {
        Ok(w) => w,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Err(refused) = within_budget(state, ip).await? {
        return Ok(Err(refused));
    }
    let (mut options, authentication) = webauthn
        .start_discoverable_authentication()
        .map_err(|e| Error::Internal(format!("passkey sign-in options: {e}")))?;
    // webauthn-rs marks these for conditional mediation (autofill); the
    // button asks at once, and the script requests conditional mediation
    // itself where the browser supports it.
    options.mediation = None;
    put_ceremony(
        state,
        Purpose::Passwordless,
        None,
        binding,
        options.public_key.challenge.as_ref(),
        &authentication,
    )
    .await?;
    Ok(Ok(
        serde_json::to_value(&options).map_err(|e| Error::Internal(e.to_string()))?
    ))
}

/// Verifies a passwordless assertion and starts a session whose factor is
/// the passkey (user-verified: multi-factor on its own).
pub async fn finish_passwordless(
    state: &AppState,
    binding: &str,
    body: &[u8],
    ip: Option<&str>,
) -> Result<Result<NewSession, Refused>, Error> {
    let purpose = Purpose::Passwordless;
    let webauthn = match relying_party(state) {
        Ok(w) => w,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Err(refused) = within_budget(state, ip).await? {
        return Ok(Err(refused));
    }
    let credential: PublicKeyCredential = match json_body(body).and_then(|v| parse(&v)) {
        Ok(c) => c,
        Err(refused) => return refuse(state, purpose, None, ip, refused).await,
    };
    let authentication: DiscoverableAuthentication = match take_ceremony(
        state,
        purpose,
        None,
        binding,
        credential.response.client_data_json.as_ref(),
    )
    .await?
    {
        Ok(a) => a,
        Err(refused) => return refuse(state, purpose, None, ip, refused).await,
    };
    // The user handle names the account; the credential must be one of
    // its own (WebAuthn Level 3 §7.2 step 6).
    let Ok((handle, raw_id)) = webauthn.identify_discoverable_authentication(&credential) else {
        return refuse(
            state,
            purpose,
            None,
            ip,
            Refused::Malformed("the assertion has no user handle".into()),
        )
        .await;
    };
    let user_id = handle.to_string();
    let credential_id = URL_SAFE_NO_PAD.encode(raw_id);
    let row = store::passkeys::find(&state.store.db, &credential_id).await?;
    let Some(row) = row.filter(|r| r.user_id == user_id) else {
        return refuse(state, purpose, None, ip, Refused::UnknownCredential).await;
    };
    let user_id = row.user_id.clone();
    let mut passkey = parsed(std::slice::from_ref(&row))?.remove(0);
    let result = match webauthn.finish_discoverable_authentication_v2(
        &credential,
        authentication,
        DiscoverableKey::from(&passkey),
    ) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                state,
                purpose,
                Some(&user_id),
                ip,
                Refused::from_webauthn(&e),
            )
            .await;
        }
    };
    passkey.update_credential(&result);
    if !record(
        state,
        &row,
        &passkey,
        result.counter(),
        result.backup_state(),
    )
    .await?
    {
        return refuse(
            state,
            purpose,
            Some(&user_id),
            ip,
            Refused::CounterRegressed,
        )
        .await;
    }
    let Some(user) = users::find_by_id(&state.store.db, &user_id).await? else {
        return refuse(state, purpose, None, ip, Refused::UnknownCredential).await;
    };
    if user.disabled || !user.email_verified {
        return refuse(state, purpose, Some(&user_id), ip, Refused::AccountUnusable).await;
    }
    let session = accounts::start_session_with(state, &user, Factors::of(Factor::Passkey)).await?;
    audit_passkey(
        state,
        Kind::SigninPasskey,
        AuditOutcome::Success,
        Some(&user_id),
        ip,
        None,
    )
    .await?;
    tracing::info!(user_id, "signed in with a passkey");
    Ok(Ok(session))
}

/// Records a verified assertion: `false` when the counter did not move
/// forward past what another node recorded meanwhile, or the credential is
/// gone.
async fn record(
    state: &AppState,
    row: &StoredPasskey,
    passkey: &Passkey,
    counter: u32,
    backup_state: bool,
) -> Result<bool, Error> {
    let json = serde_json::to_string(passkey).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(store::passkeys::record_use(
        &state.store.db,
        Used {
            credential_id: &row.credential_id,
            user_id: &row.user_id,
            passkey: &json,
            sign_count: i64::from(counter),
            backup_state,
            now: state.now(),
        },
    )
    .await?)
}

// ---------------------------------------------------------------- verification

/// The options to use one of the signed-in user's passkeys: as the second
/// factor after the password, or as the fresh factor a change needs.
pub async fn begin_verify(
    state: &AppState,
    who: &LiveSession,
    binding: &str,
    ip: Option<&str>,
) -> Result<Result<Value, Refused>, Error> {
    let webauthn = match relying_party(state) {
        Ok(w) => w,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Err(refused) = within_budget(state, ip).await? {
        return Ok(Err(refused));
    }
    let rows = store::passkeys::list(&state.store.db, &who.user.id).await?;
    if rows.is_empty() {
        return Ok(Err(Refused::NoPasskey));
    }
    let (options, authentication) = webauthn
        .start_passkey_authentication(&parsed(&rows)?)
        .map_err(|e| Error::Internal(format!("passkey options: {e}")))?;
    put_ceremony(
        state,
        Purpose::Verify,
        Some(&who.user.id),
        binding,
        options.public_key.challenge.as_ref(),
        &authentication,
    )
    .await?;
    Ok(Ok(
        serde_json::to_value(&options).map_err(|e| Error::Internal(e.to_string()))?
    ))
}

/// Verifies an assertion by one of the signed-in user's passkeys. The
/// caller records the factor on the session.
pub async fn finish_verify(
    state: &AppState,
    who: &LiveSession,
    binding: &str,
    body: &[u8],
    ip: Option<&str>,
) -> Result<Result<(), Refused>, Error> {
    let purpose = Purpose::Verify;
    let user_id = who.user.id.as_str();
    let webauthn = match relying_party(state) {
        Ok(w) => w,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Err(refused) = within_budget(state, ip).await? {
        return Ok(Err(refused));
    }
    let credential: PublicKeyCredential = match json_body(body).and_then(|v| parse(&v)) {
        Ok(c) => c,
        Err(refused) => return refuse(state, purpose, Some(user_id), ip, refused).await,
    };
    let authentication: PasskeyAuthentication = match take_ceremony(
        state,
        purpose,
        Some(user_id),
        binding,
        credential.response.client_data_json.as_ref(),
    )
    .await?
    {
        Ok(a) => a,
        Err(refused) => return refuse(state, purpose, Some(user_id), ip, refused).await,
    };
    let credential_id = URL_SAFE_NO_PAD.encode(credential.get_credential_id());
    // The credential as stored now: one removed since the options were
    // made no longer counts.
    let row = store::passkeys::find(&state.store.db, &credential_id).await?;
    let Some(row) = row.filter(|r| r.user_id == user_id) else {
        return refuse(
            state,
            purpose,
            Some(user_id),
            ip,
            Refused::UnknownCredential,
        )
        .await;
    };
    let result = match webauthn.finish_passkey_authentication(&credential, &authentication) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                state,
                purpose,
                Some(user_id),
                ip,
                Refused::from_webauthn(&e),
            )
            .await;
        }
    };
    let mut passkey = parsed(std::slice::from_ref(&row))?.remove(0);
    // The counter is checked against the stored one (the options carried
    // the count of their time): WebAuthn Level 3 §7.2 step 22.
    let stored = i64::from(result.counter());
    if (stored > 0 || row.sign_count > 0) && stored <= row.sign_count {
        return refuse(state, purpose, Some(user_id), ip, Refused::CounterRegressed).await;
    }
    passkey.update_credential(&result);
    if !record(
        state,
        &row,
        &passkey,
        result.counter(),
        result.backup_state(),
    )
    .await?
    {
        return refuse(state, purpose, Some(user_id), ip, Refused::CounterRegressed).await;
    }
    audit_passkey(
        state,
        Kind::PasskeyCheck,
        AuditOutcome::Success,
        Some(user_id),
        ip,
        None,
    )
    .await?;
    Ok(Ok(()))
}

// ---------------------------------------------------------------- management

/// Renames one of the user's passkeys. `Ok(false)`: no such passkey.
pub async fn rename(
    state: &AppState,
    who: &LiveSession,
    credential_id: &str,
    name: &str,
    ip: Option<&str>,
) -> Result<Result<bool, String>, Error> {
    let name = match check_name(name) {
        Ok(n) => n,
        Err(why) => return Ok(Err(why)),
    };
    let user_id = who.user.id.as_str();
    let renamed = store::passkeys::rename(&state.store.db, user_id, credential_id, &name).await?;
    if renamed {
        let detail = format!("credential {}", short(credential_id));
        audit_passkey(
            state,
            Kind::PasskeyRenamed,
            AuditOutcome::Success,
            Some(user_id),
            ip,
            Some(&detail),
        )
        .await?;
    }
    Ok(Ok(renamed))
}

/// Removes one of the user's passkeys; the user is emailed. `false`: no
/// such passkey.
pub async fn remove(
    state: &AppState,
    who: &LiveSession,
    credential_id: &str,
    ip: Option<&str>,
) -> Result<bool, Error> {
    let user = &who.user;
    let Some(row) = store::passkeys::find(&state.store.db, credential_id)
        .await?
        .filter(|r| r.user_id == user.id)
    else {
        return Ok(false);
    };
    if !store::passkeys::delete(&state.store.db, &user.id, credential_id).await? {
        return Ok(false);
    }
    let detail = format!("credential {}", short(credential_id));
    audit_passkey(
        state,
        Kind::PasskeyRemoved,
        AuditOutcome::Success,
        Some(&user.id),
        ip,
        Some(&detail),
    )
    .await?;
    let product = &state.settings.ui.product_name;
    crate::service::mail::notice(
        state,
        &user.email,
        format!("A passkey was removed from your {product} account"),
        format!(
            "Hello {name},\n\nThe passkey named \"{passkey}\" was removed from your {product} account. It can no longer sign you in.\n\nIf you did not do this, reset your password at {forgot}.\n",
            name = user.name,
            passkey = row.name,
            forgot = accounts::link(state, "/password/forgot", &[]),
        ),
    )
    .await?;
    Ok(true)
}

/// `stepgate user reset-2fa`: removes every passkey of the user; how many.
pub async fn remove_all_by_operator(state: &AppState, user_id: &str) -> Result<u64, Error> {
    let removed = store::passkeys::delete_for_user(&state.store.db, user_id).await?;
    if removed > 0 {
        let detail = format!("{removed} passkeys, by an operator");
        audit_passkey(
            state,
            Kind::PasskeyRemoved,
            AuditOutcome::Success,
            Some(user_id),
            None,
            Some(&detail),
        )
        .await?;
    }
    Ok(removed)
}

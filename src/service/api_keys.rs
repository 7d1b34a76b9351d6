//! Personal API keys: a user creates one from the profile to let a script act
//! on their behalf (the seed: "An API authentication key that can be used to
//! automate exchanges"). A key is presented as a bearer token; `/userinfo`
//! answers it with the key's scopes, and introspection uses `verify`.
//!
//! - A key is `sgk_` + 256 random bits in base64url (47 characters). The
//!   prefix lets secret scanners recognise a leaked key and lets a bearer
//!   endpoint tell a key from a JWT without parsing it.
//! - Only the SHA-256 of the whole key is stored (docs/security.md, "What is
//!   stored": 256 generated bits need no slow hash); the key is shown once.
//! - Scopes come from `openid`, `profile` and `email`. `openid` is always
//!   included, whether or not it was asked for: every key identifies its owner
//!   (`sub`), which is what `/userinfo` requires, so no key is useless and a
//!   key never has an empty scope.
//! - A key lives until revoked, or until its optional expiry (1 to 3650 days).
//!   A disabled user's keys stop working while the account is disabled.

use crate::crypto::{random_id, random_token, sha256_hex};
use crate::protocol::scope::Scopes;
use crate::service::Error;
use crate::service::accounts::{self, LiveSession};
use crate::state::AppState;
use crate::store::api_keys::{self as store, NewApiKey};
use crate::store::audit::{self, AuditEvent, Kind, Outcome as AuditOutcome};
use crate::store::entities::users::Model as User;
use crate::store::users;

pub use crate::store::entities::api_keys::Model as ApiKeyModel;

/// What every key starts with.
pub const PREFIX: &str = "sgk_";
/// Longest key name accepted.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest lifetime a key can be given, in days (about ten years).
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// What a key can be granted, in the order the page lists them.
pub const KEY_SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// Seconds between writes of `last_used_at`: a key used in a loop then costs
/// one write a minute, not one per request.
const TOUCH_EVERY_SECS: i64 = 60;

/// Whether a bearer token is meant as an API key (rather than a JWT).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// `sgk_` and 43 base64url characters: anything else cannot be a key, and is
/// refused without a database lookup.
fn is_well_formed(raw: &str) -> bool {
    raw.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

// ---------------------------------------------------------------- input rules

/// What is wrong with a create form, field by field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyFieldErrors {
    pub name: Option<String>,
    pub scope: Option<String>,
    pub expires_in_days: Option<String>,
}

impl KeyFieldErrors {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.scope.is_none() && self.expires_in_days.is_none()
    }
}

pub fn check_name(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return Some("Give the key a name, such as the script that will use it.".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Some(format!("Use at most {MAX_NAME_CHARS} characters."));
    }
    if name.chars().any(char::is_control) {
        return Some("Use letters, digits, spaces and punctuation only.".into());
    }
    None
}

/// The scopes asked for (each value may also be a space-separated list, as
/// in OAuth), with `openid` added. Anything outside `KEY_SCOPES` is refused.
pub fn parse_scopes(requested: &[String]) -> Result<Scopes, String> {
    let mut scopes = Scopes::default();
    for value in requested {
        scopes.0.extend(Scopes::parse(value).0);
    }
    if scopes.0.iter().any(|s| !KEY_SCOPES.contains(&s.as_str())) {
        return Err("Choose from openid, profile and email.".into());
    }
    scopes.0.insert("openid".to_owned());
    Ok(scopes)
}

/// The optional lifetime as typed: empty for a key that does not expire,
/// else a whole number of days from 1 to `MAX_EXPIRY_DAYS`.
pub fn parse_expires_in_days(input: &str) -> Result<Option<u32>, String> {
    let input = input.trim();
    if input.is_empty() {
        return Ok(None);
    }
    let days = input.parse::<u32>().ok();
    check_expires_in_days(days).map_or(Ok(days), Err)
}

fn check_expires_in_days(days: Option<u32>) -> Option<String> {
    match days {
        Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => None,
        _ => Some(format!(
            "Enter a whole number of days from 1 to {MAX_EXPIRY_DAYS}, or leave it empty."
        )),
    }
}

/// Checks a create form as typed, before anything else happens (such as
/// asking for a code); on success, the parsed expiry.
pub fn check_form(
    name: &str,
    scopes: &[String],
    expires_in_days: &str,
) -> Result<Option<u32>, KeyFieldErrors> {
    let expires = parse_expires_in_days(expires_in_days);
    let errors = KeyFieldErrors {
        name: check_name(name),
        scope: parse_scopes(scopes).err(),
        expires_in_days: expires.clone().err(),
    };
    match expires {
        Ok(days) if errors.is_empty() => Ok(days),
        _ => Err(errors),
    }
}

// ---------------------------------------------------------------- lifecycle

/// A key just created: its row, and the key itself, which exists nowhere
/// else and is shown once.
pub struct CreatedKey {
    pub row: ApiKeyModel,
    pub key: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("row", &self.row)
            .field("key", &"sgk_…")
            .finish()
    }
}

/// Creates a key for `user`. The caller decides whether a fresh second
/// factor was needed (`needs_second_factor`) and obtained.
pub async fn create(
    state: &AppState,
    who: &LiveSession,
    name: &str,
    scopes: &[String],
    expires_in_days: Option<u32>,
    ip: Option<&str>,
) -> Result<Result<CreatedKey, KeyFieldErrors>, Error> {
    let user = &who.user;
    let scope = parse_scopes(scopes);
    let errors = KeyFieldErrors {
        name: check_name(name),
        scope: scope.as_ref().err().cloned(),
        expires_in_days: expires_in_days.and_then(|d| check_expires_in_days(Some(d))),
    };
    let (Ok(scope), true) = (scope, errors.is_empty()) else {
        return Ok(Err(errors));
    };
    let key = format!("{PREFIX}{}", random_token());
    let now = state.now();
    let row = store::create(
        &state.store.db,
        NewApiKey {
            id: &random_id(),
            user_id: &user.id,
            name: name.trim(),
            key_hash: &sha256_hex(&key),
            scope: &scope.to_wire(),
            now,
            expires_at: expires_in_days.map(|d| now.saturating_add(i64::from(d) * 86_400)),
        },
    )
    .await?;
    let detail = format!("key {}; scope {}", row.id, row.scope);
    audit_event(state, Kind::ApiKeyCreated, &user.id, ip, &detail).await?;
    // Every new key is told to its owner: a key made from a stolen session
    // does not go unnoticed.
    let product = &state.settings.ui.product_name;
    let expiry = match expires_in_days {
        Some(days) => format!("It expires in {days} days."),
        None => "It does not expire.".to_owned(),
    };
    crate::service::mail::notice(
        state,
        &user.email,
        format!("A new API key was created for your {product} account"),
        format!(
            "Hello {name},\n\nA personal API key named \"{key_name}\" was created for your {product} account, with the scopes {scope}. {expiry}\n\nIf you did not do this, revoke it at {keys} and reset your password at {forgot}.\n",
            name = user.name,
            key_name = row.name,
            scope = row.scope,
            keys = accounts::link(state, "/profile/api-keys", &[]),
            forgot = accounts::link(state, "/password/forgot", &[]),
        ),
    )
    .await?;
    tracing::info!(user_id = %user.id, key_id = %row.id, "API key created");
    Ok(Ok(CreatedKey { row, key }))
}

/// The user's keys, revoked and expired ones included, newest first.
pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<ApiKeyModel>, Error> {
    Ok(store::list_for_user(&state.store.db, user_id).await?)
}

/// Revokes one of the user's own keys. `false` when there is no such key of
/// this user, or it was already revoked.
pub async fn revoke(
    state: &AppState,
    user_id: &str,
    key_id: &str,
    ip: Option<&str>,
) -> Result<bool, Error> {
    if !store::revoke(&state.store.db, user_id, key_id, state.now()).await? {
        return Ok(false);
    }
    let detail = format!("key {key_id}");
    audit_event(state, Kind::ApiKeyRevoked, user_id, ip, &detail).await?;
    tracing::info!(%user_id, %key_id, "API key revoked");
    Ok(true)
}

/// The key and its user when `raw` is a usable key: well formed, known, not
/// revoked, not expired, and its user exists and is not disabled. Records the
/// use (at most once a minute).
///
/// The lookup is by the key's SHA-256: the database compares hashes, so its
/// timing says nothing about the key itself.
pub async fn verify(state: &AppState, raw: &str) -> Result<Option<(ApiKeyModel, User)>, Error> {
    if !is_well_formed(raw) {
        return Ok(None);
    }
    let now = state.now();
    let Some(mut key) = store::find_live(&state.store.db, &sha256_hex(raw), now).await? else {
        return Ok(None);
    };
    let Some(user) = users::find_by_id(&state.store.db, &key.user_id).await? else {
        return Ok(None);
    };
    if user.disabled {
        return Ok(None);
    }
    if key
        .last_used_at
        .is_none_or(|at| now - at >= TOUCH_EVERY_SECS)
    {
        store::touch(&state.store.db, &key.id, now).await?;
        key.last_used_at = Some(now);
    }
    Ok(Some((key, user)))
}

/// Where a key stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

pub fn status(key: &ApiKeyModel, now: i64) -> KeyStatus {
    if key.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if key.expires_at.is_some_and(|at| at <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

async fn audit_event(
    state: &AppState,
    kind: Kind,
    user_id: &str,
    ip: Option<&str>,
    detail: &str,
) -> Result<(), Error> {
    audit::record(
        &state.store.appender,
        AuditEvent {
            kind,
            outcome: AuditOutcome::Success,
            user_id: Some(user_id),
            client_id: None,
            ip,
            detail: Some(detail),
        },
        state.now(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_are_recognised_by_shape() {
        let key = format!("{PREFIX}{}", random_token());
        assert_eq!(key.len(), 47);
        assert!(is_api_key(&key) && is_well_formed(&key));
        assert!(!is_well_formed("sgk_short"));
        assert!(!is_well_formed(&key.replace(PREFIX, "sgx_")));
        assert!(!is_well_formed(&format!("{}=", &key[..46])));
        assert!(!is_api_key("eyJhbGciOiJSUzI1NiJ9.e30.sig"));
    }

    #[test]
    fn names_are_required_short_and_printable() {
        assert!(check_name("backup script").is_none());
        assert!(check_name("   ").is_some());
        assert!(check_name(&"x".repeat(100)).is_none());
        assert!(check_name(&"x".repeat(101)).is_some());
        assert!(check_name("a\u{7}b").is_some());
    }

    #[test]
    fn scopes_imply_openid_and_refuse_others() {
        assert_eq!(parse_scopes(&[]).unwrap().to_wire(), "openid");
        assert_eq!(
            parse_scopes(&strings(&["email", "profile", "email"]))
                .unwrap()
                .to_wire(),
            "email openid profile"
        );
        assert_eq!(
            parse_scopes(&strings(&["openid email"])).unwrap().to_wire(),
            "email openid"
        );
        assert!(parse_scopes(&strings(&["offline_access"])).is_err());
        assert!(parse_scopes(&strings(&["email", "admin"])).is_err());
    }

    #[test]
    fn expiry_is_empty_or_1_to_3650_days() {
        assert_eq!(parse_expires_in_days(""), Ok(None));
        assert_eq!(parse_expires_in_days(" 30 "), Ok(Some(30)));
        assert_eq!(parse_expires_in_days("1"), Ok(Some(1)));
        assert_eq!(parse_expires_in_days("3650"), Ok(Some(3650)));
        for bad in ["0", "3651", "-1", "1.5", "ten", "99999999999"] {
            assert!(parse_expires_in_days(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_form_is_checked_field_by_field() {
        assert_eq!(check_form("ci", &strings(&["email"]), "30"), Ok(Some(30)));
        assert_eq!(check_form("ci", &[], ""), Ok(None));
        let all = check_form(" ", &strings(&["admin"]), "0").unwrap_err();
        assert!(all.name.is_some() && all.scope.is_some() && all.expires_in_days.is_some());
        let one = check_form("ci", &[], "x").unwrap_err();
        assert!(one.name.is_none() && one.scope.is_none() && one.expires_in_days.is_some());
    }

    #[test]
    fn status_of_a_key() {
        let mut key = ApiKeyModel {
            id: "k".into(),
            user_id: "u".into(),
            name: "n".into(),
            key_hash: "h".into(),
            scope: "openid".into(),
            created_at: 0,
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        };
        assert_eq!(status(&key, 10), KeyStatus::Active);
        key.expires_at = Some(10);
        assert_eq!(status(&key, 9), KeyStatus::Active);
        assert_eq!(status(&key, 10), KeyStatus::Expired);
        key.revoked_at = Some(5);
        assert_eq!(status(&key, 9), KeyStatus::Revoked);
    }
}

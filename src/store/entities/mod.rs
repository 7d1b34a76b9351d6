//! sea-orm entities: one per table, matching `migrations/`.

pub mod access_tokens;
pub mod api_keys;
pub mod audit_events;
pub mod authorization_codes;
pub mod clients;
pub mod consents;
pub mod email_tokens;
pub mod interactions;
pub mod login_throttle;
pub mod passkeys;
pub mod recovery_codes;
pub mod refresh_tokens;
pub mod sessions;
pub mod signing_keys;
pub mod totp_credentials;
pub mod totp_enrollments;
pub mod users;
pub mod webauthn_challenges;

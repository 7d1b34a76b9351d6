//! sea-orm entities: one per table, matching `migrations/`.

pub mod audit_events;
pub mod email_tokens;
pub mod login_throttle;
pub mod recovery_codes;
pub mod sessions;
pub mod totp_credentials;
pub mod users;

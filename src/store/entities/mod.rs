//! sea-orm entities: one per table, matching `migrations/`.

pub mod email_tokens;
pub mod login_throttle;
pub mod sessions;
pub mod users;

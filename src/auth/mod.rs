//! Pure end-user authentication rules: no HTTP, no database.

pub mod factor;
pub mod password;
pub mod throttle;
pub mod totp;

//! Orchestration: protocol and authentication rules + the store + the clock.
//! No HTTP types here.

pub mod accounts;
pub mod password;
pub mod totp;

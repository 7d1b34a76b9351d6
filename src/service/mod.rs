//! Orchestration: protocol and authentication rules + the store + the clock.
//! No HTTP types here.

pub mod accounts;
pub mod api_keys;
pub mod attempts;
pub mod clients;
pub mod error;
pub mod health;
pub mod introspection;
pub mod limits;
pub mod logout;
pub mod mail;
pub mod master_key;
pub mod oidc;
pub mod passkeys;
pub mod revocation;
pub mod second_factor;
pub mod signing_keys;
pub mod sweep;
pub mod token;
pub mod totp;

pub use error::Error;

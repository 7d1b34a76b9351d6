//! Pure OAuth 2.0 / OpenID Connect rules: no HTTP, no database, no clock reads.

pub mod authorize;
pub mod client_metadata;
pub mod discovery;
pub mod error;
pub mod grant;
pub mod interaction;
pub mod introspect;
pub mod jwt;
pub mod logout;
pub mod pkce;
pub mod scope;
pub mod signing_keys;
pub mod token;

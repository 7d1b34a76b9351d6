//! OAuth 2.0 / OpenID Connect endpoints.

pub mod authorize;
pub mod client_auth;
pub mod introspect;
pub mod logout;
pub mod revoke;
pub mod token;
pub mod userinfo;

//! OAuth 2.0 / OpenID Connect endpoints.

pub mod authorize;
pub mod logout;
pub mod token;
pub mod userinfo;

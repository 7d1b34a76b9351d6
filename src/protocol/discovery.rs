//! OpenID Connect Discovery 1.0 §3 provider metadata (and the RFC 8414 fields
//! OAuth 2.0 adds). Only what is implemented is advertised; every capability
//! that lands adds its fields here.
//!
//! The document is written with our own serde type rather than
//! openidconnect's `CoreProviderMetadata`: that type has no field for
//! `code_challenge_methods_supported` (RFC 8414 §2) without a custom extension
//! type. The integration tests parse the document with openidconnect, so a
//! real relying-party library checks it.

use serde::Serialize;

/// Paths of the endpoints, relative to the issuer.
pub const AUTHORIZATION_PATH: &str = "/authorize";
pub const TOKEN_PATH: &str = "/token";
pub const JWKS_PATH: &str = "/jwks";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

#[derive(Debug, Clone, Serialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub response_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
}

impl ProviderMetadata {
    /// `issuer` is validated at configuration time: no trailing slash, so each
    /// endpoint is the issuer followed by its path.
    pub fn new(issuer: &str) -> Self {
        let at = |path: &str| format!("{issuer}{path}");
        Self {
            issuer: issuer.to_owned(),
            // Discovery 1.0 §3 makes both REQUIRED.
            authorization_endpoint: at(AUTHORIZATION_PATH),
            token_endpoint: at(TOKEN_PATH),
            jwks_uri: at(JWKS_PATH),
            // The authorization code flow only (RFC 9700 §2.1.2 rules out implicit).
            response_types_supported: vec!["code"],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec!["RS256"],
            // RFC 9700 §2.1.1: S256 only, never `plain`.
            code_challenge_methods_supported: vec!["S256"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_live_under_the_issuer() {
        let m = ProviderMetadata::new("https://id.example.com/tenant");
        assert_eq!(m.issuer, "https://id.example.com/tenant");
        assert_eq!(m.jwks_uri, "https://id.example.com/tenant/jwks");
        assert_eq!(m.token_endpoint, "https://id.example.com/tenant/token");
        assert_eq!(
            m.authorization_endpoint,
            "https://id.example.com/tenant/authorize"
        );
        assert_eq!(m.code_challenge_methods_supported, ["S256"]);
    }
}

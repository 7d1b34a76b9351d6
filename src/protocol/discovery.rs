//! OpenID Connect Discovery 1.0 §3 provider metadata (and the RFC 8414 fields
//! OAuth 2.0 adds). Only what is implemented is advertised; every capability
//! that lands adds its fields here.
//!
//! The document is written with our own serde type rather than
//! openidconnect's `CoreProviderMetadata`: that type has no field for
//! `code_challenge_methods_supported` (RFC 8414 §2) without a custom extension
//! type. The integration tests parse the document with openidconnect, so a
//! real relying-party library checks it.

use crate::auth::factor::{ACR_MFA, ACR_PHR, ACR_PWD};
use crate::protocol::grant::GrantType;
use serde::Serialize;

/// Paths of the endpoints, relative to the issuer.
pub const AUTHORIZATION_PATH: &str = "/authorize";
pub const TOKEN_PATH: &str = "/token";
pub const JWKS_PATH: &str = "/jwks";
pub const USERINFO_PATH: &str = "/userinfo";
pub const REVOCATION_PATH: &str = "/revoke";
pub const INTROSPECTION_PATH: &str = "/introspect";
pub const END_SESSION_PATH: &str = "/logout";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

#[derive(Debug, Clone, Serialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: String,
    pub jwks_uri: String,
    pub scopes_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    pub acr_values_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    pub authorization_response_iss_parameter_supported: bool,
}

impl ProviderMetadata {
    /// `issuer` is validated at configuration time: no trailing slash, so each
    /// endpoint is the issuer followed by its path. `passkeys`: whether the
    /// issuer can be a WebAuthn relying party (then `phr` can be met).
    pub fn new(issuer: &str, passkeys: bool) -> Self {
        let at = |path: &str| format!("{issuer}{path}");
        Self {
            issuer: issuer.to_owned(),
            // Discovery 1.0 §3 makes both REQUIRED.
            authorization_endpoint: at(AUTHORIZATION_PATH),
            token_endpoint: at(TOKEN_PATH),
            userinfo_endpoint: at(USERINFO_PATH),
            revocation_endpoint: at(REVOCATION_PATH),
            introspection_endpoint: at(INTROSPECTION_PATH),
            // RP-Initiated Logout 1.0 §2.1.
            end_session_endpoint: at(END_SESSION_PATH),
            jwks_uri: at(JWKS_PATH),
            scopes_supported: vec!["openid", "profile", "email", "offline_access"],
            // The authorization code flow only (RFC 9700 §2.1.2 rules out implicit).
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query", "form_post"],
            grant_types_supported: GrantType::ALL.map(GrantType::as_str).to_vec(),
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec!["RS256"],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            claims_supported: vec![
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "acr",
                "amr",
                "sid",
                "at_hash",
                "name",
                "email",
                "email_verified",
            ],
            acr_values_supported: if passkeys {
                vec![ACR_PWD, ACR_MFA, ACR_PHR]
            } else {
                vec![ACR_PWD, ACR_MFA]
            },
            revocation_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            // RFC 9700 §2.1.1: S256 only, never `plain`.
            code_challenge_methods_supported: vec!["S256"],
            claims_parameter_supported: false,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            // RFC 9207: every authorization response carries `iss`.
            authorization_response_iss_parameter_supported: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_live_under_the_issuer() {
        let m = ProviderMetadata::new("https://id.example.com/tenant", true);
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

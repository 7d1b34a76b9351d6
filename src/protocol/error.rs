//! The OAuth 2.0 / OpenID Connect error codes, one variant per code, and the
//! error every protocol check returns.
//!
//! Only `http` decides how an error travels (a redirect, a JSON body with a
//! status, a `WWW-Authenticate` header); here an error is a code and a
//! description that is always safe to show the client: it never carries a
//! secret or an internal detail (those go to the log, from the layer that
//! knows them).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// RFC 6749 §4.1.2.1, §5.2: a parameter is missing, invalid, unsupported
    /// or repeated, or the request is otherwise malformed.
    InvalidRequest,
    /// RFC 6749 §4.1.2.1, §5.2: the client may not use this method or grant.
    UnauthorizedClient,
    /// RFC 6749 §4.1.2.1: the resource owner or the server denied the request.
    AccessDenied,
    /// RFC 6749 §4.1.2.1: the server does not support this `response_type`.
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1, §5.2: the requested scope is invalid, unknown or
    /// malformed.
    InvalidScope,
    /// RFC 6749 §4.1.2.1: an unexpected condition; the stand-in for anything
    /// internal, which is logged and never described.
    ServerError,
    /// RFC 6749 §4.1.2.1: overload or maintenance.
    TemporarilyUnavailable,
    /// OpenID Connect Core §3.1.2.6: `prompt=none`, and some user interaction
    /// other than login or consent is needed.
    InteractionRequired,
    /// OpenID Connect Core §3.1.2.6: `prompt=none`, and the user must sign in.
    LoginRequired,
    /// OpenID Connect Core §3.1.2.6: `prompt=none`, and the user must consent.
    ConsentRequired,
    /// OpenID Connect Core §3.1.2.6: the `request` parameter is not supported.
    RequestNotSupported,
    /// OpenID Connect Unmet Authentication Requirements 1.0 §3 (the errata
    /// of Core): the server cannot meet the requested `acr_values`.
    UnmetAuthenticationRequirements,
    /// OpenID Connect Core §3.1.2.6: the `request_uri` parameter is not
    /// supported.
    RequestUriNotSupported,
    /// RFC 6749 §5.2: client authentication failed (HTTP 401 at the token
    /// endpoint).
    InvalidClient,
    /// RFC 6749 §5.2: the code or refresh token is invalid, expired, revoked,
    /// issued to another client, or does not match the redirect URI or the
    /// PKCE verifier.
    InvalidGrant,
    /// RFC 6749 §5.2: the server does not support this `grant_type`.
    UnsupportedGrantType,
    /// RFC 6750 §3.1: the access token is expired, revoked, malformed or
    /// otherwise invalid.
    InvalidToken,
    /// RFC 6750 §3.1: the access token lacks the scope the request needs.
    InsufficientScope,
}

impl OAuthErrorCode {
    /// The code as it is written on the wire (`error=...`).
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::InteractionRequired => "interaction_required",
            OAuthErrorCode::LoginRequired => "login_required",
            OAuthErrorCode::ConsentRequired => "consent_required",
            OAuthErrorCode::RequestNotSupported => "request_not_supported",
            OAuthErrorCode::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            OAuthErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidToken => "invalid_token",
            OAuthErrorCode::InsufficientScope => "insufficient_scope",
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol error: its code and a description that is safe to show the
/// client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, description)
    }

    /// The description as `error_description` may carry it. RFC 6749 §4.1.2.1
    /// and §5.2 allow only `%x20-21 / %x23-5B / %x5D-7E` (printable ASCII
    /// without `"` and `\`, so it also fits a quoted `WWW-Authenticate`
    /// parameter, RFC 6750 §3); every other character becomes `?`.
    pub fn description_wire(&self) -> String {
        self.description
            .chars()
            .map(|c| if is_description_char(c) { c } else { '?' })
            .collect()
    }
}

fn is_description_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_written_as_the_rfcs_spell_them() {
        use OAuthErrorCode::*;
        let all = [
            (InvalidRequest, "invalid_request"),
            (UnauthorizedClient, "unauthorized_client"),
            (AccessDenied, "access_denied"),
            (UnsupportedResponseType, "unsupported_response_type"),
            (InvalidScope, "invalid_scope"),
            (ServerError, "server_error"),
            (TemporarilyUnavailable, "temporarily_unavailable"),
            (InteractionRequired, "interaction_required"),
            (LoginRequired, "login_required"),
            (ConsentRequired, "consent_required"),
            (RequestNotSupported, "request_not_supported"),
            (RequestUriNotSupported, "request_uri_not_supported"),
            (InvalidClient, "invalid_client"),
            (InvalidGrant, "invalid_grant"),
            (UnsupportedGrantType, "unsupported_grant_type"),
            (InvalidToken, "invalid_token"),
            (InsufficientScope, "insufficient_scope"),
        ];
        for (code, wire) in all {
            assert_eq!(code.as_str(), wire);
            assert_eq!(code.to_string(), wire);
        }
    }

    #[test]
    fn constructors_pick_their_code() {
        assert_eq!(
            OAuthError::invalid_request("x").code,
            OAuthErrorCode::InvalidRequest
        );
        assert_eq!(
            OAuthError::invalid_grant("x").code,
            OAuthErrorCode::InvalidGrant
        );
        assert_eq!(
            OAuthError::invalid_scope("x").code,
            OAuthErrorCode::InvalidScope
        );
        assert_eq!(
            OAuthError::invalid_request("bad thing").to_string(),
            "invalid_request: bad thing"
        );
    }

    /// RFC 6749 §5.2's character set for `error_description`.
    #[test]
    fn description_wire_keeps_only_the_allowed_characters() {
        let e = OAuthError::invalid_request("a \"quoted\" back\\slash\nnew line é ~!#[]");
        assert_eq!(
            e.description_wire(),
            "a ?quoted? back?slash?new line ? ~!#[]"
        );
        let plain = OAuthError::invalid_request("code_challenge required");
        assert_eq!(plain.description_wire(), "code_challenge required");
    }
}

//! The grant types Stepgate implements (RFC 6749 §1.3, §4.1, §4.4, §6),
//! parsed once from `grant_type`: the one list of grants. A new grant (the
//! device grant, RFC 8628) is a variant here; the compiler then points at
//! every `match` that must handle it.

/// A grant type, by its RFC 6749 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// RFC 6749 §4.1.3: an authorization code for tokens.
    AuthorizationCode,
    /// RFC 6749 §6: a refresh token for new tokens.
    RefreshToken,
    /// RFC 6749 §4.4: a confidential client for itself.
    ClientCredentials,
}

impl GrantType {
    /// Every grant type, in the order discovery lists them.
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    /// The `grant_type` value (RFC 6749 §4.1.3, §4.4.2, §6).
    pub const fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    /// The grant a `grant_type` value names; `None` for any other value
    /// (`unsupported_grant_type`, RFC 6749 §5.2). Exact and case-sensitive.
    pub fn parse(value: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(GrantType::parse("password"), None);
        assert_eq!(GrantType::parse("Authorization_Code"), None);
        assert_eq!(GrantType::parse("authorization_code "), None);
        assert_eq!(GrantType::parse(""), None);
    }
}

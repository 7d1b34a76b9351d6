//! Who may introspect what (RFC 7662 §4: the server decides whether a
//! token may be introspected by the caller, and a refusal looks like an
//! inactive token, §2.2). Pure: the facts are passed in.
//!
//! - A refresh token is the client's own business: only the client it was
//!   issued to may introspect it (nobody else ever needs to, and its `sub`
//!   and scope are the user's grant to that client).
//! - Access tokens and personal API keys are for resource servers: only a
//!   client registered for introspection (`client create --introspect`) may
//!   introspect them, whichever client the token was issued to.
//! - The client an access token was issued to may not introspect it without
//!   that registration. An access token is opaque to its client (RFC 9068
//!   §6, RFC 6749 §1.4), which has the token response and the ID token for
//!   what it needs; introspection would only add an oracle for whether a
//!   token it holds (or was handed) is still live. The stricter reading of
//!   §4 costs a client little: a client that is also a resource server
//!   registers as one.

/// A token as introspection found it, with what the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A refresh token, issued to the client `issued_to`.
    RefreshToken { issued_to: &'a str },
    /// An RFC 9068 access token (of any client).
    AccessToken,
    /// A user's personal API key.
    ApiKey,
}

/// The authenticated client asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    pub client_id: &'a str,
    /// Registered for introspection (a resource server).
    pub resource_server: bool,
}

/// Whether `caller` may learn what `token` is (RFC 7662 §4). `false` is
/// answered `{"active": false}`, as for an unknown token.
pub fn may_introspect(caller: Caller<'_>, token: Presented<'_>) -> bool {
    match token {
        Presented::RefreshToken { issued_to } => issued_to == caller.client_id,
        Presented::AccessToken | Presented::ApiKey => caller.resource_server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RP: Caller<'static> = Caller {
        client_id: "rp1",
        resource_server: false,
    };
    const OTHER: Caller<'static> = Caller {
        client_id: "rp2",
        resource_server: false,
    };
    const RS: Caller<'static> = Caller {
        client_id: "rs",
        resource_server: true,
    };
    const REFRESH: Presented<'static> = Presented::RefreshToken { issued_to: "rp1" };

    #[test]
    fn a_refresh_token_only_by_its_own_client() {
        assert!(may_introspect(RP, REFRESH));
        assert!(!may_introspect(OTHER, REFRESH));
        // Not even a resource server: a refresh token is never for one.
        assert!(!may_introspect(RS, REFRESH));
    }

    #[test]
    fn an_access_token_only_by_a_resource_server() {
        assert!(may_introspect(RS, Presented::AccessToken));
        assert!(!may_introspect(OTHER, Presented::AccessToken));
        // Its own client neither, without the registration.
        assert!(!may_introspect(RP, Presented::AccessToken));
    }

    #[test]
    fn an_api_key_only_by_a_resource_server() {
        assert!(may_introspect(RS, Presented::ApiKey));
        assert!(!may_introspect(RP, Presented::ApiKey));
        assert!(!may_introspect(OTHER, Presented::ApiKey));
    }
}

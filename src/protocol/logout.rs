//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the logout
//! request, and the rules that decide whether it ends the session at once or
//! asks the person first, and where the browser may go afterwards.
//!
//! The rules in one place (§2, §3, §4 and RFC 9700 §4.1.3):
//! 1. an `id_token_hint` counts only if we signed it (checked by the caller,
//!    an expired one is fine) and its `aud` equals `client_id` when both are
//!    sent (`check_hint_client`);
//! 2. the client is the hint's `aud`, else `client_id` (`logout_client_id`);
//! 3. `post_logout_redirect_uri` is used only if that client registered it,
//!    character for character; otherwise there is no redirect at all;
//! 4. the session ends at once only for a valid hint naming the signed-in
//!    user (or when nobody is signed in); anything else is a confirmation
//!    form, so a forged link cannot sign anyone out (`decide_logout`).

use crate::protocol::authorize::{MAX_PARAM_CHARS, RawParams, redirect_with};
use crate::protocol::jwt::IdTokenClaims;

/// The longest `id_token_hint` accepted, in characters: ours are about a
/// kilobyte, and the confirmation page repeats it in a hidden field.
pub const MAX_HINT_CHARS: usize = 8192;

/// The logout request's parameters (§2), each present once or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub state: Option<String>,
}

impl LogoutRequest {
    /// No logout parameter at all: the plain sign-out button of our own pages.
    pub fn is_empty(&self) -> bool {
        self == &LogoutRequest::default()
    }

    /// The parameters that were sent, in a fixed order: what the
    /// confirmation form carries on to its POST.
    pub fn params(&self) -> Vec<(&'static str, &str)> {
        [
            ("id_token_hint", &self.id_token_hint),
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
            ("client_id", &self.client_id),
            ("state", &self.state),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }
}

/// Why a logout request cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutRequestError {
    /// A parameter given more than once (RFC 6749 §3.1, which §2 builds on).
    Repeated(&'static str),
    /// A parameter longer than we are willing to echo.
    TooLong(&'static str),
}

impl std::fmt::Display for LogoutRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogoutRequestError::Repeated(name) => write!(f, "{name} is given more than once"),
            LogoutRequestError::TooLong(name) => write!(f, "{name} is too long"),
        }
    }
}

/// Reads the four logout parameters; an empty value counts as absent, a
/// repeated or oversized one makes the request unreadable. Other parameters
/// (`ui_locales`, `logout_hint`) are ignored, as §2 allows.
pub fn parse_logout_request(params: &RawParams) -> Result<LogoutRequest, LogoutRequestError> {
    let read = |name: &'static str, max: usize| -> Result<Option<String>, LogoutRequestError> {
        if params.repeated.contains(name) {
            return Err(LogoutRequestError::Repeated(name));
        }
        match params.get(name) {
            Some(value) if value.chars().count() > max => Err(LogoutRequestError::TooLong(name)),
            value => Ok(value.map(str::to_owned)),
        }
    };
    Ok(LogoutRequest {
        id_token_hint: read("id_token_hint", MAX_HINT_CHARS)?,
        post_logout_redirect_uri: read("post_logout_redirect_uri", MAX_PARAM_CHARS)?,
        client_id: read("client_id", MAX_PARAM_CHARS)?,
        state: read("state", MAX_PARAM_CHARS)?,
    })
}

/// The hint was issued to another client than `client_id` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintForAnotherClient;

/// §2: "If both client_id and id_token_hint are present, the OP MUST verify
/// that the Client Identifier matches the one used when issuing the ID
/// Token." A hint that fails this is no hint.
pub fn check_hint_client(
    hint: &IdTokenClaims,
    client_id: Option<&str>,
) -> Result<(), HintForAnotherClient> {
    match client_id {
        Some(id) if id != hint.aud => Err(HintForAnotherClient),
        _ => Ok(()),
    }
}

/// The client the request speaks for: the (valid) hint's audience, else
/// `client_id`.
pub fn logout_client_id<'a>(
    hint: Option<&'a IdTokenClaims>,
    request: &'a LogoutRequest,
) -> Option<&'a str> {
    hint.map(|h| h.aud.as_str())
        .or(request.client_id.as_deref())
}

/// §3: the registered `post_logout_redirect_uri` with `state` added to its
/// query when the request had one.
pub fn post_logout_location(uri: &str, state: Option<&str>) -> String {
    match state {
        Some(state) => redirect_with(uri, &[("state", state)]),
        None => uri.to_owned(),
    }
}

/// Why part of a logout request went unused. §3 wants an unusable
/// `post_logout_redirect_uri` ignored, not reported to the user; the
/// operator still needs to know why a logout did not go back to the client,
/// so the reason is logged and written into the audit event (never a secret:
/// not the hint, not the URI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// An `id_token_hint` we did not sign, or issued to another client than
    /// `client_id` names (rule 1): treated as no hint.
    InvalidHint,
    /// A `post_logout_redirect_uri` with neither a valid hint nor a
    /// `client_id`, so no client to check it against (rule 2).
    NoClient,
    /// A `post_logout_redirect_uri` for a client we do not know.
    UnknownClient,
    /// A `post_logout_redirect_uri` the client did not register, character
    /// for character (rule 3; a trailing slash is enough).
    NotRegistered,
}

impl Ignored {
    pub fn reason(self) -> &'static str {
        match self {
            Ignored::InvalidHint => {
                "no valid id_token_hint (not signed by us, or for another client)"
            }
            Ignored::NoClient => {
                "post_logout_redirect_uri ignored: no valid id_token_hint or client_id names the client"
            }
            Ignored::UnknownClient => "post_logout_redirect_uri ignored: unknown client",
            Ignored::NotRegistered => "post_logout_redirect_uri not registered for this client",
        }
    }
}

/// What a logout request does to the browser's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutDecision {
    /// End it now: the relying party proved it knows this user's sign-in.
    EndSession,
    /// Ask first, with a POST form (§4: the OP SHOULD ask the End-User).
    Confirm,
}

/// `hint` is a verified hint (see `check_hint_client`); `signed_in` the user
/// behind the browser's session, if any. A hint for someone else than the
/// signed-in user does not sign that user out without asking (§2: the OP
/// asks when the hint does not match the current session).
pub fn decide_logout(hint: Option<&IdTokenClaims>, signed_in: Option<&str>) -> LogoutDecision {
    match (hint, signed_in) {
        (Some(_), None) => LogoutDecision::EndSession,
        (Some(hint), Some(user)) if hint.sub == user => LogoutDecision::EndSession,
        _ => LogoutDecision::Confirm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> RawParams {
        RawParams::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    fn hint(sub: &str, aud: &str) -> IdTokenClaims {
        IdTokenClaims {
            iss: "https://id.example.com".into(),
            sub: sub.into(),
            aud: aud.into(),
            exp: 2,
            iat: 1,
            auth_time: 1,
            nonce: None,
            acr: "urn:stepgate:acr:pwd".into(),
            amr: vec!["pwd".into()],
            at_hash: "x".into(),
            sid: "sid".into(),
            name: None,
            email: None,
            email_verified: None,
        }
    }

    #[test]
    fn reads_the_four_parameters_and_ignores_others() {
        let request = parse_logout_request(&params(&[
            ("id_token_hint", "h"),
            ("post_logout_redirect_uri", "https://rp.example/bye"),
            ("client_id", "c"),
            ("state", "s"),
            ("ui_locales", "fr"),
        ]))
        .unwrap();
        assert_eq!(
            request.params(),
            vec![
                ("id_token_hint", "h"),
                ("post_logout_redirect_uri", "https://rp.example/bye"),
                ("client_id", "c"),
                ("state", "s"),
            ]
        );
        assert!(!request.is_empty());
    }

    #[test]
    fn empty_values_count_as_absent() {
        let request = parse_logout_request(&params(&[("state", ""), ("client_id", "")])).unwrap();
        assert!(request.is_empty());
        assert!(request.params().is_empty());
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        assert_eq!(
            parse_logout_request(&params(&[("state", "a"), ("state", "b")])),
            Err(LogoutRequestError::Repeated("state"))
        );
    }

    #[test]
    fn an_oversized_parameter_is_refused() {
        let long = "a".repeat(MAX_HINT_CHARS + 1);
        assert_eq!(
            parse_logout_request(&params(&[("id_token_hint", &long)])),
            Err(LogoutRequestError::TooLong("id_token_hint"))
        );
        let long = "a".repeat(MAX_PARAM_CHARS + 1);
        assert_eq!(
            parse_logout_request(&params(&[("state", &long)])),
            Err(LogoutRequestError::TooLong("state"))
        );
    }

    #[test]
    fn the_hint_must_be_for_the_named_client() {
        let h = hint("u", "a");
        assert_eq!(check_hint_client(&h, None), Ok(()));
        assert_eq!(check_hint_client(&h, Some("a")), Ok(()));
        assert_eq!(check_hint_client(&h, Some("b")), Err(HintForAnotherClient));
    }

    #[test]
    fn the_client_is_the_hints_audience_else_client_id() {
        let request = LogoutRequest {
            client_id: Some("named".into()),
            ..Default::default()
        };
        let h = hint("u", "aud");
        assert_eq!(logout_client_id(Some(&h), &request), Some("aud"));
        assert_eq!(logout_client_id(None, &request), Some("named"));
        assert_eq!(logout_client_id(None, &LogoutRequest::default()), None);
    }

    #[test]
    fn state_is_added_to_the_redirect() {
        assert_eq!(
            post_logout_location("https://rp.example/bye", Some("a b")),
            "https://rp.example/bye?state=a+b"
        );
        assert_eq!(
            post_logout_location("https://rp.example/bye?x=1", Some("s")),
            "https://rp.example/bye?x=1&state=s"
        );
        assert_eq!(
            post_logout_location("https://rp.example/bye", None),
            "https://rp.example/bye"
        );
    }

    #[test]
    fn only_a_hint_for_the_signed_in_user_ends_the_session_at_once() {
        let h = hint("ada", "c");
        assert_eq!(
            decide_logout(Some(&h), Some("ada")),
            LogoutDecision::EndSession
        );
        assert_eq!(decide_logout(Some(&h), None), LogoutDecision::EndSession);
        assert_eq!(
            decide_logout(Some(&h), Some("bob")),
            LogoutDecision::Confirm
        );
        assert_eq!(decide_logout(None, Some("ada")), LogoutDecision::Confirm);
        assert_eq!(decide_logout(None, None), LogoutDecision::Confirm);
    }
}

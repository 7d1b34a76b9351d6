//! The rules of the token endpoint's user grants, as pure checks over facts
//! the service has loaded: the `authorization_code` grant (RFC 6749
//! §4.1.3, RFC 7636 §4.6, RFC 9700 §2.1.1) and the `refresh_token` grant
//! (RFC 6749 §6, RFC 9700 §4.14.2). The order of the checks is part of the
//! rule: it decides what a client that is not the owner can learn.

use crate::protocol::error::OAuthError;
use crate::protocol::pkce;
use crate::protocol::scope::Scopes;

/// Why a grant is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Answer with this error; nothing else happens.
    Refuse(OAuthError),
    /// The code or refresh token was used before (RFC 6749 §4.1.2, RFC 9700
    /// §4.14.2): revoke what it bought, then answer `invalid_grant`.
    Replayed,
}

impl Rejection {
    fn grant(description: &str) -> Self {
        Rejection::Refuse(OAuthError::invalid_grant(description))
    }

    /// The answer a replay ends with, once what it bought is revoked.
    pub fn replayed_error(what: Presented) -> OAuthError {
        OAuthError::invalid_grant(match what {
            Presented::Code => "the code was already used",
            Presented::RefreshToken => "the refresh token was already used",
        })
    }
}

/// What a replay was of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    Code,
    RefreshToken,
}

/// What any client but the code's own hears about a code, known or not.
pub const CODE_NOT_VALID: &str = "the code is not valid";
/// What is answered for a refresh token that is not one we issued.
pub const REFRESH_NOT_VALID: &str = "the refresh token is not valid";

/// The user a grant is for, as the store found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Active,
    Disabled,
    Gone,
}

impl Subject {
    pub fn of(disabled: Option<bool>) -> Self {
        match disabled {
            None => Subject::Gone,
            Some(true) => Subject::Disabled,
            Some(false) => Subject::Active,
        }
    }

    fn check(self) -> Result<(), Rejection> {
        match self {
            Subject::Active => Ok(()),
            Subject::Disabled => Err(Rejection::grant("the user is disabled")),
            Subject::Gone => Err(Rejection::grant("the user no longer exists")),
        }
    }
}

/// A stored authorization code, as far as the rules need it.
#[derive(Debug, Clone)]
pub struct CodeFacts<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub used: bool,
    pub expires_at: i64,
    pub code_challenge: Option<&'a str>,
    pub subject: Subject,
}

/// What the client sent with the code.
#[derive(Debug, Clone, Copy)]
pub struct CodeRedemption<'a> {
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// RFC 6749 §4.1.3: whether `sent` may redeem the code `code`.
pub fn check_code(
    code: &CodeFacts<'_>,
    sent: &CodeRedemption<'_>,
    now: i64,
) -> Result<(), Rejection> {
    // The code must have been issued to the authenticated client, and
    // redirect_uri must be the authorization request's. Both come before
    // anything else about the code: to any other client it is an unknown
    // code (the same words), so a foreign client learns nothing (used,
    // expired) and cannot set off the replay revocation against the client
    // that owns the code.
    if code.client_id != sent.client_id {
        return Err(Rejection::grant(CODE_NOT_VALID));
    }
    if sent.redirect_uri != Some(code.redirect_uri) {
        return Err(Rejection::grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    // RFC 6749 §4.1.2, RFC 9700 §4.5: the code's own client presenting it
    // again revokes what it bought (one of the two redemptions was not the
    // client's).
    if code.used {
        return Err(Rejection::Replayed);
    }
    if code.expires_at <= now {
        return Err(Rejection::grant("the code has expired"));
    }
    match (code.code_challenge, sent.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            pkce::check_code_verifier(verifier).map_err(Rejection::Refuse)?;
            if !pkce::verify_s256(verifier, challenge) {
                return Err(Rejection::grant(
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
        (Some(_), None) => return Err(Rejection::grant("code_verifier is required")),
        // RFC 9700 §2.1.1: a verifier without a challenge is refused, so a
        // PKCE downgrade cannot pass unnoticed.
        (None, Some(_)) => {
            return Err(Rejection::grant(
                "code_verifier sent but no code_challenge was",
            ));
        }
        (None, None) => {}
    }
    code.subject.check()
}

/// A stored refresh token and what its grant rests on.
#[derive(Debug, Clone)]
pub struct RefreshFacts<'a> {
    pub client_id: &'a str,
    pub revoked: bool,
    pub used: bool,
    pub idle_expires_at: i64,
    pub family_expires_at: i64,
    pub subject: Subject,
    /// The scope the family was granted.
    pub granted: &'a Scopes,
    /// True for a first-party client (no consent is kept for it).
    pub first_party: bool,
    /// The scope the user's remembered consent covers, if there is one.
    pub consented: Option<&'a Scopes>,
    /// Whether the second factor the sign-in rested on still exists
    /// (`service::second_factor::grant_still_stands`).
    pub second_factor_stands: bool,
}

/// RFC 6749 §6: whether `client_id` may refresh with the token, and the
/// scope of the new access token: the granted one, or the narrower `asked`
/// (never a wider one).
pub fn check_refresh(
    token: &RefreshFacts<'_>,
    client_id: &str,
    asked: Option<&str>,
    now: i64,
) -> Result<Scopes, Rejection> {
    if token.client_id != client_id {
        return Err(Rejection::grant(
            "the refresh token was issued to another client",
        ));
    }
    if token.revoked {
        return Err(Rejection::grant("the refresh token was revoked"));
    }
    // RFC 9700 §4.14.2: a rotated token presented again is reuse.
    if token.used {
        return Err(Rejection::Replayed);
    }
    if token.idle_expires_at <= now || token.family_expires_at <= now {
        return Err(Rejection::grant("the refresh token has expired"));
    }
    token.subject.check()?;
    if !token.first_party && !token.consented.is_some_and(|c| token.granted.is_subset(c)) {
        return Err(Rejection::grant("the user withdrew consent"));
    }
    // A grant that rests on a second factor ends when that factor is reset.
    if !token.second_factor_stands {
        return Err(Rejection::grant("two-factor authentication was reset"));
    }
    match asked {
        None => Ok(token.granted.clone()),
        Some(asked) => {
            let asked = Scopes::parse(asked);
            if !asked.is_subset(token.granted) {
                return Err(Rejection::Refuse(OAuthError::invalid_scope(
                    "the requested scope exceeds what was granted",
                )));
            }
            Ok(asked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::OAuthErrorCode;

    const NOW: i64 = 1_800_000_000;
    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn code() -> CodeFacts<'static> {
        CodeFacts {
            client_id: "app",
            redirect_uri: "https://app.example/cb",
            used: false,
            expires_at: NOW + 60,
            code_challenge: Some(CHALLENGE),
            subject: Subject::Active,
        }
    }

    fn sent() -> CodeRedemption<'static> {
        CodeRedemption {
            client_id: "app",
            redirect_uri: Some("https://app.example/cb"),
            code_verifier: Some(VERIFIER),
        }
    }

    fn refused(r: Result<(), Rejection>) -> (OAuthErrorCode, String) {
        match r {
            Err(Rejection::Refuse(e)) => (e.code, e.description),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_code_with_its_client_redirect_and_verifier_is_redeemed() {
        assert_eq!(check_code(&code(), &sent(), NOW), Ok(()));
        let plain = CodeFacts {
            code_challenge: None,
            ..code()
        };
        let no_verifier = CodeRedemption {
            code_verifier: None,
            ..sent()
        };
        assert_eq!(check_code(&plain, &no_verifier, NOW), Ok(()));
    }

    #[test]
    fn another_clients_code_is_an_unknown_code_even_when_used_or_expired() {
        let foreign = CodeRedemption {
            client_id: "other",
            ..sent()
        };
        for facts in [
            code(),
            CodeFacts {
                used: true,
                ..code()
            },
            CodeFacts {
                expires_at: NOW,
                ..code()
            },
        ] {
            assert_eq!(
                refused(check_code(&facts, &foreign, NOW)),
                (OAuthErrorCode::InvalidGrant, CODE_NOT_VALID.to_owned())
            );
        }
    }

    #[test]
    fn the_redirect_uri_must_be_the_requests_and_present() {
        for redirect_uri in [None, Some("https://app.example/cb/"), Some("")] {
            let r = CodeRedemption {
                redirect_uri,
                ..sent()
            };
            let (code_, description) = refused(check_code(&code(), &r, NOW));
            assert_eq!(code_, OAuthErrorCode::InvalidGrant);
            assert!(description.contains("redirect_uri"), "{description}");
        }
    }

    #[test]
    fn a_used_code_is_a_replay_before_expiry_or_pkce_are_looked_at() {
        let used = CodeFacts {
            used: true,
            expires_at: NOW - 1,
            ..code()
        };
        let wrong = CodeRedemption {
            code_verifier: Some("x"),
            ..sent()
        };
        assert_eq!(check_code(&used, &wrong, NOW), Err(Rejection::Replayed));
    }

    #[test]
    fn a_code_expires_at_its_expiry_second() {
        let facts = CodeFacts {
            expires_at: NOW,
            ..code()
        };
        assert_eq!(
            refused(check_code(&facts, &sent(), NOW)).1,
            "the code has expired"
        );
        let facts = CodeFacts {
            expires_at: NOW + 1,
            ..code()
        };
        assert_eq!(check_code(&facts, &sent(), NOW), Ok(()));
    }

    #[test]
    fn pkce_verifier_must_match_be_present_and_not_appear_from_nowhere() {
        let wrong = CodeRedemption {
            code_verifier: Some("a-different-verifier-of-the-allowed-length-xxxxx"),
            ..sent()
        };
        assert_eq!(
            refused(check_code(&code(), &wrong, NOW)).1,
            "code_verifier does not match the code_challenge"
        );
        let missing = CodeRedemption {
            code_verifier: None,
            ..sent()
        };
        assert_eq!(
            refused(check_code(&code(), &missing, NOW)).1,
            "code_verifier is required"
        );
        let downgrade = CodeFacts {
            code_challenge: None,
            ..code()
        };
        assert_eq!(
            refused(check_code(&downgrade, &sent(), NOW)).1,
            "code_verifier sent but no code_challenge was"
        );
        // RFC 7636 §4.1: a verifier of the wrong shape says so.
        let short = CodeRedemption {
            code_verifier: Some("short"),
            ..sent()
        };
        assert!(
            refused(check_code(&code(), &short, NOW))
                .1
                .contains("43 to 128")
        );
    }

    #[test]
    fn a_code_for_a_disabled_or_deleted_user_is_refused_last() {
        for (subject, description) in [
            (Subject::Disabled, "the user is disabled"),
            (Subject::Gone, "the user no longer exists"),
        ] {
            let facts = CodeFacts { subject, ..code() };
            assert_eq!(refused(check_code(&facts, &sent(), NOW)).1, description);
            // An expired code says so first.
            let expired = CodeFacts {
                expires_at: NOW,
                ..facts
            };
            assert_eq!(
                refused(check_code(&expired, &sent(), NOW)).1,
                "the code has expired"
            );
        }
        assert_eq!(Subject::of(None), Subject::Gone);
        assert_eq!(Subject::of(Some(true)), Subject::Disabled);
        assert_eq!(Subject::of(Some(false)), Subject::Active);
    }

    fn granted() -> Scopes {
        Scopes::parse("openid email offline_access")
    }

    fn token<'a>(granted: &'a Scopes, consented: Option<&'a Scopes>) -> RefreshFacts<'a> {
        RefreshFacts {
            client_id: "app",
            revoked: false,
            used: false,
            idle_expires_at: NOW + 60,
            family_expires_at: NOW + 3600,
            subject: Subject::Active,
            granted,
            first_party: false,
            consented,
            second_factor_stands: true,
        }
    }

    fn refused_refresh(r: Result<Scopes, Rejection>) -> (OAuthErrorCode, String) {
        match r {
            Err(Rejection::Refuse(e)) => (e.code, e.description),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_live_refresh_token_keeps_its_scope_or_narrows_it() {
        let g = granted();
        let facts = token(&g, Some(&g));
        assert_eq!(check_refresh(&facts, "app", None, NOW), Ok(g.clone()));
        assert_eq!(
            check_refresh(&facts, "app", Some("openid"), NOW),
            Ok(Scopes::parse("openid"))
        );
        assert_eq!(
            refused_refresh(check_refresh(&facts, "app", Some("openid profile"), NOW)).0,
            OAuthErrorCode::InvalidScope
        );
    }

    #[test]
    fn another_clients_refresh_token_is_refused_before_its_state_shows() {
        let g = granted();
        let facts = RefreshFacts {
            used: true,
            revoked: true,
            ..token(&g, Some(&g))
        };
        assert_eq!(
            refused_refresh(check_refresh(&facts, "other", None, NOW)).1,
            "the refresh token was issued to another client"
        );
    }

    #[test]
    fn revoked_beats_used_and_used_is_reuse() {
        let g = granted();
        let both = RefreshFacts {
            used: true,
            revoked: true,
            ..token(&g, Some(&g))
        };
        assert_eq!(
            refused_refresh(check_refresh(&both, "app", None, NOW)).1,
            "the refresh token was revoked"
        );
        let used = RefreshFacts {
            used: true,
            idle_expires_at: NOW - 10,
            ..token(&g, Some(&g))
        };
        assert_eq!(
            check_refresh(&used, "app", None, NOW),
            Err(Rejection::Replayed)
        );
    }

    #[test]
    fn a_refresh_token_expires_when_idle_or_when_its_family_ends() {
        let g = granted();
        for facts in [
            RefreshFacts {
                idle_expires_at: NOW,
                ..token(&g, Some(&g))
            },
            RefreshFacts {
                family_expires_at: NOW,
                ..token(&g, Some(&g))
            },
        ] {
            assert_eq!(
                refused_refresh(check_refresh(&facts, "app", None, NOW)).1,
                "the refresh token has expired"
            );
        }
    }

    #[test]
    fn withdrawn_or_narrowed_consent_ends_a_third_party_grant_only() {
        let g = granted();
        let narrower = Scopes::parse("openid");
        for consented in [None, Some(&narrower)] {
            let facts = token(&g, consented);
            assert_eq!(
                refused_refresh(check_refresh(&facts, "app", None, NOW)).1,
                "the user withdrew consent"
            );
            let first_party = RefreshFacts {
                first_party: true,
                ..facts
            };
            assert!(check_refresh(&first_party, "app", None, NOW).is_ok());
        }
    }

    #[test]
    fn a_refresh_for_a_disabled_user_or_a_reset_second_factor_is_refused() {
        let g = granted();
        let disabled = RefreshFacts {
            subject: Subject::Disabled,
            ..token(&g, Some(&g))
        };
        assert_eq!(
            refused_refresh(check_refresh(&disabled, "app", None, NOW)).1,
            "the user is disabled"
        );
        let reset = RefreshFacts {
            second_factor_stands: false,
            ..token(&g, Some(&g))
        };
        assert_eq!(
            refused_refresh(check_refresh(&reset, "app", None, NOW)).1,
            "two-factor authentication was reset"
        );
    }

    #[test]
    fn a_replay_ends_in_invalid_grant_naming_what_was_replayed() {
        assert_eq!(
            Rejection::replayed_error(Presented::Code).description,
            "the code was already used"
        );
        assert_eq!(
            Rejection::replayed_error(Presented::RefreshToken).code,
            OAuthErrorCode::InvalidGrant
        );
    }
}

//! The interaction policy (OpenID Connect Core §3.1.2.1–§3.1.2.6) as one
//! pure decision: from what the service has loaded about a stored
//! authorization request and the browser's session, the next step (sign
//! in, second factor, enrol one, consent, or issue the code) or the error
//! a `prompt=none` request gets instead of a page. The checks run in a
//! fixed order, one at a time; the first that is not met decides.

use crate::protocol::authorize::AuthorizationRequest;
use crate::protocol::error::OAuthErrorCode;
use crate::protocol::scope::Scopes;

/// What a sign-in that owes a second factor must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// Ask for a second factor the user has (a code or a passkey).
    Challenge,
    /// The user has none and the client demands one: enrol first.
    Enroll,
    /// phr is demanded: a passkey the user has, nothing else.
    Passkey,
    /// phr is demanded and the user has no passkey: add one, then use it.
    EnrollPasskey,
    /// phr is demanded and cannot be met: passkeys are not offered here.
    Unmeetable,
}

/// What the policy is decided from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub request: &'a AuthorizationRequest,
    /// When the interaction was stored.
    pub created_at: i64,
    /// True while `/authorize` answers the request that created it: no
    /// sign-in or consent can have been given for it yet, whatever their
    /// timestamps (whole seconds) say.
    pub arriving: bool,
    /// The browser's session, if someone is signed in.
    pub session: Option<SessionFacts<'a>>,
}

/// The signed-in session, and what the service found about it.
#[derive(Debug, Clone)]
pub struct SessionFacts<'a> {
    /// When the password step was passed (`auth_time`).
    pub pwd_at: i64,
    /// With `id_token_hint`: whether the hint names this session's user.
    pub hint_matches: Option<bool>,
    /// The second factor this session still owes for the request
    /// (`service::second_factor::owed`).
    pub owed: Option<Owed>,
    /// First-party clients are not asked for consent.
    pub first_party: bool,
    /// The user's remembered consent to the client.
    pub consent: Option<Consent<'a>>,
}

/// A remembered consent.
#[derive(Debug, Clone, Copy)]
pub struct Consent<'a> {
    pub scope: &'a Scopes,
    pub granted_at: i64,
}

/// The next step of an interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Login,
    SecondFactor,
    /// The user has no second factor but this sign-in needs one.
    EnrollSecondFactor,
    /// A phishing-resistant sign-in is demanded: use a passkey.
    Passkey,
    /// ... and the user has none yet: add one.
    EnrollPasskey,
    Consent,
    /// Every check is met: spend the interaction and issue a code.
    Issue,
    /// Redirect to the client with this error (OpenID Connect Core
    /// §3.1.2.6: `prompt=none` and a page would be needed).
    Refuse(OAuthErrorCode, &'static str),
}

/// Decides the next step at `now`.
pub fn decide(facts: &Facts<'_>, now: i64) -> Next {
    let request = facts.request;
    let none = request.prompt.none;
    // A page, or for prompt=none the error that stands in for it.
    let page = |page: Next, code: OAuthErrorCode, description: &'static str| {
        if none {
            Next::Refuse(code, description)
        } else {
            page
        }
    };

    // 1. A session at all.
    let Some(session) = &facts.session else {
        return page(
            Next::Login,
            OAuthErrorCode::LoginRequired,
            "no one is signed in",
        );
    };

    // 2. A fresh enough password step: prompt=login and max_age ask for a
    // sign-in during this request (a new auth_time). When the request has
    // just arrived no session was signed in for it, even one from the same
    // second.
    let signed_in_for_this = !facts.arriving && session.pwd_at >= facts.created_at;
    // max_age=0 is prompt=login (OpenID Connect Core issue #993), even
    // when the last sign-in was in this very second.
    let too_old = request
        .max_age
        .is_some_and(|max| max == 0 || now.saturating_sub(session.pwd_at) > max as i64);
    if (request.prompt.login || too_old) && !signed_in_for_this {
        return page(
            Next::Login,
            OAuthErrorCode::LoginRequired,
            "a new sign-in is required",
        );
    }

    // 3. id_token_hint names the expected user (§3.1.2.1). Someone who
    // signed in again during this request has answered it.
    if session.hint_matches == Some(false) && (none || !signed_in_for_this) {
        return page(
            Next::Login,
            OAuthErrorCode::LoginRequired,
            "the signed-in user is not the one id_token_hint names",
        );
    }

    // 4. The second factor, when required and not yet passed in this
    // session.
    if let Some(owed) = session.owed {
        let step = match owed {
            Owed::Challenge => Next::SecondFactor,
            Owed::Enroll => Next::EnrollSecondFactor,
            Owed::Passkey => Next::Passkey,
            Owed::EnrollPasskey => Next::EnrollPasskey,
            // No page can help: OpenID Connect Unmet Authentication
            // Requirements 1.0 §3, whatever the prompt.
            Owed::Unmeetable => {
                return Next::Refuse(
                    OAuthErrorCode::UnmetAuthenticationRequirements,
                    "a phishing-resistant sign-in (a passkey) is not available here",
                );
            }
        };
        return page(
            step,
            OAuthErrorCode::InteractionRequired,
            "a second factor is required",
        );
    }

    // 5. Consent, unless first-party or remembered for these scopes
    // (prompt=consent asks again: satisfied only by a consent given during
    // this request).
    if !session.first_party {
        let covered = session.consent.is_some_and(|c| {
            request.scope.is_subset(c.scope)
                && (!request.prompt.consent
                    || (!facts.arriving && c.granted_at >= facts.created_at))
        });
        if !covered {
            return page(
                Next::Consent,
                OAuthErrorCode::ConsentRequired,
                "consent is required",
            );
        }
    }

    // 6. Done.
    Next::Issue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::authorize::{Prompt, ResponseMode};

    const NOW: i64 = 1_800_000_000;
    const CREATED: i64 = NOW - 30;

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "app".into(),
            redirect_uri: "https://app.example/cb".into(),
            scope: Scopes::parse("openid email"),
            state: None,
            nonce: None,
            code_challenge: None,
            response_mode: ResponseMode::Query,
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
            id_token_hint: None,
            acr_values: Vec::new(),
        }
    }

    fn session(consented: &Scopes) -> SessionFacts<'_> {
        SessionFacts {
            pwd_at: NOW - 600,
            hint_matches: None,
            owed: None,
            first_party: false,
            consent: Some(Consent {
                scope: consented,
                granted_at: NOW - 600,
            }),
        }
    }

    fn facts<'a>(
        request: &'a AuthorizationRequest,
        session: Option<SessionFacts<'a>>,
    ) -> Facts<'a> {
        Facts {
            request,
            created_at: CREATED,
            arriving: false,
            session,
        }
    }

    fn none(mut request: AuthorizationRequest) -> AuthorizationRequest {
        request.prompt.none = true;
        request
    }

    #[test]
    fn a_signed_in_user_with_consent_gets_a_code() {
        let r = request();
        let consented = Scopes::parse("openid email profile");
        assert_eq!(
            decide(&facts(&r, Some(session(&consented))), NOW),
            Next::Issue
        );
        // First-party clients need no consent at all.
        let first = SessionFacts {
            first_party: true,
            consent: None,
            ..session(&consented)
        };
        assert_eq!(decide(&facts(&r, Some(first)), NOW), Next::Issue);
    }

    #[test]
    fn no_session_asks_for_sign_in_or_login_required() {
        let r = request();
        assert_eq!(decide(&facts(&r, None), NOW), Next::Login);
        let r = none(request());
        assert_eq!(
            decide(&facts(&r, None), NOW),
            Next::Refuse(OAuthErrorCode::LoginRequired, "no one is signed in")
        );
    }

    #[test]
    fn prompt_login_asks_again_until_a_sign_in_during_this_request() {
        let consented = Scopes::parse("openid email");
        let mut r = request();
        r.prompt.login = true;
        assert_eq!(
            decide(&facts(&r, Some(session(&consented))), NOW),
            Next::Login
        );
        let fresh = SessionFacts {
            pwd_at: CREATED,
            ..session(&consented)
        };
        assert_eq!(decide(&facts(&r, Some(fresh.clone())), NOW), Next::Issue);
        // While the request is arriving, a sign-in of the same second is
        // not one made for it.
        let arriving = Facts {
            arriving: true,
            ..facts(&r, Some(fresh))
        };
        assert_eq!(decide(&arriving, NOW), Next::Login);
    }

    #[test]
    fn max_age_counts_from_the_password_step_and_zero_means_now() {
        let consented = Scopes::parse("openid email");
        let mut r = request();
        r.max_age = Some(600);
        assert_eq!(
            decide(&facts(&r, Some(session(&consented))), NOW),
            Next::Issue
        );
        r.max_age = Some(599);
        assert_eq!(
            decide(&facts(&r, Some(session(&consented))), NOW),
            Next::Login
        );
        r.max_age = Some(0);
        let this_second = SessionFacts {
            pwd_at: NOW,
            ..session(&consented)
        };
        let arriving = Facts {
            arriving: true,
            ..facts(&r, Some(this_second))
        };
        assert_eq!(decide(&arriving, NOW), Next::Login);
        let r = {
            let mut r = none(request());
            r.max_age = Some(1);
            r
        };
        assert_eq!(
            decide(&facts(&r, Some(session(&consented))), NOW),
            Next::Refuse(OAuthErrorCode::LoginRequired, "a new sign-in is required")
        );
    }

    #[test]
    fn an_id_token_hint_for_someone_else_asks_for_sign_in_unless_just_answered() {
        let consented = Scopes::parse("openid email");
        let r = request();
        let other = SessionFacts {
            hint_matches: Some(false),
            ..session(&consented)
        };
        assert_eq!(decide(&facts(&r, Some(other.clone())), NOW), Next::Login);
        let answered = SessionFacts {
            pwd_at: CREATED + 1,
            ..other.clone()
        };
        assert_eq!(decide(&facts(&r, Some(answered.clone())), NOW), Next::Issue);
        let r = none(request());
        assert_eq!(
            decide(&facts(&r, Some(answered)), NOW),
            Next::Refuse(
                OAuthErrorCode::LoginRequired,
                "the signed-in user is not the one id_token_hint names"
            )
        );
        let same = SessionFacts {
            hint_matches: Some(true),
            ..session(&consented)
        };
        assert_eq!(decide(&facts(&r, Some(same)), NOW), Next::Issue);
    }

    #[test]
    fn an_owed_second_factor_is_asked_for_or_enrolled() {
        let consented = Scopes::parse("openid email");
        let r = request();
        for (owed, step) in [
            (Owed::Challenge, Next::SecondFactor),
            (Owed::Enroll, Next::EnrollSecondFactor),
            (Owed::Passkey, Next::Passkey),
            (Owed::EnrollPasskey, Next::EnrollPasskey),
        ] {
            let s = SessionFacts {
                owed: Some(owed),
                ..session(&consented)
            };
            assert_eq!(decide(&facts(&r, Some(s.clone())), NOW), step);
            let r = none(request());
            assert_eq!(
                decide(&facts(&r, Some(s)), NOW),
                Next::Refuse(
                    OAuthErrorCode::InteractionRequired,
                    "a second factor is required"
                )
            );
        }
    }

    #[test]
    fn phr_that_cannot_be_met_is_refused_whatever_the_prompt() {
        let consented = Scopes::parse("openid email");
        let s = SessionFacts {
            owed: Some(Owed::Unmeetable),
            ..session(&consented)
        };
        for r in [request(), none(request())] {
            assert!(matches!(
                decide(&facts(&r, Some(s.clone())), NOW),
                Next::Refuse(OAuthErrorCode::UnmetAuthenticationRequirements, _)
            ));
        }
    }

    #[test]
    fn the_second_factor_comes_before_consent() {
        let r = request();
        let s = SessionFacts {
            owed: Some(Owed::Challenge),
            consent: None,
            ..session(&Scopes::parse(""))
        };
        assert_eq!(decide(&facts(&r, Some(s)), NOW), Next::SecondFactor);
    }

    #[test]
    fn consent_is_asked_when_missing_narrower_or_prompted_again() {
        let r = request();
        let missing = SessionFacts {
            consent: None,
            ..session(&Scopes::parse(""))
        };
        assert_eq!(
            decide(&facts(&r, Some(missing.clone())), NOW),
            Next::Consent
        );
        let narrower = Scopes::parse("openid");
        assert_eq!(
            decide(&facts(&r, Some(session(&narrower))), NOW),
            Next::Consent
        );

        let mut again = request();
        again.prompt.consent = true;
        let wide = Scopes::parse("openid email");
        assert_eq!(
            decide(&facts(&again, Some(session(&wide))), NOW),
            Next::Consent
        );
        let given_now = SessionFacts {
            consent: Some(Consent {
                scope: &wide,
                granted_at: CREATED,
            }),
            ..session(&wide)
        };
        assert_eq!(decide(&facts(&again, Some(given_now)), NOW), Next::Issue);

        let r = none(request());
        assert_eq!(
            decide(&facts(&r, Some(missing)), NOW),
            Next::Refuse(OAuthErrorCode::ConsentRequired, "consent is required")
        );
    }
}

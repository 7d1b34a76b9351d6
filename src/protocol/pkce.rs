//! PKCE (RFC 7636), S256 only: RFC 9700 §2.1.1 says `plain` must not be used,
//! and discovery advertises `code_challenge_methods_supported: ["S256"]`.
//!
//! The authorization endpoint checks the challenge and its method
//! (`invalid_request`, RFC 7636 §4.4.1); the token endpoint checks the
//! verifier against the stored challenge (`invalid_grant`, RFC 7636 §4.6).

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::constant_time_eq;
use crate::protocol::error::OAuthError;

/// BASE64URL of a SHA-256 digest, without padding: 43 characters.
const S256_CHALLENGE_LEN: usize = 43;
/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`.
const VERIFIER_MIN: usize = 43;
const VERIFIER_MAX: usize = 128;

/// RFC 7636 §4.3 reads a missing method as `plain`; `plain` is refused
/// (RFC 9700 §2.1.1), so only an explicit `S256` passes.
pub fn check_code_challenge_method(method: Option<&str>) -> Result<(), OAuthError> {
    match method {
        Some("S256") => Ok(()),
        None => Err(OAuthError::invalid_request(
            "code_challenge_method required: only S256 is supported",
        )),
        Some(_) => Err(OAuthError::invalid_request(
            "code_challenge_method not supported: only S256 is supported",
        )),
    }
}

/// RFC 7636 §4.2: an S256 challenge is BASE64URL-ENCODE(SHA256(verifier)),
/// which is exactly 43 base64url characters.
pub fn check_code_challenge(challenge: &str) -> Result<(), OAuthError> {
    if challenge.len() == S256_CHALLENGE_LEN && challenge.bytes().all(is_base64url) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "code_challenge must be 43 base64url characters (S256)",
        ))
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" /
/// "." / "_" / "~"`.
pub fn check_code_verifier(verifier: &str) -> Result<(), OAuthError> {
    if (VERIFIER_MIN..=VERIFIER_MAX).contains(&verifier.len())
        && verifier.bytes().all(is_unreserved)
    {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ))
    }
}

/// RFC 7636 §4.6: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) ==
/// code_challenge`, compared in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    let digest = digest::digest(&digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 3986 §2.3 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::OAuthErrorCode;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert!(check_code_verifier(VERIFIER).is_ok());
        assert!(check_code_challenge(CHALLENGE).is_ok());
        assert!(verify_s256(VERIFIER, CHALLENGE));
    }

    #[test]
    fn a_different_verifier_or_challenge_does_not_verify() {
        let other_verifier = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(!verify_s256(other_verifier, CHALLENGE));
        assert!(!verify_s256(
            VERIFIER,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!verify_s256(VERIFIER, ""));
        // `plain` would compare the verifier itself: never accepted.
        assert!(!verify_s256(VERIFIER, VERIFIER));
    }

    #[test]
    fn method_must_be_s256() {
        assert!(check_code_challenge_method(Some("S256")).is_ok());
        for method in [None, Some("plain"), Some("s256"), Some("S512")] {
            let err = check_code_challenge_method(method).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest, "{method:?}");
        }
    }

    #[test]
    fn challenge_must_be_43_base64url_characters() {
        for bad in [
            "",
            &CHALLENGE[..42],
            &format!("{CHALLENGE}A"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-é",
        ] {
            let err = check_code_challenge(bad).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest, "{bad:?}");
        }
    }

    #[test]
    fn verifier_length_and_alphabet() {
        assert!(check_code_verifier(&"a".repeat(43)).is_ok());
        assert!(check_code_verifier(&"~._-Az09".repeat(16)).is_ok());
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
            format!("{} ", "a".repeat(42)),
            format!("{}é", "a".repeat(42)),
        ] {
            let err = check_code_verifier(&bad).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidGrant, "{bad:?}");
        }
    }
}

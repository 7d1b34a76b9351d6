//! Signed JWTs (RFC 7519) as compact JWS (RFC 7515 §7.1), RS256 only: the ID
//! token (OpenID Connect Core §2) and the JWT access token (RFC 9068).
//!
//! Signing is a function passed in, so this module holds no key and reads no
//! file; verification takes the time and a key lookup as parameters.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// RFC 7518 §3.3: RSASSA-PKCS1-v1_5 with SHA-256, the one algorithm signed
/// and accepted (OpenID Connect Core §15.1 makes it the one every relying
/// party supports).
pub const ALG_RS256: &str = "RS256";
/// The `typ` of an ID token (RFC 7519 §5.1).
pub const TYP_ID_TOKEN: &str = "JWT";
/// The `typ` of an access token (RFC 9068 §2.1), so that one can never pass
/// for the other (RFC 8725 §3.11).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions a recipient must understand. We
    /// understand none, so any `crit` is refused.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Header + payload, signed by `sign` (RS256 over the ASCII of "b64(header).b64(payload)"), as a compact JWS.
///
/// `typ` is `TYP_ID_TOKEN` for ID tokens and `TYP_ACCESS_TOKEN` for access
/// tokens; `kid` names the key in the JWKS (RFC 7515 §4.1.4).
pub fn encode_rs256<T: Serialize>(
    kid: &str,
    typ: &str,
    claims: &T,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let header = Header {
        alg: ALG_RS256,
        typ,
        kid,
    };
    let header = serde_json::to_vec(&header).expect("a header serialises");
    let payload = serde_json::to_vec(claims).expect("claims are plain JSON objects");
    // RFC 7515 §5.1: the signing input is ASCII(b64(header) || '.' || b64(payload)).
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 of the token's ASCII.
///
/// SHA-256 because the ID token is RS256 (the hash named by its `alg`).
pub fn at_hash(access_token: &str) -> String {
    let digest = digest::digest(&digest::SHA256, access_token.as_bytes());
    let left = &digest.as_ref()[..digest.as_ref().len() / 2];
    URL_SAFE_NO_PAD.encode(left)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not a compact JWS, or its header or claims are not what they must be.
    Malformed,
    /// No `kid`, or no key by that `kid`.
    UnknownKey,
    /// The signature does not verify, or `alg` is not RS256 (including
    /// `none`, RFC 8725 §3.1): such a token is not signed by us.
    BadSignature,
    /// The header's `typ` is not the one expected (RFC 8725 §3.11).
    WrongType,
    /// `exp` is not after `now` (RFC 7519 §4.1.4).
    Expired,
    /// `iss` is missing or not this issuer (RFC 7519 §4.1.1).
    WrongIssuer,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtError::Malformed => "malformed token",
            JwtError::UnknownKey => "unknown signing key",
            JwtError::BadSignature => "invalid signature",
            JwtError::WrongType => "wrong token type",
            JwtError::Expired => "token expired",
            JwtError::WrongIssuer => "wrong issuer",
        })
    }
}

impl std::error::Error for JwtError {}

#[derive(Deserialize)]
struct Registered {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
}

/// An RSA public key that checks RS256 signatures
/// (RSA_PKCS1_2048_8192_SHA256): a key parsed once (what the server holds),
/// or (n, e) as big-endian bytes, parsed on every call.
pub trait VerifyKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool;
}

impl VerifyKey for aws_lc_rs::signature::ParsedPublicKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_sig(message, signature).is_ok()
    }
}

impl<K: VerifyKey + ?Sized> VerifyKey for &K {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        (**self).verifies(message, signature)
    }
}

impl<K: VerifyKey + ?Sized> VerifyKey for std::sync::Arc<K> {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        (**self).verifies(message, signature)
    }
}

impl VerifyKey for (Vec<u8>, Vec<u8>) {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        RsaPublicKeyComponents {
            n: without_leading_zeros(&self.0),
            e: without_leading_zeros(&self.1),
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .is_ok()
    }
}

/// Verifies a compact JWS made by `encode_rs256`: alg must be RS256 (anything else, including "none", is refused), the header typ must equal `expected_typ` when given, the signature must verify with the key that `key_for_kid` returns for the header's kid, `iss` must equal `issuer`, and `exp` must be > now. Returns the claims.
///
/// Only `alg` and `kid` are read before the signature is verified; every
/// other check looks at signed content. `typ` compares as a media type
/// (RFC 7515 §4.1.9): case-insensitively, with or without `application/`.
/// `exp` must be an integer (NumericDate as `encode_rs256`'s callers write
/// it); `now` is in seconds since the Unix epoch.
pub fn decode_rs256<T: serde::de::DeserializeOwned, K: VerifyKey>(
    token: &str,
    expected_typ: Option<&str>,
    issuer: &str,
    now: i64,
    key_for_kid: impl Fn(&str) -> Option<K>,
) -> Result<T, JwtError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: ReceivedHeader = decode_json(header_b64)?;
    if header.crit.is_some() {
        return Err(JwtError::Malformed);
    }
    // RFC 8725 §3.1: the algorithm is ours to choose, never the token's.
    if header.alg != ALG_RS256 {
        return Err(JwtError::BadSignature);
    }
    let kid = header.kid.as_deref().ok_or(JwtError::UnknownKey)?;
    let key = key_for_kid(kid).ok_or(JwtError::UnknownKey)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwtError::Malformed)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verifies(signing_input.as_bytes(), &signature) {
        return Err(JwtError::BadSignature);
    }

    if let Some(expected) = expected_typ {
        match header.typ.as_deref() {
            Some(typ) if same_media_type(typ, expected) => {}
            _ => return Err(JwtError::WrongType),
        }
    }
    let claims: serde_json::Value = decode_json(payload_b64)?;
    if !claims.is_object() {
        return Err(JwtError::Malformed);
    }
    let registered = Registered::deserialize(&claims).map_err(|_| JwtError::Malformed)?;
    if registered.iss.as_deref() != Some(issuer) {
        return Err(JwtError::WrongIssuer);
    }
    match registered.exp {
        None => return Err(JwtError::Malformed),
        Some(exp) if exp <= now => return Err(JwtError::Expired),
        Some(_) => {}
    }
    T::deserialize(claims).map_err(|_| JwtError::Malformed)
}

fn decode_json<T: serde::de::DeserializeOwned>(b64: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// aws-lc-rs takes `n` and `e` without leading zero bytes (as a JWK writes
/// them, RFC 7518 §6.3.1.1); a key given with them would otherwise be refused.
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// RFC 7515 §4.1.9: media types compare case-insensitively, and
/// `application/` may be left out.
fn same_media_type(a: &str, b: &str) -> bool {
    fn short(t: &str) -> &str {
        const PREFIX: &str = "application/";
        match t.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
            _ => t,
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

/// The ID token (OpenID Connect Core §2). Stepgate always sends `auth_time`,
/// `acr`, `amr` (RFC 8176 values), `at_hash` and `sid` (Front-Channel Logout
/// §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    pub at_hash: String,
    pub sid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// The JWT access token (RFC 9068 §2.2): `iss`, `exp`, `aud`, `sub`,
/// `client_id`, `iat` and `jti` are REQUIRED; `auth_time`, `acr` and `amr`
/// are sent when known (§2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use std::sync::OnceLock;

    const ISSUER: &str = "https://id.example.com";
    const KID: &str = "k1";
    const NOW: i64 = 1_700_000_000;

    /// RSA key generation is slow; every test shares two keys.
    fn keys() -> &'static [KeyPair; 2] {
        static KEYS: OnceLock<[KeyPair; 2]> = OnceLock::new();
        KEYS.get_or_init(|| {
            [
                KeyPair::generate(KeySize::Rsa2048).unwrap(),
                KeyPair::generate(KeySize::Rsa2048).unwrap(),
            ]
        })
    }

    fn sign_with(key: &KeyPair, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            message,
            &mut signature,
        )
        .unwrap();
        signature
    }

    fn public(key: &KeyPair) -> (Vec<u8>, Vec<u8>) {
        let p = key.public_key();
        (
            p.modulus().big_endian_without_leading_zero().to_vec(),
            p.exponent().big_endian_without_leading_zero().to_vec(),
        )
    }

    /// Knows `KID` only, as the first key.
    fn lookup(kid: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        (kid == KID).then(|| public(&keys()[0]))
    }

    fn id_claims() -> IdTokenClaims {
        IdTokenClaims {
            iss: ISSUER.into(),
            sub: "user-1".into(),
            aud: "nao-cloud".into(),
            exp: NOW + 300,
            iat: NOW,
            auth_time: NOW - 10,
            nonce: Some("n-0S6_WzA2Mj".into()),
            acr: "urn:stepgate:acr:mfa".into(),
            amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
            at_hash: at_hash("token"),
            sid: "sid-1".into(),
            name: None,
            email: Some("ada@example.com".into()),
            email_verified: Some(true),
        }
    }

    fn id_token(claims: &IdTokenClaims) -> String {
        encode_rs256(KID, TYP_ID_TOKEN, claims, |m| sign_with(&keys()[0], m))
    }

    fn decode_id(token: &str) -> Result<IdTokenClaims, JwtError> {
        decode_rs256(token, Some(TYP_ID_TOKEN), ISSUER, NOW, lookup)
    }

    fn b64_json(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn part(token: &str, i: usize) -> serde_json::Value {
        let seg = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
    }

    #[test]
    fn id_token_round_trip() {
        let claims = id_claims();
        let token = id_token(&claims);
        assert_eq!(
            part(&token, 0),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": KID})
        );
        let payload = part(&token, 1);
        assert!(payload.get("name").is_none(), "None claims are left out");
        assert_eq!(payload["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
        assert_eq!(decode_id(&token).unwrap(), claims);
        // Without a typ requirement too.
        let any: IdTokenClaims = decode_rs256(&token, None, ISSUER, NOW, lookup).unwrap();
        assert_eq!(any, claims);
    }

    #[test]
    fn access_token_round_trip_with_at_jwt_type() {
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "user-1".into(),
            aud: "https://api.example.com".into(),
            client_id: "nao-cloud".into(),
            exp: NOW + 600,
            iat: NOW,
            jti: "jti-1".into(),
            scope: "openid email".into(),
            auth_time: None,
            acr: Some("urn:stepgate:acr:pwd".into()),
            amr: Some(vec!["pwd".into()]),
        };
        let token = encode_rs256(KID, TYP_ACCESS_TOKEN, &claims, |m| sign_with(&keys()[0], m));
        assert_eq!(part(&token, 0)["typ"], "at+jwt");
        assert!(part(&token, 1).get("auth_time").is_none());
        let back: AccessTokenClaims =
            decode_rs256(&token, Some(TYP_ACCESS_TOKEN), ISSUER, NOW, lookup).unwrap();
        assert_eq!(back, claims);
        // RFC 9068 §4: `application/at+jwt` names the same type.
        let back: AccessTokenClaims =
            decode_rs256(&token, Some("application/AT+JWT"), ISSUER, NOW, lookup).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let token = id_token(&id_claims());
        let mut payload = part(&token, 1);
        payload["sub"] = "admin".into();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64_json(&payload), parts[2]);
        assert_eq!(decode_id(&forged), Err(JwtError::BadSignature));
    }

    #[test]
    fn another_key_is_a_bad_signature() {
        let token = encode_rs256(KID, TYP_ID_TOKEN, &id_claims(), |m| {
            sign_with(&keys()[1], m)
        });
        assert_eq!(decode_id(&token), Err(JwtError::BadSignature));
    }

    #[test]
    fn unknown_or_missing_kid() {
        let token = encode_rs256("k2", TYP_ID_TOKEN, &id_claims(), |m| {
            sign_with(&keys()[0], m)
        });
        assert_eq!(decode_id(&token), Err(JwtError::UnknownKey));

        let header = b64_json(&serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let payload = b64_json(&serde_json::to_value(id_claims()).unwrap());
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(sign_with(&keys()[0], input.as_bytes()));
        assert_eq!(
            decode_id(&format!("{input}.{sig}")),
            Err(JwtError::UnknownKey)
        );
    }

    /// RFC 8725 §2.1: `alg: none` and HMAC with the public key as secret are
    /// the classic forgeries; neither gets past `alg`.
    #[test]
    fn alg_other_than_rs256_is_refused() {
        let payload = b64_json(&serde_json::to_value(id_claims()).unwrap());
        let none = b64_json(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": KID}));
        assert_eq!(
            decode_id(&format!("{none}.{payload}.")),
            Err(JwtError::BadSignature)
        );

        let hs256 = b64_json(&serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": KID}));
        let input = format!("{hs256}.{payload}");
        let (n, _) = public(&keys()[0]);
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &n),
            input.as_bytes(),
        );
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(decode_id(&forged), Err(JwtError::BadSignature));

        // A real RS256 signature under a header that names another alg.
        let ps256 = b64_json(&serde_json::json!({"alg": "PS256", "typ": "JWT", "kid": KID}));
        let input = format!("{ps256}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(sign_with(&keys()[0], input.as_bytes()));
        assert_eq!(
            decode_id(&format!("{input}.{sig}")),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn wrong_typ() {
        let token = id_token(&id_claims());
        assert_eq!(
            decode_rs256::<IdTokenClaims, _>(&token, Some(TYP_ACCESS_TOKEN), ISSUER, NOW, lookup),
            Err(JwtError::WrongType)
        );
        let header = b64_json(&serde_json::json!({"alg": "RS256", "kid": KID}));
        let payload = b64_json(&serde_json::to_value(id_claims()).unwrap());
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(sign_with(&keys()[0], input.as_bytes()));
        assert_eq!(
            decode_id(&format!("{input}.{sig}")),
            Err(JwtError::WrongType)
        );
    }

    #[test]
    fn expired() {
        let mut claims = id_claims();
        claims.exp = NOW;
        assert_eq!(decode_id(&id_token(&claims)), Err(JwtError::Expired));
        claims.exp = NOW + 1;
        assert!(decode_id(&id_token(&claims)).is_ok());
    }

    #[test]
    fn wrong_issuer() {
        let mut claims = id_claims();
        claims.iss = "https://id.example.com/".into();
        assert_eq!(decode_id(&id_token(&claims)), Err(JwtError::WrongIssuer));
        let no_iss = serde_json::json!({"sub": "user-1", "exp": NOW + 300});
        let token = encode_rs256(KID, TYP_ID_TOKEN, &no_iss, |m| sign_with(&keys()[0], m));
        assert_eq!(decode_id(&token), Err(JwtError::WrongIssuer));
    }

    #[test]
    fn malformed() {
        let token = id_token(&id_claims());
        let parts: Vec<&str> = token.split('.').collect();
        for bad in [
            String::new(),
            "a.b".to_owned(),
            format!("{token}.x"),
            format!("!!.{}.{}", parts[1], parts[2]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("not json"),
                parts[1],
                parts[2]
            ),
        ] {
            assert_eq!(decode_id(&bad), Err(JwtError::Malformed), "{bad}");
        }
        // Signed, but without `exp` or not the claims asked for.
        let sign = |claims: &serde_json::Value| {
            encode_rs256(KID, TYP_ID_TOKEN, claims, |m| sign_with(&keys()[0], m))
        };
        let no_exp = sign(&serde_json::json!({"iss": ISSUER}));
        assert_eq!(decode_id(&no_exp), Err(JwtError::Malformed));
        let not_id = sign(&serde_json::json!({"iss": ISSUER, "exp": NOW + 1}));
        assert_eq!(decode_id(&not_id), Err(JwtError::Malformed));
        let crit_header = b64_json(
            &serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": KID, "crit": ["exp"]}),
        );
        let input = format!("{crit_header}.{}", parts[1]);
        let sig = URL_SAFE_NO_PAD.encode(sign_with(&keys()[0], input.as_bytes()));
        assert_eq!(
            decode_id(&format!("{input}.{sig}")),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn keys_with_a_leading_zero_byte_still_verify() {
        let token = id_token(&id_claims());
        let padded = |kid: &str| {
            lookup(kid).map(|(n, e)| ([&[0u8][..], &n].concat(), [&[0u8][..], &e].concat()))
        };
        let back: IdTokenClaims = decode_rs256(&token, Some("JWT"), ISSUER, NOW, padded).unwrap();
        assert_eq!(back, id_claims());
    }

    /// OpenID Connect Core Appendix A's example access token and `at_hash`, and
    /// FIPS 180-2's "abc" (SHA-256 ba7816bf8f01cfea414140de5dae2223…, whose
    /// first 16 bytes are base64url `ungWv48Bz-pBQUDeXa4iIw`).
    #[test]
    fn at_hash_known_answers() {
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash("abc"), "ungWv48Bz-pBQUDeXa4iIw");
        let left_half = hex_bytes("ba7816bf8f01cfea414140de5dae2223");
        assert_eq!(at_hash("abc"), URL_SAFE_NO_PAD.encode(left_half));
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}

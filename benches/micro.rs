//! Micro-benchmarks of the per-request crypto: what one token response, one
//! sign-in step or one client authentication costs on one core.
//!
//! `cargo bench --bench micro` (see docs/performance.md). Nothing here is a
//! test: no timings are asserted anywhere.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stepgate::auth::password::{hash_password, verify_password};
use stepgate::auth::totp::{self, TotpParams};
use stepgate::config::PasswordSettings;
use stepgate::crypto::sha256_hex;
use stepgate::keys::SigningKey;
use stepgate::protocol::jwt::{self, IdTokenClaims, TYP_ID_TOKEN};
use stepgate::protocol::pkce;
use stepgate::service::clients::secret_matches;

/// One RSA-2048 key, parsed once, exactly as the server holds it.
fn signing_key() -> SigningKey {
    SigningKey::generate().expect("a signing key").0
}

/// An ID token's claims as the authorization-code grant writes them.
fn id_token_claims() -> IdTokenClaims {
    let access_token = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2ln";
    IdTokenClaims {
        iss: "https://id.example.com".into(),
        sub: "0192f4d2-7c1e-7a31-9b1c-5f0e8d2a4b6c".into(),
        aud: "nao-cloud-3f9a8b7c6d5e4f30".into(),
        exp: 1_790_000_000,
        iat: 1_789_996_400,
        auth_time: 1_789_996_390,
        nonce: Some("n-0S6_WzA2Mj".into()),
        acr: "urn:stepgate:acr:mfa".into(),
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        at_hash: jwt::at_hash(access_token),
        sid: "5b8c1e0f9a7d4c3b2a1f0e9d8c7b6a5f".into(),
        name: Some("Ada Lovelace".into()),
        email: Some("ada@example.com".into()),
        email_verified: Some(true),
    }
}

fn signing(c: &mut Criterion) {
    let key = signing_key();
    let claims = id_token_claims();
    c.bench_function("id_token_rs256_sign", |b| {
        b.iter(|| {
            jwt::encode_rs256(&key.kid, TYP_ID_TOKEN, black_box(&claims), |input| {
                key.sign_rs256(input)
            })
        })
    });
}

fn totp_verify(c: &mut Criterion) {
    let secret = totp::generate_secret();
    let params = TotpParams::default();
    let now = 1_789_996_400;
    let code = totp::code_at(&secret, &params, now);
    c.bench_function("totp_verify", |b| {
        b.iter(|| totp::verify(black_box(&secret), &params, black_box(&code), now))
    });
}

fn pkce_s256(c: &mut Criterion) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(
        pkce::verify_s256(verifier, challenge),
        "RFC 7636 appendix B"
    );
    c.bench_function("pkce_verify_s256", |b| {
        b.iter(|| pkce::verify_s256(black_box(verifier), black_box(challenge)))
    });
}

fn password(c: &mut Criterion) {
    let settings = PasswordSettings::default();
    let mut group = c.benchmark_group("argon2id_default_params");
    // 15-20 ms per hash: few samples are enough.
    group.sample_size(10);
    group.bench_function("hash_password", |b| {
        b.iter(|| hash_password(black_box("correct horse battery staple"), &settings))
    });
    let hash = hash_password("correct horse battery staple", &settings);
    group.bench_function("verify_password", |b| {
        b.iter(|| verify_password(black_box("correct horse battery staple"), &hash))
    });
    group.finish();
}

fn client_secret(c: &mut Criterion) {
    // A 256-bit secret as `client create` makes it, and its stored hash.
    let secret = "kR3v9Qm2Zx7Lp4Tn8Wb1Yc6Hd0Jf5Gs2Ae9Ku3Vo7Xi";
    let stored = sha256_hex(secret);
    assert!(secret_matches(secret, &stored));
    c.bench_function("client_secret_check", |b| {
        b.iter(|| secret_matches(black_box(secret), black_box(&stored)))
    });
}

criterion_group!(
    benches,
    signing,
    totp_verify,
    pkce_s256,
    password,
    client_secret
);
criterion_main!(benches);

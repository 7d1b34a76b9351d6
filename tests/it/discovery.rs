//! Discovery and the JWKS, read by a real relying-party library.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::{IssuerUrl, JsonWebKey};
use serde_json::Value;

use crate::helpers::{Backend, oidc_http, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    openidconnect_discovers_the_provider,
    documents_carry_required_fields,
    every_answer_carries_security_headers,
    oversized_body_is_refused_with_413,
);

async fn openidconnect_discovers_the_provider(backend: Backend) {
    let app = spawn_app(backend).await;
    let issuer = IssuerUrl::new(app.issuer.clone()).unwrap();
    // discover_async checks that the document's issuer equals ours exactly,
    // then fetches and parses jwks_uri.
    let metadata = CoreProviderMetadata::discover_async(issuer, &oidc_http)
        .await
        .expect("openidconnect accepts our discovery document");
    assert_eq!(metadata.issuer().as_str(), app.issuer);
    assert_eq!(metadata.jwks_uri().as_str(), app.url("/jwks"));
    let keys = metadata.jwks().keys();
    assert_eq!(keys.len(), 1);
    let kid = keys[0].key_id().expect("kid").as_str().to_owned();

    // The kid is the RFC 7638 thumbprint of the published n and e,
    // recomputed here from the raw JSON.
    let raw: Value = app.get("/jwks").await.json().await.unwrap();
    let key = &raw["keys"][0];
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        key["e"].as_str().unwrap(),
        key["n"].as_str().unwrap()
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    assert_eq!(kid, URL_SAFE_NO_PAD.encode(digest.as_ref()));
    // 2048-bit modulus.
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256);

    // The JWKS parses on its own too, as a client that skips discovery reads it.
    let set: CoreJsonWebKeySet = serde_json::from_value(raw).unwrap();
    assert_eq!(set.keys().len(), 1);
}

async fn documents_carry_required_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/.well-known/openid-configuration").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], app.issuer.as_str());
    assert_eq!(
        doc["authorization_endpoint"],
        app.url("/authorize").as_str()
    );
    assert_eq!(doc["token_endpoint"], app.url("/token").as_str());
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["subject_types_supported"],
        serde_json::json!(["public"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );

    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    let key = &jwks["keys"][0];
    for field in ["kty", "use", "alg", "kid", "n", "e"] {
        assert!(key[field].is_string(), "JWK lacks {field}: {key}");
    }
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");
    // Only public members: no private exponent or primes.
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(key.get(private).is_none(), "JWK leaks {private}");
    }
}

async fn every_answer_carries_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/.well-known/openid-configuration",
        "/jwks",
        "/healthz",
        "/no-such-page",
    ] {
        let response = app.get(path).await;
        let h = response.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        // A request id for tracing, fresh per request.
        assert!(!h["x-request-id"].is_empty(), "{path}");
        // http issuer on loopback: no HSTS.
        assert!(h.get("strict-transport-security").is_none(), "{path}");
    }
    let page = app.get("/no-such-page").await;
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("role=\"alert\""));

    // A request id the caller sends is kept, so logs can be correlated.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");

    // One that is not a plain token (it would read as more log fields) is
    // replaced by a fresh one, and the answer says which.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "x status=500 path=/admin")
        .send()
        .await
        .unwrap();
    let given = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(given, "x status=500 path=/admin");
    assert_eq!(given.len(), 36, "a UUID: {given}");
    assert!(
        given.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
        "{given}"
    );
}

async fn oversized_body_is_refused_with_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = vec![b'a'; 4 * 1024 * 1024];
    let response = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(response.status(), 413);
    // The server is still fine afterwards.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

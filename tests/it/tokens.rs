//! The token lifecycle: refresh rotation and reuse detection, client
//! credentials, revocation (RFC 7009) and introspection (RFC 7662).

use chrono::Duration;
use openidconnect::core::CoreIdTokenVerifier;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RefreshToken,
    Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::accounts::PASSWORD;
use crate::browser::Browser;
use crate::helpers::{Backend, TestApp, join_all, oidc_http, stderr, stepgate, write_config};
use crate::oidc::{Rp, TestClient, payload, query, register, relying_party, spawn, until_client};
use crate::on_both_backends;

on_both_backends!(
    refresh_tokens_rotate_and_keep_the_authentication,
    reusing_a_rotated_refresh_token_revokes_the_family,
    concurrent_refreshes_yield_one_success,
    refresh_scope_may_narrow_but_not_widen,
    refresh_fails_for_a_disabled_user_or_withdrawn_consent,
    client_credentials_gives_the_client_its_own_token,
    revocation_of_each_kind_and_by_the_wrong_client,
    introspection_of_live_expired_and_revoked_tokens,
    introspection_answers_only_whom_the_token_concerns,
    refresh_fails_after_the_second_factor_is_reset,
    a_password_reset_revokes_refresh_tokens_access_tokens_and_api_keys,
);

/// Runs a full sign-in with `offline_access` and returns the token response.
pub async fn offline_tokens(
    app: &TestApp,
    rp: &Rp,
    browser: &Browser,
    email: &str,
) -> openidconnect::core::CoreTokenResponse {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            openidconnect::core::CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let start = browser.get_raw(url.as_str()).await;
    let location = match until_client(browser, start).await {
        Ok(location) => location,
        Err(page) => {
            let page = if page.contains("Sign in") {
                let after = browser
                    .submit_raw(&page, "/login", &[("email", email), ("password", PASSWORD)])
                    .await;
                match until_client(browser, after).await {
                    Ok(location) => {
                        return finish(app, rp, &location, state, nonce, verifier).await;
                    }
                    Err(page) => page,
                }
            } else {
                page
            };
            assert!(
                page.contains("Stay signed in"),
                "consent lists offline access: {}",
                page.html
            );
            let allowed = browser
                .submit_raw(&page, "/consent", &[("decision", "allow")])
                .await;
            until_client(browser, allowed).await.unwrap()
        }
    };
    finish(app, rp, &location, state, nonce, verifier).await
}

async fn finish(
    _app: &TestApp,
    rp: &Rp,
    location: &str,
    state: CsrfToken,
    nonce: Nonce,
    verifier: openidconnect::PkceCodeVerifier,
) -> openidconnect::core::CoreTokenResponse {
    let params = query(location);
    assert_eq!(params["state"], *state.secret());
    let tokens = rp
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&oidc_http)
        .await
        .expect("token response");
    tokens
        .id_token()
        .unwrap()
        .claims(&rp.id_token_verifier(), &nonce)
        .expect("ID token verifies");
    assert!(
        tokens.refresh_token().is_some(),
        "offline_access gives a refresh token"
    );
    tokens
}

pub async fn refresh(
    rp: &Rp,
    token: &RefreshToken,
) -> Result<openidconnect::core::CoreTokenResponse, String> {
    rp.exchange_refresh_token(token)
        .unwrap()
        .request_async(&oidc_http)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// POSTs a form to an endpoint with HTTP Basic client credentials.
async fn post_form(
    app: &TestApp,
    path: &str,
    client: &TestClient,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = app.client.post(app.url(path)).form(fields);
    if let Some(secret) = &client.secret {
        request = request.basic_auth(&client.id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn introspect(app: &TestApp, client: &TestClient, token: &str) -> Value {
    let (status, json) = post_form(app, "/introspect", client, &[("token", token)]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

async fn userinfo_status(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn refresh_tokens_rotate_and_keep_the_authentication(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("weeks@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let first = offline_tokens(&app, &rp, &browser, "weeks@example.com").await;
    let first_id = payload(&first.id_token().unwrap().to_string());

    clock.advance(Duration::hours(3));
    let second = refresh(&rp, first.refresh_token().unwrap())
        .await
        .expect("refresh works");
    let new_refresh = second.refresh_token().expect("a new refresh token");
    assert_ne!(
        new_refresh.secret(),
        first.refresh_token().unwrap().secret()
    );
    // The refreshed ID token verifies and keeps the original authentication.
    let id_token = second.id_token().expect("an ID token on refresh");
    let verifier: CoreIdTokenVerifier = rp.id_token_verifier();
    id_token
        .claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(()))
        .expect("refreshed ID token verifies");
    let refreshed = payload(&id_token.to_string());
    for claim in ["auth_time", "acr", "amr", "sid", "sub"] {
        assert_eq!(refreshed[claim], first_id[claim], "{claim} is kept");
    }
    assert!(refreshed["iat"].as_i64() > first_id["iat"].as_i64());
    assert_eq!(
        userinfo_status(&app, second.access_token().secret()).await,
        StatusCode::OK
    );

    // Weeks later, still going as long as it is used within the idle window...
    let mut current = new_refresh.clone();
    for _ in 0..2 {
        clock.advance(Duration::days(10));
        let next = refresh(&rp, &current).await.expect("used within 14 days");
        current = next.refresh_token().unwrap().clone();
    }
    // ...and not after 15 days unused.
    clock.advance(Duration::days(15));
    assert!(
        refresh(&rp, &current).await.is_err(),
        "expired after 15 idle days"
    );
}

async fn reusing_a_rotated_refresh_token_revokes_the_family(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("stolen@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let first = offline_tokens(&app, &rp, &browser, "stolen@example.com").await;
    let old = first.refresh_token().unwrap().clone();
    let second = refresh(&rp, &old).await.unwrap();
    let newest = second.refresh_token().unwrap().clone();

    // The thief replays the old token: refused, and the family is revoked.
    let replay = refresh(&rp, &old).await;
    assert!(replay.unwrap_err().contains("invalid_grant"));
    let after = refresh(&rp, &newest).await;
    assert!(
        after.is_err(),
        "the newest refresh token died with its family"
    );
    assert_eq!(
        userinfo_status(&app, second.access_token().secret()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        userinfo_status(&app, first.access_token().secret()).await,
        StatusCode::UNAUTHORIZED
    );
    let json = introspect(&app, &client, newest.secret()).await;
    assert_eq!(json, serde_json::json!({ "active": false }));

    // It is in the audit log.
    let db = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .unwrap();
    use sea_orm::ConnectionTrait;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'refresh.reuse_detected'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);
    db.close().await.unwrap();
}

async fn concurrent_refreshes_yield_one_success(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("race@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let sibling = app.spawn_sibling().await;
    let browser = app.browser();
    let tokens = offline_tokens(&app, &rp, &browser, "race@example.com").await;
    let token = tokens.refresh_token().unwrap().secret().clone();
    let secret = client.secret.clone().unwrap();
    let attempts = (0..6).map(|i| {
        let target = if i % 2 == 0 { &app } else { &sibling };
        let request = target
            .client
            .post(target.url("/token"))
            .basic_auth(&client.id, Some(&secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ]);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    });
    let answers = join_all(attempts).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST)
    );

    // The others presented a retired token: reuse (RFC 9700 §4.14.2), so the
    // whole family is revoked, the winner's new refresh token with it. The
    // new tokens are written before the old one is retired, so no ordering
    // of the racing requests lets one survive.
    let (_, won) = answers
        .iter()
        .find(|(s, _)| *s == StatusCode::OK)
        .expect("one success");
    let newest = won["refresh_token"].as_str().expect("a new refresh token");
    let again = app
        .client
        .post(app.url("/token"))
        .basic_auth(&client.id, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", newest)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

async fn refresh_scope_may_narrow_but_not_widen(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("narrow@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let tokens = offline_tokens(&app, &rp, &browser, "narrow@example.com").await;
    let narrowed = rp
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .add_scope(Scope::new("openid".into()))
        .request_async(&oidc_http)
        .await
        .expect("a narrower scope is fine");
    let scope: Vec<String> = narrowed
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(scope, ["openid"]);
    // The new refresh token still carries the whole grant.
    let again = refresh(&rp, narrowed.refresh_token().unwrap())
        .await
        .unwrap();
    let full: Vec<String> = again
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert!(full.contains(&"email".to_owned()), "{full:?}");
    // Wider than granted: invalid_scope.
    let (status, json) = post_form(
        &app,
        "/token",
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", again.refresh_token().unwrap().secret()),
            ("scope", "openid email profile"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "invalid_scope");
}

async fn refresh_fails_for_a_disabled_user_or_withdrawn_consent(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("gone@example.com", PASSWORD, true).await;
    app.create_user("withdraw@example.com", PASSWORD, true)
        .await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;

    let browser = app.browser();
    let tokens = offline_tokens(&app, &rp, &browser, "gone@example.com").await;
    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "user",
            "disable",
            "gone@example.com",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = refresh(&rp, tokens.refresh_token().unwrap()).await;
    assert!(refused.unwrap_err().contains("invalid_grant"));

    let other = app.browser();
    let tokens = offline_tokens(&app, &rp, &other, "withdraw@example.com").await;
    let profile = other.get("/profile").await;
    other
        .submit(&profile, "/profile/consents/revoke", &[])
        .await;
    let refused = refresh(&rp, tokens.refresh_token().unwrap()).await;
    assert!(refused.unwrap_err().contains("invalid_grant"));
}

async fn client_credentials_gives_the_client_its_own_token(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let service = register(
        &app,
        &[
            "--grant-type",
            "client_credentials",
            "--scope",
            "openid",
            "--scope",
            "email",
        ],
    );
    let (status, json) = post_form(
        &app,
        "/token",
        &service,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["token_type"], "Bearer");
    assert!(json.get("id_token").is_none(), "no ID token");
    assert!(json.get("refresh_token").is_none(), "no refresh token");
    let claims = payload(json["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], service.id.as_str());
    assert_eq!(claims["client_id"], service.id.as_str());
    let resource_server = register(&app, &["--introspect"]);
    let info = introspect(
        &app,
        &resource_server,
        json["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], service.id.as_str());

    // A client not allowed the grant, and a public client, cannot use it.
    let web = register(&app, &[]);
    let (status, json) = post_form(
        &app,
        "/token",
        &web,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "client",
            "create",
            "--name",
            "SPA",
            "--redirect-uri",
            crate::oidc::REDIRECT,
            "--public",
            "--grant-type",
            "client_credentials",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !out.status.success(),
        "a public client can never have client_credentials"
    );
}

async fn revocation_of_each_kind_and_by_the_wrong_client(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("revoke@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let other = register(&app, &[]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let tokens = offline_tokens(&app, &rp, &browser, "revoke@example.com").await;
    let access = tokens.access_token().secret().clone();
    let refresh_token = tokens.refresh_token().unwrap().secret().clone();

    // Another client cannot revoke them (and learns nothing: 200 either way).
    let (status, _) = post_form(&app, "/revoke", &other, &[("token", &access)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::OK);
    let (status, _) = post_form(&app, "/revoke", &other, &[("token", &refresh_token)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        introspect(&app, &client, &refresh_token).await["active"],
        true
    );

    // An unknown token: 200.
    let (status, _) = post_form(&app, "/revoke", &client, &[("token", "no-such-token")]).await;
    assert_eq!(status, StatusCode::OK);

    // The owner revokes the access token...
    let (status, _) = post_form(
        &app,
        "/revoke",
        &client,
        &[("token", &access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        userinfo_status(&app, &access).await,
        StatusCode::UNAUTHORIZED
    );
    // ...and the refresh token: it no longer refreshes.
    let (status, _) = post_form(
        &app,
        "/revoke",
        &client,
        &[
            ("token", &refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        refresh(&rp, &RefreshToken::new(refresh_token))
            .await
            .is_err()
    );

    // Without client authentication: 401.
    let response = app
        .client
        .post(app.url("/revoke"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn introspection_of_live_expired_and_revoked_tokens(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("intro@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let resource_server = register(&app, &["--introspect"]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let tokens = offline_tokens(&app, &rp, &browser, "intro@example.com").await;
    let access = tokens.access_token().secret().clone();

    let live = introspect(&app, &resource_server, &access).await;
    assert_eq!(live["active"], true);
    for field in [
        "scope",
        "iat",
        "token_type",
        "aud",
        "client_id",
        "sub",
        "exp",
    ] {
        assert!(
            !live[field].is_null(),
            "introspection lacks {field}: {live}"
        );
    }
    assert_eq!(live["client_id"], client.id.as_str());
    // A refresh token, by the client it was issued to.
    let refresh_info = introspect(&app, &client, tokens.refresh_token().unwrap().secret()).await;
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["token_type"], "refresh_token");

    // No client authentication: 401.
    let response = app
        .client
        .post(app.url("/introspect"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Garbage: inactive.
    assert_eq!(
        introspect(&app, &resource_server, "garbage").await,
        serde_json::json!({"active": false})
    );

    // Expired: inactive.
    clock.advance(Duration::seconds(601));
    assert_eq!(
        introspect(&app, &resource_server, &access).await["active"],
        false
    );

    // Revoked: inactive.
    let fresh = refresh(&rp, tokens.refresh_token().unwrap()).await.unwrap();
    let access = fresh.access_token().secret().clone();
    assert_eq!(
        introspect(&app, &resource_server, &access).await["active"],
        true
    );
    post_form(&app, "/revoke", &client, &[("token", &access)]).await;
    assert_eq!(
        introspect(&app, &resource_server, &access).await["active"],
        false
    );
}

/// RFC 7662 §4, who may learn what (audit issue 14, item 9): a refresh
/// token only its own client; an access token (of any client) and an API
/// key only a client registered `--introspect`, not even the access token's
/// own client without it. Every refusal is the 200 `{"active": false}` of an
/// unknown token, so it does not tell that the token exists.
async fn introspection_answers_only_whom_the_token_concerns(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("matrix@example.com", PASSWORD, true).await;
    let rp1 = register(&app, &[]);
    let rp2 = register(&app, &[]);
    let rs = register(&app, &["--introspect"]);
    let rp = relying_party(&app, &rp1).await;
    let browser = app.browser();
    let tokens = offline_tokens(&app, &rp, &browser, "matrix@example.com").await;
    let sub = payload(&tokens.id_token().unwrap().to_string())["sub"].clone();
    let refresh_token = tokens.refresh_token().unwrap().secret().clone();
    let access = tokens.access_token().secret().clone();
    let key = crate::api_keys::create_key(&browser, "matrix bot", &["email"], "30").await;

    let unknown = introspect(&app, &rp2, "no-such-token").await;
    assert_eq!(unknown, serde_json::json!({ "active": false }));
    let cases = [
        (
            "RP1's refresh token",
            &refresh_token,
            "refresh_token",
            [true, false, false],
        ),
        (
            "RP1's access token",
            &access,
            "Bearer",
            [false, false, true],
        ),
        ("an API key", &key, "api_key", [false, false, true]),
    ];
    let callers = [("RP1", &rp1), ("RP2", &rp2), ("RS --introspect", &rs)];
    // Twice: a refusal changes nothing, the allowed answer comes after it.
    for _ in 0..2 {
        for (what, token, token_type, allowed) in &cases {
            for ((who, client), allowed) in callers.iter().zip(allowed) {
                let answer = introspect(&app, client, token).await;
                if *allowed {
                    assert_eq!(answer["active"], true, "{who}, {what}: {answer}");
                    assert_eq!(answer["token_type"], *token_type, "{who}, {what}");
                    assert_eq!(answer["sub"], sub, "{who}, {what}");
                } else {
                    assert_eq!(answer, unknown, "{who} may not introspect {what}");
                }
            }
        }
    }
}

/// A grant that rested on the second factor ends when an operator resets
/// that factor (the lost phone may be in someone else's hands).
async fn refresh_fails_after_the_second_factor_is_reset(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("phone@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = crate::two_factor::activate(&app, &browser, "phone@example.com").await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;

    // Sign in anew with password and code, with offline_access.
    let profile = browser.get("/profile").await;
    browser.submit(&profile, "/logout", &[]).await;
    clock.advance(Duration::seconds(30));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(
            openidconnect::core::CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let login = browser.get(url.as_str()).await;
    let after = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "phone@example.com"), ("password", PASSWORD)],
        )
        .await;
    let prompt = until_client(&browser, after)
        .await
        .expect_err("code prompt");
    let code = crate::two_factor::totp_code(&secret, stepgate::clock::Clock::now(&clock));
    let after = browser
        .submit_raw(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    let consent = until_client(&browser, after).await.expect_err("consent");
    let allowed = browser
        .submit_raw(&consent, "/consent", &[("decision", "allow")])
        .await;
    let location = until_client(&browser, allowed).await.unwrap();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query(&location)["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&oidc_http)
        .await
        .unwrap();
    tokens
        .id_token()
        .unwrap()
        .claims(&rp.id_token_verifier(), &nonce)
        .unwrap();
    let refreshed = refresh(&rp, tokens.refresh_token().unwrap())
        .await
        .expect("works before");

    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "user",
            "reset-2fa",
            "phone@example.com",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = refresh(&rp, refreshed.refresh_token().unwrap()).await;
    assert!(refused.unwrap_err().contains("invalid_grant"));
}

/// Audit issue 14, item 4 (RFC 9700 §4.14.2): whoever held the old password
/// may have taken an `offline_access` refresh token or an API key; the reset
/// that takes the account back revokes every refresh-token family, their
/// access tokens and the API keys, and says so.
async fn a_password_reset_revokes_refresh_tokens_access_tokens_and_api_keys(backend: Backend) {
    const NEW_PASSWORD: &str = "a brand new passphrase 2";
    let (app, clock) = spawn(backend).await;
    app.create_user("taken@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let rp = relying_party(&app, &client).await;

    // The attacker's browser: an offline refresh token and an API key.
    let attacker = app.browser();
    let tokens = offline_tokens(&app, &rp, &attacker, "taken@example.com").await;
    let access = tokens.access_token().secret().clone();
    let key = crate::api_keys::create_key(&attacker, "loot", &["email"], "").await;
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::OK);
    assert_eq!(userinfo_status(&app, &key).await, StatusCode::OK);
    clock.advance(Duration::minutes(10));
    let refreshed = refresh(&rp, tokens.refresh_token().unwrap())
        .await
        .expect("the refresh token works before the reset");
    let refreshed_access = refreshed.access_token().secret().clone();
    assert_eq!(
        userinfo_status(&app, &refreshed_access).await,
        StatusCode::OK
    );

    // The owner resets the password from another browser.
    let owner = app.browser();
    let link = crate::accounts_bad_paths::request_reset(&app, &owner, "taken@example.com").await;
    let mails = app.emails_to("taken@example.com").await;
    assert!(
        mails
            .last()
            .unwrap()
            .contains("revokes every app's access and your API keys"),
        "the email says what a reset does: {}",
        mails.last().unwrap()
    );
    let form = owner.get(&link).await;
    let done = owner
        .submit_raw(&form, "/password/reset", &[("password", NEW_PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let login = owner.follow(done).await;
    assert!(
        login.contains("access and your API keys are revoked"),
        "{}",
        login.html
    );

    // Everything the attacker held is dead: both access tokens, the key,
    // and the refresh token, which no longer refreshes.
    assert_eq!(
        userinfo_status(&app, &access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        userinfo_status(&app, &refreshed_access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(userinfo_status(&app, &key).await, StatusCode::UNAUTHORIZED);
    let refused = refresh(&rp, refreshed.refresh_token().unwrap()).await;
    let error = refused.expect_err("the refresh token is revoked");
    assert!(error.contains("invalid_grant"), "{error}");
    let introspected = introspect(&app, &client, refreshed.refresh_token().unwrap().secret()).await;
    assert_eq!(introspected["active"], false, "{introspected}");

    // The audit trail counts what the reset revoked.
    let db = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .unwrap();
    let rows = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT detail FROM audit_events WHERE kind = 'password.reset'".to_owned(),
        ),
    )
    .await
    .unwrap();
    db.close().await.unwrap();
    assert_eq!(rows.len(), 1, "one password.reset event");
    let detail: String = rows[0].try_get("", "detail").unwrap();
    assert!(
        detail.contains("refresh tokens and 1 API keys revoked") && !detail.contains(" 0 refresh"),
        "{detail}"
    );

    // The owner signs in anew with the new password and gets tokens again.
    let owner = app.browser();
    let signed_in = crate::accounts::sign_in(&owner, "taken@example.com", NEW_PASSWORD).await;
    assert!(signed_in.contains("My profile"), "{}", signed_in.html);
    let fresh = offline_tokens(&app, &rp, &owner, "taken@example.com").await;
    assert_eq!(
        userinfo_status(&app, fresh.access_token().secret()).await,
        StatusCode::OK
    );
}

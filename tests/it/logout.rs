//! RP-initiated logout (`/logout`), the profile's sign-out button, and the
//! audit log they and sign-in write, read back with `stepgate audit tail`.

use chrono::Duration;
use openidconnect::{OAuth2TokenResponse, TokenResponse};
use reqwest::StatusCode;
use serde_json::Value;
use stepgate::clock::FixedClock;

use crate::accounts::{PASSWORD, sign_in};
use crate::browser::Browser;
use crate::helpers::{Backend, TestApp, stderr, stdout, stepgate, write_config};
use crate::oidc::{
    REDIRECT, TestClient, exchange, payload, register, relying_party, sign_in_and_consent, spawn,
    start,
};
use crate::on_both_backends;

on_both_backends!(
    a_valid_hint_ends_the_session_and_returns_to_the_client,
    an_unregistered_post_logout_redirect_uri_is_never_followed,
    without_a_hint_the_session_stays_until_confirmed,
    a_forged_cross_site_post_signs_no_one_out,
    a_hint_signed_by_someone_else_is_no_hint,
    a_hint_for_another_client_is_no_hint,
    an_expired_hint_still_signs_out,
    the_profile_sign_out_still_works,
    sign_in_and_sign_out_are_audited,
    an_ignored_redirect_is_audited_with_its_reason,
);

/// The post-logout redirect URI the test client registers.
const BYE: &str = "http://127.0.0.1:9/bye";
const EMAIL: &str = "ada@example.com";

/// A user signed in to a client through the pages, and the ID token the
/// client got.
struct Session {
    app: TestApp,
    clock: FixedClock,
    browser: Browser,
    client: TestClient,
    id_token: String,
    access_token: String,
}

async fn signed_in(backend: Backend) -> Session {
    let (app, clock) = spawn(backend).await;
    app.create_user(EMAIL, PASSWORD, true).await;
    let client = register(&app, &["--post-logout-redirect-uri", BYE]);
    let rp = relying_party(&app, &client).await;
    let browser = app.browser();
    let flow = start(&rp, None);
    let code = sign_in_and_consent(&browser, &flow, EMAIL).await;
    let (tokens, _) = exchange(&rp, flow, &code).await;
    let id_token = tokens.id_token().expect("an ID token").to_string();
    let access_token = tokens.access_token().secret().clone();
    assert!(is_signed_in(&browser).await);
    Session {
        app,
        clock,
        browser,
        client,
        id_token,
        access_token,
    }
}

/// `/logout?…` with these query parameters.
fn logout_url(params: &[(&str, &str)]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("/logout?{query}")
}

/// Whether the browser's session still opens the profile (else /profile
/// redirects to /login).
async fn is_signed_in(browser: &Browser) -> bool {
    let page = browser.get_raw("/profile").await;
    match page.status {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            let to = page.headers["location"].to_str().unwrap();
            assert!(to.ends_with("/login"), "{to}");
            false
        }
        other => panic!("/profile answered {other}: {}", page.html),
    }
}

fn location(page: &crate::browser::Page) -> &str {
    page.headers["location"].to_str().unwrap()
}

async fn a_valid_hint_ends_the_session_and_returns_to_the_client(backend: Backend) {
    let s = signed_in(backend).await;
    let answer = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.id_token),
            ("post_logout_redirect_uri", BYE),
            ("state", "s 1/é"),
            ("client_id", &s.client.id),
        ]))
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    assert_eq!(location(&answer), format!("{BYE}?state=s+1%2F%C3%A9"));
    let cookie = answer.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("stepgate_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    assert!(!is_signed_in(&s.browser).await, "the session is gone");

    // Without state, the URI is used as registered.
    let again = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.id_token),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    assert_eq!(location(&again), BYE);
}

async fn an_unregistered_post_logout_redirect_uri_is_never_followed(backend: Backend) {
    let s = signed_in(backend).await;
    // Never registered, a near miss, and the client's login redirect URI.
    for uri in [
        "https://evil.example/bye",
        "http://127.0.0.1:9/bye/",
        REDIRECT,
    ] {
        let answer = s
            .browser
            .get_raw(&logout_url(&[
                ("id_token_hint", &s.id_token),
                ("post_logout_redirect_uri", uri),
                ("state", "s"),
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.html);
        assert!(answer.headers.get("location").is_none());
        assert!(answer.contains("You are signed out"), "{}", answer.html);
    }
    assert!(!is_signed_in(&s.browser).await);

    // Without a hint, even after confirming, a client_id does not make an
    // unregistered URI a destination.
    sign_in(&s.browser, EMAIL, PASSWORD).await;
    let confirm = s
        .browser
        .get(&logout_url(&[
            ("client_id", &s.client.id),
            ("post_logout_redirect_uri", "https://evil.example/bye"),
        ]))
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    let done = s.browser.submit_raw(&confirm, "/logout", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/login?signed_out=1");
    assert!(!is_signed_in(&s.browser).await);
}

async fn without_a_hint_the_session_stays_until_confirmed(backend: Backend) {
    let s = signed_in(backend).await;
    let confirm = s
        .browser
        .get_raw(&logout_url(&[
            ("client_id", &s.client.id),
            ("post_logout_redirect_uri", BYE),
            ("state", "xyz"),
        ]))
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.html);
    assert!(confirm.headers.get("location").is_none());
    assert_eq!(confirm.headers["cache-control"], "no-store");
    let form = confirm.form("/logout");
    assert!(!form.fields["csrf_token"].is_empty());
    assert_eq!(form.fields["client_id"], s.client.id);
    assert_eq!(form.fields["post_logout_redirect_uri"], BYE);
    assert_eq!(form.fields["state"], "xyz");
    assert!(confirm.contains(EMAIL), "says who would be signed out");
    assert!(confirm.html.contains("method=\"post\""));

    // Only shown: the session works until the form is submitted.
    assert!(is_signed_in(&s.browser).await);
    let done = s.browser.submit_raw(&confirm, "/logout", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(location(&done), format!("{BYE}?state=xyz"));
    assert!(!is_signed_in(&s.browser).await);

    // A bare GET /logout also only asks; confirming lands on the sign-in page.
    sign_in(&s.browser, EMAIL, PASSWORD).await;
    let bare = s.browser.get_raw("/logout").await;
    assert_eq!(bare.status, StatusCode::OK);
    assert!(is_signed_in(&s.browser).await);
    let done = s.browser.submit(&bare, "/logout", &[]).await;
    assert!(done.url.ends_with("/login?signed_out=1"), "{}", done.url);
    assert!(done.contains("You are signed out"));
    assert!(!is_signed_in(&s.browser).await);

    // A repeated parameter is a clear 400 page that changes nothing.
    sign_in(&s.browser, EMAIL, PASSWORD).await;
    let repeated = s
        .browser
        .get_raw(&logout_url(&[("state", "a"), ("state", "b")]))
        .await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST);
    assert!(repeated.alert().is_some());
    assert!(is_signed_in(&s.browser).await);
}

async fn a_forged_cross_site_post_signs_no_one_out(backend: Backend) {
    let s = signed_in(backend).await;
    // Another site's form without a valid hint (it cannot have the user's ID
    // token): no token of ours, a foreign Origin. RP-Initiated Logout §2 lets
    // relying parties POST, so it is treated like the GET: a confirmation
    // page, and the session stays.
    let no_hint = [
        ("post_logout_redirect_uri", BYE),
        ("client_id", s.client.id.as_str()),
    ];
    let forged = s
        .browser
        .client
        .post(s.app.url("/logout"))
        .header("origin", "https://evil.example")
        .form(&no_hint)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::OK);
    assert!(forged.headers().get("location").is_none());
    assert!(
        forged.headers().get("set-cookie").is_none() || {
            // Only a pre-session CSRF cookie may be set, never a cleared session.
            forged
                .headers()
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("stepgate_session="))
        }
    );
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("<form method=\"post\"")
    );
    let tampered = tamper_signature(&s.id_token);
    let bad_hint = [
        ("id_token_hint", tampered.as_str()),
        ("post_logout_redirect_uri", BYE),
    ];
    let bare = s.browser.post_raw("/logout", &bad_hint).await;
    assert_eq!(
        bare.status,
        StatusCode::OK,
        "a confirmation, not a sign-out"
    );
    assert!(bare.headers.get("location").is_none());
    // A POST that carries a made-up CSRF token is checked, and refused.
    let mut wrong = no_hint.to_vec();
    wrong.push(("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let wrong = s.browser.post_raw("/logout", &wrong).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(is_signed_in(&s.browser).await, "still signed in");

    // The relying party's own POST with a valid hint signs out at once (§2).
    let fields = [
        ("id_token_hint", s.id_token.as_str()),
        ("post_logout_redirect_uri", BYE),
        ("state", "after-post"),
    ];
    let done = s.browser.post_raw("/logout", &fields).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let location = done.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(BYE) && location.contains("state=after-post"),
        "{location}"
    );
    assert!(!is_signed_in(&s.browser).await);
}

/// `token` with one byte of its signature changed.
fn tamper_signature(token: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 0x01;
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

async fn a_hint_signed_by_someone_else_is_no_hint(backend: Backend) {
    let s = signed_in(backend).await;
    let forged = tamper_signature(&s.id_token);
    assert_ne!(forged, s.id_token);
    let answer = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &forged),
            ("post_logout_redirect_uri", BYE),
            ("state", "s"),
        ]))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "a confirmation, not a redirect"
    );
    assert!(answer.headers.get("location").is_none());
    answer.form("/logout");
    assert!(is_signed_in(&s.browser).await);

    // Our access token is signed by the same key, for the same client and
    // user, but it is not an ID token (typ at+jwt).
    let access = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.access_token),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    assert_eq!(access.status, StatusCode::OK, "{}", access.html);
    assert!(access.headers.get("location").is_none());
    assert!(is_signed_in(&s.browser).await);

    // Confirming signs out, but the forged hint names no client to return to.
    let done = s.browser.submit_raw(&answer, "/logout", &[]).await;
    assert_eq!(location(&done), "/login?signed_out=1");
    assert!(!is_signed_in(&s.browser).await);
}

async fn a_hint_for_another_client_is_no_hint(backend: Backend) {
    let s = signed_in(backend).await;
    let other = register(&s.app, &["--post-logout-redirect-uri", BYE]);
    let answer = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.id_token),
            ("client_id", &other.id),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.html);
    assert!(answer.headers.get("location").is_none());
    answer.form("/logout");
    assert!(is_signed_in(&s.browser).await, "refused as a hint");
}

async fn an_expired_hint_still_signs_out(backend: Backend) {
    let s = signed_in(backend).await;
    // Past the ID token's hour, keeping the session alive (idle timeout 30 min).
    for _ in 0..3 {
        s.clock.advance(Duration::minutes(25));
        assert!(is_signed_in(&s.browser).await);
    }
    let exp = payload(&s.id_token)["exp"].as_i64().unwrap();
    assert!(exp < stepgate::clock::Clock::now(&s.clock).timestamp());
    let answer = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.id_token),
            ("post_logout_redirect_uri", BYE),
            ("state", "late"),
        ]))
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    assert_eq!(location(&answer), format!("{BYE}?state=late"));
    assert!(!is_signed_in(&s.browser).await);
}

async fn the_profile_sign_out_still_works(backend: Backend) {
    let s = signed_in(backend).await;
    let profile = s.browser.get("/profile").await;
    let form = profile.form("/logout");
    assert_eq!(
        form.fields.keys().collect::<Vec<_>>(),
        ["csrf_token"],
        "the button posts only its token"
    );
    let answer = s.browser.submit_raw(&profile, "/logout", &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/login?signed_out=1");
    let page = s.browser.follow(answer).await;
    assert!(page.contains("You are signed out"));
    assert!(!is_signed_in(&s.browser).await);
}

/// `stepgate audit tail` with `args`, as one JSON object.
fn audit_tail(app: &TestApp, args: &[&str]) -> Value {
    let config = write_config(app.dir.path(), &app.db, "");
    let mut all = vec![
        "audit",
        "tail",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = stepgate(&all, &[]);
    assert!(out.status.success(), "audit tail: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "exactly one line: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

async fn sign_in_and_sign_out_are_audited(backend: Backend) {
    let s = signed_in(backend).await;
    let sub = payload(&s.id_token)["sub"].as_str().unwrap().to_owned();
    // A failure for a known account and one for an unknown email.
    let other = s.app.browser();
    sign_in(&other, EMAIL, "not the password").await;
    sign_in(&other, "nobody@example.com", "not the password").await;
    let answer = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.id_token),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);

    let all = audit_tail(&s.app, &[]);
    let events = all["events"].as_array().unwrap();
    let find = |kind: &str, outcome: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["kind"] == kind && e["outcome"] == outcome)
            .collect()
    };
    let success = find("signin.password", "success");
    assert_eq!(success.len(), 1, "{all}");
    assert_eq!(success[0]["user_id"], sub.as_str());
    assert_eq!(success[0]["ip"], "127.0.0.1");
    let failures = find("signin.password", "failure");
    assert_eq!(failures.len(), 2, "{all}");
    assert_eq!(failures[1]["user_id"], sub.as_str(), "known account");
    assert!(failures[0]["user_id"].is_null(), "unknown email");
    assert!(failures.iter().all(|e| e["ip"] == "127.0.0.1"));
    let logout = find("session.logout", "success");
    assert_eq!(logout.len(), 1, "{all}");
    assert_eq!(logout[0]["user_id"], sub.as_str());
    assert_eq!(logout[0]["client_id"], s.client.id.as_str());
    assert_eq!(logout[0]["ip"], "127.0.0.1");
    // Never an email or a password, in any field.
    let text = all.to_string();
    for secret in [EMAIL, "nobody@example.com", PASSWORD, "not the password"] {
        assert!(!text.contains(secret), "{secret} in the audit log: {text}");
    }
    // Times are RFC 3339.
    for e in events {
        let time = e["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }

    // --limit 5: at most five, newest first, the logout on top.
    let tail = audit_tail(&s.app, &["--limit", "5"]);
    let newest = tail["events"].as_array().unwrap();
    assert!(!newest.is_empty() && newest.len() <= 5, "{tail}");
    assert_eq!(newest[0]["kind"], "session.logout");
    let ids: Vec<i64> = newest.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(newest, &events[..newest.len()], "the newest of all");

    // The plain text form: one line per event.
    let config = write_config(s.app.dir.path(), &s.app.db, "");
    let out = stepgate(
        &[
            "audit",
            "tail",
            "--limit",
            "2",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("session.logout"), "{}", lines[0]);
}

/// The `detail` of the newest `session.logout` event.
fn last_logout_detail(app: &TestApp) -> String {
    let all = audit_tail(app, &[]);
    let event = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "session.logout")
        .unwrap_or_else(|| panic!("a session.logout event: {all}"))
        .clone();
    event["detail"].as_str().unwrap_or_default().to_owned()
}

async fn an_ignored_redirect_is_audited_with_its_reason(backend: Backend) {
    let s = signed_in(backend).await;

    // A trailing slash: still ignored for the user (§3), but the operator
    // reads why in the audit log.
    let answer = s
        .browser
        .get_raw(&logout_url(&[
            ("id_token_hint", &s.id_token),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/bye/"),
        ]))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.html);
    assert!(answer.headers.get("location").is_none());
    assert!(answer.contains("You are signed out"));
    assert!(!answer.contains("registered"), "nothing told to the user");
    assert_eq!(
        last_logout_detail(&s.app),
        "rp-initiated, id_token_hint; post_logout_redirect_uri not registered for this client"
    );

    // A hint that is not ours, and no client_id: nothing to check the URI
    // against. Confirmed on the form, the session ends on our own page.
    sign_in(&s.browser, EMAIL, PASSWORD).await;
    let confirm = s
        .browser
        .get(&logout_url(&[
            ("id_token_hint", "not.a.token"),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.html);
    let done = s.browser.submit_raw(&confirm, "/logout", &[]).await;
    assert_eq!(location(&done), "/login?signed_out=1");
    let detail = last_logout_detail(&s.app);
    assert!(detail.starts_with("rp-initiated, confirmed; "), "{detail}");
    assert!(detail.contains("no valid id_token_hint"), "{detail}");
    assert!(
        detail.contains("no valid id_token_hint or client_id names the client"),
        "{detail}"
    );
    assert!(!detail.contains("not.a.token"), "never the hint itself");

    // A client_id nobody registered.
    sign_in(&s.browser, EMAIL, PASSWORD).await;
    let confirm = s
        .browser
        .get(&logout_url(&[
            ("client_id", "no-such-client"),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    let done = s.browser.submit_raw(&confirm, "/logout", &[]).await;
    assert_eq!(location(&done), "/login?signed_out=1");
    assert_eq!(
        last_logout_detail(&s.app),
        "rp-initiated, confirmed; post_logout_redirect_uri ignored: unknown client"
    );

    // A logout that went where it asked carries no reason.
    sign_in(&s.browser, EMAIL, PASSWORD).await;
    let confirm = s
        .browser
        .get(&logout_url(&[
            ("client_id", &s.client.id),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    let done = s.browser.submit_raw(&confirm, "/logout", &[]).await;
    assert_eq!(location(&done), BYE);
    assert_eq!(last_logout_detail(&s.app), "rp-initiated, confirmed");
}

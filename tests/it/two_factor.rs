//! Two-factor authentication as a person with an authenticator app meets it.
//! Codes are computed by the test's own TOTP (`totp_code.rs`), on a fixed
//! clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};
use stepgate::clock::{Clock, FixedClock};

use crate::accounts::{PASSWORD, sign_in};
use crate::browser::{Browser, Page};
use crate::helpers::{
    Backend, TestApp, join_all, spawn_app_with_clock, stderr, stepgate, write_config,
};
use crate::on_both_backends;

on_both_backends!(
    activate_by_qr_code_then_sign_in_with_a_code,
    codes_are_never_accepted_twice,
    recovery_codes_work_once_and_can_be_replaced,
    a_pending_secret_never_confirmed_leaves_2fa_off,
    wrong_codes_lock_then_release,
    deactivation_needs_the_password_and_a_code,
    operators_can_reset_2fa,
    one_code_raced_by_many_requests_is_accepted_once,
    a_pending_secret_belongs_to_the_session_that_started_it,
);

pub use crate::totp_code::{base32_decode, totp_code};

#[test]
fn the_test_totp_matches_rfc6238() {
    // RFC 6238 Appendix B, SHA1, truncated to the last 6 digits.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // base32 of "12345678901234567890"
    assert_eq!(
        totp_code(secret, DateTime::from_timestamp(59, 0).unwrap()),
        "287082"
    );
    assert_eq!(
        totp_code(secret, DateTime::from_timestamp(1111111109, 0).unwrap()),
        "081804"
    );
}

/// A server on a fixed clock set to the middle of a 30 s step.
async fn spawn(backend: Backend) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let start = DateTime::from_timestamp(now - now % 30 + 10, 0).unwrap();
    let clock = FixedClock::new(start);
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    (app, clock)
}

/// Signs in (no 2FA yet) and activates 2FA from the profile, as the seed
/// describes. Returns the base32 secret and the recovery codes.
pub async fn activate(app: &TestApp, browser: &Browser, email: &str) -> (String, Vec<String>) {
    let profile = sign_in(browser, email, PASSWORD).await;
    assert!(profile.contains("My profile"), "{}", profile.html);
    let href = profile
        .link("Activate two-factor authentication")
        .expect("the profile links to activation");
    let page = browser.get(&href).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.contains("<svg"), "the QR code is inline SVG");
    let secret = page.element_text("totp-secret").expect("#totp-secret");
    assert_eq!(base32_decode(&secret).len(), 20, "160-bit secret");
    let code = totp_code(&secret, app.clock.now());
    let done = browser
        .submit(&page, "/profile/2fa/activate", &[("code", &code)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(done.headers["cache-control"], "no-store");
    let codes = done.list_items("recovery-codes");
    assert_eq!(codes.len(), 10, "{}", done.html);
    (secret, codes)
}

async fn sign_out(browser: &Browser) {
    let profile = browser.get("/profile").await;
    let out = browser.submit(&profile, "/logout", &[]).await;
    assert!(out.url.contains("/login"));
}

/// Email and password; returns the page the sign-in lands on.
async fn password_step(browser: &Browser, email: &str) -> Page {
    sign_in(browser, email, PASSWORD).await
}

async fn activate_by_qr_code_then_sign_in_with_a_code(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "ada@example.com").await;

    // The user is told by email.
    let mails = app.emails_to("ada@example.com").await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Two-factor authentication is on")),
        "{mails:?}"
    );
    // The profile now says it is on.
    let profile = browser.get("/profile").await;
    assert!(profile.contains("<strong>On.</strong>"));
    assert!(profile.link("Activate two-factor authentication").is_none());

    sign_out(&browser).await;
    clock.advance(Duration::seconds(30));

    // The password alone does not sign in: the code prompt comes next.
    let login = browser.get("/login").await;
    let answer = browser
        .submit_raw(
            &login,
            "/login",
            &[("email", "ada@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers["location"], "/login/2fa");
    let first_cookie = answer.headers["set-cookie"].to_str().unwrap().to_owned();
    let prompt = browser.follow(answer).await;
    assert!(prompt.contains("Enter your code"), "{}", prompt.html);
    // The profile is not reachable yet.
    let blocked = browser.get_raw("/profile").await;
    assert_eq!(blocked.status, StatusCode::SEE_OTHER);
    assert_eq!(blocked.headers["location"], "/login/2fa");

    // A wrong code re-shows the form with an alert.
    let wrong = browser
        .submit(&prompt, "/login/2fa", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.alert().unwrap().contains("not right"));
    assert!(wrong.form("/login/2fa").fields.contains_key("code"));

    // The right code signs in, with a new session cookie.
    let code = totp_code(&secret, clock.now());
    let answer = browser
        .submit_raw(&wrong, "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let second_cookie = answer.headers["set-cookie"].to_str().unwrap().to_owned();
    assert_ne!(
        first_cookie.split(';').next(),
        second_cookie.split(';').next()
    );
    let profile = browser.follow(answer).await;
    assert!(profile.contains("My profile"));

    // The QR code decodes to exactly the otpauth URI of its page's secret.
    app.create_user("grace@example.com", PASSWORD, true).await;
    let other = app.browser();
    sign_in(&other, "grace@example.com", PASSWORD).await;
    let page = other.get("/profile/2fa/activate").await;
    let secret = page.element_text("totp-secret").unwrap();
    let decoded = decode_qr(&page.html);
    assert_eq!(
        decoded,
        format!(
            "otpauth://totp/Stepgate:grace@example.com?secret={secret}&issuer=Stepgate&algorithm=SHA1&digits=6&period=30"
        )
    );
    // Each start of the activation makes a fresh secret (issue 14, item 3);
    // the one shown before can no longer be confirmed.
    let again = other.get("/profile/2fa/activate").await;
    let fresh = again.element_text("totp-secret").unwrap();
    assert_ne!(fresh, secret);
    let stale = other
        .submit(
            &again,
            "/profile/2fa/activate",
            &[("code", &totp_code(&secret, app.clock.now()))],
        )
        .await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{}", stale.html);
    // The page shown again after a wrong code keeps the secret it showed.
    assert_eq!(stale.element_text("totp-secret").unwrap(), fresh);
}

/// Rasterizes the page's inline QR SVG (the `qrcode` crate writes one path of
/// `M{x} {y}h{w}v{h}H{x}V{y}` rectangles) and decodes it with rqrr.
fn decode_qr(html: &str) -> String {
    let svg = &html[html.find("<svg").expect("an svg")..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    let number = |name: &str| -> usize {
        let at = svg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        svg[at..at + svg[at..].find('"').unwrap()].parse().unwrap()
    };
    let (width, height) = (number("width"), number("height"));
    let d_at = svg.find(" d=\"").unwrap() + 4;
    let d = &svg[d_at..d_at + svg[d_at..].find('"').unwrap()];
    let mut dark = vec![false; width * height];
    for rect in d.split('M').filter(|r| !r.is_empty()) {
        // "{x} {y}h{w}v{h}H{x}V{y}"
        let (x, rest) = rect.split_once(' ').unwrap();
        let (y, rest) = rest.split_once('h').unwrap();
        let (w, rest) = rest.split_once('v').unwrap();
        let (h, _) = rest.split_once('H').unwrap();
        let [x, y, w, h]: [usize; 4] = [x, y, w, h].map(|n| n.parse().unwrap());
        for row in y..y + h {
            for col in x..x + w {
                dark[row * width + col] = true;
            }
        }
    }
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        if dark[y * width + x] { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    let (_, content) = grids[0].decode().expect("the QR code decodes");
    content
}

async fn codes_are_never_accepted_twice(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("replay@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "replay@example.com").await;
    sign_out(&browser).await;

    // The activation code's step was used: its code does not sign in again.
    let prompt = password_step(&browser, "replay@example.com").await;
    let activation_code = totp_code(&secret, clock.now());
    let replay = browser
        .submit(&prompt, "/login/2fa", &[("code", &activation_code)])
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "replayed code");

    // The next step's code works once...
    clock.advance(Duration::seconds(30));
    let code = totp_code(&secret, clock.now());
    let ok = browser
        .submit(&replay, "/login/2fa", &[("code", &code)])
        .await;
    assert!(ok.contains("My profile"));
    sign_out(&browser).await;
    let prompt = password_step(&browser, "replay@example.com").await;
    let again = browser
        .submit(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "same code, same window"
    );
    // ...and an older code still inside the ±1 window is refused too.
    let older = totp_code(&secret, clock.now() - Duration::seconds(30));
    let stale = browser
        .submit(&again, "/login/2fa", &[("code", &older)])
        .await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "earlier step");
    // The following step is fine.
    clock.advance(Duration::seconds(30));
    let next = totp_code(&secret, clock.now());
    let ok = browser
        .submit(&stale, "/login/2fa", &[("code", &next)])
        .await;
    assert!(ok.contains("My profile"));
}

async fn recovery_codes_work_once_and_can_be_replaced(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("lost@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, codes) = activate(&app, &browser, "lost@example.com").await;
    sign_out(&browser).await;

    // A recovery code, typed in upper case without dashes, signs in once.
    let prompt = password_step(&browser, "lost@example.com").await;
    let typed = codes[0].replace('-', "").to_uppercase();
    let ok = browser
        .submit(&prompt, "/login/2fa", &[("code", &typed)])
        .await;
    assert!(ok.contains("My profile"), "{}", ok.html);
    assert!(ok.contains("9 unused recovery codes left"), "{}", ok.html);
    sign_out(&browser).await;
    let prompt = password_step(&browser, "lost@example.com").await;
    let reused = browser
        .submit(&prompt, "/login/2fa", &[("code", &codes[0])])
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    let ok = browser
        .submit(&reused, "/login/2fa", &[("code", &codes[1])])
        .await;
    assert!(ok.contains("My profile"));

    // New codes need a code from the app; a wrong one changes nothing.
    let refused = browser
        .submit(&ok, "/profile/2fa/recovery-codes", &[("code", "123456")])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.alert().is_some());
    clock.advance(Duration::seconds(30));
    let code = totp_code(&secret, clock.now());
    let fresh = browser
        .submit(&refused, "/profile/2fa/recovery-codes", &[("code", &code)])
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.headers["cache-control"], "no-store");
    let new_codes = fresh.list_items("recovery-codes");
    assert_eq!(new_codes.len(), 10);
    sign_out(&browser).await;
    let prompt = password_step(&browser, "lost@example.com").await;
    let old = browser
        .submit(&prompt, "/login/2fa", &[("code", &codes[2])])
        .await;
    assert_eq!(
        old.status,
        StatusCode::UNAUTHORIZED,
        "old codes stop working"
    );
    let ok = browser
        .submit(&old, "/login/2fa", &[("code", &new_codes[0])])
        .await;
    assert!(ok.contains("My profile"));
}

async fn a_pending_secret_never_confirmed_leaves_2fa_off(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("pending@example.com", PASSWORD, true).await;
    let browser = app.browser();
    sign_in(&browser, "pending@example.com", PASSWORD).await;
    let page = browser.get("/profile/2fa/activate").await;
    assert!(page.element_text("totp-secret").is_some());
    // A wrong code does not activate.
    let wrong = browser
        .submit(&page, "/profile/2fa/activate", &[("code", "111111")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.alert().is_some());
    assert!(
        wrong.element_text("totp-secret").is_some(),
        "the form comes back"
    );
    sign_out(&browser).await;
    clock.advance(Duration::seconds(30));

    // Signing in needs no code, and the pending secret's codes mean nothing.
    let profile = sign_in(&browser, "pending@example.com", PASSWORD).await;
    assert!(profile.contains("My profile"), "{}", profile.url);
    assert!(profile.link("Activate two-factor authentication").is_some());
    let challenge = browser.get_raw("/login/2fa").await;
    assert_eq!(
        challenge.status,
        StatusCode::SEE_OTHER,
        "nothing to challenge"
    );
    assert_eq!(challenge.headers["location"], "/profile");
}

async fn wrong_codes_lock_then_release(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("brute@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "brute@example.com").await;
    sign_out(&browser).await;
    clock.advance(Duration::seconds(30));

    let mut page = password_step(&browser, "brute@example.com").await;
    for attempt in 1..=4 {
        page = browser
            .submit(&page, "/login/2fa", &[("code", "999999")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // The fifth wrong code starts the lockout: 429, and it says when.
    page = browser
        .submit(&page, "/login/2fa", &[("code", "999999")])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.headers["retry-after"], "60");
    assert!(
        page.alert().unwrap().contains("Try again in a minute"),
        "{:?}",
        page.alert()
    );
    // Even a valid code is refused until the lockout ends.
    let code = totp_code(&secret, clock.now());
    page = browser
        .submit(&page, "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    // After it, a valid code works (and was not used up by the refused attempt).
    clock.advance(Duration::seconds(61));
    let code = totp_code(&secret, clock.now());
    page = browser
        .submit(&page, "/login/2fa", &[("code", &code)])
        .await;
    assert!(page.contains("My profile"), "{}", page.html);

    // Every failure and the lockout are in the audit log.
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let count = |kind: &'static str, outcome: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!(
                        "SELECT COUNT(*) AS n FROM audit_events WHERE kind = '{kind}' AND outcome = '{outcome}'"
                    ),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(count("totp.check", "failure").await, 5);
    assert_eq!(count("totp.lockout", "locked").await, 1);
    assert_eq!(count("totp.check", "locked").await, 1);
    db.close().await.unwrap();
}

async fn deactivation_needs_the_password_and_a_code(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("off@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "off@example.com").await;
    clock.advance(Duration::seconds(30));
    let profile = browser.get("/profile").await;

    let code = totp_code(&secret, clock.now());
    let wrong_password = browser
        .submit(
            &profile,
            "/profile/2fa/deactivate",
            &[("password", "not my password"), ("code", &code)],
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong_password
            .alert()
            .unwrap()
            .contains("Nothing was changed")
    );
    let wrong_code = browser
        .submit(
            &wrong_password,
            "/profile/2fa/deactivate",
            &[("password", PASSWORD), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong_code.status, StatusCode::UNAUTHORIZED);
    assert!(wrong_code.contains("<strong>On.</strong>"), "still on");

    let off = browser
        .submit(
            &wrong_code,
            "/profile/2fa/deactivate",
            &[("password", PASSWORD), ("code", &code)],
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(off.contains("Two-factor authentication is off."));
    assert!(off.link("Activate two-factor authentication").is_some());
    let mails = app.emails_to("off@example.com").await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Two-factor authentication is off"))
    );

    sign_out(&browser).await;
    let profile = sign_in(&browser, "off@example.com", PASSWORD).await;
    assert!(profile.contains("My profile"), "no code asked any more");
}

async fn operators_can_reset_2fa(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("phone@example.com", PASSWORD, true).await;
    let browser = app.browser();
    activate(&app, &browser, "phone@example.com").await;

    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "user",
            "reset-2fa",
            "PHONE@example.com",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The user is told by email.
    let notices: Vec<String> = app
        .emails_to("phone@example.com")
        .await
        .into_iter()
        .filter(|m| m.contains("Two-factor authentication was reset"))
        .collect();
    assert_eq!(notices.len(), 1, "the reset notice");
    // Their sessions ended; the password alone signs in now.
    let gone = browser.get_raw("/profile").await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    let profile = sign_in(&browser, "phone@example.com", PASSWORD).await;
    assert!(profile.contains("My profile"));
    assert!(profile.link("Activate two-factor authentication").is_some());

    let out = stepgate(
        &[
            "user",
            "reset-2fa",
            "nobody@example.com",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
}

/// The same valid code posted by many sessions at once, half of them to a
/// second server on the same database, is accepted exactly once.
async fn one_code_raced_by_many_requests_is_accepted_once(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    let sibling = app.spawn_sibling().await;
    app.create_user("race@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let (secret, _) = activate(&app, &browser, "race@example.com").await;
    clock.advance(Duration::seconds(30));

    let mut prompts = Vec::new();
    for i in 0..8 {
        let b = if i % 2 == 0 {
            app.browser()
        } else {
            sibling.browser()
        };
        let page = password_step(&b, "race@example.com").await;
        assert!(page.contains("Enter your code"));
        prompts.push((b, page));
    }
    let code = totp_code(&secret, clock.now());
    let attempts = prompts.iter().map(|(b, page)| {
        let code = code.clone();
        async move { b.submit_raw(page, "/login/2fa", &[("code", &code)]).await }
    });
    let answers = join_all(attempts).await;
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::SEE_OTHER)
        .count();
    // The others are refused: as a wrong code, or once the failures reach
    // the lockout point, as locked.
    let refused = answers
        .iter()
        .filter(|a| {
            a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::TOO_MANY_REQUESTS
        })
        .count();
    assert_eq!(
        accepted,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(refused, 7);
}

/// Pending secrets (`totp_enrollments`) of a user, counted in the database.
async fn pending_secrets(app: &TestApp, user_email: &str) -> i64 {
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT COUNT(*) AS n FROM totp_enrollments e JOIN users u ON u.id = e.user_id \
                 WHERE u.email = '{user_email}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// Issue 14, item 3: a session that opened the activation page cannot plant
/// its secret on another session, a pending secret expires, and sign-out and
/// a password reset delete it.
async fn a_pending_secret_belongs_to_the_session_that_started_it(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("plant@example.com", PASSWORD, true).await;
    let (attacker, victim) = (app.browser(), app.browser());
    sign_in(&attacker, "plant@example.com", PASSWORD).await;
    sign_in(&victim, "plant@example.com", PASSWORD).await;

    let planted = attacker.get("/profile/2fa/activate").await;
    let planted_secret = planted.element_text("totp-secret").unwrap();
    let page = victim.get("/profile/2fa/activate").await;
    let victim_secret = page.element_text("totp-secret").unwrap();
    assert_ne!(
        victim_secret, planted_secret,
        "another session's secret is never shown"
    );
    assert_eq!(pending_secrets(&app, "plant@example.com").await, 2);

    // A code from the planted secret does not activate on the victim's session.
    let planted_code = totp_code(&planted_secret, clock.now());
    let refused = victim
        .submit(&page, "/profile/2fa/activate", &[("code", &planted_code)])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.html);
    assert!(refused.alert().is_some());
    let profile = victim.get("/profile").await;
    assert!(
        profile.link("Activate two-factor authentication").is_some(),
        "still off"
    );

    // Signing out deletes the attacker's pending secret.
    sign_out(&attacker).await;
    assert_eq!(pending_secrets(&app, "plant@example.com").await, 1);

    // A pending secret expires after ten minutes.
    clock.advance(Duration::seconds(601));
    let late = victim
        .submit(
            &refused,
            "/profile/2fa/activate",
            &[("code", &totp_code(&victim_secret, clock.now()))],
        )
        .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "{}", late.html);
    let renewed = late.element_text("totp-secret").unwrap();
    assert_ne!(renewed, victim_secret, "an expired secret is replaced");
    // The fresh one works, on the session that was shown it.
    let done = victim
        .submit(
            &late,
            "/profile/2fa/activate",
            &[("code", &totp_code(&renewed, clock.now()))],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(done.list_items("recovery-codes").len(), 10);
    assert_eq!(pending_secrets(&app, "plant@example.com").await, 0);

    // A password reset deletes a pending secret with the sessions.
    app.create_user("reset@example.com", PASSWORD, true).await;
    let other = app.browser();
    sign_in(&other, "reset@example.com", PASSWORD).await;
    other.get("/profile/2fa/activate").await;
    assert_eq!(pending_secrets(&app, "reset@example.com").await, 1);
    let link =
        crate::accounts_bad_paths::request_reset(&app, &app.browser(), "reset@example.com").await;
    let browser = app.browser();
    let form = browser.get(&link).await;
    let reset = browser
        .submit(
            &form,
            "/password/reset",
            &[("password", "a brand new passphrase")],
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.html);
    assert_eq!(pending_secrets(&app, "reset@example.com").await, 0);
}

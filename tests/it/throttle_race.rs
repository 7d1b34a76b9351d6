//! The throttles under concurrency: many attempts released together, half of
//! them at a second node on the same database. An attempt is claimed in the
//! database before anything is verified, so the number of verifications
//! (each one writes exactly one audit outcome) never passes the limit, and a
//! right answer is refused while the lock lasts, on either node.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};
use stepgate::clock::{Clock, FixedClock};

use crate::accounts::{PASSWORD, sign_in};
use crate::browser::{Browser, Page};
use crate::helpers::{Backend, TestApp, join_all, spawn_app_with_clock};
use crate::on_both_backends;
use crate::two_factor::{activate, totp_code};

on_both_backends!(
    fifty_parallel_passwords_verify_at_most_the_limit,
    fifty_parallel_codes_check_at_most_the_limit,
    fifty_parallel_deactivations_verify_at_most_the_password_limit,
    the_claim_statement_follows_the_policy,
);

/// Attempts released together in each test.
const BURST: usize = 50;

/// Two nodes on one database and a fixed clock in the middle of a 30 s step,
/// so no lock ends and no code changes while a burst is in flight.
async fn two_nodes(backend: Backend) -> (TestApp, TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 10, 0).unwrap());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |_| {}).await;
    let sibling = app.spawn_sibling().await;
    (app, sibling, clock)
}

/// Audit rows of `kind` whose outcome is one of `outcomes`.
async fn audited(app: &TestApp, kind: &str, outcomes: &[&str]) -> u64 {
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let list = outcomes
        .iter()
        .map(|o| format!("'{o}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT COUNT(*) AS n FROM audit_events WHERE kind = '{kind}' AND outcome IN ({list})"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    n as u64
}

fn statuses(pages: &[Page]) -> Vec<u16> {
    pages.iter().map(|p| p.status.as_u16()).collect()
}

/// A browser on each node in turn.
fn browsers(app: &TestApp, sibling: &TestApp, n: usize) -> Vec<Browser> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                app.browser()
            } else {
                sibling.browser()
            }
        })
        .collect()
}

async fn fifty_parallel_passwords_verify_at_most_the_limit(backend: Backend) {
    let (app, sibling, _clock) = two_nodes(backend).await;
    let limit = app.settings.login.free_failures as u64;
    app.create_user("target@example.com", PASSWORD, true).await;

    let browsers = browsers(&app, &sibling, BURST);
    let mut forms = Vec::new();
    for b in &browsers {
        forms.push(b.get("/login").await);
    }
    let attempts = browsers
        .iter()
        .zip(&forms)
        .enumerate()
        .map(|(i, (b, page))| {
            let password = format!("wrong password {i}");
            async move {
                b.submit_raw(
                    page,
                    "/login",
                    &[("email", "target@example.com"), ("password", &password)],
                )
                .await
            }
        });
    let answers = join_all(attempts).await;
    let wrong = answers
        .iter()
        .filter(|a| a.status == StatusCode::UNAUTHORIZED)
        .count() as u64;
    let locked = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .count() as u64;
    assert_eq!(wrong + locked, BURST as u64, "{:?}", statuses(&answers));

    // Each verified password wrote one outcome; the rest were refused before
    // argon2 ran.
    let verified = audited(&app, "signin.password", &["failure", "success"]).await;
    assert!(
        verified <= limit,
        "{verified} passwords verified against a limit of {limit}: {:?}",
        statuses(&answers)
    );
    assert_eq!(verified, limit, "the limit is reached, not undershot");
    assert!(locked >= BURST as u64 - limit);
    assert_eq!(
        audited(&app, "signin.password", &["locked"]).await,
        BURST as u64 - verified
    );

    // The right password is refused on both nodes while the lock lasts.
    for node in [&app, &sibling] {
        let page = sign_in(&node.browser(), "target@example.com", PASSWORD).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.html);
        assert!(page.headers.contains_key("retry-after"));
    }
    assert_eq!(
        audited(&app, "signin.password", &["failure", "success"]).await,
        verified,
        "a locked attempt verifies nothing"
    );
}

async fn fifty_parallel_codes_check_at_most_the_limit(backend: Backend) {
    let (app, sibling, clock) = two_nodes(backend).await;
    let limit = app.settings.totp.free_failures as u64;
    app.create_user("otp@example.com", PASSWORD, true).await;
    let (secret, _) = activate(&app, &app.browser(), "otp@example.com").await;
    clock.advance(Duration::seconds(30));
    let checks_before = audited(&app, "totp.check", &["failure", "success"]).await;

    // Fifty sessions past the password, each at its code prompt.
    let browsers = browsers(&app, &sibling, BURST);
    let mut prompts = Vec::new();
    for b in &browsers {
        let page = sign_in(b, "otp@example.com", PASSWORD).await;
        assert!(page.contains("Enter your code"), "{}", page.html);
        prompts.push(page);
    }
    let right = totp_code(&secret, clock.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let attempts = browsers
        .iter()
        .zip(&prompts)
        .map(|(b, page)| async move { b.submit_raw(page, "/login/2fa", &[("code", wrong)]).await });
    let answers = join_all(attempts).await;
    assert!(
        answers
            .iter()
            .all(|a| a.status == StatusCode::UNAUTHORIZED
                || a.status == StatusCode::TOO_MANY_REQUESTS),
        "{:?}",
        statuses(&answers)
    );
    let checked = audited(&app, "totp.check", &["failure", "success"]).await - checks_before;
    assert!(
        checked <= limit,
        "{checked} codes checked against a limit of {limit}: {:?}",
        statuses(&answers)
    );
    assert_eq!(checked, limit);

    // The right code is refused on both nodes while the lock lasts.
    for (b, page) in browsers.iter().zip(&prompts).take(2) {
        let answer = b.submit_raw(page, "/login/2fa", &[("code", &right)]).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            answer.html
        );
    }
    assert_eq!(
        audited(&app, "totp.check", &["failure", "success"]).await - checks_before,
        checked
    );
}

/// Deactivating 2FA checks the password: the same claim as sign-in, so the
/// form is no way around the sign-in limit.
async fn fifty_parallel_deactivations_verify_at_most_the_password_limit(backend: Backend) {
    let (app, sibling, clock) = two_nodes(backend).await;
    let limit = app.settings.login.free_failures as u64;
    app.create_user("keep@example.com", PASSWORD, true).await;
    let (secret, _) = activate(&app, &app.browser(), "keep@example.com").await;
    clock.advance(Duration::seconds(30));

    // One signed-in session per node; the burst shares them.
    let browsers = browsers(&app, &sibling, 2);
    let mut sessions = Vec::new();
    for b in &browsers {
        let page = sign_in(b, "keep@example.com", PASSWORD).await;
        let code = totp_code(&secret, clock.now());
        let answer = b.submit_raw(&page, "/login/2fa", &[("code", &code)]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
        // One code per time-step: move on for the next session.
        clock.advance(Duration::seconds(30));
        sessions.push(b.get("/profile").await);
    }
    let code = totp_code(&secret, clock.now());
    let attempts = (0..BURST).map(|i| {
        let (b, page) = (&browsers[i % 2], &sessions[i % 2]);
        let password = format!("not my password {i}");
        let code = code.clone();
        async move {
            b.submit_raw(
                page,
                "/profile/2fa/deactivate",
                &[("password", &password), ("code", &code)],
            )
            .await
        }
    });
    let answers = join_all(attempts).await;
    let verified = audited(&app, "totp.deactivate", &["failure", "success"]).await;
    assert!(
        verified <= limit,
        "{verified} passwords verified against a limit of {limit}: {:?}",
        statuses(&answers)
    );
    assert_eq!(verified, limit);
    // And sign-in shares the count: the right password is refused now.
    let page = sign_in(&sibling.browser(), "keep@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.html);
}

/// The claim's SQL (a `CASE` with a shift) computes the policy's delays on
/// this database, and a lock refuses without counting.
async fn the_claim_statement_follows_the_policy(backend: Backend) {
    use stepgate::auth::throttle::ThrottlePolicy;
    use stepgate::store::login_throttle::{Claimed, claim, clear, get};

    let app = crate::helpers::spawn_app(backend).await;
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let policy = ThrottlePolicy {
        free_failures: 2,
        base_delay_secs: 3,
        max_delay_secs: 20,
    };
    let open = |failures, lock_secs| Claimed::Open {
        failures,
        lock_secs,
    };
    let key = "test-key";
    assert_eq!(claim(&db, key, 1000, &policy).await.unwrap(), open(1, None));
    assert_eq!(
        claim(&db, key, 1000, &policy).await.unwrap(),
        open(2, Some(3))
    );
    for _ in 0..3 {
        assert_eq!(
            claim(&db, key, 1001, &policy).await.unwrap(),
            Claimed::Locked {
                retry_after_secs: 2
            }
        );
    }
    assert_eq!(
        get(&db, key).await.unwrap().unwrap().failures,
        2,
        "refusals are not counted"
    );
    assert_eq!(
        claim(&db, key, 1003, &policy).await.unwrap(),
        open(3, Some(6))
    );
    assert_eq!(
        claim(&db, key, 1009, &policy).await.unwrap(),
        open(4, Some(12))
    );
    // 24 s would be next; the cap is 20.
    assert_eq!(
        claim(&db, key, 1021, &policy).await.unwrap(),
        open(5, Some(20))
    );
    assert_eq!(
        claim(&db, key, 1041, &policy).await.unwrap(),
        open(6, Some(20))
    );
    // A success ends the run.
    clear(&db, key).await.unwrap();
    assert_eq!(claim(&db, key, 1041, &policy).await.unwrap(), open(1, None));
    // Keys do not share a count.
    assert_eq!(
        claim(&db, "other", 1041, &policy).await.unwrap(),
        open(1, None)
    );
}

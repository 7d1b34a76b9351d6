//! The durable outbox (audit issue 14, item 7): forms only queue what they
//! want sent, the same way for every address; a worker on every node sends
//! it; a node that dies or a mail server that is away loses nothing; and
//! every queued message goes out once, whichever node takes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use stepgate::clock::FixedClock;
use stepgate::config::{EmailSettings, EmailTransport};
use stepgate::service::mail::{self, QueueStatus};

use crate::accounts::PASSWORD;
use crate::browser::{Browser, Page, link_in};
use crate::email::{Behaviour, SmtpServer};
use crate::helpers::{Backend, TestApp, join_all, spawn_app_with_clock};
use crate::on_both_backends;

on_both_backends!(
    forms_answer_the_same_and_only_queue,
    a_failed_send_is_sent_again_after_a_backoff,
    fifty_queued_mails_go_out_once_each,
);

fn fixed_clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap(),
    ))
}

async fn queue(app: &TestApp) -> QueueStatus {
    mail::status(&app.state).await.expect("queue status")
}

/// Waits (bounded) until `check` holds for the queue.
async fn wait_for_queue(app: &TestApp, what: &str, check: impl Fn(QueueStatus) -> bool) {
    for _ in 0..3000 {
        if check(queue(app).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the queue never got to {what}: {:?}", queue(app).await);
}

/// Posts `email` to `path` with the browser's CSRF token, as the form on
/// the page that offers it would (`/confirm/resend` is offered by the
/// sign-in page of an unconfirmed account only).
async fn submit(browser: &Browser, path: &str, email: &str) -> Page {
    let page = browser.get("/login").await;
    let token = page.form("/login").fields["csrf_token"].clone();
    browser
        .post_raw(path, &[("csrf_token", &token), ("email", email)])
        .await
}

/// Whether a reset link opens the form to choose a password.
async fn reset_link_works(browser: &Browser, link: &str) -> bool {
    let page = browser.get(link).await;
    page.status == StatusCode::OK
        && page
            .forms()
            .iter()
            .any(|f| f.action.starts_with("/password/reset") && f.fields.contains_key("password"))
}

async fn forms_answer_the_same_and_only_queue(backend: Backend) {
    // A mail server that accepts connections and never answers: a send
    // holds the worker until `smtp_timeout_secs`, far past this test.
    let smtp = SmtpServer::start("PLAIN", |_| Behaviour::Silent).await;
    let clock = fixed_clock();
    let mut app = spawn_app_with_clock(backend, clock.clone(), |s| {
        s.email = EmailSettings {
            outbox_dir: s.email.outbox_dir.clone(),
            smtp_timeout_secs: 120,
            ..smtp.settings()
        };
        // Only woken by its own requests: the CLI's rows stay the CLI's.
        s.email.queue_poll_secs = 3600;
    })
    .await;
    // Through the CLI, which sends its own confirmation to the file outbox.
    app.create_user("ada@example.com", PASSWORD, true).await;
    app.create_user("bob@example.com", PASSWORD, false).await;
    assert_eq!(queue(&app).await.queued, 0, "the CLI sent what it queued");

    // A registered address and an unknown one get the very same answer,
    // for a reset link and for a new confirmation link...
    let browser = app.browser();
    let known = submit(&browser, "/password/forgot", "ada@example.com").await;
    let unknown = submit(&browser, "/password/forgot", "nobody@example.com").await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!((known.status, &known.html), (unknown.status, &unknown.html));
    let known = submit(&browser, "/confirm/resend", "bob@example.com").await;
    let unknown = submit(&browser, "/confirm/resend", "nobody@example.com").await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!((known.status, &known.html), (unknown.status, &unknown.html));
    // ...and each did the same thing: queue one row. None was sent when
    // the answers came (the mail server never answered anything), so no
    // request waited on mail.
    let status = queue(&app).await;
    assert_eq!(status.queued, 4, "{status:?}");
    assert!(smtp.connections.load(Ordering::SeqCst) <= 1);
    wait_for_queue(&app, "a row being sent", |q| q.leased >= 1).await;

    // The node dies with a row in its hands (its worker stops mid-send).
    // Another node, with a working transport, takes the rows that nobody
    // holds at once, and the dead node's row when its lease runs out.
    let sibling = app
        .spawn_sibling_with(|s| {
            s.email.transport = EmailTransport::File;
            s.email.queue_poll_secs = 1;
        })
        .await;
    app.stop().await;
    wait_for_queue(&sibling, "only the dead node's rows", |q| {
        q.queued == q.leased
    })
    .await;
    clock.advance(chrono::Duration::seconds(mail::lease_secs(&app.state) + 1));
    sibling.mail_settled().await;

    // Exactly the mail the accounts call for: a reset link for Ada, a new
    // confirmation link for Bob (beside the one the CLI sent), nothing for
    // the unknown address.
    let to_ada = sibling.emails_to("ada@example.com").await;
    assert_eq!(to_ada.len(), 1, "{to_ada:?}");
    let link = link_in(
        &to_ada[0],
        &format!("{}/password/reset?token=", sibling.issuer),
    )
    .expect("a reset link");
    assert!(reset_link_works(&sibling.browser(), &link).await);
    let to_bob = sibling.emails_to("bob@example.com").await;
    assert_eq!(to_bob.len(), 2);
    assert!(to_bob[1].contains("/confirm?token="), "{}", to_bob[1]);
    assert!(sibling.emails_to("nobody@example.com").await.is_empty());
    assert_eq!(sibling.outbox_files().await.len(), 3);
}

async fn a_failed_send_is_sent_again_after_a_backoff(backend: Backend) {
    // The first connection never answers (a send times out); later ones work.
    let mut smtp = SmtpServer::start("PLAIN", |n| {
        if n == 0 {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    })
    .await;
    let clock = fixed_clock();
    let app = spawn_app_with_clock(backend, clock.clone(), |s| {
        s.email = EmailSettings {
            outbox_dir: s.email.outbox_dir.clone(),
            smtp_timeout_secs: 1,
            ..smtp.settings()
        };
        s.email.queue_poll_secs = 1;
    })
    .await;
    app.create_user("ada@example.com", PASSWORD, true).await;
    let browser = app.browser();
    let answer = submit(&browser, "/password/forgot", "ada@example.com").await;
    assert_eq!(answer.status, StatusCode::OK);

    // The send fails; the row stays, released, waiting for its retry.
    for _ in 0..3000 {
        if smtp.connections.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for_queue(&app, "a row waiting for a retry", |q| {
        q.queued == 1 && q.leased == 0
    })
    .await;
    assert_eq!(smtp.connections.load(Ordering::SeqCst), 1);
    // Nothing is tried again before the backoff...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.connections.load(Ordering::SeqCst), 1, "no retry yet");
    assert_eq!(queue(&app).await.queued, 1);
    // ...and after it, the message goes out.
    clock.advance(chrono::Duration::seconds(mail::backoff_secs(1)));
    let received = smtp.next().await;
    assert_eq!(received.rcpt_to, ["<ada@example.com>"]);
    app.mail_settled().await;
    // Composed again for the retry, with a new link: that one works (the
    // one made for the failed attempt was never seen by anyone, and the new
    // link retired it).
    let body = received.body();
    let link =
        link_in(&body, &format!("{}/password/reset?token=", app.issuer)).expect("a reset link");
    assert!(reset_link_works(&browser, &link).await, "{body}");
}

async fn fifty_queued_mails_go_out_once_each(backend: Backend) {
    let clock = fixed_clock();
    let app = spawn_app_with_clock(backend, clock, |s| s.email.queue_poll_secs = 1).await;
    let sibling = app.spawn_sibling().await;
    // 50 notices queued at once, half on each node, while both nodes'
    // workers and ten more delivery passes on each run together.
    let queued = (0..50).map(|i| {
        let node = if i % 2 == 0 { &app } else { &sibling };
        async move {
            mail::notice(
                &node.state,
                &format!("user{}@example.com", i % 5),
                format!("Notice {i}"),
                format!("Notice number {i}.\n"),
            )
            .await
            .expect("queued");
        }
    });
    let passes = (0..20).map(|i| {
        let node = if i % 2 == 0 { &app } else { &sibling };
        async move {
            mail::deliver_due(&node.state).await.expect("delivered");
        }
    });
    tokio::join!(join_all(queued), join_all(passes));
    app.mail_settled().await;

    let mut subjects = BTreeMap::new();
    for file in app.outbox_files().await {
        let message = std::fs::read_to_string(file).unwrap();
        let subject = message
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .expect("a subject")
            .to_owned();
        *subjects.entry(subject).or_insert(0) += 1;
    }
    assert_eq!(subjects.len(), 50, "{subjects:?}");
    assert!(
        subjects.values().all(|&n| n == 1),
        "each once: {subjects:?}"
    );
}

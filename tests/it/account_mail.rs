//! What account email says and to whom (issue 14, items 5 and 10): a request
//! value cannot add lines, headers or links to a message, and a look-alike
//! address cannot take over a real one. Read back from the `.eml` files of
//! the `file` transport's outbox.

use reqwest::StatusCode;

use crate::accounts::PASSWORD;
use crate::browser::{Browser, Page, link_in};
use crate::helpers::{Backend, TestApp, spawn_app, stderr, stepgate, write_config};
use crate::oidc::{register, relying_party, start};
use crate::on_both_backends;

on_both_backends!(
    a_sign_up_interaction_cannot_change_the_email,
    look_alike_addresses_cannot_take_a_real_one,
    account_mail_goes_only_to_confirmed_addresses,
);

/// One `.eml` file split as RFC 5322 §2.1 reads it: CRLF-terminated lines,
/// the header fields, an empty line, the body.
struct Eml {
    headers: Vec<String>,
    body: Vec<String>,
}

impl Eml {
    fn parse(raw: &str) -> Eml {
        // §2.1.1 / §2.3: CR and LF appear only together, as a line end, and
        // no line is longer than 998 octets.
        let without_crlf = raw.replace("\r\n", "");
        assert!(
            !without_crlf.contains(['\r', '\n']),
            "a bare CR or LF: {raw:?}"
        );
        let lines: Vec<&str> = raw.split("\r\n").collect();
        for line in &lines {
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
        let blank = lines.iter().position(|l| l.is_empty()).expect("a body");
        Eml {
            headers: lines[..blank].iter().map(|l| (*l).to_owned()).collect(),
            body: lines[blank + 1..].iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    /// The header fields' names, lower-cased and sorted (a folded line
    /// continues its field and names none).
    fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .filter(|l| !l.starts_with([' ', '\t']))
            .map(|l| l.split_once(':').expect("a header field").0.to_lowercase())
            .collect();
        names.sort();
        names
    }
}

/// The one message in the outbox for `to`, parsed.
async fn the_email_to(app: &TestApp, to: &str) -> Eml {
    let mails = app.emails_to(to).await;
    assert_eq!(mails.len(), 1, "one email to {to}");
    Eml::parse(&mails[0])
}

/// Posts the sign-up form to `/signup?interaction=VALUE` (the value
/// URL-encoded, as a browser would send any link's query).
async fn sign_up_with_interaction(browser: &Browser, email: &str, value: &str) -> Page {
    let page = browser.get("/signup").await;
    let csrf = page.form("/signup").fields["csrf_token"].clone();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("interaction", value)
        .finish();
    browser
        .post_raw(
            &format!("/signup?{query}"),
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", PASSWORD),
                ("name", "Ada Lovelace"),
            ],
        )
        .await
}

/// The id of a live interaction: an authorization request in progress.
async fn live_interaction(app: &TestApp, browser: &Browser) -> String {
    let client = register(app, &[]);
    let rp = relying_party(app, &client).await;
    let flow = start(&rp, None);
    let started = browser.get_raw(&flow.url).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.html);
    let location = started.headers["location"].to_str().unwrap();
    let query = location
        .strip_prefix("/login?")
        .expect("to the sign-in page");
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "interaction")
        .map(|(_, v)| v.into_owned())
        .expect("an interaction id")
}

async fn a_sign_up_interaction_cannot_change_the_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let confirm = format!("{}/confirm?token=", app.issuer);
    let injected = "x\r\nBcc: eve@evil.example\r\n\r\nYour account is locked. Unlock it at https://evil.example/unlock\r\n";
    let cases = [
        ("inject-crlf@example.com", injected.to_owned()),
        (
            "inject-lf@example.com",
            "x\nhttps://evil.example/\n".to_owned(),
        ),
        // Past RFC 5322 §2.1.1's 998 octets a line cannot be sent at all.
        ("long@example.com", "A".repeat(2000)),
        // The shape of an id we issue, but none we issued.
        ("unknown@example.com", "B".repeat(43)),
    ];
    for (email, value) in &cases {
        let done = sign_up_with_interaction(&browser, email, value).await;
        assert_eq!(done.status, StatusCode::OK, "{email}: {}", done.html);
        assert!(done.contains("Check your email"), "{email}");

        let mail = the_email_to(&app, email).await;
        assert_eq!(
            mail.header_names(),
            [
                "content-transfer-encoding",
                "content-type",
                "date",
                "from",
                "message-id",
                "mime-version",
                "subject",
                "to",
            ],
            "{email}: {:?}",
            mail.headers
        );
        let text = mail.body.join("\n");
        assert!(!text.contains("evil"), "{email}: {text}");
        assert!(!text.contains("Bcc"), "{email}: {text}");
        // The link is the confirmation link alone: the value was dropped.
        let link = link_in(&text, &confirm).expect("a confirmation link");
        let token = link.strip_prefix(&confirm).unwrap();
        assert_eq!(token.len(), 43, "{email}: only a token: {link}");
        assert!(mail.body.contains(&link), "the link is a line of its own");
        // The sign-up still works: the link confirms the address.
        let confirmed = browser.get(&link).await;
        assert!(confirmed.contains("Email confirmed"), "{}", confirmed.html);
        assert_eq!(confirmed.link("Sign in").as_deref(), Some("/login"));
    }

    // A live interaction is carried, URL-encoded, and leads back into it.
    let id = live_interaction(&app, &browser).await;
    let done = sign_up_with_interaction(&browser, "flow@example.com", &id).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    let mail = the_email_to(&app, "flow@example.com").await;
    let text = mail.body.join("\n");
    let link = link_in(&text, &confirm).expect("a confirmation link");
    let expected_tail = format!("&interaction={id}");
    assert!(link.ends_with(&expected_tail), "{link}");
    let confirmed = browser.get(&link).await;
    assert!(confirmed.contains("Email confirmed"), "{}", confirmed.html);
    assert_eq!(
        confirmed.link("Sign in"),
        Some(format!("/login?interaction={id}"))
    );
}

/// Submits the sign-up form with `email`.
async fn sign_up_as(browser: &Browser, email: &str) -> Page {
    let page = browser.get("/signup").await;
    browser
        .submit(
            &page,
            "/signup",
            &[
                ("email", email),
                ("password", PASSWORD),
                ("name", "Ada Lovelace"),
            ],
        )
        .await
}

/// Submits the password-reset request form with `email`.
async fn ask_for_a_reset(browser: &Browser, email: &str) -> Page {
    let page = browser.get("/password/forgot").await;
    browser
        .submit(&page, "/password/forgot", &[("email", email)])
        .await
}

/// "\u{212A}" is the Kelvin sign: it looks like "K" and lower-cases to "k".
const KELVIN_KIM: &str = "\u{212A}im@example.com";

async fn look_alike_addresses_cannot_take_a_real_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();

    // A non-ASCII local part is refused on the form, with the field's alert...
    let refused = sign_up_as(&browser, KELVIN_KIM).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
    let alert = refused.alert().expect("an alert");
    assert!(alert.contains("ASCII"), "{alert}");
    assert!(
        refused.html.contains("id=\"email-error\""),
        "the email field's"
    );
    assert!(app.outbox_files().await.is_empty(), "no email at all");

    // ...and by `stepgate user create`.
    let config = write_config(app.dir.path(), &app.db, "");
    let out = stepgate(
        &[
            "user",
            "create",
            "--email",
            KELVIN_KIM,
            "--name",
            "Kim",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ASCII"), "{}", stderr(&out));

    // The real address is then free for its owner.
    let done = sign_up_as(&browser, "kim@example.com").await;
    assert!(done.contains("Check your email"), "{}", done.html);
    assert_eq!(app.emails_to("kim@example.com").await.len(), 1);

    // An internationalized domain is one domain whichever way it is written:
    // stored and mailed as its A-label, so the spellings share one account.
    let done = sign_up_as(&browser, "ann@B\u{fc}cher.example").await;
    assert!(done.contains("Check your email"), "{}", done.html);
    let mails = app.emails_to("ann@xn--bcher-kva.example").await;
    assert_eq!(mails.len(), 1, "mailed to the A-label");
    let confirm = format!("{}/confirm?token=", app.issuer);
    let link = link_in(&mails[0], &confirm).expect("a confirmation link");
    assert!(browser.get(&link).await.contains("Email confirmed"));
    let again = sign_up_as(&browser, "ann@xn--bcher-kva.example").await;
    assert_eq!(again.html, done.html, "the same answer as a new address");
    let mails = app.emails_to("ann@xn--bcher-kva.example").await;
    assert_eq!(mails.len(), 2, "the owner is told, no second account");
    assert!(mails[1].contains("already has one"), "{}", mails[1]);
}

async fn account_mail_goes_only_to_confirmed_addresses(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("owner@example.com", PASSWORD, true).await;
    // Not confirmed: the CLI sends it a confirmation link, and nothing else
    // may follow until it is used.
    app.create_user("pending@example.com", PASSWORD, false)
        .await;
    assert_eq!(app.emails_to("pending@example.com").await.len(), 1);
    let browser = app.browser();

    let new = sign_up_as(&browser, "fresh@example.com").await;
    let to_owner = sign_up_as(&browser, "owner@example.com").await;
    let to_pending = sign_up_as(&browser, "pending@example.com").await;
    for page in [&to_owner, &to_pending] {
        assert_eq!(page.status, new.status);
        assert_eq!(page.html, new.html, "one answer for every address");
    }
    let unknown = ask_for_a_reset(&browser, "nobody@example.com").await;
    let owner_reset = ask_for_a_reset(&browser, "owner@example.com").await;
    let pending_reset = ask_for_a_reset(&browser, "pending@example.com").await;
    for page in [&owner_reset, &pending_reset] {
        assert_eq!(page.status, unknown.status);
        assert_eq!(page.html, unknown.html, "one answer for every address");
    }

    let owner = app.emails_to("owner@example.com").await;
    assert_eq!(owner.len(), 2, "told of the sign-up, sent the reset link");
    assert!(owner[0].contains("already has one"));
    assert!(owner[1].contains("/password/reset?token="));
    assert_eq!(
        app.emails_to("pending@example.com").await.len(),
        1,
        "an unconfirmed address gets neither"
    );
    assert!(app.emails_to("nobody@example.com").await.is_empty());
}

//! The browser journey in real headless Chromium, driven over chromedriver:
//! a relying party sends a new user to Stepgate, who signs up, confirms the
//! email, signs in, consents and comes back with a code that exchanges for a
//! verified ID token; then activates 2FA by scanning the QR code as the
//! browser renders it, signs out, and signs in again with a code. Then, with
//! chromedriver's virtual authenticator (WebAuthn Level 3 §11: CTAP2,
//! internal transport, resident keys, user verification), it adds a passkey
//! on the profile, signs in with it alone, uses it as the second factor
//! after the password, and removes it.
//!
//! A separate test binary from tests/it: it needs Chromium (skipped without it
//! unless `TEST_REQUIRE_BROWSER` is set) and runs one long journey.
//! With `SCREENSHOTS_DIR` set it also writes every hosted page at a phone and a
//! desktop width there (`docs/screenshots/` is made that way).

mod support;
#[allow(dead_code)]
#[path = "../it/totp_code.rs"]
mod totp_code;

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Value, json};
use stepgate::clock::Clock;

use support::{Chromedriver, PASSWORD, SCREENSHOTS_VAR, Server, browser_available};

const EMAIL: &str = "ada@example.com";
const CLIENT_NAME: &str = "NAO Cloud";

/// (name, width, height) of the windows screenshots are taken at.
const WIDTHS: [(&str, u32, u32); 2] = [("phone", 390, 844), ("desktop", 1280, 800)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journey() {
    if !browser_available() {
        return;
    }
    let server = Server::start().await;
    let redirect_uri = support::callback_listener().await;
    let (client_id, client_secret) = server.register_client(CLIENT_NAME, &redirect_uri);
    let rp = relying_party(&server, client_id, client_secret, &redirect_uri).await;
    let driver = Chromedriver::start().await;
    let session = driver.session().await;
    let browser = Browser {
        c: session.clone(),
        shots: std::env::var_os(SCREENSHOTS_VAR).map(PathBuf::from),
    };
    // The journey runs as its own task so that a failed step (a panic) still
    // lets this function end the Chromium session: killing chromedriver
    // alone would leave Chromium running.
    let outcome = tokio::spawn(async move {
        let result = journey(&server, &rp, &browser, &redirect_uri).await;
        server.stop().await;
        result
    })
    .await;
    let _ = session.close().await;
    drop(driver);
    match outcome {
        Ok(result) => result.expect("the journey"),
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }
}

/// The journey itself; any broken step is an error (or a panic) naming it.
async fn journey(
    server: &Server,
    rp: &Rp,
    b: &Browser,
    redirect_uri: &str,
) -> Result<(), fantoccini::error::CmdError> {
    // An error page first (an unknown client is shown a page, never redirected).
    b.goto(&server.url(
        "/authorize?client_id=nobody&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fevil.example%2F",
    ))
    .await?;
    assert!(b.alert().await?.is_some(), "the error page has an alert");
    b.shoot("error").await?;

    // The relying party sends the browser to the authorization endpoint.
    let flow = start(rp);
    b.goto(&flow.url).await?;
    assert_eq!(b.h1().await?, "Sign in");
    b.check_labels().await?;
    b.shoot("sign-in").await?;

    // No account yet: sign up from the sign-in page.
    b.c.find(Locator::LinkText("Create an account"))
        .await?
        .click()
        .await?;
    b.wait_for_h1("Create your account").await?;
    b.check_labels().await?;
    b.shoot("sign-up").await?;
    // Show what a rejected field looks like, next to the field.
    b.fill("name", "Ada Lovelace").await?;
    b.fill("email", EMAIL).await?;
    b.fill("password", "short").await?;
    b.submit_with_enter("password").await?;
    let field_error = b
        .c
        .execute(
            "const e = document.getElementById('password-error'); return e && e.getAttribute('role');",
            vec![],
        )
        .await?;
    assert_eq!(
        field_error,
        json!("alert"),
        "the error is next to its field"
    );
    b.shoot("sign-up-error").await?;
    b.fill("password", PASSWORD).await?;
    b.submit_with_enter("password").await?;
    b.wait_for_h1("Check your email").await?;

    // The confirmation link from the outbox, opened in the browser.
    let mail = server.last_email_to(EMAIL).await;
    let link =
        support::link_in(&mail, &server.url("/confirm?token=")).expect("an absolute /confirm link");
    b.goto(&link).await?;
    b.wait_for_h1("Email confirmed").await?;
    b.c.find(Locator::LinkText("Sign in"))
        .await?
        .click()
        .await?;
    b.wait_for_h1("Sign in").await?;

    // Sign in with the keyboard only.
    b.keyboard_sign_in().await?;

    // Consent names the client and offers allow and deny.
    b.wait_for_h1(&format!("Allow {CLIENT_NAME}?")).await?;
    b.shoot("consent").await?;
    b.c.find(Locator::Css("button[name=decision][value=allow]"))
        .await?
        .click()
        .await?;
    let code = b.wait_for_callback(redirect_uri, &flow.state).await?;
    let claims = exchange(rp, flow, &code).await;
    assert_eq!(claims.email().unwrap().as_str(), EMAIL);
    assert_eq!(amr(&claims), ["pwd"]);

    // Profile → "Activate two-factor authentication" (a link).
    b.goto(&server.url("/profile")).await?;
    b.wait_for_h1("My profile").await?;
    b.check_labels().await?;
    b.shoot("profile").await?;
    b.c.find(Locator::LinkText("Activate two-factor authentication"))
        .await?
        .click()
        .await?;
    b.wait_for_h1("Activate two-factor authentication").await?;
    b.check_labels().await?;
    b.shoot("2fa-activate").await?;

    // The QR code as Chromium renders it, decoded from the screenshot.
    b.set_viewport(1280, 800).await?;
    let qr = b.c.find(Locator::Css("figure.qr svg")).await?;
    let png = qr.screenshot().await?;
    let uri = support::decode_qr_png(&png);
    let otpauth = url::Url::parse(&uri).expect("an otpauth URI");
    assert_eq!(otpauth.scheme(), "otpauth");
    assert_eq!(otpauth.host_str(), Some("totp"));
    let params: std::collections::BTreeMap<String, String> =
        otpauth.query_pairs().into_owned().collect();
    let secret = params["secret"].clone();
    assert_eq!(support::base32_decode(&secret).len(), 20, "160-bit secret");
    let shown = b.c.find(Locator::Id("totp-secret")).await?.text().await?;
    assert_eq!(shown, secret, "the QR code and the typed key agree");

    // Confirm with the code computed here.
    let now = server.clock.now();
    b.fill("code", &support::totp_code(&secret, now)).await?;
    b.submit_with_enter("code").await?;
    let codes: Value = b
        .c
        .execute(
            "return [...document.querySelectorAll('#recovery-codes li')].map(li => li.textContent.trim());",
            vec![],
        )
        .await?;
    assert_eq!(
        codes.as_array().map(Vec::len),
        Some(10),
        "ten recovery codes"
    );
    b.shoot("recovery-codes").await?;

    // Sign out from the profile.
    b.goto(&server.url("/profile")).await?;
    b.wait_for_h1("My profile").await?;
    b.c.find(Locator::Css("form.signout button"))
        .await?
        .click()
        .await?;
    b.wait_for_h1("Sign in").await?;

    // SSO again, one TOTP step later (a code is accepted once per step).
    server.clock.advance(chrono::Duration::seconds(30));
    let flow = start(rp);
    b.goto(&flow.url).await?;
    b.wait_for_h1("Sign in").await?;
    b.keyboard_sign_in().await?;
    b.wait_for_h1("Enter your code").await?;
    b.check_labels().await?;
    b.shoot("2fa-challenge").await?;
    let code = support::totp_code(&secret, server.clock.now());
    b.keyboard_code(&code).await?;

    // Consent for these scopes is remembered: straight back to the client.
    let code = b.wait_for_callback(redirect_uri, &flow.state).await?;
    let claims = exchange(rp, flow, &code).await;
    let amr = amr(&claims);
    assert!(amr.iter().any(|a| a == "otp"), "amr {amr:?} includes otp");
    assert_eq!(
        claims.auth_context_ref().unwrap().as_str(),
        "urn:stepgate:acr:mfa"
    );

    passkeys(server, rp, b, redirect_uri).await
}

/// The passkey part of the journey, on a virtual authenticator.
async fn passkeys(
    server: &Server,
    rp: &Rp,
    b: &Browser,
    redirect_uri: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let authenticator = b.add_virtual_authenticator().await?;

    // Profile → "Manage passkeys" → "Add a passkey" (the code was just
    // passed: fresh enough).
    b.goto(&server.url("/profile")).await?;
    b.wait_for_h1("My profile").await?;
    b.c.find(Locator::LinkText("Manage passkeys"))
        .await?
        .click()
        .await?;
    b.wait_for_h1("Passkeys").await?;
    b.check_labels().await?;
    b.shoot("passkeys").await?;
    b.fill("passkey-name", "This laptop").await?;
    b.c.find(Locator::Id("passkey-button"))
        .await?
        .click()
        .await?;
    b.wait_for_notice("Your passkey was added").await?;
    let listed = b.c.find(Locator::Id("passkeys")).await?.text().await?;
    assert!(listed.contains("This laptop"), "{listed}");
    assert_eq!(
        b.credentials(&authenticator).await?.len(),
        1,
        "one resident key"
    );
    b.shoot("passkeys-added").await?;

    // Sign out, then "Sign in with a passkey" through an authorization. The
    // sign-in page also offers the passkey in the email field's autofill
    // (conditional mediation), which this authenticator, always touched,
    // would answer by itself: it refuses to verify the user until the
    // button is pressed.
    b.set_user_verified(&authenticator, false).await?;
    b.sign_out(&server.url("/profile")).await?;
    let flow = start(rp);
    b.goto(&flow.url).await?;
    b.wait_for_h1("Sign in").await?;
    b.set_user_verified(&authenticator, true).await?;
    b.c.find(Locator::Id("passkey-button"))
        .await?
        .click()
        .await?;
    let code = b.wait_for_callback(redirect_uri, &flow.state).await?;
    let claims = exchange(rp, flow, &code).await;
    assert_eq!(amr(&claims), ["pop", "user", "mfa"]);
    assert_eq!(
        claims.auth_context_ref().unwrap().as_str(),
        "urn:stepgate:acr:phr"
    );

    // Password, then the passkey instead of the code.
    b.set_user_verified(&authenticator, false).await?;
    b.sign_out(&server.url("/profile")).await?;
    let flow = start(rp);
    b.goto(&flow.url).await?;
    b.wait_for_h1("Sign in").await?;
    b.keyboard_sign_in().await?;
    b.wait_for_h1("Enter your code").await?;
    b.set_user_verified(&authenticator, true).await?;
    b.check_labels().await?;
    b.shoot("2fa-challenge").await?;
    b.c.find(Locator::Id("passkey-button"))
        .await?
        .click()
        .await?;
    let code = b.wait_for_callback(redirect_uri, &flow.state).await?;
    let claims = exchange(rp, flow, &code).await;
    assert_eq!(amr(&claims), ["pwd", "pop", "mfa"]);

    // Remove it (the passkey was just used: fresh enough).
    b.goto(&server.url("/profile/passkeys")).await?;
    b.wait_for_h1("Passkeys").await?;
    b.c.find(Locator::Css(
        "#passkeys form[action='/profile/passkeys/remove'] button",
    ))
    .await?
    .click()
    .await?;
    b.wait_for_notice("The passkey was removed").await?;
    assert!(
        b.c.find(Locator::Id("passkeys")).await.is_err(),
        "the list is empty"
    );
    b.remove_virtual_authenticator(&authenticator).await
}

/// A command of the WebDriver WebAuthn extension (WebAuthn Level 3 §11),
/// under `/session/{id}/webauthn/`.
#[derive(Debug)]
struct WebAuthnCommand {
    method: axum::http::Method,
    path: String,
    body: Option<Value>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// The WebDriver session, plus the screenshot directory when one is asked for.
struct Browser {
    c: Client,
    shots: Option<PathBuf>,
}

impl Browser {
    /// A platform authenticator that keeps passkeys (resident keys),
    /// verifies the user and is always touched (§11.3). Returns its id.
    async fn add_virtual_authenticator(&self) -> Result<String, fantoccini::error::CmdError> {
        let answer = self
            .c
            .issue_cmd(WebAuthnCommand {
                method: axum::http::Method::POST,
                path: "authenticator".into(),
                body: Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                })),
            })
            .await?;
        Ok(answer.as_str().expect("an authenticator id").to_owned())
    }

    /// Whether the virtual authenticator verifies the user (§11.9).
    async fn set_user_verified(
        &self,
        id: &str,
        verified: bool,
    ) -> Result<(), fantoccini::error::CmdError> {
        self.c
            .issue_cmd(WebAuthnCommand {
                method: axum::http::Method::POST,
                path: format!("authenticator/{id}/uv"),
                body: Some(json!({ "isUserVerified": verified })),
            })
            .await?;
        Ok(())
    }

    /// The credentials the virtual authenticator holds (§11.7).
    async fn credentials(&self, id: &str) -> Result<Vec<Value>, fantoccini::error::CmdError> {
        let answer = self
            .c
            .issue_cmd(WebAuthnCommand {
                method: axum::http::Method::GET,
                path: format!("authenticator/{id}/credentials"),
                body: None,
            })
            .await?;
        Ok(answer.as_array().cloned().unwrap_or_default())
    }

    async fn remove_virtual_authenticator(
        &self,
        id: &str,
    ) -> Result<(), fantoccini::error::CmdError> {
        self.c
            .issue_cmd(WebAuthnCommand {
                method: axum::http::Method::DELETE,
                path: format!("authenticator/{id}"),
                body: None,
            })
            .await?;
        Ok(())
    }

    /// Waits until the page shows a notice containing `text`.
    async fn wait_for_notice(&self, text: &str) -> Result<(), fantoccini::error::CmdError> {
        for _ in 0..100 {
            if let Ok(notice) = self.c.find(Locator::Css("[role=status]")).await
                && notice.text().await?.contains(text)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.c.current_url().await?;
        let alert = self.alert().await?;
        panic!("expected a notice {text:?}, still at {url} (alert: {alert:?})");
    }

    /// Signs out from the profile at `profile_url`.
    async fn sign_out(&self, profile_url: &str) -> Result<(), fantoccini::error::CmdError> {
        self.c.goto(profile_url).await?;
        self.wait_for_h1("My profile").await?;
        self.c
            .find(Locator::Css("form.signout button"))
            .await?
            .click()
            .await?;
        for _ in 0..30 {
            if self.h1().await.is_ok_and(|h| h == "Sign in") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "signing out did not reach the sign-in page; at {}",
            self.c.current_url().await?
        );
    }

    async fn goto(&self, url: &str) -> Result<(), fantoccini::error::CmdError> {
        self.c.goto(url).await
    }

    async fn h1(&self) -> Result<String, fantoccini::error::CmdError> {
        self.c.find(Locator::Css("h1")).await?.text().await
    }

    async fn alert(&self) -> Result<Option<String>, fantoccini::error::CmdError> {
        match self.c.find(Locator::Css("[role=alert]")).await {
            Ok(e) => Ok(Some(e.text().await?)),
            Err(e) if e.is_no_such_element() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until the page's first heading is `text`.
    async fn wait_for_h1(&self, text: &str) -> Result<(), fantoccini::error::CmdError> {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(h1) = self.h1().await {
                if h1 == text {
                    return Ok(());
                }
                last = h1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.c.current_url().await?;
        let alert = self.alert().await?;
        panic!("expected the page {text:?}, still at {url} with {last:?} (alert: {alert:?})");
    }

    /// Types into the field with `id`, replacing what it held.
    async fn fill(&self, id: &str, text: &str) -> Result<(), fantoccini::error::CmdError> {
        let field = self.c.find(Locator::Id(id)).await?;
        field.clear().await?;
        field.send_keys(text).await
    }

    /// The id of the focused element.
    async fn focused(&self) -> Result<String, fantoccini::error::CmdError> {
        let id = self
            .c
            .execute(
                "return document.activeElement && document.activeElement.id;",
                vec![],
            )
            .await?;
        Ok(id.as_str().unwrap_or_default().to_owned())
    }

    /// Presses keys into whatever has focus, as a keyboard does.
    async fn press(&self, keys: &str) -> Result<(), fantoccini::error::CmdError> {
        self.c.active_element().await?.send_keys(keys).await
    }

    /// Presses Enter in field `id` and waits until a new document has loaded.
    async fn submit_with_enter(&self, id: &str) -> Result<(), fantoccini::error::CmdError> {
        self.mark_document().await?;
        let field = self.c.find(Locator::Id(id)).await?;
        field
            .send_keys(&String::from(char::from(Key::Enter)))
            .await?;
        self.wait_for_new_document().await
    }

    async fn mark_document(&self) -> Result<(), fantoccini::error::CmdError> {
        self.c
            .execute("window.__stepgateOld = true;", vec![])
            .await
            .map(|_| ())
    }

    async fn wait_for_new_document(&self) -> Result<(), fantoccini::error::CmdError> {
        for _ in 0..100 {
            let fresh = self
                .c
                .execute(
                    "return !window.__stepgateOld && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            if matches!(fresh, Ok(Value::Bool(true))) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no new page after submitting");
    }

    /// The sign-in form by keyboard: the email field has focus on arrival,
    /// Tab moves to the password, Enter submits.
    async fn keyboard_sign_in(&self) -> Result<(), fantoccini::error::CmdError> {
        assert_eq!(self.focused().await?, "email", "the email field has focus");
        self.press(EMAIL).await?;
        self.press(&String::from(char::from(Key::Tab))).await?;
        assert_eq!(
            self.focused().await?,
            "password",
            "Tab goes to the password"
        );
        self.press(PASSWORD).await?;
        self.mark_document().await?;
        self.press(&String::from(char::from(Key::Enter))).await?;
        self.wait_for_new_document().await
    }

    /// The 2FA code form by keyboard: focus is in `code`; Tab goes on to the
    /// submit button and Enter there submits.
    async fn keyboard_code(&self, code: &str) -> Result<(), fantoccini::error::CmdError> {
        assert_eq!(self.focused().await?, "code", "the code field has focus");
        self.press(code).await?;
        self.press(&String::from(char::from(Key::Tab))).await?;
        let button = self
            .c
            .execute(
                "const a = document.activeElement; return a.tagName + ' ' + a.type + ' ' + a.textContent.trim();",
                vec![],
            )
            .await?;
        assert_eq!(
            button,
            json!("BUTTON submit Continue"),
            "Tab reaches Continue"
        );
        self.mark_document().await?;
        self.press(&String::from(char::from(Key::Enter))).await?;
        self.wait_for_new_document().await
    }

    /// Every visible input, select and textarea has a `<label for=…>`.
    async fn check_labels(&self) -> Result<(), fantoccini::error::CmdError> {
        let unlabelled = self
            .c
            .execute(
                r#"return [...document.querySelectorAll('input, select, textarea')]
                    .filter(e => e.type !== 'hidden' && e.type !== 'submit')
                    .filter(e => !e.id || !document.querySelector(`label[for="${e.id}"]`))
                    .map(e => e.name || e.outerHTML);"#,
                vec![],
            )
            .await?;
        assert_eq!(
            unlabelled,
            json!([]),
            "inputs without a <label for> on {}",
            self.c.current_url().await?
        );
        Ok(())
    }

    /// Waits for the browser to arrive at the redirect URI; returns the code
    /// after checking `state` and `iss`.
    async fn wait_for_callback(
        &self,
        redirect_uri: &str,
        state: &CsrfToken,
    ) -> Result<String, fantoccini::error::CmdError> {
        for _ in 0..100 {
            let url = self.c.current_url().await?;
            if url.as_str().starts_with(redirect_uri) {
                let params: std::collections::BTreeMap<String, String> =
                    url.query_pairs().into_owned().collect();
                assert_eq!(params.get("state"), Some(state.secret()), "{url}");
                assert!(params.contains_key("iss"), "RFC 9207 iss in {url}");
                return Ok(params.get("code").cloned().expect("a code"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "never reached the redirect URI; at {}",
            self.c.current_url().await?
        );
    }

    /// Sizes the window so that the page itself (the viewport) is
    /// `width`×`height`: headless Chromium's window is taller than its page.
    async fn set_viewport(
        &self,
        width: u32,
        height: u32,
    ) -> Result<(), fantoccini::error::CmdError> {
        self.c.set_window_size(width, height).await?;
        let inner = self
            .c
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await?;
        let inner_w = inner[0].as_u64().unwrap_or(u64::from(width)) as u32;
        let inner_h = inner[1].as_u64().unwrap_or(u64::from(height)) as u32;
        if (inner_w, inner_h) != (width, height) {
            self.c
                .set_window_size(
                    width + width.saturating_sub(inner_w),
                    height + height.saturating_sub(inner_h),
                )
                .await?;
        }
        Ok(())
    }

    /// With `SCREENSHOTS_DIR` set: the whole page at a phone and a desktop
    /// width, as `<name>-phone.png` and `<name>-desktop.png`.
    async fn shoot(&self, name: &str) -> Result<(), fantoccini::error::CmdError> {
        let Some(dir) = &self.shots else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).expect("screenshots dir");
        for (label, width, height) in WIDTHS {
            self.set_viewport(width, height).await?;
            // The window grows to the page, so a long page is captured whole.
            let full = self
                .c
                .execute("return document.documentElement.scrollHeight;", vec![])
                .await?
                .as_u64()
                .unwrap_or(u64::from(height)) as u32;
            if full > height {
                self.set_viewport(width, full).await?;
            }
            self.c.execute("window.scrollTo(0, 0);", vec![]).await?;
            let png = self.c.screenshot().await?;
            std::fs::write(dir.join(format!("{name}-{label}.png")), png).expect("write screenshot");
        }
        self.set_viewport(1280, 800).await
    }
}

type Rp = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The relying party, configured by discovery.
async fn relying_party(
    server: &Server,
    client_id: String,
    client_secret: String,
    redirect_uri: &str,
) -> Rp {
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(server.issuer.clone()).unwrap(),
        &oidc_http,
    )
    .await
    .expect("discovery");
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id),
        Some(ClientSecret::new(client_secret)),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).unwrap())
}

struct Flow {
    url: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

/// An authorization request with PKCE (S256), as the relying party builds it.
fn start(rp: &Rp) -> Flow {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    Flow {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

/// Exchanges the code and verifies the ID token (signature, iss, aud, nonce).
async fn exchange(rp: &Rp, flow: Flow, code: &str) -> CoreIdTokenClaims {
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .unwrap()
        .set_pkce_verifier(flow.verifier)
        .request_async(&oidc_http)
        .await
        .expect("the token endpoint answers");
    let id_token = tokens.id_token().expect("an ID token");
    id_token
        .claims(&rp.id_token_verifier(), &flow.nonce)
        .expect("the ID token verifies")
        .clone()
}

fn amr(claims: &CoreIdTokenClaims) -> Vec<String> {
    claims
        .auth_method_refs()
        .expect("amr")
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect()
}

/// An HTTP client for the openidconnect crate (its own reqwest feature would
/// pull a second reqwest).
async fn oidc_http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response.bytes().await?.to_vec();
    Ok(builder.body(body).expect("response"))
}

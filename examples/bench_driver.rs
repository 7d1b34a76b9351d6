//! The load driver behind `scripts/bench` for what an off-the-shelf load tool
//! cannot do: sign-in flows through the hosted pages (cookies, forms, CSRF,
//! TOTP codes), and POSTs whose body changes with every request (refresh
//! tokens are single-use).
//!
//! ```text
//! bench_driver seed         --base URL --emails FILE --out FILE [--concurrency N]
//! bench_driver refresh-pool --base URL --client ID:SECRET --redirect URI --email E --n N --out FILE
//! bench_driver refresh      --base URL --client ID:SECRET --tokens FILE [--concurrency N]
//! bench_driver codes        --base URL --client ID:SECRET --redirect URI --email E --n N [--concurrency N]
//! bench_driver flows        --base URL --client ID:SECRET --redirect URI --users FILE [--concurrency N]
//! ```
//!
//! `seed` signs each account in and activates TOTP, writing `email secret`
//! lines. `refresh-pool` runs N authorization-code flows on one signed-in
//! session (no password hashing per flow) and writes one refresh token per
//! line, plus an access token to `FILE.access`. `refresh` spends each token
//! once. `codes` gets N authorization codes on one signed-in session (not
//! timed), then exchanges each once (timed): the code exchange alone, an
//! access token and an ID token per response, well within the codes' 60 s.
//! `flows` runs, for every user, the whole sign-in in a fresh cookie
//! jar: authorize → password → TOTP → consent → code → token. The measured
//! modes print one JSON line: count, ok, errors, secs, per_sec, p50_ms, p99_ms.
//! Every account's password is `PASSWORD` below.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};

const PASSWORD: &str = "bench-password-0123";

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(message.into().into())
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> (String, Self) {
        let mut args = std::env::args().skip(1);
        let mode = args.next().unwrap_or_default();
        let mut map = HashMap::new();
        while let Some(key) = args.next() {
            let key = key.trim_start_matches("--").to_owned();
            let value = args
                .next()
                .unwrap_or_else(|| panic!("--{key} needs a value"));
            map.insert(key, value);
        }
        (mode, Self(map))
    }

    fn get(&self, key: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("--{key} is required"))
    }

    fn number(&self, key: &str, default: usize) -> usize {
        self.0
            .get(key)
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    }

    fn client(&self) -> (String, String) {
        let value = self.get("client");
        let (id, secret) = value.split_once(':').expect("--client ID:SECRET");
        (id.to_owned(), secret.to_owned())
    }
}

fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("an HTTP client")
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("RNG");
    URL_SAFE_NO_PAD.encode(buf)
}

fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// RFC 6238 with SHA-1, 6 digits, 30-second steps: the code for `step`.
fn totp_code(secret: &[u8], step: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    let offset = (mac[19] & 0x0f) as usize;
    let binary = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    format!("{:06}", binary % 1_000_000)
}

fn now_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// A page's form: its action and its hidden fields.
struct Form {
    action: String,
    fields: Vec<(String, String)>,
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&").replace("&#x2f;", "/"))
}

/// The first form whose markup contains `marker` (a field or button name).
fn find_form(html: &str, marker: &str) -> Option<Form> {
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let end = after.find("</form>")?;
        let markup = &after[..end];
        rest = &after[end..];
        if !markup.contains(marker) {
            continue;
        }
        let open = &markup[..markup.find('>')?];
        let action = attribute(open, "action").unwrap_or_default();
        let mut fields = Vec::new();
        for piece in markup.split("<input").skip(1) {
            let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
            if attribute(tag, "type").as_deref() == Some("hidden")
                && let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value"))
            {
                fields.push((name, value));
            }
        }
        return Some(Form { action, fields });
    }
    None
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

async fn post_form(
    http: &Client,
    base: &str,
    form: Form,
    extra: &[(&str, &str)],
) -> Result<reqwest::Response> {
    let mut fields = form.fields;
    for (k, v) in extra {
        fields.retain(|(name, _)| name != k);
        fields.push(((*k).to_owned(), (*v).to_owned()));
    }
    Ok(http
        .post(absolute(base, &form.action))
        .form(&fields)
        .send()
        .await?)
}

/// Walks the hosted pages from `response` until a redirect to `redirect`,
/// answering the password, TOTP and consent pages on the way. Returns the
/// `code` of that redirect.
async fn walk_to_code(
    http: &Client,
    base: &str,
    redirect: &str,
    mut response: reqwest::Response,
    email: &str,
    totp_secret: Option<&[u8]>,
) -> Result<String> {
    for _ in 0..20 {
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str()?.to_owned();
            if location.starts_with(redirect) {
                let url = url::Url::parse(&location)?;
                return match url.query_pairs().find(|(k, _)| k == "code") {
                    Some((_, code)) => Ok(code.into_owned()),
                    None => fail(format!("no code in {location}")),
                };
            }
            response = http.get(absolute(base, &location)).send().await?;
            continue;
        }
        let status = response.status();
        let html = response.text().await?;
        if status != StatusCode::OK {
            return fail(format!("{status}: {}", &html[..html.len().min(300)]));
        }
        response = if let Some(form) = find_form(&html, "name=\"password\"") {
            post_form(
                http,
                base,
                form,
                &[("email", email), ("password", PASSWORD)],
            )
            .await?
        } else if let Some(form) = find_form(&html, "one-time-code") {
            let secret = totp_secret.ok_or("a TOTP prompt for an account without TOTP")?;
            // The next step: accepted within the ±1 skew, and always newer
            // than the step the activation used.
            let code = totp_code(secret, now_step() + 1);
            post_form(http, base, form, &[("code", &code)]).await?
        } else if let Some(form) = find_form(&html, "name=\"decision\"") {
            post_form(http, base, form, &[("decision", "allow")]).await?
        } else {
            return fail(format!(
                "an unexpected page: {}",
                &html[..html.len().min(300)]
            ));
        };
    }
    fail("too many steps")
}

struct Rp {
    base: String,
    client_id: String,
    client_secret: String,
    redirect: String,
}

impl Rp {
    /// An authorization request with PKCE; returns (URL, verifier).
    fn authorize_url(&self, scope: &str) -> (String, String) {
        let verifier = random_b64(32);
        let challenge =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        let mut url = url::Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect)
            .append_pair("scope", scope)
            .append_pair("state", &random_b64(12))
            .append_pair("nonce", &random_b64(12))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        (url.to_string(), verifier)
    }

    async fn exchange(
        &self,
        http: &Client,
        code: &str,
        verifier: &str,
    ) -> Result<serde_json::Value> {
        let response = http
            .post(format!("{}/token", self.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect),
                ("code_verifier", verifier),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != StatusCode::OK || body.get("id_token").is_none() {
            return fail(format!("token endpoint: {status} {body}"));
        }
        Ok(body)
    }

    /// One whole sign-in; returns the token response.
    async fn flow(
        &self,
        http: &Client,
        scope: &str,
        email: &str,
        totp_secret: Option<&[u8]>,
    ) -> Result<serde_json::Value> {
        let (url, verifier) = self.authorize_url(scope);
        let response = http.get(url).send().await?;
        let code = walk_to_code(
            http,
            &self.base,
            &self.redirect,
            response,
            email,
            totp_secret,
        )
        .await?;
        self.exchange(http, &code, &verifier).await
    }
}

struct Report {
    latencies: Vec<Duration>,
    errors: usize,
    secs: f64,
}

impl Report {
    fn print(mut self, first_error: Option<String>) {
        self.latencies.sort();
        let ok = self.latencies.len();
        let pct = |p: f64| -> f64 {
            if ok == 0 {
                return 0.0;
            }
            let index = ((p * ok as f64).ceil() as usize).clamp(1, ok) - 1;
            self.latencies[index].as_secs_f64() * 1000.0
        };
        let line = serde_json::json!({
            "count": ok + self.errors,
            "ok": ok,
            "errors": self.errors,
            "secs": self.secs,
            "per_sec": ok as f64 / self.secs,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "first_error": first_error,
        });
        println!("{line}");
    }
}

/// Runs `job(i)` for i in 0..count with `concurrency` workers; times each.
async fn measure<F, Fut>(count: usize, concurrency: usize, job: F) -> (Report, Option<String>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (job, next) = (job.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                match job(i).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (latencies, errors)
        }));
    }
    let mut report = Report {
        latencies: Vec::new(),
        errors: 0,
        secs: 0.0,
    };
    let mut first_error = None;
    for worker in workers {
        let (latencies, errors) = worker.await.expect("a worker");
        report.latencies.extend(latencies);
        report.errors += errors.len();
        if first_error.is_none() {
            first_error = errors.into_iter().next();
        }
    }
    report.secs = started.elapsed().as_secs_f64();
    (report, first_error)
}

fn read_lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Signs `email` in at /login and activates TOTP; returns the base32 secret.
async fn seed_one(base: &str, email: &str) -> Result<String> {
    let http = browser();
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await?
        .text()
        .await?;
    let form = find_form(&login, "name=\"password\"").ok_or("no sign-in form")?;
    let response = post_form(
        &http,
        base,
        form,
        &[("email", email), ("password", PASSWORD)],
    )
    .await?;
    if !response.status().is_redirection() {
        return fail(format!("sign-in of {email} refused: {}", response.status()));
    }
    let page = http
        .get(format!("{base}/profile/2fa/activate"))
        .send()
        .await?
        .text()
        .await?;
    let start = page
        .find("id=\"totp-secret\">")
        .ok_or("no TOTP secret on the page")?
        + "id=\"totp-secret\">".len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_owned();
    let form = find_form(&page, "one-time-code").ok_or("no activation form")?;
    let code = totp_code(&base32_decode(&secret), now_step());
    let done = post_form(&http, base, form, &[("code", &code)]).await?;
    let status = done.status();
    let html = done.text().await?;
    if status != StatusCode::OK || !html.contains("recovery-codes") {
        return fail(format!("activation for {email}: {status}"));
    }
    Ok(secret)
}

#[tokio::main]
async fn main() -> Result<()> {
    let (mode, args) = Args::parse();
    match mode.as_str() {
        "seed" => {
            let base = args.get("base");
            let emails = read_lines(&args.get("emails"));
            let mut lines = Vec::new();
            let mut pending = Vec::new();
            for chunk in emails.chunks(args.number("concurrency", 4)) {
                for email in chunk {
                    let (base, email) = (base.clone(), email.clone());
                    pending.push(tokio::spawn(async move {
                        let secret = seed_one(&base, &email).await;
                        (email, secret)
                    }));
                }
                for task in pending.drain(..) {
                    let (email, secret) = task.await?;
                    lines.push(format!("{email} {}", secret?));
                }
            }
            std::fs::write(args.get("out"), lines.join("\n") + "\n")?;
        }
        "refresh-pool" => {
            let (client_id, client_secret) = args.client();
            let rp = Arc::new(Rp {
                base: args.get("base"),
                client_id,
                client_secret,
                redirect: args.get("redirect"),
            });
            let email = args.get("email");
            let http = browser();
            // The first flow signs in (one password hash) and consents; the
            // rest reuse the session and the remembered consent.
            let scope = "openid profile email offline_access";
            let first = rp.flow(&http, scope, &email, None).await?;
            let access = first["access_token"].as_str().ok_or("no access token")?;
            let out = args.get("out");
            std::fs::write(format!("{out}.access"), format!("{access}\n"))?;
            let n = args.number("n", 1000);
            let tokens = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
            let collected = tokens.clone();
            let (report, error) = measure(n, 4, move |_| {
                let (rp, http, email, tokens) =
                    (rp.clone(), http.clone(), email.clone(), collected.clone());
                async move {
                    let body = rp.flow(&http, scope, &email, None).await?;
                    let refresh = body["refresh_token"].as_str().ok_or("no refresh token")?;
                    tokens.lock().unwrap().push(refresh.to_owned());
                    Ok(())
                }
            })
            .await;
            if report.errors > 0 {
                return fail(format!("{} flows failed: {error:?}", report.errors));
            }
            let tokens = tokens.lock().unwrap();
            std::fs::write(&out, tokens.join("\n") + "\n")?;
            eprintln!(
                "prepared {} refresh tokens in {:.1}s",
                tokens.len(),
                report.secs
            );
        }
        "refresh" => {
            let base = args.get("base");
            let (client_id, client_secret) = args.client();
            let tokens = Arc::new(read_lines(&args.get("tokens")));
            let http = Client::builder().build()?;
            let (report, error) = measure(tokens.len(), args.number("concurrency", 16), move |i| {
                let request = http
                    .post(format!("{base}/token"))
                    .basic_auth(&client_id, Some(&client_secret))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &tokens[i]),
                    ]);
                async move {
                    let response = request.send().await?;
                    let status = response.status();
                    let body = response.bytes().await?;
                    if status != StatusCode::OK {
                        return fail(format!("{status}: {}", String::from_utf8_lossy(&body)));
                    }
                    Ok(())
                }
            })
            .await;
            report.print(error);
        }
        "flows" => {
            let (client_id, client_secret) = args.client();
            let rp = Arc::new(Rp {
                base: args.get("base"),
                client_id,
                client_secret,
                redirect: args.get("redirect"),
            });
            let users: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
                read_lines(&args.get("users"))
                    .iter()
                    .map(|line| {
                        let (email, secret) = line.split_once(' ').expect("email secret");
                        (email.to_owned(), base32_decode(secret))
                    })
                    .collect(),
            );
            let count = users.len();
            let (report, error) = measure(count, args.number("concurrency", 8), move |i| {
                let (rp, users) = (rp.clone(), users.clone());
                async move {
                    // A fresh browser per flow: nobody is signed in yet.
                    let http = browser();
                    let (email, secret) = &users[i];
                    rp.flow(&http, "openid profile email", email, Some(secret))
                        .await
                        .map(|_| ())
                }
            })
            .await;
            report.print(error);
        }
        "codes" => {
            let (client_id, client_secret) = args.client();
            let rp = Arc::new(Rp {
                base: args.get("base"),
                client_id,
                client_secret,
                redirect: args.get("redirect"),
            });
            let email = args.get("email");
            let http = browser();
            // Signs in and consents once; every later authorization request
            // on this session comes straight back with a code.
            let scope = "openid profile email";
            rp.flow(&http, scope, &email, None).await?;
            let n = args.number("n", 2000);
            let codes = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
            let collected = codes.clone();
            let preparer = rp.clone();
            let (prepared, error) = measure(n, 4, move |_| {
                let (rp, http, email, codes) = (
                    preparer.clone(),
                    http.clone(),
                    email.clone(),
                    collected.clone(),
                );
                async move {
                    let (url, verifier) = rp.authorize_url(scope);
                    let response = http.get(url).send().await?;
                    let code =
                        walk_to_code(&http, &rp.base, &rp.redirect, response, &email, None).await?;
                    codes.lock().unwrap().push((code, verifier));
                    Ok(())
                }
            })
            .await;
            if prepared.errors > 0 {
                return fail(format!("{} flows failed: {error:?}", prepared.errors));
            }
            eprintln!("prepared {n} codes in {:.1}s", prepared.secs);
            let codes = Arc::new(std::mem::take(&mut *codes.lock().unwrap()));
            let http = Client::builder().build()?;
            let (report, error) = measure(codes.len(), args.number("concurrency", 16), move |i| {
                let (rp, http, codes) = (rp.clone(), http.clone(), codes.clone());
                async move {
                    let (code, verifier) = &codes[i];
                    rp.exchange(&http, code, verifier).await.map(|_| ())
                }
            })
            .await;
            report.print(error);
        }
        _ => {
            eprintln!("usage: bench_driver seed|refresh-pool|refresh|codes|flows --base URL ...");
            std::process::exit(2);
        }
    }
    Ok(())
}

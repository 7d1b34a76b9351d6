//! The cluster test: three `stepgate serve` processes (the release binary
//! when `STEPGATE_CLUSTER_BIN` names it, as `.ci/run` does) on one fresh
//! PostgreSQL of the test's own, behind nginx running `deploy/nginx.conf`,
//! everything on loopback. Not part of the default `cargo test` (it needs
//! nginx and PostgreSQL's server programs, and takes a minute or two):
//! `cargo test --test cluster`.
//!
//! In order, on one cluster:
//! 1. the authorization-code flow with TOTP, each request to another node;
//! 2. races across nodes: one code, one refresh token, one TOTP time-step,
//!    one recovery code, each sent to all three nodes at once, 20 times,
//!    exactly one success each time;
//! 3. `kill -9` of a node under token load through nginx, and its restart:
//!    every token a client received is still active;
//! 4. the database stopped for 10 s under mixed load: what each node and
//!    nginx answer meanwhile, and recovery without a restart;
//! 5. `keys rotate` while the nodes run: every node publishes the new key
//!    within `keys.refresh_secs`, and signs with it only after
//!    `keys.publish_ahead_secs`; then `keys retire OLD --now` takes the old
//!    key out of every node's JWKS.
//!
//! 6. and, on its own, one node on SQLite killed with `kill -9` under write
//!    load (`tests/it/crash.rs`, which the default suite also runs on the
//!    test profile's binary).
//! Every wait has a deadline; what the test starts, it stops.

#[allow(dead_code)]
#[path = "../it/browser.rs"]
mod browser;
#[path = "../it/crash.rs"]
mod crash;
#[allow(dead_code)]
#[path = "../it/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../it/own_postgres.rs"]
mod own_postgres;
#[allow(dead_code)]
#[path = "../it/totp_code.rs"]
mod totp_code;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;

use browser::Page;
use helpers::{TempDir, copy_template_keys, free_port, http_client, join_all};
use own_postgres::OwnPostgres;
use totp_code::totp_code;

const PASSWORD: &str = "correct horse battery staple";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const NODES: usize = 3;
const ROUNDS: usize = 20;

/// The binary the nodes run.
fn bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("STEPGATE_CLUSTER_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            eprintln!("STEPGATE_CLUSTER_BIN is not set: the nodes run the test profile's binary");
            PathBuf::from(env!("CARGO_BIN_EXE_stepgate"))
        }
    })
    .clone()
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(base: &str) -> bool {
    http_client()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

/// Waits for a node's `/readyz`; shows its log when it does not come.
async fn node_ready(base: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(base).await {
        assert!(
            Instant::now() < deadline,
            "{base} is not ready within 60 s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `stepgate serve` process.
struct Node {
    child: Option<Child>,
    port: u16,
    base: String,
}

impl Node {
    fn spawn(config: &Path, port: u16, issuer: &str, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("node log");
        let child = helpers::clean_command(&bin())
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("STEPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("STEPGATE_ISSUER", issuer)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node");
        Self {
            child: Some(child),
            port,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// nginx in the foreground on `deploy/nginx.conf`, its addresses made
/// loopback ones.
struct Nginx {
    child: Child,
}

impl Nginx {
    fn start(dir: &Path, port: u16, nodes: &[u16]) -> Self {
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
        )
        .expect("deploy/nginx.conf");
        let mut text = String::new();
        let mut in_tls = false;
        for line in source.lines() {
            let trimmed = line.trim();
            if trimmed == "# tls-begin" {
                in_tls = true;
                continue;
            }
            if trimmed == "# tls-end" {
                in_tls = false;
                text.push_str(&format!("        listen 127.0.0.1:{port};\n"));
                continue;
            }
            if in_tls {
                continue;
            }
            let mut line = line.to_owned();
            for (i, node) in nodes.iter().enumerate() {
                if trimmed.ends_with(&format!("# node {}", i + 1)) {
                    line = line.replace(
                        &format!("10.0.0.1{}:8080", i + 1),
                        &format!("127.0.0.1:{node}"),
                    );
                }
            }
            text.push_str(&line);
            text.push('\n');
        }
        assert!(
            text.contains(&format!("listen 127.0.0.1:{port};"))
                && nodes
                    .iter()
                    .all(|n| text.contains(&format!("127.0.0.1:{n} "))),
            "deploy/nginx.conf keeps the markers the test rewrites:\n{text}"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, text).unwrap();
        let globals = format!(
            "daemon off; pid {0}/nginx.pid; error_log {0}/nginx-error.log;",
            dir.display()
        );
        let child = Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-g", &globals])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (Debian's nginx package; .ci/run installs it)");
        Self { child }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master stops its workers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    id: String,
    secret: Option<String>,
}

struct Cluster {
    nodes: Vec<Node>,
    database_url: String,
    issuer: String,
    config: PathBuf,
    // Dropped in this order: nginx, then the database, then the files.
    _nginx: Nginx,
    postgres: OwnPostgres,
    dir: TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let postgres = OwnPostgres::start().expect(
            "the cluster test needs PostgreSQL's server programs (initdb under /usr/lib/postgresql)",
        );
        let admin = Database::connect(postgres.url().as_str()).await.unwrap();
        admin
            .execute_unprepared("CREATE DATABASE stepgate")
            .await
            .unwrap();
        drop(admin);
        let database_url = format!("{}/stepgate", postgres.url().trim_end_matches("/postgres"));
        let dir = TempDir::new();
        let keys = dir.path().join("keys");
        copy_template_keys(&keys);
        let config = dir.path().join("stepgate.toml");
        std::fs::write(
            &config,
            format!(
                r#"database_url = "{database_url}"
keys_dir = "{keys}"
[database]
migrate_on_start = true
connect_timeout_secs = 2
[http]
trusted_proxies = ["127.0.0.1"]
request_timeout_secs = 15
[password]
argon2_memory_kib = 4096
argon2_iterations = 1
[email]
outbox_dir = "{outbox}"
[keys]
refresh_secs = 1
publish_ahead_secs = 8
[metrics]
listen = ""
"#,
                keys = keys.display(),
                outbox = dir.path().join("outbox").display(),
            ),
        )
        .unwrap();
        let nginx_port = free_port();
        let issuer = format!("http://127.0.0.1:{nginx_port}");
        // All three at once on the empty database: they migrate in turn.
        let nodes: Vec<Node> = (0..NODES)
            .map(|i| {
                let log = dir.path().join(format!("node-{i}.log"));
                Node::spawn(&config, free_port(), &issuer, &log)
            })
            .collect();
        for (i, node) in nodes.iter().enumerate() {
            node_ready(&node.base, &dir.path().join(format!("node-{i}.log"))).await;
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let nginx = Nginx::start(dir.path(), nginx_port, &ports);
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        wait_until("nginx answers", Duration::from_secs(20), || {
            let discovery = discovery.clone();
            async move {
                http_client()
                    .get(&discovery)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            }
        })
        .await;
        Self {
            nodes,
            database_url,
            issuer,
            config,
            _nginx: nginx,
            postgres,
            dir,
        }
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let mut child = helpers::clean_command(&bin())
            .args(args)
            .args(["--json", "--config", self.config.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the CLI");
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "stepgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    }

    fn create_user(&self, email: &str) {
        self.cli(
            &[
                "user",
                "create",
                "--email",
                email,
                "--name",
                "Cluster",
                "--verified",
            ],
            Some(PASSWORD),
        );
    }

    fn register(&self, extra: &[&str]) -> Client {
        let mut args = vec![
            "client",
            "create",
            "--name",
            "NAO Cloud",
            "--redirect-uri",
            REDIRECT,
        ];
        args.extend_from_slice(extra);
        let json = self.cli(&args, None);
        Client {
            id: json["client_id"].as_str().unwrap().to_owned(),
            secret: json["client_secret"].as_str().map(str::to_owned),
        }
    }

    /// One number from the cluster's database.
    async fn count(&self, sql: &str) -> i64 {
        let db = Database::connect(self.database_url.as_str()).await.unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index(0).unwrap()
    }

    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }
}

/// A browser whose every request goes to the next node in turn: the
/// cookies are the browser's (one host, 127.0.0.1), the node changes.
struct Rotating {
    client: reqwest::Client,
    nodes: Vec<String>,
    issuer: String,
    next: Mutex<usize>,
    /// Which node each request went to, in order.
    trail: Mutex<Vec<usize>>,
}

impl Rotating {
    fn new(cluster: &Cluster) -> Self {
        Self {
            client: http_client(),
            nodes: cluster.bases(),
            issuer: cluster.issuer.clone(),
            next: Mutex::new(0),
            trail: Mutex::new(Vec::new()),
        }
    }

    fn target(&self, url: &str) -> String {
        let path = url.strip_prefix(&self.issuer).unwrap_or(url);
        assert!(path.starts_with('/'), "a path on the issuer: {url}");
        let mut next = self.next.lock().unwrap();
        let node = *next % self.nodes.len();
        *next += 1;
        self.trail.lock().unwrap().push(node);
        format!("{}{path}", self.nodes[node])
    }

    async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let url = response.url().to_string();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        Page {
            status,
            url,
            headers,
            html,
        }
    }

    async fn get(&self, url: &str) -> Page {
        Self::read(self.client.get(self.target(url)).send().await.unwrap()).await
    }

    async fn post(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        Self::read(
            self.client
                .post(self.target(url))
                .form(fields)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Submits `page`'s form to `action` with `values` (and its hidden
    /// fields), to the next node.
    async fn submit(&self, page: &Page, action: &str, values: &[(&str, &str)]) -> Page {
        let form = page.form(action);
        let mut fields = form.fields.clone();
        for (k, v) in values {
            fields.insert((*k).to_owned(), (*v).to_owned());
        }
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.post(&form.action, &pairs).await
    }

    /// Follows redirects, each to the next node, until one leaves the
    /// issuer (to the client) or a page is shown.
    async fn follow(&self, mut page: Page) -> Result<String, Page> {
        for _ in 0..10 {
            if page.status != StatusCode::SEE_OTHER && page.status != StatusCode::FOUND {
                return Err(page);
            }
            let location = page.headers["location"].to_str().unwrap().to_owned();
            if location.starts_with(REDIRECT) {
                return Ok(location);
            }
            page = self.get(&location).await;
        }
        panic!("too many redirects");
    }
}

/// The code of the next time-step: accepted (skew 1) and newer than any
/// step used so far.
fn next_code(secret: &str) -> String {
    totp_code(secret, chrono::Utc::now() + chrono::Duration::seconds(30))
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn query(url: &str) -> std::collections::BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Signs in on the pages and activates 2FA; returns the secret and the
/// recovery codes.
async fn activate(browser: &Rotating, email: &str) -> (String, Vec<String>) {
    let login = browser.get("/login").await;
    let signed_in = browser
        .submit(
            &login,
            "/login",
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.html
    );
    let profile = browser.get("/profile").await;
    let href = profile
        .link("Activate two-factor authentication")
        .expect("the profile links to activation");
    let page = browser.get(&href).await;
    let secret = page.element_text("totp-secret").expect("#totp-secret");
    let code = totp_code(&secret, chrono::Utc::now());
    let done = browser
        .submit(&page, "/profile/2fa/activate", &[("code", &code)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    let codes = done.list_items("recovery-codes");
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = format!("{}{}", helpers::unique_suffix(), "x".repeat(43));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    Pkce {
        challenge: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        verifier,
    }
}

fn authorize_url(client: &Client, pkce: &Pkce, state: &str) -> String {
    let encode =
        |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
    format!(
        "/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce=n-{state}&code_challenge={}&code_challenge_method=S256",
        client.id,
        encode(REDIRECT),
        encode("openid email offline_access"),
        pkce.challenge
    )
}

async fn token_at(base: &str, client: &Client, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = http_client()
        .post(format!("{base}/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(form)
        .send()
        .await
        .expect("the node answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn introspect_at(base: &str, rs: &Client, token: &str) -> Value {
    let response = http_client()
        .post(format!("{base}/introspect"))
        .basic_auth(&rs.id, rs.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .expect("the node answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster() {
    let mut cluster = Cluster::start().await;
    let web = cluster.register(&[]);
    let service = cluster.register(&["--grant-type", "client_credentials"]);
    let rs = cluster.register(&["--introspect"]);

    eprintln!("== 1. the code flow with TOTP, each request to another node");
    let browser = flow_with_totp(&cluster, &web, &rs).await;

    eprintln!("== 2. races across nodes, {ROUNDS} rounds each");
    race_codes_and_refresh_tokens(&cluster, &web, &browser).await;
    race_totp_and_recovery_codes(&cluster).await;

    eprintln!("== 3. kill -9 of a node under token load, and its restart");
    let acknowledged = kill_a_node_under_load(&mut cluster, &service, &rs).await;

    eprintln!("== 4. the database away for 10 s under mixed load");
    database_outage(&cluster, &service, &rs, &acknowledged).await;

    eprintln!("== 5. keys rotate while the nodes run");
    rotate_keys(&cluster, &service).await;
    drop(cluster);

    eprintln!("== 6. SQLite: kill -9 of a node under write load");
    crash::sqlite_keeps_every_acknowledged_token_through_kill_9(&bin()).await;
}

async fn flow_with_totp(cluster: &Cluster, web: &Client, rs: &Client) -> Rotating {
    cluster.create_user("flow@example.com");
    let setup = Rotating::new(cluster);
    let (secret, _) = activate(&setup, "flow@example.com").await;

    let browser = Rotating::new(cluster);
    let pkce = pkce();
    let start = browser.get(&authorize_url(web, &pkce, "s1")).await;
    let login = browser.follow(start).await.expect_err("the sign-in page");
    let after = browser
        .submit(
            &login,
            "/login",
            &[("email", "flow@example.com"), ("password", PASSWORD)],
        )
        .await;
    let challenge = browser.follow(after).await.expect_err("the code prompt");
    let action = challenge
        .forms()
        .into_iter()
        .map(|f| f.action)
        .find(|a| a.starts_with("/login/2fa"))
        .unwrap_or_else(|| panic!("a code form:\n{}", challenge.html));
    let after = browser
        .submit(&challenge, &action, &[("code", &next_code(&secret))])
        .await;
    let consent = browser.follow(after).await.expect_err("consent");
    let action = consent
        .forms()
        .into_iter()
        .map(|f| f.action)
        .find(|a| a.starts_with("/consent"))
        .unwrap_or_else(|| panic!("a consent form:\n{}", consent.html));
    let allowed = browser
        .submit(&consent, &action, &[("decision", "allow")])
        .await;
    let back = browser.follow(allowed).await.expect("back at the client");
    let params = query(&back);
    assert_eq!(params["state"], "s1");
    assert_eq!(params["iss"], cluster.issuer);

    let nodes = cluster.bases();
    let (status, tokens) = token_at(
        &nodes[0],
        web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let claims = jwt_part(tokens["id_token"].as_str().unwrap(), 1);
    assert_eq!(claims["iss"], cluster.issuer.as_str());
    assert_eq!(claims["acr"], "urn:stepgate:acr:mfa");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    let access = tokens["access_token"].as_str().unwrap();
    let userinfo = http_client()
        .get(format!("{}/userinfo", nodes[1]))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::OK);
    assert_eq!(
        userinfo.json::<Value>().await.unwrap()["email"],
        "flow@example.com"
    );
    let (status, refreshed) = token_at(
        &nodes[2],
        web,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let info = introspect_at(&nodes[0], rs, refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);

    // Every step went to the next node: no two in a row on one node.
    let trail = browser.trail.lock().unwrap().clone();
    assert!(trail.len() >= 8, "{trail:?}");
    assert!(trail.windows(2).all(|w| w[0] != w[1]), "{trail:?}");
    for node in 0..NODES {
        assert!(
            trail.contains(&node),
            "node {node} served a step: {trail:?}"
        );
    }
    browser
}

/// Sends one request to every node at once; returns their statuses.
async fn to_all_nodes<F, Fut>(cluster: &Cluster, send: F) -> Vec<(StatusCode, Value)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value)>,
{
    join_all(cluster.bases().into_iter().map(send)).await
}

fn successes(answers: &[(StatusCode, Value)]) -> usize {
    answers.iter().filter(|(s, _)| *s == StatusCode::OK).count()
}

async fn race_codes_and_refresh_tokens(cluster: &Cluster, web: &Client, browser: &Rotating) {
    // The signed-in browser of the flow: consent remembered, a code at once.
    let code = |state: String| async move {
        let pkce = pkce();
        let start = browser.get(&authorize_url(web, &pkce, &state)).await;
        let back = browser.follow(start).await.expect("a code without a page");
        (query(&back)["code"].clone(), pkce)
    };
    for round in 0..ROUNDS {
        // One code, to all three nodes at once.
        let (raced, pkce) = code(format!("c{round}")).await;
        let answers = to_all_nodes(cluster, |base| {
            let (raced, verifier) = (raced.clone(), pkce.verifier.clone());
            async move {
                token_at(
                    &base,
                    web,
                    &[
                        ("grant_type", "authorization_code"),
                        ("code", &raced),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", &verifier),
                    ],
                )
                .await
            }
        })
        .await;
        assert_eq!(successes(&answers), 1, "code round {round}: {answers:?}");
        for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
            assert_eq!(*status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"], "invalid_grant");
        }

        // One refresh token (of a code redeemed once), to all three.
        let (fresh, pkce) = code(format!("r{round}")).await;
        let (status, tokens) = token_at(
            &cluster.nodes[round % NODES].base,
            web,
            &[
                ("grant_type", "authorization_code"),
                ("code", &fresh),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        let answers = to_all_nodes(cluster, |base| {
            let refresh = refresh.clone();
            async move {
                token_at(
                    &base,
                    web,
                    &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
                )
                .await
            }
        })
        .await;
        assert_eq!(successes(&answers), 1, "refresh round {round}: {answers:?}");
    }
}

/// Posts the same code from one browser session to every node at once;
/// returns how many were let through (303 on).
async fn race_code_prompt(cluster: &Cluster, email: &str, code: &str) -> usize {
    let client = http_client();
    let nodes = cluster.bases();
    let login = client
        .get(format!("{}/login", nodes[0]))
        .send()
        .await
        .unwrap();
    let login = Rotating::read(login).await;
    let form = login.form("/login");
    let signed = client
        .post(format!("{}/login", nodes[1]))
        .form(&[
            ("csrf_token", form.fields["csrf_token"].as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let location = signed.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/login/2fa"), "{location}");
    let prompt = client
        .get(format!(
            "{}{}",
            nodes[2],
            location.trim_start_matches(&cluster.issuer)
        ))
        .send()
        .await
        .unwrap();
    let prompt = Rotating::read(prompt).await;
    let form = prompt
        .forms()
        .into_iter()
        .find(|f| f.action.starts_with("/login/2fa"))
        .unwrap_or_else(|| panic!("a code form:\n{}", prompt.html));
    let csrf = form.fields["csrf_token"].clone();
    // Accepted: the code passed, and the answer carries the session's new
    // cookie. A request that arrives once another has passed finds the
    // session past its code (or ended) and is sent on without a cookie:
    // the code was not checked again.
    let answers = join_all(nodes.iter().map(|base| {
        let request = client
            .post(format!("{base}{}", form.action))
            .form(&[("csrf_token", csrf.as_str()), ("code", code)]);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status(),
                response.headers().contains_key("set-cookie"),
            )
        }
    }))
    .await;
    let accepted = answers
        .iter()
        .filter(|(s, cookie)| *s == StatusCode::SEE_OTHER && *cookie)
        .count();
    let refused = answers
        .iter()
        .filter(|(s, cookie)| {
            *s == StatusCode::UNAUTHORIZED
                || *s == StatusCode::TOO_MANY_REQUESTS
                || (*s == StatusCode::SEE_OTHER && !*cookie)
        })
        .count();
    assert_eq!(accepted + refused, NODES, "{answers:?}");
    accepted
}

async fn race_totp_and_recovery_codes(cluster: &Cluster) {
    // One user per round: a time-step and a recovery code are a user's own.
    let mut users = Vec::new();
    for round in 0..ROUNDS {
        let email = format!("race{round}@example.com");
        cluster.create_user(&email);
        let (secret, codes) = activate(&Rotating::new(cluster), &email).await;
        users.push((email, secret, codes));
    }
    for (round, (email, secret, codes)) in users.iter().enumerate() {
        let accepted = race_code_prompt(cluster, email, &next_code(secret)).await;
        assert_eq!(accepted, 1, "TOTP round {round}");
        let accepted = race_code_prompt(cluster, email, &codes[0]).await;
        assert_eq!(accepted, 1, "recovery-code round {round}");
    }
    // The audit log agrees: each raced recovery code was used once.
    assert_eq!(
        cluster
            .count("SELECT count(*) FROM audit_events WHERE kind = 'recovery_code.used' AND outcome = 'success'")
            .await,
        ROUNDS as i64
    );
}

async fn kill_a_node_under_load(
    cluster: &mut Cluster,
    service: &Client,
    rs: &Client,
) -> Vec<String> {
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (acknowledged, failed, stop) = (acknowledged.clone(), failed.clone(), stop.clone());
            let url = format!("{}/token", cluster.issuer);
            let (id, secret) = (service.id.clone(), service.secret.clone());
            tokio::spawn(async move {
                let client = http_client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    let sent = client
                        .post(&url)
                        .basic_auth(&id, secret.as_deref())
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await;
                    let token = match sent {
                        Ok(r) if r.status() == StatusCode::OK => r
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|j| j["access_token"].as_str().map(str::to_owned)),
                        _ => None,
                    };
                    match token {
                        Some(token) => acknowledged.lock().unwrap().push(token),
                        None => *failed.lock().unwrap() += 1,
                    }
                }
            })
        })
        .collect();
    let count = |n: usize| {
        let acknowledged = acknowledged.clone();
        move || {
            let acknowledged = acknowledged.clone();
            async move { acknowledged.lock().unwrap().len() >= n }
        }
    };
    wait_until("tokens flow", Duration::from_secs(30), count(200)).await;
    cluster.nodes[1].kill_9();
    let after_kill = acknowledged.lock().unwrap().len();
    // The other two carry on.
    wait_until(
        "tokens flow on two nodes",
        Duration::from_secs(30),
        count(after_kill + 300),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "   {} tokens answered, {} requests cut off by the kill",
        acknowledged.len(),
        failed.lock().unwrap()
    );

    // The killed node comes back on its port.
    let port = cluster.nodes[1].port;
    let log = cluster.dir.path().join("node-1.log");
    cluster.nodes[1] = Node::spawn(&cluster.config, port, &cluster.issuer, &log);
    let base = cluster.nodes[1].base.clone();
    node_ready(&base, &log).await;
    let (status, _) = token_at(&base, service, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "the restarted node serves");

    // Every token a client received is active, asked of every node.
    let nodes = cluster.bases();
    for (i, chunk) in acknowledged.chunks(50).enumerate() {
        let base = &nodes[i % NODES];
        let answers = join_all(chunk.iter().map(|t| introspect_at(base, rs, t))).await;
        for answer in answers {
            assert_eq!(answer["active"], true, "an answered token stays active");
        }
    }
    acknowledged
}

async fn database_outage(cluster: &Cluster, service: &Client, rs: &Client, before: &[String]) {
    cluster.postgres.stop();
    let down_since = Instant::now();
    let client = http_client();
    let mut rounds = 0;
    while down_since.elapsed() < Duration::from_secs(10) {
        rounds += 1;
        let mut targets = cluster.bases();
        targets.push(cluster.issuer.clone());
        let checks = targets.iter().map(|base| {
            let client = client.clone();
            let through_nginx = *base == cluster.issuer;
            async move {
                let started = Instant::now();
                for path in ["/.well-known/openid-configuration", "/jwks"] {
                    let r = client.get(format!("{base}{path}")).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::OK, "{base}{path} while down");
                }
                if !through_nginx {
                    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
                }
                let r = client
                    .post(format!("{base}/token"))
                    .basic_auth(&service.id, service.secret.as_deref())
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{base}/token while down"
                );
                assert_eq!(r.headers()["retry-after"], "5");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "temporarily_unavailable");
                // A page: the sign-in form, then its post.
                let page =
                    Rotating::read(client.get(format!("{base}/login")).send().await.unwrap()).await;
                assert_eq!(page.status, StatusCode::OK);
                let csrf = page.form("/login").fields["csrf_token"].clone();
                let r = client
                    .post(format!("{base}/login"))
                    .form(&[
                        ("csrf_token", csrf.as_str()),
                        ("email", "flow@example.com"),
                        ("password", PASSWORD),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{base}/login while down"
                );
                assert_eq!(r.headers()["retry-after"], "5");
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "within the request timeout"
                );
            }
        });
        join_all(checks).await;
    }
    assert!(rounds >= 2, "load ran through the outage ({rounds} rounds)");
    // Memory stays bounded while requests fail: every queue is bounded.
    for node in &cluster.nodes {
        let pid = node.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        eprintln!(
            "   node {} holds {} MB after the outage",
            node.port,
            rss_kb / 1024
        );
        assert!(
            rss_kb < 100 * 1024,
            "a node stays under 100 MB: {rss_kb} kB"
        );
    }

    cluster.postgres.resume();
    for base in cluster.bases() {
        wait_until("a node recovers by itself", Duration::from_secs(20), || {
            let base = base.clone();
            async move { ready(&base).await }
        })
        .await;
        let (status, _) = token_at(&base, service, &[("grant_type", "client_credentials")]).await;
        assert_eq!(status, StatusCode::OK);
    }
    for token in before.iter().step_by(25) {
        assert_eq!(
            introspect_at(&cluster.issuer, rs, token).await["active"],
            true
        );
    }
}

/// Whether the JWKS at `base` lists `kid`.
async fn publishes(base: &str, kid: &str) -> bool {
    let jwks: Value = http_client()
        .get(format!("{base}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid)
}

async fn rotate_keys(cluster: &Cluster, service: &Client) {
    let kid_of = |tokens: &Value| {
        jwt_part(tokens["access_token"].as_str().unwrap(), 0)["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, before) = token_at(
        &cluster.nodes[0].base,
        service,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let old = kid_of(&before);
    let rotated = cluster.cli(&["keys", "rotate"], None);
    let new = rotated["kid"].as_str().unwrap().to_owned();
    let activates = chrono::DateTime::parse_from_rfc3339(rotated["activates_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    // Published by every node within keys.refresh_secs (1 s; 5 s allowed).
    for base in cluster.bases() {
        let new = new.clone();
        wait_until(
            "every node publishes the new key",
            Duration::from_secs(5),
            || {
                let (base, new) = (base.clone(), new.clone());
                async move { publishes(&base, &new).await }
            },
        )
        .await;
    }
    // Not signing yet while the publish-ahead delay runs (8 s; every node
    // published within 5 s above).
    assert!(
        chrono::Utc::now() + chrono::Duration::milliseconds(1500) < activates,
        "publishing took most of the publish-ahead delay"
    );
    for base in cluster.bases() {
        let (_, tokens) = token_at(&base, service, &[("grant_type", "client_credentials")]).await;
        assert_eq!(
            kid_of(&tokens),
            old,
            "the old key signs until the new one activates"
        );
    }
    let wait = (activates - chrono::Utc::now()).num_milliseconds().max(0) as u64 + 200;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    for base in cluster.bases() {
        let (_, tokens) = token_at(&base, service, &[("grant_type", "client_credentials")]).await;
        assert_eq!(
            kid_of(&tokens),
            new,
            "every node signs with the new key after the delay"
        );
    }
    // The old key stays published while what it signed is alive.
    assert!(publishes(&cluster.issuer, &old).await);

    // `keys retire OLD --now` (a compromised key): it leaves every node's
    // JWKS within keys.refresh_secs, and the new key signs on.
    let retired = cluster.cli(&["keys", "retire", &old, "--now"], None);
    assert_eq!(retired["state"], "retired");
    for base in cluster.bases() {
        let old = old.clone();
        wait_until(
            "every node drops the retired key",
            Duration::from_secs(5),
            || {
                let (base, old) = (base.clone(), old.clone());
                async move { !publishes(&base, &old).await }
            },
        )
        .await;
        let (_, tokens) = token_at(&base, service, &[("grant_type", "client_credentials")]).await;
        assert_eq!(kid_of(&tokens), new);
    }
}

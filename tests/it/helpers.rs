//! `spawn_app`: a real Stepgate on port 0 with a fresh database (SQLite in a
//! temp dir, or a new PostgreSQL database when `TEST_POSTGRES_URL` is set) and
//! a temp keys dir; plus the pieces tests share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, Database, Statement};
use stepgate::clock::{Clock, SystemClock};
use stepgate::config::Settings;
use stepgate::startup::Application;
use tokio::sync::oneshot;

/// The PostgreSQL server tests create their databases on, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const POSTGRES_URL_VAR: &str = "TEST_POSTGRES_URL";
/// Set (by `.ci/run`) to make a missing PostgreSQL a failure instead of a skip.
pub const REQUIRE_POSTGRES_VAR: &str = "TEST_REQUIRE_POSTGRES";

/// Runs each named `async fn(Backend)` as two tests: `NAME::sqlite` and
/// `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(backend) = $crate::helpers::Backend::postgres() {
                    super::$name(backend).await
                }
            }
        }
    )*};
}

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { admin_url: String },
}

impl Backend {
    /// The PostgreSQL backend when `TEST_POSTGRES_URL` is set. Without it the
    /// test is skipped, unless `TEST_REQUIRE_POSTGRES` is set: then it fails.
    pub fn postgres() -> Option<Backend> {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres { admin_url: url }),
            _ if std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() => {
                panic!("{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not")
            }
            _ => {
                eprintln!("skipped: {POSTGRES_URL_VAR} is not set");
                None
            }
        }
    }

    /// A new, empty database for one test.
    pub async fn create_database(&self, dir: &Path) -> TestDatabase {
        match self {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}?mode=rwc", dir.join("stepgate.db").display()),
                postgres: None,
            },
            Backend::Postgres { admin_url } => {
                let name = format!("stepgate_test_{}", unique_suffix());
                let admin = Database::connect(admin_url.as_str())
                    .await
                    .expect("connect to TEST_POSTGRES_URL");
                admin
                    .execute_raw(Statement::from_string(
                        admin.get_database_backend(),
                        format!("CREATE DATABASE \"{name}\""),
                    ))
                    .await
                    .expect("create a test database");
                let mut url = url::Url::parse(admin_url).expect("TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                TestDatabase {
                    url: url.to_string(),
                    postgres: Some((admin_url.clone(), name)),
                }
            }
        }
    }
}

/// A per-test database; a PostgreSQL one is dropped when this is.
pub struct TestDatabase {
    pub url: String,
    /// (admin URL, database name)
    pub postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// Runs SQL on the PostgreSQL server as the admin (not in the test database).
    pub async fn admin_execute(&self, sql: &str) {
        let (admin_url, _) = self.postgres.as_ref().expect("a PostgreSQL test database");
        let admin = Database::connect(admin_url.as_str())
            .await
            .expect("admin connection");
        admin
            .execute_raw(Statement::from_string(
                admin.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect("admin SQL");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; a thread with its own runtime
        // can block on the async driver.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                    let _ = admin
                        .execute_raw(Statement::from_string(
                            admin.get_database_backend(),
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                        ))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("stepgate-test-{}", unique_suffix()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .subsec_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// RSA key generation costs tens of milliseconds; tests share one key set,
/// generated once per test process and copied into each test's keys dir,
/// where the server imports it into the test's database as an upgraded
/// installation would. It lives in cargo's temp dir for tests; sets left by
/// finished runs are removed. The key file is dated a day back, so it is
/// the active key even for a server on a fixed clock a little behind.
fn template_keys_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let prefix = "keys-template-";
        if let Ok(entries) = std::fs::read_dir(base) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(prefix)
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("{prefix}{}", std::process::id()));
        stepgate::keys::load_or_create_master(&dir).expect("template master key");
        let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
        stepgate::keys::write_legacy_key_file(&dir, day_ago).expect("template signing key");
        dir
    })
}

pub fn copy_template_keys(to: &Path) {
    std::fs::create_dir_all(to).expect("keys dir");
    for entry in std::fs::read_dir(template_keys_dir()).expect("template dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy key");
    }
}

/// A running server and everything it stands on.
pub struct TestApp {
    pub address: String,
    pub issuer: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub db: Arc<TestDatabase>,
    pub clock: Arc<dyn Clock>,
    /// The server's state, for what tests check beside HTTP (the mail queue).
    pub state: stepgate::state::AppState,
    /// Where `/metrics` is served, when `metrics.listen` is set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    // Last: removed after the server and the database are gone.
    pub dir: Arc<TempDir>,
}

/// Set as `settings.issuer` in `configure`: the server's issuer becomes
/// `http://localhost:PORT` (its address stays `127.0.0.1:PORT`).
pub const LOCALHOST: &str = "http://localhost";

/// Settings for a test server in `dir` on `db`; `issuer` and `listen` are
/// filled in when the port is known.
pub fn test_settings(dir: &Path, db: &TestDatabase) -> Settings {
    let mut settings = Settings {
        database_url: db.url.clone(),
        keys_dir: dir.join("keys"),
        ..Settings::default()
    };
    settings.database.max_connections = 5;
    settings.email.outbox_dir = dir.join("outbox");
    // Cheaper argon2id than production, so the suite stays fast; the hashing
    // path is the same.
    settings.password.argon2_memory_kib = 4096;
    settings.password.argon2_iterations = 1;
    // Off: parallel servers would all want the default port. A test that
    // scrapes sets `127.0.0.1:0` (tests/it/metrics.rs).
    settings.metrics.listen = String::new();
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Spawns a server after `configure` adjusts its settings.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(backend, Arc::new(SystemClock), configure).await
}

/// Spawns a server on `clock` (a `FixedClock` for expiry and throttling tests).
pub async fn spawn_app_with_clock(
    backend: Backend,
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let dir = TempDir::new();
    let db = backend.create_database(dir.path()).await;
    let mut settings = test_settings(dir.path(), &db);
    copy_template_keys(&settings.keys_dir);
    configure(&mut settings);
    start(settings, Arc::new(db), Arc::new(dir), clock).await
}

async fn start(
    mut settings: Settings,
    db: Arc<TestDatabase>,
    dir: Arc<TempDir>,
    clock: Arc<dyn Clock>,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    settings.listen = addr;
    // `http://localhost` asks for a host name (passkeys need one: browsers
    // refuse an IP address as rp id); a sibling keeps its site's issuer.
    if settings.issuer == LOCALHOST {
        settings.issuer = format!("http://localhost:{}", addr.port());
    } else if !settings.issuer.starts_with("http://localhost:") {
        settings.issuer = format!("http://{addr}");
    }
    let app = Application::build_with_listener(settings.clone(), listener, clock.clone())
        .await
        .expect("the test server starts");
    let state = app.state().clone();
    let metrics_addr = app.metrics_addr();
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        address: format!("http://{addr}"),
        issuer: settings.issuer.clone(),
        client: http_client(),
        settings,
        db,
        clock,
        state,
        metrics_addr,
        stop: Some(stop),
        server: Some(server),
        dir,
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("reqwest client")
}

impl TestApp {
    pub fn browser(&self) -> crate::browser::Browser {
        crate::browser::Browser::new(&self.address)
    }

    pub fn outbox(&self) -> PathBuf {
        self.settings.email.outbox_dir.clone()
    }

    /// Waits until the mail queue (shared by every node on this database)
    /// is empty: every email queued so far was sent or had nothing to send.
    /// Requests return before their mail goes out (`service::mail`); a test
    /// that reads the outbox waits for this first. Bounded: a queue that
    /// does not drain in 30 s fails the test.
    pub async fn mail_settled(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let pending = stepgate::service::mail::status(&self.state)
                .await
                .expect("count the mail queue")
                .queued;
            if pending == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the mail queue still holds {pending} rows after 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The messages sent to `to` so far, oldest first, once the queue is empty.
    pub async fn emails_to(&self, to: &str) -> Vec<String> {
        self.mail_settled().await;
        crate::browser::emails_to(&self.outbox(), to)
    }

    /// The `.eml` files of the outbox, oldest first, once the queue is empty.
    pub async fn outbox_files(&self) -> Vec<PathBuf> {
        self.mail_settled().await;
        crate::browser::outbox(&self.outbox())
    }

    /// Creates a user through the CLI's code path, confirmed or not; an
    /// unconfirmed one's confirmation email goes to this server's outbox.
    pub async fn create_user(&self, email: &str, password: &str, verified: bool) {
        let outbox = format!(
            "[email]\noutbox_dir = {:?}\n",
            self.outbox().display().to_string()
        );
        let config = write_config(self.dir.path(), &self.db, &outbox);
        let mut child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
            .args([
                "user",
                "create",
                "--email",
                email,
                "--name",
                "Test User",
                "--json",
            ])
            .args(verified.then_some("--verified"))
            .args(["--config", config.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run stepgate user create");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "user create: {}", stderr(&out));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Sends the server its stop signal (SIGTERM's path) and returns at
    /// once; `stopped` waits for the server to end.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the server has ended, after `signal_stop`.
    pub async fn stopped(&mut self) {
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    /// Starts a second server on the same database, keys and clock: another
    /// node of the same site.
    pub async fn spawn_sibling(&self) -> TestApp {
        start(
            self.settings.clone(),
            self.db.clone(),
            self.dir.clone(),
            self.clock.clone(),
        )
        .await
    }

    /// Like [`TestApp::spawn_sibling`], with `configure` adjusting its settings.
    pub async fn spawn_sibling_with(&self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        start(
            settings,
            self.db.clone(),
            self.dir.clone(),
            self.clock.clone(),
        )
        .await
    }

    /// Stops this server and starts a new one on the same database and keys.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let settings = self.settings.clone();
        start(
            settings,
            self.db.clone(),
            self.dir.clone(),
            self.clock.clone(),
        )
        .await
    }
}

/// An HTTP client for the openidconnect crate (its own reqwest feature would
/// pull a second reqwest).
pub async fn oidc_http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = http_client();
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

/// Runs the `stepgate` binary with `args`, with no STEPGATE_* variables from
/// the test's own environment, plus `env`.
pub fn stepgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = clean_command(Path::new(env!("CARGO_BIN_EXE_stepgate")));
    command.args(args);
    command.envs(env.iter().copied());
    command.output().expect("run the stepgate binary")
}

/// A command for the binary at `bin` that sees no STEPGATE_* variables of
/// the test's own environment: only what the test gives it.
pub fn clean_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("STEPGATE_") {
            command.env_remove(key);
        }
    }
    command
}

/// A loopback port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes a configuration file for binary runs against `dir` and `db`.
pub fn write_config(dir: &Path, db: &TestDatabase, extra: &str) -> PathBuf {
    let path = dir.join("stepgate.toml");
    // The CLI sends the mail it queues: into the test's outbox (the one
    // `test_settings` gives its servers), never into ./data/outbox.
    let outbox = if extra.contains("[email]") {
        String::new()
    } else {
        format!(
            "[email]\noutbox_dir = {:?}\n",
            dir.join("outbox").display().to_string()
        )
    };
    let text = format!(
        "database_url = {:?}\nkeys_dir = {:?}\n[password]\nargon2_memory_kib = 4096\nargon2_iterations = 1\n[metrics]\nlisten = \"\"\n{outbox}{extra}",
        db.url,
        dir.join("keys").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs futures concurrently on the current runtime (no extra dependency).
pub async fn join_all<T, F: std::future::Future<Output = T>>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    // Polled together on this task: the requests are in flight at once.
    let mut pending: Vec<_> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(page) => {
                        results[i] = Some(page);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

//! What the browser journey stands on: a Stepgate on port 0, chromedriver on a
//! free port, a relying party's callback listener, TOTP and QR decoding.
//! Copied in spirit from tests/it (which is a separate test binary) and kept
//! small on purpose.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use stepgate::clock::{Clock, FixedClock};
use stepgate::config::Settings;
use stepgate::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Set (by `.ci/run`) to make a missing Chromium a failure instead of a skip.
pub const REQUIRE_BROWSER_VAR: &str = "TEST_REQUIRE_BROWSER";
/// When set, the journey also writes every hosted page at a phone and a
/// desktop width into this directory. (Not `STEPGATE_*`: that prefix is
/// configuration, and the server refuses keys it does not know.)
pub const SCREENSHOTS_VAR: &str = "SCREENSHOTS_DIR";

pub const PASSWORD: &str = "correct horse battery staple";

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "stepgate-e2e-{what}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
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

/// Whether Chromium and chromedriver are installed. Missing ones skip the
/// test (with a message), unless `TEST_REQUIRE_BROWSER` is set: then they fail it.
pub fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os(REQUIRE_BROWSER_VAR).is_some() {
        panic!(
            "{REQUIRE_BROWSER_VAR} is set but {} missing: apt-get install -y chromium chromium-driver",
            missing.join(" and ")
        );
    }
    eprintln!(
        "skipped: {} missing (apt-get install -y chromium chromium-driver)",
        missing.join(" and ")
    );
    false
}

/// A real Stepgate on 127.0.0.1:0 (issuer `http://localhost:PORT`) with SQLite in a temp dir and the file outbox.
pub struct Server {
    pub issuer: String,
    pub settings: Settings,
    pub clock: FixedClock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub dir: TempDir,
}

impl Server {
    /// On a fixed clock, 5 s into a 30 s TOTP step, so codes computed here
    /// match the server's and a step can be moved on deliberately.
    pub async fn start() -> Server {
        let dir = TempDir::new("server");
        let mut settings = Settings {
            database_url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("stepgate.db").display()
            ),
            keys_dir: dir.path().join("keys"),
            ..Settings::default()
        };
        settings.email.outbox_dir = dir.path().join("outbox");
        // Cheaper argon2id than production; the hashing path is the same.
        settings.password.argon2_memory_kib = 4096;
        settings.password.argon2_iterations = 1;
        // No /metrics listener: the default port may be taken.
        settings.metrics.listen = String::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        settings.listen = addr;
        // A host name, not 127.0.0.1: browsers refuse an IP address as a
        // WebAuthn rp id, and the journey uses passkeys.
        settings.issuer = format!("http://localhost:{}", addr.port());
        let now = Utc::now().timestamp();
        let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 5, 0).unwrap());
        let app = Application::build_with_listener(
            settings.clone(),
            listener,
            Arc::new(clock.clone()) as Arc<dyn Clock>,
        )
        .await
        .expect("the server starts");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Server {
            issuer: settings.issuer.clone(),
            settings,
            clock,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Registers a relying party with the CLI, as an operator would; returns
    /// (client_id, client_secret).
    pub fn register_client(&self, name: &str, redirect_uri: &str) -> (String, String) {
        let config = self.dir.path().join("stepgate.toml");
        std::fs::write(
            &config,
            format!(
                "database_url = {:?}\nkeys_dir = {:?}\n",
                self.settings.database_url,
                self.settings.keys_dir.display().to_string()
            ),
        )
        .expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_stepgate"));
        for (key, _) in std::env::vars() {
            if key.starts_with("STEPGATE_") {
                command.env_remove(key);
            }
        }
        let out = command
            .args(["client", "create", "--name", name, "--redirect-uri"])
            .arg(redirect_uri)
            .args(["--json", "--config"])
            .arg(&config)
            .output()
            .expect("run stepgate client create");
        assert!(
            out.status.success(),
            "client create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        (
            json["client_id"].as_str().unwrap().to_owned(),
            json["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// The newest email to `to` in the file outbox, waiting for the first
    /// one to arrive: requests return before their mail is sent (the
    /// server's mail queue). Bounded: none within 30 s fails the test.
    pub async fn last_email_to(&self, to: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(mail) = self.newest_email_to(to) {
                return mail;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no email to {to} within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn newest_email_to(&self, to: &str) -> Option<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.settings.email.outbox_dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "eml"));
        files.sort();
        files
            .into_iter()
            .map(|p| std::fs::read_to_string(p).expect("read .eml"))
            .rfind(|m| {
                m.lines().any(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("to:") && l.contains(&to.to_ascii_lowercase())
                })
            })
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

/// The first link in `message` that starts with `prefix`.
pub fn link_in(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)?;
    let rest = &message[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .unwrap_or(rest.len());
    Some(rest[..end].replace("&amp;", "&"))
}

/// chromedriver on a free port, killed on drop.
pub struct Chromedriver {
    pub url: String,
    child: Child,
    pub profile: TempDir,
}

impl Chromedriver {
    pub async fn start() -> Chromedriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Chromedriver {
            url: format!("http://127.0.0.1:{port}"),
            child,
            profile: TempDir::new("chromium-profile"),
        }
    }

    /// A headless Chromium session with a fresh profile; the flags keep it
    /// off the network it may not reach.
    pub async fn session(&self) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", self.profile.path().display()),
                    "--window-size=1280,800",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromedriver session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relying party's redirect URI: a tiny HTTP listener that answers any
/// request with a short page, so the browser really arrives there and the
/// test reads the code from its address bar.
pub async fn callback_listener() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the callback listener");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while read < buf.len() {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let body =
                    "<!doctype html><title>Relying party</title><h1>Back at the relying party</h1>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}/callback")
}

pub use crate::totp_code::{base32_decode, totp_code};

/// Decodes the QR code in a PNG screenshot to its text.
pub fn decode_qr_png(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG pixels");
    let channels = info.color_type.samples();
    let (width, height) = (info.width as usize, info.height as usize);
    let stride = info.line_size;
    let luma = |x: usize, y: usize| -> u8 {
        let p = &buf[y * stride + x * channels..];
        match channels {
            1 | 2 => p[0],
            _ => {
                ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000)
                    as u8
            }
        }
    };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    let grids = image.detect_grids();
    assert_eq!(
        grids.len(),
        1,
        "one QR code in the {width}x{height} screenshot"
    );
    let (_, text) = grids[0].decode().expect("the QR code decodes");
    text
}

#[test]
fn the_test_totp_matches_rfc6238() {
    // RFC 6238 Appendix B, SHA1, truncated to the last 6 digits.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(
        totp_code(secret, DateTime::from_timestamp(59, 0).unwrap()),
        "287082"
    );
    assert_eq!(
        totp_code(secret, DateTime::from_timestamp(1111111109, 0).unwrap()),
        "081804"
    );
}

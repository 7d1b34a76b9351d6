//! SQLite under `kill -9`: a `stepgate serve` process killed while it
//! issues tokens as fast as it can leaves a database that passes
//! `PRAGMA integrity_check`, and every token it answered before it died is
//! still active after a restart: an acknowledged write is a durable one
//! (WAL with `synchronous=NORMAL` loses nothing to a process crash, only to
//! a power loss).

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, TempDir, free_port, http_client, write_config};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct TestClient {
    id: String,
    secret: Option<String>,
}

/// `stepgate serve` as a child process on `config`, listening on `port`.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    async fn start(bin: &Path, config: &Path, port: u16) -> Self {
        let base = format!("http://127.0.0.1:{port}");
        let child = crate::helpers::clean_command(bin)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("STEPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("STEPGATE_ISSUER", &base)
            .env("STEPGATE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stepgate serve");
        let node = Self { child, base };
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/readyz", node.base)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return node;
            }
            assert!(Instant::now() < deadline, "the node is ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, nothing of the process's own.
    fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn register(config: &Path, extra: &[&str]) -> TestClient {
    let mut args = vec![
        "client",
        "create",
        "--name",
        "Load",
        "--redirect-uri",
        REDIRECT,
        "--json",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = crate::helpers::stepgate(&args, &[]);
    assert!(
        out.status.success(),
        "client create: {}",
        crate::helpers::stderr(&out)
    );
    let json: Value = serde_json::from_str(crate::helpers::stdout(&out).trim()).unwrap();
    TestClient {
        id: json["client_id"].as_str().unwrap().to_owned(),
        secret: json["client_secret"].as_str().map(str::to_owned),
    }
}

/// The test, with the nodes running `bin`: `tests/it` runs it on the test
/// profile's binary (`db_outage`), the cluster test on the release one.
pub async fn sqlite_keeps_every_acknowledged_token_through_kill_9(bin: &Path) {
    let dir = TempDir::new();
    let db = Backend::Sqlite.create_database(dir.path()).await;
    crate::helpers::copy_template_keys(&dir.path().join("keys"));
    let config = write_config(dir.path(), &db, "");
    let port = free_port();
    let mut node = Node::start(bin, &config, port).await;
    let service = register(&config, &["--grant-type", "client_credentials"]);
    let rs = register(&config, &["--introspect"]);

    // Eight clients issue tokens back to back; every token answered is kept.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop_at = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let acknowledged = acknowledged.clone();
            let url = format!("{}/token", node.base);
            let (id, secret) = (service.id.clone(), service.secret.clone());
            tokio::spawn(async move {
                let client = http_client();
                while Instant::now() < stop_at {
                    let sent = client
                        .post(&url)
                        .basic_auth(&id, secret.as_deref())
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await;
                    // After the kill: refused connections, cut answers.
                    let Ok(response) = sent else { break };
                    if response.status() != StatusCode::OK {
                        break;
                    }
                    let Ok(json) = response.json::<Value>().await else {
                        break;
                    };
                    let token = json["access_token"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push(token);
                }
            })
        })
        .collect();
    // Kill it in the middle of the load.
    let loaded = Instant::now() + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(Instant::now() < loaded, "the load got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill_9();
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300);
    eprintln!("{} tokens answered before the kill", acknowledged.len());

    // The file as the crash left it (WAL included): intact.
    let path = dir.path().join("stepgate.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    // Restarted on the same file: every acknowledged token is active.
    let node = Node::start(bin, &config, port).await;
    let client = http_client();
    let url = format!("{}/introspect", node.base);
    for chunk in acknowledged.chunks(50) {
        let answers = crate::helpers::join_all(chunk.iter().map(|token| {
            client
                .post(&url)
                .basic_auth(&rs.id, rs.secret.as_deref())
                .form(&[("token", token.as_str())])
                .send()
        }))
        .await;
        for answer in answers {
            let answer = answer.expect("introspection answers");
            assert_eq!(answer.status(), StatusCode::OK);
            let json: Value = answer.json().await.unwrap();
            assert_eq!(
                json["active"], true,
                "a token answered before the kill is active after it"
            );
        }
    }
    // And the restarted node serves.
    let fresh = client
        .post(format!("{}/token", node.base))
        .basic_auth(&service.id, service.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
}

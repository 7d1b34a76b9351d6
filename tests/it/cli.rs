//! The `stepgate` binary: configuration layers and errors, `migrate`, `serve`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::Value;

use crate::helpers::{Backend, TempDir, stderr, stdout, stepgate, write_config};
use crate::on_both_backends;

on_both_backends!(migrate_prints_one_json_object);

async fn migrate_prints_one_json_object(backend: Backend) {
    let dir = TempDir::new();
    let db = backend.create_database(dir.path()).await;
    let config = write_config(dir.path(), &db, "");
    let out = stepgate(
        &["migrate", "--json", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "exactly one line: {text}");
    let result: Value = serde_json::from_str(text.trim()).unwrap();
    assert!(result["applied"].is_array());

    // The migration table exists in that database now.
    let conn = Database::connect(db.url.as_str()).await.unwrap();
    let count = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .expect("seaql_migrations exists");
    assert!(count.is_some());
    conn.close().await.unwrap();

    // A second run has nothing left to apply.
    let out = stepgate(
        &["migrate", "--json", "--config", config.to_str().unwrap()],
        &[],
    );
    let again: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(again["applied"], serde_json::json!([]));
}

#[test]
fn an_unknown_key_in_the_file_is_refused_by_name() {
    let dir = TempDir::new();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[http]\nbody_limit_bytes = 70000\nbogus_option = 1\n",
    )
    .unwrap();
    let out = stepgate(&["keys", "list", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown key `http.bogus_option`"), "{err}");
    assert!(err.contains("bad.toml"), "names the file: {err}");

    std::fs::write(&path, "isuser = \"https://typo.example\"\n").unwrap();
    let out = stepgate(&["migrate", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown key `isuser`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_values_and_unknown_variables_are_refused_by_name() {
    let cases = [
        ("STEPGATE_LISTEN", "not-an-address", "listen"),
        ("STEPGATE_ISSUER", "http://id.example.com", "issuer"),
        ("STEPGATE_ISSUER", "https://id.example.com/", "issuer"),
        ("STEPGATE_DATABASE_URL", "mysql://x", "database_url"),
        (
            "STEPGATE_DATABASE__MAX_CONNECTIONS",
            "many",
            "database.max_connections",
        ),
        ("STEPGATE_LOG__FORMAT", "xml", "log.format"),
        ("STEPGATE_BOGUS", "1", "bogus"),
        ("STEPGATE_HTTP__NOPE", "1", "http.nope"),
    ];
    for (var, value, key) in cases {
        let out = stepgate(&["keys", "list"], &[(var, value)]);
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = stderr(&out);
        assert!(err.contains(&format!("`{key}`")), "{var}={value}: {err}");
    }
    let out = stepgate(
        &["keys", "list", "--config", "/nonexistent/stepgate.toml"],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/stepgate.toml"));
}

#[test]
fn environment_overrides_the_file() {
    let dir = TempDir::new();
    let file_keys = dir.path().join("file-keys");
    let env_keys = dir.path().join("env-keys");
    let path = dir.path().join("stepgate.toml");
    std::fs::write(
        &path,
        format!("keys_dir = {:?}\n", file_keys.display().to_string()),
    )
    .unwrap();
    // The signing keys are in the database: one in the temp dir, not the
    // default ./data.
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let out = stepgate(
        &["keys", "list", "--json", "--config", path.to_str().unwrap()],
        &[
            ("STEPGATE_KEYS_DIR", env_keys.to_str().unwrap()),
            ("STEPGATE_DATABASE_URL", db_url.as_str()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env_keys.join("master.key").exists());
    assert!(!file_keys.exists());
}

#[test]
fn an_unreachable_database_is_a_clear_start_error() {
    let dir = TempDir::new();
    let keys = dir.path().join("keys");
    let out = stepgate(
        &["serve"],
        &[
            ("STEPGATE_KEYS_DIR", keys.to_str().unwrap()),
            // Nothing listens on port 1.
            (
                "STEPGATE_DATABASE_URL",
                "postgres://stepgate:hunter2@127.0.0.1:1/stepgate",
            ),
            ("STEPGATE_DATABASE__CONNECT_TIMEOUT_SECS", "2"),
            ("STEPGATE_LISTEN", "127.0.0.1:0"),
            // Not the default 9464: parallel tests would share it.
            ("STEPGATE_METRICS__LISTEN", ""),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password stays out of messages: {err}"
    );
}

/// `serve` logs JSON when asked, answers, and exits cleanly on SIGTERM.
/// The request's line carries its method, path, status and the request id
/// the caller sent, and never the query string.
#[test]
fn serve_logs_json_and_stops_gracefully_on_sigterm() {
    let dir = TempDir::new();
    let keys = dir.path().join("keys");
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .env("STEPGATE_KEYS_DIR", &keys)
        .env("STEPGATE_DATABASE_URL", &db_url)
        .env("STEPGATE_LISTEN", "127.0.0.1:0")
        .env("STEPGATE_METRICS__LISTEN", "")
        .env("STEPGATE_LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut address = None;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        seen.push(line);
        if event["message"] == "listening" {
            address = event["address"].as_str().map(str::to_owned);
            break;
        }
    }
    let address = address.unwrap_or_else(|| panic!("no listening line in {seen:?}"));

    let body = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            reqwest::Client::new()
                .get(format!("http://{address}/healthz?code=secret-code-42"))
                .header("x-request-id", "caller-chosen-id")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    })
    .join()
    .unwrap();
    assert_eq!(body, 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("shutting down")),
        "logs its shutdown: {rest:?}"
    );
    let requests: Vec<Value> = rest
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .filter(|event| event["target"] == "stepgate::request")
        .collect();
    assert_eq!(requests.len(), 1, "one line for the one request: {rest:?}");
    let line = &requests[0];
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/healthz", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["request_id"], "caller-chosen-id", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["latency_us"].is_u64(), "{line}");
    assert!(
        !rest.iter().any(|l| l.contains("secret-code-42")),
        "the query stays out of the log: {rest:?}"
    );
}

//! `/metrics` on its own listener (docs/operating.md, "Metrics"): every
//! family there before any traffic, counters that move by exactly what
//! happened, route templates as labels, nothing on the public port.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use openidconnect::OAuth2TokenResponse;
use reqwest::StatusCode;
use stepgate::clock::{Clock, FixedClock};
use stepgate::startup::Application;

use crate::accounts::{PASSWORD, sign_in};
use crate::helpers::{
    Backend, TempDir, TestApp, copy_template_keys, spawn_app_with_clock, test_settings,
};
use crate::oidc::{register, relying_party};
use crate::on_both_backends;
use crate::tokens::{offline_tokens, refresh};
use crate::two_factor::{activate, totp_code};

on_both_backends!(
    every_family_is_there_before_any_traffic,
    sign_ins_and_second_factors_count_by_method_and_result,
    tokens_count_by_grant_and_refresh_reuse_is_counted,
    requests_are_labelled_by_route_template,
    metrics_stay_off_the_public_port_and_off_when_empty,
);

/// The families the operators' guide names, with their OpenMetrics type.
const FAMILIES: &[(&str, &str)] = &[
    ("stepgate_http_requests", "counter"),
    ("stepgate_http_request_duration_seconds", "histogram"),
    ("stepgate_logins", "counter"),
    ("stepgate_second_factor", "counter"),
    ("stepgate_tokens_issued", "counter"),
    ("stepgate_refresh_reuse_detected", "counter"),
    ("stepgate_code_replays", "counter"),
    ("stepgate_db_errors", "counter"),
    ("stepgate_db_pool_connections", "gauge"),
    ("stepgate_build", "info"),
];

/// One scrape, parsed.
#[derive(Debug, Default)]
struct Scrape {
    /// Family name to type.
    types: BTreeMap<String, String>,
    /// Family name to help text.
    help: BTreeMap<String, String>,
    /// `name{k="v",...}` (labels sorted) to value.
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// The sample's value; a missing sample fails the test.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = key(
            name,
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.samples.keys()))
    }

    /// The sample's value, 0 when it is not there (a label set of a free
    /// family that has not been seen yet).
    fn get_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = key(
            name,
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.samples.get(&key).copied().unwrap_or(0.0)
    }

    /// Samples of `name` whose labels include `label` = `value`.
    fn with_label(&self, name: &str, label: &str) -> Vec<&String> {
        self.samples
            .keys()
            .filter(|k| k.starts_with(&format!("{name}{{")) && k.contains(&format!("{label}=")))
            .collect()
    }
}

fn key(name: &str, labels: impl Iterator<Item = (String, String)>) -> String {
    let sorted: BTreeMap<String, String> = labels.collect();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// A strict OpenMetrics 1.0 text parser, for what the exporter prints:
/// `# HELP`, `# TYPE` and `# UNIT` lines, samples `name{labels} value`,
/// and `# EOF` last. Every sample must belong to a family declared before
/// it, under the suffix its type allows.
fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut lines = text.lines().peekable();
    let mut saw_eof = false;
    while let Some(line) = lines.next() {
        assert!(!saw_eof, "text after # EOF: {line:?}");
        if line == "# EOF" {
            saw_eof = true;
            assert!(lines.peek().is_none(), "# EOF is not last");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name), "{line}");
            scrape.help.insert(name.to_owned(), help.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name type");
            assert!(valid_name(name), "{line}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "info",
                    "unknown",
                    "summary",
                    "stateset"
                ]
                .contains(&kind),
                "{line}"
            );
            assert!(
                scrape
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_none(),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line:?}");
        // A sample.
        let (series, value) = line.rsplit_once(' ').expect("sample name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(rest.strip_suffix('}').expect("closing }")),
            ),
            None => (series, Vec::new()),
        };
        assert!(valid_name(name), "{line}");
        let family = scrape
            .types
            .iter()
            .find(|(family, kind)| sample_belongs(name, family, kind))
            .unwrap_or_else(|| panic!("sample {name} of no declared family"));
        let _ = family;
        let key = key(name, labels.into_iter());
        assert!(
            scrape.samples.insert(key.clone(), value).is_none(),
            "sample {key} twice"
        );
    }
    assert!(saw_eof, "no # EOF");
    scrape
}

fn sample_belongs(name: &str, family: &str, kind: &str) -> bool {
    let Some(suffix) = name.strip_prefix(family) else {
        return false;
    };
    match kind {
        "counter" => suffix == "_total" || suffix == "_created",
        "histogram" => ["_bucket", "_sum", "_count", "_created"].contains(&suffix),
        "info" => suffix == "_info",
        _ => suffix.is_empty(),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(valid_name(name), "label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or_else(|| {
            assert!(rest.is_empty(), "label separator in {text:?}");
            rest
        });
    }
    labels
}

async fn spawn(backend: Backend) -> (TestApp, FixedClock) {
    let now = Utc::now().timestamp();
    let clock = FixedClock::new(DateTime::from_timestamp(now - now % 30 + 10, 0).unwrap());
    let app = spawn_app_with_clock(backend, Arc::new(clock.clone()), |s| {
        s.metrics.listen = "127.0.0.1:0".into();
    })
    .await;
    (app, clock)
}

async fn scrape(app: &TestApp) -> Scrape {
    let addr = app.metrics_addr.expect("the metrics listener is on");
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    parse(&response.text().await.unwrap())
}

async fn every_family_is_there_before_any_traffic(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let s = scrape(&app).await;
    for (family, kind) in FAMILIES {
        assert_eq!(
            s.types.get(*family).map(String::as_str),
            Some(*kind),
            "{family}"
        );
        assert!(
            !s.help.get(*family).unwrap().is_empty(),
            "{family} has help"
        );
    }
    for result in ["ok", "failed", "locked"] {
        for method in ["password", "passkey"] {
            let value = s.get(
                "stepgate_logins_total",
                &[("method", method), ("result", result)],
            );
            assert_eq!(value, 0.0);
        }
    }
    for method in ["totp", "recovery_code", "passkey"] {
        for result in ["ok", "failed", "locked", "replayed"] {
            let labels = [("method", method), ("result", result)];
            assert_eq!(s.get("stepgate_second_factor_total", &labels), 0.0);
        }
    }
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert_eq!(
            s.get("stepgate_tokens_issued_total", &[("grant", grant)]),
            0.0
        );
    }
    assert_eq!(s.get("stepgate_refresh_reuse_detected_total", &[]), 0.0);
    assert_eq!(s.get("stepgate_code_replays_total", &[]), 0.0);
    assert_eq!(s.get("stepgate_db_errors_total", &[]), 0.0);
    assert_eq!(
        s.get(
            "stepgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // The pool's ceiling is the setting (the test servers use 5).
    assert_eq!(
        s.get("stepgate_db_pool_connections", &[("state", "max")]),
        5.0
    );
    let open = s.get("stepgate_db_pool_connections", &[("state", "idle")])
        + s.get("stepgate_db_pool_connections", &[("state", "in_use")]);
    assert!((0.0..=5.0).contains(&open), "{open} connections open");
    // No request reached the public port yet: the free families are
    // declared, with no series.
    assert!(
        s.with_label("stepgate_http_requests_total", "route")
            .is_empty()
    );
    assert!(
        s.with_label("stepgate_http_request_duration_seconds_count", "route")
            .is_empty()
    );
}

/// The change of every sample between two scrapes that moved.
fn moved(before: &Scrape, after: &Scrape, prefix: &str) -> BTreeMap<String, f64> {
    after
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v - before.samples.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    key(
        name,
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

async fn sign_ins_and_second_factors_count_by_method_and_result(backend: Backend) {
    let (app, clock) = spawn(backend).await;
    app.create_user("count@example.com", PASSWORD, true).await;
    let browser = app.browser();

    // A password sign-in, then the activation's code: one each.
    let s0 = scrape(&app).await;
    let (secret, _) = activate(&app, &browser, "count@example.com").await;
    let s2 = scrape(&app).await;
    assert_eq!(
        moved(&s0, &s2, "stepgate_logins"),
        BTreeMap::from([(
            series(
                "stepgate_logins_total",
                &[("method", "password"), ("result", "ok")]
            ),
            1.0
        )])
    );
    assert_eq!(
        moved(&s0, &s2, "stepgate_second_factor"),
        BTreeMap::from([(
            series(
                "stepgate_second_factor_total",
                &[("method", "totp"), ("result", "ok")]
            ),
            1.0
        )])
    );

    // A wrong password, then, signed in, a wrong 6-digit code.
    clock.advance(Duration::seconds(30));
    let refused = sign_in(&app.browser(), "count@example.com", "not the password").await;
    assert!(refused.alert().is_some(), "{}", refused.html);
    let fresh = app.browser();
    let prompt = sign_in(&fresh, "count@example.com", PASSWORD).await;
    assert!(prompt.contains("Enter your code"), "{}", prompt.html);
    let wrong = if totp_code(&secret, clock.now()) == "999999" {
        "111111"
    } else {
        "999999"
    };
    let page = fresh
        .submit_raw(&prompt, "/login/2fa", &[("code", wrong)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.html);
    let s3 = scrape(&app).await;
    assert_eq!(
        moved(&s2, &s3, "stepgate_second_factor"),
        BTreeMap::from([(
            series(
                "stepgate_second_factor_total",
                &[("method", "totp"), ("result", "failed")]
            ),
            1.0
        )])
    );

    // The right code, then the same code again in another session: a replay.
    let code = totp_code(&secret, clock.now());
    let page = fresh
        .submit(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    assert!(page.contains("My profile"), "{}", page.html);
    let other = app.browser();
    let prompt = sign_in(&other, "count@example.com", PASSWORD).await;
    let page = other
        .submit_raw(&prompt, "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.html);
    let s4 = scrape(&app).await;
    assert_eq!(
        moved(&s3, &s4, "stepgate_second_factor"),
        BTreeMap::from([
            (
                series(
                    "stepgate_second_factor_total",
                    &[("method", "totp"), ("result", "ok")]
                ),
                1.0
            ),
            (
                series(
                    "stepgate_second_factor_total",
                    &[("method", "totp"), ("result", "replayed")]
                ),
                1.0
            ),
        ])
    );
    // Password sign-ins so far: the first, the wrong one, and two more.
    assert_eq!(
        moved(&s0, &s4, "stepgate_logins"),
        BTreeMap::from([
            (
                series(
                    "stepgate_logins_total",
                    &[("method", "password"), ("result", "ok")]
                ),
                3.0
            ),
            (
                series(
                    "stepgate_logins_total",
                    &[("method", "password"), ("result", "failed")]
                ),
                1.0
            ),
        ])
    );
}

async fn tokens_count_by_grant_and_refresh_reuse_is_counted(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    app.create_user("tokens@example.com", PASSWORD, true).await;
    let client = register(&app, &[]);
    let service = register(
        &app,
        &["--grant-type", "client_credentials", "--scope", "openid"],
    );
    let rp = relying_party(&app, &client).await;
    let s0 = scrape(&app).await;

    let first = offline_tokens(&app, &rp, &app.browser(), "tokens@example.com").await;
    let old = first.refresh_token().unwrap().clone();
    refresh(&rp, &old).await.expect("a rotation");
    let replay = refresh(&rp, &old).await;
    assert!(replay.unwrap_err().contains("invalid_grant"));
    let answer = app
        .client
        .post(app.url("/token"))
        .basic_auth(&service.id, service.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    let s1 = scrape(&app).await;
    let grant = |g| series("stepgate_tokens_issued_total", &[("grant", g)]);
    assert_eq!(
        moved(&s0, &s1, "stepgate_tokens_issued"),
        BTreeMap::from([
            (grant("authorization_code"), 1.0),
            (grant("refresh_token"), 1.0),
            (grant("client_credentials"), 1.0),
        ])
    );
    assert_eq!(
        moved(&s0, &s1, "stepgate_refresh_reuse_detected"),
        BTreeMap::from([(series("stepgate_refresh_reuse_detected_total", &[]), 1.0)])
    );
    assert_eq!(s1.get("stepgate_code_replays_total", &[]), 0.0);
    // The token endpoint's requests: the code, two refreshes and the
    // client's, of which the replayed refresh was refused with 400.
    let token = |status| {
        s1.get_or_zero(
            "stepgate_http_requests_total",
            &[("route", "/token"), ("method", "POST"), ("status", status)],
        ) - s0.get_or_zero(
            "stepgate_http_requests_total",
            &[("route", "/token"), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!((token("200"), token("400")), (3.0, 1.0));
}

async fn requests_are_labelled_by_route_template(backend: Backend) {
    let (app, _clock) = spawn(backend).await;
    let s0 = scrape(&app).await;
    for _ in 0..2 {
        assert_eq!(app.get("/jwks").await.status(), StatusCode::OK);
    }
    let authorize = app
        .get("/authorize?client_id=nobody&response_type=code&state=abc")
        .await;
    let status = authorize.status().as_u16().to_string();
    assert_eq!(
        app.get("/no/such/page/42").await.status(),
        StatusCode::NOT_FOUND
    );
    let s1 = scrape(&app).await;

    let requests = |route, method, status: &str| {
        series(
            "stepgate_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(
        moved(&s0, &s1, "stepgate_http_requests_total"),
        BTreeMap::from([
            (requests("/jwks", "GET", "200"), 2.0),
            (requests("/authorize", "GET", &status), 1.0),
            (requests("unmatched", "GET", "404"), 1.0),
        ])
    );
    let count = |route| {
        s1.get(
            "stepgate_http_request_duration_seconds_count",
            &[("route", route)],
        )
    };
    assert_eq!(
        (count("/jwks"), count("/authorize"), count("unmatched")),
        (2.0, 1.0, 1.0)
    );
    assert_eq!(
        s1.get(
            "stepgate_http_request_duration_seconds_bucket",
            &[("route", "/jwks"), ("le", "+Inf")]
        ),
        2.0
    );
    // No raw path, query or id anywhere in the labels.
    for series in s1.samples.keys() {
        assert!(
            !series.contains("/no/such") && !series.contains("nobody") && !series.contains('?'),
            "{series}"
        );
    }
}

async fn metrics_stay_off_the_public_port_and_off_when_empty(backend: Backend) {
    let (app, _clock) = spawn(backend.clone()).await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    let s = scrape(&app).await;
    assert_eq!(
        s.get(
            "stepgate_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        1.0
    );
    // Anything but /metrics on the metrics listener is 404 too.
    let addr = app.metrics_addr.unwrap();
    let other = reqwest::get(format!("http://{addr}/jwks")).await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    // Empty: no listener, nothing counted.
    let off = spawn_app_with_clock(
        backend.clone(),
        Arc::new(FixedClock::new(Utc::now())),
        |s| {
            s.metrics.listen = String::new();
        },
    )
    .await;
    assert_eq!(off.metrics_addr, None);
    assert!(off.state.metrics.is_none());

    // A taken address stops the start, naming the key.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = TempDir::new();
    let db = backend.create_database(dir.path()).await;
    let mut settings = test_settings(dir.path(), &db);
    copy_template_keys(&settings.keys_dir);
    settings.metrics.listen = taken.local_addr().unwrap().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = Application::build_with_listener(
        settings.clone(),
        listener,
        Arc::new(FixedClock::new(Utc::now())) as Arc<dyn Clock>,
    )
    .await
    .err()
    .expect("a taken metrics address is a start error")
    .to_string();
    assert!(error.contains("metrics.listen"), "{error}");

    // Not an address: refused at load, naming the key.
    settings.metrics.listen = "localhost".into();
    let invalid = settings.validate().unwrap_err().to_string();
    assert!(invalid.contains("metrics.listen"), "{invalid}");
}

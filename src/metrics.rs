//! Prometheus metrics (docs/operating.md, "Metrics"): one registry per
//! running server, every family registered when it starts, and the few
//! functions that count.
//!
//! Where they are counted:
//! - requests and their latency in the access log (`http::access_log`),
//!   labelled with the route template, never the raw path;
//! - sign-ins, second factors, tokens issued and replays from the typed
//!   audit events (`store::audit::counted`), once their row is committed
//!   (`store::append`), so a count is never ahead of the audit log;
//! - database errors where one is turned into an answer (`http::error`),
//!   through [`db_error`], which finds the request's registry in a task
//!   local the access log sets;
//! - the database pool at scrape time ([`Metrics::render`]).
//!
//! Labels are bounded: routes come from the route table, methods from a
//! fixed list, statuses are three digits, the rest are enums here. The
//! text is OpenMetrics 1.0 (`prometheus_client`), which Prometheus reads.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request that matched no route (a 404 from the
/// fallback): one value, whatever the path was.
pub const UNMATCHED: &str = "unmatched";

/// Latency buckets, in seconds: from a JWKS answer (tens of µs) to an
/// argon2id sign-in under load (tens of ms) and a request near
/// `http.request_timeout_secs`.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a person signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginMethod {
    Password,
    Passkey,
}

/// Which second factor was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecondFactor {
    Totp,
    RecoveryCode,
    Passkey,
}

/// How a sign-in or a second factor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Failed,
    /// Refused because of a lock, without being checked.
    Locked,
    /// A TOTP code whose time-step was already used (RFC 6238 §5.2).
    Replayed,
}

/// The grant tokens were issued for (RFC 6749 §4.1, §4.4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

/// What an audit event counts for (`store::audit::counted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Login(LoginMethod, Outcome),
    SecondFactor(SecondFactor, Outcome),
    TokensIssued(Grant),
    RefreshReuse,
    CodeReplay,
}

impl LoginMethod {
    pub const ALL: [LoginMethod; 2] = [LoginMethod::Password, LoginMethod::Passkey];

    const fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Password => "password",
            LoginMethod::Passkey => "passkey",
        }
    }
}

impl SecondFactor {
    pub const ALL: [SecondFactor; 3] = [
        SecondFactor::Totp,
        SecondFactor::RecoveryCode,
        SecondFactor::Passkey,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::RecoveryCode => "recovery_code",
            SecondFactor::Passkey => "passkey",
        }
    }
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Locked,
        Outcome::Replayed,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Locked => "locked",
            Outcome::Replayed => "replayed",
        }
    }
}

impl Grant {
    pub const ALL: [Grant; 3] = [
        Grant::AuthorizationCode,
        Grant::RefreshToken,
        Grant::ClientCredentials,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
        }
    }

    /// The grant named `name` (the grant-type string of RFC 6749).
    pub fn parse(name: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodResult {
    method: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrantLabel {
    grant: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Clone)]
struct LatencyHistogram;

impl MetricConstructor<Histogram> for LatencyHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// A family that prints its `# HELP` and `# TYPE` even before its first
/// label set (`prometheus_client` leaves an empty family out), so that
/// every family is there from start.
#[derive(Debug)]
struct Listed<F>(F);

impl<F: EncodeMetric> EncodeMetric for Listed<F> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// The pool's connections at scrape time (`store::pool_connections`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolConnections {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

/// One server's registry and its families.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, LatencyHistogram>,
    logins: Family<MethodResult, Counter>,
    second_factor: Family<MethodResult, Counter>,
    tokens: Family<GrantLabel, Counter>,
    refresh_reuse: Counter,
    code_replays: Counter,
    db_errors: Counter,
    pool: Family<StateLabel, Gauge>,
    /// Route templates as `&'static str`, so label sets are `Copy`-cheap
    /// to build and hash. Bounded by the route table.
    routes: RwLock<HashSet<&'static str>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered, and every label set known
    /// in advance at zero.
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::new_with_constructor(LatencyHistogram);
        let logins = Family::<MethodResult, Counter>::default();
        let second_factor = Family::<MethodResult, Counter>::default();
        let tokens = Family::<GrantLabel, Counter>::default();
        let pool = Family::<StateLabel, Gauge>::default();
        for method in LoginMethod::ALL {
            // A passkey sign-in is never refused for a lock (its failures
            // are bounded per address, docs/operating.md), yet the label
            // set is listed: a dashboard's query finds zero, not nothing.
            for result in [Outcome::Ok, Outcome::Failed, Outcome::Locked] {
                let _ = logins.get_or_create(&MethodResult {
                    method: method.as_str(),
                    result: result.as_str(),
                });
            }
        }
        for method in SecondFactor::ALL {
            for result in Outcome::ALL {
                let _ = second_factor.get_or_create(&MethodResult {
                    method: method.as_str(),
                    result: result.as_str(),
                });
            }
        }
        for grant in Grant::ALL {
            let _ = tokens.get_or_create(&GrantLabel {
                grant: grant.as_str(),
            });
        }
        for state in ["idle", "in_use", "max"] {
            let _ = pool.get_or_create(&StateLabel { state });
        }
        let refresh_reuse = Counter::default();
        let code_replays = Counter::default();
        let db_errors = Counter::default();

        let mut registry = Registry::default();
        registry.register(
            "stepgate_http_requests",
            "HTTP requests answered, by route template, method and status",
            Listed(requests.clone()),
        );
        registry.register(
            "stepgate_http_request_duration_seconds",
            "Time from a request's arrival to its answer being ready, by route template",
            Listed(latency.clone()),
        );
        registry.register(
            "stepgate_logins",
            "Sign-in attempts, by method (password, passkey) and result (ok, failed, locked)",
            logins.clone(),
        );
        registry.register(
            "stepgate_second_factor",
            "Second-factor checks, by method (totp, recovery_code, passkey) and result (ok, failed, locked, replayed)",
            second_factor.clone(),
        );
        registry.register(
            "stepgate_tokens_issued",
            "Token responses, by grant (authorization_code, refresh_token, client_credentials)",
            tokens.clone(),
        );
        registry.register(
            "stepgate_refresh_reuse_detected",
            "Rotated refresh tokens presented again; each revoked its family (RFC 9700 §4.14.2)",
            refresh_reuse.clone(),
        );
        registry.register(
            "stepgate_code_replays",
            "Authorization codes presented again; each revoked what the code bought (RFC 6749 §4.1.2)",
            code_replays.clone(),
        );
        registry.register(
            "stepgate_db_errors",
            "Requests answered with an error because the database failed",
            db_errors.clone(),
        );
        registry.register(
            "stepgate_db_pool_connections",
            "Connections of the database pool at scrape time: idle, in_use, and the max the pool may open",
            pool.clone(),
        );
        registry.register(
            "stepgate_build",
            "The running version",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            registry,
            requests,
            latency,
            logins,
            second_factor,
            tokens,
            refresh_reuse,
            code_replays,
            db_errors,
            pool,
            routes: RwLock::new(HashSet::new()),
        }
    }

    /// Counts one answered request. `route` is the matched route template,
    /// or `None` for a request no route matched.
    pub fn request(
        &self,
        route: Option<&str>,
        method: &axum::http::Method,
        status: u16,
        secs: f64,
    ) {
        let route = match route {
            Some(template) => self.intern(template),
            None => UNMATCHED,
        };
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(method),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel { route })
            .observe(secs);
    }

    fn intern(&self, template: &str) -> &'static str {
        if let Some(known) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(template)
        {
            return known;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = routes.get(template) {
            return known;
        }
        // Once per route template of the route table (they are what axum's
        // `MatchedPath` holds), whatever the paths requested.
        let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
        routes.insert(leaked);
        leaked
    }

    /// Counts what an audit event stands for, once its row is committed.
    pub fn event(&self, event: Event) {
        match event {
            Event::Login(method, result) => self
                .logins
                .get_or_create(&MethodResult {
                    method: method.as_str(),
                    result: result.as_str(),
                })
                .inc(),
            Event::SecondFactor(method, result) => self
                .second_factor
                .get_or_create(&MethodResult {
                    method: method.as_str(),
                    result: result.as_str(),
                })
                .inc(),
            Event::TokensIssued(grant) => self
                .tokens
                .get_or_create(&GrantLabel {
                    grant: grant.as_str(),
                })
                .inc(),
            Event::RefreshReuse => self.refresh_reuse.inc(),
            Event::CodeReplay => self.code_replays.inc(),
        };
    }

    /// Counts a database error answered to a client.
    pub fn db_error(&self) {
        self.db_errors.inc();
    }

    /// The text of a scrape: the pool as it is now, and every family.
    pub fn render(&self, pool: PoolConnections) -> String {
        for (state, value) in [
            ("idle", pool.idle),
            ("in_use", pool.in_use),
            ("max", pool.max),
        ] {
            self.pool
                .get_or_create(&StateLabel { state })
                .set(i64::from(value));
        }
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The method label: the methods the route table answers and a few more;
/// anything else (a client may send any token) is `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PATCH => "PATCH",
        _ => "other",
    }
}

tokio::task_local! {
    /// The registry of the server whose request runs on this task (set by
    /// `http::access_log`), for [`db_error`].
    static CURRENT: Option<Arc<Metrics>>;
}

/// Runs `future` with `metrics` as the registry [`db_error`] counts in.
pub fn scope<F: std::future::Future>(
    metrics: Option<Arc<Metrics>>,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Option<Arc<Metrics>>, F> {
    CURRENT.scope(metrics, future)
}

/// Counts a database error that is being answered to the client, in the
/// registry of the server the current request runs on (nothing outside a
/// request, or with metrics off).
pub fn db_error() {
    let _ = CURRENT.try_with(|m| {
        if let Some(m) = m {
            m.db_error();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_printed_from_start_with_its_counters_at_zero() {
        let text = Metrics::new().render(PoolConnections::default());
        for family in [
            "stepgate_http_requests",
            "stepgate_http_request_duration_seconds",
            "stepgate_logins",
            "stepgate_second_factor",
            "stepgate_tokens_issued",
            "stepgate_refresh_reuse_detected",
            "stepgate_db_errors",
            "stepgate_db_pool_connections",
            "stepgate_build",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}:\n{text}"
            );
        }
        assert!(text.contains("stepgate_logins_total{method=\"password\",result=\"locked\"} 0\n"));
        assert!(
            text.contains("stepgate_second_factor_total{method=\"totp\",result=\"replayed\"} 0\n")
        );
        assert!(text.contains("stepgate_tokens_issued_total{grant=\"refresh_token\"} 0\n"));
        assert!(text.contains("stepgate_refresh_reuse_detected_total 0\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn routes_are_labelled_by_template_and_unknown_methods_as_other() {
        let m = Metrics::new();
        m.request(Some("/jwks"), &axum::http::Method::GET, 200, 0.0001);
        m.request(Some("/jwks"), &axum::http::Method::GET, 200, 0.0001);
        m.request(
            None,
            &axum::http::Method::from_bytes(b"BREW").unwrap(),
            404,
            0.0001,
        );
        let text = m.render(PoolConnections::default());
        assert!(text.contains(
            "stepgate_http_requests_total{route=\"/jwks\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "stepgate_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "stepgate_http_request_duration_seconds_bucket{le=\"0.0005\",route=\"/jwks\"} 2\n"
        ));
    }

    #[test]
    fn the_grafana_dashboard_parses_and_queries_only_what_we_export() {
        let text = Metrics::new().render(PoolConnections::default());
        let mut exported = HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    "info" => &["_info"],
                    _ => &[""],
                };
                for suffix in suffixes {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut queried = HashSet::new();
        for panel in panels {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("stepgate_") {
                        assert!(exported.contains(word), "{word} is not exported");
                        queried.insert(word.to_owned());
                    }
                }
            }
        }
        for family in [
            "stepgate_http_requests_total",
            "stepgate_http_request_duration_seconds_bucket",
            "stepgate_logins_total",
            "stepgate_second_factor_total",
            "stepgate_tokens_issued_total",
            "stepgate_refresh_reuse_detected_total",
            "stepgate_db_errors_total",
            "stepgate_db_pool_connections",
        ] {
            assert!(
                queried.contains(family),
                "the dashboard has no panel for {family}"
            );
        }
    }

    #[test]
    fn the_operators_guide_lists_every_family() {
        let guide = include_str!("../docs/operating.md");
        let section = guide.split("## Metrics").nth(1).expect("a Metrics section");
        let text = Metrics::new().render(PoolConnections::default());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let shown = match kind {
                    "counter" => format!("`{name}_total`"),
                    "info" => format!("`{name}_info`"),
                    _ => format!("`{name}`"),
                };
                assert!(
                    section.contains(&shown),
                    "docs/operating.md does not list {shown}"
                );
            }
        }
    }

    #[test]
    fn grants_parse_from_their_rfc_names() {
        for grant in Grant::ALL {
            assert_eq!(Grant::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(Grant::parse("password"), None);
    }
}

//! Logging. Human-readable lines by default, JSON by `log.format = "json"`.
//! Logs go to stderr so that `--json` output on stdout stays one object.
//!
//! Nothing secret is logged: request logs carry method, path (never the query,
//! which may hold codes or tokens), status, latency and the request id.
//!
//! Every line logged on a request's task carries that request's id
//! ([`REQUEST_ID`], set by `http::access_log`); background work (the
//! database writer, say) logs without one. It is a task-local, not a
//! tracing span: a span per request, its fields formatted at creation and
//! entered on every poll, was about a tenth of a `GET /jwks`, and the
//! line that ends the request another tenth (see docs/performance.md).
//! [`Line`] is the one line format, human or JSON.
//!
//! The server writes its lines in blocks ([`Buffered`]): a `write` system
//! call per request line was 8% of a `GET /jwks`. Info and debug
//! lines reach stderr within [`FLUSH_EVERY`]; warnings and errors are
//! written at once, after everything logged before them.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogFormat, LogSettings};

/// How long an info line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full is written out at once.
const FLUSH_AT: usize = 64 * 1024;

/// The server's buffer, for [`flush`] at exit and on panic.
static SERVER_LOG: OnceLock<Arc<Buffered>> = OnceLock::new();

/// `buffered`: for the server (see the module comment); the CLI's few
/// lines go straight to stderr.
pub fn init(settings: &LogSettings, buffered: bool) {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The migrator announces every run at info; keep that out of CLI output
    // unless asked for by name.
    if !settings.level.contains("sea_orm_migration") {
        filter = filter.add_directive("sea_orm_migration=warn".parse().expect("static directive"));
    }
    // PostgreSQL's notices ("relation ... already exists, skipping" from
    // the migrator's CREATE TABLE IF NOT EXISTS) are not news either.
    if !settings.level.contains("sqlx") {
        filter = filter.add_directive(
            "sqlx::postgres::notice=warn"
                .parse()
                .expect("static directive"),
        );
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(ansi)
        .event_format(Line {
            json: matches!(settings.format, LogFormat::Json),
        });
    // try_init: a second call (tests start several servers) keeps the first.
    let sink = buffered
        .then(|| {
            // Without its thread nothing would write the buffer out: then
            // the lines go straight to stderr.
            let started = Buffered::start(Box::new(std::io::stderr())).ok()?;
            Some(SERVER_LOG.get_or_init(|| started).clone())
        })
        .flatten();
    if let Some(sink) = sink {
        let _ = builder.with_writer(LogWriter(sink)).try_init();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
    } else {
        let _ = builder.with_writer(std::io::stderr).try_init();
    }
}

tokio::task_local! {
    /// The id of the request being handled (`x-request-id`), for every line
    /// logged meanwhile on its task.
    pub static REQUEST_ID: RequestId;
}

/// A request id as the request carried it (or as the server made it).
pub struct RequestId(pub axum::http::HeaderValue);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A header value that is not visible ASCII is not echoed into logs.
        f.write_str(self.0.to_str().unwrap_or("-"))
    }
}

/// The line format. Human: `TIME LEVEL target: message key=value…
/// request_id=…`. JSON: one object per line, `timestamp`, `level`,
/// `target`, `message`, the event's fields and `request_id`, all at the
/// top level. Stepgate opens no tracing spans, so none are written.
pub struct Line {
    pub json: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // A `log` crate record (rustls, say) carries its own target.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if self.json {
            let mut time = String::with_capacity(32);
            SystemTime.format_time(&mut Writer::new(&mut time))?;
            let mut object = serde_json::Map::new();
            object.insert("timestamp".into(), time.into());
            object.insert("level".into(), meta.level().as_str().into());
            object.insert("target".into(), meta.target().into());
            event.record(&mut JsonFields(&mut object));
            let _ = REQUEST_ID.try_with(|id| {
                object.insert("request_id".into(), id.to_string().into());
            });
            let line = serde_json::to_string(&object).map_err(|_| std::fmt::Error)?;
            return writeln!(w, "{line}");
        }
        SystemTime.format_time(&mut w)?;
        write!(w, " {:>5} {}: ", meta.level().as_str(), meta.target())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        match REQUEST_ID.try_with(|id| writeln!(w, " request_id={id}")) {
            Ok(written) => written,
            Err(_) => writeln!(w),
        }
    }
}

/// An event's fields as JSON values: numbers and booleans as such, the rest
/// as strings. The `log.*` fields a `log` record brings (its target, file
/// and line) are left out, as the human format leaves them out.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl JsonFields<'_> {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().into(), value);
        }
    }
}

impl Visit for JsonFields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// Writes out what the server has buffered (at exit).
pub fn flush() {
    if let Some(sink) = SERVER_LOG.get() {
        sink.flush();
    }
}

/// Log lines gathered in memory and written out in blocks, in the order
/// they were logged.
pub struct Buffered {
    pending: Mutex<Vec<u8>>,
    /// Held while writing: one block at a time, oldest first. Loggers wait
    /// only for `pending`, never for the write itself, unless their line
    /// must go out at once.
    out: Mutex<Box<dyn Write + Send>>,
}

impl Buffered {
    /// A buffer writing to `out`, with a thread that writes it out every
    /// [`FLUSH_EVERY`] (while the buffer lives).
    pub fn start(out: Box<dyn Write + Send>) -> std::io::Result<Arc<Self>> {
        let sink = Arc::new(Self {
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            out: Mutex::new(out),
        });
        let flusher = Arc::downgrade(&sink);
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                while let Some(sink) = flusher.upgrade() {
                    sink.flush();
                    drop(sink);
                    std::thread::sleep(FLUSH_EVERY);
                }
            })?;
        Ok(sink)
    }

    /// Adds one line; writes everything out now if `urgent` or full.
    pub fn write_line(&self, line: &[u8], urgent: bool) {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.extend_from_slice(line);
            pending.len() >= FLUSH_AT
        };
        if urgent || full {
            self.flush();
        }
    }

    /// Writes out everything buffered so far.
    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let block = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.is_empty() {
                return;
            }
            std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_AT))
        };
        // A log that cannot be written has nowhere to report it.
        let _ = out.write_all(&block);
        let _ = out.flush();
    }
}

/// The `MakeWriter` over a [`Buffered`]: warnings and errors are urgent.
#[derive(Clone)]
pub struct LogWriter(pub Arc<Buffered>);

pub struct LineWriter<'a> {
    sink: &'a Buffered,
    urgent: bool,
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            sink: &self.0,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            sink: &self.0,
            // tracing orders levels by verbosity: ERROR < WARN < INFO.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.write_line(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(sink: &LogWriter, level: &'static Metadata<'static>, text: &str) {
        sink.make_writer_for(level)
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// What `Line` writes for one event, logged inside a request's scope
    /// (`Some(id)`) or outside any.
    fn formatted(json: bool, request_id: Option<&'static str>) -> String {
        let out = Shared::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(Line { json })
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let event = || tracing::warn!(target: "t", attempts = 3, who = %"ann", "it \"failed\"");
            match request_id {
                Some(id) => REQUEST_ID
                    .sync_scope(RequestId(axum::http::HeaderValue::from_static(id)), event),
                None => event(),
            }
        });
        out.text()
    }

    #[test]
    fn a_line_carries_its_request_id() {
        let human = formatted(false, Some("req-7"));
        let (time, rest) = human.split_once(' ').unwrap();
        assert!(
            time.ends_with('Z') && time.contains('T'),
            "RFC 3339 time first: {human}"
        );
        assert_eq!(
            rest,
            " WARN t: it \"failed\" attempts=3 who=ann request_id=req-7\n"
        );
        assert!(!formatted(false, None).contains("request_id"));

        let json: serde_json::Value =
            serde_json::from_str(formatted(true, Some("req-7")).trim_end()).unwrap();
        assert_eq!(json["level"], "WARN");
        assert_eq!(json["target"], "t");
        assert_eq!(json["message"], "it \"failed\"");
        assert_eq!(json["attempts"], 3);
        assert_eq!(json["who"], "ann");
        assert_eq!(json["request_id"], "req-7");
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        let outside: serde_json::Value =
            serde_json::from_str(formatted(true, None).trim_end()).unwrap();
        assert!(outside.get("request_id").is_none(), "{outside}");
        assert_eq!(
            formatted(true, None).lines().count(),
            1,
            "one object per line"
        );
    }

    /// A `log` crate record (rustls logs this way) keeps its own target and
    /// brings no `log.*` keys.
    #[test]
    fn a_log_record_keeps_its_target() {
        // The global `log` logger forwards to the thread's subscriber;
        // another test may have set it already.
        let _ = tracing_log::LogTracer::init();
        let out = Shared::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(Line { json: true })
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing_log::log::warn!(target: "rustls::client", "a record");
        });
        let json: serde_json::Value = serde_json::from_str(out.text().trim_end()).unwrap();
        assert_eq!(json["target"], "rustls::client", "{json}");
        assert_eq!(json["message"], "a record", "{json}");
        assert!(
            json.as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("log.")),
            "{json}"
        );
    }

    #[test]
    fn info_waits_warnings_go_at_once_and_order_holds() {
        static INFO: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&INFO_META);
        static INFO_META: Metadata<'static> = tracing::metadata!(
            name: "info", target: "t", level: Level::INFO, fields: &[], callsite: &INFO, kind: tracing::metadata::Kind::EVENT
        );
        static WARN: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&WARN_META);
        static WARN_META: Metadata<'static> = tracing::metadata!(
            name: "warn", target: "t", level: Level::WARN, fields: &[], callsite: &WARN, kind: tracing::metadata::Kind::EVENT
        );
        let out = Shared::default();
        // No flusher thread: only the rules under test write anything.
        let sink = LogWriter(Arc::new(Buffered {
            pending: Mutex::new(Vec::new()),
            out: Mutex::new(Box::new(out.clone())),
        }));
        line(&sink, &INFO_META, "one\n");
        line(&sink, &INFO_META, "two\n");
        assert_eq!(out.text(), "", "info lines wait");
        line(&sink, &WARN_META, "three\n");
        assert_eq!(
            out.text(),
            "one\ntwo\nthree\n",
            "a warning goes out at once, after them"
        );
        line(&sink, &INFO_META, "four\n");
        sink.0.flush();
        assert_eq!(out.text(), "one\ntwo\nthree\nfour\n");
        // A full buffer goes out without waiting for the flusher.
        let long = "x".repeat(FLUSH_AT);
        line(&sink, &INFO_META, &long);
        assert_eq!(out.text().len(), "one\ntwo\nthree\nfour\n".len() + FLUSH_AT);
    }

    #[test]
    fn the_flusher_writes_info_lines_out() {
        let out = Shared::default();
        let sink = Buffered::start(Box::new(out.clone())).unwrap();
        sink.write_line(b"waiting\n", false);
        // Bounded wait for the thread (not a timing assertion: it only
        // needs to run once within the 5 s).
        for _ in 0..50 {
            if out.text() == "waiting\n" {
                return;
            }
            std::thread::sleep(FLUSH_EVERY);
        }
        panic!("the flusher never wrote the line: {:?}", out.text());
    }
}

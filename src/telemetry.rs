//! Logging. Human-readable lines by default, JSON by `log.format = "json"`.
//! Logs go to stderr so that `--json` output on stdout stays one object.
//!
//! Nothing secret is logged: request logs carry method, path (never the query,
//! which may hold codes or tokens), status, latency and the request id.
//!
//! The server writes its lines in blocks ([`Buffered`]): a `write` system
//! call per request line was 8% of a `GET /jwks`. Info and debug
//! lines reach stderr within [`FLUSH_EVERY`]; warnings and errors are
//! written at once, after everything logged before them.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
        .with_ansi(ansi);
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
        let builder = builder.with_writer(LogWriter(sink));
        let _ = match settings.format {
            LogFormat::Human => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
    } else {
        let builder = builder.with_writer(std::io::stderr);
        let _ = match settings.format {
            LogFormat::Human => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
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

//! Logging. Human-readable lines by default, JSON by `log.format = "json"`.
//! Logs go to stderr so that `--json` output on stdout stays one object.
//!
//! Nothing secret is logged: request logs carry method, path (never the query,
//! which may hold codes or tokens), status, latency and the request id.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // try_init: a second call (tests start several servers) keeps the first.
    let _ = match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

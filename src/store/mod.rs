//! The only place that talks to the database: the connection, migrations and,
//! as capabilities land, one file of queries per concept.

pub mod access_tokens;
pub mod api_keys;
pub mod append;
pub mod audit;
pub mod authorization_codes;
pub mod client_cache;
pub mod clients;
pub mod consents;
pub mod email_tokens;
pub mod entities;
pub mod interactions;
pub mod local_read;
pub mod login_throttle;
pub mod mail_queue;
pub mod passkeys;
pub mod rate_limits;
pub mod recovery_codes;
pub mod refresh_tokens;
pub mod sessions;
pub mod signing_keys;
pub mod sweep;
pub mod totp;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend};

use crate::config::Settings;

/// What the rest of Stepgate reaches the database through: the pool, the
/// group-commit writer (`append`), the SQLite read path (`local_read`,
/// `None` on PostgreSQL) and the cache of clients read for authentication.
pub struct Store {
    pub db: DatabaseConnection,
    /// Writes token rows and audit events in group commits.
    pub appender: append::Appender,
    /// SQLite reads on the request thread; the queries that use it take
    /// the `Store` and choose for themselves.
    pub reader: Option<local_read::LocalReader>,
    /// Clients read for client authentication (`oauth.client_cache_secs`).
    pub clients: client_cache::ClientCache,
}

impl Store {
    /// Starts the writer on `db` and opens the read path where it applies.
    pub fn new(db: DatabaseConnection, client_cache: Duration) -> Self {
        Self::counting(db, client_cache, None)
    }

    /// As `new`, and the writer counts the audit events it commits in
    /// `metrics` (`store::audit::counted`).
    pub fn counting(
        db: DatabaseConnection,
        client_cache: Duration,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Self {
        Self {
            appender: append::Appender::start_counting(db.clone(), metrics),
            reader: local_read::LocalReader::for_pool(&db),
            clients: client_cache::ClientCache::new(client_cache),
            db,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot prepare the SQLite file or directory {path}: {reason}")]
    SqliteDir { path: String, reason: String },
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Opens the pool and checks that the database answers.
///
/// SQLite gets WAL (readers never block the writer), foreign keys on (SQLite
/// leaves them off by default), `synchronous=NORMAL` (durable in WAL mode
/// except for the last transactions on power loss) and a busy timeout, on
/// every connection of the pool.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, StoreError> {
    let url = settings.database_url.as_str();
    let connect_error = |e: &dyn std::fmt::Display| StoreError::Connect {
        url: redact_url(url),
        reason: e.to_string(),
    };
    let db = if url.starts_with("sqlite:") {
        prepare_sqlite_file(url)?;
        let busy = Duration::from_millis(settings.database.sqlite_busy_timeout_ms);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_error(&e))?
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy)
            .disable_statement_logging();
        let pool = sqlite_pool(settings.database.max_connections)
            .acquire_timeout(settings.connect_timeout())
            .connect_with(options)
            .await
            .map_err(|e| connect_error(&e))?;
        sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
    } else {
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(settings.database.max_connections)
            .min_connections(0)
            .connect_timeout(settings.connect_timeout())
            .acquire_timeout(settings.connect_timeout())
            // A connection the server closed (a PostgreSQL restart) is
            // noticed before use.
            .test_before_acquire(true)
            .sqlx_logging(false);
        sea_orm::Database::connect(options)
            .await
            .map_err(|e| connect_error(&e))?
    };
    ping(&db).await.map_err(|e| StoreError::Connect {
        url: redact_url(url),
        reason: e.to_string(),
    })?;
    Ok(db)
}

/// The connection the group-commit writer (`append`) writes on.
///
/// SQLite drops a connection's page cache whenever another connection has
/// written, so a writer drawing a different pooled connection each time
/// re-reads the pages it is about to change; on a connection of its own
/// (the pool's options, at most one connection, never recycled) its cache
/// stays warm while it is the one writing. PostgreSQL keeps no such
/// per-connection cache: the writer shares the pool.
pub fn writer_connection(db: &DatabaseConnection) -> DatabaseConnection {
    if db.get_database_backend() != DbBackend::Sqlite {
        return db.clone();
    }
    let options = db.get_sqlite_connection_pool().connect_options();
    let pool = sqlite_pool(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with((*options).clone());
    sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
}

/// A pool of at most `max` SQLite connections, each with the query
/// planner stability guarantee on (`SQLITE_DBCONFIG_ENABLE_QPSG`).
///
/// Without it, SQLite 3.51 marks a statement whose `LIMIT ?` it could fold
/// into the plan as depending on the bound value, and then compiles the
/// statement again every time it is run with a fresh binding: every
/// `.one()` query (sea-orm sends `LIMIT ?`) was re-parsed and re-planned on
/// each call, a fifth of `/introspect`'s time. With QPSG a prepared
/// statement keeps its plan whatever is bound. No ping before use either:
/// an SQLite connection is a file handle that cannot be closed under us,
/// and the ping is one more round trip through the connection's worker
/// thread (two context switches) on every query.
fn sqlite_pool(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let mut handle = conn.lock_handle().await?;
                // SAFETY: the locked handle guarantees that the connection's
                // worker thread makes no call on this database meanwhile;
                // sqlite3_db_config with ENABLE_QPSG takes (int, int*) and
                // accepts a null int*.
                #[allow(unsafe_code)]
                let rc = unsafe {
                    libsqlite3_sys::sqlite3_db_config(
                        handle.as_raw_handle().as_ptr(),
                        libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                        1 as std::ffi::c_int,
                        std::ptr::null_mut::<std::ffi::c_int>(),
                    )
                };
                if rc == libsqlite3_sys::SQLITE_OK {
                    Ok(())
                } else {
                    Err(sea_orm::sqlx::Error::Protocol(format!(
                        "sqlite3_db_config(ENABLE_QPSG) failed with code {rc}"
                    )))
                }
            })
        })
}

/// Applies pending migrations; returns the names of those it applied.
///
/// On PostgreSQL several nodes may start at once against a database none
/// has migrated: each would create the same tables, and all but one would
/// stop on "already exists". A session-level advisory lock, held on a
/// connection of its own (outside the pool) for the whole run, lets one
/// node migrate while the others wait; each then finds nothing pending.
/// Closing that connection, or a node dying, ends the session and the
/// lock with it.
pub async fn migrate(db: &DatabaseConnection) -> Result<Vec<String>, StoreError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return migrate_unlocked(db).await;
    }
    use sea_orm::sqlx::Connection as _;
    let error = |e: sea_orm::sqlx::Error| StoreError::Migrate(e.to_string());
    // A connection of its own, outside the pool: the migrations may use
    // every pooled connection (a pool of one included), and closing this
    // one ends the session and its lock whatever happens.
    let options = db.get_postgres_connection_pool().connect_options();
    let mut lock = sea_orm::sqlx::postgres::PgConnection::connect_with(&options)
        .await
        .map_err(error)?;
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut lock)
        .await
        .map_err(error)?;
    let result = migrate_unlocked(db).await;
    let _ = lock.close().await;
    result
}

/// The advisory lock key of `migrate`: any constant of our own ("stepgate"
/// in ASCII, as a big-endian integer).
const MIGRATION_LOCK: i64 = 0x0073_7465_7067_6174;

async fn migrate_unlocked(db: &DatabaseConnection) -> Result<Vec<String>, StoreError> {
    let pending: Vec<String> = Migrator::get_pending_migrations(db)
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Migrator::up(db, None)
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))?;
    Ok(pending)
}

/// Whether an error is a unique-constraint violation (SQLite and PostgreSQL).
pub fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Whether `error` says the database is away or too busy to answer (the
/// server down or restarting, a connection lost or refused, the pool unable
/// to hand out a connection in time, SQLite's lock not granted in time),
/// rather than that this request's statement went wrong. Such a failure is
/// answered 503 with `Retry-After` (docs/operating.md, "When the database
/// is away"); the request may be sent again.
pub fn is_unavailable(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(e)
        }
        _ => false,
    }
}

fn sqlx_unavailable(error: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_)
        | Error::Tls(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => true,
        Error::Database(e) => {
            let postgres = e
                .try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                .is_some();
            e.code().is_some_and(|code| {
                if postgres {
                    unavailable_sqlstate(&code)
                } else {
                    unavailable_sqlite(&code)
                }
            })
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs (Appendix A of its manual) that mean "not now":
/// class 08 (connection exception), 57P01–57P03 (the server shutting down,
/// crashed or starting), 53300 (too many connections).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// SQLite result codes (the primary code in the low byte of an extended
/// one) that mean "not now": 5 `SQLITE_BUSY`, 6 `SQLITE_LOCKED`.
fn unavailable_sqlite(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6))
}

/// A round trip to the database (`SELECT 1`), for readiness.
pub async fn ping(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let stmt = sea_orm::Statement::from_string(backend, "SELECT 1");
    db.query_one_raw(stmt).await.map(|_| ())
}

/// The main pool's connections now, for `/metrics`: idle, in use, and the
/// most it may open (`database.max_connections`). SQLite's writer and
/// read-only connections are apart and not counted.
pub fn pool_connections(db: &DatabaseConnection) -> crate::metrics::PoolConnections {
    let (size, idle, max) = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        _ => (0, 0, 0),
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    crate::metrics::PoolConnections {
        idle,
        in_use: size.saturating_sub(idle),
        max,
    }
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        _ => "other",
    }
}

/// Prepares the file of a `sqlite:` URL before sqlx opens it, so that other
/// local users cannot read it (it holds the password hashes): a missing
/// directory is created mode 0700, and a missing file, when the URL allows
/// creating it (`mode=rwc`), is created empty mode 0600 (an empty file is an
/// empty SQLite database). SQLite gives the `-wal` and `-shm` files it makes
/// the main file's mode. An existing directory or file keeps its mode: the
/// operator may have chosen it (a group for backups).
fn prepare_sqlite_file(url: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Ok(());
    }
    let path = std::path::Path::new(path);
    let error = |at: &std::path::Path, e: std::io::Error| StoreError::SqliteDir {
        path: at.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error(dir, e))?;
    }
    if query.split('&').any(|p| p == "mode=rwc") {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(error(path, e)),
        }
    }
    Ok(())
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_codes() {
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["5", "517", "6", "262"] {
            assert!(unavailable_sqlite(code), "{code}");
        }
        // A unique violation (PostgreSQL 23505, SQLite 2067), a syntax
        // error or a missing privilege is this request's own failure, not
        // the database's absence; 42501 read as an SQLite code would be
        // "busy".
        for code in ["23505", "42601", "42501"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
        for code in ["2067", "1", "19"] {
            assert!(!unavailable_sqlite(code), "{code}");
        }
        use sea_orm::{ConnAcquireErr, DbErr};
        assert!(is_unavailable(&DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout
        )));
        assert!(!is_unavailable(&DbErr::RecordNotFound("x".into())));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/stepgate"),
            "postgres://app:***@db:5432/stepgate"
        );
        assert_eq!(
            redact_url("sqlite://data/stepgate.db?mode=rwc"),
            "sqlite://data/stepgate.db?mode=rwc"
        );
    }
}

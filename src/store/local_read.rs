//! SQLite reads made on the request's own thread, for the lookups every
//! bearer request makes (`/introspect`, `/userinfo`) and every refresh.
//!
//! sqlx runs each SQLite connection on a worker thread of its own: a query
//! is a message to that thread and a wake-up back, two context switches and
//! a futex each way, which cost more than the indexed read itself (a
//! third of a `/userinfo` request on the profile in docs/performance.md).
//! Here the same database file is read through `rusqlite` (the SQLite that
//! sqlx bundles, same library) on the calling thread: a point read of a few
//! pages in WAL mode, which never waits for a writer.
//!
//! The answer is the database's, as on the pool: every read is its own
//! transaction and sees every commit made before it, by this process or
//! another (the CLI). The connections are read-only: nothing is written
//! here. A read that would have to wait for a lock (`SQLITE_BUSY`, such as
//! while another process holds the file exclusively) does not wait on the
//! request thread: it returns `None` and the caller reads through the
//! pool, which waits up to `database.sqlite_busy_timeout_ms` on its own
//! thread; so does a read that fails for any other reason. (SQLite's own
//! retry loop when the WAL index is being rebuilt can still sleep briefly:
//! that happens after a crash, once.)
//! PostgreSQL needs none of this: there is no reader.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::{DatabaseConnection, DbBackend};

use super::entities::access_tokens::Model as AccessToken;
use super::entities::consents::Model as Consent;
use super::entities::refresh_tokens::Model as RefreshToken;
use super::entities::users::Model as User;

/// Connections kept for reuse; more are opened when more threads read at
/// once (at most one per runtime thread), and dropped when given back
/// beyond this.
const KEEP: usize = 16;

/// A live access token's row and its user (if it has one that exists).
pub type TokenWithUser = (AccessToken, Option<User>);
/// A refresh token's row, its user and the user's consent to its client
/// (each if it still exists).
pub type RefreshWithGrant = (RefreshToken, Option<User>, Option<Consent>);

pub struct LocalReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl LocalReader {
    /// A reader of the file behind `db`'s pool; `None` for PostgreSQL and
    /// for an in-memory SQLite database (other connections cannot see it).
    pub fn for_pool(db: &DatabaseConnection) -> Option<Self> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return None;
        }
        let options = db.get_sqlite_connection_pool().connect_options();
        let in_memory = options
            .to_url_lossy()
            .query_pairs()
            .any(|(k, v)| k == "mode" && v == "memory");
        if in_memory {
            return None;
        }
        Some(Self {
            path: options.get_filename().to_owned(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `access_tokens::find_live_with_user`, read here: the token's row if
    /// it is live, with its user if it has one that still exists. `None`:
    /// not answered here (busy, or failed); ask the pool.
    pub fn live_token_with_user(&self, jti: &str, now: i64) -> Option<Option<TokenWithUser>> {
        self.read(|conn| {
            conn.prepare_cached(LIVE_TOKEN_WITH_USER)?
                .query_row((jti, now), token_and_user)
                .optional()
        })
    }

    /// `refresh_tokens::find_with_grant`, read here. `None`: not answered
    /// here; ask the pool.
    pub fn refresh_token_with_grant(&self, token_hash: &str) -> Option<Option<RefreshWithGrant>> {
        self.read(|conn| {
            conn.prepare_cached(REFRESH_WITH_GRANT)?
                .query_row([token_hash], refresh_and_grant)
                .optional()
        })
    }

    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let conn = match self.take() {
            Ok(conn) => conn,
            Err(e) => return answer(Err(e)),
        };
        let result = query(&conn);
        // A connection whose read failed is dropped, not reused.
        if result.is_ok() {
            self.give_back(conn);
        }
        answer(result)
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(conn) => Ok(conn),
            None => {
                // Read-only: this path can never write.
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // rusqlite opens with a 5 s busy timeout; a read that would
                // wait goes to the pool instead (module comment).
                conn.busy_timeout(std::time::Duration::ZERO)?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP {
            idle.push(conn);
        }
    }
}

/// The answer, or `None` ("ask the pool") when this path could not read:
/// busy or locked, but also a file that could not be opened here (out of
/// file descriptors) or any other failure. The pool's read is the
/// authoritative one; if the database is really broken it reports that.
fn answer<T>(result: rusqlite::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            let busy = matches!(
                &e,
                rusqlite::Error::SqliteFailure(f, _)
                    if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            );
            if !busy {
                tracing::debug!(error = %e, "local SQLite read failed; reading through the pool");
            }
            None
        }
    }
}

// The queries below are those sea-orm builds for the pool, by hand: the
// columns in the entities' field order (a field added to an entity fails
// to compile in the mapping functions until it is read here).

/// `access_tokens::find_live_with_user`.
const LIVE_TOKEN_WITH_USER: &str = "\
SELECT t.jti, t.client_id, t.user_id, t.scope, t.code_hash, t.issued_at, t.expires_at, \
       t.revoked_at, t.family_id, \
       u.id, u.email, u.email_normalized, u.name, u.password_hash, u.email_verified, \
       u.disabled, u.created_at, u.updated_at \
FROM access_tokens t LEFT JOIN users u ON u.id = t.user_id \
WHERE t.jti = ?1 AND t.revoked_at IS NULL AND t.expires_at > ?2";

/// `refresh_tokens::find_with_grant` (the consent relation joins on both
/// the user and the client).
const REFRESH_WITH_GRANT: &str = "\
SELECT r.token_hash, r.family_id, r.client_id, r.user_id, r.scope, r.sid, r.auth_time, \
       r.acr, r.amr, r.code_hash, r.issued_at, r.idle_expires_at, r.family_expires_at, \
       r.used_at, r.revoked_at, \
       u.id, u.email, u.email_normalized, u.name, u.password_hash, u.email_verified, \
       u.disabled, u.created_at, u.updated_at, \
       c.user_id, c.client_id, c.scope, c.granted_at \
FROM refresh_tokens r \
LEFT JOIN users u ON u.id = r.user_id \
LEFT JOIN consents c ON c.user_id = r.user_id AND c.client_id = r.client_id \
WHERE r.token_hash = ?1";

fn token_and_user(row: &Row<'_>) -> rusqlite::Result<TokenWithUser> {
    let token = AccessToken {
        jti: row.get(0)?,
        client_id: row.get(1)?,
        user_id: row.get(2)?,
        scope: row.get(3)?,
        code_hash: row.get(4)?,
        issued_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
        family_id: row.get(8)?,
    };
    Ok((token, user_at(row, 9)?))
}

fn refresh_and_grant(row: &Row<'_>) -> rusqlite::Result<RefreshWithGrant> {
    let token = RefreshToken {
        token_hash: row.get(0)?,
        family_id: row.get(1)?,
        client_id: row.get(2)?,
        user_id: row.get(3)?,
        scope: row.get(4)?,
        sid: row.get(5)?,
        auth_time: row.get(6)?,
        acr: row.get(7)?,
        amr: row.get(8)?,
        code_hash: row.get(9)?,
        issued_at: row.get(10)?,
        idle_expires_at: row.get(11)?,
        family_expires_at: row.get(12)?,
        used_at: row.get(13)?,
        revoked_at: row.get(14)?,
    };
    let user = user_at(row, 15)?;
    let consent = match row.get::<_, Option<String>>(24)? {
        None => None,
        Some(user_id) => Some(Consent {
            user_id,
            client_id: row.get(25)?,
            scope: row.get(26)?,
            granted_at: row.get(27)?,
        }),
    };
    Ok((token, user, consent))
}

/// The user whose columns start at `first` (the `users` columns in field
/// order), if the left join found one.
fn user_at(row: &Row<'_>, first: usize) -> rusqlite::Result<Option<User>> {
    let Some(id) = row.get::<_, Option<String>>(first)? else {
        return Ok(None);
    };
    Ok(Some(User {
        id,
        email: row.get(first + 1)?,
        email_normalized: row.get(first + 2)?,
        name: row.get(first + 3)?,
        password_hash: row.get(first + 4)?,
        email_verified: row.get(first + 5)?,
        disabled: row.get(first + 6)?,
        created_at: row.get(first + 7)?,
        updated_at: row.get(first + 8)?,
    }))
}

//! Queries on `rate_limits`: fixed-window counters, shared by all nodes.
//!
//! [`hit`] counts one event under a key in one conditional upsert: it
//! starts a new window when the last one has ended, and changes nothing
//! when the window is full, so of any number of requests in flight at
//! once, on any node, only `limit` are let through per window.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

/// What [`hit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Counted; `hits` events so far in this window, this one included.
    Counted { hits: u32 },
    /// The window is full; nothing was counted.
    Limited { retry_after_secs: u64 },
}

/// `?1` key, `?2` now, `?3` window seconds, `?4` limit.
const HIT_SQL: &str = "\
INSERT INTO rate_limits (key, window_start, hits) VALUES (?1, ?2, 1) \
ON CONFLICT (key) DO UPDATE SET \
  hits = CASE WHEN rate_limits.window_start <= ?2 - ?3 THEN 1 ELSE rate_limits.hits + 1 END, \
  window_start = CASE WHEN rate_limits.window_start <= ?2 - ?3 THEN ?2 ELSE rate_limits.window_start END \
WHERE rate_limits.window_start <= ?2 - ?3 OR rate_limits.hits < ?4 \
RETURNING hits";

fn sql(backend: DbBackend, text: &str) -> String {
    match backend {
        DbBackend::Postgres => text.replace('?', "$"),
        _ => text.to_owned(),
    }
}

/// Counts one event for `key` at `now` in a window of `window_secs`,
/// unless `limit` events are already counted in it.
pub async fn hit(
    db: &DatabaseConnection,
    key: &str,
    now: i64,
    window_secs: i64,
    limit: u32,
) -> Result<Hit, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        sql(backend, HIT_SQL),
        [
            Value::from(key.to_owned()),
            Value::from(now),
            Value::from(window_secs),
            Value::from(i64::from(limit)),
        ],
    );
    if let Some(row) = db.query_one_raw(statement).await? {
        let hits: i32 = row.try_get("", "hits")?;
        return Ok(Hit::Counted {
            hits: u32::try_from(hits).unwrap_or(0),
        });
    }
    let read = Statement::from_sql_and_values(
        backend,
        sql(
            backend,
            "SELECT window_start FROM rate_limits WHERE key = ?1",
        ),
        [Value::from(key.to_owned())],
    );
    let start: Option<i64> = match db.query_one_raw(read).await? {
        Some(row) => Some(row.try_get("", "window_start")?),
        None => None,
    };
    let end = start.map_or(now + 1, |s| s + window_secs);
    Ok(Hit::Limited {
        retry_after_secs: u64::try_from(end - now).unwrap_or(0).max(1),
    })
}

/// Takes back one event counted by [`hit`] (the attempt it stood for
/// succeeded, and only failures count).
pub async fn refund(db: &DatabaseConnection, key: &str) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql(
            backend,
            "UPDATE rate_limits SET hits = hits - 1 WHERE key = ?1 AND hits > 0",
        ),
        [Value::from(key.to_owned())],
    ))
    .await?;
    Ok(())
}

/// Forgets the window of `key`.
pub async fn clear(db: &DatabaseConnection, key: &str) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql(backend, "DELETE FROM rate_limits WHERE key = ?1"),
        [Value::from(key.to_owned())],
    ))
    .await?;
    Ok(())
}

/// Whether the window of `key` is full at `now`, without counting: the
/// wait when it is. For checks too cheap to be worth claiming first.
pub async fn full(
    db: &DatabaseConnection,
    key: &str,
    now: i64,
    window_secs: i64,
    limit: u32,
) -> Result<Option<u64>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let read = Statement::from_sql_and_values(
        backend,
        sql(
            backend,
            "SELECT window_start, hits FROM rate_limits WHERE key = ?1",
        ),
        [Value::from(key.to_owned())],
    );
    let Some(row) = db.query_one_raw(read).await? else {
        return Ok(None);
    };
    let start: i64 = row.try_get("", "window_start")?;
    let hits: i32 = row.try_get("", "hits")?;
    let open = start > now - window_secs;
    Ok((open && i64::from(hits) >= i64::from(limit))
        .then(|| u64::try_from(start + window_secs - now).unwrap_or(0).max(1)))
}

//! Queries on `mail_queue`, the durable outbox (`service::mail`).
//!
//! [`claim`] leases due rows in one conditional `UPDATE … RETURNING`: the
//! lease condition stands in the outer `WHERE` too, so on PostgreSQL a
//! second node that waited for the same row's lock re-checks it against
//! the new version and skips it (READ COMMITTED re-evaluation), and SQLite
//! runs writers one at a time. A row is held by one worker at a time.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

/// A row leased by [`claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    /// The intent, as `service::mail` serialized it.
    pub intent: String,
    /// Claims so far, this one included.
    pub attempts: u32,
}

fn sql(backend: DbBackend, text: &str) -> String {
    match backend {
        DbBackend::Postgres => text.replace('?', "$"),
        _ => text.to_owned(),
    }
}

fn statement(
    db: &DatabaseConnection,
    text: &str,
    values: impl IntoIterator<Item = Value>,
) -> Statement {
    let backend = db.get_database_backend();
    Statement::from_sql_and_values(backend, sql(backend, text), values)
}

/// Queues `intent` under `id`, due at once.
pub async fn enqueue(
    db: &DatabaseConnection,
    id: &str,
    intent: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    db.execute_raw(statement(
        db,
        "INSERT INTO mail_queue (id, intent, created_at, next_attempt_at, attempts, lease_until) \
         VALUES (?1, ?2, ?3, ?3, 0, NULL)",
        [
            Value::from(id.to_owned()),
            Value::from(intent.to_owned()),
            Value::from(now),
        ],
    ))
    .await?;
    Ok(())
}

/// `?1` now, `?2` lease seconds, `?3` how many.
const CLAIM_SQL: &str = "\
UPDATE mail_queue SET lease_until = ?1 + ?2, attempts = attempts + 1 \
WHERE id IN (SELECT id FROM mail_queue \
             WHERE next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) \
             ORDER BY next_attempt_at, created_at LIMIT ?3) \
  AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) \
RETURNING id, intent, attempts";

/// Leases up to `limit` due rows for `lease_secs` from `now`: rows whose
/// time has come and that no live lease holds (a lease that ran out is a
/// worker that died or hung: its row is taken over).
pub async fn claim(
    db: &DatabaseConnection,
    now: i64,
    lease_secs: i64,
    limit: u32,
) -> Result<Vec<Claimed>, sea_orm::DbErr> {
    let rows = db
        .query_all_raw(statement(
            db,
            CLAIM_SQL,
            [
                Value::from(now),
                Value::from(lease_secs),
                Value::from(i64::from(limit)),
            ],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            let attempts: i32 = row.try_get("", "attempts")?;
            Ok(Claimed {
                id: row.try_get("", "id")?,
                intent: row.try_get("", "intent")?,
                attempts: u32::try_from(attempts).unwrap_or(0),
            })
        })
        .collect()
}

/// Removes a row that was handed over (or given up on).
pub async fn finish(db: &DatabaseConnection, id: &str) -> Result<(), sea_orm::DbErr> {
    db.execute_raw(statement(
        db,
        "DELETE FROM mail_queue WHERE id = ?1",
        [Value::from(id.to_owned())],
    ))
    .await?;
    Ok(())
}

/// Releases a row's lease and makes it due again at `next_attempt_at`.
pub async fn retry_at(
    db: &DatabaseConnection,
    id: &str,
    next_attempt_at: i64,
) -> Result<(), sea_orm::DbErr> {
    db.execute_raw(statement(
        db,
        "UPDATE mail_queue SET lease_until = NULL, next_attempt_at = ?2 WHERE id = ?1",
        [Value::from(id.to_owned()), Value::from(next_attempt_at)],
    ))
    .await?;
    Ok(())
}

/// Rows in the queue (due, leased or waiting for a retry), and of them
/// those a live lease holds at `now`.
pub async fn count(db: &DatabaseConnection, now: i64) -> Result<(u64, u64), sea_orm::DbErr> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT COUNT(*) AS queued, \
                    COALESCE(SUM(CASE WHEN lease_until > ?1 THEN 1 ELSE 0 END), 0) AS leased \
             FROM mail_queue",
            [Value::from(now)],
        ))
        .await?;
    let Some(row) = row else {
        return Ok((0, 0));
    };
    let queued: i64 = row.try_get("", "queued")?;
    let leased: i64 = row.try_get("", "leased")?;
    Ok((
        u64::try_from(queued).unwrap_or(0),
        u64::try_from(leased).unwrap_or(0),
    ))
}

//! Queries on `login_throttle`: consecutive failed attempts per key (an
//! HMAC of an email for passwords, `otp:USER` for second factors), shared by
//! all nodes through the database.
//!
//! The contract: [`claim`] is the only way to start a verification. It
//! counts the attempt as a failure and sets the lock that failure would earn,
//! in one conditional statement that changes nothing while a lock holds. Of
//! any number of attempts in flight at once, on any node, only as many as the
//! policy allows find the row unlocked. A verification that succeeds calls
//! [`clear`], which ends the run.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Statement, Value};

use super::entities::login_throttle::{Entity as LoginThrottle, Model};
use crate::auth::throttle::ThrottlePolicy;

pub async fn get(db: &DatabaseConnection, key: &str) -> Result<Option<Model>, sea_orm::DbErr> {
    LoginThrottle::find_by_id(key.to_owned()).one(db).await
}

/// What [`claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The attempt may be verified. It is already counted: `failures` is the
    /// run including it, and `lock_secs` the lock that began with it, if any
    /// (it stands unless the attempt succeeds).
    Open {
        failures: u32,
        lock_secs: Option<u64>,
    },
    /// A lock holds; nothing was counted.
    Locked { retry_after_secs: u64 },
}

/// The upsert behind [`claim`]. `?1` key, `?2` now, `?3` the lock of a first
/// failure, `?4..?7` the [`crate::auth::throttle::LockSchedule`]. SQLite
/// (3.35+) and PostgreSQL both take `ON CONFLICT … DO UPDATE … WHERE` with
/// `RETURNING`, and return no row when the `WHERE` refuses the update.
/// PostgreSQL shifts a `bigint` only by an `integer`, hence the `CAST`.
const CLAIM_SQL: &str = "\
INSERT INTO login_throttle (email_key, failures, last_failure_at, locked_until) \
VALUES (?1, 1, ?2, ?3) \
ON CONFLICT (email_key) DO UPDATE SET \
  failures = login_throttle.failures + 1, \
  last_failure_at = ?2, \
  locked_until = CASE \
    WHEN login_throttle.failures + 1 < ?4 THEN NULL \
    WHEN login_throttle.failures + 1 >= ?5 THEN ?2 + ?6 \
    ELSE ?2 + (?7 << CAST(login_throttle.failures + 1 - ?4 AS INTEGER)) END \
WHERE login_throttle.locked_until IS NULL OR login_throttle.locked_until <= ?2 \
RETURNING failures, locked_until";

fn claim_statement(backend: DbBackend, key: &str, now: i64, policy: &ThrottlePolicy) -> Statement {
    let schedule = policy.schedule();
    let sql = match backend {
        DbBackend::Postgres => CLAIM_SQL.replace('?', "$"),
        _ => CLAIM_SQL.to_owned(),
    };
    let first_lock = schedule.delay_after(1).map(|d| now + d);
    Statement::from_sql_and_values(
        backend,
        sql,
        [
            Value::from(key.to_owned()),
            Value::from(now),
            Value::BigInt(first_lock),
            Value::from(schedule.free),
            Value::from(schedule.capped_from),
            Value::from(schedule.max),
            Value::from(schedule.base),
        ],
    )
}

/// Claims one attempt for `key` at `now`: counted before it is verified, so
/// the limit holds however many attempts arrive at once (see the module).
pub async fn claim(
    db: &DatabaseConnection,
    key: &str,
    now: i64,
    policy: &ThrottlePolicy,
) -> Result<Claimed, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    // A refusal is read back for its `Retry-After`; when the lock has ended
    // or the run was cleared in between, the claim is tried again.
    for _ in 0..3 {
        if let Some(row) = db
            .query_one_raw(claim_statement(backend, key, now, policy))
            .await?
        {
            let failures: i32 = row.try_get("", "failures")?;
            let locked_until: Option<i64> = row.try_get("", "locked_until")?;
            return Ok(Claimed::Open {
                failures: u32::try_from(failures).unwrap_or(0),
                lock_secs: locked_until
                    .filter(|until| *until > now)
                    .map(|until| (until - now) as u64),
            });
        }
        if let Some(until) = get(db, key).await?.and_then(|r| r.locked_until)
            && until > now
        {
            return Ok(Claimed::Locked {
                retry_after_secs: (until - now) as u64,
            });
        }
    }
    // Three races lost in a row: refuse rather than verify uncounted.
    Ok(Claimed::Locked {
        retry_after_secs: 1,
    })
}

/// A success ends the run of failures (and any lock it had earned).
pub async fn clear(db: &DatabaseConnection, key: &str) -> Result<(), sea_orm::DbErr> {
    LoginThrottle::delete_by_id(key.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}

/// Ends every run whose key starts with `prefix` (one email from every
/// address). A range, not `LIKE`: the keys hold `_`, a `LIKE` wildcard.
/// The address part after the prefix is digits, `.`, `:`, `/`, hex or
/// `unknown`, all below `~`.
pub async fn clear_prefix(db: &DatabaseConnection, prefix: &str) -> Result<(), sea_orm::DbErr> {
    use super::entities::login_throttle::Column;
    use sea_orm::{ColumnTrait, QueryFilter};
    LoginThrottle::delete_many()
        .filter(Column::EmailKey.gte(prefix.to_owned()))
        .filter(Column::EmailKey.lt(format!("{prefix}~")))
        .exec(db)
        .await
        .map(|_| ())
}

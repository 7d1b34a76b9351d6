//! Queries on `login_throttle`: consecutive failed sign-ins per email key,
//! shared by all nodes through the database.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::entities::login_throttle::{self, Entity as LoginThrottle, Model};
use crate::auth::throttle::ThrottlePolicy;

pub async fn get(db: &DatabaseConnection, key: &str) -> Result<Option<Model>, sea_orm::DbErr> {
    LoginThrottle::find_by_id(key.to_owned()).one(db).await
}

/// Counts one more failure with an atomic upsert (`failures = failures + 1`
/// in the database, never read-then-write), and returns the new count.
pub async fn record_failure(
    db: &DatabaseConnection,
    key: &str,
    now: i64,
) -> Result<u32, sea_orm::DbErr> {
    LoginThrottle::insert(login_throttle::ActiveModel {
        email_key: Set(key.to_owned()),
        failures: Set(1),
        last_failure_at: Set(now),
        locked_until: Set(None),
    })
    .on_conflict(
        OnConflict::column(login_throttle::Column::EmailKey)
            .value(
                login_throttle::Column::Failures,
                Expr::col((login_throttle::Entity, login_throttle::Column::Failures)).add(1),
            )
            .value(login_throttle::Column::LastFailureAt, Expr::value(now))
            .to_owned(),
    )
    .exec(db)
    .await?;
    let row = get(db, key).await?;
    Ok(row.map_or(1, |r| u32::try_from(r.failures).unwrap_or(0)))
}

/// Locks sign-in for the key until `until` (never shortens a longer lock).
pub async fn lock_until(
    db: &DatabaseConnection,
    key: &str,
    until: i64,
) -> Result<(), sea_orm::DbErr> {
    LoginThrottle::update_many()
        .col_expr(login_throttle::Column::LockedUntil, Expr::value(until))
        .filter(login_throttle::Column::EmailKey.eq(key))
        .filter(
            login_throttle::Column::LockedUntil
                .is_null()
                .or(login_throttle::Column::LockedUntil.lt(until)),
        )
        .exec(db)
        .await
        .map(|_| ())
}

/// A successful sign-in ends the run of failures.
pub async fn clear(db: &DatabaseConnection, key: &str) -> Result<(), sea_orm::DbErr> {
    LoginThrottle::delete_by_id(key.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}

/// Seconds until `key` may try again, when it is locked at `now`.
pub async fn locked_for(
    db: &DatabaseConnection,
    key: &str,
    now: i64,
) -> Result<Option<u64>, sea_orm::DbErr> {
    Ok(get(db, key)
        .await?
        .and_then(|row| row.locked_until)
        .filter(|until| *until > now)
        .map(|until| (until - now) as u64))
}

/// Counts one more failure for `key` and, once `policy` says so, locks it.
/// Returns the consecutive failures and the lock's length when one began.
pub async fn fail(
    db: &DatabaseConnection,
    key: &str,
    now: i64,
    policy: &ThrottlePolicy,
) -> Result<(u32, Option<u64>), sea_orm::DbErr> {
    let failures = record_failure(db, key, now).await?;
    let delay = policy.delay_after(failures);
    if let Some(delay) = delay {
        lock_until(db, key, now + delay as i64).await?;
    }
    Ok((failures, delay))
}

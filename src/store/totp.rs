//! Queries on `totp_credentials` (one per user, activated) and
//! `totp_enrollments` (a pending secret per session that started an
//! activation, expiring).

use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};

use super::entities::totp_credentials::{self, Entity as Credentials, Model as Credential};
use super::entities::totp_enrollments::{self, Entity as Enrollments, Model as Enrollment};
use crate::auth::totp::{TotpAlgorithm, TotpParams};

/// The parameters a credential was activated with; `skew` comes from the
/// current configuration. `None` if the stored values are not valid.
pub fn params_of(credential: &Credential, skew: u16) -> Option<TotpParams> {
    parse_params(
        &credential.algorithm,
        credential.digits,
        credential.period_secs,
        skew,
    )
}

/// The parameters of a pending secret, as [`params_of`].
pub fn enrollment_params(enrollment: &Enrollment, skew: u16) -> Option<TotpParams> {
    parse_params(
        &enrollment.algorithm,
        enrollment.digits,
        enrollment.period_secs,
        skew,
    )
}

fn parse_params(algorithm: &str, digits: i32, period_secs: i64, skew: u16) -> Option<TotpParams> {
    let algorithm = match algorithm {
        "SHA1" => TotpAlgorithm::SHA1,
        "SHA256" => TotpAlgorithm::SHA256,
        "SHA512" => TotpAlgorithm::SHA512,
        _ => return None,
    };
    Some(TotpParams {
        algorithm,
        digits: u8::try_from(digits).ok().filter(|d| (6..=8).contains(d))?,
        period_secs: u64::try_from(period_secs).ok().filter(|p| *p > 0)?,
        skew,
    })
}

pub async fn get(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Option<Credential>, sea_orm::DbErr> {
    Credentials::find_by_id(user_id.to_owned()).one(db).await
}

pub async fn is_enabled(db: &DatabaseConnection, user_id: &str) -> Result<bool, sea_orm::DbErr> {
    Ok(get(db, user_id).await?.is_some_and(|c| c.enabled))
}

/// Accepts time-step `step` for the user: one conditional UPDATE that
/// succeeds only if `step` is later than every step accepted before, so a
/// code (or an older one) is accepted once even when nodes race.
pub async fn accept_step(
    db: &DatabaseConnection,
    user_id: &str,
    step: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = Credentials::update_many()
        .col_expr(totp_credentials::Column::LastStep, Expr::value(step))
        .filter(totp_credentials::Column::UserId.eq(user_id))
        .filter(totp_credentials::Column::Enabled.eq(true))
        .filter(totp_credentials::Column::LastStep.lt(step))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn delete(db: &DatabaseConnection, user_id: &str) -> Result<bool, sea_orm::DbErr> {
    let result = Credentials::delete_by_id(user_id.to_owned())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A new pending secret for the session `session_key`, replacing the one it
/// had: every start of an activation gets a fresh secret.
pub struct NewEnrollment<'a> {
    pub session_key: &'a str,
    pub user_id: &'a str,
    pub secret_sealed: &'a str,
    pub params: &'a TotpParams,
    pub now: i64,
    pub expires_at: i64,
}

pub async fn put_enrollment(
    db: &DatabaseConnection,
    new: NewEnrollment<'_>,
) -> Result<(), sea_orm::DbErr> {
    Enrollments::insert(totp_enrollments::ActiveModel {
        session_key: Set(new.session_key.to_owned()),
        user_id: Set(new.user_id.to_owned()),
        secret_sealed: Set(new.secret_sealed.to_owned()),
        algorithm: Set(new.params.algorithm.name().to_owned()),
        digits: Set(i32::from(new.params.digits)),
        period_secs: Set(new.params.period_secs as i64),
        created_at: Set(new.now),
        expires_at: Set(new.expires_at),
    })
    .on_conflict(
        OnConflict::column(totp_enrollments::Column::SessionKey)
            .update_columns([
                totp_enrollments::Column::UserId,
                totp_enrollments::Column::SecretSealed,
                totp_enrollments::Column::Algorithm,
                totp_enrollments::Column::Digits,
                totp_enrollments::Column::PeriodSecs,
                totp_enrollments::Column::CreatedAt,
                totp_enrollments::Column::ExpiresAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

/// The session's pending secret for `user_id`, unless it has expired.
pub async fn live_enrollment(
    db: &DatabaseConnection,
    session_key: &str,
    user_id: &str,
    now: i64,
) -> Result<Option<Enrollment>, sea_orm::DbErr> {
    Enrollments::find_by_id(session_key.to_owned())
        .filter(totp_enrollments::Column::UserId.eq(user_id))
        .filter(totp_enrollments::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

/// Turns the session's pending secret into the user's credential, once: in
/// one transaction the enrollment is deleted (only while it is live; of two
/// racing requests one deletes it) and the credential inserted with `step`
/// already used (never over an existing credential). `false` when the
/// enrollment was gone or the user already has a credential.
pub async fn activate_enrollment(
    db: &DatabaseConnection,
    enrollment: &Enrollment,
    step: i64,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let txn = db.begin().await?;
    let taken = Enrollments::delete_many()
        .filter(totp_enrollments::Column::SessionKey.eq(&enrollment.session_key))
        .filter(totp_enrollments::Column::UserId.eq(&enrollment.user_id))
        .filter(totp_enrollments::Column::SecretSealed.eq(&enrollment.secret_sealed))
        .filter(totp_enrollments::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !taken {
        txn.rollback().await?;
        return Ok(false);
    }
    let inserted = Credentials::insert(totp_credentials::ActiveModel {
        user_id: Set(enrollment.user_id.clone()),
        secret_sealed: Set(enrollment.secret_sealed.clone()),
        algorithm: Set(enrollment.algorithm.clone()),
        digits: Set(enrollment.digits),
        period_secs: Set(enrollment.period_secs),
        enabled: Set(true),
        created_at: Set(enrollment.created_at),
        enabled_at: Set(Some(now)),
        last_step: Set(step),
    })
    .on_conflict(
        OnConflict::column(totp_credentials::Column::UserId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await;
    match inserted {
        Ok(n) if n > 0 => {
            txn.commit().await?;
            Ok(true)
        }
        // The user already has a credential (activated in another session).
        Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => {
            txn.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Forgets the pending secret of one session (sign-out).
pub async fn delete_enrollment(
    db: &DatabaseConnection,
    session_key: &str,
) -> Result<(), sea_orm::DbErr> {
    Enrollments::delete_by_id(session_key.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}

/// Forgets every pending secret of a user (password reset, 2FA reset).
pub async fn delete_enrollments_for_user(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<u64, sea_orm::DbErr> {
    Enrollments::delete_many()
        .filter(totp_enrollments::Column::UserId.eq(user_id))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// Rows whose `secret_sealed` does not start with `prefix`: what a
/// master-key rotation has left to re-seal (`substr` keeps `_` and `%` in
/// a key id from acting as `LIKE` wildcards).
fn not_prefixed<C: sea_orm::ColumnTrait>(column: C, prefix: &str) -> Expr {
    let length = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
    Expr::expr(
        Func::cust("substr")
            .arg(Expr::col(column))
            .arg(1i32)
            .arg(length),
    )
    .ne(prefix)
}

/// Up to `limit` credentials not sealed in the form `prefix` begins.
pub async fn credentials_not_under(
    db: &DatabaseConnection,
    prefix: &str,
    limit: u64,
) -> Result<Vec<Credential>, sea_orm::DbErr> {
    Credentials::find()
        .filter(not_prefixed(totp_credentials::Column::SecretSealed, prefix))
        .order_by_asc(totp_credentials::Column::UserId)
        .limit(limit)
        .all(db)
        .await
}

pub async fn count_credentials_not_under(
    db: &DatabaseConnection,
    prefix: &str,
) -> Result<u64, sea_orm::DbErr> {
    Credentials::find()
        .filter(not_prefixed(totp_credentials::Column::SecretSealed, prefix))
        .count(db)
        .await
}

/// Up to `limit` pending secrets not sealed in the form `prefix` begins.
pub async fn enrollments_not_under(
    db: &DatabaseConnection,
    prefix: &str,
    limit: u64,
) -> Result<Vec<Enrollment>, sea_orm::DbErr> {
    Enrollments::find()
        .filter(not_prefixed(totp_enrollments::Column::SecretSealed, prefix))
        .order_by_asc(totp_enrollments::Column::SessionKey)
        .limit(limit)
        .all(db)
        .await
}

pub async fn count_enrollments_not_under(
    db: &DatabaseConnection,
    prefix: &str,
) -> Result<u64, sea_orm::DbErr> {
    Enrollments::find()
        .filter(not_prefixed(totp_enrollments::Column::SecretSealed, prefix))
        .count(db)
        .await
}

/// Replaces a credential's sealed secret, only if it still holds `old`:
/// a concurrent rotation, re-activation or removal wins, and nothing is
/// sealed twice. `false` when it did not.
pub async fn reseal_credential(
    db: &DatabaseConnection,
    user_id: &str,
    old: &str,
    new: &str,
) -> Result<bool, sea_orm::DbErr> {
    let result = Credentials::update_many()
        .col_expr(totp_credentials::Column::SecretSealed, Expr::value(new))
        .filter(totp_credentials::Column::UserId.eq(user_id))
        .filter(totp_credentials::Column::SecretSealed.eq(old))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// As [`reseal_credential`], for a pending secret.
pub async fn reseal_enrollment(
    db: &DatabaseConnection,
    session_key: &str,
    old: &str,
    new: &str,
) -> Result<bool, sea_orm::DbErr> {
    let result = Enrollments::update_many()
        .col_expr(totp_enrollments::Column::SecretSealed, Expr::value(new))
        .filter(totp_enrollments::Column::SessionKey.eq(session_key))
        .filter(totp_enrollments::Column::SecretSealed.eq(old))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

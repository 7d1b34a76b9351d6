//! Queries on `totp_credentials`: one per user, pending until activated.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::entities::totp_credentials::{self, Entity as Credentials, Model as Credential};
use crate::auth::totp::{TotpAlgorithm, TotpParams};

/// The parameters a credential was activated with; `skew` comes from the
/// current configuration. `None` if the stored values are not valid.
pub fn params_of(credential: &Credential, skew: u16) -> Option<TotpParams> {
    let algorithm = match credential.algorithm.as_str() {
        "SHA1" => TotpAlgorithm::SHA1,
        "SHA256" => TotpAlgorithm::SHA256,
        "SHA512" => TotpAlgorithm::SHA512,
        _ => return None,
    };
    Some(TotpParams {
        algorithm,
        digits: u8::try_from(credential.digits)
            .ok()
            .filter(|d| (6..=8).contains(d))?,
        period_secs: u64::try_from(credential.period_secs)
            .ok()
            .filter(|p| *p > 0)?,
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

/// Stores a pending secret, replacing an older pending one but never an
/// enabled credential (the conflict update is guarded by `enabled = false`).
pub async fn put_pending(
    db: &DatabaseConnection,
    user_id: &str,
    secret_sealed: &str,
    params: &TotpParams,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    let result = Credentials::insert(totp_credentials::ActiveModel {
        user_id: Set(user_id.to_owned()),
        secret_sealed: Set(secret_sealed.to_owned()),
        algorithm: Set(params.algorithm.name().to_owned()),
        digits: Set(i32::from(params.digits)),
        period_secs: Set(params.period_secs as i64),
        enabled: Set(false),
        created_at: Set(now),
        enabled_at: Set(None),
        last_step: Set(-1),
    })
    .on_conflict(
        OnConflict::column(totp_credentials::Column::UserId)
            .update_columns([
                totp_credentials::Column::SecretSealed,
                totp_credentials::Column::Algorithm,
                totp_credentials::Column::Digits,
                totp_credentials::Column::PeriodSecs,
                totp_credentials::Column::CreatedAt,
                totp_credentials::Column::LastStep,
            ])
            .action_and_where(ExprTrait::eq(
                Expr::col((Credentials, totp_credentials::Column::Enabled)),
                false,
            ))
            .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match result {
        Ok(_) => Ok(()),
        // The guarded update matched nothing: an enabled credential stays.
        Err(sea_orm::DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Accepts time-step `step` for the user: one conditional UPDATE that
/// succeeds only if `step` is later than every step accepted before, so a
/// code (or an older one) is accepted once even when nodes race. `enabled`
/// names the state the credential must be in (pending for activation).
pub async fn accept_step(
    db: &DatabaseConnection,
    user_id: &str,
    step: i64,
    enabled: bool,
) -> Result<bool, sea_orm::DbErr> {
    let result = Credentials::update_many()
        .col_expr(totp_credentials::Column::LastStep, Expr::value(step))
        .filter(totp_credentials::Column::UserId.eq(user_id))
        .filter(totp_credentials::Column::Enabled.eq(enabled))
        .filter(totp_credentials::Column::LastStep.lt(step))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Turns a pending credential on (once).
pub async fn enable(
    db: &DatabaseConnection,
    user_id: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = Credentials::update_many()
        .col_expr(totp_credentials::Column::Enabled, Expr::value(true))
        .col_expr(totp_credentials::Column::EnabledAt, Expr::value(now))
        .filter(totp_credentials::Column::UserId.eq(user_id))
        .filter(totp_credentials::Column::Enabled.eq(false))
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

//! Queries on `sessions`. The id is stored as its SHA-256; callers pass the hash.

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, sea_query::Expr};

use super::entities::sessions::{self, Entity as Sessions, Model as Session};
use crate::auth::factor::Factors;

pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub user_id: &'a str,
    pub now: i64,
    pub expires_at: i64,
    pub pwd_at: i64,
    pub factors: Factors,
    /// When the latest second factor was passed.
    pub mfa_at: Option<i64>,
    /// The public session id for the `sid` claim.
    pub sid: &'a str,
}

pub async fn create(db: &DatabaseConnection, new: NewSession<'_>) -> Result<(), sea_orm::DbErr> {
    // Without RETURNING/re-read: nothing is needed back (one round trip).
    Sessions::insert(sessions::ActiveModel {
        id_hash: Set(new.id_hash.to_owned()),
        user_id: Set(new.user_id.to_owned()),
        created_at: Set(new.now),
        last_seen_at: Set(new.now),
        expires_at: Set(new.expires_at),
        pwd_at: Set(new.pwd_at),
        factors: Set(new.factors.to_names()),
        mfa_at: Set(new.mfa_at),
        sid: Set(Some(new.sid.to_owned())),
    })
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

/// The session, if it exists and has neither passed its absolute expiry nor
/// been idle since `idle_cutoff`.
pub async fn find_live(
    db: &DatabaseConnection,
    id_hash: &str,
    now: i64,
    idle_cutoff: i64,
) -> Result<Option<Session>, sea_orm::DbErr> {
    Sessions::find_by_id(id_hash.to_owned())
        .filter(sessions::Column::ExpiresAt.gt(now))
        .filter(sessions::Column::LastSeenAt.gt(idle_cutoff))
        .one(db)
        .await
}

/// The session row, live or not.
pub async fn find(
    db: &DatabaseConnection,
    id_hash: &str,
) -> Result<Option<Session>, sea_orm::DbErr> {
    Sessions::find_by_id(id_hash.to_owned()).one(db).await
}

/// The password was proved again on this session (re-authentication).
pub async fn set_pwd_at(
    db: &DatabaseConnection,
    id_hash: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    Sessions::update_many()
        .col_expr(sessions::Column::PwdAt, Expr::value(now))
        .filter(sessions::Column::IdHash.eq(id_hash))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn touch(db: &DatabaseConnection, id_hash: &str, now: i64) -> Result<(), sea_orm::DbErr> {
    Sessions::update_many()
        .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
        .filter(sessions::Column::IdHash.eq(id_hash))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn delete(db: &DatabaseConnection, id_hash: &str) -> Result<(), sea_orm::DbErr> {
    Sessions::delete_by_id(id_hash.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}

/// Ends every session of a user (password reset, account disabled).
pub async fn delete_for_user(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<u64, sea_orm::DbErr> {
    Sessions::delete_many()
        .filter(sessions::Column::UserId.eq(user_id))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

//! Queries on `recovery_codes`: stored as SHA-256 hashes, used once.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set,
    TransactionTrait,
};

use super::entities::recovery_codes::{self, Entity as RecoveryCodes};

/// Replaces all of a user's codes with `hashes`, in one transaction.
pub async fn replace_all(
    db: &DatabaseConnection,
    user_id: &str,
    hashes: &[String],
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin().await?;
    RecoveryCodes::delete_many()
        .filter(recovery_codes::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    RecoveryCodes::insert_many(hashes.iter().map(|hash| recovery_codes::ActiveModel {
        code_hash: Set(hash.clone()),
        user_id: Set(user_id.to_owned()),
        created_at: Set(now),
        used_at: Set(None),
    }))
    .exec(&txn)
    .await?;
    txn.commit().await
}

/// Uses a code: one conditional UPDATE, so of two concurrent uses one wins.
pub async fn consume(
    db: &DatabaseConnection,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = RecoveryCodes::update_many()
        .col_expr(recovery_codes::Column::UsedAt, Expr::value(now))
        .filter(recovery_codes::Column::CodeHash.eq(hash))
        .filter(recovery_codes::Column::UserId.eq(user_id))
        .filter(recovery_codes::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn count_unused(db: &DatabaseConnection, user_id: &str) -> Result<u64, sea_orm::DbErr> {
    RecoveryCodes::find()
        .filter(recovery_codes::Column::UserId.eq(user_id))
        .filter(recovery_codes::Column::UsedAt.is_null())
        .count(db)
        .await
}

pub async fn delete_all(db: &DatabaseConnection, user_id: &str) -> Result<(), sea_orm::DbErr> {
    RecoveryCodes::delete_many()
        .filter(recovery_codes::Column::UserId.eq(user_id))
        .exec(db)
        .await
        .map(|_| ())
}

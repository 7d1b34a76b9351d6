//! Queries on `signing_keys`. Every change is one conditional statement, so
//! two nodes (or two operators) acting at once cannot both win, and every
//! node sees the result at its next read. The lifecycle rules themselves are
//! pure (`protocol::signing_keys`); these only record times.

use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::entities::signing_keys::{self, Entity as SigningKeys, Model as SigningKeyRow};

/// Every key, oldest activation first.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<SigningKeyRow>, sea_orm::DbErr> {
    SigningKeys::find()
        .order_by_asc(signing_keys::Column::ActivatesAt)
        .order_by_asc(signing_keys::Column::Kid)
        .all(db)
        .await
}

/// Inserts a key unless its kid is there already (`false` then): importing
/// the same key file on two nodes at once leaves one row.
pub async fn insert_if_absent(
    db: &DatabaseConnection,
    row: SigningKeyRow,
) -> Result<bool, sea_orm::DbErr> {
    let inserted = SigningKeys::insert(signing_keys::ActiveModel {
        kid: Set(row.kid),
        alg: Set(row.alg),
        private_key_sealed: Set(row.private_key_sealed),
        master_key_id: Set(row.master_key_id),
        created_at: Set(row.created_at),
        activates_at: Set(row.activates_at),
        retired_at: Set(row.retired_at),
        revoked_at: Set(row.revoked_at),
    })
    .on_conflict(
        OnConflict::column(signing_keys::Column::Kid)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match inserted {
        Ok(n) => Ok(n > 0),
        Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What `retire` writes, decided by `protocol::signing_keys::plan_retire`.
#[derive(Debug, Clone)]
pub struct Retirement<'a> {
    pub kid: &'a str,
    pub at: i64,
    /// Leave the JWKS at `at` too (a compromised key).
    pub revoke: bool,
    /// A key that must start signing at `at`, because the one retired was
    /// the active key.
    pub bring_forward: Option<&'a str>,
}

/// Records a retirement in one transaction: the key's `retired_at` (kept if
/// it was set already: the first retirement is when it stopped),
/// `revoked_at` with `revoke`, and the successor's earlier activation.
/// `false` when the kid is not there.
pub async fn retire(db: &DatabaseConnection, r: Retirement<'_>) -> Result<bool, sea_orm::DbErr> {
    let txn = db.begin().await?;
    let found = SigningKeys::update_many()
        .col_expr(
            signing_keys::Column::RetiredAt,
            Expr::from(Func::coalesce([
                Expr::col(signing_keys::Column::RetiredAt),
                Expr::val(r.at),
            ])),
        )
        .filter(signing_keys::Column::Kid.eq(r.kid))
        .exec(&txn)
        .await?
        .rows_affected
        > 0;
    if !found {
        txn.rollback().await?;
        return Ok(false);
    }
    if r.revoke {
        SigningKeys::update_many()
            .col_expr(signing_keys::Column::RevokedAt, Expr::value(r.at))
            .filter(signing_keys::Column::Kid.eq(r.kid))
            .filter(signing_keys::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
    }
    if let Some(next) = r.bring_forward {
        SigningKeys::update_many()
            .col_expr(signing_keys::Column::ActivatesAt, Expr::value(r.at))
            .filter(signing_keys::Column::Kid.eq(next))
            .filter(signing_keys::Column::ActivatesAt.gt(r.at))
            .filter(signing_keys::Column::RetiredAt.is_null())
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Up to `limit` keys sealed under another master key than `master_key_id`:
/// what a master-key rotation has left to re-seal.
pub async fn not_under(
    db: &DatabaseConnection,
    master_key_id: &str,
    limit: u64,
) -> Result<Vec<SigningKeyRow>, sea_orm::DbErr> {
    SigningKeys::find()
        .filter(signing_keys::Column::MasterKeyId.ne(master_key_id))
        .order_by_asc(signing_keys::Column::Kid)
        .limit(limit)
        .all(db)
        .await
}

pub async fn count_not_under(
    db: &DatabaseConnection,
    master_key_id: &str,
) -> Result<u64, sea_orm::DbErr> {
    SigningKeys::find()
        .filter(signing_keys::Column::MasterKeyId.ne(master_key_id))
        .count(db)
        .await
}

/// A key sealed again under another master key.
#[derive(Debug, Clone)]
pub struct Reseal<'a> {
    pub kid: &'a str,
    pub old_master_key_id: &'a str,
    pub old_sealed: &'a str,
    pub master_key_id: &'a str,
    pub sealed: &'a str,
}

/// Replaces a key's sealed form, only if the row still holds the old one
/// (a concurrent rotation wins, and nothing is sealed twice). `false` when
/// it did not.
pub async fn reseal(db: &DatabaseConnection, r: Reseal<'_>) -> Result<bool, sea_orm::DbErr> {
    let result = SigningKeys::update_many()
        .col_expr(
            signing_keys::Column::PrivateKeySealed,
            Expr::value(r.sealed),
        )
        .col_expr(
            signing_keys::Column::MasterKeyId,
            Expr::value(r.master_key_id),
        )
        .filter(signing_keys::Column::Kid.eq(r.kid))
        .filter(signing_keys::Column::MasterKeyId.eq(r.old_master_key_id))
        .filter(signing_keys::Column::PrivateKeySealed.eq(r.old_sealed))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

//! Queries on `signing_keys`. Every change is one conditional statement, so
//! two nodes (or two operators) acting at once cannot both win, and every
//! node sees the result at its next read. The lifecycle rules themselves are
//! pure (`protocol::signing_keys`); these only record times.

use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
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

/// Records a retirement in one transaction, decided inside it: the rows
/// are read under a lock that every retirement takes (PostgreSQL: a
/// transaction advisory lock; SQLite: the write lock, taken first), `plan`
/// picks the successor from them (`Some`: a key that must start signing at
/// `at`, because the one retired is the active key), then the key's
/// `retired_at` (kept if it was set already: the first retirement is when
/// it stopped), `revoked_at` with `revoke`, and the successor's earlier
/// activation are written. Two retirements at once are thus decided one
/// after the other, each on what the other left, so they cannot together
/// leave no key that signs. `Ok(Ok(false))` when the kid is not there;
/// `Ok(Err(_))` when `plan` refused, and nothing was written.
pub async fn retire<R>(
    db: &DatabaseConnection,
    kid: &str,
    at: i64,
    revoke: bool,
    plan: impl FnOnce(&[SigningKeyRow]) -> Result<Option<String>, R>,
) -> Result<Result<bool, R>, sea_orm::DbErr> {
    let txn = db.begin().await?;
    let backend = db.get_database_backend();
    let lock = match backend {
        DbBackend::Postgres => format!("SELECT pg_advisory_xact_lock({RETIRE_LOCK})"),
        // A write first: SQLite's deferred transaction then holds the write
        // lock before it reads.
        _ => "UPDATE signing_keys SET kid = kid WHERE 1 = 0".to_owned(),
    };
    txn.execute_raw(Statement::from_string(backend, lock))
        .await?;
    let rows = all(&txn).await?;
    if !rows.iter().any(|r| r.kid == kid) {
        txn.rollback().await?;
        return Ok(Ok(false));
    }
    let bring_forward = match plan(&rows) {
        Ok(next) => next,
        Err(refused) => {
            txn.rollback().await?;
            return Ok(Err(refused));
        }
    };
    SigningKeys::update_many()
        .col_expr(
            signing_keys::Column::RetiredAt,
            Expr::from(Func::coalesce([
                Expr::col(signing_keys::Column::RetiredAt),
                Expr::val(at),
            ])),
        )
        .filter(signing_keys::Column::Kid.eq(kid))
        .exec(&txn)
        .await?;
    if revoke {
        SigningKeys::update_many()
            .col_expr(signing_keys::Column::RevokedAt, Expr::value(at))
            .filter(signing_keys::Column::Kid.eq(kid))
            .filter(signing_keys::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
    }
    if let Some(next) = bring_forward {
        let moved = SigningKeys::update_many()
            .col_expr(signing_keys::Column::ActivatesAt, Expr::value(at))
            .filter(signing_keys::Column::Kid.eq(next.as_str()))
            .filter(signing_keys::Column::ActivatesAt.gt(at))
            .filter(signing_keys::Column::RetiredAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if moved != 1 {
            txn.rollback().await?;
            return Err(sea_orm::DbErr::Custom(format!(
                "the successor {next} changed during the retirement; nothing was written, run it again"
            )));
        }
    }
    txn.commit().await?;
    Ok(Ok(true))
}

/// The advisory lock key every retirement takes on PostgreSQL.
const RETIRE_LOCK: i64 = 0x0073_6B65_7973_7265;

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

//! Queries on `authorization_codes`: stored hashed, redeemed once.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryTrait, Set};

use super::append::Claim;

use super::entities::authorization_codes::{self, Entity as Codes, Model as Code};

pub async fn create(db: &DatabaseConnection, code: Code) -> Result<(), sea_orm::DbErr> {
    // Without RETURNING/re-read: nothing is needed back (one round trip).
    Codes::insert(authorization_codes::ActiveModel {
        code_hash: Set(code.code_hash),
        client_id: Set(code.client_id),
        user_id: Set(code.user_id),
        redirect_uri: Set(code.redirect_uri),
        code_challenge: Set(code.code_challenge),
        nonce: Set(code.nonce),
        scope: Set(code.scope),
        sid: Set(code.sid),
        auth_time: Set(code.auth_time),
        acr: Set(code.acr),
        amr: Set(code.amr),
        created_at: Set(code.created_at),
        expires_at: Set(code.expires_at),
        used_at: Set(code.used_at),
    })
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

pub async fn find(
    db: &DatabaseConnection,
    code_hash: &str,
) -> Result<Option<Code>, sea_orm::DbErr> {
    Codes::find_by_id(code_hash.to_owned()).one(db).await
}

/// Redeems a code, committed with the tokens it buys (`append`): one
/// conditional UPDATE (unused and unexpired), so of two concurrent
/// redemptions on any nodes exactly one succeeds.
pub fn redemption(code_hash: &str, now: i64) -> Claim {
    Claim(
        Codes::update_many()
            .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
            .filter(authorization_codes::Column::CodeHash.eq(code_hash))
            .filter(authorization_codes::Column::UsedAt.is_null())
            .filter(authorization_codes::Column::ExpiresAt.gt(now))
            .into_query(),
    )
}

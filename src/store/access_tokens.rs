//! Queries on `access_tokens`: a row per issued JWT access token, so that
//! revocation reaches tokens that are otherwise self-contained.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::Store;
use super::append::Row;
use super::entities::access_tokens::{self, Entity as AccessTokens};
use super::entities::users::Entity as Users;
use super::local_read::TokenWithUser;

pub struct NewAccessToken<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    pub user_id: Option<&'a str>,
    pub scope: &'a str,
    pub code_hash: Option<&'a str>,
    pub issued_at: i64,
    pub expires_at: i64,
    /// The refresh family it was bought with, if any.
    pub family_id: Option<&'a str>,
}

/// The row to add through `append` (with the rest of the response's rows).
pub fn row(new: NewAccessToken<'_>) -> Row {
    Row::AccessToken(access_tokens::ActiveModel {
        jti: Set(new.jti.to_owned()),
        client_id: Set(new.client_id.to_owned()),
        user_id: Set(new.user_id.map(str::to_owned)),
        scope: Set(new.scope.to_owned()),
        code_hash: Set(new.code_hash.map(str::to_owned)),
        issued_at: Set(new.issued_at),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
        family_id: Set(new.family_id.map(str::to_owned)),
    })
}

/// The token's row if it is live, with its user (if it has one and the user
/// still exists): one query, for introspection and userinfo. Read on the
/// calling thread where `local` can (SQLite: `store::local_read`), else
/// through the pool.
pub async fn find_live_with_user(
    store: &Store,
    jti: &str,
    now: i64,
) -> Result<Option<TokenWithUser>, sea_orm::DbErr> {
    let db = &store.db;
    if let Some(answer) = store
        .reader
        .as_ref()
        .and_then(|reader| reader.live_token_with_user(jti, now))
    {
        return Ok(answer);
    }
    AccessTokens::find_by_id(jti.to_owned())
        .filter(access_tokens::Column::RevokedAt.is_null())
        .filter(access_tokens::Column::ExpiresAt.gt(now))
        .find_also_related(Users)
        .one(db)
        .await
}

/// Revokes every token issued from a code (RFC 6749 §4.1.2: a code used twice).
pub async fn revoke_for_code(
    db: &DatabaseConnection,
    code_hash: &str,
    now: i64,
) -> Result<u64, sea_orm::DbErr> {
    AccessTokens::update_many()
        .col_expr(access_tokens::Column::RevokedAt, Expr::value(now))
        .filter(access_tokens::Column::CodeHash.eq(code_hash))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// Revokes a user's tokens held by one client (consent withdrawn).
pub async fn revoke_for_user_client(
    db: &DatabaseConnection,
    user_id: &str,
    client_id: &str,
    now: i64,
) -> Result<u64, sea_orm::DbErr> {
    AccessTokens::update_many()
        .col_expr(access_tokens::Column::RevokedAt, Expr::value(now))
        .filter(access_tokens::Column::UserId.eq(user_id))
        .filter(access_tokens::Column::ClientId.eq(client_id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// Revokes one access token, if it belongs to `client_id` (RFC 7009 §2.1).
pub async fn revoke(
    db: &DatabaseConnection,
    jti: &str,
    client_id: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = AccessTokens::update_many()
        .col_expr(access_tokens::Column::RevokedAt, Expr::value(now))
        .filter(access_tokens::Column::Jti.eq(jti))
        .filter(access_tokens::Column::ClientId.eq(client_id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

//! Queries on `api_keys`: personal API keys, stored as the SHA-256 of the
//! whole key; the key itself is never stored.

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::entities::api_keys::{self, Entity as ApiKeys, Model as ApiKey};

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub key_hash: &'a str,
    /// Space-separated, sorted (`Scopes::to_wire`).
    pub scope: &'a str,
    pub now: i64,
    pub expires_at: Option<i64>,
}

pub async fn create(db: &DatabaseConnection, new: NewApiKey<'_>) -> Result<ApiKey, sea_orm::DbErr> {
    api_keys::ActiveModel {
        id: Set(new.id.to_owned()),
        user_id: Set(new.user_id.to_owned()),
        name: Set(new.name.to_owned()),
        key_hash: Set(new.key_hash.to_owned()),
        scope: Set(new.scope.to_owned()),
        created_at: Set(new.now),
        last_used_at: Set(None),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
}

/// The key with this hash if it is usable: not revoked and not expired.
pub async fn find_live(
    db: &DatabaseConnection,
    key_hash: &str,
    now: i64,
) -> Result<Option<ApiKey>, sea_orm::DbErr> {
    ApiKeys::find()
        .filter(api_keys::Column::KeyHash.eq(key_hash))
        .filter(api_keys::Column::RevokedAt.is_null())
        .filter(
            Condition::any()
                .add(api_keys::Column::ExpiresAt.is_null())
                .add(api_keys::Column::ExpiresAt.gt(now)),
        )
        .one(db)
        .await
}

/// Every key of a user, revoked and expired ones included, newest first.
pub async fn list_for_user(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Vec<ApiKey>, sea_orm::DbErr> {
    ApiKeys::find()
        .filter(api_keys::Column::UserId.eq(user_id))
        .order_by_desc(api_keys::Column::CreatedAt)
        .order_by_asc(api_keys::Column::Id)
        .all(db)
        .await
}

pub async fn touch(db: &DatabaseConnection, id: &str, now: i64) -> Result<(), sea_orm::DbErr> {
    ApiKeys::update_many()
        .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Revokes a key of this user: one conditional UPDATE, so a key of another
/// user, an unknown id or an already revoked key changes nothing. Returns
/// whether this call revoked it.
pub async fn revoke(
    db: &DatabaseConnection,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = ApiKeys::update_many()
        .col_expr(api_keys::Column::RevokedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(id))
        .filter(api_keys::Column::UserId.eq(user_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes every live key of a user (a password reset); returns how many.
pub async fn revoke_all_for_user(
    db: &DatabaseConnection,
    user_id: &str,
    now: i64,
) -> Result<u64, sea_orm::DbErr> {
    ApiKeys::update_many()
        .col_expr(api_keys::Column::RevokedAt, Expr::value(now))
        .filter(api_keys::Column::UserId.eq(user_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

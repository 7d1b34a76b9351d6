//! Queries on `consents`: what a user allowed a client, remembered.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::consents::{self, Entity as Consents, Model as Consent};

pub async fn get(
    db: &DatabaseConnection,
    user_id: &str,
    client_id: &str,
) -> Result<Option<Consent>, sea_orm::DbErr> {
    Consents::find_by_id((user_id.to_owned(), client_id.to_owned()))
        .one(db)
        .await
}

/// Records (or replaces) the scopes a user allowed a client.
pub async fn put(
    db: &DatabaseConnection,
    user_id: &str,
    client_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    Consents::insert(consents::ActiveModel {
        user_id: Set(user_id.to_owned()),
        client_id: Set(client_id.to_owned()),
        scope: Set(scope.to_owned()),
        granted_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([consents::Column::UserId, consents::Column::ClientId])
            .update_columns([consents::Column::Scope, consents::Column::GrantedAt])
            .to_owned(),
    )
    .exec(db)
    .await
    .map(|_| ())
}

pub async fn list_for_user(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Vec<Consent>, sea_orm::DbErr> {
    Consents::find()
        .filter(consents::Column::UserId.eq(user_id))
        .order_by_asc(consents::Column::GrantedAt)
        .all(db)
        .await
}

pub async fn delete(
    db: &DatabaseConnection,
    user_id: &str,
    client_id: &str,
) -> Result<bool, sea_orm::DbErr> {
    let result = Consents::delete_by_id((user_id.to_owned(), client_id.to_owned()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

//! Queries on `interactions`: pending authorization requests, single use.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::entities::interactions::{self, Entity as Interactions, Model as Interaction};

pub async fn create(
    db: &DatabaseConnection,
    id_hash: &str,
    client_id: &str,
    request_json: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sea_orm::DbErr> {
    // Without RETURNING/re-read: nothing is needed back (one round trip).
    Interactions::insert(interactions::ActiveModel {
        id_hash: Set(id_hash.to_owned()),
        client_id: Set(client_id.to_owned()),
        request: Set(request_json.to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        completed_at: Set(None),
    })
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

/// The interaction, if it exists, has not expired and is not completed.
pub async fn find_live(
    db: &DatabaseConnection,
    id_hash: &str,
    now: i64,
) -> Result<Option<Interaction>, sea_orm::DbErr> {
    Interactions::find_by_id(id_hash.to_owned())
        .filter(interactions::Column::ExpiresAt.gt(now))
        .filter(interactions::Column::CompletedAt.is_null())
        .one(db)
        .await
}

/// Completes an interaction once: of two concurrent completions, one wins.
pub async fn complete(
    db: &DatabaseConnection,
    id_hash: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = Interactions::update_many()
        .col_expr(interactions::Column::CompletedAt, Expr::value(now))
        .filter(interactions::Column::IdHash.eq(id_hash))
        .filter(interactions::Column::CompletedAt.is_null())
        .filter(interactions::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

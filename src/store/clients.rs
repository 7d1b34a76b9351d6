//! Queries on `clients`: the registered relying parties.
//!
//! The list columns (redirect URIs, grant types, …) hold JSON arrays of
//! strings; `encode_list` and `decode_list` are the one place that knows it.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};

use super::entities::clients::{self, Entity as Clients, Model as ClientRow};
use crate::protocol::client_metadata::Client;

/// A row to insert; the caller has validated every field.
pub struct NewClientRow<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    /// `None` for a public client.
    pub secret_hash: Option<&'a str>,
    pub public: bool,
    pub redirect_uris: &'a [String],
    pub post_logout_redirect_uris: &'a [String],
    pub grant_types: &'a [String],
    pub scopes: &'a [String],
    pub token_endpoint_auth_method: &'a str,
    pub require_mfa: bool,
    pub first_party: bool,
    /// A resource server, allowed to introspect access tokens and API keys.
    pub introspect: bool,
}

/// A list column's text.
pub fn encode_list(values: &[String]) -> String {
    serde_json::to_string(values).expect("a list of strings serializes")
}

/// A list column's values; a row that is not a JSON array of strings is an
/// error rather than an empty list, so a damaged row never silently loses
/// (or gains) a permission.
pub fn decode_list(column: &str, text: &str) -> Result<Vec<String>, sea_orm::DbErr> {
    serde_json::from_str(text).map_err(|e| {
        sea_orm::DbErr::Json(format!(
            "clients.{column} is not a JSON array of strings: {e}"
        ))
    })
}

pub async fn insert(
    db: &DatabaseConnection,
    new: NewClientRow<'_>,
    now: i64,
) -> Result<ClientRow, sea_orm::DbErr> {
    clients::ActiveModel {
        client_id: Set(new.client_id.to_owned()),
        name: Set(new.name.to_owned()),
        secret_hash: Set(new.secret_hash.map(str::to_owned)),
        public: Set(new.public),
        redirect_uris: Set(encode_list(new.redirect_uris)),
        post_logout_redirect_uris: Set(encode_list(new.post_logout_redirect_uris)),
        grant_types: Set(encode_list(new.grant_types)),
        scopes: Set(encode_list(new.scopes)),
        token_endpoint_auth_method: Set(new.token_endpoint_auth_method.to_owned()),
        require_mfa: Set(new.require_mfa),
        first_party: Set(new.first_party),
        introspect: Set(new.introspect),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

pub async fn find_by_id(
    db: &DatabaseConnection,
    client_id: &str,
) -> Result<Option<ClientRow>, sea_orm::DbErr> {
    Clients::find_by_id(client_id.to_owned()).one(db).await
}

/// The clients with these ids that exist, in one query.
pub async fn find_many(
    db: &DatabaseConnection,
    client_ids: &[String],
) -> Result<Vec<ClientRow>, sea_orm::DbErr> {
    if client_ids.is_empty() {
        return Ok(Vec::new());
    }
    Clients::find()
        .filter(clients::Column::ClientId.is_in(client_ids.iter().cloned()))
        .all(db)
        .await
}

/// Every client, oldest first (ties, within one second, by name then id so
/// the order is stable).
pub async fn list(db: &DatabaseConnection) -> Result<Vec<ClientRow>, sea_orm::DbErr> {
    Clients::find()
        .order_by_asc(clients::Column::CreatedAt)
        .order_by_asc(clients::Column::Name)
        .order_by_asc(clients::Column::ClientId)
        .all(db)
        .await
}

/// Deletes a client; its interactions, codes, access tokens and consents go
/// with it (ON DELETE CASCADE). Whether there was such a client.
pub async fn delete(db: &DatabaseConnection, client_id: &str) -> Result<bool, sea_orm::DbErr> {
    let result = Clients::delete_by_id(client_id.to_owned()).exec(db).await?;
    Ok(result.rows_affected == 1)
}

/// Replaces a confidential client's secret hash. Public clients are left
/// alone by the query itself; `false` when no confidential client has this id.
pub async fn set_secret_hash(
    db: &DatabaseConnection,
    client_id: &str,
    secret_hash: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = Clients::update_many()
        .col_expr(clients::Column::SecretHash, Expr::value(secret_hash))
        .col_expr(clients::Column::UpdatedAt, Expr::value(now))
        .filter(clients::Column::ClientId.eq(client_id))
        .filter(clients::Column::Public.eq(false))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A stored client as the rest of Stepgate sees it, its lists decoded.
pub fn decode(row: ClientRow) -> Result<Client, sea_orm::DbErr> {
    Ok(Client {
        redirect_uris: decode_list("redirect_uris", &row.redirect_uris)?,
        post_logout_redirect_uris: decode_list(
            "post_logout_redirect_uris",
            &row.post_logout_redirect_uris,
        )?,
        grant_types: decode_list("grant_types", &row.grant_types)?,
        scopes: decode_list("scopes", &row.scopes)?,
        client_id: row.client_id,
        name: row.name,
        public: row.public,
        token_endpoint_auth_method: row.token_endpoint_auth_method,
        require_mfa: row.require_mfa,
        first_party: row.first_party,
        introspect: row.introspect,
        created_at: row.created_at,
    })
}

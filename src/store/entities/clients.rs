use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub public: bool,
    /// JSON array of strings.
    pub redirect_uris: String,
    /// JSON array of strings.
    pub post_logout_redirect_uris: String,
    /// JSON array of strings.
    pub grant_types: String,
    /// JSON array of strings.
    pub scopes: String,
    pub token_endpoint_auth_method: String,
    pub require_mfa: bool,
    pub first_party: bool,
    /// May introspect access tokens and API keys (a resource server).
    pub introspect: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

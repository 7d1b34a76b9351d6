use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// RFC 7638 thumbprint of the public key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER, sealed with AES-256-GCM (`keys::seal_private_key`).
    pub private_key_sealed: String,
    /// `keys::MasterKey::id` of the master key that sealed it.
    pub master_key_id: String,
    /// Unix milliseconds, as every time in this table.
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

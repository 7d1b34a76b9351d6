use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub pwd_at: i64,
    /// The factors passed, as `auth::factor::Factors::to_names` writes them.
    pub factors: String,
    /// When the latest second factor was passed.
    pub mfa_at: Option<i64>,
    pub sid: Option<String>,
}

impl Model {
    /// The factors this session passed.
    pub fn factors(&self) -> crate::auth::factor::Factors {
        crate::auth::factor::Factors::from_names(&self.factors)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

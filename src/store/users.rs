//! Queries on `users`.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};

use super::entities::users::{self, Entity as Users, Model as User};
use super::is_unique_violation;

/// How emails are compared: case-insensitively (stored as entered).
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub email_verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

/// Inserts a user. The unique index on the normalized email decides races:
/// of two concurrent sign-ups with one address, one gets `EmailTaken`.
pub async fn create(
    db: &DatabaseConnection,
    new: NewUser<'_>,
    now: i64,
) -> Result<User, CreateUserError> {
    let model = users::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        email: Set(new.email.trim().to_owned()),
        email_normalized: Set(normalize_email(new.email)),
        name: Set(new.name.trim().to_owned()),
        password_hash: Set(new.password_hash.to_owned()),
        email_verified: Set(new.email_verified),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await.map_err(|e| {
        if is_unique_violation(&e) {
            CreateUserError::EmailTaken
        } else {
            CreateUserError::Db(e)
        }
    })
}

pub async fn find_by_email(
    db: &DatabaseConnection,
    email: &str,
) -> Result<Option<User>, sea_orm::DbErr> {
    Users::find()
        .filter(users::Column::EmailNormalized.eq(normalize_email(email)))
        .one(db)
        .await
}

pub async fn find_by_id(db: &DatabaseConnection, id: &str) -> Result<Option<User>, sea_orm::DbErr> {
    Users::find_by_id(id.to_owned()).one(db).await
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<User>, sea_orm::DbErr> {
    Users::find()
        .order_by_asc(users::Column::CreatedAt)
        .order_by_asc(users::Column::EmailNormalized)
        .all(db)
        .await
}

async fn update_column(
    db: &DatabaseConnection,
    id: &str,
    column: users::Column,
    value: sea_orm::Value,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = Users::update_many()
        .col_expr(column, Expr::value(value))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn set_email_verified(
    db: &DatabaseConnection,
    id: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::EmailVerified, true.into(), now).await
}

pub async fn set_name(
    db: &DatabaseConnection,
    id: &str,
    name: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::Name, name.trim().into(), now).await
}

pub async fn set_password_hash(
    db: &DatabaseConnection,
    id: &str,
    hash: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::PasswordHash, hash.into(), now).await
}

pub async fn set_disabled(
    db: &DatabaseConnection,
    id: &str,
    disabled: bool,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::Disabled, disabled.into(), now).await
}

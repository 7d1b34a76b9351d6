//! Queries on `email_tokens`: single-use, expiring links sent by email.

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, sea_query::Expr};

use super::entities::email_tokens::{self, Entity as EmailTokens};

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirm,
    Reset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Confirm => "confirm",
            Purpose::Reset => "reset",
        }
    }
}

pub async fn create(
    db: &DatabaseConnection,
    token_hash: &str,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    expires_at: i64,
) -> Result<(), sea_orm::DbErr> {
    // Without RETURNING/re-read: nothing is needed back (one round trip).
    EmailTokens::insert(email_tokens::ActiveModel {
        token_hash: Set(token_hash.to_owned()),
        user_id: Set(user_id.to_owned()),
        purpose: Set(purpose.as_str().to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
    })
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

/// Why a link did not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Unknown,
    Used,
    Expired,
}

/// Consumes a link: one atomic conditional UPDATE marks it used only if it is
/// unused and unexpired, so two concurrent clicks (on any nodes) succeed once.
/// Returns the user id, or why the link cannot be used.
pub async fn consume(
    db: &DatabaseConnection,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Result<String, Unusable>, sea_orm::DbErr> {
    let updated = EmailTokens::update_many()
        .col_expr(email_tokens::Column::UsedAt, Expr::value(now))
        .filter(email_tokens::Column::TokenHash.eq(token_hash))
        .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
        .filter(email_tokens::Column::UsedAt.is_null())
        .filter(email_tokens::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    let row = EmailTokens::find_by_id(token_hash.to_owned())
        .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
        .one(db)
        .await?;
    Ok(match row {
        Some(row) if updated.rows_affected == 1 => Ok(row.user_id),
        // Our UPDATE did not take it: whoever set used_at got it first.
        Some(row) if row.used_at.is_some() => Err(Unusable::Used),
        Some(_) => Err(Unusable::Expired),
        None => Err(Unusable::Unknown),
    })
}

/// Checks a link without consuming it (to show the reset form).
pub async fn peek(
    db: &DatabaseConnection,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Result<String, Unusable>, sea_orm::DbErr> {
    let row = EmailTokens::find_by_id(token_hash.to_owned())
        .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
        .one(db)
        .await?;
    Ok(match row {
        None => Err(Unusable::Unknown),
        Some(row) if row.used_at.is_some() => Err(Unusable::Used),
        Some(row) if row.expires_at <= now => Err(Unusable::Expired),
        Some(row) => Ok(row.user_id),
    })
}

/// Retires a user's unused links of one purpose (a new reset link replaces
/// the old ones).
pub async fn retire_for_user(
    db: &DatabaseConnection,
    user_id: &str,
    purpose: Purpose,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    EmailTokens::update_many()
        .col_expr(email_tokens::Column::UsedAt, Expr::value(now))
        .filter(email_tokens::Column::UserId.eq(user_id))
        .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
        .filter(email_tokens::Column::UsedAt.is_null())
        .exec(db)
        .await
        .map(|_| ())
}

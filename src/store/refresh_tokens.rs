//! Queries on `refresh_tokens`: stored hashed, rotated on every use, grouped
//! in families so that a reused token can take its whole grant down.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryTrait, Set};

use super::Store;
use super::append::{Claim, Row};
use super::entities::access_tokens::{self, Entity as AccessTokens};
use super::entities::consents::{Entity as Consents, Model as Consent};
use super::entities::refresh_tokens::{self, Entity as RefreshTokens, Model as RefreshToken};
use super::entities::users::{Entity as Users, Model as User};

/// The row to add through `append` (with the rest of the response's rows).
pub fn row(token: RefreshToken) -> Row {
    Row::RefreshToken(refresh_tokens::ActiveModel {
        token_hash: Set(token.token_hash),
        family_id: Set(token.family_id),
        client_id: Set(token.client_id),
        user_id: Set(token.user_id),
        scope: Set(token.scope),
        sid: Set(token.sid),
        auth_time: Set(token.auth_time),
        acr: Set(token.acr),
        amr: Set(token.amr),
        code_hash: Set(token.code_hash),
        issued_at: Set(token.issued_at),
        idle_expires_at: Set(token.idle_expires_at),
        family_expires_at: Set(token.family_expires_at),
        used_at: Set(token.used_at),
        revoked_at: Set(token.revoked_at),
    })
}

pub async fn find(
    db: &DatabaseConnection,
    token_hash: &str,
) -> Result<Option<RefreshToken>, sea_orm::DbErr> {
    RefreshTokens::find_by_id(token_hash.to_owned())
        .one(db)
        .await
}

/// The token with its user and the user's consent to the token's client
/// (either may be gone): what a refresh checks, in one query. Read on the
/// calling thread where `local` can (SQLite: `store::local_read`), else
/// through the pool.
pub async fn find_with_grant(
    store: &Store,
    token_hash: &str,
) -> Result<Option<(RefreshToken, Option<User>, Option<Consent>)>, sea_orm::DbErr> {
    let db = &store.db;
    if let Some(answer) = store
        .reader
        .as_ref()
        .and_then(|reader| reader.refresh_token_with_grant(token_hash))
    {
        return Ok(answer);
    }
    RefreshTokens::find_by_id(token_hash.to_owned())
        .find_also_related(Users)
        .find_also_related(Consents)
        .one(db)
        .await
}

/// Marks a token used, committed with the tokens it buys (`append`): one
/// conditional UPDATE that succeeds only for a live, unused token, so of two
/// concurrent uses exactly one wins.
pub fn rotation(token_hash: &str, now: i64) -> Claim {
    Claim(
        RefreshTokens::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
            .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .filter(refresh_tokens::Column::IdleExpiresAt.gt(now))
            .filter(refresh_tokens::Column::FamilyExpiresAt.gt(now))
            .into_query(),
    )
}

/// Revokes every refresh token of a family and the access tokens bought with them.
///
/// The refresh tokens are revoked until a pass finds none left. On
/// PostgreSQL (READ COMMITTED) an `UPDATE` that waited for a concurrent
/// rotation's lock on the token it retired does not see the token that
/// rotation inserted (the row was not in its snapshot); the next pass,
/// with a fresh snapshot, does. Once every refresh token is revoked no
/// rotation can succeed, and every one that claimed a token before has
/// committed (the passes waited for its lock): the access-token `UPDATE`
/// after them finds all they bought. On SQLite (one writer at a time) the
/// second pass finds nothing.
pub async fn revoke_family(
    db: &DatabaseConnection,
    family_id: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    loop {
        let revoked = RefreshTokens::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
            .filter(refresh_tokens::Column::FamilyId.eq(family_id))
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(db)
            .await?
            .rows_affected;
        if revoked == 0 {
            break;
        }
    }
    AccessTokens::update_many()
        .col_expr(access_tokens::Column::RevokedAt, Expr::value(now))
        .filter(access_tokens::Column::FamilyId.eq(family_id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// The families started from a code (to revoke when the code is replayed).
pub async fn families_for_code(
    db: &DatabaseConnection,
    code_hash: &str,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let rows = RefreshTokens::find()
        .filter(refresh_tokens::Column::CodeHash.eq(code_hash))
        .all(db)
        .await?;
    let mut families: Vec<String> = rows.into_iter().map(|r| r.family_id).collect();
    families.sort();
    families.dedup();
    Ok(families)
}

/// Revokes a user's refresh tokens at one client (consent withdrawn).
pub async fn revoke_for_user_client(
    db: &DatabaseConnection,
    user_id: &str,
    client_id: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    RefreshTokens::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
        .filter(refresh_tokens::Column::UserId.eq(user_id))
        .filter(refresh_tokens::Column::ClientId.eq(client_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map(|_| ())
}

/// Revokes every refresh token of a user and every access token issued to
/// the user (a password reset, RFC 9700 §4.14.2). Repeated until a pass
/// finds nothing, as in [`revoke_family`], so a rotation in flight on
/// PostgreSQL cannot leave a new token alive; the access tokens go after.
pub async fn revoke_for_user(
    db: &DatabaseConnection,
    user_id: &str,
    now: i64,
) -> Result<u64, sea_orm::DbErr> {
    let mut total = 0;
    loop {
        let revoked = RefreshTokens::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
            .filter(refresh_tokens::Column::UserId.eq(user_id))
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(db)
            .await?
            .rows_affected;
        if revoked == 0 {
            break;
        }
        total += revoked;
    }
    AccessTokens::update_many()
        .col_expr(access_tokens::Column::RevokedAt, Expr::value(now))
        .filter(access_tokens::Column::UserId.eq(user_id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(total)
}

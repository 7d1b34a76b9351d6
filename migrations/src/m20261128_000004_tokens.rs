//! Token lifecycle: rotating refresh tokens grouped in families, personal
//! API keys, and the link from access tokens to their refresh family.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    FamilyId,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    FamilyId,
    ClientId,
    UserId,
    Scope,
    Sid,
    AuthTime,
    Acr,
    Amr,
    CodeHash,
    IssuedAt,
    IdleExpiresAt,
    FamilyExpiresAt,
    UsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    UserId,
    Name,
    KeyHash,
    Scope,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Access tokens bought with a refresh token die with its family.
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .add_column(text_null(AccessTokens::FamilyId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_tokens_family_id")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::FamilyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    // SHA-256 of the 256-bit token.
                    .col(text(RefreshTokens::TokenHash).primary_key())
                    // Every rotation of one grant shares the family id; reuse
                    // of a rotated token revokes the family (RFC 9700 §4.14.2).
                    .col(text(RefreshTokens::FamilyId))
                    .col(text(RefreshTokens::ClientId))
                    .col(text(RefreshTokens::UserId))
                    .col(text(RefreshTokens::Scope))
                    .col(text(RefreshTokens::Sid))
                    // The original authentication, kept in refreshed ID tokens.
                    .col(big_integer(RefreshTokens::AuthTime))
                    .col(text(RefreshTokens::Acr))
                    .col(text(RefreshTokens::Amr))
                    .col(text_null(RefreshTokens::CodeHash))
                    .col(big_integer(RefreshTokens::IssuedAt))
                    .col(big_integer(RefreshTokens::IdleExpiresAt))
                    .col(big_integer(RefreshTokens::FamilyExpiresAt))
                    .col(big_integer_null(RefreshTokens::UsedAt))
                    .col(big_integer_null(RefreshTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("refresh_tokens_family_id", RefreshTokens::FamilyId),
            ("refresh_tokens_user_id", RefreshTokens::UserId),
            ("refresh_tokens_code_hash", RefreshTokens::CodeHash),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(RefreshTokens::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(text(ApiKeys::Id).primary_key())
                    .col(text(ApiKeys::UserId))
                    .col(text(ApiKeys::Name))
                    // SHA-256 of the whole key (`sgk_` + 256 random bits).
                    .col(text_uniq(ApiKeys::KeyHash))
                    .col(text(ApiKeys::Scope))
                    .col(big_integer(ApiKeys::CreatedAt))
                    .col(big_integer_null(ApiKeys::LastUsedAt))
                    .col(big_integer_null(ApiKeys::ExpiresAt))
                    .col(big_integer_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_user_id")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RefreshTokens::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("access_tokens_family_id")
                    .table(AccessTokens::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .drop_column(AccessTokens::FamilyId)
                    .to_owned(),
            )
            .await
    }
}

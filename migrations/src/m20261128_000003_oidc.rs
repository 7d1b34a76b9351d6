//! OpenID Connect: registered clients, pending authorization requests
//! (interactions), authorization codes, issued access tokens, remembered
//! consents, and a public session id (`sid`) for ID tokens.

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
enum Sessions {
    Table,
    Sid,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Name,
    SecretHash,
    Public,
    RedirectUris,
    PostLogoutRedirectUris,
    GrantTypes,
    Scopes,
    TokenEndpointAuthMethod,
    RequireMfa,
    FirstParty,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Interactions {
    Table,
    IdHash,
    ClientId,
    Request,
    CreatedAt,
    ExpiresAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    CodeHash,
    ClientId,
    UserId,
    RedirectUri,
    CodeChallenge,
    Nonce,
    Scope,
    Sid,
    AuthTime,
    Acr,
    Amr,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Jti,
    ClientId,
    UserId,
    Scope,
    CodeHash,
    IssuedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    UserId,
    ClientId,
    Scope,
    GrantedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A public, random id of the sign-in session for the `sid` claim; it
        // survives the session id's renewal after the second factor.
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(text_null(Sessions::Sid))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sessions_sid")
                    .table(Sessions::Table)
                    .col(Sessions::Sid)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .col(text(Clients::ClientId).primary_key())
                    .col(text(Clients::Name))
                    // SHA-256 of the 256-bit secret; NULL for public clients.
                    .col(text_null(Clients::SecretHash))
                    .col(boolean(Clients::Public).default(false))
                    // JSON arrays of strings.
                    .col(text(Clients::RedirectUris))
                    .col(text(Clients::PostLogoutRedirectUris))
                    .col(text(Clients::GrantTypes))
                    .col(text(Clients::Scopes))
                    .col(text(Clients::TokenEndpointAuthMethod))
                    .col(boolean(Clients::RequireMfa).default(false))
                    .col(boolean(Clients::FirstParty).default(false))
                    .col(big_integer(Clients::CreatedAt))
                    .col(big_integer(Clients::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Interactions::Table)
                    .col(text(Interactions::IdHash).primary_key())
                    .col(text(Interactions::ClientId))
                    // The validated authorization request, JSON.
                    .col(text(Interactions::Request))
                    .col(big_integer(Interactions::CreatedAt))
                    .col(big_integer(Interactions::ExpiresAt))
                    .col(big_integer_null(Interactions::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Interactions::Table, Interactions::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(text(AuthorizationCodes::CodeHash).primary_key())
                    .col(text(AuthorizationCodes::ClientId))
                    .col(text(AuthorizationCodes::UserId))
                    .col(text(AuthorizationCodes::RedirectUri))
                    .col(text_null(AuthorizationCodes::CodeChallenge))
                    .col(text_null(AuthorizationCodes::Nonce))
                    .col(text(AuthorizationCodes::Scope))
                    .col(text(AuthorizationCodes::Sid))
                    .col(big_integer(AuthorizationCodes::AuthTime))
                    .col(text(AuthorizationCodes::Acr))
                    // Space-separated RFC 8176 values.
                    .col(text(AuthorizationCodes::Amr))
                    .col(big_integer(AuthorizationCodes::CreatedAt))
                    .col(big_integer(AuthorizationCodes::ExpiresAt))
                    .col(big_integer_null(AuthorizationCodes::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuthorizationCodes::Table, AuthorizationCodes::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuthorizationCodes::Table, AuthorizationCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(text(AccessTokens::Jti).primary_key())
                    .col(text(AccessTokens::ClientId))
                    // NULL for a client's own token (client credentials).
                    .col(text_null(AccessTokens::UserId))
                    .col(text(AccessTokens::Scope))
                    // The code it was issued from: a replayed code revokes it.
                    .col(text_null(AccessTokens::CodeHash))
                    .col(big_integer(AccessTokens::IssuedAt))
                    .col(big_integer(AccessTokens::ExpiresAt))
                    .col(big_integer_null(AccessTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_tokens_code_hash")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::CodeHash)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_tokens_user_id")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .col(text(Consents::UserId))
                    .col(text(Consents::ClientId))
                    // Space-separated granted scopes.
                    .col(text(Consents::Scope))
                    .col(big_integer(Consents::GrantedAt))
                    .primary_key(
                        Index::create()
                            .col(Consents::UserId)
                            .col(Consents::ClientId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Consents::Table, Consents::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Consents::Table, Consents::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Consents::Table.into_iden(),
            AccessTokens::Table.into_iden(),
            AuthorizationCodes::Table.into_iden(),
            Interactions::Table.into_iden(),
            Clients::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("sessions_sid")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::Sid)
                    .to_owned(),
            )
            .await
    }
}

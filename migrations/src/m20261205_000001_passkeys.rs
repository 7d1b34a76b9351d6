//! Passkeys (WebAuthn Level 3): `passkeys`, a user's registered
//! credentials, and `webauthn_challenges`, the state of each ceremony in
//! progress, kept in the database so that any node can finish a ceremony
//! another node began (issue 16).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Passkeys {
    Table,
    CredentialId,
    UserId,
    Name,
    Passkey,
    SignCount,
    BackupEligible,
    BackupState,
    Transports,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum WebauthnChallenges {
    Table,
    ChallengeHash,
    Purpose,
    UserId,
    BindingHash,
    State,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Passkeys::Table)
                    // base64url of the raw credential id: unique across all
                    // users (WebAuthn §7.1 step 26, "not yet registered").
                    .col(text(Passkeys::CredentialId).primary_key())
                    .col(text(Passkeys::UserId))
                    .col(text(Passkeys::Name))
                    // webauthn-rs's `Passkey` as JSON: the public key and
                    // what verifying an assertion needs. Nothing secret.
                    .col(text(Passkeys::Passkey))
                    .col(big_integer(Passkeys::SignCount))
                    .col(boolean(Passkeys::BackupEligible))
                    .col(boolean(Passkeys::BackupState))
                    .col(text(Passkeys::Transports))
                    .col(big_integer(Passkeys::CreatedAt))
                    .col(big_integer_null(Passkeys::LastUsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_passkeys_user")
                    .table(Passkeys::Table)
                    .col(Passkeys::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebauthnChallenges::Table)
                    // SHA-256 of the challenge: the finish finds its state by
                    // the challenge the browser signed (clientDataJSON).
                    .col(text(WebauthnChallenges::ChallengeHash).primary_key())
                    .col(text(WebauthnChallenges::Purpose))
                    .col(text_null(WebauthnChallenges::UserId))
                    // SHA-256 of what the ceremony is bound to: the session's
                    // sid, or the pre-session cookie before sign-in.
                    .col(text(WebauthnChallenges::BindingHash))
                    .col(text(WebauthnChallenges::State))
                    .col(big_integer(WebauthnChallenges::CreatedAt))
                    .col(big_integer(WebauthnChallenges::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webauthn_challenges_expires")
                    .table(WebauthnChallenges::Table)
                    .col(WebauthnChallenges::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebauthnChallenges::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Passkeys::Table).to_owned())
            .await
    }
}

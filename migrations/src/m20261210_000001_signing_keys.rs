//! `signing_keys`: the signing keys every node reads, so that a rotation or
//! a retirement is one statement every node sees at its next read
//! (docs/operating.md, "Keys and rotation"). The private key is sealed
//! (AES-256-GCM under a key derived from the master key, which stays in
//! `keys_dir`); the lifecycle is derived from the times in the row.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Alg,
    PrivateKeySealed,
    MasterKeyId,
    CreatedAt,
    ActivatesAt,
    RetiredAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    // RFC 7638 thumbprint: the same key imported twice (two
                    // nodes starting at once) is one row.
                    .col(text(SigningKeys::Kid).primary_key())
                    .col(text(SigningKeys::Alg))
                    // PKCS#8 DER, sealed; the kid is the associated data.
                    .col(text(SigningKeys::PrivateKeySealed))
                    // Which master key sealed it, so a later master-key
                    // rotation can tell what is left to re-seal.
                    .col(text(SigningKeys::MasterKeyId))
                    // Unix milliseconds: published from `created_at`, signs
                    // from `activates_at`, stops at `retired_at` (or when a
                    // newer key activates), leaves the JWKS at once at
                    // `revoked_at` (`keys retire --now`).
                    .col(big_integer(SigningKeys::CreatedAt))
                    .col(big_integer(SigningKeys::ActivatesAt))
                    .col(big_integer_null(SigningKeys::RetiredAt))
                    .col(big_integer_null(SigningKeys::RevokedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await
    }
}

//! Indexes for the background sweep (`service::sweep`): each expiry column
//! it deletes by, so a batch finds its rows without reading the table.
//! `totp_enrollments.expires_at` has one already.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (index, table, column).
const INDEXES: &[(&str, &str, &str)] = &[
    ("idx_interactions_expires", "interactions", "expires_at"),
    ("idx_sessions_expires", "sessions", "expires_at"),
    ("idx_sessions_last_seen", "sessions", "last_seen_at"),
    (
        "idx_authorization_codes_expires",
        "authorization_codes",
        "expires_at",
    ),
    ("idx_email_tokens_expires", "email_tokens", "expires_at"),
    ("idx_access_tokens_expires", "access_tokens", "expires_at"),
    (
        "idx_refresh_tokens_family_expires",
        "refresh_tokens",
        "family_expires_at",
    ),
    ("idx_api_keys_expires", "api_keys", "expires_at"),
    (
        "idx_login_throttle_last_failure",
        "login_throttle",
        "last_failure_at",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(*name)
                        .table(Alias::new(*table))
                        .col(Alias::new(*column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager
                .drop_index(
                    Index::drop()
                        .name(*name)
                        .table(Alias::new(*table))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

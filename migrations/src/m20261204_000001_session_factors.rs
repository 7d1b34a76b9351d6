//! Sessions record the factors they passed (`factors`, names separated by
//! spaces: `pwd`, `totp`, `recovery`, `passkey`) and when the latest second
//! factor was passed (`mfa_at`), instead of a TOTP-only `otp_at` (issue 15:
//! one factor model, so passkeys are one more name).
//!
//! Existing sessions stay valid: one that had passed a code becomes
//! `pwd totp` with `mfa_at = otp_at` (a recovery code gave the same
//! `amr`). `otp_at` stays in the table, unused, so nodes of the previous
//! version keep working during a rolling upgrade (a session one of them
//! creates asks a new node for the code again: more, never less); a later
//! migration drops it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Factors,
    MfaAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(text(Sessions::Factors).default("pwd"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(big_integer_null(Sessions::MfaAt))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE sessions SET factors = 'pwd totp', mfa_at = otp_at \
                 WHERE otp_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("UPDATE sessions SET otp_at = mfa_at WHERE mfa_at IS NOT NULL")
            .await?;
        for column in [Sessions::MfaAt, Sessions::Factors] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

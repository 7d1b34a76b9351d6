//! A pending TOTP secret belongs to the session that started the activation,
//! not to the user: `totp_enrollments`, one per session (its `sid`), each
//! expiring. `totp_credentials` keeps only activated credentials; the
//! pending rows it held (bound to no session, never expiring) are deleted,
//! so a secret planted by another session can no longer be activated.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TotpEnrollments {
    Table,
    SessionKey,
    UserId,
    SecretSealed,
    Algorithm,
    Digits,
    PeriodSecs,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum TotpCredentials {
    Table,
    Enabled,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TotpEnrollments::Table)
                    // The session's public `sid`: it stays when the session
                    // id is renewed, and dies with the session.
                    .col(text(TotpEnrollments::SessionKey).primary_key())
                    .col(text(TotpEnrollments::UserId))
                    .col(text(TotpEnrollments::SecretSealed))
                    .col(text(TotpEnrollments::Algorithm))
                    .col(integer(TotpEnrollments::Digits))
                    .col(big_integer(TotpEnrollments::PeriodSecs))
                    .col(big_integer(TotpEnrollments::CreatedAt))
                    .col(big_integer(TotpEnrollments::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_totp_enrollments_user")
                    .table(TotpEnrollments::Table)
                    .col(TotpEnrollments::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_totp_enrollments_expires")
                    .table(TotpEnrollments::Table)
                    .col(TotpEnrollments::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(TotpCredentials::Table)
                    .and_where(Expr::col(TotpCredentials::Enabled).eq(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TotpEnrollments::Table).to_owned())
            .await
    }
}

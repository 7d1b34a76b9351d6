//! Two-factor authentication (TOTP credentials, recovery codes) and the
//! audit log of security events.

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
enum TotpCredentials {
    Table,
    UserId,
    SecretSealed,
    Algorithm,
    Digits,
    PeriodSecs,
    Enabled,
    CreatedAt,
    EnabledAt,
    LastStep,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    CodeHash,
    UserId,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Kind,
    Outcome,
    UserId,
    ClientId,
    Ip,
    Detail,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TotpCredentials::Table)
                    .col(text(TotpCredentials::UserId).primary_key())
                    // AES-256-GCM under a key derived from the master key,
                    // bound to the user id (see auth::totp::sealed).
                    .col(text(TotpCredentials::SecretSealed))
                    // The parameters the app was given in the QR code: later
                    // changes to the configuration apply to new activations.
                    .col(text(TotpCredentials::Algorithm))
                    .col(integer(TotpCredentials::Digits))
                    .col(big_integer(TotpCredentials::PeriodSecs))
                    // false while activation waits for its first code.
                    .col(boolean(TotpCredentials::Enabled).default(false))
                    .col(big_integer(TotpCredentials::CreatedAt))
                    .col(big_integer_null(TotpCredentials::EnabledAt))
                    // The last accepted time-step: a code of this step or an
                    // earlier one is never accepted again (RFC 6238 §5.2).
                    .col(big_integer(TotpCredentials::LastStep).default(-1))
                    .foreign_key(
                        ForeignKey::create()
                            .from(TotpCredentials::Table, TotpCredentials::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    // SHA-256 of the normalized code (80 random bits).
                    .col(text(RecoveryCodes::CodeHash).primary_key())
                    .col(text(RecoveryCodes::UserId))
                    .col(big_integer(RecoveryCodes::CreatedAt))
                    .col(big_integer_null(RecoveryCodes::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RecoveryCodes::Table, RecoveryCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recovery_codes_user_id")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(big_pk_auto(AuditEvents::Id))
                    .col(big_integer(AuditEvents::At))
                    .col(text(AuditEvents::Kind))
                    .col(text(AuditEvents::Outcome))
                    // No foreign key: the record outlives a deleted user.
                    .col(text_null(AuditEvents::UserId))
                    .col(text_null(AuditEvents::ClientId))
                    .col(text_null(AuditEvents::Ip))
                    .col(text_null(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_user_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            RecoveryCodes::Table.into_iden(),
            TotpCredentials::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

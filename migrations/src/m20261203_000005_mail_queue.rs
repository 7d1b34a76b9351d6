//! `mail_queue`: the durable outbox (audit issue 14, item 7). A request
//! that means to send an email only inserts what it wants sent (an intent);
//! a worker on every node claims due rows with a lease, composes and sends
//! them, and deletes each once it is handed over. A node that dies loses
//! nothing: its lease runs out and another node sends the row.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailQueue {
    Table,
    Id,
    Intent,
    CreatedAt,
    NextAttemptAt,
    Attempts,
    LeaseUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailQueue::Table)
                    .col(text(MailQueue::Id).primary_key())
                    .col(text(MailQueue::Intent))
                    .col(big_integer(MailQueue::CreatedAt))
                    .col(big_integer(MailQueue::NextAttemptAt))
                    .col(integer(MailQueue::Attempts))
                    .col(big_integer_null(MailQueue::LeaseUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mail_queue_next_attempt_at")
                    .table(MailQueue::Table)
                    .col(MailQueue::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MailQueue::Table).to_owned())
            .await
    }
}

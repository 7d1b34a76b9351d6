//! The indexes on columns most rows leave NULL become partial (`WHERE col
//! IS NOT NULL`): a `client_credentials` token has no user, no code and no
//! refresh family, most audit events have no user, and an index entry for
//! each NULL is a page written per row for nothing. Every query on these
//! columns compares them with `=`, which implies `IS NOT NULL`, so SQLite's
//! and PostgreSQL's planners use the partial index as before.
//!
//! The statements are the same on both databases.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (index, table, column)
const INDEXES: [(&str, &str, &str); 4] = [
    ("access_tokens_code_hash", "access_tokens", "code_hash"),
    ("access_tokens_user_id", "access_tokens", "user_id"),
    ("access_tokens_family_id", "access_tokens", "family_id"),
    ("audit_events_user_id", "audit_events", "user_id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on SQLite too: all four indexes change or none, and
    /// on one connection (a pooled connection that did not see the DROP
    /// would refuse the CREATE as a duplicate).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (index, table, column) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {index}"))
                .await?;
            db.execute_unprepared(&format!(
                "CREATE INDEX {index} ON {table} ({column}) WHERE {column} IS NOT NULL"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (index, table, column) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {index}"))
                .await?;
            db.execute_unprepared(&format!("CREATE INDEX {index} ON {table} ({column})"))
                .await?;
        }
        Ok(())
    }
}

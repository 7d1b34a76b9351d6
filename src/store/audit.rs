//! The audit log: security events with time, user, client, IP and outcome,
//! never a secret.

use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, QuerySelect, Set};

use super::append::{Appender, Row};
use super::entities::audit_events::{self, Entity as AuditEvents, Model as AuditEvent};

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub outcome: &'a str,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// Records `event`; resolves once it is committed (with whatever other rows
/// were waiting: `append`).
pub async fn record(appender: &Appender, event: Event<'_>, now: i64) -> Result<(), sea_orm::DbErr> {
    appender.add(vec![row(event, now)]).await
}

/// The event as a row to add through `append`, with other rows that must
/// commit with it.
pub fn row(event: Event<'_>, now: i64) -> Row {
    Row::Audit(audit_events::ActiveModel {
        at: Set(now),
        kind: Set(event.kind.to_owned()),
        outcome: Set(event.outcome.to_owned()),
        user_id: Set(event.user_id.map(str::to_owned)),
        client_id: Set(event.client_id.map(str::to_owned)),
        ip: Set(event.ip.map(str::to_owned)),
        detail: Set(event.detail.map(str::to_owned)),
        ..Default::default()
    })
}

/// The newest `limit` events, newest first.
pub async fn tail(db: &DatabaseConnection, limit: u64) -> Result<Vec<AuditEvent>, sea_orm::DbErr> {
    AuditEvents::find()
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

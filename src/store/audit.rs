//! The audit log: security events with time, user, client, IP and outcome,
//! never a secret.

use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, QuerySelect, Set};

use super::append::{Appender, Row};
use super::entities::audit_events::{self, Entity as AuditEvents, Model as AuditRow};

/// What happened: one variant per kind of security event. The log stores
/// the name (`as_str`), which operators filter on (docs/operating.md, "Audit
/// log", lists every one; a unit test keeps the two in step). This is the
/// one place a new kind is added, and where counters hook in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    SigninPassword,
    SigninLockout,
    SessionLogout,
    PasswordReset,
    TotpCheck,
    TotpLockout,
    RecoveryCodeUsed,
    RecoveryCodesRegenerated,
    TotpActivated,
    TotpDeactivate,
    TotpDeactivated,
    TotpResetByOperator,
    ApiKeyReauth,
    ApiKeyCreated,
    ApiKeyRevoked,
    TokenIssued,
    TokenRefreshed,
    TokenRevoked,
    CodeReplayed,
    RefreshReuseDetected,
    ClientCreated,
    ClientDeleted,
    ClientSecretRotated,
    SigninPasskey,
    PasskeyCheck,
    PasskeyRegistered,
    PasskeyRenamed,
    PasskeyRemoved,
    PasskeyCounterRegressed,
}

impl Kind {
    pub const ALL: [Kind; 29] = [
        Kind::SigninPassword,
        Kind::SigninLockout,
        Kind::SessionLogout,
        Kind::PasswordReset,
        Kind::TotpCheck,
        Kind::TotpLockout,
        Kind::RecoveryCodeUsed,
        Kind::RecoveryCodesRegenerated,
        Kind::TotpActivated,
        Kind::TotpDeactivate,
        Kind::TotpDeactivated,
        Kind::TotpResetByOperator,
        Kind::ApiKeyReauth,
        Kind::ApiKeyCreated,
        Kind::ApiKeyRevoked,
        Kind::TokenIssued,
        Kind::TokenRefreshed,
        Kind::TokenRevoked,
        Kind::CodeReplayed,
        Kind::RefreshReuseDetected,
        Kind::ClientCreated,
        Kind::ClientDeleted,
        Kind::ClientSecretRotated,
        Kind::SigninPasskey,
        Kind::PasskeyCheck,
        Kind::PasskeyRegistered,
        Kind::PasskeyRenamed,
        Kind::PasskeyRemoved,
        Kind::PasskeyCounterRegressed,
    ];

    /// The name the log stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::SigninPassword => "signin.password",
            Kind::SigninLockout => "signin.lockout",
            Kind::SessionLogout => "session.logout",
            Kind::PasswordReset => "password.reset",
            Kind::TotpCheck => "totp.check",
            Kind::TotpLockout => "totp.lockout",
            Kind::RecoveryCodeUsed => "recovery_code.used",
            Kind::RecoveryCodesRegenerated => "recovery_codes.regenerated",
            Kind::TotpActivated => "totp.activated",
            Kind::TotpDeactivate => "totp.deactivate",
            Kind::TotpDeactivated => "totp.deactivated",
            Kind::TotpResetByOperator => "totp.reset_by_operator",
            Kind::ApiKeyReauth => "api_key.reauth",
            Kind::ApiKeyCreated => "api_key.created",
            Kind::ApiKeyRevoked => "api_key.revoked",
            Kind::TokenIssued => "token.issued",
            Kind::TokenRefreshed => "token.refreshed",
            Kind::TokenRevoked => "token.revoked",
            Kind::CodeReplayed => "code.replayed",
            Kind::RefreshReuseDetected => "refresh.reuse_detected",
            Kind::ClientCreated => "client.created",
            Kind::ClientDeleted => "client.deleted",
            Kind::ClientSecretRotated => "client.secret_rotated",
            Kind::SigninPasskey => "signin.passkey",
            Kind::PasskeyCheck => "passkey.check",
            Kind::PasskeyRegistered => "passkey.registered",
            Kind::PasskeyRenamed => "passkey.renamed",
            Kind::PasskeyRemoved => "passkey.removed",
            Kind::PasskeyCounterRegressed => "passkey.counter_regressed",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
    /// Refused because of a lock (too many failures).
    Locked,
    /// Something was revoked in answer (a replay, a reuse).
    Revoked,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Locked => "locked",
            Outcome::Revoked => "revoked",
        }
    }
}

/// One event to record: never a secret, an email address or a name
/// (docs/security.md).
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub kind: Kind,
    pub outcome: Outcome,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// Records `event`; resolves once it is committed (with whatever other rows
/// were waiting: `append`).
pub async fn record(
    appender: &Appender,
    event: AuditEvent<'_>,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    appender.add(vec![row(event, now)]).await
}

/// The event as a row to add through `append`, with other rows that must
/// commit with it.
pub fn row(event: AuditEvent<'_>, now: i64) -> Row {
    Row::Audit(audit_events::ActiveModel {
        at: Set(now),
        kind: Set(event.kind.as_str().to_owned()),
        outcome: Set(event.outcome.as_str().to_owned()),
        user_id: Set(event.user_id.map(str::to_owned)),
        client_id: Set(event.client_id.map(str::to_owned)),
        ip: Set(event.ip.map(str::to_owned)),
        detail: Set(event.detail.map(str::to_owned)),
        ..Default::default()
    })
}

/// The newest `limit` events, newest first.
pub async fn tail(db: &DatabaseConnection, limit: u64) -> Result<Vec<AuditRow>, sea_orm::DbErr> {
    AuditEvents::find()
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_name_and_the_operators_guide_lists_it() {
        let names: std::collections::HashSet<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), Kind::ALL.len(), "two kinds share a name");
        let guide = include_str!("../../docs/operating.md");
        let table = guide
            .split("## Audit log")
            .nth(1)
            .expect("docs/operating.md has an Audit log section");
        for kind in Kind::ALL {
            assert!(
                table.contains(&format!("`{}`", kind.as_str())),
                "docs/operating.md's audit table does not list {}",
                kind.as_str()
            );
        }
    }
}

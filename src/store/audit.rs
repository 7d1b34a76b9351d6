//! The audit log: security events with time, user, client, IP and outcome,
//! never a secret.

use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, QuerySelect, Set};

use super::append::{Appender, Row};
use super::entities::audit_events::{self, Entity as AuditEvents, Model as AuditRow};
use crate::metrics;

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
    /// A valid TOTP code whose time-step was already used (RFC 6238 §5.2).
    Replayed,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Locked => "locked",
            Outcome::Revoked => "revoked",
            Outcome::Replayed => "replayed",
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
    let counts = counted(&event);
    Row::Audit(
        audit_events::ActiveModel {
            at: Set(now),
            kind: Set(event.kind.as_str().to_owned()),
            outcome: Set(event.outcome.as_str().to_owned()),
            user_id: Set(event.user_id.map(str::to_owned)),
            client_id: Set(event.client_id.map(str::to_owned)),
            ip: Set(event.ip.map(str::to_owned)),
            detail: Set(event.detail.map(str::to_owned)),
            ..Default::default()
        },
        counts,
    )
}

/// What an event counts for in the metrics (docs/operating.md,
/// "Metrics"), counted once its row is committed (`append`). Events that
/// follow another one already counted (a lockout after the failure that
/// started it) and operator or profile actions count for nothing.
pub fn counted(event: &AuditEvent<'_>) -> Option<metrics::Event> {
    use metrics::{Event, Grant, LoginMethod, Outcome as Result, SecondFactor};
    let result = match event.outcome {
        Outcome::Success => Result::Ok,
        Outcome::Failure => Result::Failed,
        Outcome::Locked => Result::Locked,
        Outcome::Replayed => Result::Replayed,
        Outcome::Revoked => Result::Failed,
    };
    Some(match (event.kind, event.outcome) {
        (Kind::SigninPassword, _) => Event::Login(LoginMethod::Password, result),
        (Kind::SigninPasskey, _) => Event::Login(LoginMethod::Passkey, result),
        (Kind::TotpCheck, _) => Event::SecondFactor(SecondFactor::Totp, result),
        (Kind::RecoveryCodeUsed, _) => Event::SecondFactor(SecondFactor::RecoveryCode, result),
        (Kind::PasskeyCheck, _) => Event::SecondFactor(SecondFactor::Passkey, result),
        // The detail names the grant (service::token).
        (Kind::TokenIssued, Outcome::Success) => Event::TokensIssued(Grant::parse(event.detail?)?),
        (Kind::TokenRefreshed, Outcome::Success) => Event::TokensIssued(Grant::RefreshToken),
        (Kind::RefreshReuseDetected, _) => Event::RefreshReuse,
        (Kind::CodeReplayed, _) => Event::CodeReplay,
        _ => return None,
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

    fn event(kind: Kind, outcome: Outcome, detail: Option<&str>) -> AuditEvent<'_> {
        AuditEvent {
            kind,
            outcome,
            user_id: None,
            client_id: None,
            ip: None,
            detail,
        }
    }

    #[test]
    fn events_count_for_their_metric() {
        use metrics::{Event, Grant, LoginMethod, Outcome as R, SecondFactor};
        let cases = [
            (
                Kind::SigninPassword,
                Outcome::Success,
                None,
                Some(Event::Login(LoginMethod::Password, R::Ok)),
            ),
            (
                Kind::SigninPassword,
                Outcome::Locked,
                None,
                Some(Event::Login(LoginMethod::Password, R::Locked)),
            ),
            (
                Kind::SigninPasskey,
                Outcome::Failure,
                None,
                Some(Event::Login(LoginMethod::Passkey, R::Failed)),
            ),
            (Kind::SigninLockout, Outcome::Locked, None, None),
            (
                Kind::TotpCheck,
                Outcome::Replayed,
                None,
                Some(Event::SecondFactor(SecondFactor::Totp, R::Replayed)),
            ),
            (Kind::TotpLockout, Outcome::Locked, None, None),
            (
                Kind::RecoveryCodeUsed,
                Outcome::Failure,
                None,
                Some(Event::SecondFactor(SecondFactor::RecoveryCode, R::Failed)),
            ),
            (
                Kind::PasskeyCheck,
                Outcome::Success,
                None,
                Some(Event::SecondFactor(SecondFactor::Passkey, R::Ok)),
            ),
            (
                Kind::TokenIssued,
                Outcome::Success,
                Some("client_credentials"),
                Some(Event::TokensIssued(Grant::ClientCredentials)),
            ),
            (
                Kind::TokenIssued,
                Outcome::Success,
                Some("authorization_code"),
                Some(Event::TokensIssued(Grant::AuthorizationCode)),
            ),
            (
                Kind::TokenIssued,
                Outcome::Success,
                Some("something else"),
                None,
            ),
            (
                Kind::TokenRefreshed,
                Outcome::Success,
                None,
                Some(Event::TokensIssued(Grant::RefreshToken)),
            ),
            (
                Kind::RefreshReuseDetected,
                Outcome::Revoked,
                None,
                Some(Event::RefreshReuse),
            ),
            (
                Kind::CodeReplayed,
                Outcome::Revoked,
                None,
                Some(Event::CodeReplay),
            ),
            (Kind::PasskeyRegistered, Outcome::Success, None, None),
        ];
        for (kind, outcome, detail, expected) in cases {
            assert_eq!(
                counted(&event(kind, outcome, detail)),
                expected,
                "{kind:?} {outcome:?}"
            );
        }
    }

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

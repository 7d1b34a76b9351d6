//! Deletes rows nothing can use any more, in bounded batches
//! (`service::sweep` runs it). Each statement is
//! `DELETE … WHERE key IN (SELECT key … WHERE dead LIMIT n)`: it removes at
//! most `n` rows, so no sweep holds a long lock, and it is idempotent, so
//! several nodes sweeping at once only delete each row once between them
//! (PostgreSQL re-checks a row another transaction deleted and skips it;
//! SQLite has one writer at a time).

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

/// An authorization code is kept this long past its expiry, so that a
/// replay is still recognised as one and revokes what the code issued
/// (RFC 6749 §4.1.2, RFC 9700 §4.1.1); after that it is only an unknown code.
pub const CODE_REPLAY_MEMORY_SECS: i64 = 86_400;

/// The cut-offs one sweep uses, all in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Cutoffs {
    pub now: i64,
    /// A session last seen at or before this has been idle too long
    /// (`sessions::find_live` keeps only `last_seen_at > idle_cutoff`).
    pub idle_cutoff: i64,
    /// A throttle run whose last failure is older than this is forgotten,
    /// once no lock is left.
    pub forget_before: i64,
}

/// One kind of dead row: its table, key and condition (`?1` … in SQLite
/// syntax; the values come from [`Cutoffs`]).
pub struct Rule {
    table: &'static str,
    key: &'static str,
    dead: &'static str,
    values: fn(&Cutoffs) -> Vec<Value>,
}

/// Every kind of dead row, in the order a sweep visits them.
pub const RULES: &[Rule] = &[
    Rule {
        table: "interactions",
        key: "id_hash",
        dead: "expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    Rule {
        table: "sessions",
        key: "id_hash",
        dead: "expires_at <= ?1 OR last_seen_at <= ?2",
        values: |c| vec![c.now.into(), c.idle_cutoff.into()],
    },
    Rule {
        table: "authorization_codes",
        key: "code_hash",
        dead: "expires_at <= ?1",
        values: |c| vec![(c.now - CODE_REPLAY_MEMORY_SECS).into()],
    },
    Rule {
        table: "email_tokens",
        key: "token_hash",
        dead: "expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    Rule {
        table: "access_tokens",
        key: "jti",
        dead: "expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    // A whole family past its absolute expiry: no token in it can refresh,
    // so a replay of one has nothing left to protect.
    Rule {
        table: "refresh_tokens",
        key: "token_hash",
        dead: "family_expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    Rule {
        table: "api_keys",
        key: "id",
        dead: "expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    Rule {
        table: "totp_enrollments",
        key: "session_key",
        dead: "expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    Rule {
        table: "webauthn_challenges",
        key: "challenge_hash",
        dead: "expires_at <= ?1",
        values: |c| vec![c.now.into()],
    },
    Rule {
        table: "login_throttle",
        key: "email_key",
        dead: "last_failure_at < ?1 AND (locked_until IS NULL OR locked_until <= ?2)",
        values: |c| vec![c.forget_before.into(), c.now.into()],
    },
    // Windows last an hour (`service::limits::WINDOW_SECS`); one that
    // began before the forget cut-off is long over.
    Rule {
        table: "rate_limits",
        key: "key",
        dead: "window_start < ?1",
        values: |c| vec![c.forget_before.into()],
    },
];

impl Rule {
    pub fn table(&self) -> &'static str {
        self.table
    }
}

fn statement(backend: DbBackend, rule: &Rule, cutoffs: &Cutoffs, batch: u32) -> Statement {
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN \
         (SELECT {key} FROM {table} WHERE {dead} LIMIT {batch})",
        table = rule.table,
        key = rule.key,
        dead = rule.dead,
    );
    let sql = match backend {
        DbBackend::Postgres => sql.replace('?', "$"),
        _ => sql,
    };
    Statement::from_sql_and_values(backend, sql, (rule.values)(cutoffs))
}

/// Deletes at most `batch` rows that `rule` finds dead; the number deleted.
pub async fn delete_batch(
    db: &DatabaseConnection,
    rule: &Rule,
    cutoffs: &Cutoffs,
    batch: u32,
) -> Result<u64, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let result = db
        .execute_raw(statement(backend, rule, cutoffs, batch))
        .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_binds_the_values_its_condition_names() {
        let cutoffs = Cutoffs {
            now: 100,
            idle_cutoff: 50,
            forget_before: 10,
        };
        for rule in RULES {
            let placeholders = (1..=9)
                .filter(|i| rule.dead.contains(&format!("?{i}")))
                .count();
            assert_eq!(
                placeholders,
                (rule.values)(&cutoffs).len(),
                "{}",
                rule.table
            );
        }
    }

    #[test]
    fn postgres_gets_numbered_placeholders_and_a_bounded_subquery() {
        let rule = RULES.iter().find(|r| r.table == "sessions").unwrap();
        let cutoffs = Cutoffs {
            now: 100,
            idle_cutoff: 50,
            forget_before: 10,
        };
        let pg = statement(DbBackend::Postgres, rule, &cutoffs, 7);
        assert_eq!(
            pg.sql,
            "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions \
             WHERE expires_at <= $1 OR last_seen_at <= $2 LIMIT 7)"
        );
        let sqlite = statement(DbBackend::Sqlite, rule, &cutoffs, 7);
        assert!(
            sqlite
                .sql
                .contains("expires_at <= ?1 OR last_seen_at <= ?2 LIMIT 7")
        );
    }
}

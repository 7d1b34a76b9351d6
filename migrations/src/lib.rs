//! Stepgate's schema: one list of migrations for SQLite and PostgreSQL,
//! applied in order by `stepgate migrate` and at `serve` start.
//!
//! Each capability adds its tables as a new, dated migration; a migration that
//! has shipped is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_accounts;
mod m20261128_000002_totp_audit;
mod m20261128_000003_oidc;
mod m20261128_000004_tokens;
mod m20261128_000005_partial_indexes;
mod m20261203_000001_totp_enrollments;
mod m20261203_000002_client_introspect;
mod m20261203_000003_sweep_indexes;
mod m20261203_000004_rate_limits;
mod m20261203_000005_mail_queue;
mod m20261204_000001_session_factors;
mod m20261205_000001_passkeys;
mod m20261210_000001_signing_keys;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_accounts::Migration),
            Box::new(m20261128_000002_totp_audit::Migration),
            Box::new(m20261128_000003_oidc::Migration),
            Box::new(m20261128_000004_tokens::Migration),
            Box::new(m20261128_000005_partial_indexes::Migration),
            Box::new(m20261203_000001_totp_enrollments::Migration),
            Box::new(m20261203_000002_client_introspect::Migration),
            Box::new(m20261203_000003_sweep_indexes::Migration),
            Box::new(m20261203_000004_rate_limits::Migration),
            Box::new(m20261203_000005_mail_queue::Migration),
            Box::new(m20261204_000001_session_factors::Migration),
            Box::new(m20261205_000001_passkeys::Migration),
            Box::new(m20261210_000001_signing_keys::Migration),
        ]
    }
}

//! Migration 20261204_000001 replaces the TOTP-only `sessions.otp_at` by
//! the factors a session passed and `mfa_at` (issue 15): sessions signed
//! in before the upgrade keep what they proved.

use migrations::MigratorTrait;
use sea_orm::ConnectionTrait;
use stepgate::auth::factor::{ACR_MFA, ACR_PWD, Factor, Factors};
use stepgate::crypto::sha256_hex;
use stepgate::store;

use crate::helpers::{Backend, TempDir, test_settings};
use crate::on_both_backends;

on_both_backends!(sessions_from_before_the_factor_model_keep_what_they_proved);

async fn sessions_from_before_the_factor_model_keep_what_they_proved(backend: Backend) {
    let dir = TempDir::new();
    let test_db = backend.create_database(dir.path()).await;
    let settings = test_settings(dir.path(), &test_db);
    let db = store::connect(&settings).await.unwrap();
    let before = migrations::Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261204_000001_session_factors")
        .expect("the migration is listed");
    migrations::Migrator::up(&db, Some(before as u32))
        .await
        .unwrap();
    // One session that passed the code (otp_at), one with the password only.
    db.execute_unprepared(&format!(
        "INSERT INTO users (id, email, email_normalized, name, password_hash, \
         email_verified, disabled, created_at, updated_at) VALUES ('u1', \
         'ada@example.com', 'ada@example.com', 'Ada', 'x', true, false, 1800000000, \
         1800000000); \
         INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at, \
         pwd_at, otp_at, sid) VALUES ('{two}', 'u1', 1800000000, 1800000000, 1900000000, \
         1800000000, 1800000030, 'sid-two'), ('{one}', 'u1', 1800000000, 1800000000, \
         1900000000, 1800000000, NULL, 'sid-one')",
        two = sha256_hex("with-code"),
        one = sha256_hex("password-only"),
    ))
    .await
    .unwrap();

    let applied = store::migrate(&db).await.unwrap();
    assert!(
        applied
            .iter()
            .any(|m| m == "m20261204_000001_session_factors"),
        "{applied:?}"
    );
    let with_code = store::sessions::find(&db, &sha256_hex("with-code"))
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(
        with_code.factors(),
        Factors::of(Factor::Password).with(Factor::Totp)
    );
    assert_eq!(with_code.mfa_at, Some(1_800_000_030));
    let (acr, amr) = with_code.factors().assurance();
    assert_eq!((acr, amr.join(" ").as_str()), (ACR_MFA, "pwd otp mfa"));
    assert!(with_code.factors().has_second_factor());

    let password_only = store::sessions::find(&db, &sha256_hex("password-only"))
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(password_only.factors(), Factors::of(Factor::Password));
    assert_eq!(password_only.mfa_at, None);
    let (acr, amr) = password_only.factors().assurance();
    assert_eq!((acr, amr.join(" ").as_str()), (ACR_PWD, "pwd"));
    assert_eq!(password_only.pwd_at, 1_800_000_000);
}

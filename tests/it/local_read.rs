//! `store::local_read`: SQLite reads on the request thread answer exactly
//! what the pool answers, and step aside when the database is busy.

use sea_orm::DatabaseConnection;
use sea_orm::Set;
use stepgate::store::access_tokens;
use stepgate::store::append::{Appender, Row};
use stepgate::store::entities::access_tokens::ActiveModel;
use stepgate::store::entities::refresh_tokens;
use stepgate::store::local_read::LocalReader;
use stepgate::store::{consents, users};

use crate::helpers::{Backend, TempDir};
use crate::on_both_backends;
use crate::store_append::database_with_client;

on_both_backends!(the_reader_answers_what_the_pool_answers);
on_both_backends!(the_reader_finds_refresh_tokens_as_the_pool_does);

const NOW: i64 = 1_800_000_100;

fn token(jti: &str, user_id: Option<&str>, expires_at: i64, revoked_at: Option<i64>) -> Row {
    let Row::AccessToken(mut model) = crate::store_append::token(jti.to_owned(), "svc") else {
        unreachable!("an access token row")
    };
    let model: &mut ActiveModel = &mut model;
    model.user_id = Set(user_id.map(str::to_owned));
    model.expires_at = Set(expires_at);
    model.revoked_at = Set(revoked_at);
    Row::AccessToken(model.clone())
}

async fn new_user(db: &DatabaseConnection, email: &str) -> String {
    let new = users::NewUser {
        email,
        name: "Ada",
        password_hash: "not-a-hash",
        email_verified: true,
    };
    users::create(db, new, NOW).await.unwrap().id
}

/// A store that reads through the pool only, to compare the reader with.
fn pool_only(db: &sea_orm::DatabaseConnection) -> stepgate::store::Store {
    stepgate::store::Store {
        reader: None,
        ..stepgate::store::Store::new(db.clone(), std::time::Duration::ZERO)
    }
}

async fn the_reader_answers_what_the_pool_answers(backend: Backend) {
    let dir = TempDir::new();
    let (_database, db) = database_with_client(backend.clone(), &dir).await;
    let reader = LocalReader::for_pool(&db);
    if let Backend::Postgres { .. } = backend {
        assert!(reader.is_none(), "PostgreSQL has no local reader");
        return;
    }
    let reader = reader.expect("SQLite on a file has a local reader");

    let ada = new_user(&db, "ada@example.com").await;
    let bob = new_user(&db, "bob@example.com").await;
    users::set_disabled(&db, &bob, true, NOW).await.unwrap();
    let appender = Appender::start(db.clone());
    appender
        .add(vec![
            token("live-user", Some(&ada), NOW + 600, None),
            token("live-client", None, NOW + 600, None),
            token("disabled-user", Some(&bob), NOW + 600, None),
            token("revoked", Some(&ada), NOW + 600, Some(NOW - 1)),
            token("expired", Some(&ada), NOW, None),
        ])
        .await
        .unwrap();

    for jti in [
        "live-user",
        "live-client",
        "disabled-user",
        "revoked",
        "expired",
        "unknown",
    ] {
        let pool = access_tokens::find_live_with_user(&pool_only(&db), jti, NOW)
            .await
            .unwrap();
        let local = reader.live_token_with_user(jti, NOW).expect("not busy");
        assert_eq!(local, pool, "{jti}");
        let live = matches!(jti, "live-user" | "live-client" | "disabled-user");
        assert_eq!(local.is_some(), live, "{jti}");
    }
    let (row, user) = reader
        .live_token_with_user("live-user", NOW)
        .unwrap()
        .unwrap();
    assert_eq!(row.user_id.as_deref(), Some(ada.as_str()));
    assert_eq!(user.map(|u| u.email), Some("ada@example.com".to_owned()));
    let (_, bob_row) = reader
        .live_token_with_user("disabled-user", NOW)
        .unwrap()
        .unwrap();
    assert!(bob_row.is_some_and(|u| u.disabled));

    // A revocation committed through the pool is seen at once.
    access_tokens::revoke(&db, "live-client", "svc", NOW)
        .await
        .unwrap();
    let after = reader.live_token_with_user("live-client", NOW);
    assert_eq!(after, Some(None));
}

fn refresh_token(hash: &str, user_id: &str, used_at: Option<i64>) -> Row {
    Row::RefreshToken(refresh_tokens::ActiveModel {
        token_hash: Set(hash.to_owned()),
        family_id: Set(format!("family-of-{hash}")),
        client_id: Set("svc".to_owned()),
        user_id: Set(user_id.to_owned()),
        scope: Set("openid profile".to_owned()),
        sid: Set("sid-1".to_owned()),
        auth_time: Set(NOW - 50),
        acr: Set("1".to_owned()),
        amr: Set("pwd otp".to_owned()),
        code_hash: Set(Some("code-hash".to_owned())),
        issued_at: Set(NOW - 10),
        idle_expires_at: Set(NOW + 600),
        family_expires_at: Set(NOW + 6000),
        used_at: Set(used_at),
        revoked_at: Set(None),
    })
}

async fn the_reader_finds_refresh_tokens_as_the_pool_does(backend: Backend) {
    let dir = TempDir::new();
    let (_database, db) = database_with_client(backend.clone(), &dir).await;
    let Some(reader) = LocalReader::for_pool(&db) else {
        assert!(matches!(backend, Backend::Postgres { .. }));
        return;
    };
    let ada = new_user(&db, "ada@example.com").await;
    let bob = new_user(&db, "bob@example.com").await;
    // Ada consented to the client, Bob did not (only to another client:
    // that consent must not be joined to his token of this one).
    consents::put(&db, &ada, "svc", "openid profile", NOW)
        .await
        .unwrap();
    crate::store_append::add_client(&db, "other", "Other").await;
    consents::put(&db, &bob, "other", "profile", NOW)
        .await
        .unwrap();
    let appender = Appender::start(db.clone());
    appender
        .add(vec![
            refresh_token("ada-live", &ada, None),
            refresh_token("ada-used", &ada, Some(NOW - 1)),
            refresh_token("bob-live", &bob, None),
        ])
        .await
        .unwrap();

    for hash in ["ada-live", "ada-used", "bob-live", "unknown"] {
        let pool = stepgate::store::refresh_tokens::find_with_grant(&pool_only(&db), hash)
            .await
            .unwrap();
        let local = reader.refresh_token_with_grant(hash).expect("not busy");
        assert_eq!(local, pool, "{hash}");
        assert_eq!(local.is_some(), hash != "unknown", "{hash}");
    }
    let (row, user, consent) = reader
        .refresh_token_with_grant("ada-live")
        .unwrap()
        .unwrap();
    assert_eq!(row.amr, "pwd otp");
    assert_eq!(row.code_hash.as_deref(), Some("code-hash"));
    assert_eq!(user.map(|u| u.email), Some("ada@example.com".to_owned()));
    assert_eq!(consent.map(|c| c.scope), Some("openid profile".to_owned()));
    let (_, bob_user, bob_consent) = reader
        .refresh_token_with_grant("bob-live")
        .unwrap()
        .unwrap();
    assert!(bob_user.is_some());
    assert!(
        bob_consent.is_none(),
        "no consent to this client, none joined"
    );

    // A consent withdrawn through the pool is seen at once.
    assert!(consents::delete(&db, &ada, "svc").await.unwrap());
    let (_, _, gone) = reader
        .refresh_token_with_grant("ada-live")
        .unwrap()
        .unwrap();
    assert!(gone.is_none());
}

/// Another process holding the database file exclusively: the reader does
/// not wait on the request thread, it says "ask the pool" (`None`). (An
/// exclusive lock can only be taken while no other connection is open:
/// the pool is closed first.)
#[tokio::test]
async fn a_busy_database_sends_the_read_to_the_pool() {
    let dir = TempDir::new();
    let (_database, db) = database_with_client(Backend::Sqlite, &dir).await;
    db.clone().close().await.unwrap();
    let reader = LocalReader::for_pool(&db).unwrap();
    let holder = rusqlite::Connection::open(dir.path().join("stepgate.db")).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    assert!(reader.live_token_with_user("any", NOW).is_none());
    drop(holder);
    let again = reader.live_token_with_user("any", NOW);
    assert_eq!(again, Some(None), "answers once released");
}

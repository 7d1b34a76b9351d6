//! The passkey tables' one-time rules on a real database, from two
//! connection pools at once (two nodes): a ceremony's challenge is taken
//! once, a sign counter accepted once, a credential id registered once.

use stepgate::store;
use stepgate::store::entities::passkeys::Model as StoredPasskey;
use stepgate::store::passkeys::{self, NewChallenge, NotTaken, Used};
use tokio::task::JoinSet;

use crate::helpers::{Backend, TempDir, test_settings};
use crate::on_both_backends;

on_both_backends!(
    a_challenge_is_taken_once_across_nodes,
    a_sign_counter_is_accepted_once_and_only_forward,
    a_credential_id_is_registered_once,
);

const NOW: i64 = 1_800_000_000;

async fn two_nodes(
    backend: Backend,
    dir: &TempDir,
) -> (
    crate::helpers::TestDatabase,
    sea_orm::DatabaseConnection,
    sea_orm::DatabaseConnection,
) {
    let database = backend.create_database(dir.path()).await;
    let settings = test_settings(dir.path(), &database);
    let a = store::connect(&settings).await.unwrap();
    store::migrate(&a).await.unwrap();
    let b = store::connect(&settings).await.unwrap();
    (database, a, b)
}

async fn put(db: &sea_orm::DatabaseConnection, hash: &str, expires_at: i64) {
    passkeys::put_challenge(
        db,
        NewChallenge {
            challenge_hash: hash,
            purpose: "passwordless",
            user_id: None,
            binding_hash: "browser-1",
            state: "{}",
            now: NOW,
            expires_at,
        },
    )
    .await
    .unwrap();
}

async fn a_challenge_is_taken_once_across_nodes(backend: Backend) {
    let dir = TempDir::new();
    let (_database, a, b) = two_nodes(backend, &dir).await;
    put(&a, "c1", NOW + 300).await;

    // Another purpose or another browser does not find it, and leaves it.
    let other = passkeys::take_challenge(&a, "c1", "register", "browser-1", NOW).await;
    assert_eq!(other.unwrap().unwrap_err(), NotTaken::Unknown);
    let other = passkeys::take_challenge(&a, "c1", "passwordless", "browser-2", NOW).await;
    assert_eq!(other.unwrap().unwrap_err(), NotTaken::Unknown);

    // 50 finishes at once, half on each node: one takes it.
    let mut racers = JoinSet::new();
    for n in 0..50 {
        let db = if n % 2 == 0 { a.clone() } else { b.clone() };
        racers.spawn(async move {
            passkeys::take_challenge(&db, "c1", "passwordless", "browser-1", NOW + 1)
                .await
                .unwrap()
        });
    }
    let mut taken = 0;
    while let Some(result) = racers.join_next().await {
        match result.unwrap() {
            Ok(row) => {
                taken += 1;
                assert_eq!(row.state, "{}");
            }
            Err(reason) => assert_eq!(reason, NotTaken::Unknown),
        }
    }
    assert_eq!(taken, 1, "exactly one finish takes the challenge");

    // An expired one is refused as expired, and not taken either.
    put(&a, "c2", NOW + 300).await;
    let late = passkeys::take_challenge(&b, "c2", "passwordless", "browser-1", NOW + 300).await;
    assert_eq!(late.unwrap().unwrap_err(), NotTaken::Expired);
}

fn credential(id: &str, user_id: &str) -> StoredPasskey {
    StoredPasskey {
        credential_id: id.to_owned(),
        user_id: user_id.to_owned(),
        name: "Laptop".to_owned(),
        passkey: "{}".to_owned(),
        sign_count: 0,
        backup_eligible: true,
        backup_state: false,
        transports: "internal".to_owned(),
        created_at: NOW,
        last_used_at: None,
    }
}

fn used<'a>(id: &'a str, user_id: &'a str, sign_count: i64) -> Used<'a> {
    Used {
        credential_id: id,
        user_id,
        passkey: "{}",
        sign_count,
        backup_state: false,
        now: NOW + 10,
    }
}

async fn a_sign_counter_is_accepted_once_and_only_forward(backend: Backend) {
    let dir = TempDir::new();
    let (_database, a, b) = two_nodes(backend, &dir).await;
    assert!(passkeys::insert(&a, credential("k1", "u1")).await.unwrap());

    // 50 assertions with the same count, on two nodes: one is accepted.
    let mut racers = JoinSet::new();
    for n in 0..50 {
        let db = if n % 2 == 0 { a.clone() } else { b.clone() };
        racers.spawn(async move {
            passkeys::record_use(&db, used("k1", "u1", 7))
                .await
                .unwrap()
        });
    }
    let mut accepted = 0;
    while let Some(result) = racers.join_next().await {
        accepted += usize::from(result.unwrap());
    }
    assert_eq!(accepted, 1);

    // The same count or a lower one again: a clone, refused.
    assert!(!passkeys::record_use(&a, used("k1", "u1", 7)).await.unwrap());
    assert!(!passkeys::record_use(&b, used("k1", "u1", 3)).await.unwrap());
    assert!(passkeys::record_use(&b, used("k1", "u1", 8)).await.unwrap());
    // Another user's credential, or one that is gone, is never updated.
    assert!(!passkeys::record_use(&a, used("k1", "u2", 9)).await.unwrap());
    let row = passkeys::find(&a, "k1").await.unwrap().unwrap();
    assert_eq!(row.sign_count, 8);
    assert_eq!(row.last_used_at, Some(NOW + 10));

    // An authenticator without a counter (always 0) is accepted each time.
    assert!(passkeys::insert(&a, credential("k0", "u1")).await.unwrap());
    assert!(passkeys::record_use(&a, used("k0", "u1", 0)).await.unwrap());
    assert!(passkeys::record_use(&b, used("k0", "u1", 0)).await.unwrap());

    assert!(passkeys::delete(&a, "u1", "k1").await.unwrap());
    assert!(
        !passkeys::record_use(&a, used("k1", "u1", 20))
            .await
            .unwrap()
    );
}

async fn a_credential_id_is_registered_once(backend: Backend) {
    let dir = TempDir::new();
    let (_database, a, b) = two_nodes(backend, &dir).await;
    let mut racers = JoinSet::new();
    for n in 0..50 {
        let db = if n % 2 == 0 { a.clone() } else { b.clone() };
        let user = format!("u{n}");
        racers.spawn(async move {
            passkeys::insert(&db, credential("same", &user))
                .await
                .unwrap()
        });
    }
    let mut inserted = 0;
    while let Some(result) = racers.join_next().await {
        inserted += usize::from(result.unwrap());
    }
    assert_eq!(inserted, 1, "a credential id belongs to one user");
    let owner = passkeys::find(&a, "same").await.unwrap().unwrap().user_id;
    assert_eq!(passkeys::count(&b, &owner).await.unwrap(), 1);
    assert_eq!(passkeys::list(&b, &owner).await.unwrap().len(), 1);
    // Removing someone else's id removes nothing.
    let other = if owner == "u0" { "u1" } else { "u0" };
    assert!(!passkeys::delete(&a, other, "same").await.unwrap());
    assert_eq!(passkeys::delete_for_user(&a, &owner).await.unwrap(), 1);
    assert!(passkeys::find(&b, "same").await.unwrap().is_none());
}

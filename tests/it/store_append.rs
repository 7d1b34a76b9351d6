//! The group-commit writer (`store::append`) on a real database: rows of
//! many callers in one transaction, and a bad row that fails only its own
//! caller.

use sea_orm::{EntityTrait, PaginatorTrait, Set};
use stepgate::store;
use stepgate::store::append::{Appender, Row};
use stepgate::store::entities::{access_tokens, audit_events};
use tokio::task::JoinSet;

use crate::helpers::{Backend, TempDir, test_settings};
use crate::on_both_backends;

on_both_backends!(every_caller_gets_the_answer_for_its_own_row);

fn token(jti: String, client_id: &str) -> Row {
    Row::AccessToken(access_tokens::ActiveModel {
        jti: Set(jti),
        client_id: Set(client_id.to_owned()),
        user_id: Set(None),
        scope: Set("profile".to_owned()),
        code_hash: Set(None),
        issued_at: Set(1_800_000_000),
        expires_at: Set(1_800_000_600),
        revoked_at: Set(None),
        family_id: Set(None),
    })
}

fn event(n: usize) -> Row {
    Row::Audit(audit_events::ActiveModel {
        at: Set(1_800_000_000),
        kind: Set("test.event".to_owned()),
        outcome: Set("success".to_owned()),
        detail: Set(Some(format!("event {n}"))),
        ..Default::default()
    })
}

async fn every_caller_gets_the_answer_for_its_own_row(backend: Backend) {
    let dir = TempDir::new();
    let database = backend.create_database(dir.path()).await;
    let db = store::connect(&test_settings(dir.path(), &database))
        .await
        .unwrap();
    store::migrate(&db).await.unwrap();
    store::clients::insert(
        &db,
        store::clients::NewClientRow {
            client_id: "svc",
            name: "Service",
            secret_hash: Some("x"),
            public: false,
            redirect_uris: &[],
            post_logout_redirect_uris: &[],
            grant_types: &["client_credentials".to_owned()],
            scopes: &["profile".to_owned()],
            token_endpoint_auth_method: "client_secret_basic",
            require_mfa: false,
            first_party: false,
        },
        1_800_000_000,
    )
    .await
    .unwrap();

    let appender = Appender::start(db.clone());
    let mut callers = JoinSet::new();
    for n in 0..40 {
        let appender = appender.clone();
        callers.spawn(async move {
            let rows = match n {
                // A token of a client that does not exist: the foreign key
                // refuses it, and the event that goes with it with it.
                13 => vec![token(format!("jti-{n}"), "no-such-client"), event(n)],
                // The same jti as caller 0: the primary key refuses one of them.
                26 => vec![token("jti-0".to_owned(), "svc"), event(n)],
                // An event alone: a single statement.
                n if n % 4 == 3 => vec![event(n)],
                n => vec![token(format!("jti-{n}"), "svc"), event(n)],
            };
            (n, appender.add(rows).await)
        });
    }
    let mut refused = Vec::new();
    while let Some(joined) = callers.join_next().await {
        let (n, result) = joined.unwrap();
        if result.is_err() {
            refused.push(n);
        }
    }
    refused.sort();
    // Of 0 and 26, whichever the writer took second is the duplicate.
    assert!(
        refused == [13, 26] || refused == [0, 13],
        "only the bad callers fail: {refused:?}"
    );
    let tokens = access_tokens::Entity::find().count(&db).await.unwrap();
    let events = audit_events::Entity::find().count(&db).await.unwrap();
    assert_eq!(tokens, 28, "30 callers sent a token; 2 were refused");
    assert_eq!(
        events, 38,
        "40 callers sent an event; 2 were refused with their token"
    );

    // The writer goes on after failures (nothing left half-open).
    appender
        .add(vec![token("jti-after".to_owned(), "svc"), event(99)])
        .await
        .expect("a good row after bad ones");
    assert_eq!(access_tokens::Entity::find().count(&db).await.unwrap(), 29);
}

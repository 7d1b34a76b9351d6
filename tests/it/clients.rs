//! The client registry as an operator drives it: `stepgate client …` against
//! a real database, and client authentication as the token endpoint will call
//! it, on a state built the way the binary builds its own.

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use sea_orm::EntityTrait;
use serde_json::{Value, json};
use stepgate::clock::SystemClock;
use stepgate::crypto::sha256_hex;
use stepgate::protocol::client_metadata;
use stepgate::service::clients;
use stepgate::state::AppState;
use stepgate::store;
use stepgate::store::entities::clients::Entity as ClientRows;

use crate::helpers::{
    Backend, TempDir, TestDatabase, copy_template_keys, stderr, stdout, stepgate, test_settings,
    write_config,
};
use crate::on_both_backends;

on_both_backends!(
    a_confidential_client_gets_a_secret_shown_once_and_stored_hashed,
    a_public_client_has_no_secret,
    clients_are_listed_and_shown,
    a_rotated_secret_replaces_the_old_one,
    a_running_node_takes_a_new_secret_at_once,
    a_deleted_client_is_gone,
    bad_registrations_are_refused_with_their_reason,
    a_client_id_may_start_with_a_hyphen,
    clients_registered_before_the_introspect_flag_are_no_resource_servers,
);

/// A database, keys and a configuration file for `stepgate client …` runs.
struct Registry {
    db: TestDatabase,
    config: PathBuf,
    // Last: removed after the database is gone.
    dir: TempDir,
}

impl Registry {
    async fn new(backend: Backend) -> Self {
        let dir = TempDir::new();
        let db = backend.create_database(dir.path()).await;
        copy_template_keys(&dir.path().join("keys"));
        let config = write_config(dir.path(), &db, "");
        Self { db, config, dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut args = args.to_vec();
        args.extend(["--config", self.config.to_str().unwrap()]);
        stepgate(&args, &[])
    }

    /// Runs a command that must succeed and print exactly one JSON object.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.trim().lines().count(), 1, "exactly one line: {text}");
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Runs a command that must be refused; its reason on stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stdout(&out).is_empty(),
            "nothing on stdout: {}",
            stdout(&out)
        );
        stderr(&out)
    }

    /// The state `open_state` in main.rs builds: the same keys and database.
    async fn state(&self) -> AppState {
        self.state_caching_clients_for(5).await
    }

    /// The same, keeping clients read for authentication `secs` seconds.
    async fn state_caching_clients_for(&self, secs: u64) -> AppState {
        let mut settings = test_settings(self.dir.path(), &self.db);
        settings.oauth.client_cache_secs = secs;
        let db = store::connect(&settings).await.unwrap();
        store::migrate(&db).await.unwrap();
        stepgate::startup::state_on(settings, db, Arc::new(SystemClock))
            .await
            .unwrap()
    }
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

async fn a_confidential_client_gets_a_secret_shown_once_and_stored_hashed(backend: Backend) {
    let registry = Registry::new(backend).await;
    let created = registry.json(&[
        "client",
        "create",
        "--name",
        "  NAO Cloud  ",
        "--redirect-uri",
        "https://cloud.example.com/callback",
        "--redirect-uri",
        "http://127.0.0.1:8400/cb",
        "--redirect-uri",
        "https://cloud.example.com/callback",
        "--post-logout-redirect-uri",
        "https://cloud.example.com/",
        "--require-mfa",
        "--first-party",
        "--json",
    ]);
    let client_id = text(&created["client_id"]).to_owned();
    let secret = text(&created["client_secret"]).to_owned();
    assert_eq!(client_id.len(), 22, "128 bits, base64url: {client_id}");
    assert_eq!(secret.len(), 43, "256 bits, base64url: {secret}");
    assert_eq!(created["name"], "NAO Cloud");
    assert_eq!(created["public"], false);
    assert_eq!(
        created["redirect_uris"],
        json!([
            "https://cloud.example.com/callback",
            "http://127.0.0.1:8400/cb"
        ])
    );
    assert_eq!(
        created["post_logout_redirect_uris"],
        json!(["https://cloud.example.com/"])
    );
    assert_eq!(
        created["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        created["scopes"],
        json!(["openid", "profile", "email", "offline_access"])
    );
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(created["require_mfa"], true);
    assert_eq!(created["first_party"], true);
    assert_eq!(
        created["introspect"], false,
        "a resource server on request only"
    );
    assert!(created["created_at"].as_i64().unwrap() > 1_700_000_000);

    let state = registry.state().await;
    // Only the hash is stored, nowhere the secret itself.
    let row = ClientRows::find_by_id(client_id.clone())
        .one(&state.store.db)
        .await
        .unwrap()
        .expect("the row");
    assert_eq!(
        row.secret_hash.as_deref(),
        Some(sha256_hex(&secret).as_str())
    );
    assert!(!format!("{row:?}").contains(&secret), "{row:?}");

    let client = clients::authenticate(&state, &client_id, Some(&secret))
        .await
        .unwrap()
        .expect("the right secret authenticates");
    assert_eq!(client.client_id, client_id);
    assert!(client.allows_grant(client_metadata::GRANT_AUTHORIZATION_CODE));
    assert!(!client.allows_grant(client_metadata::GRANT_CLIENT_CREDENTIALS));
    assert!(client.has_redirect_uri("http://127.0.0.1:8400/cb"));
    assert!(!client.has_redirect_uri("http://127.0.0.1:8400/cb/"));
    for (id, presented) in [
        (client_id.as_str(), None),
        (client_id.as_str(), Some("wrong")),
        (client_id.as_str(), Some("")),
        ("unknown-client", Some(secret.as_str())),
    ] {
        assert!(
            clients::authenticate(&state, id, presented)
                .await
                .unwrap()
                .is_none(),
            "{id} with {presented:?} authenticated"
        );
    }

    // The audit log names the client and never holds the secret.
    let events = store::audit::tail(&state.store.db, 10).await.unwrap();
    let created_event = events
        .iter()
        .find(|e| e.kind == "client.created")
        .expect("a client.created event");
    assert_eq!(created_event.client_id.as_deref(), Some(client_id.as_str()));
    assert!(!format!("{events:?}").contains(&secret));
}

async fn a_public_client_has_no_secret(backend: Backend) {
    let registry = Registry::new(backend).await;
    let created = registry.json(&[
        "client",
        "create",
        "--name",
        "Mobile app",
        "--public",
        "--redirect-uri",
        "http://[::1]:9000/cb",
        "--redirect-uri",
        "http://localhost/cb",
        "--scope",
        "openid email",
        "--json",
    ]);
    let client_id = text(&created["client_id"]).to_owned();
    assert!(created.get("client_secret").is_none(), "{created}");
    assert_eq!(created["public"], true);
    assert_eq!(created["token_endpoint_auth_method"], "none");
    assert_eq!(created["scopes"], json!(["openid", "email"]));

    let state = registry.state().await;
    let row = ClientRows::find_by_id(client_id.clone())
        .one(&state.store.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.secret_hash, None);
    let client = clients::authenticate(&state, &client_id, None)
        .await
        .unwrap()
        .expect("a public client authenticates with no secret");
    assert!(client.public);
    assert!(client.allows_scope("email"));
    assert!(!client.allows_scope("profile"));
    // RFC 6749 §2.3.1: presenting a secret a public client cannot have fails.
    assert!(
        clients::authenticate(&state, &client_id, Some("anything"))
            .await
            .unwrap()
            .is_none()
    );

    let err = registry.refused(&["client", "rotate-secret", &client_id, "--json"]);
    assert!(err.contains("is public: it has no secret"), "{err}");
}

async fn clients_are_listed_and_shown(backend: Backend) {
    let registry = Registry::new(backend).await;
    assert_eq!(
        registry.json(&["client", "list", "--json"]),
        json!({ "clients": [] })
    );
    let mut first = registry.json(&[
        "client",
        "create",
        "--name",
        "First",
        "--redirect-uri",
        "https://first.example/cb",
        "--json",
    ]);
    let second = registry.json(&[
        "client",
        "create",
        "--name",
        "Second",
        "--grant-type",
        "client_credentials",
        "--scope",
        "openid",
        "--introspect",
        "--json",
    ]);
    assert_eq!(second["grant_types"], json!(["client_credentials"]));
    assert_eq!(second["introspect"], true);
    assert_eq!(second["redirect_uris"], json!([]));
    let first_id = text(&first["client_id"]).to_owned();
    let second_id = text(&second["client_id"]).to_owned();

    // `show` and `list` print the client without its secret.
    first.as_object_mut().unwrap().remove("client_secret");
    assert_eq!(
        registry.json(&["client", "show", &first_id, "--json"]),
        first
    );
    let listed = registry.json(&["client", "list", "--json"]);
    let ids: Vec<&str> = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text(&c["client_id"]))
        .collect();
    assert_eq!(ids, [first_id.as_str(), second_id.as_str()]);
    assert!(listed["clients"][0].get("client_secret").is_none());
    assert_eq!(listed["clients"][0]["introspect"], false);
    assert_eq!(listed["clients"][1]["introspect"], true);

    // Without --json, for people.
    let out = registry.run(&["client", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.contains(&first_id) && listing.contains(&second_id));
    let out = registry.run(&["client", "show", &second_id]);
    assert!(stdout(&out).contains("grant_types: client_credentials"));
    assert!(stdout(&out).contains("introspect: true"));

    let err = registry.refused(&["client", "show", "no-such-client", "--json"]);
    assert!(
        err.contains("no client with the id no-such-client"),
        "{err}"
    );
}

async fn a_rotated_secret_replaces_the_old_one(backend: Backend) {
    let registry = Registry::new(backend).await;
    let created = registry.json(&[
        "client",
        "create",
        "--name",
        "Rotating",
        "--redirect-uri",
        "https://rotate.example/cb",
        "--json",
    ]);
    let client_id = text(&created["client_id"]).to_owned();
    let old = text(&created["client_secret"]).to_owned();

    let rotated = registry.json(&["client", "rotate-secret", &client_id, "--json"]);
    assert_eq!(rotated["client_id"], client_id.as_str());
    let new = text(&rotated["client_secret"]).to_owned();
    assert_eq!(new.len(), 43);
    assert_ne!(new, old);

    let state = registry.state().await;
    assert!(
        clients::authenticate(&state, &client_id, Some(&old))
            .await
            .unwrap()
            .is_none(),
        "the old secret no longer authenticates"
    );
    assert!(
        clients::authenticate(&state, &client_id, Some(&new))
            .await
            .unwrap()
            .is_some()
    );
    let events = store::audit::tail(&state.store.db, 10).await.unwrap();
    let event = events
        .iter()
        .find(|e| e.kind == "client.secret_rotated")
        .expect("a client.secret_rotated event");
    assert_eq!(event.client_id.as_deref(), Some(client_id.as_str()));
    assert!(!format!("{events:?}").contains(&new));

    let err = registry.refused(&["client", "rotate-secret", "no-such-client"]);
    assert!(err.contains("no client with the id"), "{err}");
}

/// `oauth.client_cache_secs`: a node that read a client keeps it, but a new
/// secret is checked against a fresh read, so rotating never locks a client
/// out; the old secret lives on only where the cache still holds it.
async fn a_running_node_takes_a_new_secret_at_once(backend: Backend) {
    let registry = Registry::new(backend).await;
    let created = registry.json(&[
        "client",
        "create",
        "--name",
        "Cached",
        "--grant-type",
        "client_credentials",
        "--json",
    ]);
    let client_id = text(&created["client_id"]).to_owned();
    let old = text(&created["client_secret"]).to_owned();
    // Long enough that the test never races it.
    let caching = registry.state_caching_clients_for(300).await;
    let uncached = registry.state_caching_clients_for(0).await;
    for state in [&caching, &uncached] {
        let client = clients::authenticate(state, &client_id, Some(&old))
            .await
            .unwrap()
            .expect("the secret authenticates");
        assert_eq!(client.client_id, client_id);
    }

    let rotated = registry.json(&["client", "rotate-secret", &client_id, "--json"]);
    let new = text(&rotated["client_secret"]).to_owned();
    let authenticates = |state: &AppState, secret: &str| {
        let (state, secret, id) = (state.clone(), secret.to_owned(), client_id.clone());
        async move {
            clients::authenticate(&state, &id, Some(&secret))
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(
        !authenticates(&uncached, &old).await,
        "without the cache the old secret is refused at once"
    );
    assert!(
        authenticates(&caching, &old).await,
        "the cached client still knows the old secret (for client_cache_secs)"
    );
    assert!(
        authenticates(&caching, &new).await,
        "the new secret works at once on a node that cached the client"
    );
    assert!(
        !authenticates(&caching, &old).await,
        "the fresh read replaced the cached secret"
    );
    assert!(!authenticates(&caching, "not-the-secret").await);

    registry.json(&["client", "delete", &client_id, "--json"]);
    assert!(!authenticates(&uncached, &new).await);
    assert!(
        !authenticates(&caching, "not-the-secret").await,
        "a wrong secret for a deleted client reads again and finds nothing"
    );
}

async fn a_deleted_client_is_gone(backend: Backend) {
    let registry = Registry::new(backend).await;
    let created = registry.json(&[
        "client",
        "create",
        "--name",
        "Short-lived",
        "--redirect-uri",
        "https://gone.example/cb",
        "--json",
    ]);
    let client_id = text(&created["client_id"]).to_owned();
    let secret = text(&created["client_secret"]).to_owned();

    assert_eq!(
        registry.json(&["client", "delete", &client_id, "--json"]),
        json!({ "client_id": client_id, "deleted": true })
    );
    registry.refused(&["client", "show", &client_id]);
    let err = registry.refused(&["client", "delete", &client_id, "--json"]);
    assert!(err.contains("no client with the id"), "{err}");
    assert_eq!(
        registry.json(&["client", "list", "--json"]),
        json!({ "clients": [] })
    );

    let state = registry.state().await;
    assert!(
        clients::authenticate(&state, &client_id, Some(&secret))
            .await
            .unwrap()
            .is_none()
    );
    let events = store::audit::tail(&state.store.db, 10).await.unwrap();
    assert_eq!(events[0].kind, "client.deleted");
    assert_eq!(events[0].client_id.as_deref(), Some(client_id.as_str()));
}

async fn bad_registrations_are_refused_with_their_reason(backend: Backend) {
    let registry = Registry::new(backend).await;
    let create = |extra: &[&str]| {
        let mut args = vec!["client", "create", "--json"];
        args.extend_from_slice(extra);
        registry.refused(&args)
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["--name", "A", "--redirect-uri", "http://example.com/cb"],
            "not a loopback address",
        ),
        (
            &["--name", "A", "--redirect-uri", "https://a.example/cb#x"],
            "fragment",
        ),
        (
            &["--name", "A", "--redirect-uri", "/cb"],
            "not an absolute URI",
        ),
        (
            &["--name", "A", "--redirect-uri", "myapp://cb"],
            "uses the scheme myapp",
        ),
        (
            &["--name", "A", "--redirect-uri", "https://u:p@a.example/cb"],
            "user information",
        ),
        (
            &[
                "--name",
                "A",
                "--redirect-uri",
                "https://a.example/cb",
                "--post-logout-redirect-uri",
                "http://a.example/bye",
            ],
            "post-logout redirect URI: http://a.example/bye",
        ),
        (&["--name", "A"], "redirect URI: give at least one"),
        (
            &[
                "--name",
                "A",
                "--public",
                "--grant-type",
                "client_credentials",
            ],
            "a public client cannot use client_credentials",
        ),
        (
            &[
                "--name",
                "A",
                "--redirect-uri",
                "https://a.example/cb",
                "--public",
                "--introspect",
            ],
            "introspect: a public client cannot introspect",
        ),
        (
            &[
                "--name",
                "A",
                "--redirect-uri",
                "https://a.example/cb",
                "--grant-type",
                "password",
            ],
            "grant type: \"password\" is not supported",
        ),
        (
            &[
                "--name",
                "A",
                "--redirect-uri",
                "https://a.example/cb",
                "--scope",
                "openid admin",
            ],
            "scope: \"admin\" is not supported",
        ),
        (
            &["--name", "   ", "--redirect-uri", "https://a.example/cb"],
            "name: give the client a name",
        ),
        // clap's own refusal: --name is required.
        (&["--redirect-uri", "https://a.example/cb"], "--name"),
    ];
    for (args, reason) in cases {
        let err = create(args);
        assert!(
            err.contains(reason),
            "{args:?}: expected {reason:?} in {err}"
        );
    }
    let long = "x".repeat(101);
    let err = create(&["--name", &long, "--redirect-uri", "https://a.example/cb"]);
    assert!(err.contains("at most 100 characters"), "{err}");

    // Nothing was registered along the way.
    assert_eq!(
        registry.json(&["client", "list", "--json"]),
        json!({ "clients": [] })
    );
}

/// A base64url id starts with `-` one time in 64; the CLI must still take it
/// as the id, not as an option.
async fn a_client_id_may_start_with_a_hyphen(backend: Backend) {
    let registry = Registry::new(backend).await;
    let state = registry.state().await;
    let client_id = "-h1yphenFirst_0123456a";
    let uris = ["https://hyphen.example/cb".to_owned()];
    let grants = ["authorization_code".to_owned()];
    let scopes = ["openid".to_owned()];
    store::clients::insert(
        &state.store.db,
        store::clients::NewClientRow {
            client_id,
            name: "Hyphen",
            secret_hash: Some(&sha256_hex("old")),
            public: false,
            redirect_uris: &uris,
            post_logout_redirect_uris: &[],
            grant_types: &grants,
            scopes: &scopes,
            token_endpoint_auth_method: "client_secret_basic",
            require_mfa: false,
            first_party: false,
            introspect: false,
        },
        1_800_000_000,
    )
    .await
    .unwrap();

    let shown = registry.json(&["client", "show", client_id, "--json"]);
    assert_eq!(shown["name"], "Hyphen");
    let shown = registry.json(&["client", "show", "--json", client_id]);
    assert_eq!(shown["client_id"], client_id);
    let rotated = registry.json(&["client", "rotate-secret", client_id, "--json"]);
    assert_eq!(rotated["client_id"], client_id);
    registry.json(&["client", "delete", client_id, "--json"]);
    assert!(clients::find(&state, client_id).await.unwrap().is_none());
}

/// Migration 20261203_000002 adds `clients.introspect`: a client registered
/// before it gets `false`, so an upgrade gives no client a new permission.
async fn clients_registered_before_the_introspect_flag_are_no_resource_servers(backend: Backend) {
    use migrations::MigratorTrait;
    use sea_orm::ConnectionTrait;
    let registry = Registry::new(backend).await;
    let settings = test_settings(registry.dir.path(), &registry.db);
    let db = store::connect(&settings).await.unwrap();
    let before = migrations::Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261203_000002_client_introspect")
        .expect("the migration is listed");
    migrations::Migrator::up(&db, Some(before as u32))
        .await
        .unwrap();
    db.execute_unprepared(
        "INSERT INTO clients (client_id, name, secret_hash, public, redirect_uris, \
         post_logout_redirect_uris, grant_types, scopes, token_endpoint_auth_method, \
         require_mfa, first_party, created_at, updated_at) VALUES ('old', 'Old', 'x', \
         false, '[]', '[]', '[\"client_credentials\"]', '[\"profile\"]', \
         'client_secret_basic', false, false, 1800000000, 1800000000)",
    )
    .await
    .unwrap();
    drop(db);

    let state = registry.state().await;
    let old = clients::find(&state, "old").await.unwrap().expect("kept");
    assert!(!old.introspect);
    assert_eq!(
        registry.json(&["client", "show", "old", "--json"])["introspect"],
        false
    );
}

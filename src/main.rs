//! The `stepgate` command: parse, load settings, dispatch.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use stepgate::clock::SystemClock;
use stepgate::config::Settings;
use stepgate::protocol::client_metadata::Client;
use stepgate::protocol::client_metadata::NewClient;
use stepgate::service::clients;
use stepgate::service::master_key::{self, RotateOptions};
use stepgate::service::signing_keys::{self, KeyView};
use stepgate::service::{accounts, totp};
use stepgate::startup::Application;
use stepgate::state::AppState;
use stepgate::store::entities::audit_events::Model as AuditEvent;
use stepgate::store::entities::users::Model as User;
use stepgate::{store, telemetry};

#[derive(Parser)]
#[command(
    name = "stepgate",
    version,
    about = "OpenID Connect identity provider with TOTP 2FA"
)]
struct Cli {
    /// Configuration file (TOML); its values override the built-in defaults,
    /// and STEPGATE_* environment variables override it.
    #[arg(long, global = true, env = "STEPGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default): migrates the database and creates
    /// missing keys on start.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Manage the signing keys in keys_dir.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the relying parties (OAuth 2.0 / OpenID Connect clients).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Read the audit log of security events.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the newest events, newest first: time, kind, outcome, user,
    /// client, IP address and detail.
    Tail {
        /// How many events to print.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client. A confidential client's secret is printed once:
    /// only its hash is kept.
    Create {
        /// Shown to people on the consent page.
        #[arg(long)]
        name: String,
        /// Where codes may be sent: https, or http on 127.0.0.1, [::1] or
        /// localhost; compared as exact strings. Repeat for several.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (a native or browser app): no secret, PKCE only.
        #[arg(long)]
        public: bool,
        /// Always ask for the second factor when signing in to this client.
        #[arg(long)]
        require_mfa: bool,
        /// One of our own applications: no consent page.
        #[arg(long)]
        first_party: bool,
        /// A resource server: may introspect access tokens issued to any
        /// client, and personal API keys (confidential clients only).
        #[arg(long)]
        introspect: bool,
        /// Where RP-initiated logout may send people back. Repeat for several.
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        /// authorization_code, refresh_token or client_credentials; repeat for
        /// several [default: authorization_code and refresh_token].
        #[arg(long = "grant-type", value_name = "GRANT")]
        grant_types: Vec<String>,
        /// openid, profile, email or offline_access; repeat, or give several
        /// separated by spaces [default: all four].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every client.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        // Client ids are base64url and may start with `-`.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a client, with its pending authorizations, codes, tokens and
    /// consents.
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Give a confidential client a new secret, printed once; the old one
    /// stops working at once.
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from stdin (with or without a
    /// trailing newline).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Mark the email as confirmed. Without it, a confirmation email is
        /// sent, as after a sign-up.
        #[arg(long)]
        verified: bool,
        #[arg(long)]
        json: bool,
    },
    /// List every account.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: it can no longer sign in, and its sessions end.
    Disable {
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled account.
    Enable {
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Turn off two-factor authentication for a user who lost their phone
    /// and recovery codes: removes the credential, the recovery codes and
    /// every passkey, clears the lockout, ends their sessions and emails them.
    #[command(name = "reset-2fa")]
    Reset2fa {
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the signing keys with their state (next, active, retiring,
    /// retired) and when each leaves the JWKS.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a signing key: published at once, signing after
    /// keys.publish_ahead_secs. Running servers pick it up within
    /// keys.refresh_secs; no restart.
    Rotate {
        /// Sign with it at once (an emergency: relying parties that cached
        /// the JWKS must refetch it on the unknown kid).
        #[arg(long)]
        now: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-seal the TOTP secrets and the signing keys under a new master key,
    /// while the servers keep running: writes keys_dir/master-<millis>.key,
    /// waits keys.refresh_secs + 2 s for every node to load it, re-seals
    /// every row in batches, then renames the older key files *.retired.
    /// Run it again to resume one that stopped. See docs/operating.md,
    /// "The master key".
    RotateMaster {
        /// Do not wait for running nodes to load the new key (only when no
        /// server runs on this database).
        #[arg(long)]
        no_wait: bool,
        /// Rows re-sealed per batch.
        #[arg(long, default_value_t = master_key::DEFAULT_BATCH_SIZE, value_name = "N")]
        batch_size: u64,
        /// Stop after re-sealing N rows; the next run goes on.
        #[arg(long, value_name = "N")]
        max_rows: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Stop a key signing. It stays published until what it signed has
    /// expired; a next key that never signed leaves the JWKS at once.
    /// Retiring the active key hands signing to the next key at once, and is
    /// refused when there is none (rotate first).
    Retire {
        /// The key's kid, as `keys list` shows it.
        kid: String,
        /// Also remove it from the JWKS at once (a compromised key): tokens
        /// it signed stop verifying.
        #[arg(long)]
        now: bool,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    return_big_blocks_to_the_system();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // The server buffers its log lines; the CLI's go out at once.
    let serving = matches!(cli.command, None | Some(Command::Serve));
    telemetry::init(&settings.log, serving);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings));
    // What the runtime's tasks log while it shuts down goes out too.
    drop(runtime);
    telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// glibc raises its mmap threshold to the size of the largest block freed,
/// so after the first sign-in argon2's working memory (19 MiB per hash at
/// the default cost) comes from per-thread heap arenas that keep it after
/// the hash is done: the resident set grew by tens of MB under a sign-in
/// storm and stayed there. A fixed threshold keeps every block of 1 MiB or
/// more in its own mapping, returned to the system when freed.
#[allow(unsafe_code)] // one FFI call, SAFETY below
fn return_big_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate { json } => {
            let db = store::connect(&settings).await?;
            let applied = store::migrate(&db).await?;
            if json {
                print_json(&json!({ "applied": applied }));
            } else if applied.is_empty() {
                println!("The database is up to date.");
            } else {
                for name in &applied {
                    println!("applied {name}");
                }
            }
        }
        Command::Keys { command } => keys(command, settings).await?,
        Command::User { command } => user(command, settings).await?,
        Command::Client { command } => client(command, settings).await?,
        Command::Audit { command } => audit(command, &settings).await?,
    }
    Ok(())
}

/// The state a command needs to act like the server would: keys, the
/// migrated database, the mailer.
async fn open_state(settings: Settings) -> anyhow::Result<AppState> {
    let db = store::connect(&settings).await?;
    store::migrate(&db).await?;
    Ok(stepgate::startup::state_on(settings, db, Arc::new(SystemClock)).await?)
}

fn user_json(user: &User) -> serde_json::Value {
    json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "email_verified": user.email_verified,
        "disabled": user.disabled,
        "created_at": user.created_at,
    })
}

async fn user(command: UserCommand, settings: Settings) -> anyhow::Result<()> {
    let state = open_state(settings).await?;
    let disable = matches!(command, UserCommand::Disable { .. });
    match command {
        UserCommand::Create {
            email,
            name,
            verified,
            json,
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            // One trailing newline (from echo or a terminal) is not part of it.
            let password = password
                .strip_suffix('\n')
                .map(|p| p.strip_suffix('\r').unwrap_or(p))
                .unwrap_or(&password);
            let user =
                accounts::create_by_operator(&state, &email, &name, password, verified).await?;
            if json {
                print_json(&user_json(&user));
            } else {
                println!("Created user {} <{}> ({})", user.name, user.email, user.id);
            }
        }
        UserCommand::List { json } => {
            let users = store::users::list(&state.store.db).await?;
            if json {
                let users: Vec<_> = users.iter().map(user_json).collect();
                print_json(&json!({ "users": users }));
            } else {
                for u in &users {
                    let mut flags = Vec::new();
                    if !u.email_verified {
                        flags.push("unconfirmed");
                    }
                    if u.disabled {
                        flags.push("disabled");
                    }
                    println!("{}  {}  {}  {}", u.id, u.email, u.name, flags.join(","));
                }
            }
        }
        UserCommand::Reset2fa { email, json } => {
            let Some(user) = totp::reset_by_operator(&state, &email).await? else {
                anyhow::bail!("no account with the email {email}");
            };
            if json {
                print_json(&user_json(&user));
            } else {
                println!(
                    "Two-factor authentication reset for {} <{}>; their sessions have ended.",
                    user.name, user.email
                );
            }
        }
        UserCommand::Disable { email, json } | UserCommand::Enable { email, json } => {
            let Some(user) = accounts::set_disabled(&state, &email, disable).await? else {
                anyhow::bail!("no account with the email {email}");
            };
            if json {
                print_json(&user_json(&user));
            } else {
                let what = if disable { "Disabled" } else { "Enabled" };
                println!("{what} {} <{}>", user.name, user.email);
            }
        }
    }
    // A command that queued an email (a confirmation link, a 2FA notice)
    // sends it now rather than leave it to a server's worker: there may be
    // none running.
    let delivered = stepgate::service::mail::deliver_due(&state).await?;
    if delivered.retried > 0 {
        eprintln!(
            "An email could not be sent yet; it stays queued, and a running server sends it."
        );
    }
    if delivered.given_up > 0 {
        eprintln!("An email could not be sent at all; the log says why.");
    }
    Ok(())
}

fn client_json(client: &Client) -> serde_json::Value {
    serde_json::to_value(client).expect("a client serializes")
}

fn print_client(client: &Client) {
    let list = |values: &[String]| {
        if values.is_empty() {
            "-".to_owned()
        } else {
            values.join(" ")
        }
    };
    println!("client_id: {}", client.client_id);
    println!("name: {}", client.name);
    println!(
        "type: {}",
        if client.public {
            "public"
        } else {
            "confidential"
        }
    );
    println!("redirect_uris: {}", list(&client.redirect_uris));
    println!(
        "post_logout_redirect_uris: {}",
        list(&client.post_logout_redirect_uris)
    );
    println!("grant_types: {}", list(&client.grant_types));
    println!("scopes: {}", list(&client.scopes));
    println!(
        "token_endpoint_auth_method: {}",
        client.token_endpoint_auth_method
    );
    println!("require_mfa: {}", client.require_mfa);
    println!("first_party: {}", client.first_party);
    println!("introspect: {}", client.introspect);
    println!("created_at: {}", client.created_at);
}

async fn client(command: ClientCommand, settings: Settings) -> anyhow::Result<()> {
    let state = open_state(settings).await?;
    let unknown = |client_id: &str| anyhow::anyhow!("no client with the id {client_id}");
    match command {
        ClientCommand::Create {
            name,
            redirect_uris,
            public,
            require_mfa,
            first_party,
            introspect,
            post_logout_redirect_uris,
            grant_types,
            scopes,
            json,
        } => {
            // `--scope "openid email"` is the OAuth way of writing two scopes.
            let scopes: Vec<String> = scopes
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect();
            let new = NewClient {
                name,
                redirect_uris,
                post_logout_redirect_uris,
                public,
                require_mfa,
                first_party,
                introspect,
                grant_types: (!grant_types.is_empty()).then_some(grant_types),
                scopes: (!scopes.is_empty()).then_some(scopes),
            };
            let (client, secret) = clients::create(&state, new).await?;
            if json {
                let mut value = client_json(&client);
                if let Some(secret) = &secret {
                    value["client_secret"] = secret.as_str().into();
                }
                print_json(&value);
            } else {
                print_client(&client);
                if let Some(secret) = &secret {
                    println!("client_secret: {secret}");
                    println!("The secret is shown only this once: store it now.");
                }
            }
        }
        ClientCommand::List { json } => {
            let clients = clients::list(&state).await?;
            if json {
                let clients: Vec<_> = clients.iter().map(client_json).collect();
                print_json(&json!({ "clients": clients }));
            } else {
                for c in &clients {
                    let kind = if c.public { "public" } else { "confidential" };
                    println!(
                        "{}  {}  {}  {}",
                        c.client_id,
                        kind,
                        c.name,
                        c.redirect_uris.join(" ")
                    );
                }
            }
        }
        ClientCommand::Show { client_id, json } => {
            let client = clients::find(&state, &client_id)
                .await?
                .ok_or_else(|| unknown(&client_id))?;
            if json {
                print_json(&client_json(&client));
            } else {
                print_client(&client);
            }
        }
        ClientCommand::Delete { client_id, json } => {
            if !clients::delete(&state, &client_id).await? {
                return Err(unknown(&client_id));
            }
            if json {
                print_json(&json!({ "client_id": client_id, "deleted": true }));
            } else {
                println!("Deleted client {client_id}");
            }
        }
        ClientCommand::RotateSecret { client_id, json } => {
            let secret = clients::rotate_secret(&state, &client_id)
                .await?
                .ok_or_else(|| unknown(&client_id))?;
            if json {
                print_json(&json!({ "client_id": client_id, "client_secret": secret }));
            } else {
                println!("client_id: {client_id}");
                println!("client_secret: {secret}");
                println!(
                    "The old secret no longer works. The new one is shown only this once: store it now."
                );
            }
        }
    }
    Ok(())
}

/// An event's time as RFC 3339 in UTC.
fn event_time(event: &AuditEvent) -> String {
    chrono::DateTime::from_timestamp(event.at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| event.at.to_string())
}

fn event_json(event: &AuditEvent) -> serde_json::Value {
    json!({
        "id": event.id,
        "time": event_time(event),
        "kind": event.kind,
        "outcome": event.outcome,
        "user_id": event.user_id,
        "client_id": event.client_id,
        "ip": event.ip,
        "detail": event.detail,
    })
}

async fn audit(command: AuditCommand, settings: &Settings) -> anyhow::Result<()> {
    // Only the database: reading the log needs no keys.
    let db = store::connect(settings).await?;
    store::migrate(&db).await?;
    match command {
        AuditCommand::Tail { limit, json } => {
            let events = store::audit::tail(&db, limit).await?;
            if json {
                let events: Vec<_> = events.iter().map(event_json).collect();
                print_json(&json!({ "events": events }));
            } else {
                let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
                for e in &events {
                    let mut line = format!(
                        "{}  {}  {}  user={}  client={}  ip={}",
                        event_time(e),
                        e.kind,
                        e.outcome,
                        or_dash(&e.user_id),
                        or_dash(&e.client_id),
                        or_dash(&e.ip),
                    );
                    if let Some(detail) = &e.detail {
                        line.push_str("  ");
                        line.push_str(detail);
                    }
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}

fn millis_text(at: Option<i64>) -> Option<String> {
    at.map(|ms| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| ms.to_string())
    })
}

fn key_json(key: &KeyView) -> serde_json::Value {
    json!({
        "kid": key.times.kid,
        "alg": key.alg,
        "state": key.status.state.as_str(),
        "created_at": millis_text(Some(key.times.created_at)),
        "activates_at": millis_text(Some(key.times.activates_at)),
        "retired_at": millis_text(key.times.retired_at),
        "stopped_at": millis_text(key.status.stopped_at),
        "unpublish_at": millis_text(key.status.unpublish_at),
    })
}

fn key_line(key: &KeyView) -> String {
    let or_dash = |v: Option<i64>| millis_text(v).unwrap_or_else(|| "-".to_owned());
    format!(
        "{}  {:8}  {}  created {}  activates {}  retired {}  leaves the JWKS {}",
        key.times.kid,
        key.status.state.as_str(),
        key.alg,
        or_dash(Some(key.times.created_at)),
        or_dash(Some(key.times.activates_at)),
        or_dash(key.times.retired_at),
        or_dash(key.status.unpublish_at),
    )
}

async fn keys(command: KeysCommand, settings: Settings) -> anyhow::Result<()> {
    let state = open_state(settings).await?;
    match command {
        KeysCommand::List { json } => {
            let keys = signing_keys::list(&state).await?;
            if json {
                let keys: Vec<_> = keys.iter().map(key_json).collect();
                print_json(&json!({ "keys": keys }));
            } else {
                for key in &keys {
                    println!("{}", key_line(key));
                }
            }
        }
        KeysCommand::Rotate { now, json } => {
            let key = signing_keys::rotate(&state, now).await?;
            if json {
                print_json(&key_json(&key));
            } else if now {
                println!(
                    "New signing key {}: it signs now on every node within keys.refresh_secs.",
                    key.times.kid
                );
            } else {
                println!(
                    "New signing key {}: published now, it signs from {}. Running servers pick it up within keys.refresh_secs.",
                    key.times.kid,
                    millis_text(Some(key.times.activates_at)).unwrap_or_default()
                );
            }
        }
        KeysCommand::RotateMaster {
            no_wait,
            batch_size,
            max_rows,
            json,
        } => {
            let options = RotateOptions {
                wait: !no_wait,
                batch_size,
                max_rows,
            };
            let rotation = master_key::rotate(&state, &options).await?;
            let state_name = if rotation.done() {
                "done"
            } else {
                "in_progress"
            };
            if json {
                let retired: Vec<String> = rotation
                    .retired
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                print_json(&json!({
                    "master_key_id": rotation.master_key_id,
                    "file": rotation.file.display().to_string(),
                    "created": rotation.created,
                    "resealed": rotation.resealed,
                    "left": rotation.left,
                    "retired_files": retired,
                    "state": state_name,
                }));
            } else {
                let r = &rotation.resealed;
                println!(
                    "Master key {} ({}): re-sealed {} signing keys, {} TOTP secrets, {} pending TOTP secrets.",
                    rotation.master_key_id,
                    rotation.file.display(),
                    r.signing_keys,
                    r.totp_credentials,
                    r.totp_enrollments
                );
                if rotation.done() {
                    for path in &rotation.retired {
                        println!(
                            "Retired {} (kept: back it up with the database backups taken before now).",
                            path.display()
                        );
                    }
                    println!("Done: everything is sealed under the new master key.");
                } else {
                    println!(
                        "{} rows are left under an older master key: run keys rotate-master again to go on.",
                        rotation.left.total()
                    );
                }
            }
        }
        KeysCommand::Retire { kid, now, json } => {
            let retired = signing_keys::retire(&state, &kid, now).await?;
            if json {
                let mut value = key_json(&retired.key);
                value["successor"] = json!(retired.successor);
                print_json(&value);
            } else {
                let leaves = millis_text(retired.key.status.unpublish_at).unwrap_or_default();
                println!("Signing key {kid} retired; it leaves the JWKS at {leaves}.");
                if let Some(next) = &retired.successor {
                    println!("Key {next} signs from now on.");
                }
            }
        }
    }
    Ok(())
}

/// `--json` prints exactly one JSON object on stdout; logs go to stderr.
fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("stepgate: error: {error}");
    ExitCode::FAILURE
}

//! The `stepgate` command: parse, load settings, dispatch.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use stepgate::clock::SystemClock;
use stepgate::config::Settings;
use stepgate::keys::KeyStore;
use stepgate::service::{accounts, totp};
use stepgate::startup::Application;
use stepgate::state::AppState;
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
    /// and recovery codes: removes the credential and recovery codes, clears
    /// the lockout, ends their sessions and emails them.
    #[command(name = "reset-2fa")]
    Reset2fa {
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the signing keys; the newest is the active one.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a new signing key that becomes the active one. The old keys stay
    /// published in the JWKS until their files are removed. Restart running
    /// servers to pick the new key up.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
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
        Command::Keys { command } => keys(command, &settings)?,
        Command::User { command } => user(command, settings).await?,
    }
    Ok(())
}

/// The state a command needs to act like the server would: keys, the
/// migrated database, the mailer.
async fn open_state(settings: Settings) -> anyhow::Result<AppState> {
    let (keys, _) = KeyStore::load_or_create(&settings.keys_dir)?;
    let db = store::connect(&settings).await?;
    store::migrate(&db).await?;
    Ok(AppState::new(settings, keys, db, Arc::new(SystemClock))?)
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
            let users = store::users::list(&state.db).await?;
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
    Ok(())
}

fn keys(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let dir = &settings.keys_dir;
    match command {
        KeysCommand::List { json } => {
            let (store, _) = KeyStore::load_or_create(dir)?;
            let active = store.active().kid.clone();
            let keys: Vec<_> = store
                .signing_keys()
                .iter()
                .map(|k| {
                    json!({
                        "kid": k.kid,
                        "created_at": k.created_at.to_rfc3339(),
                        "active": k.kid == active,
                        "file": k.path.display().to_string(),
                    })
                })
                .collect();
            if json {
                print_json(&json!({ "keys": keys }));
            } else {
                for k in store.signing_keys() {
                    let mark = if k.kid == active { "active" } else { "" };
                    println!(
                        "{}  {}  {:6}  {}",
                        k.kid,
                        k.created_at.to_rfc3339(),
                        mark,
                        k.path.display()
                    );
                }
            }
        }
        KeysCommand::Rotate { json } => {
            let store = KeyStore::rotate(dir)?;
            let key = store.active();
            if json {
                print_json(&json!({
                    "kid": key.kid,
                    "created_at": key.created_at.to_rfc3339(),
                    "published": store.signing_keys().len(),
                }));
            } else {
                println!(
                    "New active signing key {} ({} keys published). Restart running servers to use it.",
                    key.kid,
                    store.signing_keys().len()
                );
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

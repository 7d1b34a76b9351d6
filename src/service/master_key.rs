//! The master keys in `keys_dir` (`keys::MasterKeys`): the scan every node
//! repeats each `keys.refresh_secs`, and `stepgate keys rotate-master`,
//! which re-seals everything sealed under an older master key under a new
//! one while the nodes keep serving (docs/operating.md, "The master key").
//!
//! The rotation, resumable at every step:
//! 1. unless a rotation is under way (more than one key file loaded), a new
//!    `master-<millis>.key` is written;
//! 2. it waits until every running node has scanned `keys_dir` since the
//!    file appeared (`keys.refresh_secs` + [`WAIT_MARGIN_SECS`] after the
//!    time in its name), so no row is sealed under a key some node cannot
//!    open yet;
//! 3. the rows are re-sealed in batches, each by one conditional UPDATE
//!    that holds only while the row still has the value read, so two runs
//!    at once or a crash never seal a value twice or lose one;
//! 4. once no row is left under an older key, the older files are renamed
//!    `….retired`: no node loads them after its next scan, and they are
//!    kept for restoring backups of the database taken before.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::auth::totp::sealed;
use crate::keys::{self, KeyError, MasterKeys};
use crate::service::signing_keys::{self, KeysError};
use crate::service::totp::{open_secret, seal_secret};
use crate::state::AppState;
use crate::store::signing_keys::{self as signing_store, Reseal};
use crate::store::totp as totp_store;

/// Added to `keys.refresh_secs` before the first row is sealed under a new
/// key: a scan is a directory listing and a few small reads, started on
/// the tick, so it ends well within this on a live node.
pub const WAIT_MARGIN_SECS: u64 = 2;

/// Rows re-sealed per batch by default.
pub const DEFAULT_BATCH_SIZE: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("master-key rotation: database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    SigningKey(#[from] KeysError),
    #[error(
        "{table}: the TOTP secret of user {user_id} does not open with any master key in keys_dir; nothing more was re-sealed (is a master key file missing?)"
    )]
    Unopenable {
        table: &'static str,
        user_id: String,
    },
}

/// Scans `keys_dir` and swaps this node's master keys when the files
/// changed (`true` then). On failure (a damaged or unreadable file, no key
/// at all) the node keeps the keys it has.
pub fn rescan(state: &AppState) -> Result<bool, KeyError> {
    let loaded = keys::load_master_keys(&state.settings.keys_dir)?;
    if loaded.ids() == state.keys.masters().ids() {
        return Ok(false);
    }
    tracing::info!(
        ids = ?loaded.ids(),
        sealing = %loaded.sealing().id(),
        "master keys loaded from keys_dir"
    );
    state.keys.replace_masters(loaded);
    Ok(true)
}

/// Scans `keys_dir` every `keys.refresh_secs` until the task is dropped.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.settings.keys.refresh_secs.max(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = rescan(&state) {
            tracing::warn!(%error, "cannot re-read the master keys in keys_dir; keeping the ones loaded");
        }
    }
}

/// How `rotate` runs.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Wait for the running nodes to load a new key before sealing under
    /// it; off only when no node runs.
    pub wait: bool,
    /// Rows read and re-sealed per batch.
    pub batch_size: u64,
    /// Stop after re-sealing this many rows (the next run goes on).
    pub max_rows: Option<u64>,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            wait: true,
            batch_size: DEFAULT_BATCH_SIZE,
            max_rows: None,
        }
    }
}

/// Rows per table that hold a sealed value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tables {
    pub signing_keys: u64,
    pub totp_credentials: u64,
    pub totp_enrollments: u64,
}

impl Tables {
    pub fn total(&self) -> u64 {
        self.signing_keys + self.totp_credentials + self.totp_enrollments
    }
}

/// What `rotate` did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The id of the key everything is sealed under now.
    pub master_key_id: String,
    pub file: PathBuf,
    /// Whether this run wrote the file (`false`: it resumed a rotation).
    pub created: bool,
    pub resealed: Tables,
    /// Rows still under an older key (`max_rows` stopped the run).
    pub left: Tables,
    /// The older files renamed `….retired` by this run.
    pub retired: Vec<PathBuf>,
}

impl Rotation {
    pub fn done(&self) -> bool {
        self.left.total() == 0
    }
}

/// `stepgate keys rotate-master` (the module's comment says how).
pub async fn rotate(state: &AppState, options: &RotateOptions) -> Result<Rotation, RotateError> {
    let dir = &state.settings.keys_dir;
    let mut masters = keys::load_master_keys(dir)?;
    let created = masters.files().len() == 1;
    if created {
        let now = chrono::DateTime::from_timestamp_millis(state.now_ms()).unwrap_or_default();
        let file = keys::write_new_master(dir, now)?;
        tracing::info!(id = %file.key.id(), file = %file.path.display(), "wrote a new master key");
        masters = keys::load_master_keys(dir)?;
    } else {
        tracing::info!(
            id = %masters.sealing().id(),
            "a master-key rotation is under way: resuming it"
        );
    }
    let target = masters.newest();
    let id = target.key.id();
    if options.wait {
        let ready_at = target.created_at.saturating_add(
            i64::try_from(
                (state.settings.keys.refresh_secs + WAIT_MARGIN_SECS).saturating_mul(1000),
            )
            .unwrap_or(i64::MAX),
        );
        let wait = ready_at.saturating_sub(state.now_ms());
        if wait > 0 {
            tracing::info!(
                wait_ms = wait,
                "waiting for every running node to load the new master key (keys.refresh_secs + {WAIT_MARGIN_SECS} s)"
            );
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
    let resealed = reseal(state, &masters, options).await?;
    let left = left_under_older(state, &id).await?;
    let mut retired = Vec::new();
    if left.total() == 0 {
        for file in masters.files().iter().filter(|f| f.key.id() != id) {
            let path = keys::retire_master_file(&file.path)?;
            tracing::info!(file = %path.display(), "retired a master key nothing is sealed under");
            retired.push(path);
        }
    }
    Ok(Rotation {
        master_key_id: id,
        file: target.path.clone(),
        created,
        resealed,
        left,
        retired,
    })
}

/// Rows sealed under another key than `id`.
pub async fn left_under_older(state: &AppState, id: &str) -> Result<Tables, RotateError> {
    let db = &state.store.db;
    let prefix = sealed::tagged_prefix(id);
    Ok(Tables {
        signing_keys: signing_store::count_not_under(db, id).await?,
        totp_credentials: totp_store::count_credentials_not_under(db, &prefix).await?,
        totp_enrollments: totp_store::count_enrollments_not_under(db, &prefix).await?,
    })
}

/// Re-seals, batch by batch, every row not under the newest key, up to
/// `max_rows`.
async fn reseal(
    state: &AppState,
    masters: &MasterKeys,
    options: &RotateOptions,
) -> Result<Tables, RotateError> {
    let db = &state.store.db;
    let target = masters.sealing();
    let id = target.id();
    let prefix = sealed::tagged_prefix(&id);
    let mut budget = options.max_rows.unwrap_or(u64::MAX);
    let batch = |budget: u64| options.batch_size.max(1).min(budget);
    let mut done = Tables::default();

    while budget > 0 {
        let rows = signing_store::not_under(db, &id, batch(budget)).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let der = signing_keys::unseal(masters, &row)?;
            let sealed = keys::seal_private_key(target, &row.kid, &der);
            let changed = signing_store::reseal(
                db,
                Reseal {
                    kid: &row.kid,
                    old_master_key_id: &row.master_key_id,
                    old_sealed: &row.private_key_sealed,
                    master_key_id: &id,
                    sealed: &sealed,
                },
            )
            .await?;
            if changed {
                done.signing_keys += 1;
                budget -= 1;
            }
        }
    }
    while budget > 0 {
        let rows = totp_store::credentials_not_under(db, &prefix, batch(budget)).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let secret =
                open_secret(masters, &row.user_id, &row.secret_sealed).ok_or_else(|| {
                    RotateError::Unopenable {
                        table: "totp_credentials",
                        user_id: row.user_id.clone(),
                    }
                })?;
            let sealed = seal_secret(masters, &row.user_id, &secret);
            if totp_store::reseal_credential(db, &row.user_id, &row.secret_sealed, &sealed).await? {
                done.totp_credentials += 1;
                budget -= 1;
            }
        }
    }
    while budget > 0 {
        let rows = totp_store::enrollments_not_under(db, &prefix, batch(budget)).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let secret =
                open_secret(masters, &row.user_id, &row.secret_sealed).ok_or_else(|| {
                    RotateError::Unopenable {
                        table: "totp_enrollments",
                        user_id: row.user_id.clone(),
                    }
                })?;
            let sealed = seal_secret(masters, &row.user_id, &secret);
            if totp_store::reseal_enrollment(db, &row.session_key, &row.secret_sealed, &sealed)
                .await?
            {
                done.totp_enrollments += 1;
                budget -= 1;
            }
        }
    }
    Ok(done)
}

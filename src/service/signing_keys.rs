//! The signing keys in the database (`keys` explains why there): the start
//! (import of key files from before, a first key), the read every node
//! repeats each `keys.refresh_secs`, and what `stepgate keys` does
//! (docs/operating.md, "Keys and rotation"). Which key signs and which are
//! published is `protocol::signing_keys`' business, at the time asked.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::keys::{self, ALG, KeyError, KeyRing, MasterKey, MasterKeys, SigningKey};
use crate::protocol::signing_keys::{
    self as lifecycle, KeyStatus, KeyTimes, Linger, RetireRefusal,
};
use crate::state::AppState;
use crate::store::entities::signing_keys::Model as Row;
use crate::store::signing_keys as store;

/// A margin for clocks that disagree between nodes and relying parties.
pub const CLOCK_SKEW_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("signing keys: database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "signing key {kid} in the database does not open with master key {master_key_id}: is this the master key file it was sealed with?"
    )]
    Unseal { kid: String, master_key_id: String },
    #[error(
        "signing key {kid} in the database is sealed under master key {master_key_id}, and no master key file in keys_dir (master.key, master-*.key) holds that key: was it removed or renamed .retired too early?"
    )]
    MasterKeyMissing { kid: String, master_key_id: String },
    #[error("signing key {kid} in the database: {reason}")]
    Parse { kid: String, reason: String },
    #[error(transparent)]
    Refused(#[from] RetireRefusal),
}

/// How long a key that signed stays published after it stopped signing
/// (milliseconds): the longest lifetime of what it signs, the refresh
/// interval (a node may sign with a retired key until its next read) and a
/// clock-skew margin.
pub fn linger_ms(settings: &Settings) -> Linger {
    let oauth = &settings.oauth;
    let stale = settings.keys.refresh_secs.saturating_add(CLOCK_SKEW_SECS);
    let signed = oauth
        .id_token_ttl_secs
        .max(oauth.access_token_ttl_secs)
        .saturating_add(stale);
    let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    Linger {
        signed: ms(signed),
        stale: ms(stale),
    }
}

fn times(row: &Row) -> KeyTimes {
    KeyTimes {
        kid: row.kid.clone(),
        created_at: row.created_at,
        activates_at: row.activates_at,
        retired_at: row.retired_at,
        revoked_at: row.revoked_at,
    }
}

fn new_row(
    master: &MasterKey,
    key: &SigningKey,
    der: &[u8],
    created_at: i64,
    activates_at: i64,
) -> Row {
    Row {
        kid: key.kid.clone(),
        alg: ALG.to_owned(),
        private_key_sealed: keys::seal_private_key(master, &key.kid, der),
        master_key_id: master.id(),
        created_at,
        activates_at,
        retired_at: None,
        revoked_at: None,
    }
}

/// What `prepare` did, for the start-up log.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Kids of key files imported now (by this process).
    pub imported: Vec<String>,
    /// The first key, when the table had no active key.
    pub created: Option<String>,
    /// Keys the ring left out: they do not open or parse.
    pub unreadable: Vec<KeysError>,
}

/// At start (and before every command): imports the key files of the
/// layout before the database, creates a key that signs at once when none
/// is active, and reads the ring. Every node may do this at the same time:
/// an import is an insert that does nothing when the kid is there, and two
/// first keys created at once are ordered by the lifecycle rules like any
/// two keys (the later activation signs; the other lingers, published).
pub async fn prepare(
    settings: &Settings,
    db: &DatabaseConnection,
    masters: &MasterKeys,
    now: i64,
) -> Result<(KeyRing, Prepared), KeysError> {
    let master = masters.sealing();
    let mut prepared = Prepared::default();
    let files = keys::legacy_key_files(&settings.keys_dir)?;
    let known: HashSet<String> = store::all(db).await?.into_iter().map(|r| r.kid).collect();
    for file in &files {
        if known.contains(&file.key.kid) {
            continue;
        }
        // It signed from its creation: published and active as it was.
        let row = new_row(
            master,
            &file.key,
            &file.der,
            file.created_at,
            file.created_at,
        );
        if store::insert_if_absent(db, row).await? {
            prepared.imported.push(file.key.kid.clone());
        }
    }
    let linger = linger_ms(settings);
    let rows = store::all(db).await?;
    let times: Vec<KeyTimes> = rows.iter().map(times).collect();
    if lifecycle::active(&times, linger, now).is_none() {
        let (key, der) = SigningKey::generate()?;
        store::insert_if_absent(db, new_row(master, &key, &der, now, now)).await?;
        prepared.created = Some(key.kid);
    }
    let rows = store::all(db).await?;
    let (ring, unreadable) = build_ring(&rows, masters, None, linger, now);
    prepared.unreadable = unreadable;
    Ok((ring, prepared))
}

/// The ring of `rows` at `now`: keys already parsed in `previous` are
/// reused, new ones unsealed and parsed, and keys already out of the JWKS
/// are not opened at all. Keys that do not open are left out and returned.
pub fn build_ring(
    rows: &[Row],
    masters: &MasterKeys,
    previous: Option<&KeyRing>,
    linger: Linger,
    now: i64,
) -> (KeyRing, Vec<KeysError>) {
    let all: Vec<KeyTimes> = rows.iter().map(times).collect();
    let statuses = lifecycle::statuses(&all, linger, now);
    let mut failed = Vec::new();
    let mut keys = Vec::with_capacity(rows.len());
    for ((row, t), status) in rows.iter().zip(all).zip(statuses) {
        let key = if !status.state.is_published() {
            None
        } else if let Some(key) = previous.and_then(|p| p.parsed(&row.kid)) {
            Some(key)
        } else {
            match open(masters, row) {
                Ok(key) => Some(Arc::new(key)),
                Err(e) => {
                    failed.push(e);
                    None
                }
            }
        };
        keys.push((t, key));
    }
    (KeyRing::new(keys, linger, now), failed)
}

/// The PKCS#8 DER of a row's key, opened with the master key the row names.
pub fn unseal(masters: &MasterKeys, row: &Row) -> Result<Vec<u8>, KeysError> {
    let master = masters
        .get(&row.master_key_id)
        .ok_or_else(|| KeysError::MasterKeyMissing {
            kid: row.kid.clone(),
            master_key_id: row.master_key_id.clone(),
        })?;
    keys::unseal_private_key(master, &row.kid, &row.private_key_sealed).ok_or_else(|| {
        KeysError::Unseal {
            kid: row.kid.clone(),
            master_key_id: row.master_key_id.clone(),
        }
    })
}

fn open(masters: &MasterKeys, row: &Row) -> Result<SigningKey, KeysError> {
    let der = unseal(masters, row)?;
    let key = SigningKey::from_pkcs8(&der).map_err(|reason| KeysError::Parse {
        kid: row.kid.clone(),
        reason,
    })?;
    if key.kid != row.kid {
        return Err(KeysError::Parse {
            kid: row.kid.clone(),
            reason: format!("the key's thumbprint is {}", key.kid),
        });
    }
    Ok(key)
}

/// Reads the table again and swaps the ring; only keys new to this node are
/// unsealed. On failure the last ring stays (its JWKS rebuilt for `now`,
/// since keys come and go by time).
pub async fn refresh(state: &AppState) -> Result<(), KeysError> {
    let now = state.now_ms();
    let current = state.keys.ring();
    let rows = match store::all(&state.store.db).await {
        Ok(rows) => rows,
        Err(e) => {
            state.keys.replace(current.at(now));
            return Err(e.into());
        }
    };
    let (ring, failed) = build_ring(
        &rows,
        &state.keys.masters(),
        Some(&current),
        linger_ms(&state.settings),
        now,
    );
    for error in failed {
        tracing::error!(%error, "a signing key is left out");
    }
    let before: HashSet<String> = current.published_kids(now).into_iter().collect();
    let after = ring.published_kids(now);
    for kid in after.iter().filter(|k| !before.contains(*k)) {
        tracing::info!(%kid, "signing key published");
    }
    let after: HashSet<String> = after.into_iter().collect();
    for kid in before.iter().filter(|k| !after.contains(*k)) {
        tracing::info!(%kid, "signing key unpublished");
    }
    state.keys.replace(ring);
    Ok(())
}

/// Reads the table every `keys.refresh_secs` until the task is dropped. A
/// failed read (the database away) is logged; JWKS and signing go on from
/// the last ring.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.settings.keys.refresh_secs.max(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = refresh(&state).await {
            tracing::warn!(%error, "cannot re-read the signing keys; serving the last ones read");
        }
    }
}

/// One key as `stepgate keys list` shows it (times in Unix milliseconds).
#[derive(Debug, Clone)]
pub struct KeyView {
    pub times: KeyTimes,
    pub alg: String,
    pub status: KeyStatus,
}

/// Every key with its state now, oldest activation first.
pub async fn list(state: &AppState) -> Result<Vec<KeyView>, KeysError> {
    let rows = store::all(&state.store.db).await?;
    Ok(views(&rows, linger_ms(&state.settings), state.now_ms()))
}

fn views(rows: &[Row], linger: Linger, now: i64) -> Vec<KeyView> {
    let all: Vec<KeyTimes> = rows.iter().map(times).collect();
    let statuses = lifecycle::statuses(&all, linger, now);
    rows.iter()
        .zip(all)
        .zip(statuses)
        .map(|((row, times), status)| KeyView {
            times,
            alg: row.alg.clone(),
            status,
        })
        .collect()
}

async fn view(state: &AppState, kid: &str) -> Result<KeyView, KeysError> {
    list(state)
        .await?
        .into_iter()
        .find(|v| v.times.kid == kid)
        .ok_or_else(|| RetireRefusal::UnknownKid(kid.to_owned()).into())
}

/// Adds a key: published at once, signing after `keys.publish_ahead_secs`
/// (so relying parties' cached JWKS learn it first), or at once with `now`.
pub async fn rotate(state: &AppState, at_once: bool) -> Result<KeyView, KeysError> {
    let now = state.now_ms();
    let ahead = if at_once {
        0
    } else {
        i64::try_from(state.settings.keys.publish_ahead_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX)
    };
    let (key, der) = SigningKey::generate()?;
    let row = new_row(
        state.keys.masters().sealing(),
        &key,
        &der,
        now,
        now.saturating_add(ahead),
    );
    store::insert_if_absent(&state.store.db, row).await?;
    view(state, &key.kid).await
}

/// What `retire` did.
#[derive(Debug, Clone)]
pub struct Retired {
    pub key: KeyView,
    /// The next key that signs from now on, when the key retired was the
    /// active one.
    pub successor: Option<String>,
}

/// Stops a key signing; with `unpublish_now` it also leaves the JWKS at
/// once (a compromised key: what it signed stops verifying). Refused for an
/// unknown kid, and for the active key when no next key can take over.
pub async fn retire(
    state: &AppState,
    kid: &str,
    unpublish_now: bool,
) -> Result<Retired, KeysError> {
    let now = state.now_ms();
    let linger = linger_ms(&state.settings);
    let mut successor = None;
    let found = store::retire(&state.store.db, kid, now, unpublish_now, |rows| {
        let all: Vec<KeyTimes> = rows.iter().map(times).collect();
        let plan = lifecycle::plan_retire(&all, kid, linger, now)?;
        successor = plan.bring_forward.clone();
        Ok::<_, RetireRefusal>(plan.bring_forward)
    })
    .await??;
    if !found {
        return Err(RetireRefusal::UnknownKid(kid.to_owned()).into());
    }
    Ok(Retired {
        key: view(state, kid).await?,
        successor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_covers_the_longest_token_the_refresh_and_the_skew() {
        let mut settings = Settings::default();
        settings.oauth.id_token_ttl_secs = 100;
        settings.oauth.access_token_ttl_secs = 300;
        settings.keys.refresh_secs = 7;
        assert_eq!(
            linger_ms(&settings),
            Linger {
                signed: (300 + 7 + CLOCK_SKEW_SECS as i64) * 1000,
                stale: (7 + CLOCK_SKEW_SECS as i64) * 1000,
            }
        );
    }
}

//! The background sweep: every `sweep.interval_secs`, delete the rows that
//! nothing can use any more (`store::sweep` says which), so anonymous
//! traffic cannot grow the database for ever. Every node runs it; a batch
//! deleted by one node is simply not found by another.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::state::AppState;
use crate::store::sweep::{self, Cutoffs, RULES};

/// Batches per table per sweep: a backlog larger than this many batches is
/// finished by the next sweeps, so one sweep stays bounded too.
const MAX_BATCHES_PER_TABLE: u32 = 200;

/// Rows deleted per table by one sweep (tables with none are left out).
pub type Swept = BTreeMap<&'static str, u64>;

/// One sweep at the state's clock.
pub async fn sweep_once(state: &AppState) -> Result<Swept, sea_orm::DbErr> {
    let now = state.now();
    let settings = &state.settings;
    let cutoffs = Cutoffs {
        now,
        idle_cutoff: now.saturating_sub(secs(settings.session.idle_timeout_secs)),
        forget_before: now.saturating_sub(secs(settings.sweep.forget_failures_secs)),
    };
    let batch = settings.sweep.batch_size;
    let mut swept = Swept::new();
    for rule in RULES {
        let mut total = 0;
        for _ in 0..MAX_BATCHES_PER_TABLE {
            let deleted = sweep::delete_batch(&state.store.db, rule, &cutoffs, batch).await?;
            total += deleted;
            if deleted < u64::from(batch) {
                break;
            }
            // Let the requests waiting for the database go first.
            tokio::task::yield_now().await;
        }
        if total > 0 {
            swept.insert(rule.table(), total);
        }
    }
    Ok(swept)
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Sweeps every `sweep.interval_secs` until the task is dropped; the first
/// sweep runs one interval after start. A failed sweep (the database away)
/// is logged and tried again at the next interval.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.settings.sweep.interval_secs.max(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sweep_once(&state).await {
            Ok(swept) if swept.is_empty() => {
                tracing::debug!("sweep: nothing expired");
            }
            Ok(swept) => {
                tracing::info!(deleted = ?swept, "sweep: deleted expired rows");
            }
            Err(error) => {
                tracing::warn!(%error, "sweep failed; trying again at the next interval");
            }
        }
    }
}

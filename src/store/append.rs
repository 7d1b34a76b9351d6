//! Group commit for the rows a request only adds: issued access and refresh
//! tokens, and audit events.
//!
//! Every token response writes an `access_tokens` row (and a refresh token)
//! and an audit event. Written one by one, each is its own commit and its
//! own round trip to the database (on SQLite, through the connection's
//! worker thread: two context switches per statement). Here a request hands
//! its rows over together, and the rows of all requests waiting at that
//! moment are written by one task in one transaction, one multi-row
//! `INSERT` per table; a request's rows commit together or not at all.
//!
//! Nothing about durability changes: a caller's future resolves only after
//! the transaction holding its row has committed, so a token is never
//! answered before its row exists (introspection and revocation find it at
//! once). A batch that fails is retried caller by caller, so each caller
//! gets the answer for its own rows and one bad row never fails the others.
//!
//! A commit whose outcome is unknown: on PostgreSQL a `COMMIT` can fail
//! after the server committed (the connection dropped with the answer in
//! flight). Such a batch is neither answered as failed nor written again
//! blindly: each transaction learns its id first (`txid_current()`), and
//! after a failed commit the writer asks the server for up to ten seconds,
//! while it comes back, what became of it (`txid_status`). Committed: every
//! caller gets its success, so no token the database holds goes unanswered
//! and no refresh token it rotated is burnt. Aborted: nothing was written,
//! and the jobs are written again caller by caller. Still unknown after
//! that: every caller gets a connection error (answered 503), and the
//! batch is not written again, since it may have committed; a client then
//! holds no token the batch may have issued, and at worst a refresh token
//! it sends again is found used. SQLite's outcome is always known (see
//! `sqlite_claim_and_write`).
//!
//! The writer gathers a batch in two steps: what is queued when it wakes,
//! then, after one [`tokio::task::yield_now`], whatever the requests that
//! were ready to run meanwhile have added. Without that yield, the request
//! that woke the writer was followed at once by the writer itself (tokio
//! runs a task woken by the running one next), so under load nearly every
//! batch held one request: 12,641 transactions for 20,000
//! `client_credentials` tokens. tokio resumes a yielded task once the
//! tasks that were ready have run (or at its periodic maintenance tick,
//! sooner: then the batch is smaller, nothing else changes). The yield
//! costs an idle server nothing: with no other task ready, the writer
//! resumes at once.
//!
//! A job may also carry a [`Claim`]: the one-time use its rows stand on (a
//! refresh token rotated, a code redeemed). The claim and the rows commit in
//! the same transaction, or neither does, so a use never exists without
//! what it bought, nor new tokens without the use that bought them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::sea_query::UpdateStatement;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryTrait, Statement,
    TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::entities::{access_tokens, audit_events, refresh_tokens};
use crate::metrics::{Event, Metrics};

/// Callers per transaction at most (each adds a few rows): the largest
/// multi-row `INSERT` stays far below SQLite's 32,766 bound variables.
const MAX_BATCH: usize = 128;
/// Callers that may wait for the writer before senders wait too.
const QUEUE: usize = 4096;

/// One row to add.
#[derive(Clone)]
pub enum Row {
    AccessToken(access_tokens::ActiveModel),
    RefreshToken(refresh_tokens::ActiveModel),
    /// An audit event, and what it counts for once committed
    /// (`audit::counted`).
    Audit(audit_events::ActiveModel, Option<Event>),
}

/// A one-time use: an `UPDATE` that changes one row only while it is still
/// usable (a refresh token unused and unexpired, say). Of two jobs claiming
/// the same row, on any node, exactly one finds it.
#[derive(Clone)]
pub struct Claim(pub UpdateStatement);

/// Rows that commit together, and who waits for them. `Ok(false)`: the
/// job's claim found nothing to claim, and none of its rows were written.
struct Job {
    claim: Option<Claim>,
    rows: Vec<Row>,
    done: oneshot::Sender<Result<bool, DbErr>>,
}

/// The handle requests write through; cheap to clone. The writer task ends
/// when the last handle is dropped, after writing what was queued.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Job>,
    batches: Arc<AtomicU64>,
}

impl Appender {
    /// Starts the writer task on the current tokio runtime, writing on a
    /// connection of its own where that helps (`store::writer_connection`).
    pub fn start(db: DatabaseConnection) -> Self {
        Self::start_counting(db, None)
    }

    /// As `start`, and counts the audit events it commits in `metrics`.
    pub fn start_counting(db: DatabaseConnection, metrics: Option<Arc<Metrics>>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let batches = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: super::writer_connection(&db),
            metrics,
        };
        tokio::spawn(run(writer, rx, batches.clone()));
        Self { tx, batches }
    }

    /// How many batches the writer has taken from its queue so far (each
    /// is one transaction, unless a failure splits it caller by caller).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Adds `rows`, all or none; resolves once they are committed.
    pub async fn add(&self, rows: Vec<Row>) -> Result<(), DbErr> {
        if rows.is_empty() {
            return Ok(());
        }
        self.send(None, rows).await.map(|_| ())
    }

    /// Makes `claim` and adds `rows` in one transaction. `Ok(true)` once
    /// both are committed; `Ok(false)` if the claim found nothing to claim
    /// (used, revoked or expired meanwhile): then nothing was written.
    pub async fn add_claimed(&self, claim: Claim, rows: Vec<Row>) -> Result<bool, DbErr> {
        self.send(Some(claim), rows).await
    }

    async fn send(&self, claim: Option<Claim>, rows: Vec<Row>) -> Result<bool, DbErr> {
        let (done, committed) = oneshot::channel();
        self.tx
            .send(Job { claim, rows, done })
            .await
            .map_err(|_| DbErr::Custom("the database writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| DbErr::Custom("the database writer stopped mid-write".into()))?
    }
}

/// The writer task's connection, and where it counts what it committed.
struct Writer {
    db: DatabaseConnection,
    metrics: Option<Arc<Metrics>>,
}

impl Writer {
    /// Answers a job's caller; a job whose rows were committed has its
    /// audit events counted first, so a test (or a scrape) that saw the
    /// answer sees the count.
    fn answer(&self, job: Job, result: Result<bool, DbErr>) {
        if let (Some(metrics), Ok(true)) = (&self.metrics, &result) {
            for row in &job.rows {
                if let Row::Audit(_, Some(event)) = row {
                    metrics.event(*event);
                }
            }
        }
        let _ = job.done.send(result);
    }
}

async fn run(writer: Writer, mut rx: mpsc::Receiver<Job>, batches: Arc<AtomicU64>) {
    let db = &writer.db;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        // Let the requests that are ready to run reach this batch (see the
        // module comment), then take what they added without waiting more.
        if jobs.len() < MAX_BATCH {
            tokio::task::yield_now().await;
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let batch: Vec<&Job> = jobs.iter().collect();
        match write(db, &batch).await {
            Ok(held) => {
                for (job, held) in jobs.drain(..).zip(held) {
                    writer.answer(job, Ok(held));
                }
            }
            Err(Failed::Unknown { error, xid, held }) => {
                // The commit itself failed (PostgreSQL: the connection may
                // have dropped after the server committed). Retrying blindly
                // would find the claims used and answer "reuse" for tokens
                // this batch may have issued, and answering an error for a
                // batch that committed would burn the refresh tokens it
                // rotated. So ask the server what became of the
                // transaction (module comment, "A commit whose outcome is
                // unknown").
                match transaction_outcome(db, xid, RESOLVE_WITHIN).await {
                    Outcome::Committed => {
                        tracing::warn!(error = %error, "database commit reported an error but committed");
                        for (job, held) in jobs.drain(..).zip(held) {
                            writer.answer(job, Ok(held));
                        }
                    }
                    Outcome::Aborted => {
                        tracing::warn!(error = %error, "database commit failed; nothing was written, retrying caller by caller");
                        for job in jobs.drain(..) {
                            let result = write(db, &[&job]).await;
                            writer.answer(
                                job,
                                result.map(|held| held[0]).map_err(Failed::into_inner),
                            );
                        }
                    }
                    Outcome::Unknown => {
                        tracing::error!(error = %error, "database commit failed; outcome unknown");
                        for job in jobs.drain(..) {
                            writer.answer(job, Err(unknown_outcome(&error)));
                        }
                    }
                }
            }
            Err(Failed::Before(e)) if jobs.len() == 1 => {
                if let Some(job) = jobs.pop() {
                    writer.answer(job, Err(e));
                }
            }
            Err(Failed::Before(e)) if super::is_unavailable(&e) => {
                // The database is away: caller by caller would wait for a
                // connection once per caller. Everyone gets the answer now.
                for job in jobs.drain(..) {
                    writer.answer(job, Err(e.clone()));
                }
            }
            Err(Failed::Before(_)) => {
                // Caller by caller: each learns about its own rows only.
                for job in jobs.drain(..) {
                    let result = write(db, &[&job]).await;
                    writer.answer(job, result.map(|held| held[0]).map_err(Failed::into_inner));
                }
            }
        }
    }
}

/// Why a write failed.
enum Failed {
    /// Nothing was committed: the jobs may be retried.
    Before(DbErr),
    /// The commit failed, and may have happened all the same: the
    /// transaction's id (`txid_current()`) says which, and `held` what the
    /// claims found inside it.
    Unknown {
        error: DbErr,
        xid: i64,
        held: Vec<bool>,
    },
}

impl Failed {
    fn into_inner(self) -> DbErr {
        match self {
            Failed::Before(e) => e,
            Failed::Unknown { error, .. } => unknown_outcome(&error),
        }
    }
}

/// A connection error (`store::is_unavailable` says so: answered 503), for
/// callers whose batch's fate could not be learnt.
fn unknown_outcome(error: &DbErr) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
        "the database commit failed and its outcome is unknown: {error}"
    )))
}

/// How long the writer keeps asking what became of a transaction whose
/// commit failed, while the database comes back.
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// What became of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Aborted,
    /// The database did not answer within the time given, or no longer
    /// knows the transaction.
    Unknown,
}

/// Asks PostgreSQL what became of transaction `xid` (`txid_status`, made
/// for exactly this: a client that lost its connection while `COMMIT` was
/// in flight), again and again for up to `within` while the database is
/// away or the transaction still runs. The server ends a transaction whose
/// connection it lost, so "in progress" does not last.
pub async fn transaction_outcome(
    db: &DatabaseConnection,
    xid: i64,
    within: std::time::Duration,
) -> Outcome {
    let deadline = tokio::time::Instant::now() + within;
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        let asked = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT txid_status($1)",
                [xid.into()],
            ))
            .await;
        match asked {
            Ok(Some(row)) => match row.try_get_by_index::<Option<String>>(0) {
                Ok(Some(status)) if status == "committed" => return Outcome::Committed,
                Ok(Some(status)) if status == "aborted" => return Outcome::Aborted,
                // "in progress": ask again.
                Ok(Some(_)) => {}
                // Too old to know.
                Ok(None) | Err(_) => return Outcome::Unknown,
            },
            // The database is still away: ask again.
            Err(e) if super::is_unavailable(&e) => {}
            // Not an id this server gave (in the future, say).
            Ok(None) | Err(_) => return Outcome::Unknown,
        }
        if tokio::time::Instant::now() + wait > deadline {
            return Outcome::Unknown;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(1));
    }
}

impl From<DbErr> for Failed {
    fn from(e: DbErr) -> Self {
        Failed::Before(e)
    }
}

/// Writes the jobs atomically: their claims, then the rows of the jobs
/// whose claim held (and of those without one), one multi-row `INSERT` per
/// table, in one transaction. Returns, job by job, whether its claim held.
async fn write(db: &DatabaseConnection, jobs: &[&Job]) -> Result<Vec<bool>, Failed> {
    let backend = db.get_database_backend();
    // `RETURNING <job index>`: which claims found their row (on SQLite they
    // all run in one request, and two jobs may claim the same row).
    let claims: Vec<(usize, Statement)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| {
            let claim = job.claim.as_ref()?;
            let mut statement = backend.build(&claim.0);
            statement.sql.push_str(&format!(" RETURNING {i}"));
            Some((i, statement))
        })
        .collect();
    if claims.is_empty() {
        let rows: Vec<&Row> = jobs.iter().flat_map(|j| &j.rows).collect();
        let mut statements = inserts(backend, &rows);
        match statements.len() {
            0 => {}
            // One statement is atomic on its own, and one caller's: a
            // failure is that caller's answer. Several callers' rows in
            // one PostgreSQL statement go through `in_transaction`, whose
            // failed commit is settled (module comment) rather than
            // retried caller by caller, which could write them twice.
            1 if backend == DbBackend::Sqlite || jobs.len() == 1 => {
                db.execute_raw(statements.remove(0)).await?;
            }
            _ if backend == DbBackend::Sqlite => sqlite_in_one_round_trip(db, statements).await?,
            _ => {
                in_transaction(db, jobs.len(), Vec::new(), |_| statements).await?;
            }
        }
        return Ok(vec![true; jobs.len()]);
    }
    if backend == DbBackend::Sqlite {
        return Ok(sqlite_claim_and_write(db, jobs, claims).await?);
    }
    in_transaction(db, jobs.len(), claims, |held| {
        inserts(backend, &held_rows(jobs, held))
    })
    .await
}

/// PostgreSQL: one transaction making the claims, then running the
/// statements `inserts_for` gives for the claims that held (every job
/// without a claim holds). A failed commit's outcome is unknown.
async fn in_transaction(
    db: &DatabaseConnection,
    jobs: usize,
    claims: Vec<(usize, Statement)>,
    inserts_for: impl FnOnce(&[bool]) -> Vec<Statement>,
) -> Result<Vec<bool>, Failed> {
    let txn = db.begin().await?;
    let xid = match txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT txid_current()",
        ))
        .await
    {
        Ok(Some(row)) => row.try_get_by_index::<i64>(0),
        Ok(None) => Err(DbErr::Custom("txid_current() returned no row".into())),
        Err(e) => Err(e),
    };
    let xid = match xid {
        Ok(xid) => xid,
        Err(e) => {
            let _ = txn.rollback().await;
            return Err(Failed::Before(e));
        }
    };
    let result = async {
        let mut held = vec![true; jobs];
        for (i, claim) in claims {
            held[i] = txn.query_one_raw(claim).await?.is_some();
        }
        for statement in inserts_for(&held) {
            txn.execute_raw(statement).await?;
        }
        Ok(held)
    }
    .await;
    match result {
        Ok(held) => match txn.commit().await {
            Ok(()) => Ok(held),
            Err(error) => Err(Failed::Unknown { error, xid, held }),
        },
        Err(e) => {
            // The error is the answer; a failed rollback only loses the
            // connection, which the pool replaces.
            let _ = txn.rollback().await;
            Err(Failed::Before(e))
        }
    }
}

/// The rows of the jobs that are to be written.
fn held_rows<'a>(jobs: &[&'a Job], held: &[bool]) -> Vec<&'a Row> {
    jobs.iter()
        .zip(held)
        .filter(|(_, held)| **held)
        .flat_map(|(job, _)| &job.rows)
        .collect()
}

/// SQLite, jobs with claims: two requests to the connection's worker
/// thread. The first opens the transaction and makes every claim; the
/// second adds the rows of the jobs whose claim held, and commits.
///
/// The two requests reach the same connection because the writer's pool
/// holds exactly one that is never recycled (`store::writer_connection`).
/// Should that ever not hold, the savepoint catches it: on a connection
/// without the open transaction `RELEASE claimed` fails before any row is
/// written. (A failed SQLite `COMMIT` leaves the transaction open, and it
/// is rolled back: the outcome is always known here.)
async fn sqlite_claim_and_write(
    db: &DatabaseConnection,
    jobs: &[&Job],
    claims: Vec<(usize, Statement)>,
) -> Result<Vec<bool>, DbErr> {
    let claims = joined(
        "BEGIN IMMEDIATE;",
        claims.into_iter().map(|(_, s)| s),
        "SAVEPOINT claimed;",
    );
    let result = async {
        let mut held: Vec<bool> = jobs.iter().map(|job| job.claim.is_none()).collect();
        for row in db.query_all_raw(claims).await? {
            let i: i64 = row.try_get_by_index(0)?;
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| held.get_mut(i)) {
                *slot = true;
            }
        }
        let rows = held_rows(jobs, &held);
        let statements = inserts(DbBackend::Sqlite, &rows);
        db.execute_raw(joined("RELEASE claimed;", statements, "COMMIT;"))
            .await?;
        Ok(held)
    }
    .await;
    if result.is_err() {
        // After an error the transaction may still be open.
        let _ = db.execute_unprepared("ROLLBACK").await;
    }
    result
}

/// The multi-row `INSERT`s for `rows`, one per table, in table order.
fn inserts(backend: DbBackend, rows: &[&Row]) -> Vec<Statement> {
    let mut tokens = Vec::new();
    let mut refresh = Vec::new();
    let mut events = Vec::new();
    for row in rows {
        match row {
            Row::AccessToken(m) => tokens.push(m.clone()),
            Row::RefreshToken(m) => refresh.push(m.clone()),
            Row::Audit(m, _) => events.push(m.clone()),
        }
    }
    let mut statements = Vec::new();
    if !tokens.is_empty() {
        statements.push(access_tokens::Entity::insert_many(tokens).build(backend));
    }
    if !refresh.is_empty() {
        statements.push(refresh_tokens::Entity::insert_many(refresh).build(backend));
    }
    if !events.is_empty() {
        statements.push(audit_events::Entity::insert_many(events).build(backend));
    }
    statements
}

/// SQLite: `BEGIN IMMEDIATE; INSERT …; INSERT …; COMMIT` as one request to
/// the connection's worker thread (SQLite runs a multi-statement string in
/// order, binding the `?` parameters statement by statement), instead of a
/// round trip (two context switches) per statement. After an error the
/// transaction may still be open: it is rolled back.
async fn sqlite_in_one_round_trip(
    db: &DatabaseConnection,
    statements: Vec<Statement>,
) -> Result<(), DbErr> {
    let batch = joined("BEGIN IMMEDIATE;", statements, "COMMIT;");
    match db.execute_raw(batch).await {
        Ok(_) => Ok(()),
        Err(e) => {
            // "no transaction is active" when BEGIN or COMMIT itself failed
            // and nothing is open: nothing to do.
            let _ = db.execute_unprepared("ROLLBACK").await;
            Err(e)
        }
    }
}

/// SQLite statements as one string, `?` parameters in order.
fn joined(head: &str, statements: impl IntoIterator<Item = Statement>, tail: &str) -> Statement {
    let mut sql = String::from(head);
    let mut values = Vec::new();
    for statement in statements {
        sql.push_str(&statement.sql);
        sql.push(';');
        if let Some(v) = statement.values {
            values.extend(v.0);
        }
    }
    sql.push_str(tail);
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

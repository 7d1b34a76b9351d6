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
//! once). A batch that fails is retried row by row, so each caller gets the
//! answer for its own row and one bad row never fails the others.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryTrait, Statement,
    TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::entities::{access_tokens, audit_events, refresh_tokens};

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
    Audit(audit_events::ActiveModel),
}

/// Rows that commit together, and who waits for them.
struct Job {
    rows: Vec<Row>,
    done: oneshot::Sender<Result<(), DbErr>>,
}

/// The handle requests write through; cheap to clone. The writer task ends
/// when the last handle is dropped, after writing what was queued.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Job>,
}

impl Appender {
    /// Starts the writer task on the current tokio runtime, writing on a
    /// connection of its own where that helps (`store::writer_connection`).
    pub fn start(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(super::writer_connection(&db), rx));
        Self { tx }
    }

    /// Adds `rows`, all or none; resolves once they are committed.
    pub async fn add(&self, rows: Vec<Row>) -> Result<(), DbErr> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        self.tx
            .send(Job { rows, done })
            .await
            .map_err(|_| DbErr::Custom("the database writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| DbErr::Custom("the database writer stopped mid-write".into()))?
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let rows: Vec<&Row> = jobs.iter().flat_map(|j| &j.rows).collect();
        match write(&db, &rows).await {
            Ok(()) => {
                for job in jobs.drain(..) {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(e) if jobs.len() == 1 => {
                if let Some(job) = jobs.pop() {
                    let _ = job.done.send(Err(e));
                }
            }
            Err(_) => {
                // Caller by caller: each learns about its own rows only.
                for job in jobs.drain(..) {
                    let rows: Vec<&Row> = job.rows.iter().collect();
                    let result = write(&db, &rows).await;
                    let _ = job.done.send(result);
                }
            }
        }
    }
}

/// Writes `rows` atomically: one multi-row `INSERT` per table, in one
/// transaction when there is more than one.
async fn write(db: &DatabaseConnection, rows: &[&Row]) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let mut statements = inserts(backend, rows);
    match statements.len() {
        0 => Ok(()),
        // One statement is atomic on its own.
        1 => db.execute_raw(statements.remove(0)).await.map(|_| ()),
        _ if backend == DbBackend::Sqlite => sqlite_in_one_round_trip(db, statements).await,
        _ => {
            let txn = db.begin().await?;
            for statement in statements {
                if let Err(e) = txn.execute_raw(statement).await {
                    // The error is the answer; a failed rollback only loses
                    // the connection, which the pool replaces.
                    let _ = txn.rollback().await;
                    return Err(e);
                }
            }
            txn.commit().await
        }
    }
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
            Row::Audit(m) => events.push(m.clone()),
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
    let mut sql = String::from("BEGIN IMMEDIATE;");
    let mut values = Vec::new();
    for statement in statements {
        sql.push_str(&statement.sql);
        sql.push(';');
        if let Some(v) = statement.values {
            values.extend(v.0);
        }
    }
    sql.push_str("COMMIT;");
    let batch = Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
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

//! The embedded SQLite store: one file in WAL mode, where a write is answered only once its
//! commit is on disk.
//!
//! Reads use a pool of read-only sqlx connections. Writes run on one dedicated writer thread
//! that owns the only writing connection: each write operation (a whole admitted group, a
//! whole batch of dispatch results) is handed to it once and runs start to finish there. The
//! thread runs every operation waiting for it in one transaction, each in a savepoint of its
//! own, so admissions, claims, send results and receipts that arrive together share one
//! commit and one fsync, and a page they all touch is written to the WAL once. An operation
//! that fails is rolled back alone; the others are answered only once the commit is on disk.
//! SQLite allows one writer at a time anyway; owning it on one thread also means no busy
//! retries.
//!
//! The fsync runs on a thread of its own (`sqlite-sync`), so that the writer runs the next
//! transaction while the last one goes to disk: the writer commits without syncing
//! (`synchronous=NORMAL`), and the sync thread `fdatasync`s the WAL file and only then answers
//! the operations of every commit made before that call. One fsync covers every commit that
//! came before it, as SQLite's own would with `synchronous=FULL`; the crash recovery of the
//! WAL keeps the last commit whose frames reached the disk whole.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use switchboard_domain::{AccountId, ErrorType, MessageId, MessageStatus, Msisdn, Timestamp};
use switchboard_ledger::{Balance, Credits, EntryKind};
use uuid::Uuid;

use crate::admission::{self, Facts, Step};
use crate::common::{
    ACCOUNT_COLUMNS, AccountRow, ApiKeyRow, DeliveryRow, MessageRow, OptOutRow, SenderRow, WEBHOOK_COLUMNS, WebhookRow,
    delivery_columns, media_columns, message_columns, store_impl,
};
use crate::receipts::{self, NewParts, PartState};
use crate::tally::{self, Tally};
use crate::writes::{self, Changed, Effects, Param, Statement, Writes, changed_columns, opted_out};
use crate::{
    AcceptOutcome, AccountRecord, ApiKeyRecord, Backend, ConnectOptions, DeliveryRecord, DeliveryResult,
    DispatchOutcome, DispatchResult, EventRecord, LedgerRecord, MessageRecord, NewBatch, NewInbound, NewMessage,
    NewReply, OptOutChange, OptOutRecord, ReceiptOutcome, ReceiptUpdate, Result, SealedSecret, SenderChange,
    SenderRecord, StorageError, WebhookRecord,
};

/// The migrations of the SQLite schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const BACKEND: Backend = Backend::Sqlite;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    writer: Writer,
    /// The database file, for the checkpoints that `scrub` runs.
    path: std::path::PathBuf,
    busy_timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database a `sqlite:` URL names.
    pub async fn open(url: &str, options: &ConnectOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout);
        let path = connect.get_filename().to_path_buf();
        let migrate = SqlitePoolOptions::new().max_connections(1).connect_with(connect.clone()).await?;
        MIGRATOR.run(&migrate).await?;
        migrate.close().await;
        let writer = Writer::start(path.clone(), options.acquire_timeout)?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true).pragma("cache_size", "-16384"))
            .await?;
        Ok(Self { read, writer, path, busy_timeout: options.acquire_timeout })
    }
}

store_impl!(SqliteStore);

/// Most jobs one commit carries: enough to share an fsync among every kind of write that is
/// waiting, few enough that one commit stays short.
const JOBS_PER_COMMIT: usize = 64;

/// One write operation handed to the writer thread.
trait Job: Send {
    /// Runs the operation inside the writer's open transaction; whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: with the operation's own result, or with `failed` when the
    /// transaction it ran in did not commit.
    fn answer(self: Box<Self>, failed: Option<&rusqlite::Error>);
}

struct Task<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        if let Some(f) = self.f.take() {
            self.result = Some(f(conn));
        }
        matches!(self.result, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, failed: Option<&rusqlite::Error>) {
        let result = match (self.result, failed) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(e)) => Err(StorageError::Embedded(copy_error(e))),
            (Some(ok), None) => ok,
            (None, None) => Err(StorageError::Corrupt("the write panicked and was rolled back".into())),
        };
        let _ = self.reply.send(result);
    }
}

/// The same failure again, for each caller whose write it undid.
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    let code = e.sqlite_error().copied().unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR));
    rusqlite::Error::SqliteFailure(code, Some(e.to_string()))
}

/// The handle of the writer thread (and of the checkpoint thread, which stops when the last
/// handle is dropped).
#[derive(Debug, Clone)]
struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    _checkpoints: std::sync::Arc<mpsc::Sender<()>>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// Makes what the writer committed durable: `fdatasync` of the WAL file.
type SyncFn = Box<dyn FnMut() -> std::io::Result<()> + Send>;

impl Writer {
    fn start(path: PathBuf, busy_timeout: Duration) -> Result<Self> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(busy_timeout)?;
        // Checkpoints run on their own thread (below), never inside a write. Commits do not
        // sync: the sync thread does, before any write is answered. Deleted content is
        // overwritten with zeros (`secure_delete`), so a copy of the file does not keep what was
        // removed, such as an older version's server secret; it costs no extra page writes for
        // cells freed in pages that are written anyway.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA secure_delete = ON;",
        )?;
        // A read opens the WAL file (creating it if it is missing), so that it can be opened
        // here too; the file lives as long as this connection.
        conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        let wal = wal_file(&path)?;
        let checkpoints = start_checkpointer(&path, busy_timeout)?;
        let jobs = Self::spawn(conn, Box::new(move || wal.sync_data()))?;
        Ok(Self { jobs, _checkpoints: std::sync::Arc::new(checkpoints) })
    }

    /// Starts the writer thread on `conn`, and the sync thread that makes its commits durable
    /// with `sync`. The threads end once the returned sender is dropped.
    fn spawn(conn: Connection, sync: SyncFn) -> Result<mpsc::Sender<Box<dyn Job>>> {
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let durable = Durable::start(sync)?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&conn, &rx, &durable))
            .map_err(|e| StorageError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(jobs)
    }

    /// Runs `f` on the writer thread, inside a transaction it may share with other writes
    /// (each in a savepoint of its own), and waits until that transaction is on disk.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(Task { f: Some(f), result: None, reply }))
            .map_err(|_| StorageError::Corrupt("the SQLite writer has stopped".into()))?;
        rx.await.map_err(|_| StorageError::Corrupt("the SQLite writer dropped a job".into()))?
    }
}

/// Opens the database's WAL file for syncing, and syncs its directory once so that the file
/// itself is sure to be found after a crash.
fn wal_file(path: &std::path::Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    let cannot = |e: std::io::Error| StorageError::Corrupt(format!("cannot open the WAL file for syncing: {e}"));
    let wal = std::fs::File::open(&name).map_err(cannot)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(cannot)?;
    Ok(wal)
}

/// The writer thread: it runs every write waiting for it (up to `JOBS_PER_COMMIT`) in one
/// transaction, each in a savepoint of its own, commits, and hands the commit to the sync
/// thread; it goes on with the next writes while that commit goes to disk.
fn write_loop(conn: &Connection, rx: &mpsc::Receiver<Box<dyn Job>>, durable: &Durable) {
    let mut tx = Transaction::default();
    while let Ok(first) = rx.recv() {
        tx.run(conn, first, durable);
        while tx.jobs.len() < JOBS_PER_COMMIT
            && let Ok(job) = rx.try_recv()
        {
            tx.run(conn, job, durable);
        }
        tx.commit(conn, durable);
    }
}

/// The writer's open transaction and the writes kept in it, which wait for its commit.
#[derive(Default)]
struct Transaction {
    open: bool,
    jobs: Vec<Box<dyn Job>>,
}

impl Transaction {
    /// Runs `job` in a savepoint of the open transaction (beginning one if none is open): one
    /// that fails (or panics) is rolled back alone and told at once; one that succeeds waits
    /// for the commit.
    fn run(&mut self, conn: &Connection, mut job: Box<dyn Job>, durable: &Durable) {
        if let Some(e) = durable.failure() {
            job.answer(Some(&e));
            return;
        }
        if !self.open {
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                job.answer(Some(&e));
                return;
            }
            self.open = true;
        }
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            job.answer(Some(&e));
            return;
        }
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| job.run(conn))).unwrap_or(false);
        let released = if ok { conn.execute_batch("RELEASE job").err() } else { None };
        let kept = ok && released.is_none();
        if !kept && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
        }
        if conn.is_autocommit() {
            // SQLite ended the transaction itself (an I/O error, a full disk): nothing in it
            // was kept.
            let e = released.unwrap_or_else(|| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the transaction was rolled back".into()),
                )
            });
            for j in self.jobs.drain(..) {
                j.answer(Some(&e));
            }
            job.answer(Some(&e));
            self.open = false;
        } else if kept {
            self.jobs.push(job);
        } else {
            job.answer(released.as_ref());
        }
    }

    /// Commits the open transaction, if any, and hands its writes to the sync thread, which
    /// answers them once the commit is on disk.
    fn commit(&mut self, conn: &Connection, durable: &Durable) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let jobs = std::mem::take(&mut self.jobs);
        match conn.execute_batch("COMMIT") {
            Ok(()) => durable.after_sync(jobs),
            Err(failed) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                jobs.into_iter().for_each(|job| job.answer(Some(&failed)));
            }
        }
    }
}

/// The sync thread's side of the writer: committed writes wait here until an fsync made
/// after their commit has returned.
struct Durable {
    committed: mpsc::Sender<Vec<Box<dyn Job>>>,
    /// Set once a sync has failed: what was written since may not be on disk, and no later
    /// sync can say otherwise, so every write fails from then on, until a restart recovers the
    /// database from what the disk holds.
    failed: Arc<AtomicBool>,
}

impl Durable {
    fn start(mut sync: SyncFn) -> Result<Self> {
        let failed = Arc::new(AtomicBool::new(false));
        let (committed, rx) = mpsc::channel::<Vec<Box<dyn Job>>>();
        let poisoned = failed.clone();
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || {
                while let Ok(mut waiting) = rx.recv() {
                    // Everything committed so far is covered by the one sync below.
                    while let Ok(more) = rx.try_recv() {
                        waiting.extend(more);
                    }
                    let synced = if poisoned.load(Ordering::Acquire) {
                        Err(std::io::Error::other("an earlier sync of the WAL failed"))
                    } else {
                        sync()
                    };
                    match synced {
                        Ok(()) => waiting.into_iter().for_each(|job| job.answer(None)),
                        Err(e) => {
                            if !poisoned.swap(true, Ordering::AcqRel) {
                                tracing::error!(
                                    error = %e,
                                    "the SQLite WAL could not be synced to disk; every write fails until a restart"
                                );
                            }
                            let e = sync_error(&e);
                            waiting.into_iter().for_each(|job| job.answer(Some(&e)));
                        }
                    }
                }
            })
            .map_err(|e| StorageError::Corrupt(format!("cannot start the sync thread: {e}")))?;
        Ok(Self { committed, failed })
    }

    /// Hands the writes of a commit to the sync thread, which answers them.
    fn after_sync(&self, done: Vec<Box<dyn Job>>) {
        if let Err(mpsc::SendError(done)) = self.committed.send(done) {
            let e = sync_error(&std::io::Error::other("the sync thread has stopped"));
            done.into_iter().for_each(|job| job.answer(Some(&e)));
        }
    }

    /// The error every write gets once a sync has failed.
    fn failure(&self) -> Option<rusqlite::Error> {
        self.failed
            .load(Ordering::Acquire)
            .then(|| sync_error(&std::io::Error::other("an earlier sync of the WAL failed")))
    }
}

fn sync_error(e: &std::io::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
        Some(format!("cannot sync the WAL to disk: {e}")),
    )
}

/// Copies committed WAL frames into the database file from a connection of its own, so that
/// the writer never stops for a checkpoint. PASSIVE checkpoints do not wait for the writer
/// or readers; the writer restarts the WAL once everything in it has been copied. The thread
/// ends when the returned sender (held by the store) is dropped.
fn start_checkpointer(path: &std::path::Path, busy_timeout: Duration) -> Result<mpsc::Sender<()>> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(200)) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| StorageError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn uuid_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let bytes = row.get_ref(i)?.as_blob()?;
    Uuid::from_slice(bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e)))
}

fn opt_uuid_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    row.get_ref(i)?
        .as_blob_or_null()?
        .map(Uuid::from_slice)
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e)))
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: uuid_at(r, 0)?,
        account_id: uuid_at(r, 1)?,
        direction: r.get(2)?,
        kind: r.get(3)?,
        recipient: r.get(4)?,
        sender: r.get(5)?,
        body: r.get(6)?,
        media_url: r.get(7)?,
        encoding: r.get(8)?,
        segments: r.get(9)?,
        status: r.get(10)?,
        error_type: r.get(11)?,
        error_message: r.get(12)?,
        sms_charged: r.get(13)?,
        mms_charged: r.get(14)?,
        idempotency_key: r.get(15)?,
        request_hash: r.get(16)?,
        attempts: r.get(17)?,
        next_attempt_at: r.get(18)?,
        provider_message_id: r.get(19)?,
        created_at: r.get(20)?,
        updated_at: r.get(21)?,
        sent_at: r.get(22)?,
        batch_id: opt_uuid_at(r, 23)?,
        channel_id: opt_uuid_at(r, 24)?,
        media: r.get(25)?,
        expires_at: r.get(26)?,
        details: r.get(27)?,
        notify_url: r.get(28)?,
    })
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        id: uuid_at(r, 0)?,
        name: r.get(1)?,
        sms_credits: r.get(2)?,
        mms_credits: r.get(3)?,
        rate_limit: r.get(4)?,
        created_at: r.get(5)?,
        refund_carrier_failures: r.get(6)?,
    })
}

fn webhook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookRow> {
    Ok(WebhookRow {
        id: uuid_at(r, 0)?,
        account_id: uuid_at(r, 1)?,
        url: r.get(2)?,
        secret: r.get(3)?,
        events: r.get(4)?,
        active: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        event_id: uuid_at(r, 0)?,
        target: r.get(1)?,
        account_id: uuid_at(r, 2)?,
        endpoint_id: opt_uuid_at(r, 3)?,
        url: r.get(4)?,
        event_type: r.get(5)?,
        message_id: uuid_at(r, 6)?,
        status: r.get(7)?,
        error_type: r.get(8)?,
        occurred_at: r.get(9)?,
        state: r.get(10)?,
        attempts: r.get(11)?,
        next_attempt_at: r.get(12)?,
        last_status: r.get(13)?,
        last_error: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

/// The [`changed_columns!`] of a row, from column `first` on.
fn changed_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Changed> {
    Ok(Changed::from_row(
        uuid_at(r, first)?,
        uuid_at(r, first + 1)?,
        opt_uuid_at(r, first + 2)?,
        r.get(first + 3)?,
        r.get(first + 4)?,
    ))
}

fn sender_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SenderRow> {
    Ok(SenderRow {
        address: r.get(0)?,
        account_id: uuid_at(r, 1)?,
        active: r.get(2)?,
        sms: r.get(3)?,
        mms: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn api_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.get(0)?,
        account_id: uuid_at(r, 1)?,
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn lock_balance(c: &Connection, account: AccountId) -> Result<Option<Balance>> {
    let row: Option<(i64, i64)> = c
        .prepare_cached("SELECT sms_credits, mms_credits FROM accounts WHERE id = ?1")?
        .query_row([account.as_uuid().as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(sms, mms)| Balance::new(Credits::new(sms, mms))).transpose().map_err(Into::into)
}

/// Moves an account's balance by `delta`, refusing to go below zero; returns the balance after.
fn apply_delta(c: &Connection, account: AccountId, delta: Credits) -> Result<Credits> {
    let row: Option<(i64, i64)> = c
        .prepare_cached(
            "UPDATE accounts SET sms_credits = sms_credits + ?1, mms_credits = mms_credits + ?2 \
             WHERE id = ?3 AND sms_credits + ?1 >= 0 AND mms_credits + ?2 >= 0 RETURNING sms_credits, mms_credits",
        )?
        .query_row(params![delta.sms, delta.mms, account.as_uuid().as_bytes().as_slice()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(sms, mms)| Credits::new(sms, mms))
        .ok_or(StorageError::Ledger(switchboard_ledger::LedgerError::InvalidAmount(delta)))
}

fn insert_ledger(c: &Connection, e: &LedgerRecord) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO ledger_entries (id, account_id, kind, sms_delta, mms_delta, sms_balance, mms_balance, message_id, \
         reference, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.id.as_bytes().as_slice(),
        e.account_id.as_uuid().as_bytes().as_slice(),
        e.kind.as_str(),
        e.delta.sms,
        e.delta.mms,
        e.balance_after.sms,
        e.balance_after.mms,
        e.message_id.map(|m| m.as_uuid().as_bytes().to_vec()),
        e.reference,
        e.created_at.millis(),
    ])?;
    Ok(())
}

fn insert_event(c: &Connection, e: &EventRecord) -> Result<()> {
    c.prepare_cached("INSERT INTO message_events (message_id, status, error_type, at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            e.message_id.as_uuid().as_bytes().as_slice(),
            e.status.as_str(),
            e.error_type.map(|t| t.as_str()),
            e.at.millis()
        ])?;
    Ok(())
}

fn insert_message(c: &Connection, m: &MessageRecord) -> Result<()> {
    let mut stmt = c.prepare_cached(concat!(
        "INSERT INTO messages (",
        message_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)"
    ))?;
    let (media_url, media) = media_columns(&m.media);
    stmt.execute(params![
        m.id.as_uuid().as_bytes().as_slice(),
        m.account_id.as_uuid().as_bytes().as_slice(),
        m.direction.as_str(),
        m.kind.as_str(),
        m.to.as_str(),
        m.from.as_str(),
        m.body,
        media_url,
        m.encoding.as_str(),
        i64::from(m.segments),
        m.status.as_str(),
        m.error_type.map(|t| t.as_str()),
        m.error_message,
        m.charged.sms,
        m.charged.mms,
        m.idempotency_key,
        m.request_hash,
        i64::from(m.attempts),
        m.next_attempt_at.millis(),
        m.provider_message_id,
        m.created_at.millis(),
        m.updated_at.millis(),
        m.sent_at.map(Timestamp::millis),
        m.batch_id.map(|b| b.as_uuid().as_bytes().to_vec()),
        m.channel_id.map(|c| c.as_bytes().to_vec()),
        media,
        m.expires_at.map(Timestamp::millis),
        m.details,
        m.notify_url,
    ])?;
    Ok(())
}

fn insert_batch(c: &Connection, b: &NewBatch) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO batches (id, account_id, kind, sender, body, recipients, first_message_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        b.id.as_uuid().as_bytes().as_slice(),
        b.account_id.as_uuid().as_bytes().as_slice(),
        b.kind.as_str(),
        b.from.as_str(),
        b.body,
        i64::from(b.recipients),
        b.first_message_id.as_uuid().as_bytes().as_slice(),
        b.created_at.millis(),
    ])?;
    Ok(())
}

/// Applies the running counts; the last writes of a transaction.
fn apply_tally(c: &Connection, tally: &Tally) -> Result<()> {
    for (account, hour, status, n) in tally.count_changes() {
        c.prepare_cached(tally::UPSERT_COUNT)?.execute(params![account.as_bytes().as_slice(), hour, status, n])?;
    }
    for (batch, sent, failed, sent_at) in tally.batch_changes() {
        c.prepare_cached(tally::UPDATE_BATCH)?.execute(params![sent, failed, sent_at, batch.as_bytes().as_slice()])?;
    }
    Ok(())
}

/// Applies what a write noted beside its rows, as its last steps before committing: events,
/// webhook deliveries, refunds, and the running counts last.
fn finish(c: &Connection, mut fx: Effects) -> Result<()> {
    for e in &fx.events {
        insert_event(c, e)?;
    }
    if !fx.outbox.is_empty() {
        let mut endpoints = Vec::new();
        for account in fx.outbox.accounts() {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE account_id = ?1 AND active"
                ))?
                .query_map([account.as_uuid().as_bytes().as_slice()], webhook_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for row in rows {
                endpoints.push(WebhookRecord::try_from(row)?);
            }
        }
        for d in fx.outbox.plan(&endpoints, Timestamp::now()) {
            insert_delivery(c, &d)?;
        }
    }
    for (account, message, amount, at) in fx.sorted_refunds() {
        let after = apply_delta(c, account, amount)?;
        c.prepare_cached(writes::ZERO_CHARGE)?.execute([message.as_uuid().as_bytes().as_slice()])?;
        insert_ledger(c, &LedgerRecord::for_message(EntryKind::Refund, account, message, amount, after, at))?;
    }
    apply_tally(c, &fx.tally)
}

fn insert_delivery(c: &Connection, d: &DeliveryRecord) -> Result<()> {
    c.prepare_cached(concat!(
        "INSERT INTO webhook_deliveries (",
        delivery_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?
    .execute(params![
        d.event_id.as_uuid().as_bytes().as_slice(),
        d.target,
        d.account_id.as_uuid().as_bytes().as_slice(),
        d.endpoint_id.map(|e| e.as_bytes().to_vec()),
        d.url,
        d.event_type.as_str(),
        d.message_id.as_uuid().as_bytes().as_slice(),
        d.status.as_str(),
        d.error_type.map(|t| t.as_str()),
        d.occurred_at.millis(),
        d.state.as_str(),
        i64::from(d.attempts),
        d.next_attempt_at.millis(),
        d.last_status.map(i64::from),
        d.last_error,
        d.updated_at.millis(),
    ])?;
    Ok(())
}

/// Settles message `id` from its parts if it is still `sent` and they settle it (see
/// [`receipts::settle`]); returns the status it entered.
fn settle_message(
    c: &Connection,
    id: MessageId,
    trigger: Timestamp,
    fx: &mut Effects,
) -> Result<Option<MessageStatus>> {
    let uuid = id.as_uuid();
    let row = c
        .prepare_cached(
            "SELECT m.id, m.account_id, m.batch_id, m.created_at, m.notify_url, m.status, m.sent_at, \
             m.sms_charged, m.mms_charged, a.refund_carrier_failures \
             FROM messages m JOIN accounts a ON a.id = m.account_id WHERE m.id = ?1",
        )?
        .query_row([uuid.as_bytes().as_slice()], |r| {
            Ok((
                changed_row(r, 0)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<i64>>(6)?,
                Credits::new(r.get(7)?, r.get(8)?),
                r.get::<_, bool>(9)?,
            ))
        })
        .optional()?;
    let Some((m, status, sent_at, charged, refund_failures)) = row else { return Ok(None) };
    if status != MessageStatus::Sent.as_str() {
        return Ok(None);
    }
    let parts = c
        .prepare_cached(
            "SELECT part, status, error_type, description FROM message_parts WHERE message_id = ?1 ORDER BY part",
        )?
        .query_map([uuid.as_bytes().as_slice()], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(part, status, error_type, description)| PartState::from_row(part, &status, error_type, description))
        .collect::<Result<Vec<_>>>()?;
    let Some(s) = receipts::settle(&parts, charged, refund_failures) else { return Ok(None) };
    let at = receipts::settled_at(trigger, sent_at.map(Timestamp::from_millis));
    let n = c
        .prepare_cached(
            "UPDATE messages SET status = ?1, error_type = ?2, error_message = ?3, updated_at = ?4 \
             WHERE id = ?5 AND status = 'sent'",
        )?
        .execute(params![
            s.status.as_str(),
            s.error_type.map(|t| t.as_str()),
            s.error_message,
            at.millis(),
            uuid.as_bytes().as_slice()
        ])?;
    if n == 0 {
        return Ok(None);
    }
    fx.moved(&m, MessageStatus::Sent, s.status, s.error_type, at);
    if let Some(amount) = s.refund {
        fx.refund(&m, amount, at);
    }
    Ok(Some(s.status))
}

fn load_facts(c: &Connection, batch: &[NewMessage]) -> Result<Facts> {
    let mut facts = Facts::default();
    let mut accounts: Vec<AccountId> = batch.iter().map(|m| m.account_id).collect();
    accounts.sort();
    accounts.dedup();
    for account in accounts {
        if let Some(balance) = lock_balance(c, account)? {
            facts.balances.insert(account, balance);
        }
    }
    for m in batch {
        let Some(key) = &m.idempotency_key else { continue };
        if facts.by_key.contains_key(&(m.account_id, key.clone())) {
            continue;
        }
        let row = c
            .prepare_cached(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE account_id = ?1 AND idempotency_key = ?2"
            ))?
            .query_row(params![m.account_id.as_uuid().as_bytes().as_slice(), key], message_row)
            .optional()?;
        if let Some(row) = row {
            facts.by_key.insert((m.account_id, key.clone()), row.try_into()?);
        }
    }
    let mut senders: HashMap<&Msisdn, Option<SenderRecord>> = HashMap::new();
    for m in batch {
        let sender = match senders.get(&m.from) {
            Some(s) => s.clone(),
            None => {
                let s = c
                    .prepare_cached(
                        "SELECT address, account_id, active, sms, mms, created_at FROM senders WHERE address = ?1",
                    )?
                    .query_row([m.from.as_str()], sender_row)
                    .optional()?
                    .map(SenderRecord::try_from)
                    .transpose()?;
                senders.insert(&m.from, s.clone());
                s
            }
        };
        if sender.is_none() {
            continue;
        }
        let pair = (m.from.clone(), m.to.clone());
        if facts.opted_out.contains(&pair) {
            continue;
        }
        let opted: bool = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM opt_outs WHERE sender = ?1 AND recipient = ?2)")?
            .query_row([m.from.as_str(), m.to.as_str()], |r| r.get(0))?;
        if opted {
            facts.opted_out.insert(pair);
        }
    }
    facts.senders = senders.into_iter().filter_map(|(k, v)| v.map(|v| (k.clone(), v))).collect();
    Ok(facts)
}

fn accept_group(tx: &Connection, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>> {
    let mut facts = load_facts(tx, batch)?;
    let steps = admission::plan(batch, &mut facts);
    let mut deltas: HashMap<AccountId, Credits> = HashMap::new();
    let mut fx = Effects::default();
    for step in &steps {
        let Step::Insert { record, charge, new_batch } = step else { continue };
        if let Some(b) = new_batch {
            insert_batch(tx, b)?;
        }
        insert_message(tx, record)?;
        fx.tally.insert(record.account_id, record.batch_id, record.created_at, record.status);
        let changed = Changed::of(record);
        for (status, error_type) in admission::initial_events(record) {
            fx.event(&changed, status, error_type, record.created_at);
        }
        if let Some((delta, after)) = charge {
            let sum = deltas.entry(record.account_id).or_insert(Credits::ZERO);
            *sum = sum.checked_add(*delta).ok_or(StorageError::Corrupt("credit overflow".into()))?;
            insert_ledger(
                tx,
                &LedgerRecord::for_message(
                    EntryKind::Charge,
                    record.account_id,
                    record.id,
                    *delta,
                    *after,
                    record.created_at,
                ),
            )?;
        }
    }
    for (account, delta) in deltas {
        let after = apply_delta(tx, account, delta)?;
        if Some(after) != facts.balances.get(&account).map(|b| b.credits()) {
            return Err(StorageError::Corrupt(format!("balance of {account} moved during admission")));
        }
    }
    finish(tx, fx)?;
    Ok(steps.iter().map(Step::outcome).collect())
}

fn record_group(tx: &Connection, results: &[DispatchResult]) -> Result<Vec<MessageId>> {
    let mut changed = Vec::with_capacity(results.len());
    let mut fx = Effects::default();
    let mut new_parts = NewParts::default();
    for r in results {
        let id = r.id.as_uuid();
        let (id, attempt) = (id.as_bytes().as_slice(), i64::from(r.attempt));
        match &r.outcome {
            DispatchOutcome::Sent { provider_message_id, parts } => {
                let done = tx
                    .prepare_cached(concat!(
                        "UPDATE messages SET status = 'sent', sent_at = ?1, updated_at = ?1, provider_message_id = ?2, \
                         error_message = NULL WHERE id = ?3 AND status = 'queued' AND attempts = ?4 RETURNING ",
                        changed_columns!()
                    ))?
                    .query_row(params![r.at.millis(), provider_message_id, id, attempt], |row| changed_row(row, 0))
                    .optional()?;
                let Some(m) = done else { continue };
                fx.moved(&m, MessageStatus::Queued, MessageStatus::Sent, None, r.at);
                fx.tally.sent_at(m.batch, r.at);
                changed.push(r.id);
                // A part that a receipt reached first keeps the receipt's status.
                let mut early = false;
                for (part_ref, part) in new_parts.of(provider_message_id, parts) {
                    let status: String = tx
                        .prepare_cached(
                            "INSERT INTO message_parts (provider_ref, message_id, part, status, at) \
                             VALUES (?1, ?2, ?3, 'sent', ?4) ON CONFLICT (provider_ref) DO UPDATE \
                             SET message_id = excluded.message_id, part = excluded.part RETURNING status",
                        )?
                        .query_row(params![part_ref, id, i64::from(part), r.at.millis()], |row| row.get(0))?;
                    early |= status != MessageStatus::Sent.as_str();
                }
                if early {
                    settle_message(tx, r.id, r.at, &mut fx)?;
                }
            }
            DispatchOutcome::Retry { next_attempt_at, error } => {
                let n = tx
                    .prepare_cached(
                        "UPDATE messages SET next_attempt_at = ?1, error_message = ?2, updated_at = ?3 \
                         WHERE id = ?4 AND status = 'queued' AND attempts = ?5",
                    )?
                    .execute(params![next_attempt_at.millis(), error, r.at.millis(), id, attempt])?;
                if n == 1 {
                    changed.push(r.id);
                }
            }
            DispatchOutcome::Failed { .. } | DispatchOutcome::Expired => {
                let Some((status, error_type, message, refund)) = r.outcome.ending() else { continue };
                let ended = tx
                    .prepare_cached(concat!(
                        "UPDATE messages SET status = ?6, error_type = ?1, error_message = ?2, updated_at = ?3 \
                         WHERE id = ?4 AND status = 'queued' AND attempts = ?5 RETURNING sms_charged, mms_charged, ",
                        changed_columns!()
                    ))?
                    .query_row(
                        params![error_type.map(|t| t.as_str()), message, r.at.millis(), id, attempt, status.as_str()],
                        |row| Ok((Credits::new(row.get(0)?, row.get(1)?), changed_row(row, 2)?)),
                    )
                    .optional()?;
                let Some((charged, m)) = ended else { continue };
                fx.moved(&m, MessageStatus::Queued, status, error_type, r.at);
                changed.push(r.id);
                if refund {
                    fx.refund(&m, charged, r.at);
                }
            }
        }
    }
    finish(tx, fx)?;
    Ok(changed)
}

/// Moves scheduled messages whose time has come into the queue, with their `queued` events;
/// those whose recipient has opted out since end failed, refunded.
fn promote_scheduled(tx: &Connection, now: Timestamp) -> Result<()> {
    let promoted = tx
        .prepare_cached(concat!(
            "UPDATE messages SET status = CASE WHEN ",
            opted_out!(),
            " THEN 'failed' ELSE 'queued' END, error_type = CASE WHEN ",
            opted_out!(),
            " THEN 'opted_out' ELSE error_type END, error_message = CASE WHEN ",
            opted_out!(),
            " THEN ?3 ELSE error_message END, updated_at = ?1 WHERE id IN \
             (SELECT id FROM messages WHERE status = 'scheduled' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at LIMIT ?2) RETURNING status, sms_charged, mms_charged, ",
            changed_columns!()
        ))?
        .query_map(
            params![now.millis(), i64::from(crate::common::PROMOTE_BATCH), ErrorType::OptedOut.description()],
            |r| Ok((r.get::<_, String>(0)?, Credits::new(r.get(1)?, r.get(2)?), changed_row(r, 3)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut fx = Effects::default();
    for (status, charged, m) in promoted {
        if status == MessageStatus::Failed.as_str() {
            fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Failed, Some(ErrorType::OptedOut), now);
            fx.refund(&m, charged, now);
        } else {
            fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Queued, None, now);
        }
    }
    finish(tx, fx)
}

fn run_statements(tx: &Connection, statements: &[Statement]) -> Result<Vec<u64>> {
    let mut counts = Vec::with_capacity(statements.len());
    for (sql, params) in statements {
        let mut stmt = tx.prepare_cached(sql)?;
        for (i, param) in params.iter().enumerate() {
            let name = format!("${}", i + 1);
            let Some(index) = stmt.parameter_index(&name)? else { continue };
            match param {
                Param::Uuid(u) => stmt.raw_bind_parameter(index, u.as_bytes().as_slice())?,
                Param::Text(t) => stmt.raw_bind_parameter(index, t)?,
                Param::Int(n) => stmt.raw_bind_parameter(index, n)?,
                Param::Bool(b) => stmt.raw_bind_parameter(index, b)?,
                Param::Bytes(b) => stmt.raw_bind_parameter(index, b)?,
            }
        }
        let n = stmt.raw_execute().map_err(|e| {
            if unique_violation(&e) { StorageError::Conflict("already exists".into()) } else { e.into() }
        })?;
        counts.push(n as u64);
    }
    Ok(counts)
}

fn cancel(tx: &Connection, account: AccountId, id: MessageId, at: Timestamp) -> Result<()> {
    let (uuid, account_uuid) = (id.as_uuid(), account.as_uuid());
    let canceled = tx
        .prepare_cached(concat!(
            "UPDATE messages SET status = 'canceled', updated_at = ?1 \
             WHERE id = ?2 AND account_id = ?3 AND status = 'scheduled' RETURNING sms_charged, mms_charged, ",
            changed_columns!()
        ))?
        .query_row(params![at.millis(), uuid.as_bytes().as_slice(), account_uuid.as_bytes().as_slice()], |row| {
            Ok((Credits::new(row.get(0)?, row.get(1)?), changed_row(row, 2)?))
        })
        .optional()?;
    let Some((charged, m)) = canceled else {
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM messages WHERE id = ?1 AND account_id = ?2",
                params![uuid.as_bytes().as_slice(), account_uuid.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        return Err(match status {
            None => StorageError::NotFound,
            Some(status) => StorageError::Conflict(format!("the message is {status}, not scheduled")),
        });
    };
    let mut fx = Effects::default();
    fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Canceled, None, at);
    fx.refund(&m, charged, at);
    finish(tx, fx)?;
    Ok(())
}

fn apply_receipts(tx: &Connection, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
    let mut fx = Effects::default();
    let mut out = Vec::with_capacity(receipts.len());
    for r in receipts {
        if !receipts::is_receipt_status(r.status) {
            out.push(ReceiptOutcome::Ignored);
            continue;
        }
        let part = tx
            .prepare_cached(writes::UPSERT_RECEIPT)?
            .query_row(
                params![
                    r.provider_ref,
                    r.status.as_str(),
                    r.error_type.map(|t| t.as_str()),
                    r.description,
                    r.at.millis()
                ],
                |row| opt_uuid_at(row, 0),
            )
            .optional()?;
        out.push(match part {
            None => ReceiptOutcome::Ignored,
            Some(None) => ReceiptOutcome::Unmatched,
            Some(Some(message)) => {
                let message = MessageId::from_uuid(message);
                receipts::applied(message, settle_message(tx, message, r.at, &mut fx)?)
            }
        });
    }
    finish(tx, fx)?;
    Ok(out)
}

fn receive(tx: &Connection, inbound: &NewInbound, change: OptOutChange, reply: Option<&NewReply>) -> Result<bool> {
    let account = tx
        .prepare_cached("SELECT account_id FROM senders WHERE address = ?1")?
        .query_row([inbound.to.as_str()], |r| uuid_at(r, 0))
        .optional()?
        .map(AccountId::from_uuid)
        .ok_or(StorageError::NotFound)?;
    let account_bytes = account.as_uuid();
    let account_bytes = account_bytes.as_bytes().as_slice();
    let channel = tx
        .prepare_cached(
            "SELECT id FROM channels WHERE account_id = ?1 AND sender = ?2 AND active \
             ORDER BY created_at, id LIMIT 1",
        )?
        .query_row(params![account_bytes, inbound.to.as_str()], |r| uuid_at(r, 0))
        .optional()?;
    let conflict = |e: StorageError| match e {
        StorageError::Embedded(e) if unique_violation(&e) => StorageError::Conflict("message id".into()),
        e => e,
    };
    let message = crate::inbound::inbound_record(inbound, account, channel);
    insert_message(tx, &message).map_err(conflict)?;
    let mut fx = Effects::default();
    fx.event(&Changed::of(&message), MessageStatus::Received, None, inbound.received_at);
    let changed = match change {
        OptOutChange::Keep => 0,
        OptOutChange::OptOut => tx
            .prepare_cached(
                "INSERT INTO opt_outs (sender, recipient, account_id, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (sender, recipient) DO NOTHING",
            )?
            .execute(params![
                inbound.to.as_str(),
                inbound.from.as_str(),
                account_bytes,
                inbound.received_at.millis()
            ])?,
        OptOutChange::OptIn => tx
            .prepare_cached("DELETE FROM opt_outs WHERE sender = ?1 AND recipient = ?2 AND account_id = ?3")?
            .execute(params![inbound.to.as_str(), inbound.from.as_str(), account_bytes])?,
    };
    if let Some(reply) = reply {
        let now = Timestamp::now();
        let record = crate::inbound::reply_record(inbound, reply, account, channel, now);
        insert_message(tx, &record).map_err(conflict)?;
        fx.tally.insert(account, None, now, record.status);
        let m = Changed::of(&record);
        for (status, error_type) in admission::initial_events(&record) {
            fx.event(&m, status, error_type, now);
        }
    }
    finish(tx, fx)?;
    Ok(changed > 0)
}

fn claim_webhooks(
    tx: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
    busy: &[String],
) -> Result<Vec<DeliveryRecord>> {
    let busy = serde_json::to_string(busy).map_err(|e| StorageError::Corrupt(format!("busy targets: {e}")))?;
    let rows = tx
        .prepare_cached(concat!(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?1, updated_at = ?2 \
             WHERE (event_id, target) IN (SELECT event_id, target FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= ?2 AND target NOT IN (SELECT value FROM json_each(?4)) \
             ORDER BY next_attempt_at LIMIT ?3) RETURNING ",
            delivery_columns!()
        ))?
        .query_map(params![lease_until.millis(), now.millis(), i64::from(limit), busy], delivery_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut secrets: HashMap<Uuid, Option<Vec<u8>>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut d = DeliveryRecord::try_from(row)?;
        if let Some(endpoint) = d.endpoint_id {
            let secret = match secrets.get(&endpoint) {
                Some(s) => s.clone(),
                None => {
                    let s: Option<Vec<u8>> = tx
                        .prepare_cached("SELECT secret FROM webhook_endpoints WHERE id = ?1")?
                        .query_row([endpoint.as_bytes().as_slice()], |r| r.get(0))
                        .optional()?;
                    secrets.insert(endpoint, s.clone());
                    s
                }
            };
            let Some(secret) = secret else {
                // Its endpoint was deleted while the event was being recorded.
                tx.prepare_cached(
                    "UPDATE webhook_deliveries SET state = 'canceled', updated_at = ?1 \
                     WHERE event_id = ?2 AND target = ?3",
                )?
                .execute(params![
                    now.millis(),
                    d.event_id.as_uuid().as_bytes().as_slice(),
                    d.target
                ])?;
                continue;
            };
            d.secret = Some(SealedSecret(secret));
        }
        out.push(d);
    }
    out.sort_by(|a, b| (a.event_id, &a.target).cmp(&(b.event_id, &b.target)));
    Ok(out)
}

fn apply_delivery_results(tx: &Connection, results: &[DeliveryResult]) -> Result<()> {
    for r in writes::sorted_results(results) {
        let event = r.event_id.as_uuid();
        let event = event.as_bytes().as_slice();
        let attempt = i64::from(r.attempt);
        let Some((state, next)) = writes::delivery_change(&r.outcome) else {
            tx.prepare_cached(writes::RELEASE_DELIVERY)?.execute(params![
                r.record.at.millis(),
                event,
                r.target,
                attempt
            ])?;
            continue;
        };
        let n = tx.prepare_cached(writes::FINISH_DELIVERY)?.execute(params![
            state.as_str(),
            next.map(Timestamp::millis),
            r.record.status_code.map(i64::from),
            r.record.error,
            writes::finished_at(r).millis(),
            event,
            r.target,
            attempt,
        ])?;
        if n == 1 {
            tx.prepare_cached(writes::INSERT_ATTEMPT)?.execute(params![
                event,
                r.target,
                attempt,
                r.record.at.millis(),
                r.record.status_code.map(i64::from),
                r.record.error,
                i64::from(r.record.duration_ms),
            ])?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Writes for SqliteStore {
    async fn create_account(&self, name: &str) -> Result<AccountRecord> {
        let record = AccountRecord {
            id: AccountId::new(),
            name: name.to_owned(),
            balance: Credits::ZERO,
            rate_limit: None,
            refund_carrier_failures: false,
            created_at: Timestamp::now(),
        };
        let r = record.clone();
        self.writer
            .run(move |c| {
                c.execute(
                    "INSERT INTO accounts (id, name, sms_credits, mms_credits, created_at) VALUES (?1, ?2, 0, 0, ?3)",
                    params![r.id.as_uuid().as_bytes().as_slice(), r.name, r.created_at.millis()],
                )?;
                Ok(())
            })
            .await?;
        Ok(record)
    }

    async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord> {
        self.writer
            .run(move |c| {
                c.query_row(
                    &format!("UPDATE accounts SET rate_limit = ?1 WHERE id = ?2 RETURNING {ACCOUNT_COLUMNS}"),
                    params![limit.map(i64::from), account.as_uuid().as_bytes().as_slice()],
                    account_row,
                )
                .optional()?
                .map(AccountRecord::from)
                .ok_or(StorageError::NotFound)
            })
            .await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let k = key.clone();
        self.writer
            .run(move |c| {
                c.execute(
                    "INSERT INTO api_keys (id, account_id, name, secret_hash, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                    params![k.id, k.account_id.as_uuid().as_bytes().as_slice(), k.name, k.secret_hash, k.created_at.millis()],
                )
                .map_err(|e| if unique_violation(&e) { StorageError::Conflict("key id".into()) } else { e.into() })?;
                Ok(())
            })
            .await
    }

    async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord> {
        let id = id.to_owned();
        self.writer
            .run(move |c| {
                let row = c
                    .query_row(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2 AND account_id = ?3 \
                         RETURNING id, account_id, name, secret_hash, created_at, revoked_at",
                        params![at.millis(), id, account.as_uuid().as_bytes().as_slice()],
                        api_key_row,
                    )
                    .optional()?;
                row.map(Into::into).ok_or(StorageError::NotFound)
            })
            .await
    }

    async fn create_sender(&self, s: &SenderRecord) -> Result<()> {
        let s = s.clone();
        self.writer
            .run(move |c| {
                c.execute(
                    "INSERT INTO senders (address, account_id, active, sms, mms, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![s.address.as_str(), s.account_id.as_uuid().as_bytes().as_slice(), s.active, s.sms, s.mms, s.created_at.millis()],
                )
                .map_err(|e| if unique_violation(&e) { StorageError::Conflict("sender address is assigned".into()) } else { e.into() })?;
                Ok(())
            })
            .await
    }

    async fn update_sender(&self, account: AccountId, address: &str, ch: SenderChange) -> Result<SenderRecord> {
        let address = address.to_owned();
        self.writer
            .run(move |c| {
                let row = c
                    .query_row(
                        "UPDATE senders SET active = COALESCE(?1, active), sms = COALESCE(?2, sms), mms = COALESCE(?3, mms) \
                         WHERE address = ?4 AND account_id = ?5 RETURNING address, account_id, active, sms, mms, created_at",
                        params![ch.active, ch.sms, ch.mms, address, account.as_uuid().as_bytes().as_slice()],
                        sender_row,
                    )
                    .optional()?;
                row.ok_or(StorageError::NotFound)?.try_into()
            })
            .await
    }

    async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord> {
        let reference = reference.map(str::to_owned);
        self.writer
            .run(move |c| {
                let tx = c;
                let mut balance = lock_balance(tx, account)?.ok_or(StorageError::NotFound)?;
                let delta = balance.top_up(amount)?;
                let after = apply_delta(tx, account, delta)?;
                let entry = LedgerRecord {
                    id: Uuid::now_v7(),
                    account_id: account,
                    kind: EntryKind::Topup,
                    delta,
                    balance_after: after,
                    message_id: None,
                    reference,
                    created_at: Timestamp::now(),
                };
                insert_ledger(tx, &entry)?;
                Ok(entry)
            })
            .await
    }

    async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord> {
        let (sender, recipient) = (sender.to_owned(), recipient.to_owned());
        self.writer
            .run(move |c| {
                c.execute(
                    "INSERT INTO opt_outs (sender, recipient, account_id, created_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (sender, recipient) DO NOTHING",
                    params![sender, recipient, account.as_uuid().as_bytes().as_slice(), Timestamp::now().millis()],
                )?;
                let row = c.query_row(
                    "SELECT sender, recipient, account_id, created_at FROM opt_outs WHERE sender = ?1 AND recipient = ?2",
                    [&sender, &recipient],
                    |r| Ok(OptOutRow { sender: r.get(0)?, recipient: r.get(1)?, account_id: uuid_at(r, 2)?, created_at: r.get(3)? }),
                )?;
                row.try_into()
            })
            .await
    }

    async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()> {
        let (sender, recipient) = (sender.to_owned(), recipient.to_owned());
        self.writer
            .run(move |c| {
                let n = c.execute(
                    "DELETE FROM opt_outs WHERE sender = ?1 AND recipient = ?2 AND account_id = ?3",
                    params![sender, recipient, account.as_uuid().as_bytes().as_slice()],
                )?;
                if n == 0 { Err(StorageError::NotFound) } else { Ok(()) }
            })
            .await
    }

    async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.writer.run(move |c| accept_group(c, &batch)).await
    }

    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>> {
        self.writer
            .run(move |c| {
                let tx = c;
                promote_scheduled(tx, now)?;
                let mut out = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(concat!(
                        "UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?1, updated_at = ?2 \
                         WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= ?2 \
                         ORDER BY next_attempt_at LIMIT ?3) RETURNING ",
                        message_columns!()
                    ))?;
                    let rows =
                        stmt.query_map(params![lease_until.millis(), now.millis(), i64::from(limit)], message_row)?;
                    for row in rows {
                        out.push(row?.try_into()?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let results = results.to_vec();
        self.writer.run(move |c| record_group(c, &results)).await
    }

    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<()> {
        self.writer.run(move |c| cancel(c, account, id, at)).await
    }

    async fn record_receipts(&self, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
        let receipts = receipts.to_vec();
        self.writer.run(move |c| apply_receipts(c, &receipts)).await
    }

    async fn receive_inbound(
        &self,
        inbound: &NewInbound,
        change: OptOutChange,
        reply: Option<&NewReply>,
    ) -> Result<bool> {
        let (inbound, reply) = (inbound.clone(), reply.cloned());
        self.writer.run(move |c| receive(c, &inbound, change, reply.as_ref())).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> Result<Vec<DeliveryRecord>> {
        let busy = busy.to_vec();
        self.writer.run(move |c| claim_webhooks(c, now, lease_until, limit, &busy)).await
    }

    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<()> {
        let results = results.to_vec();
        self.writer.run(move |c| apply_delivery_results(c, &results)).await
    }

    async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>> {
        self.writer.run(move |c| run_statements(c, &statements)).await
    }

    async fn scrub(&self) -> Result<()> {
        // A connection of its own: a checkpoint cannot run inside the writer's transactions.
        let path = self.path.clone();
        let timeout = self.busy_timeout;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(timeout)?;
            let (busy, _, _): (i64, i64, i64) =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            if busy != 0 {
                tracing::warn!("the WAL could not be emptied now; older page images stay in it until it is");
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Corrupt(format!("the WAL checkpoint stopped: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task<F>(f: F) -> (Box<dyn Job>, tokio::sync::oneshot::Receiver<Result<()>>)
    where
        F: FnOnce(&Connection) -> Result<()> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        (Box::new(Task { f: Some(f), result: None, reply }), rx)
    }

    fn insert(c: &Connection, name: &str) -> Result<()> {
        c.execute("INSERT INTO settings (name, value) VALUES (?1, x'00')", [name])?;
        Ok(())
    }

    /// A fresh database file with the schema's `settings` table, and a second connection to
    /// read it with.
    fn scratch(name: &str) -> (std::path::PathBuf, Connection, Connection) {
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             CREATE TABLE settings (name TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )
        .unwrap();
        let reader = Connection::open(&path).unwrap();
        (dir, conn, reader)
    }

    fn count(reader: &Connection) -> i64 {
        reader.query_row("SELECT count(*) FROM settings", [], |r| r.get(0)).unwrap()
    }

    /// A write is committed at once but answered only when a sync made after its commit has
    /// returned.
    #[tokio::test]
    async fn a_write_is_answered_only_after_its_sync() {
        let (dir, conn, reader) = scratch("sync");
        let (entered, in_sync) = mpsc::channel::<()>();
        let (release, gate) = mpsc::channel::<()>();
        let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = syncs.clone();
        // The first sync is held until the test releases it; later ones return at once.
        let jobs = Writer::spawn(
            conn,
            Box::new(move || {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    entered.send(()).unwrap();
                    gate.recv().unwrap();
                }
                Ok(())
            }),
        )
        .unwrap();

        let (first, mut first_done) = task(|c| insert(c, "a"));
        jobs.send(first).unwrap();
        in_sync.recv().unwrap();
        // Committed, so another connection sees it, but not answered.
        assert_eq!(count(&reader), 1);
        assert!(first_done.try_recv().is_err());

        // Writes that come meanwhile are committed at once, and wait for a sync of their own.
        let (second, mut second_done) = task(|c| insert(c, "b"));
        let (third, mut third_done) = task(|c| insert(c, "c"));
        jobs.send(second).unwrap();
        jobs.send(third).unwrap();
        while count(&reader) < 3 {
            std::thread::yield_now();
        }
        assert!(first_done.try_recv().is_err());
        assert!(second_done.try_recv().is_err());
        assert!(third_done.try_recv().is_err());

        release.send(()).unwrap();
        first_done.await.unwrap().unwrap();
        second_done.await.unwrap().unwrap();
        third_done.await.unwrap().unwrap();
        assert!(syncs.load(Ordering::SeqCst) >= 2);
        drop(jobs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A failed sync fails the writes it covered, and every write after it, which is not even
    /// committed: nothing is answered as durable that may not be.
    #[tokio::test]
    async fn a_failed_sync_fails_every_write_from_then_on() {
        let (dir, conn, reader) = scratch("sync-fails");
        let jobs = Writer::spawn(conn, Box::new(|| Err(std::io::Error::other("disk gone")))).unwrap();
        let (first, first_done) = task(|c| insert(c, "a"));
        jobs.send(first).unwrap();
        let failed = first_done.await.unwrap().unwrap_err();
        assert!(failed.to_string().contains("cannot sync the WAL"), "{failed}");
        assert_eq!(count(&reader), 1);

        let (second, second_done) = task(|c| insert(c, "b"));
        jobs.send(second).unwrap();
        assert!(second_done.await.unwrap().is_err());
        assert_eq!(count(&reader), 1);
        drop(jobs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writes that wait together share a transaction, and one that fails or panics undoes
    /// only its own rows.
    #[tokio::test]
    async fn a_failed_write_in_a_shared_commit_undoes_only_itself() {
        let dir = std::env::temp_dir().join(format!("switchboard-writer-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.db");
        let store =
            SqliteStore::open(&format!("sqlite://{}", path.display()), &ConnectOptions::default()).await.unwrap();
        let writer = store.writer.clone();

        // The first write holds the writer until the others are queued behind it, so that
        // they are drained as one group.
        let (open, gate) = mpsc::channel::<()>();
        let (first, first_done) = task(move |c| {
            gate.recv().unwrap();
            insert(c, "a")
        });
        writer.jobs.send(first).unwrap();
        let (ok1, r1) = task(|c| insert(c, "b"));
        let (failing, r2) = task(|c| {
            insert(c, "c")?;
            Err(StorageError::Conflict("refused after writing".into()))
        });
        let (panicking, r3) = task(|c| {
            insert(c, "d").unwrap();
            panic!("a write that panics");
        });
        let (ok2, r4) = task(|c| insert(c, "e"));
        for job in [ok1, failing, panicking, ok2] {
            writer.jobs.send(job).unwrap();
        }
        open.send(()).unwrap();

        first_done.await.unwrap().unwrap();
        r1.await.unwrap().unwrap();
        assert!(matches!(r2.await.unwrap(), Err(StorageError::Conflict(_))));
        assert!(matches!(r3.await.unwrap(), Err(StorageError::Corrupt(_))));
        r4.await.unwrap().unwrap();

        let names: Vec<String> = writer
            .run(|c| {
                let mut stmt = c.prepare("SELECT name FROM settings WHERE length(name) = 1 ORDER BY name")?;
                let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(names, ["a", "b", "e"]);
        // Nothing was left open: a reader on another connection sees the same rows.
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM settings WHERE length(name) = 1")
            .fetch_one(&store.read)
            .await
            .unwrap();
        assert_eq!(n, 3);
        drop(store);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

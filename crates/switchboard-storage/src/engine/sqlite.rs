//! The embedded SQLite engine: one file in WAL mode, on one driver (rusqlite), where a write
//! is answered only once its commit is on disk.
//!
//! Reads run on a small pool of read-only connections, each read on a blocking thread. Writes
//! run on one dedicated writer thread that owns the only writing connection: each write
//! operation (a whole admitted group, a whole batch of dispatch results) is handed to it once
//! and runs start to finish there. The thread runs every operation waiting for it in one
//! transaction, each in a savepoint of its own, so admissions, claims, send results and
//! receipts that arrive together share one commit and one fsync, and a page they all touch is
//! written to the WAL once. An operation that fails is rolled back alone; the others are
//! answered only once the commit is on disk. SQLite allows one writer at a time anyway; owning
//! it on one thread also means no busy retries.
//!
//! The fsync runs on a thread of its own (`sqlite-sync`), so that the writer runs the next
//! transaction while the last one goes to disk: the writer commits without syncing
//! (`synchronous=NORMAL`), and the sync thread `fdatasync`s the WAL file and only then answers
//! the operations of every commit made before that call. One fsync covers every commit that
//! came before it, as SQLite's own would with `synchronous=FULL`; the crash recovery of the
//! WAL keeps the last commit whose frames reached the disk whole.
//!
//! An operation is written as async code over [`Tx`], but nothing in it waits on this engine:
//! every statement runs at once, so the writer (or reader) drives the whole operation to its
//! end in one poll.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha384};

use super::{Engine, Op, Param, Row, Tx, Value};
use crate::{Backend, ConnectOptions, Result, StorageError};

/// The migrations of the SQLite schema: (version, file name, SQL), applied in order. They are
/// recorded in `_sqlx_migrations`, the table (and checksums) that earlier versions' migrator
/// kept, so a database they made upgrades in place.
const MIGRATIONS: [(i64, &str, &str); 5] = [
    (1, "0001_init.sql", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "0002_batches_and_counts.sql", include_str!("../../migrations/sqlite/0002_batches_and_counts.sql")),
    (
        3,
        "0003_channels_templates_schedules.sql",
        include_str!("../../migrations/sqlite/0003_channels_templates_schedules.sql"),
    ),
    (
        4,
        "0004_receipts_webhooks_inbound.sql",
        include_str!("../../migrations/sqlite/0004_receipts_webhooks_inbound.sql"),
    ),
    (5, "0005_rate_budgets.sql", include_str!("../../migrations/sqlite/0005_rate_budgets.sql")),
];

/// The SQLite engine.
#[derive(Debug, Clone)]
pub(crate) struct SqliteEngine {
    writer: Writer,
    readers: Arc<Readers>,
    /// The database file, for the checkpoints that `scrub` runs.
    path: PathBuf,
    busy_timeout: Duration,
}

impl SqliteEngine {
    /// Opens (creating if missing) and migrates the database a `sqlite:` URL names.
    pub(crate) async fn open(url: &str, options: &ConnectOptions) -> Result<Self> {
        let path = path_of(url)?;
        let busy_timeout = options.acquire_timeout;
        let max_readers = options.max_connections.max(1) as usize;
        let (writer, path) = tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(busy_timeout)?;
            // Checkpoints run on their own thread (below), never inside a write. Commits do not
            // sync: the sync thread does, before any write is answered. Deleted content is
            // overwritten with zeros (`secure_delete`), so a copy of the file does not keep what
            // was removed, such as an older version's server secret; it costs no extra page
            // writes for cells freed in pages that are written anyway.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0; \
                 PRAGMA secure_delete = ON;",
            )?;
            migrate(&conn)?;
            // A read opens the WAL file (creating it if it is missing), so that it can be opened
            // here too; the file lives as long as this connection.
            conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
            let wal = wal_file(&path)?;
            let checkpoints = start_checkpointer(&path, busy_timeout)?;
            let jobs = Writer::spawn(conn, Box::new(move || wal.sync_data()))?;
            Ok::<_, StorageError>((Writer { jobs, _checkpoints: Arc::new(checkpoints) }, path))
        })
        .await
        .map_err(|e| StorageError::Corrupt(format!("opening the database stopped: {e}")))??;
        let readers = Arc::new(Readers {
            path: path.clone(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(max_readers),
        });
        Ok(Self { writer, readers, path, busy_timeout })
    }
}

/// The file a `sqlite:` URL names (`sqlite://path` or `sqlite:path`, options after `?` left
/// out: the engine sets its own).
fn path_of(url: &str) -> Result<PathBuf> {
    let rest =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).ok_or(StorageError::UnsupportedUrl)?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return Err(StorageError::UnsupportedUrl);
    }
    Ok(PathBuf::from(file))
}

/// Applies the migrations not applied yet, each in a transaction of its own with its record.
/// A recorded migration whose SQL has changed since, or one that failed half-way, stops the
/// start: the schema is not what this version expects.
fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )?;
    let applied: Vec<(i64, bool, Vec<u8>)> = conn
        .prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let unknown = StorageError::Schema;
    for (version, ok, checksum) in &applied {
        let Some((_, name, sql)) = MIGRATIONS.iter().find(|(v, _, _)| v == version) else {
            return Err(unknown(format!("migration {version} was applied but is not known to this version")));
        };
        if !ok {
            return Err(unknown(format!("migration {name} failed half-way; restore the database from a backup")));
        }
        if Sha384::digest(sql.as_bytes()).as_slice() != checksum.as_slice() {
            return Err(unknown(format!("migration {name} was applied with different SQL")));
        }
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.iter().any(|(v, _, _)| *v == version) {
            continue;
        }
        let description = name.trim_end_matches(".sql").split_once('_').map_or(name, |(_, d)| d).replace('_', " ");
        let started = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let done = conn.execute_batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?1, ?2, TRUE, ?3, ?4)",
                rusqlite::params![
                    version,
                    description,
                    Sha384::digest(sql.as_bytes()).as_slice(),
                    i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
                ],
            )
        });
        match done {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// A connection and the transaction (or read) an operation runs in.
pub(crate) struct SqliteTx {
    conn: Connection,
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteTx")
    }
}

impl std::ops::Deref for SqliteTx {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl SqliteTx {
    fn new(conn: Connection) -> Self {
        conn.set_prepared_statement_cache_capacity(256);
        SqliteTx { conn }
    }

    /// Prepares (or takes from the cache) `sql` and binds `params`: each `$n` in the statement
    /// takes the n-th parameter.
    fn bound(&self, sql: &str, params: &[Param<'_>]) -> Result<rusqlite::CachedStatement<'_>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        for i in 1..=stmt.parameter_count() {
            let n = stmt
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| StorageError::Corrupt(format!("parameter {i} of a statement is not $n")))?;
            let param = params
                .get(n.wrapping_sub(1))
                .ok_or_else(|| StorageError::Corrupt(format!("no parameter ${n} for a statement")))?;
            match *param {
                Param::Uuid(u) => stmt.raw_bind_parameter(i, u.as_ref().map(|u| u.as_bytes().as_slice()))?,
                Param::Text(t) => stmt.raw_bind_parameter(i, t)?,
                Param::Int(v) => stmt.raw_bind_parameter(i, v)?,
                Param::Bool(b) => stmt.raw_bind_parameter(i, b)?,
                Param::Bytes(b) => stmt.raw_bind_parameter(i, b)?,
                Param::Texts(list) => stmt.raw_bind_parameter(
                    i,
                    serde_json::to_string(list).map_err(|e| StorageError::Corrupt(format!("a list: {e}")))?,
                )?,
            }
        }
        Ok(stmt)
    }
}

fn error(e: rusqlite::Error) -> StorageError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StorageError::Conflict("already exists".into())
        }
        _ => StorageError::Embedded(e),
    }
}

impl Tx for SqliteTx {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let mut stmt = self.bound(sql, params)?;
        Ok(stmt.raw_execute().map_err(error)? as u64)
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let mut stmt = self.bound(sql, params)?;
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(error)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => Value::Text(
                        String::from_utf8(t.to_vec())
                            .map_err(|_| StorageError::Corrupt("text that is not UTF-8".into()))?,
                    ),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                });
            }
            out.push(Row::new(values));
        }
        Ok(out)
    }
}

/// Drives an operation to its end on this thread. Nothing in an operation waits on SQLite, so
/// one poll finishes it.
fn finish_now<T>(mut op: Op<'_, T>) -> Result<T> {
    match op.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StorageError::Corrupt("a SQLite operation waited".into())),
    }
}

/// The read-only connections, opened as they are first needed, at most one per permit.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<SqliteTx>>,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn take(&self) -> Result<SqliteTx> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.execute_batch("PRAGMA cache_size = -16384;")?;
        Ok(SqliteTx::new(conn))
    }

    fn put(&self, conn: SqliteTx) {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
    }
}

impl Engine for SqliteEngine {
    type Tx = SqliteTx;

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut SqliteTx) -> Op<'t, T> + Send + 'static,
    {
        self.writer.run(move |tx| finish_now(op(tx))).await
    }

    async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut SqliteTx) -> Op<'t, T> + Send + 'static,
    {
        let _permit =
            self.readers.permits.acquire().await.map_err(|_| StorageError::Corrupt("the readers closed".into()))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = readers.take()?;
            let out = finish_now(op(&mut conn));
            // A read that failed half-way leaves nothing open: a read statement is reset when
            // its rows are dropped.
            readers.put(conn);
            out
        })
        .await
        .map_err(|e| StorageError::Corrupt(format!("a read stopped: {e}")))?
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

/// Most jobs one commit carries: enough to share an fsync among every kind of write that is
/// waiting, few enough that one commit stays short.
const JOBS_PER_COMMIT: usize = 64;

/// One write operation handed to the writer thread.
trait Job: Send {
    /// Runs the operation inside the writer's open transaction; whether it succeeded.
    fn run(&mut self, tx: &mut SqliteTx) -> bool;
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
    F: FnOnce(&mut SqliteTx) -> Result<T> + Send + 'static,
{
    fn run(&mut self, tx: &mut SqliteTx) -> bool {
        if let Some(f) = self.f.take() {
            self.result = Some(f(tx));
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
    /// Starts the writer thread on `conn`, and the sync thread that makes its commits durable
    /// with `sync`. The threads end once the returned sender is dropped.
    fn spawn(conn: Connection, sync: SyncFn) -> Result<mpsc::Sender<Box<dyn Job>>> {
        let mut tx = SqliteTx::new(conn);
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let durable = Durable::start(sync)?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&mut tx, &rx, &durable))
            .map_err(|e| StorageError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(jobs)
    }

    /// Runs `f` on the writer thread, inside a transaction it may share with other writes
    /// (each in a savepoint of its own), and waits until that transaction is on disk.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteTx) -> Result<T> + Send + 'static,
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
fn wal_file(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    let cannot = |e: std::io::Error| StorageError::Corrupt(format!("cannot open the WAL file for syncing: {e}"));
    let wal = std::fs::File::open(&name).map_err(cannot)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(cannot)?;
    Ok(wal)
}

/// The writer thread: it runs every write waiting for it (up to `JOBS_PER_COMMIT`) in one
/// transaction, each in a savepoint of its own, commits, and hands the commit to the sync
/// thread; it goes on with the next writes while that commit goes to disk.
fn write_loop(conn: &mut SqliteTx, rx: &mpsc::Receiver<Box<dyn Job>>, durable: &Durable) {
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
    fn run(&mut self, conn: &mut SqliteTx, mut job: Box<dyn Job>, durable: &Durable) {
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
    fn commit(&mut self, conn: &mut SqliteTx, durable: &Durable) {
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
fn start_checkpointer(path: &Path, busy_timeout: Duration) -> Result<mpsc::Sender<()>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn task<F>(f: F) -> (Box<dyn Job>, tokio::sync::oneshot::Receiver<Result<()>>)
    where
        F: FnOnce(&mut SqliteTx) -> Result<()> + Send + 'static,
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
            SqliteEngine::open(&format!("sqlite://{}", path.display()), &ConnectOptions::default()).await.unwrap();
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
        let n: i64 = store
            .read(|tx| {
                Box::pin(async move {
                    let n: Option<(i64,)> =
                        tx.fetch_optional("SELECT count(*) FROM settings WHERE length(name) = 1", &[]).await?;
                    Ok(n.map_or(0, |(n,)| n))
                })
            })
            .await
            .unwrap();
        assert_eq!(n, 3);
        drop(store);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

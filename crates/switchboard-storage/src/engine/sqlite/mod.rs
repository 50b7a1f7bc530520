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

mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha384};

use self::writer::Writer;
use super::{Engine, GroupOp, Op, Param, Row, Tx, Value};
use crate::{Backend, ConnectOptions, Result, StorageError};

macro_rules! migration {
    ($version:literal, $file:literal) => {
        ($version, $file, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $file)))
    };
}

/// The migrations of the SQLite schema: (version, file name, SQL), applied in order. They are
/// recorded in `_sqlx_migrations`, the table (and checksums) that earlier versions' migrator
/// kept, so a database they made upgrades in place.
const MIGRATIONS: [(i64, &str, &str); 14] = [
    migration!(1, "0001_init.sql"),
    migration!(2, "0002_batches_and_counts.sql"),
    migration!(3, "0003_channels_templates_schedules.sql"),
    migration!(4, "0004_receipts_webhooks_inbound.sql"),
    migration!(5, "0005_rate_budgets.sql"),
    migration!(6, "0006_unavailable_attempts.sql"),
    migration!(7, "0007_destinations.sql"),
    migration!(8, "0008_request_ids.sql"),
    migration!(9, "0009_retention.sql"),
    migration!(10, "0010_smpp_server.sql"),
    migration!(11, "0011_console_sessions.sql"),
    migration!(12, "0012_low_balance.sql"),
    migration!(13, "0013_minute_counts.sql"),
    migration!(14, "0014_prunable_statuses.sql"),
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
        let wal_limit = options.wal_limit_bytes;
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
            // A WAL started over is cut back to its bound, so that its size says how much of it
            // is in use (see `WalBound`).
            conn.pragma_update(None, "journal_size_limit", i64::try_from(wal_limit).unwrap_or(i64::MAX))?;
            Ok::<_, StorageError>((Writer::start(conn, &path, busy_timeout, wal_limit)?, path))
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
pub(crate) fn path_of(url: &str) -> Result<PathBuf> {
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
    let applied = applied_migrations(conn)?;
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

/// The migrations recorded in `_sqlx_migrations` as (version, succeeded, checksum), once
/// each is checked against this version's: a migration this version does not know (a newer
/// version's), one that failed half-way, or one applied with other SQL is an error.
pub(crate) fn applied_migrations(conn: &Connection) -> Result<Vec<(i64, bool, Vec<u8>)>> {
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
    Ok(applied)
}

/// A connection and the transaction (or read) an operation runs in.
pub(crate) struct SqliteTx {
    conn: Connection,
    /// The statements whose `$n` parameters SQLite numbers `n` (each first appears after
    /// `$n-1`, as in every multi-row statement): their parameters bind by position. Finding a
    /// parameter's number by its name takes SQLite a walk through the statement's list, which
    /// for a statement of thousands of parameters costs more than running it.
    in_order: std::collections::HashSet<Box<str>>,
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
        SqliteTx { conn, in_order: std::collections::HashSet::new() }
    }

    /// Prepares (or takes from the cache) `sql` and binds `params`: each `$n` in the statement
    /// takes the n-th parameter.
    fn bound(&mut self, sql: &str, params: &[Param<'_>]) -> Result<rusqlite::CachedStatement<'_>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let count = stmt.parameter_count();
        let number = |stmt: &rusqlite::Statement<'_>, i: usize| {
            stmt.parameter_name(i).and_then(|name| name.strip_prefix('$')).and_then(|n| n.parse::<usize>().ok())
        };
        let in_order = self.in_order.contains(sql) || {
            let in_order = (1..=count).all(|i| number(&stmt, i) == Some(i));
            if in_order {
                self.in_order.insert(sql.into());
            }
            in_order
        };
        for i in 1..=count {
            let n = if in_order { Some(i) } else { number(&stmt, i) }
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

    async fn write_grouped<I, O>(&self, items: Vec<I>, op: GroupOp<SqliteTx, I, O>) -> Result<Vec<O>>
    where
        I: Send + Sync + 'static,
        O: Send + 'static,
    {
        self.writer.run_grouped(items, op).await
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

//! The SQLite writer: one thread that owns the only writing connection and runs every write
//! waiting for it in one transaction, each in a savepoint of its own; a sync thread that makes
//! each commit durable before its writes are answered; and a checkpoint thread.
//!
//! Grouped writes (see [`Writer::run_grouped`]) that wait together are run as one: the items
//! of every caller of the same operation go to one call of it, so that concurrent admissions
//! share multi-row statements as well as the commit.

use std::any::{Any, TypeId};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::Connection;

use super::{SqliteTx, finish_now};
use crate::engine::GroupOp;
use crate::{Result, StorageError};

/// Most jobs one commit carries: enough to share an fsync among every kind of write that is
/// waiting, few enough that one commit stays short.
const JOBS_PER_COMMIT: usize = 64;

/// Most items one call of a grouped operation takes from several callers (a caller with more
/// runs alone).
const ITEMS_PER_GROUP: usize = 512;

/// One write operation handed to the writer thread.
trait Job: Send + Any {
    /// Runs the operation inside the writer's open transaction; whether it succeeded.
    fn run(&mut self, tx: &mut SqliteTx) -> bool;
    /// Answers the caller: with the operation's own result, or with `failed` when the
    /// transaction it ran in did not commit.
    fn answer(self: Box<Self>, failed: Option<&rusqlite::Error>);
    /// For a grouped write: which operation it is, and how many items it holds.
    fn group(&self) -> Option<(GroupKey, usize)> {
        None
    }
    /// Takes `other`'s items and caller into this write; `other` must be of the same group.
    fn absorb(&mut self, other: Box<dyn Job>) -> std::result::Result<(), Box<dyn Job>> {
        Err(other)
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// The operation of a grouped write: its item and output types and its function.
type GroupKey = (TypeId, usize);

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

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A grouped write: the items of one or more callers of the same operation, run together.
struct GroupTask<I, O> {
    op: GroupOp<SqliteTx, I, O>,
    items: Vec<I>,
    /// Each caller's reply, its number of items (in order), and its result once run.
    callers: Vec<Caller<O>>,
}

struct Caller<O> {
    reply: tokio::sync::oneshot::Sender<Result<Vec<O>>>,
    items: usize,
    result: Option<Result<Vec<O>>>,
}

impl<I: Send + 'static, O: Send + 'static> GroupTask<I, O> {
    /// Runs the operation over `items` in a savepoint of its own, undone if it fails or
    /// panics; its outputs must be one per item.
    fn attempt(op: GroupOp<SqliteTx, I, O>, tx: &mut SqliteTx, items: &[I]) -> Result<Vec<O>> {
        tx.execute_batch("SAVEPOINT grouped")?;
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| finish_now(op(tx, items))))
            .unwrap_or_else(|_| Err(StorageError::Corrupt("the write panicked and was rolled back".into())))
            .and_then(|out| {
                if out.len() == items.len() {
                    Ok(out)
                } else {
                    Err(StorageError::Corrupt("a grouped write did not answer every item".into()))
                }
            });
        if tx.is_autocommit() {
            return out;
        }
        match out {
            Ok(out) => {
                tx.execute_batch("RELEASE grouped")?;
                Ok(out)
            }
            Err(e) => {
                tx.execute_batch("ROLLBACK TO grouped; RELEASE grouped")?;
                Err(e)
            }
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Job for GroupTask<I, O> {
    fn run(&mut self, tx: &mut SqliteTx) -> bool {
        metrics::histogram!("switchboard_commit_group_size").record(self.items.len() as f64);
        match Self::attempt(self.op, tx, &self.items) {
            Ok(mut out) => {
                for caller in self.callers.iter_mut().rev() {
                    let own = out.split_off(out.len() - caller.items);
                    caller.result = Some(Ok(own));
                }
                true
            }
            Err(e) if self.callers.len() == 1 => {
                self.callers[0].result = Some(Err(e));
                false
            }
            Err(_) => {
                // One caller's items must not fail another's: each runs again alone.
                let mut any = false;
                let mut from = 0;
                for caller in &mut self.callers {
                    let own = &self.items[from..from + caller.items];
                    from += caller.items;
                    if tx.is_autocommit() {
                        break;
                    }
                    let result = Self::attempt(self.op, tx, own);
                    any |= result.is_ok();
                    caller.result = Some(result);
                }
                any
            }
        }
    }

    fn answer(self: Box<Self>, failed: Option<&rusqlite::Error>) {
        for caller in self.callers {
            let result = match (caller.result, failed) {
                (Some(Err(e)), _) => Err(e),
                (_, Some(e)) => Err(StorageError::Embedded(copy_error(e))),
                (Some(ok), None) => ok,
                (None, None) => Err(StorageError::Corrupt("the write panicked and was rolled back".into())),
            };
            let _ = caller.reply.send(result);
        }
    }

    fn group(&self) -> Option<(GroupKey, usize)> {
        Some(((TypeId::of::<Self>(), self.op as usize), self.items.len()))
    }

    fn absorb(&mut self, other: Box<dyn Job>) -> std::result::Result<(), Box<dyn Job>> {
        if other.group().map(|(key, _)| key) != self.group().map(|(key, _)| key) {
            return Err(other);
        }
        let Ok(mut other) = other.into_any().downcast::<Self>() else {
            unreachable!("a job of the same group is of the same type")
        };
        self.items.append(&mut other.items);
        self.callers.append(&mut other.callers);
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Puts the grouped writes among `jobs` of the same operation together (up to
/// `ITEMS_PER_GROUP` items each), keeping the others as they are.
fn merge(jobs: Vec<Box<dyn Job>>) -> Vec<Box<dyn Job>> {
    let mut out: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
    'next: for job in jobs {
        if let Some((key, n)) = job.group() {
            let mut job = job;
            for earlier in out.iter_mut() {
                match earlier.group() {
                    Some((k, m)) if k == key && m + n <= ITEMS_PER_GROUP => match earlier.absorb(job) {
                        Ok(()) => continue 'next,
                        Err(back) => job = back,
                    },
                    _ => {}
                }
            }
            out.push(job);
        } else {
            out.push(job);
        }
    }
    out
}

/// The same failure again, for each caller whose write it undid.
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    let code = e.sqlite_error().copied().unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR));
    rusqlite::Error::SqliteFailure(code, Some(e.to_string()))
}

/// The handle of the writer thread (and of the checkpoint thread, which stops when the last
/// handle is dropped).
#[derive(Debug, Clone)]
pub(super) struct Writer {
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
    /// Starts the writer on `conn`, the database at `path`, with its sync and checkpoint
    /// threads.
    pub(super) fn start(conn: Connection, path: &Path, busy_timeout: Duration, wal_limit: u64) -> Result<Self> {
        let wal = wal_file(path)?;
        // One checkpoint at a time: SQLite refuses a second at once, without waiting.
        let turn = Arc::new(Mutex::new(()));
        let size = wal.try_clone().map_err(|e| StorageError::Corrupt(format!("the WAL file: {e}")))?;
        let bound = WalBound { wal: size, limit: wal_limit, turn: turn.clone(), not_before: None };
        let checkpoints = start_checkpointer(path, busy_timeout, turn)?;
        let jobs = Self::spawn(conn, Box::new(move || wal.sync_data()), Some(bound))?;
        Ok(Writer { jobs, _checkpoints: Arc::new(checkpoints) })
    }

    /// Starts the writer thread on `conn`, and the sync thread that makes its commits durable
    /// with `sync`. The threads end once the returned sender is dropped.
    fn spawn(conn: Connection, sync: SyncFn, mut bound: Option<WalBound>) -> Result<mpsc::Sender<Box<dyn Job>>> {
        let mut tx = SqliteTx::new(conn);
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let durable = Durable::start(sync)?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&mut tx, &rx, &durable, bound.as_mut()))
            .map_err(|e| StorageError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(jobs)
    }

    /// Runs `f` on the writer thread, inside a transaction it may share with other writes
    /// (each in a savepoint of its own), and waits until that transaction is on disk.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
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

    /// Runs `op` over `items` on the writer thread, as [`Writer::run`] does, but together with
    /// the items of other callers of the same `op` that wait at the same time: one call of `op`
    /// over all of them, in a savepoint; if that call fails, each caller's items run again
    /// alone, so that only the caller whose items fail is told so.
    pub(super) async fn run_grouped<I, O>(&self, items: Vec<I>, op: GroupOp<SqliteTx, I, O>) -> Result<Vec<O>>
    where
        I: Send + 'static,
        O: Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let caller = Caller { reply, items: items.len(), result: None };
        self.jobs
            .send(Box::new(GroupTask { op, items, callers: vec![caller] }))
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

/// The writer thread: it takes every write waiting for it (up to `JOBS_PER_COMMIT`), runs them
/// in one transaction, each in a savepoint of its own (grouped writes of the same operation
/// together), commits, and hands the commit to the sync thread. Writes that come while a
/// transaction runs wait for the next one: gathered while this one commits, they make larger
/// groups (one multi-row statement for many admissions costs far less than several small ones),
/// and the sync thread syncs this commit meanwhile.
fn write_loop(
    conn: &mut SqliteTx,
    rx: &mpsc::Receiver<Box<dyn Job>>,
    durable: &Durable,
    mut bound: Option<&mut WalBound>,
) {
    let mut tx = Transaction::default();
    let mut waiting: Vec<Box<dyn Job>> = Vec::with_capacity(JOBS_PER_COMMIT);
    while let Ok(first) = rx.recv() {
        waiting.push(first);
        while waiting.len() < JOBS_PER_COMMIT
            && let Ok(job) = rx.try_recv()
        {
            waiting.push(job);
        }
        for job in merge(std::mem::take(&mut waiting)) {
            tx.run(conn, job, durable);
        }
        tx.commit(conn, durable);
        if let Some(bound) = bound.as_deref_mut() {
            bound.keep(conn);
        }
    }
}

/// Keeps the WAL file under its bound. The checkpoint thread copies frames into the database
/// as they come, but under continuous writes (with readers on older snapshots) the WAL is
/// never wholly copied at a moment when the writer could start it over, so it would only grow.
/// Between two of its transactions the writer is the one place no new frame can come from:
/// there, once the file is over the bound, it copies what is left and starts the file over
/// (`RESTART`: the next commit writes from its start, and SQLite cuts the file back to the
/// bound, `journal_size_limit`, so that it is over the bound again only once that much is in
/// use), waiting (up to the busy timeout) for readers still on the WAL. A checkpoint
/// first syncs the WAL and syncs the database file after copying (`synchronous=NORMAL`), so
/// nothing answered as durable can be lost by it.
pub(super) struct WalBound {
    wal: std::fs::File,
    limit: u64,
    /// Taken by whichever checkpoint runs.
    turn: Arc<Mutex<()>>,
    /// After a checkpoint that could not finish, the next try waits until then.
    not_before: Option<std::time::Instant>,
}

impl WalBound {
    fn keep(&mut self, conn: &Connection) {
        let Ok(size) = self.wal.metadata().map(|m| m.len()) else { return };
        if size <= self.limit || self.not_before.is_some_and(|t| std::time::Instant::now() < t) {
            return;
        }
        let _turn = self.turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let done = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        self.not_before = match done {
            Ok(0) => None,
            Ok(_) => Some(std::time::Instant::now() + Duration::from_millis(100)),
            Err(e) => {
                tracing::warn!(error = %e, wal_bytes = size, "the WAL could not be started over; trying again shortly");
                Some(std::time::Instant::now() + Duration::from_millis(100))
            }
        };
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
fn start_checkpointer(path: &Path, busy_timeout: Duration, turn: Arc<Mutex<()>>) -> Result<mpsc::Sender<()>> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            // While writes keep coming, frames are copied often, so that little is left to copy
            // when the writer starts the WAL over (it waits for that copy).
            let (idle, busy) = (Duration::from_millis(200), Duration::from_millis(25));
            let mut pause = idle;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(pause) {
                let _turn = turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // (busy, frames in the WAL, frames copied).
                match conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                {
                    Ok((frames, copied)) => pause = if frames > copied + 64 || frames > 1024 { busy } else { idle },
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        pause = idle;
                    }
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

    use super::super::SqliteEngine;
    use crate::ConnectOptions;
    use crate::engine::{Engine, Tx};

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
            None,
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
        let jobs = Writer::spawn(conn, Box::new(|| Err(std::io::Error::other("disk gone"))), None).unwrap();
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

    /// How many calls of `put` ran, and the items of each.
    static PUT_CALLS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    /// A grouped operation: stores each name, answering with the size of the call it ran in;
    /// a name "bad" fails the call after its earlier names were written.
    fn put<'t>(tx: &'t mut SqliteTx, names: &'t [String]) -> crate::engine::Op<'t, Vec<usize>> {
        Box::pin(async move {
            PUT_CALLS.lock().unwrap().push(names.len());
            for name in names {
                if name == "bad" {
                    return Err(StorageError::Conflict("a bad name".into()));
                }
                insert(tx, name)?;
            }
            Ok(vec![names.len(); names.len()])
        })
    }

    fn grouped(names: &[&str]) -> (Box<dyn Job>, tokio::sync::oneshot::Receiver<Result<Vec<usize>>>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let items: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let caller = Caller { reply, items: items.len(), result: None };
        (Box::new(GroupTask { op: put, items, callers: vec![caller] }), rx)
    }

    /// Grouped writes that wait together run as one call over every caller's items; when that
    /// call fails, each caller's items run again alone, and only the caller whose items fail is
    /// told so, with nothing of its items kept.
    #[tokio::test]
    async fn grouped_writes_share_one_call_and_fail_alone() {
        let (dir, conn, reader) = scratch("grouped");
        let jobs = Writer::spawn(conn, Box::new(|| Ok(())), None).unwrap();
        let names = |reader: &Connection| -> Vec<String> {
            let mut stmt = reader.prepare("SELECT name FROM settings ORDER BY name").unwrap();
            stmt.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
        };

        // Held until the grouped writes are queued behind it.
        let (open, gate) = mpsc::channel::<()>();
        let (first, first_done) = task(move |c| {
            gate.recv().unwrap();
            insert(c, "0")
        });
        jobs.send(first).unwrap();
        let (a, ra) = grouped(&["a"]);
        let (bc, rbc) = grouped(&["b", "c"]);
        let (d, rd) = grouped(&["d"]);
        for job in [a, bc, d] {
            jobs.send(job).unwrap();
        }
        open.send(()).unwrap();
        first_done.await.unwrap().unwrap();
        assert_eq!(ra.await.unwrap().unwrap(), [4]);
        assert_eq!(rbc.await.unwrap().unwrap(), [4, 4]);
        assert_eq!(rd.await.unwrap().unwrap(), [4]);
        assert_eq!(*PUT_CALLS.lock().unwrap(), [4]);
        assert_eq!(names(&reader), ["0", "a", "b", "c", "d"]);

        PUT_CALLS.lock().unwrap().clear();
        let (open, gate) = mpsc::channel::<()>();
        let (first, first_done) = task(move |c| {
            gate.recv().unwrap();
            insert(c, "1")
        });
        jobs.send(first).unwrap();
        let (e, re) = grouped(&["e"]);
        let (bad, rbad) = grouped(&["f", "bad"]);
        let (g, rg) = grouped(&["g", "h"]);
        for job in [e, bad, g] {
            jobs.send(job).unwrap();
        }
        open.send(()).unwrap();
        first_done.await.unwrap().unwrap();
        assert_eq!(re.await.unwrap().unwrap(), [1]);
        assert!(matches!(rbad.await.unwrap(), Err(StorageError::Conflict(_))));
        assert_eq!(rg.await.unwrap().unwrap(), [2, 2]);
        // The shared call, then each caller alone.
        assert_eq!(*PUT_CALLS.lock().unwrap(), [5, 1, 2, 2]);
        assert_eq!(names(&reader), ["0", "1", "a", "b", "c", "d", "e", "g", "h"]);
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

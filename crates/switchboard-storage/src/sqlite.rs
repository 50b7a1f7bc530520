//! The embedded SQLite store: one file in WAL mode with `synchronous=FULL`, so a commit is on
//! disk when it returns. One connection writes (SQLite has one writer at a time anyway, and a
//! single connection makes every transaction `BEGIN`-to-`COMMIT` exclusive without busy
//! retries); a pool of connections reads alongside it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::common::{message_columns, store_impl};
use crate::{Backend, ConnectOptions};

/// The migrations of the SQLite schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const BACKEND: Backend = Backend::Sqlite;

/// The writer holds the only write lock, so a plain read is as good as a row lock.
const LOCK_ACCOUNT: &str = "SELECT sms_credits, mms_credits FROM accounts WHERE id = $1";

const CLAIM_DUE: &str = concat!(
    "UPDATE messages SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2 \
     WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= $2 \
     ORDER BY next_attempt_at LIMIT $3) RETURNING ",
    message_columns!()
);

async fn opted_out_among(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    sender: &str,
    recipients: &[String],
) -> crate::Result<Vec<String>> {
    let list = serde_json::to_string(recipients)
        .map_err(|e| crate::StorageError::Corrupt(e.to_string()))?;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT recipient FROM opt_outs WHERE sender = $1 AND recipient IN (SELECT value FROM json_each($2))",
    )
    .bind(sender)
    .bind(list)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|(r,)| r).collect())
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database a `sqlite:` URL names.
    pub async fn open(url: &str, options: &ConnectOptions) -> crate::Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout)
            .statement_cache_capacity(256)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .connect_with(connect.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Self { write, read })
    }
}

store_impl!(SqliteStore, Sqlite);

//! The PostgreSQL store, for several Switchboard nodes on one database. Balances are locked
//! with `SELECT … FOR UPDATE` inside the admitting transaction, and dispatchers claim work with
//! `FOR UPDATE SKIP LOCKED`, so nodes never charge twice or dispatch one message twice at once.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::common::{message_columns, store_impl};
use crate::{Backend, ConnectOptions};

/// The migrations of the PostgreSQL schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

const BACKEND: Backend = Backend::Postgres;

const LOCK_ACCOUNT: &str = "SELECT sms_credits, mms_credits FROM accounts WHERE id = $1 FOR UPDATE";

const CLAIM_DUE: &str = concat!(
    "UPDATE messages SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2 \
     WHERE status = 'queued' AND id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= $2 \
     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING ",
    message_columns!()
);

async fn opted_out_among(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    sender: &str,
    recipients: &[String],
) -> crate::Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT recipient FROM opt_outs WHERE sender = $1 AND recipient = ANY($2)")
            .bind(sender)
            .bind(recipients.to_vec())
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().map(|(r,)| r).collect())
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
}

impl PostgresStore {
    /// Connects to and migrates the database a `postgres:` URL names.
    pub async fn open(url: &str, options: &ConnectOptions) -> crate::Result<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            write: pool.clone(),
            read: pool,
        })
    }
}

store_impl!(PostgresStore, Postgres);

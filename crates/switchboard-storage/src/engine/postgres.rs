//! The PostgreSQL engine, for several Switchboard nodes on one database: a sqlx pool, an
//! operation per transaction. Balances and messages are locked with `FOR UPDATE` inside the
//! operation, and claims use `FOR UPDATE SKIP LOCKED` (see [`Backend`]), so nodes never charge
//! twice or dispatch one message twice at once.

use std::str::FromStr;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Column as _, PgConnection, PgPool, Postgres, Row as _, TypeInfo, ValueRef};
use uuid::Uuid;

use super::{Engine, GroupOp, Op, Param, Row, Tx, Value};
use crate::{Backend, ConnectOptions, Result, StorageError};

/// The migrations of the PostgreSQL schema.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL engine.
#[derive(Debug, Clone)]
pub(crate) struct PgEngine {
    pool: PgPool,
}

impl PgEngine {
    /// Connects to and migrates the database a `postgres:` URL names.
    pub(crate) async fn open(url: &str, options: &ConnectOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

/// A transaction, or for reads a pooled connection.
#[derive(Debug)]
pub(crate) enum PgTx {
    Write(sqlx::Transaction<'static, Postgres>),
    Read(PoolConnection<Postgres>),
}

impl PgTx {
    fn conn(&mut self) -> &mut PgConnection {
        match self {
            PgTx::Write(tx) => tx,
            PgTx::Read(conn) => conn,
        }
    }
}

fn bind<'q>(sql: &str, params: &[Param<'_>]) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for p in params {
        q = match *p {
            Param::Uuid(v) => q.bind(v),
            Param::Text(v) => q.bind(v),
            Param::Int(v) => q.bind(v),
            Param::Bool(v) => q.bind(v),
            Param::Bytes(v) => q.bind(v),
            Param::Texts(v) => q.bind(v),
        };
    }
    q
}

fn error(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StorageError::Conflict("already exists".into()),
        _ => StorageError::Database(e),
    }
}

/// A PostgreSQL row as driver-neutral values, by each column's type.
fn decode(row: &PgRow) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        if row.try_get_raw(i)?.is_null() {
            values.push(Value::Null);
            continue;
        }
        values.push(match column.type_info().name() {
            "UUID" => Value::Uuid(row.try_get::<Uuid, _>(i)?),
            "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
            "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
            "BOOL" => Value::Bool(row.try_get::<bool, _>(i)?),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => Value::Text(row.try_get::<String, _>(i)?),
            "BYTEA" => Value::Bytes(row.try_get::<Vec<u8>, _>(i)?),
            "FLOAT8" => Value::Real(row.try_get::<f64, _>(i)?),
            "FLOAT4" => Value::Real(f64::from(row.try_get::<f32, _>(i)?)),
            other => return Err(StorageError::Corrupt(format!("column {}: type {other} is not read", i + 1))),
        });
    }
    Ok(Row::new(values))
}

impl Tx for PgTx {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let done = bind(sql, params).execute(self.conn()).await.map_err(error)?;
        Ok(done.rows_affected())
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let rows = bind(sql, params).fetch_all(self.conn()).await.map_err(error)?;
        rows.iter().map(decode).collect()
    }
}

impl Engine for PgEngine {
    type Tx = PgTx;

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut PgTx) -> Op<'t, T> + Send + 'static,
    {
        let mut tx = PgTx::Write(self.pool.begin().await?);
        let out = op(&mut tx).await?;
        if let PgTx::Write(tx) = tx {
            tx.commit().await?;
        }
        Ok(out)
    }

    /// One caller's items in a transaction of their own: concurrent admissions are grouped
    /// before they reach the store (the core's committer), and PostgreSQL runs several such
    /// groups at once.
    async fn write_grouped<I, O>(&self, items: Vec<I>, op: GroupOp<PgTx, I, O>) -> Result<Vec<O>>
    where
        I: Send + Sync + 'static,
        O: Send + 'static,
    {
        self.write(move |tx| Box::pin(async move { op(tx, &items).await })).await
    }

    async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut PgTx) -> Op<'t, T> + Send + 'static,
    {
        let mut conn = PgTx::Read(self.pool.acquire().await?);
        op(&mut conn).await
    }

    /// Nothing: dead rows go with PostgreSQL's vacuums.
    async fn scrub(&self) -> Result<()> {
        Ok(())
    }
}

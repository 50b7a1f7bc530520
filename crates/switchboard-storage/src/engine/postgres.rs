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
        first_connection(&connect).await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

/// How long the first connection may take before the database is reported unreachable.
const FIRST_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes one connection before the pool is built, so that an unreachable database is reported
/// with its cause (name resolution, refused, authentication, TLS, no answer) within
/// [`FIRST_CONNECT_TIMEOUT`], where the pool would only say that it timed out.
async fn first_connection(connect: &PgConnectOptions) -> Result<()> {
    use sqlx::Connection as _;
    let target = match connect.get_socket() {
        Some(dir) => format!("the socket in {}", dir.display()),
        None => format!("{}:{}", connect.get_host(), connect.get_port()),
    };
    let unreachable = |why: String| StorageError::Unreachable(why);
    let attempt = async {
        if connect.get_socket().is_none() && !connect.get_host().starts_with('/') {
            let addresses = tokio::net::lookup_host((connect.get_host(), connect.get_port())).await;
            if let Err(e) = addresses {
                return Err(unreachable(format!("cannot resolve the host name {:?}: {e}", connect.get_host())));
            }
        }
        let conn = PgConnection::connect_with(connect).await.map_err(|e| unreachable(cause(&target, connect, &e)))?;
        let _ = conn.close().await;
        Ok(())
    };
    match tokio::time::timeout(FIRST_CONNECT_TIMEOUT, attempt).await {
        Ok(done) => done,
        Err(_) => Err(unreachable(format!(
            "{target} did not answer within {} s (a wrong address, or a firewall dropping packets?)",
            FIRST_CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Names why a connection failed, in an operator's terms.
fn cause(target: &str, connect: &PgConnectOptions, e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{target} refused the connection: is PostgreSQL running and listening there?")
        }
        // The TLS stack reports a failed handshake (a certificate that does not verify) as
        // invalid data on the socket.
        sqlx::Error::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData
                && !matches!(connect.get_ssl_mode(), sqlx::postgres::PgSslMode::Disable) =>
        {
            format!("TLS with {target} failed: {io}")
        }
        sqlx::Error::Io(io) => format!("{target}: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS with {target} failed: {tls}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => {
                format!("{target} refused to authenticate user {:?}: {}", connect.get_username(), db.message())
            }
            Some("3D000") => format!("{target}: {}", db.message()),
            _ => format!("{target} refused the connection: {}", db.message()),
        },
        other => format!("{target}: {other}"),
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

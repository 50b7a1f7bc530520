//! The engine under the operations: a transaction ([`Tx`]) that runs `$n` SQL with typed
//! parameters and returns driver-neutral rows, and an [`Engine`] per backend that runs a whole
//! operation in one transaction.
//!
//! Every operation in `crate::ops` is written once against [`Tx`]; the few places where the
//! two SQL dialects really differ are asked of the transaction's [`Backend`] (row locks,
//! list parameters, rows per multi-row `VALUES`). An engine knows nothing of the operations.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::future::Future;
use std::pin::Pin;

use switchboard_domain::{AccountId, BatchId, EventId, MessageId, Msisdn, SenderId, Timestamp};
use uuid::Uuid;

use crate::{Backend, Result, StorageError};

/// A statement parameter: `$1` is the first of a statement's list.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Uuid(Option<Uuid>),
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<&'a [u8]>),
    /// A list of texts, for [`Backend::in_list`] and [`Backend::not_in_list`].
    Texts(&'a [&'a str]),
}

macro_rules! param_from {
    ($($t:ty => |$v:ident| $e:expr;)+) => {
        $(impl<'a> From<$t> for Param<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        })+
    };
}

param_from! {
    Uuid => |v| Param::Uuid(Some(v));
    Option<Uuid> => |v| Param::Uuid(v);
    AccountId => |v| Param::Uuid(Some(v.as_uuid()));
    MessageId => |v| Param::Uuid(Some(v.as_uuid()));
    EventId => |v| Param::Uuid(Some(v.as_uuid()));
    BatchId => |v| Param::Uuid(Some(v.as_uuid()));
    Option<BatchId> => |v| Param::Uuid(v.map(|b| b.as_uuid()));
    Option<MessageId> => |v| Param::Uuid(v.map(|m| m.as_uuid()));
    &'a str => |v| Param::Text(Some(v));
    Option<&'a str> => |v| Param::Text(v);
    &'a String => |v| Param::Text(Some(v.as_str()));
    &'a Option<String> => |v| Param::Text(v.as_deref());
    &'a Msisdn => |v| Param::Text(Some(v.as_str()));
    &'a SenderId => |v| Param::Text(Some(v.as_str()));
    i64 => |v| Param::Int(Some(v));
    Option<i64> => |v| Param::Int(v);
    u32 => |v| Param::Int(Some(i64::from(v)));
    Timestamp => |v| Param::Int(Some(v.millis()));
    Option<Timestamp> => |v| Param::Int(v.map(Timestamp::millis));
    bool => |v| Param::Bool(Some(v));
    Option<bool> => |v| Param::Bool(v);
    &'a [u8] => |v| Param::Bytes(Some(v));
    &'a Vec<u8> => |v| Param::Bytes(Some(v.as_slice()));
    &'a Option<Vec<u8>> => |v| Param::Bytes(v.as_deref());
    &'a [&'a str] => |v| Param::Texts(v);
}

/// Adds one row's parameters to a multi-row statement's.
pub(crate) fn push_row<'a, const N: usize>(params: &mut Vec<Param<'a>>, row: [Param<'a>; N]) {
    params.extend(row);
}

/// One value of a row, as the driver gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
    Uuid(Uuid),
    Bool(bool),
}

/// A row, read column by column in order by [`Row::get`].
#[derive(Debug)]
pub(crate) struct Row {
    values: std::vec::IntoIter<Value>,
    column: usize,
}

impl Row {
    pub(crate) fn new(values: Vec<Value>) -> Self {
        Row { values: values.into_iter(), column: 0 }
    }

    /// The next column's value.
    pub(crate) fn get<T: Column>(&mut self) -> Result<T> {
        self.column += 1;
        let value = self.values.next().ok_or_else(|| StorageError::Corrupt(format!("no column {}", self.column)))?;
        T::from_value(value).map_err(|what| StorageError::Corrupt(format!("column {}: not {what}", self.column)))
    }
}

/// A type one column decodes to; the error names what was expected.
pub(crate) trait Column: Sized {
    fn from_value(value: Value) -> Result<Self, &'static str>;
}

impl<T: Column> Column for Option<T> {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl Column for i64 {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Int(n) => Ok(n),
            _ => Err("an integer"),
        }
    }
}

impl Column for bool {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Bool(b) => Ok(b),
            // SQLite keeps booleans as integers.
            Value::Int(n) => Ok(n != 0),
            _ => Err("a boolean"),
        }
    }
}

impl Column for String {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Text(s) => Ok(s),
            _ => Err("text"),
        }
    }
}

impl Column for Vec<u8> {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Bytes(b) => Ok(b),
            _ => Err("bytes"),
        }
    }
}

impl Column for Uuid {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Uuid(u) => Ok(u),
            // SQLite keeps UUIDs as 16-byte blobs.
            Value::Bytes(b) => Uuid::from_slice(&b).map_err(|_| "a UUID"),
            _ => Err("a UUID"),
        }
    }
}

impl Column for Timestamp {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        i64::from_value(value).map(Timestamp::from_millis)
    }
}

/// The enums stored as their names.
macro_rules! name_column {
    ($($t:ty => $what:literal),+ $(,)?) => {
        $(impl Column for $t {
            fn from_value(value: Value) -> Result<Self, &'static str> {
                String::from_value(value).ok().and_then(|s| <$t>::parse(&s)).ok_or($what)
            }
        })+
    };
}
name_column!(
    switchboard_domain::MessageStatus => "a message status",
    switchboard_domain::ErrorType => "an error type",
    switchboard_domain::Direction => "a direction",
    switchboard_domain::MessageKind => "a message kind",
    switchboard_domain::Encoding => "an encoding",
    switchboard_domain::EventType => "an event type",
    switchboard_domain::NumberType => "a number type",
    switchboard_ledger::EntryKind => "a ledger entry kind",
    crate::DeliveryState => "a delivery state",
);

/// Counts stored as integers that must fit a `u32`.
impl Column for u32 {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        i64::from_value(value).ok().and_then(|n| u32::try_from(n).ok()).ok_or("a count")
    }
}

/// HTTP statuses.
impl Column for u16 {
    fn from_value(value: Value) -> Result<Self, &'static str> {
        i64::from_value(value).ok().and_then(|n| u16::try_from(n).ok()).ok_or("an HTTP status")
    }
}

macro_rules! id_column {
    ($($t:ty),+) => {
        $(impl Column for $t {
            fn from_value(value: Value) -> Result<Self, &'static str> {
                Uuid::from_value(value).map(<$t>::from_uuid)
            }
        })+
    };
}
id_column!(AccountId, MessageId, BatchId, EventId);

/// A type a whole row decodes to.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &mut Row) -> Result<Self>;
}

macro_rules! tuple_row {
    ($($t:ident),+) => {
        impl<$($t: Column),+> FromRow for ($($t,)+) {
            fn from_row(row: &mut Row) -> Result<Self> {
                Ok(($(row.get::<$t>()?,)+))
            }
        }
    };
}
tuple_row!(A);
tuple_row!(A, B);
tuple_row!(A, B, C);
tuple_row!(A, B, C, D);
tuple_row!(A, B, C, D, E);
tuple_row!(A, B, C, D, E, F);

/// One transaction (or, for reads, one connection) of a backend.
///
/// Statements use `$n` placeholders on both backends. A uniqueness violation is
/// [`StorageError::Conflict`].
pub(crate) trait Tx: Send {
    /// Which database this is, for what its SQL says differently.
    fn backend(&self) -> Backend;

    /// Runs a statement that returns no rows; how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> impl Future<Output = Result<u64>> + Send;

    /// Runs a statement; the rows it returned.
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// The rows of a query, decoded.
    fn fetch_all<T: FromRow>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> impl Future<Output = Result<Vec<T>>> + Send {
        async move { self.query(sql, params).await?.iter_mut().map(T::from_row).collect() }
    }

    /// The first row of a query, decoded, if there is one.
    fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        async move { self.query(sql, params).await?.first_mut().map(T::from_row).transpose() }
    }
}

/// A whole operation over a transaction, as an engine runs it.
pub(crate) type Op<'t, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 't>>;

/// An operation over a list of items, with one output per item, that may run the items of
/// several callers at once (see [`Engine::write_grouped`]).
pub(crate) type GroupOp<X, I, O> = for<'t> fn(&'t mut X, &'t [I]) -> Op<'t, Vec<O>>;

/// Runs operations on one backend, each in a transaction of its own.
pub(crate) trait Engine: Send + Sync + 'static {
    /// The transaction operations run in.
    type Tx: Tx;

    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Runs `op` in one write transaction; returns once it is committed and durable. If `op`
    /// fails, nothing it wrote is kept.
    fn write<T, F>(&self, op: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Self::Tx) -> Op<'t, T> + Send + 'static;

    /// Runs `op` over `items` in one write transaction, as [`Engine::write`] does, and returns
    /// its outputs, one per item. The engine may run the items of concurrent calls of the same
    /// `op` together, in one call of it; when such a shared call fails, each caller's items run
    /// again alone, so that one caller's items cannot fail another's.
    fn write_grouped<I, O>(
        &self,
        items: Vec<I>,
        op: GroupOp<Self::Tx, I, O>,
    ) -> impl Future<Output = Result<Vec<O>>> + Send
    where
        I: Send + Sync + 'static,
        O: Send + 'static;

    /// Runs `op`, which only reads, on a connection of its own.
    fn read<T, F>(&self, op: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Self::Tx) -> Op<'t, T> + Send + 'static;

    /// See [`crate::Store::scrub`].
    fn scrub(&self) -> impl Future<Output = Result<()>> + Send;
}

impl Backend {
    /// What follows a `SELECT` of rows the transaction will change: PostgreSQL locks them;
    /// SQLite has one writer at a time, which is lock enough.
    pub(crate) fn for_update(self) -> &'static str {
        if self.locks_rows() { " FOR UPDATE" } else { "" }
    }

    /// [`Backend::for_update`] for the rows of one table of a join, by its alias.
    pub(crate) fn for_update_of(self, alias: &str) -> String {
        if self.locks_rows() { format!(" FOR UPDATE OF {alias}") } else { String::new() }
    }

    /// Whether rows read for a change must be locked: on PostgreSQL, where several
    /// transactions write at once; not on SQLite, which writes one transaction at a time.
    pub(crate) fn locks_rows(self) -> bool {
        self == Backend::Postgres
    }

    /// What follows the `SELECT` of a claim: on PostgreSQL, concurrent claimers skip the rows
    /// another holds, so no two claim the same row.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// `IN` the list parameter `$n` ([`Param::Texts`]).
    pub(crate) fn in_list(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("IN (SELECT value FROM json_each(${n}))"),
            Backend::Postgres => format!("= ANY(${n})"),
        }
    }

    /// `NOT IN` the list parameter `$n` ([`Param::Texts`]).
    pub(crate) fn not_in_list(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("NOT IN (SELECT value FROM json_each(${n}))"),
            Backend::Postgres => format!("<> ALL(${n})"),
        }
    }
}

/// Rows per multi-row `INSERT`: a long list is cut into chunks of these sizes, so that only a
/// few statement shapes exist and each stays in the prepared-statement cache.
pub(crate) const CHUNKS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// Splits `items` into chunks whose sizes come from [`CHUNKS`].
pub(crate) fn chunked<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = CHUNKS.iter().copied().find(|&c| c <= items.len()).unwrap_or(1);
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// A multi-row statement: `head`, then `rows` groups of `columns` placeholders, then `tail`.
/// Its text for each chunk size is made once.
pub(crate) struct Values {
    head: &'static str,
    columns: usize,
    tail: &'static str,
    texts: [std::sync::OnceLock<String>; CHUNKS.len()],
}

impl Values {
    pub(crate) const fn new(head: &'static str, columns: usize, tail: &'static str) -> Self {
        Values { head, columns, tail, texts: [const { std::sync::OnceLock::new() }; CHUNKS.len()] }
    }

    /// The statement for `rows` rows (one of [`CHUNKS`]).
    pub(crate) fn sql(&self, rows: usize) -> &str {
        let slot = CHUNKS.iter().position(|&c| c == rows).expect("a chunk size");
        self.texts[slot].get_or_init(|| {
            let mut sql = String::from(self.head);
            for r in 0..rows {
                sql.push_str(if r == 0 { "(" } else { ", (" });
                for c in 0..self.columns {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", r * self.columns + c + 1));
                }
                sql.push(')');
            }
            sql.push_str(self.tail);
            sql
        })
    }
}

/// Maps a uniqueness violation to [`StorageError::Conflict`] saying `what`.
pub(crate) fn conflict_as(what: &'static str) -> impl Fn(StorageError) -> StorageError {
    move |e| match e {
        StorageError::Conflict(_) => StorageError::Conflict(what.into()),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_item_in_known_sizes() {
        let items: Vec<u32> = (0..203).collect();
        let sizes: Vec<usize> = chunked(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [128, 64, 8, 2, 1]);
        assert_eq!(chunked::<u32>(&[]).count(), 0);
    }

    #[test]
    fn values_number_the_placeholders_row_by_row() {
        let v = Values::new("INSERT INTO t (a, b) VALUES ", 2, " ON CONFLICT DO NOTHING");
        assert_eq!(v.sql(1), "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT DO NOTHING");
        assert_eq!(v.sql(2), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING");
    }

    #[test]
    fn rows_decode_in_column_order() {
        let id = Uuid::now_v7();
        let mut row = Row::new(vec![Value::Bytes(id.as_bytes().to_vec()), Value::Int(1), Value::Null]);
        let decoded: (Uuid, bool, Option<String>) = FromRow::from_row(&mut row).unwrap();
        assert_eq!(decoded, (id, true, None));
        assert!(matches!(row.get::<i64>(), Err(StorageError::Corrupt(_))));
        let mut row = Row::new(vec![Value::Text("x".into())]);
        let e = row.get::<i64>().unwrap_err();
        assert_eq!(e.to_string(), "corrupt row: column 1: not an integer");
    }
}

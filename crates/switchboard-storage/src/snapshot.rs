//! Copies of the embedded SQLite database, made while a server writes to it, and the checks a
//! copy passes before it is trusted.
//!
//! [`copy`] runs `VACUUM INTO` on a read-only connection of its own. The statement reads the
//! whole database in one read transaction, so the copy is the database as of one commit:
//! every write answered before the copy began is in it, none half-made is. In WAL mode a
//! reader never blocks the writer, so the server goes on accepting and committing meanwhile
//! (but the writer cannot start the WAL over past the copy's snapshot until it ends: a copy
//! that outlasts the time the server's writes take to fill `sqlite_wal_limit_mib` makes those
//! writes wait for it). `VACUUM INTO` writes only live rows into a new file, so the copy is
//! compact, is one file in the rollback-journal mode, and holds no page of deleted content (what
//! `secure_delete` keeps out of the database's own file). SQLite's online backup API would copy
//! pages instead; but done in steps it starts over whenever another process writes, which
//! under a serving node's steady writes may be never, and done in one step it holds the same
//! read transaction as `VACUUM INTO` while also copying free pages.
//!
//! [`inspect`] opens such a copy (or any file offered as one) and checks that it is whole
//! (`PRAGMA integrity_check`), that it holds a Switchboard schema this version can serve, and
//! reads what an operator wants to see of it: counts, whether every balance agrees with the
//! ledger, and the fingerprints of the server keys it was made with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use switchboard_domain::Timestamp;
use uuid::Uuid;

use crate::{Result, SCHEMA_VERSION, StorageError};

/// The database file a `sqlite:` URL names; an error for any other URL, and for an in-memory
/// database.
pub fn sqlite_file(url: &str) -> Result<PathBuf> {
    crate::engine::sqlite::path_of(url)
}

/// Writes a consistent copy of the SQLite database at `source` into `into`, which must not
/// exist or be an empty file (so that it can be made beforehand with the mode it should
/// have). The source is opened read-only and is never written; a server may be writing to it
/// meanwhile. The copy is not synced to disk: that is the caller's to do.
pub fn copy(source: &Path, into: &Path, busy_timeout: Duration) -> Result<()> {
    let into = into.to_str().ok_or_else(|| StorageError::Corrupt(format!("{} is not a UTF-8 path", into.display())))?;
    // No `SQLITE_OPEN_URI`: the name after INTO is a file name, never a URI.
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy_timeout)?;
    conn.execute("VACUUM INTO ?1", [into])?;
    Ok(())
}

/// What [`inspect`] found in a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The newest migration applied to it (at most [`SCHEMA_VERSION`]; a server of this
    /// version applies the rest when it starts on it).
    pub schema_version: i64,
    /// Accounts.
    pub accounts: u64,
    /// Messages, outbound and inbound.
    pub messages: u64,
    /// Ledger entries.
    pub ledger_entries: u64,
    /// The accounts whose balances are not the sums of their ledger entries (none, in a
    /// consistent copy).
    pub unbalanced_accounts: Vec<Uuid>,
    /// When its newest message was accepted or received.
    pub newest_message: Option<Timestamp>,
    /// The recorded fingerprints of the server keys it was set up with (`keys_fingerprint…`),
    /// by name; a server refuses to start on it with keys whose fingerprints differ.
    pub key_fingerprints: Vec<(String, Vec<u8>)>,
    /// It still holds the server secret of a version from before the key file.
    pub legacy_server_secret: bool,
}

/// Opens the SQLite file at `path` (which must exist) and checks that it is a whole database
/// holding a Switchboard schema this version can serve: no migration it does not know, none
/// failed half-way, none applied with other SQL. A file in WAL mode is first turned to the
/// rollback journal, so that it is one file with nothing beside it; nothing else in it is
/// changed. Run it on a private copy, never on a database a server uses.
pub fn inspect(path: &Path) -> Result<Summary> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let not_a_database = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StorageError::Schema("it is not an SQLite database".into()),
        _ => StorageError::Embedded(e),
    };
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(not_a_database)?;
    if mode.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    }
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(10)")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()
        .map_err(not_a_database)?;
    if problems != ["ok"] {
        return Err(StorageError::Damaged(format!("the integrity check failed: {}", problems.join("; "))));
    }
    let has_migrations: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |r| r.get(0),
    )?;
    let newest: Option<i64> = if has_migrations {
        conn.query_row("SELECT max(version) FROM _sqlx_migrations", [], |r| r.get(0))?
    } else {
        None
    };
    let Some(schema_version) = newest else {
        return Err(StorageError::Schema("it holds no Switchboard schema".into()));
    };
    if schema_version > SCHEMA_VERSION {
        return Err(StorageError::Schema(format!(
            "its schema is version {schema_version}, newer than this version's ({SCHEMA_VERSION}): use the \
             Switchboard version that made it, or a newer one"
        )));
    }
    crate::engine::sqlite::applied_migrations(&conn)?;

    let count = |table: &str| -> Result<u64> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let unbalanced = conn
        .prepare(
            "SELECT a.id FROM accounts a LEFT JOIN (SELECT account_id, sum(sms_delta) AS sms, sum(mms_delta) AS mms \
             FROM ledger_entries GROUP BY account_id) l ON l.account_id = a.id \
             WHERE a.sms_credits <> coalesce(l.sms, 0) OR a.mms_credits <> coalesce(l.mms, 0) ORDER BY a.id",
        )?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .map(|id| {
            let id = id?;
            Uuid::from_slice(&id).map_err(|_| StorageError::Corrupt("an account id that is not a UUID".into()))
        })
        .collect::<Result<Vec<Uuid>>>()?;
    let newest_message: Option<i64> = conn.query_row("SELECT max(created_at) FROM messages", [], |r| r.get(0))?;
    let key_fingerprints = conn
        .prepare("SELECT name, value FROM settings WHERE name LIKE 'keys_fingerprint%' ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let legacy_server_secret =
        conn.query_row("SELECT 1 FROM settings WHERE name = 'key_hash_secret'", [], |_| Ok(())).optional()?.is_some();
    Ok(Summary {
        schema_version,
        accounts: count("accounts")?,
        messages: count("messages")?,
        ledger_entries: count("ledger_entries")?,
        unbalanced_accounts: unbalanced,
        newest_message: newest_message.map(Timestamp::from_millis),
        key_fingerprints,
        legacy_server_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectOptions;
    use crate::testing::TestDatabase;
    use switchboard_ledger::Credits;

    fn path(db: &TestDatabase) -> PathBuf {
        sqlite_file(&db.url).unwrap()
    }

    #[tokio::test]
    async fn a_copy_of_a_served_database_is_whole_and_compact() {
        let db = TestDatabase::sqlite();
        let store = crate::connect(&db.url, &ConnectOptions::default()).await.unwrap();
        let account = store.create_account("Acme").await.unwrap();
        store.top_up(account.id, Credits { sms: 10, mms: 2 }, Some("inv-1")).await.unwrap();
        store.record_server_keys(&[("keys_fingerprint".into(), vec![1, 2, 3])], false).await.unwrap();

        // The store stays open: the copy is made beside a live writer.
        let source = path(&db);
        let into = source.with_file_name("copy.db");
        std::fs::File::create(&into).unwrap();
        let source_for_copy = source.clone();
        let into_for_copy = into.clone();
        tokio::task::spawn_blocking(move || copy(&source_for_copy, &into_for_copy, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        // Later writes are not in it.
        store.top_up(account.id, Credits { sms: 5, mms: 0 }, None).await.unwrap();
        let header = std::fs::read(&into).unwrap();
        assert_eq!((header[18], header[19]), (1, 1), "the copy is in the rollback-journal mode");

        let summary = inspect(&into).unwrap();
        assert_eq!(summary.schema_version, SCHEMA_VERSION);
        assert_eq!((summary.accounts, summary.messages, summary.ledger_entries), (1, 0, 1));
        assert!(summary.unbalanced_accounts.is_empty());
        assert_eq!(summary.key_fingerprints, vec![("keys_fingerprint".to_owned(), vec![1, 2, 3])]);
        assert!(!summary.legacy_server_secret);
        let names: Vec<_> = std::fs::read_dir(into.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("copy.db"))
            .collect();
        assert_eq!(names, ["copy.db"], "nothing beside the copy");

        // A copy cannot be written over a file that holds something.
        let err = copy(&source, &into, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        drop(store);
        db.remove().await;
    }

    /// A consistent copy of the test database (whatever its WAL holds included).
    fn snapshot(db: &TestDatabase, name: &str) -> PathBuf {
        let into = path(db).with_file_name(name);
        copy(&path(db), &into, Duration::from_secs(5)).unwrap();
        into
    }

    #[tokio::test]
    async fn files_that_are_not_switchboard_databases_are_refused() {
        let db = TestDatabase::sqlite();
        let store = crate::connect(&db.url, &ConnectOptions::default()).await.unwrap();
        let dir = path(&db).parent().unwrap().to_owned();

        let text = dir.join("notes.txt");
        std::fs::write(&text, "not a database at all, but long enough to have a header of sorts\n".repeat(20)).unwrap();
        let err = inspect(&text).unwrap_err();
        assert!(err.to_string().contains("not an SQLite database"), "{err}");

        let other = dir.join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        let err = inspect(&other).unwrap_err();
        assert!(err.to_string().contains("no Switchboard schema"), "{err}");

        // A database from a newer version.
        let newer = snapshot(&db, "newer.db");
        Connection::open(&newer)
            .unwrap()
            .execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?1, 'later', TRUE, x'00', 0)",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        let err = inspect(&newer).unwrap_err();
        assert!(err.to_string().contains(&format!("version {}, newer", SCHEMA_VERSION + 1)), "{err}");

        // One whose migration was applied with other SQL.
        let edited = snapshot(&db, "edited.db");
        Connection::open(&edited).unwrap().execute_batch("UPDATE _sqlx_migrations SET checksum = x'00'").unwrap();
        let err = inspect(&edited).unwrap_err();
        assert!(err.to_string().contains("different SQL"), "{err}");

        // A damaged one: a page in the middle of the file overwritten.
        let damaged = snapshot(&db, "damaged.db");
        let mut bytes = std::fs::read(&damaged).unwrap();
        let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
        assert!(bytes.len() >= 4 * page, "{} bytes", bytes.len());
        bytes[2 * page..3 * page].fill(0x5a);
        std::fs::write(&damaged, bytes).unwrap();
        assert!(inspect(&damaged).is_err());

        assert!(inspect(&snapshot(&db, "good.db")).is_ok());

        // A copy in WAL mode is turned to the rollback journal, and nothing is left beside it.
        let wal = snapshot(&db, "wal.db");
        Connection::open(&wal).unwrap().query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
        assert_eq!(std::fs::read(&wal).unwrap()[18], 2, "in WAL mode");
        assert!(inspect(&wal).is_ok());
        assert_eq!(std::fs::read(&wal).unwrap()[18], 1, "in the rollback-journal mode");
        for suffix in ["-wal", "-shm", "-journal"] {
            assert!(!dir.join(format!("wal.db{suffix}")).exists(), "{suffix} left beside it");
        }
        drop(store);
        db.remove().await;
    }

    #[tokio::test]
    async fn balances_that_disagree_with_the_ledger_are_named() {
        let db = TestDatabase::sqlite();
        let store = crate::connect(&db.url, &ConnectOptions::default()).await.unwrap();
        let account = store.create_account("Acme").await.unwrap();
        store.top_up(account.id, Credits { sms: 10, mms: 0 }, None).await.unwrap();
        let copy = snapshot(&db, "copy.db");
        Connection::open(&copy).unwrap().execute_batch("UPDATE accounts SET sms_credits = 11").unwrap();
        assert_eq!(inspect(&copy).unwrap().unbalanced_accounts, vec![account.id.as_uuid()]);
        drop(store);
        db.remove().await;
    }
}

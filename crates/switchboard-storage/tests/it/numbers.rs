//! Phone numbers are read back as `Msisdn`s: a stored number that is not E.164 (which only a
//! hand-edited or damaged database can hold) is a `Corrupt` error that leaves the number out,
//! never a panic and never a message handed on with it.

use sqlx::Connection;

use super::*;

/// Runs one statement on the test's database beside the store, as an outside edit would.
async fn edit(url: &str, sql: &'static str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).expect("open the SQLite file");
        c.execute_batch(sql).expect("edit the SQLite file");
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
        sqlx::query(sql).execute(&mut c).await.expect("edit the PostgreSQL database");
        c.close().await.ok();
    }
}

async fn a_stored_number_that_is_not_e164_is_a_corrupt_row(url: &str, store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let m = message(a, None, "hi");
    assert!(matches!(&store.accept(std::slice::from_ref(&m)).await.unwrap()[0], AcceptOutcome::Queued(_)));
    let read = store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!((read.to.as_str(), read.from.as_str()), (TO, FROM));

    edit(url, "UPDATE messages SET recipient = '+1555 0100 99'").await;
    let error = store.get_message(m.id).await.expect_err("a recipient that is not E.164");
    let StorageError::Corrupt(text) = &error else { panic!("{error:?}") };
    assert!(text.contains("recipient") && !text.contains("0100"), "{text}");
    // The dispatcher's claim refuses it too, rather than hand the number to a provider.
    let now = Timestamp::now();
    assert!(matches!(store.claim_due(now, now.plus_millis(60_000), 10).await, Err(StorageError::Corrupt(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_stored_number_that_is_not_e164_is_a_corrupt_row() {
    let db = TestDatabase::sqlite();
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open SQLite");
    a_stored_number_that_is_not_e164_is_a_corrupt_row(&db.url, store).await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_stored_number_that_is_not_e164_is_a_corrupt_row() {
    let Some(db) = TestDatabase::postgres("a_stored_number_that_is_not_e164_is_a_corrupt_row").await else {
        return;
    };
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open PostgreSQL");
    a_stored_number_that_is_not_e164_is_a_corrupt_row(&db.url, store).await;
    db.remove().await;
}

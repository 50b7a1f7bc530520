//! What a carrier or the simulator reports after a send survives a crash of the server: an
//! SMSC's receipt and inbound message are acknowledged only once stored, so the SMSC delivers
//! again what a killed server had not stored; and the simulator's receipts due when the server
//! died still arrive after the restart. On SQLite, and on PostgreSQL with `TEST_POSTGRES_URL`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use switchboard_client::{AdminClient, TextingLineClient};
use switchboard_domain::wire::{CreateSender, Message, TlSendRequest, TopUp};
use switchboard_domain::{Direction, ErrorType, MessageId, MessageStatus};
use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions};
use switchboard_storage::testing::TestDatabase;
use uuid::Uuid;

use super::{BIN, TOKEN, free_port, temp_dir};

const SENDER: &str = "+18005559876";
const HANDSET: &str = "+18005551234";
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test and the folder of the server's data.
struct Db {
    db: TestDatabase,
    dir: PathBuf,
}

impl Db {
    async fn new(backend: Backend, name: &str) -> Option<Db> {
        let dir = temp_dir(name);
        let db = match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres(name).await?,
        };
        Some(Db { db, dir })
    }

    async fn remove(self) {
        self.db.remove().await;
        std::fs::remove_dir_all(self.dir).ok();
    }
}

/// The binary, serving on `port` with the database and settings file given.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(db: &Db, port: u16, config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_DATABASE_URL", &db.db.url)
            .env("SWITCHBOARD_DATA_DIR", &db.dir)
            .env("SWITCHBOARD_SERVER_KEYS_FILE", db.dir.join("server-keys"))
            .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
            .env("SWITCHBOARD_SENT_WAIT_MS", "0")
            .env("SWITCHBOARD_PROVIDER_TIMEOUT_MS", "2000")
            .env("SWITCHBOARD_DISPATCH_POLL_MS", "50")
            .env("SWITCHBOARD_DISPATCH_BASE_BACKOFF_MS", "100")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start the binary");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn ready(&self) {
        let start = Instant::now();
        while start.elapsed() < LIMIT {
            if reqwest::get(format!("{}/healthz", self.url)).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start");
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, as a service manager stops it; waits for the process to end and returns
    /// whether it ended well.
    #[cfg(unix)]
    async fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        assert!(sent.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(start.elapsed() < LIMIT, "the server did not stop");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A settings file with one SMPP upstream, `smsc`, bound to the fake SMSC with its default
/// credentials, short timeouts (so that a send always ends well within the test server's
/// provider timeout), and the TOML lines in `extra`.
fn smpp_config(db: &Db, smsc: &FakeSmsc, extra: &str) -> PathBuf {
    let options = FakeSmscOptions::default();
    let config = db.dir.join("switchboard.toml");
    let toml = format!(
        "[[upstreams]]\nkind = \"smpp\"\nname = \"smsc\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"{}\"\npassword = \"{}\"\nresponse_timeout_ms = 1000\nthrottled_wait_ms = 500\n{extra}",
        smsc.port(),
        options.system_id,
        options.password
    );
    std::fs::write(&config, toml).unwrap();
    config
}

/// Waits until `check` gives a value, polling every 25 ms, failing after [`LIMIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An account with the sender, credits and a key.
async fn provision(url: &str) -> (Uuid, TextingLineClient) {
    let admin = AdminClient::new(url, TOKEN).unwrap();
    let account = admin.create_account("acks").await.unwrap();
    let sender = CreateSender { address: SENDER.into(), active: true, sms: true, mms: false };
    admin.add_sender(account.id, &sender).await.unwrap();
    admin.top_up(account.id, &TopUp { sms: 1000, mms: 0, reference: None }).await.unwrap();
    let key = admin.create_key(account.id, None).await.unwrap();
    (account.id, TextingLineClient::new(url, &key.key.id, &key.secret).unwrap())
}

async fn send(client: &TextingLineClient, to: &str, body: &str) -> MessageId {
    let req = TlSendRequest { to: to.into(), from: SENDER.into(), body: Some(body.into()), ..Default::default() };
    client.send(&req).await.unwrap().message.id
}

async fn message_with(admin: &AdminClient, id: MessageId, status: MessageStatus) -> Option<Message> {
    admin.message(id).await.ok().filter(|m| m.status == status)
}

/// Something that keeps the server's writes from committing while it is held: an open write
/// transaction on SQLite, an exclusive lock on `messages` on PostgreSQL.
enum Hold {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgConnection),
}

impl Hold {
    async fn take(url: &str) -> Hold {
        if url.starts_with("sqlite:") {
            let conn = rusqlite::Connection::open(url.trim_start_matches("sqlite://")).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            Hold::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE messages IN EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
            Hold::Postgres(conn)
        }
    }

    /// Waits (on PostgreSQL) until the server's receipt transaction waits for the lock.
    async fn until_the_receipt_waits(&mut self) {
        let Hold::Postgres(conn) = self else { return };
        let query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE '%message_parts%'";
        let start = Instant::now();
        loop {
            // Within a transaction the statistics are a snapshot taken at their first read.
            sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut *conn).await.unwrap();
            let waiting: i64 = sqlx::query_scalar(query).fetch_one(&mut *conn).await.unwrap();
            if waiting > 0 {
                return;
            }
            if start.elapsed() > LIMIT {
                let activity: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT state, wait_event_type, query FROM pg_stat_activity WHERE datname = current_database()",
                )
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                panic!("the receipt never reached the database: {activity:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn release(self) {
        match self {
            Hold::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
            Hold::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.ok();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_receipts_and_opt_outs_survive_a_crash_before_their_commit_sqlite() {
    smpp_receipts_and_opt_outs_survive_a_crash_before_their_commit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_receipts_and_opt_outs_survive_a_crash_before_their_commit_postgres() {
    smpp_receipts_and_opt_outs_survive_a_crash_before_their_commit(Backend::Postgres).await;
}

/// A receipt and a STOP arrive while the server cannot commit: neither is answered; the server
/// is killed; after the restart the SMSC delivers both again, and each applies once.
async fn smpp_receipts_and_opt_outs_survive_a_crash_before_their_commit(backend: Backend) {
    let Some(db) = Db::new(backend, "smpp_acks").await else { return };
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = smpp_config(&db, &smsc, "reconnect_min_ms = 100\nreconnect_max_ms = 400\n");
    let port = free_port();
    let server = Server::start(&db, port, Some(&config), &[]);
    server.ready().await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let (account, client) = provision(&server.url).await;
    eventually("the bind", || async { (smsc.bind_count() == 1).then_some(()) }).await;
    let id = send(&client, HANDSET, "hello").await;
    eventually("the message sent", || message_with(&admin, id, MessageStatus::Sent)).await;
    let submit = smsc.submits().into_iter().next().expect("the submission");

    // The server's writes cannot commit while the test holds the database.
    let mut hold = Hold::take(&db.db.url).await;
    assert!(smsc.inject_receipt(&submit), "the session receives");
    assert!(smsc.inject_text(HANDSET, SENDER, "STOP"), "the session receives");
    hold.until_the_receipt_waits().await;
    // Neither is answered while it is not stored (watched for a while: an answer given before
    // the commit would come at once).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(smsc.delivery_answers().is_empty(), "answered before the commit: {:?}", smsc.delivery_answers());
    assert_eq!(smsc.unanswered_deliveries(), 2);

    server.kill();
    hold.release().await;
    eventually("the SMSC to see the connection drop", || async { (smsc.pending_redeliveries() == 2).then_some(()) })
        .await;

    // After the restart, the SMSC delivers both again, and each is stored once.
    let server = Server::start(&db, port, Some(&config), &[]);
    server.ready().await;
    eventually("both answered", || async {
        let answers = smsc.delivery_answers();
        (answers.len() == 2).then_some(answers)
    })
    .await
    .iter()
    .for_each(|a| assert!(a.is_ok(), "{a:?}"));
    assert_eq!(smsc.redelivered_count(), 2);
    let m = eventually("the message delivered", || message_with(&admin, id, MessageStatus::Delivered)).await;
    let delivered = m.events.iter().filter(|e| e.status == MessageStatus::Delivered).count();
    assert_eq!(delivered, 1, "{:?}", m.events);
    let opt_outs = admin.opt_outs(account).await.unwrap().data;
    assert_eq!(opt_outs.len(), 1, "{opt_outs:?}");
    // The reply to STOP is sent once, through the SMSC.
    let (inbound, replies) = eventually("the reply sent", || async {
        let all = admin.messages(account, 100, None).await.ok()?.data;
        let inbound: Vec<Message> = all.iter().filter(|m| m.direction == Direction::Inbound).cloned().collect();
        let replies: Vec<Message> =
            all.into_iter().filter(|m| m.direction == Direction::Outbound && m.id != id).collect();
        (!replies.is_empty() && replies.iter().all(|r| r.status == MessageStatus::Sent)).then_some((inbound, replies))
    })
    .await;
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    assert_eq!(inbound[0].body.as_deref(), Some("STOP"));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].to, HANDSET);
    assert_eq!(smsc.submit_count(), 2, "the message and the reply");
    assert_eq!((smsc.unanswered_deliveries(), smsc.pending_redeliveries()), (0, 0));
    server.kill();
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_taken_before_a_crash_is_not_sent_again_sqlite() {
    a_part_taken_before_a_crash_is_not_sent_again(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_taken_before_a_crash_is_not_sent_again_postgres() {
    a_part_taken_before_a_crash_is_not_sent_again(Backend::Postgres).await;
}

/// A three-part message meets an SMSC that takes one submission a second: its first part is
/// taken, the second throttled, and the server is killed while it waits. After the restart the
/// message is sent with its second and third parts only: every part is taken exactly once.
async fn a_part_taken_before_a_crash_is_not_sent_again(backend: Backend) {
    let Some(db) = Db::new(backend, "smpp_parts").await else { return };
    let options = FakeSmscOptions { quota_per_second: Some(1), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = smpp_config(&db, &smsc, "throttling_sleep_ms = 5000\n");
    let port = free_port();
    let server = Server::start(&db, port, Some(&config), &[]);
    server.ready().await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let (_, client) = provision(&server.url).await;
    eventually("the bind", || async { (smsc.bind_count() == 1).then_some(()) }).await;
    let id = send(&client, HANDSET, &"p".repeat(400)).await;
    // The first part taken, the second throttled: the server waits out the pause.
    eventually("the second part throttled", || async { (smsc.submit_count() >= 2).then_some(()) }).await;
    server.kill();
    let taken = |smsc: &FakeSmsc| smsc.submits().into_iter().filter(|s| s.message_id.is_some()).collect::<Vec<_>>();
    assert_eq!(taken(&smsc).len(), 1);

    let server = Server::start(&db, port, Some(&config), &[]);
    server.ready().await;
    let m = eventually("the message sent", || message_with(&admin, id, MessageStatus::Sent)).await;
    assert_eq!(m.parts.len(), 3, "{m:?}");
    let taken = taken(&smsc);
    assert_eq!(taken.len(), 3, "{taken:?}");
    let distinct: std::collections::HashSet<_> = taken.iter().map(|s| s.short_message.clone()).collect();
    assert_eq!(distinct.len(), 3, "no part was taken twice");
    server.kill();
    db.remove().await;
}

/// SIGTERM closes each SMPP bind with `unbind`, after the answer to the `submit_sm` in flight,
/// which is recorded before the process ends.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_unbinds_from_the_smsc() {
    let Some(db) = Db::new(Backend::Sqlite, "smpp_sigterm").await else { return };
    let options = FakeSmscOptions { answer_delay: Duration::from_millis(800), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = smpp_config(&db, &smsc, "");
    let port = free_port();
    let server = Server::start(&db, port, Some(&config), &[]);
    server.ready().await;
    let (_, client) = provision(&server.url).await;
    eventually("the bind", || async { (smsc.bind_count() == 1).then_some(()) }).await;
    let id = send(&client, HANDSET, "in flight at the stop").await;
    eventually("the submission", || async { (smsc.submit_count() == 1).then_some(()) }).await;
    assert!(server.terminate().await, "the server ends well");
    assert_eq!(smsc.unbind_count(), 1, "the bind was closed with unbind");
    assert_eq!(smsc.early_unbind_count(), 0, "the submission in flight was answered before the unbind");
    // Its answer was recorded before the process ended: after a restart the message is sent,
    // not waiting for its lease to run out to be sent a second time.
    let server = Server::start(&db, port, Some(&config), &[]);
    server.ready().await;
    let m = AdminClient::new(&server.url, TOKEN).unwrap().message(id).await.unwrap();
    assert_eq!(m.status, MessageStatus::Sent, "{m:?}");
    assert_eq!(smsc.submit_count(), 1);
    server.kill();
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulator_receipts_survive_a_crash_sqlite() {
    simulator_receipts_survive_a_crash(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulator_receipts_survive_a_crash_postgres() {
    simulator_receipts_survive_a_crash(Backend::Postgres).await;
}

/// Messages sent through the simulator with a long receipt delay; the server is killed before
/// their receipts are due; after the restart every one is settled as the simulator's test
/// numbers say.
async fn simulator_receipts_survive_a_crash(backend: Backend) {
    const N: usize = 24;
    let Some(db) = Db::new(backend, "sim_receipts").await else { return };
    let port = free_port();
    let delay = [("SWITCHBOARD_SIMULATOR_RECEIPT_DELAY_MS", "3000")];
    let server = Server::start(&db, port, None, &delay);
    server.ready().await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let (_, client) = provision(&server.url).await;
    let failing = switchboard_provider::simulator::failed_receipt_number(ErrorType::DestinationBlocked);
    let mut sent = Vec::new();
    for i in 0..N {
        let (to, body) = match i % 4 {
            0 => (failing.as_str(), "x".repeat(200)),
            1 => (switchboard_provider::simulator::DUPLICATE_RECEIPTS, format!("twice {i}")),
            2 => (HANDSET, "y".repeat(200)),
            _ => (HANDSET, format!("once {i}")),
        };
        sent.push((send(&client, to, &body).await, to == failing));
    }
    for (id, _) in &sent {
        eventually("every message sent", || message_with(&admin, *id, MessageStatus::Sent)).await;
    }
    // Killed before the first receipt is due: every message is still `sent` in the database,
    // so what settles them below is the recovery, not receipts that came before the kill.
    server.kill();
    {
        let store = switchboard_storage::connect(&db.db.url, &Default::default()).await.expect("open the database");
        for (id, _) in &sent {
            let m = store.get_message(*id).await.expect("read").expect("the message");
            assert_eq!(m.status, MessageStatus::Sent, "settled before the kill: the receipt delay is too short here");
        }
    }

    let server = Server::start(&db, port, None, &delay);
    server.ready().await;
    for (id, fails) in sent {
        let m = eventually("every message settled after the restart", || async {
            admin.message(id).await.ok().filter(|m| m.status != MessageStatus::Sent)
        })
        .await;
        if fails {
            assert_eq!((m.status, m.error_type), (MessageStatus::Failed, Some(ErrorType::DestinationBlocked)), "{m:?}");
            assert!(m.error_message.as_deref().unwrap_or_default().starts_with("part 2 of 2"), "{m:?}");
        } else {
            assert_eq!(m.status, MessageStatus::Delivered, "{m:?}");
        }
        assert_eq!(m.events.iter().filter(|e| e.status == m.status).count(), 1, "{m:?}");
    }
    server.kill();
    db.remove().await;
}

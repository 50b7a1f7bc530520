//! `switchboard backup` while the server takes a steady load of sends, and `switchboard
//! restore` into a new data folder and over an existing database: every message accepted
//! before the backup began is in the copy, none sent after it ended is, balances agree with
//! the ledger, and a restore never runs under a live server.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_client::{AdminClient, TextingLineClient};
use switchboard_domain::wire::{CreateSender, TlSendRequest, TopUp};
use uuid::Uuid;

use super::{BIN, TOKEN, free_port, temp_dir};

/// A server process on a data folder (the default database `switchboard.db` in it), killed
/// when dropped (also when a test fails).
struct Serving {
    child: Child,
    url: String,
}

impl Serving {
    async fn start(data: &Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = switchboard(data);
        command
            .arg("serve")
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
            .env("SWITCHBOARD_SENT_WAIT_MS", "0")
            .env("SWITCHBOARD_DISPATCH_POLL_MS", "50")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in extra {
            command.env(name, value);
        }
        let server =
            Serving { child: command.spawn().expect("start the binary"), url: format!("http://127.0.0.1:{port}") };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if reqwest::get(format!("{}/healthz", server.url)).await.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // SIGKILL: no shutdown code runs, as in a crash; the kernel releases the lock.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on a data folder, with no other settings from the environment.
fn switchboard(data: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("SWITCHBOARD_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_SERVER_KEYS")
        .env_remove("SWITCHBOARD_SERVER_KEYS_FILE");
    command
}

/// Runs `switchboard <args>` on a data folder to its end.
fn run(data: &Path, args: &[&str]) -> Output {
    switchboard(data).args(args).output().expect("run the binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// An account with a sender, credits and an API key.
struct Tenant {
    account: Uuid,
    from: String,
    key: (String, String),
    client: TextingLineClient,
}

async fn tenant(admin: &AdminClient, url: &str, n: u32, credits: i64) -> Tenant {
    let account = admin.create_account(&format!("tenant {n}")).await.unwrap();
    let from = format!("+1800555{n:04}");
    admin
        .add_sender(account.id, &CreateSender { address: from.clone(), active: true, sms: true, mms: false })
        .await
        .unwrap();
    admin.top_up(account.id, &TopUp { sms: credits, mms: 0, reference: Some(format!("inv-{n}")) }).await.unwrap();
    let key = admin.create_key(account.id, None).await.unwrap();
    let client = TextingLineClient::new(url, &key.key.id, &key.secret).unwrap();
    Tenant { account: account.id, from, key: (key.key.id, key.secret), client }
}

fn request(from: &str, i: usize) -> TlSendRequest {
    TlSendRequest { to: "+18005551234".into(), from: from.into(), body: Some(format!("m{i}")), ..Default::default() }
}

/// Items per page of the admin API's lists.
const PAGE: u32 = 500;

/// Every message id of an account, through the admin API.
async fn message_ids(admin: &AdminClient, account: Uuid) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = admin.messages(account, PAGE, cursor.as_deref()).await.unwrap();
        ids.extend(page.data.iter().map(|m| m.id.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// An account's balance, and the sum of its ledger entries and how many there are, through
/// the admin API.
async fn balance_and_ledger(admin: &AdminClient, account: Uuid) -> (i64, i64, usize) {
    let balance = admin.balance(account).await.unwrap().sms_credits;
    let (mut sum, mut entries) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let page = admin.ledger(account, PAGE, cursor.as_deref()).await.unwrap();
        sum += page.data.iter().map(|e| e.sms_delta).sum::<i64>();
        entries += page.data.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (balance, sum, entries),
        }
    }
}

/// One accepted send: its id, whether its 201 came before the backup began, and whether it
/// was sent after the backup had ended.
struct Accepted {
    id: String,
    answered_before: bool,
    sent_after: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_message_accepted_before_it() {
    const TASKS: usize = 8;
    const BEFORE: usize = 3_000;
    let dir = temp_dir("backup");
    let data = dir.join("data");
    let server = Serving::start(&data, &[]).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let tenants =
        Arc::new([tenant(&admin, &server.url, 1, 100_000).await, tenant(&admin, &server.url, 2, 100_000).await]);

    // The load: tasks that send until told to stop, each send recorded with when it was
    // answered and when it was sent relative to the backup.
    let started = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<Accepted>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..TASKS)
        .map(|task| {
            let (tenants, started, ended, stop, accepted, count) =
                (tenants.clone(), started.clone(), ended.clone(), stop.clone(), accepted.clone(), count.clone());
            tokio::spawn(async move {
                let mut i = task;
                while !stop.load(Ordering::SeqCst) {
                    let t = &tenants[i % 2];
                    let sent_after = ended.load(Ordering::SeqCst);
                    let sent = t.client.send(&request(&t.from, i)).await.expect("a send under load");
                    assert_eq!(sent.status, reqwest::StatusCode::CREATED);
                    let answered_before = !started.load(Ordering::SeqCst);
                    accepted.lock().unwrap().push(Accepted {
                        id: sent.message.id.to_string(),
                        answered_before,
                        sent_after,
                    });
                    count.fetch_add(1, Ordering::SeqCst);
                    i += TASKS;
                }
            })
        })
        .collect();
    let until = |n: usize| {
        let count = count.clone();
        async move {
            let start = Instant::now();
            while count.load(Ordering::SeqCst) < n {
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "the load stalled at {}",
                    count.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    until(BEFORE).await;

    // The backup, while the load goes on.
    let file = dir.join("backups").join("switchboard-backup.db");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let at_start = count.load(Ordering::SeqCst);
    started.store(true, Ordering::SeqCst);
    let clock = Instant::now();
    let backup = tokio::task::spawn_blocking({
        let (data, file) = (data.clone(), file.clone());
        move || run(&data, &["backup", "--to", arg(&file), "--with-keys"])
    })
    .await
    .unwrap();
    let took = clock.elapsed();
    ended.store(true, Ordering::SeqCst);
    let during = count.load(Ordering::SeqCst) - at_start;
    assert!(backup.status.success(), "{}", stderr(&backup));
    let said = stdout(&backup);
    eprintln!("{said}");
    eprintln!(
        "backup of a database with {at_start} messages: {} bytes, the command took {took:?}; {during} sends \
         were answered meanwhile",
        std::fs::metadata(&file).unwrap().len()
    );
    assert!(said.contains("every balance agrees with the ledger"), "{said}");
    assert!(said.contains("server keys: copied") && !said.contains("WARNING"), "{said}");
    assert!(during > 0, "the server answered no send while the backup ran");
    assert_eq!(mode(&file), 0o600, "the backup holds key hashes and sealed secrets");
    let keys_copy = PathBuf::from(format!("{}.keys", file.display()));
    assert_eq!(mode(&keys_copy), 0o600);
    assert_eq!(std::fs::read(&keys_copy).unwrap(), std::fs::read(data.join("server-keys")).unwrap());
    let beside: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside.len(), 2, "nothing but the copy and its keys: {beside:?}");

    // A backup never overwrites a file.
    let before = std::fs::read(&file).unwrap();
    let again = run(&data, &["backup", "--to", arg(&file)]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&file).unwrap(), before, "the existing file is untouched");

    // Nothing restores or migrates under the live server, and a second server does not start
    // on its data.
    let database = data.join("switchboard.db");
    let inode = std::fs::metadata(&database).unwrap().ino();
    let refused = run(&data, &["restore", "--from", arg(&file)]);
    assert!(!refused.status.success());
    let in_use = format!("in use by another switchboard process (pid {})", server.pid());
    assert!(
        stderr(&refused).contains(&in_use) && stderr(&refused).contains("nothing was changed"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::metadata(&database).unwrap().ino(), inode, "the database is untouched");
    assert!(
        std::fs::read_dir(&data).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("restore")),
        "nothing was put aside or left behind"
    );
    let migrate = run(&data, &["migrate"]);
    assert!(!migrate.status.success() && stderr(&migrate).contains(&in_use), "{}", stderr(&migrate));
    let mut second = switchboard(&data)
        .arg("serve")
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = second.kill();
            panic!("a second server started on the same database");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let said = second.wait_with_output().unwrap();
    assert!(!status.success());
    assert!(stderr(&said).contains(&in_use), "{}", stderr(&said));

    // Some sends made after the backup ended, then the load stops and the server dies.
    until(count.load(Ordering::SeqCst) + 200).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    drop(server);

    // Something that is not a database is refused.
    let junk = dir.join("junk.db");
    std::fs::write(&junk, "these are not the pages you are looking for\n".repeat(100)).unwrap();
    let restored = dir.join("restored");
    let out = run(&restored, &["restore", "--from", arg(&junk)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not an SQLite database"), "{}", stderr(&out));
    assert!(!restored.join("switchboard.db").exists());

    // Without the server keys the copy is refused: a server could not start on it.
    let bare = dir.join("bare.db");
    std::fs::copy(&file, &bare).unwrap();
    let out = run(&restored, &["restore", "--from", arg(&bare)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no key file") && stderr(&out).contains("--keys"), "{}", stderr(&out));
    assert!(!restored.join("switchboard.db").exists());

    // With them (kept beside the backup), into a new data folder.
    let out = run(&restored, &["restore", "--from", arg(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    eprintln!("{said}");
    assert!(said.contains("every balance agrees with the ledger") && said.contains("server keys: put"), "{said}");
    assert_eq!(mode(&restored.join("switchboard.db")), 0o600);
    assert_eq!(mode(&restored.join("server-keys")), 0o600);
    assert_eq!(mode(&restored), 0o700);

    // The restored server has every message answered before the backup began, and none sent
    // after it ended. Its dispatcher stays off, so that nothing changes while it is read.
    let server = Serving::start(&restored, &[("SWITCHBOARD_DISPATCHER", "false")]).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let mut stored = HashSet::new();
    for t in tenants.iter() {
        stored.extend(message_ids(&admin, t.account).await);
    }
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());
    let before: Vec<&Accepted> = accepted.iter().filter(|a| a.answered_before).collect();
    let after: Vec<&Accepted> = accepted.iter().filter(|a| a.sent_after).collect();
    assert!(before.len() >= BEFORE && !after.is_empty());
    let missing: Vec<&str> = before.iter().filter(|a| !stored.contains(&a.id)).map(|a| a.id.as_str()).collect();
    assert!(
        missing.is_empty(),
        "{} of {} messages accepted before the backup are missing, such as {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(5)]
    );
    let later: Vec<&str> = after.iter().filter(|a| stored.contains(&a.id)).map(|a| a.id.as_str()).collect();
    assert!(
        later.is_empty(),
        "{} messages sent after the backup ended are in it, such as {:?}",
        later.len(),
        &later[..later.len().min(5)]
    );
    for t in tenants.iter() {
        let (balance, ledger, entries) = balance_and_ledger(&admin, t.account).await;
        let messages = message_ids(&admin, t.account).await.len();
        assert_eq!(balance, ledger, "the balance of {} is the sum of its ledger", t.account);
        assert_eq!(entries, messages + 1, "a top-up and one charge per message");
        assert_eq!(balance, 100_000 - 2 * messages as i64, "an SMS costs 2 credits");
    }
    // The API keys check against the restored keys.
    let t = &tenants[0];
    let client = TextingLineClient::new(&server.url, &t.key.0, &t.key.1).unwrap();
    let sent = client.send(&request(&t.from, 0)).await.expect("a send with a key made before the backup");
    assert_eq!(sent.status, reqwest::StatusCode::CREATED);
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_keeps_the_database_it_replaces() {
    let dir = temp_dir("restore-over");
    let data = dir.join("data");
    let server = Serving::start(&data, &[]).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let t = tenant(&admin, &server.url, 1, 10).await;
    let kept_id = t.client.send(&request(&t.from, 1)).await.unwrap().message.id.to_string();
    let file = dir.join("copy.db");
    let out = run(&data, &["backup", "--to", arg(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("server keys: not in this copy") && said.contains("server-keys"), "{said}");
    let lost_id = t.client.send(&request(&t.from, 2)).await.unwrap().message.id.to_string();
    // Killed: its last writes are in its WAL, not yet in the database file.
    drop(server);
    assert!(data.join("switchboard.db-wal").exists());

    // The database file itself is no backup: what its WAL holds would be lost.
    let elsewhere = dir.join("elsewhere");
    let out = run(&elsewhere, &["restore", "--from", arg(&data.join("switchboard.db"))]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("write-ahead log beside it"), "{}", stderr(&out));

    // The key file in place is the database's: it stays.
    let out = run(&data, &["restore", "--from", arg(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("is this database's; it is kept"), "{said}");
    let kept: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("switchboard.db.before-restore-"))
        .collect();
    let old = kept.iter().find(|p| !p.to_string_lossy().ends_with("-wal")).expect("the old database is kept");
    assert!(said.contains(&old.display().to_string()), "{said}");
    assert_eq!(kept.len(), 2, "the old database and its WAL: {kept:?}");
    assert!(!data.join("switchboard.db-wal").exists() && !data.join("switchboard.db-shm").exists());

    // The old database, with its WAL, still has both messages.
    let conn = rusqlite::Connection::open(old).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);
    drop(conn);

    let server = Serving::start(&data, &[]).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let ids = message_ids(&admin, t.account).await;
    assert_eq!(ids, HashSet::from([kept_id]), "the backup's message, not the later one ({lost_id})");
    assert_eq!(admin.balance(t.account).await.unwrap().sms_credits, 8, "one SMS charged, at 2 credits");
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

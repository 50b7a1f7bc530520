//! The end-to-end harness: start a real Switchboard server on `127.0.0.1:0` with a fresh
//! database (SQLite, or PostgreSQL from `TEST_POSTGRES_URL`) and drive it over HTTP with
//! `switchboard-client`.

use std::future::Future;
use std::time::{Duration, Instant};

use switchboard::Settings;
use switchboard_client::{AdminClient, Client};
use switchboard_domain::wire::{CreateSender, TopUp};
use switchboard_storage::testing::TestDatabase;
use uuid::Uuid;

/// The operator token of test servers.
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh database on the PostgreSQL test server.
    Postgres,
}

/// A database for one test, removed by [`TestDb::remove`].
#[derive(Debug)]
pub struct TestDb {
    db: TestDatabase,
    /// Which backend.
    pub backend: Backend,
}

impl TestDb {
    /// A fresh database, or `None` when PostgreSQL is not configured (outside CI).
    pub async fn new(backend: Backend, test: &str) -> Option<Self> {
        let db = match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres(test).await?,
        };
        Some(Self { db, backend })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.db.url
    }

    /// Settings for a server on this database, listening on a free port.
    pub fn settings(&self) -> Settings {
        let data_dir = std::env::temp_dir().join(format!("switchboard-e2e-{}", Uuid::new_v4().simple()));
        Settings {
            listen: "127.0.0.1:0".into(),
            database_url: self.db.url.clone(),
            data_dir,
            operator_token: Some(OPERATOR_TOKEN.into()),
            dispatch_base_backoff_ms: 50,
            dispatch_poll_ms: 50,
            simulator_slow_ms: 1_500,
            ..Settings::default()
        }
    }

    /// Drops the database.
    pub async fn remove(self) {
        self.db.remove().await;
    }
}

/// A running server.
#[derive(Debug)]
pub struct TestApp {
    /// Its base URL.
    pub url: String,
    /// An admin client for it.
    pub admin: AdminClient,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts a server with these settings.
    pub async fn start(settings: Settings) -> Self {
        let app = switchboard::build(&settings).await.expect("start the server");
        let url = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        let admin = AdminClient::new(&url, OPERATOR_TOKEN);
        Self { url, admin, shutdown: Some(tx), task: Some(task) }
    }

    /// Stops the server and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Creates a funded account with the sender `+18005559876` (SMS and MMS) and a key.
    pub async fn provision(&self, sms: i64, mms: i64) -> Tenant {
        let account = self.admin.create_account("test").await.expect("create account");
        if sms > 0 || mms > 0 {
            self.admin.top_up(account.id, &TopUp { sms, mms, reference: None }).await.expect("top up");
        }
        self.admin
            .add_sender(
                account.id,
                &CreateSender { address: tenant_sender(account.id), active: true, sms: true, mms: true },
            )
            .await
            .expect("add sender");
        let key = self.admin.create_key(account.id, Some("e2e")).await.expect("create key");
        Tenant {
            account: account.id,
            from: tenant_sender(account.id),
            key_id: key.key.id.clone(),
            api_key: key.api_key.clone(),
            client: Client::new(&self.url, &key.key.id, &key.secret),
        }
    }
}

/// A distinct sender number per account (numbers are assigned to one account only).
fn tenant_sender(account: Uuid) -> String {
    format!("+1800{:07}", account.as_u128() % 10_000_000)
}

/// An account with a key and a sender.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Account id.
    pub account: Uuid,
    /// Its sender number.
    pub from: String,
    /// Its key id.
    pub key_id: String,
    /// The key as one string (`id:secret`), for `X-API-Key`.
    pub api_key: String,
    /// A TextingLine client with its key.
    pub client: Client,
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Declares each named `async fn(Backend)` as a test on SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name($crate::Backend::Postgres).await })+
        }
    };
}

//! The end-to-end harness: start a real Switchboard server on `127.0.0.1:0` with a fresh
//! database (SQLite, or PostgreSQL from `TEST_POSTGRES_URL`) and drive it over HTTP with
//! `switchboard-client`.

pub mod contract;

use std::future::Future;
use std::time::{Duration, Instant};

use switchboard::Settings;
use switchboard_client::{AdminClient, TextingLineClient};
use switchboard_domain::wire::{CreateSender, TopUp};
use switchboard_storage::testing::TestDatabase;
use uuid::Uuid;

/// The Python of the tests that drive independent implementations (`TEST_PYTHON`,
/// a virtual environment with the pinned tools that `cargo xtask ci` prepares), or `None`
/// outside CI, where those tests are skipped; under CI its absence fails the test.
pub fn test_python() -> Option<std::path::PathBuf> {
    match std::env::var_os("TEST_PYTHON") {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("TEST_PYTHON must name the Python that cargo xtask ci prepares, under CI")
        }
        None => {
            eprintln!("skipped: TEST_PYTHON is not set (cargo xtask ci sets it)");
            None
        }
    }
}

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
    /// The installation's server keys, shared by every node on this database as an operator
    /// would share them; made by the first node that starts.
    keys_dir: std::path::PathBuf,
}

impl TestDb {
    /// A fresh database, or `None` when PostgreSQL is not configured (outside CI).
    pub async fn new(backend: Backend, test: &str) -> Option<Self> {
        let db = match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres(test).await?,
        };
        let keys_dir = std::env::temp_dir().join(format!("switchboard-e2e-keys-{}", Uuid::new_v4().simple()));
        Some(Self { db, backend, keys_dir })
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
            server_keys_file: Some(self.keys_dir.join("server-keys")),
            operator_token: Some(OPERATOR_TOKEN.into()),
            dispatch_base_backoff_ms: 50,
            dispatch_poll_ms: 50,
            simulator_slow_ms: 1_500,
            // Receipts come only in the tests that ask for them (by setting a short delay), so
            // that `sent` stays `sent` everywhere else.
            simulator_receipt_delay_ms: 3_600_000,
            webhook_base_backoff_ms: 100,
            webhook_max_backoff_ms: 1_000,
            webhook_poll_ms: 50,
            webhook_timeout_ms: 5_000,
            // The tests' webhook receivers and upstreams listen on 127.0.0.1, which the server
            // refuses to call unless the operator allows it.
            tenant_url_allow_cidrs: vec!["127.0.0.1/32".into()],
            // Every client of the tests is 127.0.0.1, some hundreds of connections at once.
            max_connections_per_address: Some(100_000),
            ..Settings::default()
        }
    }

    /// Drops the database.
    pub async fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.keys_dir);
        self.db.remove().await;
    }
}

/// A running server.
#[derive(Debug)]
pub struct TestApp {
    /// Its base URL: a proxy that checks every answer against the server's OpenAPI document
    /// (see [`contract::Checker`]).
    pub url: String,
    /// The server's own address, for what a proxy would change: the peer address it sees.
    pub direct_url: String,
    checker: contract::Checker,
    /// An admin client for it.
    pub admin: AdminClient,
    /// The SMPP server's address, when the settings enable it.
    pub smpp: Option<std::net::SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts a server with these settings.
    pub async fn start(settings: Settings) -> Self {
        let app = switchboard::build(&settings).await.expect("start the server");
        let direct_url = format!("http://{}", app.local_addr());
        let smpp = app.smpp_addr();

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        // Once the server is serving: the checker reads its document first.
        let checker = contract::Checker::start(&direct_url).await;
        let url = checker.url.clone();
        let admin = AdminClient::new(&url, OPERATOR_TOKEN).unwrap();
        Self { url, direct_url, checker, admin, smpp, shutdown: Some(tx), task: Some(task) }
    }

    /// Stops the server and waits for in-flight requests; fails if any answer broke the
    /// OpenAPI document.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let violations = self.checker.violations();
        assert!(violations.is_empty(), "answers that break the OpenAPI document:\n{}", violations.join("\n"));
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
            client: TextingLineClient::new(&self.url, &key.key.id, &key.secret).unwrap(),
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
    pub client: TextingLineClient,
}

/// Calls a server over raw HTTP with one authentication header (name, value), and returns the
/// status and the JSON body (`null` when there is none).
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: (&str, String),
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.url)).header(auth.0, auth.1);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Calls the admin API (`path` under `/admin/v1`) with the operator token.
pub async fn admin_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    call(app, method, &format!("/admin/v1{path}"), ("authorization", format!("Bearer {OPERATOR_TOKEN}")), body).await
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

/// URLs that name, or can only resolve to, an internal address: the server refuses to call
/// them unless the operator allows their ranges (`tenant_url_allow_cidrs`).
pub const INTERNAL_URLS: &[&str] = &[
    "http://127.0.0.1:8080/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://localhost:8080/hook",
    "http://metadata.google.internal/",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "https://192.0.2.1/hook",
    "http://[64:ff9b::7f00:1]/hook",
];

/// A webhook receiver on `127.0.0.1:0` that keeps every request it is sent.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Where it listens, e.g. `http://127.0.0.1:4321/hook`.
    pub url: String,
    state: std::sync::Arc<ReceiverState>,
}

/// One request a [`Receiver`] was sent.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The body.
    pub body: Vec<u8>,
    /// The body as JSON.
    pub json: serde_json::Value,
    /// The status the receiver answered.
    pub answered: u16,
}

#[derive(Debug, Default)]
struct ReceiverState {
    requests: std::sync::Mutex<Vec<Received>>,
    /// Answer 500 to this many requests first.
    fail_first: std::sync::atomic::AtomicUsize,
    /// Wait this long (ms) before answering.
    delay_ms: std::sync::atomic::AtomicU64,
    /// Event ids being answered right now, and whether one was ever answered twice at once.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    overlapped: std::sync::atomic::AtomicBool,
}

impl Receiver {
    /// Starts a receiver that answers 500 to the first `fail_first` requests, then 204, each
    /// after `delay`.
    pub async fn start(fail_first: usize, delay: Duration) -> Self {
        use std::sync::atomic::Ordering;
        let state = std::sync::Arc::new(ReceiverState::default());
        state.fail_first.store(fail_first, Ordering::SeqCst);
        state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("receiver address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, state }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().expect("receiver lock").clone()
    }

    /// Requests answered 2xx whose body's `data.id` (or Bird `payload.id`) is `message`.
    pub fn delivered_for(&self, message: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter(|r| r.json["data"]["id"] == message || r.json["payload"]["id"] == message)
            .collect()
    }

    /// Whether one event id was ever being answered twice at the same time.
    pub fn overlapped(&self) -> bool {
        self.state.overlapped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers 500 to the next `n` requests (0: answers 204 from now on).
    pub fn set_fail_first(&self, n: usize) {
        self.state.fail_first.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Changes the delay of later answers.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn receive(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ReceiverState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use std::sync::atomic::Ordering;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let id = header("webhook-id");
    if !state.in_flight.lock().expect("receiver lock").insert(id.clone()) {
        state.overlapped.store(true, Ordering::SeqCst);
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fail = state.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if fail { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::NO_CONTENT };
    state.in_flight.lock().expect("receiver lock").remove(&id);
    state.requests.lock().expect("receiver lock").push(Received {
        id,
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

/// An SMPP upstream named `smsc` bound to a fake SMSC on `port` with its default credentials,
/// with the settings in `extra` (a JSON object of `SmppConfig` fields) on top.
pub fn smpp_upstream(port: u16, extra: serde_json::Value) -> switchboard::settings::UpstreamSettings {
    let options = switchboard_smpp::testing::FakeSmscOptions::default();
    let mut config = serde_json::json!({
        "name": "smsc",
        "host": "127.0.0.1",
        "port": port,
        "system_id": options.system_id,
        "password": options.password,
    });
    if let (Some(config), serde_json::Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    let config: switchboard_smpp::SmppConfig = serde_json::from_value(config).expect("an SMPP upstream");
    switchboard::settings::UpstreamSettings::Smpp(config.into())
}

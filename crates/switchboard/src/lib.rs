//! The Switchboard server as a library: [`build`] turns [`Settings`] into a running [`App`]
//! (database opened and migrated, core and dispatcher started, listener bound), so that the
//! binary and the end-to-end tests start exactly the same thing.

pub mod backup;
pub mod cli;
pub mod keys;
pub mod lock;
pub mod send;
mod serve;
pub mod settings;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use settings::UpstreamSettings;
use switchboard_api::UpstreamCallbacks;
use switchboard_api::{AppState, HttpLimits, Secret};
use switchboard_core::{Core, CoreConfig, DispatcherConfig, GuardConfig, KeywordReplies, RetentionConfig};
use switchboard_http_upstream::HttpUpstream;
use switchboard_provider::{EventSink, Provider, RouteConfig, Router, Simulator, SimulatorConfig, UpstreamLimits};
use switchboard_smpp::SmppUpstream;
use switchboard_storage::{Backend, ConnectOptions};
use switchboard_validation::Policy;
use switchboard_webhooks::WorkerConfig;
use tokio::net::TcpListener;

pub use settings::Settings;

/// A built server, bound and ready to serve.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    serving: serve::ServeConfig,
    core: Core,
    provider: Arc<dyn Provider>,
    webhooks: Option<switchboard_webhooks::Worker>,
    retention: Option<switchboard_core::retention::Retention>,
    smpp: Option<switchboard_smpp_server::SmppServer>,
    /// The embedded database's lock, held until the server has stopped.
    lock: Option<lock::DatabaseLock>,
}

impl App {
    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The address the SMPP server listens on, when it is enabled.
    pub fn smpp_addr(&self) -> Option<SocketAddr> {
        self.smpp.as_ref().map(switchboard_smpp_server::SmppServer::local_addr)
    }

    /// The core, for tests that look underneath the HTTP API.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    ///
    /// Connections are held to the header-read and idle timeouts, requests to their timeout
    /// and a grace to write the answer, and connections are capped in number, in all and per
    /// client address (see [`Settings::header_read_timeout_ms`], [`Settings::idle_timeout_ms`],
    /// [`Settings::write_grace_ms`], [`Settings::max_connections`] and
    /// [`Settings::max_connections_per_address`]); handlers can extract the peer's address as
    /// `axum::extract::ConnectInfo<SocketAddr>`.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let served = serve::serve(self.listener, self.router, self.serving, shutdown).await;
        // SMPP sessions store and answer the messages they took, then unbind.
        if let Some(smpp) = self.smpp {
            smpp.shutdown().await;
        }
        // Deliveries in flight are left to their leases: the next start (or another node)
        // delivers them.
        drop(self.webhooks);
        // A retention batch in flight ends (it is one short transaction); the next pass
        // carries on where this one stopped.
        if let Some(retention) = self.retention {
            retention.stop().await;
        }
        // The dispatcher claims no more, and what it has in flight ends and is recorded; then
        // upstreams close their sessions as their protocols ask (SMPP: unbind once the window
        // has drained).
        self.core.stop().await;
        self.provider.shutdown().await;
        // The lock goes last: what still holds the store here lets it go first.
        drop((self.core, self.provider));
        drop(self.lock);
        served
    }
}

/// Opens the database, starts the core, binds the listener.
pub async fn build(settings: &Settings) -> anyhow::Result<App> {
    let serving = serving(settings);
    tighten_data_dir(&settings.data_dir);
    let database_url = settings.database();
    if database_url.starts_with("sqlite:") {
        ensure_sqlite_dir(&database_url)?;
    }
    let lock = lock_database(&database_url)?;
    let store = switchboard_storage::connect(
        &database_url,
        &ConnectOptions {
            max_connections: settings.database_connections,
            wal_limit_bytes: settings.sqlite_wal_limit_mib * 1024 * 1024,
            ..ConnectOptions::default()
        },
    )
    .await
    .with_context(|| format!("opening the database {}", settings::redact_url(&database_url)))?;
    let backend = store.backend();

    let (events, events_rx) = switchboard_provider::event_channel();
    // Nodes share a PostgreSQL database, so the router's limits are kept there for all of
    // them; an embedded database serves one node.
    let shared: Option<Arc<dyn switchboard_provider::SharedLimits>> = match backend {
        Backend::Postgres => Some(Arc::new(switchboard_core::StoreLimits::new(store.clone()))),
        Backend::Sqlite => None,
    };
    let (provider, callbacks) = upstreams(settings, events.clone(), shared)?;
    // One rule for every URL the server calls on a tenant's behalf: checked when given, and by
    // the webhook worker when it connects.
    let urls = settings.url_policy()?;
    let config = CoreConfig {
        policy: Policy {
            max_body_chars: settings.max_body_chars,
            blocked_terms: settings.blocked_terms.clone(),
            max_recipients: settings.max_recipients,
            urls: urls.clone(),
            ..Policy::default()
        },
        default_rate_limit: settings.default_rate_limit,
        token_ttl: Duration::from_secs(settings.token_ttl_secs),
        replies: KeywordReplies {
            stop: settings.stop_reply.clone(),
            start: settings.start_reply.clone(),
            help: settings.help_reply.clone(),
        },
        sent_wait: Duration::from_millis(settings.sent_wait_ms),
        lookup: (settings.destination_lookup != "off").then(switchboard_core::destinations::default_lookup),
        destinations: settings.destination_rules()?,
        // Only PostgreSQL's committer has writer tasks: SQLite's writer thread groups itself.
        commit_writers: settings.commit_writers.unwrap_or(4),
        commit_max_batch: settings.commit_max_batch,
        auth_cache_ttl: Duration::from_millis(settings.auth_cache_ttl_ms),
        auth_guard: GuardConfig {
            address_failures_per_minute: settings.auth_failures_per_minute,
            key_failures_per_minute: settings.auth_key_failures_per_minute,
            max_entries: settings.auth_guard_entries,
        },
        run_dispatcher: settings.dispatcher,
        dispatcher: DispatcherConfig {
            max_in_flight: settings.dispatch_max_in_flight,
            poll_interval: Duration::from_millis(settings.dispatch_poll_ms),
            max_attempts: settings.dispatch_max_attempts,
            base_backoff: Duration::from_millis(settings.dispatch_base_backoff_ms),
            send_timeout: Duration::from_millis(settings.provider_timeout_ms),
            // A claim outlives the provider call it covers, so no two nodes send one message.
            lease: Duration::from_millis(settings.provider_timeout_ms.saturating_mul(2).max(5_000)),
            ..DispatcherConfig::default()
        },
        ..CoreConfig::default()
    };
    let server_keys = keys::load(settings, store.as_ref()).await?;
    let core = Core::start(store, provider.clone(), Some(events_rx), &server_keys, config)
        .await
        .context("starting the core")?;
    // The simulator keeps the receipts it owes in memory: those of parts it took before this
    // start are read back from the database and sent when due.
    if settings.upstreams.is_empty()
        || settings.upstreams.iter().any(|u| matches!(u, UpstreamSettings::Simulator { .. }))
    {
        core.resume_simulator_receipts(Simulator::with_events(simulator_config(settings), events));
    }
    let webhooks = settings.webhooks.then(|| {
        let config = WorkerConfig {
            max_in_flight: settings.webhook_max_in_flight,
            per_target: settings.webhook_per_endpoint,
            timeout: Duration::from_millis(settings.webhook_timeout_ms),
            // A claim outlives the request it covers, so no two nodes deliver one event at once.
            lease: Duration::from_millis(settings.webhook_timeout_ms.saturating_mul(3).max(10_000)),
            poll_interval: Duration::from_millis(settings.webhook_poll_ms),
            base_backoff: Duration::from_millis(settings.webhook_base_backoff_ms),
            max_backoff: Duration::from_millis(settings.webhook_max_backoff_ms),
            max_age: Duration::from_secs(settings.webhook_max_age_secs),
            urls,
            ..WorkerConfig::default()
        };
        switchboard_webhooks::start(core.store(), core.sealer(), Arc::new(switchboard_api::WebhookRender), config)
    });
    // The nodes that dispatch also prune: on several nodes their batches take different
    // messages.
    let retention = (settings.dispatcher && settings.retention_days > 0).then(|| {
        let config = RetentionConfig {
            keep: Duration::from_secs(u64::from(settings.retention_days) * 86_400),
            batch: settings.retention_batch,
            interval: Duration::from_secs(settings.retention_interval_secs),
        };
        switchboard_core::retention::start(core.store(), config)
    });

    let operator_token = match &settings.operator_token {
        Some(t) => t.clone(),
        None => operator_token_file(&settings.data_dir)?,
    };
    let trusted_proxies = settings.trusted_proxies()?.into();
    let console = match settings.console {
        true => switchboard_console::router(
            core.clone(),
            switchboard_console::ConsoleConfig {
                operator_token: operator_token.clone(),
                sessions: switchboard_core::console::SessionLimits {
                    lifetime: Duration::from_secs(settings.console_session_hours * 3600),
                    idle: Duration::from_secs(settings.console_idle_minutes * 60),
                },
            },
        ),
        false => axum::Router::new(),
    };
    let state = AppState {
        core: core.clone(),
        trusted_proxies,
        operator_token: Secret::new(operator_token),
        metrics: telemetry::metrics_handle(),
        metrics_token: settings.metrics_token.clone().map(Secret::new),
        upstream_callbacks: Arc::new(callbacks),
        limits: HttpLimits {
            max_body_bytes: settings.max_body_bytes,
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
        },
    };
    let listener = serve::bind(&settings.listen).await.with_context(|| format!("listening on {}", settings.listen))?;
    tracing::info!(
        address = %listener.local_addr()?,
        database = %settings::redact_url(&database_url),
        backend = ?backend,
        "switchboard listening"
    );
    let smpp = match settings.smpp_server.enabled {
        true => Some(start_smpp_server(&settings.smpp_server, core.clone()).await?),
        false => None,
    };
    Ok(App {
        listener,
        router: switchboard_api::router_with(state, console),
        serving,
        core,
        provider,
        webhooks,
        retention,
        smpp,
        lock,
    })
}

/// Binds and starts the SMPP server.
async fn start_smpp_server(
    s: &settings::SmppServerSettings,
    core: Core,
) -> anyhow::Result<switchboard_smpp_server::SmppServer> {
    let tls = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            switchboard_smpp_server::tls_config(cert, key)
                .map_err(|e| anyhow::anyhow!(e))
                .context("the SMPP server's TLS certificate")?,
        ),
        _ => None,
    };
    let config = switchboard_smpp_server::SmppServerConfig {
        system_id: s.system_id.clone(),
        max_binds_per_account: s.max_binds_per_account,
        window: s.window,
        max_per_second: s.max_per_second,
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        reassembly_timeout: Duration::from_secs(s.reassembly_timeout_secs),
        receipt_hold: Duration::from_secs(s.receipt_hold_hours.saturating_mul(3600)),
        deliver_window: s.deliver_window,
        deliver_timeout: Duration::from_secs(s.deliver_timeout_secs),
        deliver_poll: Duration::from_millis(s.deliver_poll_ms),
        tls,
    };
    let listener = serve::bind(&s.listen).await.with_context(|| format!("SMPP server listening on {}", s.listen))?;
    Ok(switchboard_smpp_server::SmppServer::start(core, config, listener)?)
}

/// Raises the open-file limit to its hard limit and derives how connections are treated.
fn serving(settings: &Settings) -> serve::ServeConfig {
    let fd_limit = serve::raise_fd_limit();
    let idle_timeout = Duration::from_millis(settings.idle_timeout_ms);
    let max_connections = settings.max_connections.unwrap_or_else(|| serve::default_max_connections(fd_limit));
    let serving = serve::ServeConfig {
        header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
        idle_timeout,
        // A request may take its whole timeout without a byte moving; past that, a request
        // whose answer nobody reads is not worth a connection.
        stall_timeout: idle_timeout.max(Duration::from_millis(settings.request_timeout_ms) + Duration::from_secs(1)),
        // However bytes move (an HTTP/2 PING moves some), no request outlives its timeout and
        // the grace to write its answer.
        request_limit: Duration::from_millis(settings.request_timeout_ms.saturating_add(settings.write_grace_ms)),
        max_connections,
        max_connections_per_address: settings
            .max_connections_per_address
            .unwrap_or_else(|| serve::default_max_connections_per_address(max_connections)),
        // Checked when the settings were validated.
        trusted_proxies: settings.trusted_proxies().unwrap_or_default().into(),
    };
    tracing::info!(
        open_file_limit = %fd_limit.map_or_else(|| "none".to_owned(), |l| l.to_string()),
        max_connections = serving.max_connections,
        max_connections_per_address = serving.max_connections_per_address,
        header_read_timeout_ms = settings.header_read_timeout_ms,
        idle_timeout_ms = settings.idle_timeout_ms,
        "connection limits"
    );
    serving
}

/// The provider messages go to: the simulator alone, or a router over the configured
/// upstreams; and the HTTP upstreams by name, whose callbacks the API takes.
fn upstreams(
    settings: &Settings,
    events: EventSink,
    shared: Option<Arc<dyn switchboard_provider::SharedLimits>>,
) -> anyhow::Result<(Arc<dyn Provider>, UpstreamCallbacks)> {
    let simulator =
        |name: &str| Arc::new(Simulator::with_events(simulator_config(settings), events.clone()).named(name));
    check_upstreams(settings)?;
    let mut callbacks = UpstreamCallbacks::new();
    if settings.upstreams.is_empty() {
        return Ok((simulator("simulator"), callbacks));
    }
    let mut upstreams: Vec<(String, Arc<dyn Provider>, UpstreamLimits)> = Vec::new();
    for u in &settings.upstreams {
        let (provider, limits): (Arc<dyn Provider>, _) = match u {
            UpstreamSettings::Simulator { name, limits, .. } => (simulator(name), *limits),
            UpstreamSettings::Http(h) => {
                let mut config = h.config.clone();
                config.key_secret = secret_value(&config.key_secret)?;
                config.webhook_secret = secret_value(&config.webhook_secret)?;
                let upstream =
                    HttpUpstream::new(config, events.clone()).with_context(|| format!("upstream {}", h.config.name))?;
                callbacks.insert(h.config.name.clone(), upstream.clone());
                (upstream, h.limits)
            }
            UpstreamSettings::Smpp(s) => {
                let mut config = s.config.clone();
                config.password = secret_value(&config.password)?;
                // The SMPP upstream caps its own rate (`max_per_second`), per bind.
                (SmppUpstream::start(config, events.clone()), UpstreamLimits::default())
            }
        };
        upstreams.push((u.name().to_owned(), provider, limits));
    }
    let routes = if settings.routes.is_empty() {
        let names = upstreams.iter().map(|(n, ..)| n.clone()).collect();
        vec![RouteConfig { prefix: String::new(), accounts: Vec::new(), senders: Vec::new(), upstreams: names }]
    } else {
        settings.routes.clone()
    };
    let router = Router::new(upstreams, routes, settings.sender_max_per_second).context("routes")?;
    let router = match shared {
        Some(shared) => router.with_shared_limits(shared),
        None => router,
    };
    Ok((Arc::new(router), callbacks))
}

/// Checks the upstreams and routes as [`build`] would use them, without connecting to any:
/// secrets given as `env:NAME` are set, each upstream's settings hold, and the routes name
/// upstreams that exist.
pub fn check_upstreams(settings: &Settings) -> anyhow::Result<()> {
    let mut names = Vec::new();
    for u in &settings.upstreams {
        match u {
            UpstreamSettings::Simulator { .. } => {}
            UpstreamSettings::Http(h) => {
                let context = || format!("upstream {}", h.config.name);
                secret_value(&h.config.key_secret).with_context(context)?;
                secret_value(&h.config.webhook_secret).with_context(context)?;
            }
            UpstreamSettings::Smpp(s) => {
                let config = &s.config;
                secret_value(&config.password).with_context(|| format!("upstream {}", config.name))?;
                config.validate().with_context(|| format!("upstream {}", config.name))?;
                // A send gives up waiting at the bind, and its last answer comes, before the
                // dispatcher's timeout cuts it off (which would use up an attempt).
                let longest = config.throttled_wait_ms.saturating_add(config.response_timeout_ms);
                if longest >= settings.provider_timeout_ms {
                    anyhow::bail!(
                        "upstream {}: throttled_wait_ms ({}) plus response_timeout_ms ({}) must be less than \
                         provider_timeout_ms ({})",
                        config.name,
                        config.throttled_wait_ms,
                        config.response_timeout_ms,
                        settings.provider_timeout_ms
                    );
                }
            }
        }
        names.push(u.name().to_owned());
    }
    if let Some(keys) = &settings.server_keys {
        secret_value(keys).context("server_keys")?;
    }
    let (events, _) = switchboard_provider::event_channel();
    let stand_ins: Vec<(String, Arc<dyn Provider>, UpstreamLimits)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                Arc::new(Simulator::with_events(simulator_config(settings), events.clone())) as _,
                UpstreamLimits::default(),
            )
        })
        .collect();
    if !settings.routes.is_empty() {
        Router::new(stand_ins, settings.routes.clone(), settings.sender_max_per_second).context("routes")?;
    }
    Ok(())
}

/// The simulator's settings.
fn simulator_config(settings: &Settings) -> SimulatorConfig {
    SimulatorConfig {
        slow_delay: Duration::from_millis(settings.simulator_slow_ms),
        receipt_delay: Duration::from_millis(settings.simulator_receipt_delay_ms),
    }
}

/// A secret from the settings file: `env:NAME` reads the environment variable `NAME`, so that
/// the file itself need not hold it; anything else is the secret itself.
fn secret_value(value: &str) -> anyhow::Result<String> {
    match value.strip_prefix("env:") {
        Some(name) => std::env::var(name).with_context(|| format!("the environment variable {name} is not set")),
        None => Ok(value.to_owned()),
    }
}

/// Creates or upgrades the database schema.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    tighten_data_dir(&settings.data_dir);
    let database_url = settings.database();
    if database_url.starts_with("sqlite:") {
        ensure_sqlite_dir(&database_url)?;
    }
    // A server of another version may not run on the schema this one makes.
    let _lock = lock_database(&database_url)?;
    switchboard_storage::connect(&database_url, &ConnectOptions::default())
        .await
        .with_context(|| format!("migrating {}", settings::redact_url(&database_url)))?;
    Ok(())
}

/// Takes the lock of the embedded database `url` names (see [`lock`]), so that no second
/// server, migration or restore runs on it meanwhile; `None` for PostgreSQL, which several
/// nodes share, and for an in-memory database. A file system that cannot lock is logged, not
/// fatal: the server ran without the lock before there was one.
fn lock_database(url: &str) -> anyhow::Result<Option<lock::DatabaseLock>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let Ok(path) = switchboard_storage::snapshot::sqlite_file(url) else { return Ok(None) };
    match lock::DatabaseLock::take(&path) {
        Ok(lock) => Ok(Some(lock)),
        Err(e @ lock::LockError::InUse { .. }) => Err(e.into()),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "running without the database lock: nothing keeps a second server or a restore off this database"
            );
            Ok(None)
        }
    }
}

/// The generated operator token kept in `<data_dir>/operator-token` (mode 0600, in a 0700
/// folder), made on first start.
pub fn operator_token_file(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("operator-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if token.len() >= 16 {
            tighten(&path, 0o600);
            return Ok(token);
        }
    }
    private_dir(data_dir)?;
    let token = format!("op_{}", uuid::Uuid::new_v4().simple()) + &uuid::Uuid::new_v4().simple().to_string();
    write_private(&path, &token)?;
    tracing::info!(path = %path.display(), "generated the operator token; read it from this file");
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Makes the SQLite database's folder (0700 when it is made here) and its file, 0600, before
/// SQLite opens it: SQLite gives its `-wal` and `-shm` files the database file's mode. The
/// files of an existing database are tightened to 0600 if they are looser.
fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if path.is_empty() || path.starts_with(':') || query.split('&').any(|p| p == "mode=memory") {
        return Ok(());
    }
    let path = Path::new(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    if query.split('&').any(|p| p == "mode=ro") {
        return Ok(());
    }
    create_private(path)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    for file in [String::new(), "-wal".into(), "-shm".into(), "-journal".into()] {
        tighten(&path.with_file_name(format!("{name}{file}")), 0o600);
    }
    Ok(())
}

/// Makes `dir` (and any missing parents) readable by this user only, 0700, when it does not
/// exist yet.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Creates `path` empty with mode 0600 if it does not exist; leaves an existing file as it is.
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).with_context(|| format!("creating {}", path.display()))
}

/// Tightens an existing data folder to 0700: it holds the database and the operator token.
/// A shared folder with the sticky bit (such as `/tmp`) and `/` are left alone.
fn tighten_data_dir(dir: &Path) {
    if dir.parent().is_some() && dir.is_dir() {
        tighten(dir, 0o700);
    }
}

/// Takes away any permission `path` has beyond `mode` (0600 for a file, 0700 for a folder),
/// with a log line; does nothing if it does not exist or is already as tight. A failure is
/// logged, not fatal: the server still starts.
fn tighten(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else { return };
        let current = meta.permissions().mode() & 0o7777;
        if current & !mode & 0o777 == 0 {
            return;
        }
        if meta.is_dir() && current & 0o1000 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{current:o}"), "a shared folder holds the data; leaving its mode");
            return;
        }
        let tight = current & (mode | 0o7000);
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(tight)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                from = format!("{current:o}"),
                to = format!("{tight:o}"),
                "tightened the permissions of a data file that others could read"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                mode = format!("{current:o}"),
                error = %e,
                "could not tighten the permissions of a data file that others can read"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_file_or_the_environment() {
        assert_eq!(secret_value("plain").unwrap(), "plain");
        let missing = secret_value("env:SWITCHBOARD_TEST_NO_SUCH_VARIABLE").unwrap_err();
        assert!(missing.to_string().contains("SWITCHBOARD_TEST_NO_SUCH_VARIABLE"));
        // PATH is set wherever tests run.
        assert_eq!(secret_value("env:PATH").unwrap(), std::env::var("PATH").unwrap());
    }
}

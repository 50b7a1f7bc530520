//! Settings: built-in defaults, then an optional TOML file, then `SWITCHBOARD_*` environment
//! variables, then command-line flags ([`layers`]). Only this crate reads configuration.

pub mod layers;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, Serialize};
use switchboard_domain::{DestinationRules, NumberType, Region};
use switchboard_http_upstream::HttpUpstreamConfig;
use switchboard_provider::{RouteConfig, UpstreamLimits};
use switchboard_smpp::SmppConfig;

/// Everything the server can be told.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// `sqlite://…` or `postgres://…`; empty means `sqlite://<data_dir>/switchboard.db`.
    pub database_url: String,
    /// Folder for the embedded database and the generated operator token.
    pub data_dir: PathBuf,
    /// The admin API's bearer token. If unset, one is generated and kept in
    /// `<data_dir>/operator-token`.
    pub operator_token: Option<String>,
    /// The file with the server's keys (which key API-key hashes, sign access tokens and seal
    /// webhook secrets); empty means `<data_dir>/server-keys`. Made on first start, mode 0600.
    pub server_keys_file: Option<PathBuf>,
    /// The server's keys themselves, in the key file's text form (`;` may separate entries),
    /// or `env:NAME` to read them from the environment variable `NAME`: for nodes that share
    /// one PostgreSQL database. When set, no key file is read or made.
    pub server_keys: Option<String>,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Database connections (PostgreSQL) or readers (SQLite).
    pub database_connections: u32,
    /// SQLite: the size the WAL file is kept under, in MiB.
    pub sqlite_wal_limit_mib: u64,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// Longest time a client may take to send a request's headers, in milliseconds: from the
    /// moment a new connection is accepted, or the first byte of a later request arrives.
    pub header_read_timeout_ms: u64,
    /// How long a connection may stay open with no request in flight, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Most connections open at once; further ones wait in the listen queue until one
    /// closes. Default: the file-descriptor limit less a reserve for the database, upstreams
    /// and webhooks (a quarter of the limit, and at least 256 or half of it).
    #[serde(deserialize_with = "number_or_text")]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address (IPv6 addresses count by their
    /// /64). Past it the address's connection idle longest is closed to make room, or the new
    /// one at once if all of them have a request in flight. Default: a quarter of
    /// `max_connections`, at most 256.
    #[serde(deserialize_with = "number_or_text")]
    pub max_connections_per_address: Option<usize>,
    /// How long an answer may take to be written once the request timeout has passed, in ms:
    /// a request in flight longer than `request_timeout_ms` and this is cut off, its
    /// connection closed, whatever bytes still move.
    pub write_grace_ms: u64,
    /// Longest message text, in characters.
    pub max_body_chars: u64,
    /// Words a message may not contain (TextingLine 33019).
    pub blocked_terms: Vec<String>,
    /// How long a send waits for the provider so its response can say `sent`, in ms.
    pub sent_wait_ms: u64,
    /// Writer tasks of the group committer (default: 1 on SQLite, 4 on PostgreSQL).
    #[serde(deserialize_with = "number_or_text")]
    pub commit_writers: Option<usize>,
    /// Most messages in one commit.
    pub commit_max_batch: usize,
    /// How long a verified API key is trusted before it is read again, in ms.
    pub auth_cache_ttl_ms: u64,
    /// Failed credential checks (API keys, access tokens, the operator token) one client
    /// address may make per minute; past it the address is answered 429 until its budget
    /// refills. IPv6 clients count by their /64. Zero turns it off.
    pub auth_failures_per_minute: u32,
    /// Failed checks of one API key id per minute, from every address together; past it, wrong
    /// secrets for that key id are answered 429 (a right secret still passes). Zero turns it off.
    pub auth_key_failures_per_minute: u32,
    /// Most client addresses, and most key ids, whose failures are remembered.
    pub auth_guard_entries: usize,
    /// Whether this node dispatches messages.
    pub dispatcher: bool,
    /// Sends in flight at once.
    pub dispatch_max_in_flight: usize,
    /// How often the dispatcher looks for due work, in ms.
    pub dispatch_poll_ms: u64,
    /// Attempts before a retryable provider error is final.
    pub dispatch_max_attempts: u32,
    /// First retry delay, in ms (doubles each attempt).
    pub dispatch_base_backoff_ms: u64,
    /// How long one provider call may take, in ms.
    pub provider_timeout_ms: u64,
    /// How long the simulator's slow test number takes, in ms.
    pub simulator_slow_ms: u64,
    /// Most distinct recipients of one Mudbase send.
    pub max_recipients: usize,
    /// Requests per second a project may make to the Mudbase API unless its own limit (set
    /// through the admin API) says otherwise.
    pub default_rate_limit: u32,
    /// How long an access token from `/api/auth/token` lives, in seconds.
    pub token_ttl_secs: u64,
    /// Whether the web console is served at `/console`.
    pub console: bool,
    /// Longest a console session lasts, however much it is used, in hours (1 to 720).
    pub console_session_hours: u64,
    /// Longest a console session lasts unused, in minutes (1 up to the session's lifetime).
    pub console_idle_minutes: u64,
    /// How long after a submission the simulator's delivery receipts come, in ms.
    pub simulator_receipt_delay_ms: u64,
    /// Whether this node delivers webhooks.
    pub webhooks: bool,
    /// How long one webhook request may take, in ms.
    pub webhook_timeout_ms: u64,
    /// First webhook retry delay, in ms (doubles each attempt, with jitter).
    pub webhook_base_backoff_ms: u64,
    /// Longest webhook retry delay, in ms.
    pub webhook_max_backoff_ms: u64,
    /// How long an event is retried before it is given up, in seconds.
    pub webhook_max_age_secs: u64,
    /// Webhook requests in flight at once to one endpoint.
    pub webhook_per_endpoint: usize,
    /// Webhook requests in flight at once in all.
    pub webhook_max_in_flight: usize,
    /// How often the webhook worker looks for due deliveries, in ms.
    pub webhook_poll_ms: u64,
    /// How many days after a message ended its history (status events, parts, webhook
    /// deliveries and their attempts) is kept; the nodes that run the dispatcher then remove it
    /// in the background. The message itself and the ledger are kept. Zero keeps everything.
    pub retention_days: u32,
    /// Most messages whose history one retention batch (one transaction) removes.
    pub retention_batch: u32,
    /// Seconds between the end of one retention pass and the start of the next.
    pub retention_interval_secs: u64,
    /// Address ranges (`10.1.0.0/16`, `127.0.0.1/32`, `fd00::/8`) that the URLs the server
    /// calls on a tenant's behalf (webhook endpoints, Bird's `notification.url`) may name or
    /// resolve to although they are loopback, private, link-local or otherwise special; once
    /// any is given, local host names (`localhost`, `*.internal`, …) are judged by the
    /// addresses they resolve to. Empty by default: every such URL is refused.
    /// `SWITCHBOARD_TENANT_URL_ALLOW_CIDRS` takes them comma-separated.
    pub tenant_url_allow_cidrs: Vec<String>,
    /// Address ranges of the proxies in front of the server (`10.0.0.0/8`, `127.0.0.1/32`):
    /// when the TCP peer is in one, the client's address for the failure budgets is the
    /// right-most `X-Forwarded-For` address that is not itself a trusted proxy, and unknown
    /// (no per-address budget) when there is none. Empty by default: the header is ignored and
    /// the peer is the client. `SWITCHBOARD_TRUSTED_PROXIES` takes them comma-separated.
    pub trusted_proxies: Vec<String>,
    /// The answer to STOP (and UNSUBSCRIBE, CANCEL, …); empty for none.
    pub stop_reply: String,
    /// The answer to START (and UNSTOP, YES); empty for none.
    pub start_reply: String,
    /// The answer to HELP; empty for none.
    pub help_reply: String,
    /// Most messages per second from one sender number, across every upstream.
    #[serde(deserialize_with = "number_or_text")]
    pub sender_max_per_second: Option<u32>,
    /// A bearer token that `GET /metrics` then requires (`Authorization: Bearer …`), at least 16
    /// characters; unset, the metrics are open to whoever reaches the port.
    /// `SWITCHBOARD_METRICS_TOKEN`.
    pub metrics_token: Option<String>,
    /// How destinations are looked up before a send is stored: `offline` (libphonenumber's
    /// metadata, built in) or `off` (numbers are checked for their E.164 form only, and no
    /// destination rule applies). `SWITCHBOARD_DESTINATION_LOOKUP`.
    pub destination_lookup: String,
    /// Countries (ISO 3166-1 alpha-2) no message goes to: `geographic_restriction`.
    /// `SWITCHBOARD_BLOCKED_COUNTRIES` takes them comma-separated.
    pub blocked_countries: Vec<String>,
    /// Countries MMS goes to (`US` and `CA` by default); an MMS to any other is
    /// `service_restricted`. `SWITCHBOARD_MMS_COUNTRIES` takes them comma-separated.
    pub mms_countries: Vec<String>,
    /// Number types refused as `invalid_destination` (by default `fixed_line`, `premium_rate`,
    /// `shared_cost`, `uan`, `voicemail`, `pager`); the others are `mobile`,
    /// `fixed_line_or_mobile`, `toll_free`, `voip` and `personal_number`.
    /// `SWITCHBOARD_REFUSED_NUMBER_TYPES` takes them comma-separated.
    pub refused_number_types: Vec<String>,
    /// Numbers no message goes to, whole (`+447400123456`) or by their start (`+1900`): such a
    /// message fails `destination_blocked`, not charged. `SWITCHBOARD_BLOCKED_DESTINATIONS`
    /// takes them comma-separated.
    pub blocked_destinations: Vec<String>,
    /// The upstreams messages go to; none means the built-in simulator alone.
    #[serde(skip_serializing)]
    pub upstreams: Vec<UpstreamSettings>,
    /// Which upstreams take which messages; none sends everything to the upstreams in order.
    #[serde(skip_serializing)]
    pub routes: Vec<RouteConfig>,
    /// The SMPP server customers' systems bind to (`[smpp_server]`; off by default).
    pub smpp_server: SmppServerSettings,
}

/// `[smpp_server]`: the SMPP 3.4 listener for customers' ESMEs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppServerSettings {
    /// Whether to listen at all.
    pub enabled: bool,
    /// Address to listen on (2775 is SMPP's port; 3550 is common for SMPP over TLS).
    pub listen: String,
    /// TLS: the PEM certificate chain (the server's certificate first). With `tls_key_file`,
    /// the listener speaks TLS only.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: the PEM private key of the certificate.
    pub tls_key_file: Option<PathBuf>,
    /// The `system_id` the server names itself with in bind answers.
    pub system_id: String,
    /// Most binds one account may hold at once on a node (a credential's own limit may be lower).
    pub max_binds_per_account: u32,
    /// Most requests an ESME may have unanswered on one bind (a credential may set its own);
    /// one more is answered `ESME_RMSGQFUL`.
    pub window: u32,
    /// Most `submit_sm` a second on one bind (a credential may set its own); over it,
    /// `ESME_RTHROTTLED`.
    pub max_per_second: u32,
    /// Seconds without a PDU from the ESME before its bind is unbound and closed (an ESME
    /// keeps an idle bind with `enquire_link`).
    pub idle_timeout_secs: u64,
    /// Seconds the parts of a concatenated message wait for the rest; then they are refused
    /// (`ESME_RSUBMITFAIL`).
    pub reassembly_timeout_secs: u64,
    /// Hours a receipt or inbound message waits for a bind that receives before it is
    /// given up.
    pub receipt_hold_hours: u64,
    /// Most `deliver_sm` unanswered on one bind.
    pub deliver_window: u32,
    /// Seconds an ESME has to answer a `deliver_sm` before it is sent again.
    pub deliver_timeout_secs: u64,
    /// Milliseconds between looks at the queue of receipts and inbound messages, for each
    /// account with a bind that receives.
    pub deliver_poll_ms: u64,
}

impl Default for SmppServerSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:2775".into(),
            tls_cert_file: None,
            tls_key_file: None,
            system_id: "switchboard".into(),
            max_binds_per_account: 10,
            window: 100,
            max_per_second: 500,
            idle_timeout_secs: 120,
            reassembly_timeout_secs: 60,
            receipt_hold_hours: 72,
            deliver_window: 10,
            deliver_timeout_secs: 30,
            deliver_poll_ms: 200,
        }
    }
}

impl SmppServerSettings {
    /// Refuses settings that cannot work (only when the server is enabled).
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!("smpp_server.listen must be an address and port, such as 0.0.0.0:2775");
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            bail!("smpp_server: give both tls_cert_file and tls_key_file, or neither");
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 || !self.system_id.is_ascii() {
            bail!("smpp_server.system_id must be 1 to 15 ASCII characters");
        }
        let limits = [
            ("max_binds_per_account", self.max_binds_per_account, 100_000),
            ("window", self.window, 1_000),
            ("max_per_second", self.max_per_second, 100_000),
            ("deliver_window", self.deliver_window, 1_000),
        ];
        for (name, value, max) in limits {
            if !(1..=max).contains(&value) {
                bail!("smpp_server.{name} must be 1 to {max}");
            }
        }
        if self.idle_timeout_secs == 0
            || self.reassembly_timeout_secs == 0
            || self.receipt_hold_hours == 0
            || self.deliver_timeout_secs == 0
            || self.deliver_poll_ms == 0
        {
            bail!("smpp_server: times must be above zero");
        }
        Ok(())
    }
}

/// Keys of an `[[upstreams]]` table that no setting of its kind reads; refused by
/// [`Settings::validate`], so that a misspelt key (`pasword`, `windw`) is an error rather than
/// a default silently kept.
pub type UnknownKeys = std::collections::BTreeMap<String, toml::Value>;

/// One upstream, as the settings file names it (`kind = "smpp" | "http" | "simulator"`).
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum UpstreamSettings {
    /// The built-in simulator.
    Simulator {
        /// Its name in routes.
        name: String,
        /// Its rate limit.
        #[serde(flatten)]
        limits: UpstreamLimits,
        /// Keys nothing reads.
        #[serde(flatten)]
        unknown: UnknownKeys,
    },
    /// Another Switchboard, through its TextingLine dialect.
    Http(HttpUpstreamSettings),
    /// An SMSC over SMPP 3.4 (its own `max_per_second` caps it).
    Smpp(SmppUpstreamSettings),
}

/// An HTTP upstream's settings with its rate limit.
#[derive(Clone, Deserialize)]
pub struct HttpUpstreamSettings {
    /// The upstream itself.
    #[serde(flatten)]
    pub config: HttpUpstreamConfig,
    /// Its rate limit.
    #[serde(flatten)]
    pub limits: UpstreamLimits,
    /// Keys nothing reads.
    #[serde(flatten)]
    pub unknown: UnknownKeys,
}

/// An SMPP upstream's settings.
#[derive(Clone, Deserialize)]
pub struct SmppUpstreamSettings {
    /// The upstream itself.
    #[serde(flatten)]
    pub config: SmppConfig,
    /// Keys nothing reads.
    #[serde(flatten)]
    pub unknown: UnknownKeys,
}

impl From<SmppConfig> for SmppUpstreamSettings {
    fn from(config: SmppConfig) -> Self {
        Self { config, unknown: UnknownKeys::new() }
    }
}

impl UpstreamSettings {
    /// Its name in routes.
    pub fn name(&self) -> &str {
        match self {
            UpstreamSettings::Simulator { name, .. } => name,
            UpstreamSettings::Http(h) => &h.config.name,
            UpstreamSettings::Smpp(s) => &s.config.name,
        }
    }

    /// The keys of its table that nothing reads.
    pub fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        match self {
            UpstreamSettings::Simulator { unknown, .. } => unknown,
            UpstreamSettings::Http(h) => &h.unknown,
            UpstreamSettings::Smpp(s) => &s.unknown,
        }
        .keys()
        .map(String::as_str)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database", &redact_url(&self.database()))
            .field("data_dir", &self.data_dir)
            .field("operator_token", &self.operator_token.as_ref().map(|_| "<redacted>"))
            .field("server_keys_file", &self.server_keys_file)
            .field("server_keys", &self.server_keys.as_ref().map(|_| "<redacted>"))
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        let replies = switchboard_core::KeywordReplies::default();
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: String::new(),
            data_dir: PathBuf::from("switchboard-data"),
            operator_token: None,
            server_keys_file: None,
            server_keys: None,
            log_format: "text".into(),
            database_connections: 8,
            sqlite_wal_limit_mib: 64,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: None,
            max_connections_per_address: None,
            write_grace_ms: 30_000,
            max_body_chars: 640,
            blocked_terms: Vec::new(),
            sent_wait_ms: 50,
            commit_writers: None,
            commit_max_batch: 512,
            auth_cache_ttl_ms: 5_000,
            auth_failures_per_minute: 20,
            auth_key_failures_per_minute: 20,
            auth_guard_entries: 100_000,
            dispatcher: true,
            dispatch_max_in_flight: 512,
            dispatch_poll_ms: 250,
            dispatch_max_attempts: 5,
            dispatch_base_backoff_ms: 1_000,
            provider_timeout_ms: 30_000,
            simulator_slow_ms: 2_000,
            max_recipients: 1_000,
            default_rate_limit: 100,
            token_ttl_secs: 900,
            console: true,
            console_session_hours: 12,
            console_idle_minutes: 60,
            simulator_receipt_delay_ms: 1_000,
            webhooks: true,
            webhook_timeout_ms: 10_000,
            webhook_base_backoff_ms: 5_000,
            webhook_max_backoff_ms: 3_600_000,
            webhook_max_age_secs: 86_400,
            webhook_per_endpoint: 16,
            webhook_max_in_flight: 256,
            webhook_poll_ms: 250,
            retention_days: 90,
            retention_batch: 500,
            retention_interval_secs: 3_600,
            tenant_url_allow_cidrs: Vec::new(),
            trusted_proxies: Vec::new(),
            stop_reply: replies.stop,
            start_reply: replies.start,
            help_reply: replies.help,
            sender_max_per_second: None,
            metrics_token: None,
            destination_lookup: "offline".into(),
            blocked_countries: Vec::new(),
            mms_countries: vec!["US".into(), "CA".into()],
            refused_number_types: NumberType::REFUSED_BY_DEFAULT.iter().map(|t| t.as_str().to_owned()).collect(),
            blocked_destinations: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            smpp_server: SmppServerSettings::default(),
        }
    }
}

/// The environment variable that names a settings file.
pub const CONFIG_VAR: &str = "SWITCHBOARD_CONFIG";

impl Settings {
    /// Defaults, overlaid by the file (`file`, else the one `SWITCHBOARD_CONFIG` names, if
    /// any), then the environment's `SWITCHBOARD_*` variables, then `flags` (setting name and
    /// value). Call [`Settings::validate`] before use.
    pub fn load(file: Option<&Path>, flags: &[(String, String)]) -> anyhow::Result<Self> {
        Self::layered(file, flags)?.settings()
    }

    /// The layers merged, with where each value came from: what `config check` shows.
    pub fn layered(file: Option<&Path>, flags: &[(String, String)]) -> anyhow::Result<layers::Layered> {
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os(CONFIG_VAR).map(PathBuf::from));
        let text = match &file {
            Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?),
            None => None,
        };
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(layers::ENV_PREFIX)) else { continue };
            let value = value.into_string().map_err(|_| anyhow::anyhow!("{name}: the value is not UTF-8"))?;
            env.push((name.to_owned(), value));
        }
        layers::Layered::merge(file.as_deref().zip(text.as_deref()), env, flags)
    }

    /// The database URL in force: the configured one, or the embedded database in `data_dir`.
    pub fn database(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("switchboard.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The file with the server's keys.
    pub fn keys_file(&self) -> PathBuf {
        self.server_keys_file.clone().unwrap_or_else(|| self.data_dir.join("server-keys"))
    }

    /// The rule for the URLs the server calls on a tenant's behalf, with the ranges of
    /// `tenant_url_allow_cidrs`.
    pub fn url_policy(&self) -> anyhow::Result<switchboard_domain::UrlPolicy> {
        switchboard_domain::UrlPolicy::parse(&self.tenant_url_allow_cidrs).context("tenant_url_allow_cidrs")
    }

    /// The ranges of `trusted_proxies`.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<switchboard_domain::Cidr>> {
        self.trusted_proxies.iter().map(|r| r.parse().context("trusted_proxies")).collect()
    }

    /// The operator's destination rules: `blocked_countries`, `mms_countries` and
    /// `refused_number_types`.
    pub fn destination_rules(&self) -> anyhow::Result<DestinationRules> {
        let regions = |list: &[String], what: &str| -> anyhow::Result<_> {
            list.iter().map(|c| Region::parse(c).with_context(|| what.to_owned())).collect()
        };
        let refused_types = self
            .refused_number_types
            .iter()
            .map(|t| {
                NumberType::parse(t).with_context(|| {
                    let known: Vec<&str> = NumberType::ALL.iter().map(|t| t.as_str()).collect();
                    format!("refused_number_types: `{t}` is not one of {}", known.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?;
        if let Some(bad) = self.blocked_destinations.iter().find(|n| !DestinationRules::is_number_prefix(n)) {
            bail!("blocked_destinations: `{bad}` is not + and 1 to 15 digits");
        }
        Ok(DestinationRules {
            blocked_numbers: self.blocked_destinations.clone(),
            blocked_regions: regions(&self.blocked_countries, "blocked_countries")?,
            mms_regions: regions(&self.mms_countries, "mms_countries")?,
            refused_types,
        })
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.url_policy()?;
        self.smpp_server.validate()?;
        self.destination_rules()?;
        if self.metrics_token.as_ref().is_some_and(|t| t.chars().count() < 16) {
            bail!("metrics_token must be at least 16 characters");
        }
        if !["offline", "off"].contains(&self.destination_lookup.as_str()) {
            bail!("destination_lookup must be offline or off");
        }
        self.trusted_proxies()?;
        if self.upstreams.is_empty() {
            // Without upstreams every message goes to the built-in simulator, which has no
            // routes and no sender buckets: these would be silently ignored.
            if !self.routes.is_empty() {
                bail!("[[routes]] are given without any [[upstreams]] to route to: declare the upstreams they name");
            }
            if self.sender_max_per_second.is_some() {
                bail!("sender_max_per_second is given without any [[upstreams]]: it applies to upstreams only");
            }
        }
        for u in &self.upstreams {
            let unknown: Vec<&str> = u.unknown_keys().collect();
            if !unknown.is_empty() {
                bail!("upstream {}: unknown settings: {}", u.name(), unknown.join(", "));
            }
        }
        let url = self.database();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            bail!("database_url must start with sqlite: or postgres:");
        }
        if !(1..=65_536).contains(&self.sqlite_wal_limit_mib) {
            bail!("sqlite_wal_limit_mib must be 1 to 65536");
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            bail!("log_format must be text or json");
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 16 * 1024 * 1024 {
            bail!("max_body_bytes must be 1 KiB to 16 MiB");
        }
        if self.request_timeout_ms == 0 || self.provider_timeout_ms == 0 {
            bail!("timeouts must be above zero");
        }
        if self.header_read_timeout_ms == 0 || self.header_read_timeout_ms > 600_000 {
            bail!("header_read_timeout_ms must be 1 to 600000");
        }
        if self.idle_timeout_ms == 0 || self.idle_timeout_ms > 86_400_000 {
            bail!("idle_timeout_ms must be 1 to 86400000");
        }
        if matches!(self.max_connections, Some(n) if n == 0 || n > 1_000_000) {
            bail!("max_connections must be 1 to 1000000");
        }
        if matches!(self.max_connections_per_address, Some(n) if n == 0 || n > 1_000_000) {
            bail!("max_connections_per_address must be 1 to 1000000");
        }
        if self.write_grace_ms == 0 || self.write_grace_ms > 3_600_000 {
            bail!("write_grace_ms must be 1 to 3600000");
        }
        if self.commit_max_batch == 0 || self.commit_max_batch > 10_000 {
            bail!("commit_max_batch must be 1 to 10000");
        }
        if self.sent_wait_ms > self.request_timeout_ms {
            bail!("sent_wait_ms must not exceed request_timeout_ms");
        }
        if self.max_recipients == 0 || self.max_recipients > 10_000 {
            bail!("max_recipients must be 1 to 10000");
        }
        if self.auth_guard_entries < 1_000 || self.auth_guard_entries > 10_000_000 {
            bail!("auth_guard_entries must be 1000 to 10000000");
        }
        if self.default_rate_limit == 0 {
            bail!("default_rate_limit must be at least 1");
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > 86_400 {
            bail!("token_ttl_secs must be 1 to 86400");
        }
        if self.console_session_hours == 0 || self.console_session_hours > 720 {
            bail!("console_session_hours must be 1 to 720");
        }
        if self.console_idle_minutes == 0 || self.console_idle_minutes > self.console_session_hours * 60 {
            bail!("console_idle_minutes must be 1 to console_session_hours × 60");
        }
        if self.dispatch_max_attempts == 0 {
            bail!("dispatch_max_attempts must be at least 1");
        }
        if self.webhook_timeout_ms == 0 || self.webhook_timeout_ms > 120_000 {
            bail!("webhook_timeout_ms must be 1 to 120000");
        }
        if self.webhook_base_backoff_ms == 0 || self.webhook_max_backoff_ms < self.webhook_base_backoff_ms {
            bail!("webhook_base_backoff_ms must be above zero and at most webhook_max_backoff_ms");
        }
        if self.webhook_max_age_secs == 0 || self.webhook_max_age_secs > 30 * 86_400 {
            bail!("webhook_max_age_secs must be 1 to 2592000 (30 days)");
        }
        if self.webhook_per_endpoint == 0 || self.webhook_max_in_flight == 0 || self.webhook_poll_ms == 0 {
            bail!("webhook_per_endpoint, webhook_max_in_flight and webhook_poll_ms must be above zero");
        }
        if self.retention_days > 36_500 {
            bail!("retention_days must be 0 (keep everything) to 36500");
        }
        if self.retention_batch == 0 || self.retention_batch > 10_000 {
            bail!("retention_batch must be 1 to 10000");
        }
        if self.retention_interval_secs == 0 || self.retention_interval_secs > 7 * 86_400 {
            bail!("retention_interval_secs must be 1 to 604800 (7 days)");
        }
        for (name, text) in
            [("stop_reply", &self.stop_reply), ("start_reply", &self.start_reply), ("help_reply", &self.help_reply)]
        {
            if text.chars().count() > 640 || switchboard_domain::encoding::check_sendable(text).is_err() {
                bail!("{name} must be at most 640 sendable characters");
            }
        }
        if matches!(&self.operator_token, Some(t) if t.len() < 16) {
            bail!("operator_token must be at least 16 characters");
        }
        Ok(())
    }
}

/// The settings in force as a TOML document, secrets hidden, each value with where it came
/// from; unset optional settings as comments.
pub fn show(layered: &layers::Layered) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut tables = toml::Table::new();
    for (key, value) in &layered.values {
        let value = layers::masked(key, value);
        let source = layered.sources.get(key).map(ToString::to_string).unwrap_or_default();
        let is_tables =
            matches!(&value, serde_json::Value::Array(items) if items.iter().any(serde_json::Value::is_object));
        match toml::Value::try_from(&value) {
            _ if value.is_null() => {
                let _ = writeln!(out, "# {key} is unset ({source})");
            }
            Ok(v) if is_tables || v.is_table() => {
                tables.insert(key.clone(), v);
            }
            Ok(v) => {
                let _ = writeln!(out, "{key} = {v}  # {source}");
            }
            Err(e) => {
                let _ = writeln!(out, "# {key}: cannot be shown ({e})");
            }
        }
    }
    if !tables.is_empty() {
        let _ = write!(out, "\n{}", toml::to_string(&tables).unwrap_or_else(|e| format!("# tables: {e}\n")));
    }
    out
}

/// An optional number that an environment variable or flag may give as text.
fn number_or_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given<T> {
        Number(T),
        Text(String),
    }
    match Option::<Given<T>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Given::Number(n)) => Ok(Some(n)),
        Some(Given::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("cannot parse {text:?}: expected a whole number"))),
    }
}

/// A database URL with any password hidden, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { format!("{user}:***") } else { user.to_owned() };
            format!("{}{}{}", &url[..scheme + 3], hidden, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings the defaults and these variables make.
    fn with_env(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        layers::Layered::merge(None, vars, &[])?.settings()
    }

    #[test]
    fn env_overrides_and_validation() {
        let s = with_env(&[
            ("SWITCHBOARD_LISTEN", "0.0.0.0:9000"),
            ("SWITCHBOARD_SENT_WAIT_MS", "0"),
            ("SWITCHBOARD_BLOCKED_TERMS", "casino, lottery"),
        ])
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000");
        assert_eq!(s.sent_wait_ms, 0);
        assert_eq!(s.blocked_terms, vec!["casino", "lottery"]);
        s.validate().unwrap();
        assert!(with_env(&[("SWITCHBOARD_MAX_BODY_BYTES", "lots")]).is_err());
        let s = Settings { database_url: "mysql://x".into(), ..Settings::default() };
        assert!(s.validate().is_err());
    }

    #[test]
    fn routes_and_sender_limits_need_upstreams() {
        let routes: Settings = toml::from_str("[[routes]]\nprefix = \"+1\"\nupstreams = [\"carrier\"]").unwrap();
        let err = format!("{:#}", routes.validate().unwrap_err());
        assert!(err.contains("[[routes]]") && err.contains("[[upstreams]]"), "{err}");
        let limit: Settings = toml::from_str("sender_max_per_second = 10").unwrap();
        assert!(format!("{:#}", limit.validate().unwrap_err()).contains("sender_max_per_second"));
    }

    #[test]
    fn destination_rules_are_read_and_checked() {
        let rules = Settings::default().destination_rules().unwrap();
        assert_eq!(rules, DestinationRules::default());
        let s = with_env(&[
            ("SWITCHBOARD_BLOCKED_COUNTRIES", "ru, by"),
            ("SWITCHBOARD_MMS_COUNTRIES", "US,CA,PR"),
            ("SWITCHBOARD_REFUSED_NUMBER_TYPES", "premium_rate,voip"),
            ("SWITCHBOARD_DESTINATION_LOOKUP", "off"),
        ])
        .unwrap();
        s.validate().unwrap();
        let rules = s.destination_rules().unwrap();
        let codes = |set: &std::collections::BTreeSet<Region>| set.iter().map(Region::to_string).collect::<Vec<_>>();
        assert_eq!(codes(&rules.blocked_regions), ["BY", "RU"]);
        assert_eq!(codes(&rules.mms_regions), ["CA", "PR", "US"]);
        assert_eq!(rules.refused_types.into_iter().collect::<Vec<_>>(), [NumberType::PremiumRate, NumberType::Voip]);
        assert_eq!(s.destination_lookup, "off");
        for bad in [
            Settings { blocked_countries: vec!["USA".into()], ..Settings::default() },
            Settings { mms_countries: vec!["1".into()], ..Settings::default() },
            Settings { refused_number_types: vec!["landline".into()], ..Settings::default() },
            Settings { destination_lookup: "hlr".into(), ..Settings::default() },
            Settings { blocked_destinations: vec!["1900".into()], ..Settings::default() },
        ] {
            let err = format!("{:#}", bad.validate().unwrap_err());
            assert!(
                [
                    "blocked_countries",
                    "mms_countries",
                    "refused_number_types",
                    "destination_lookup",
                    "blocked_destinations"
                ]
                .iter()
                .any(|k| err.contains(k)),
                "{err}"
            );
        }
        let file: Settings = toml::from_str("blocked_countries = [\"KP\"]\nmms_countries = []").unwrap();
        let rules = file.destination_rules().unwrap();
        assert_eq!((codes(&rules.blocked_regions), rules.mms_regions.len()), (vec!["KP".to_owned()], 0));
    }

    #[test]
    fn tenant_url_allowances() {
        let d = Settings::default();
        assert!(d.tenant_url_allow_cidrs.is_empty());
        assert!(d.url_policy().unwrap().allowed().is_empty());
        let s = with_env(&[("SWITCHBOARD_TENANT_URL_ALLOW_CIDRS", " 10.1.0.0/16, 127.0.0.1/32 ,,fd00::/8")]).unwrap();
        assert_eq!(s.tenant_url_allow_cidrs, ["10.1.0.0/16", "127.0.0.1/32", "fd00::/8"]);
        s.validate().unwrap();
        let policy = s.url_policy().unwrap();
        assert!(policy.is_allowed("10.1.2.3".parse().unwrap()) && !policy.is_allowed("10.2.0.1".parse().unwrap()));
        let file: Settings = toml::from_str("tenant_url_allow_cidrs = [\"127.0.0.1/32\"]").unwrap();
        assert_eq!(file.tenant_url_allow_cidrs, ["127.0.0.1/32"]);
        for bad in ["10.1.2.3/16", "10.0.0.0/33", "localhost", "10.0.0.0/8; 127.0.0.1"] {
            let s = Settings { tenant_url_allow_cidrs: vec![bad.into()], ..Settings::default() };
            let err = format!("{:#}", s.validate().unwrap_err());
            assert!(err.starts_with("tenant_url_allow_cidrs: "), "{bad}: {err}");
        }
    }

    #[test]
    fn trusted_proxies() {
        let d = Settings::default();
        assert!(d.trusted_proxies.is_empty() && d.trusted_proxies().unwrap().is_empty());
        let s = with_env(&[("SWITCHBOARD_TRUSTED_PROXIES", " 10.0.0.0/8, 127.0.0.1 ,,fd00::/8")]).unwrap();
        assert_eq!(s.trusted_proxies, ["10.0.0.0/8", "127.0.0.1", "fd00::/8"]);
        s.validate().unwrap();
        let ranges = s.trusted_proxies().unwrap();
        assert_eq!(
            ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
        );
        let file: Settings = toml::from_str("trusted_proxies = [\"192.0.2.0/24\"]").unwrap();
        assert_eq!(file.trusted_proxies, ["192.0.2.0/24"]);
        for bad in ["10.1.2.3/8", "10.0.0.0/33", "proxy.internal", "10.0.0.0/8 127.0.0.1"] {
            let s = Settings { trusted_proxies: vec![bad.into()], ..Settings::default() };
            let err = format!("{:#}", s.validate().unwrap_err());
            assert!(err.starts_with("trusted_proxies: "), "{bad}: {err}");
        }
    }

    #[test]
    fn connection_limits() {
        let d = Settings::default();
        assert_eq!((d.header_read_timeout_ms, d.idle_timeout_ms, d.max_connections), (10_000, 60_000, None));
        let s = with_env(&[
            ("SWITCHBOARD_HEADER_READ_TIMEOUT_MS", "1500"),
            ("SWITCHBOARD_IDLE_TIMEOUT_MS", "2500"),
            ("SWITCHBOARD_MAX_CONNECTIONS", "300"),
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS", "40"),
            ("SWITCHBOARD_WRITE_GRACE_MS", "2000"),
        ])
        .unwrap();
        assert_eq!((d.max_connections_per_address, d.write_grace_ms), (None, 30_000));
        assert_eq!((s.header_read_timeout_ms, s.idle_timeout_ms, s.max_connections), (1500, 2500, Some(300)));
        assert_eq!((s.max_connections_per_address, s.write_grace_ms), (Some(40), 2000));
        s.validate().unwrap();
        let file: Settings =
            toml::from_str("header_read_timeout_ms = 5000\nidle_timeout_ms = 7000\nmax_connections = 9").unwrap();
        assert_eq!((file.header_read_timeout_ms, file.idle_timeout_ms, file.max_connections), (5000, 7000, Some(9)));
        for bad in [
            Settings { header_read_timeout_ms: 0, ..Settings::default() },
            Settings { idle_timeout_ms: 0, ..Settings::default() },
            Settings { max_connections: Some(0), ..Settings::default() },
            Settings { max_connections: Some(2_000_000), ..Settings::default() },
            Settings { max_connections_per_address: Some(0), ..Settings::default() },
            Settings { write_grace_ms: 0, ..Settings::default() },
        ] {
            assert!(bad.validate().is_err());
        }
        assert!(with_env(&[("SWITCHBOARD_MAX_CONNECTIONS", "many")]).is_err());
    }

    #[test]
    fn files_reject_unknown_keys() {
        assert!(toml::from_str::<Settings>("listen = \"127.0.0.1:1\"\nsent_wait_ms = 0").is_ok());
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
    }

    #[test]
    fn upstream_tables_reject_keys_nothing_reads() {
        let file = |smpp_extra: &str, http_extra: &str, sim_extra: &str| {
            format!(
                "[[upstreams]]\nkind = \"smpp\"\nname = \"smsc\"\nhost = \"127.0.0.1\"\nport = 2775\n\
                 system_id = \"sys\"\npassword = \"env:SMSC_PASSWORD\"\nwindow = 20\n{smpp_extra}\n\
                 [[upstreams]]\nkind = \"http\"\nname = \"relay\"\nbase_url = \"http://127.0.0.1:1\"\n\
                 key_id = \"k\"\nkey_secret = \"s\"\nwebhook_secret = \"w\"\nmax_per_second = 5\n{http_extra}\n\
                 [[upstreams]]\nkind = \"simulator\"\nname = \"sim\"\nmax_per_second = 7\n{sim_extra}\n"
            )
        };
        let good: Settings = toml::from_str(&file("", "", "")).unwrap();
        good.validate().unwrap();
        let [UpstreamSettings::Smpp(smpp), UpstreamSettings::Http(http), UpstreamSettings::Simulator { limits, .. }] =
            good.upstreams.as_slice()
        else {
            panic!("three upstreams of the three kinds")
        };
        assert_eq!((smpp.config.port, smpp.config.window), (2775, 20));
        assert_eq!((http.limits.max_per_second, limits.max_per_second), (Some(5), Some(7)));

        for (bad, key, upstream) in [
            (file("pasword = \"x\"", "", ""), "pasword", "smsc"),
            (file("", "timeout = 5", ""), "timeout", "relay"),
            (file("", "", "max_per_sec = 9"), "max_per_sec", "sim"),
        ] {
            let settings: Settings = toml::from_str(&bad).unwrap();
            let e = settings.validate().unwrap_err().to_string();
            assert_eq!(e, format!("upstream {upstream}: unknown settings: {key}"));
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let s = Settings {
            operator_token: Some("super-secret-token-123".into()),
            database_url: "postgres://sb:hunter2@db/sb".into(),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("super-secret") && !shown.contains("hunter2"), "{shown}");
        assert_eq!(redact_url("postgres://sb:hunter2@db/sb"), "postgres://sb:***@db/sb");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn the_smpp_server_is_off_by_default_and_checked_when_on() {
        let settings: Settings = toml::from_str("").unwrap();
        assert!(!settings.smpp_server.enabled);
        settings.validate().unwrap();
        let on: Settings =
            toml::from_str("[smpp_server]\nenabled = true\nlisten = \"0.0.0.0:2775\"\nwindow = 50").unwrap();
        on.validate().unwrap();
        assert_eq!(on.smpp_server.window, 50);
        for bad in [
            "[smpp_server]\nenabled = true\nlisten = \"nowhere\"",
            "[smpp_server]\nenabled = true\ntls_cert_file = \"cert.pem\"",
            "[smpp_server]\nenabled = true\nwindow = 0",
            "[smpp_server]\nenabled = true\nsystem_id = \"a-name-far-too-long\"",
        ] {
            let settings: Settings = toml::from_str(bad).unwrap();
            assert!(settings.validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<Settings>("[smpp_server]\nwindw = 5").is_err(), "unknown keys are refused");
    }
}

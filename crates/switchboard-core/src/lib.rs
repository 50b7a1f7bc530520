//! Switchboard's use cases, with no HTTP in sight.
//!
//! [`Core`] ties validation, the ledger, storage and the provider together: it authenticates
//! API keys, admits sends through the group [`committer`], runs the [`dispatcher`], and offers
//! the operator's admin operations. The HTTP layer only extracts requests, calls a method
//! here, and maps the result onto its dialect.

pub mod auth;
mod batch;
mod channels;
pub mod committer;
pub mod console;
pub mod destinations;
pub mod dispatcher;
pub mod guard;
pub mod inspect;
pub mod keys;
pub mod lifecycle;
pub mod ratelimit;
pub mod request;
pub mod retention;
pub mod smpp;
pub mod tokens;
pub mod waiters;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchboard_domain::wire::MAX_LOW_BALANCE_THRESHOLD;
use switchboard_domain::{
    AccountDestinations, AccountId, DestinationRules, ErrorType, MessageId, MessageStatus, Msisdn, SenderId, Timestamp,
};
use switchboard_ledger::{Credits, Tariff};
use switchboard_lookup::Lookup;
use switchboard_provider::{EventReceiver, Provider};
use switchboard_records::{
    AcceptOutcome, AccountRecord, ApiKeyRecord, EventRecord, LedgerRecord, MessageRecord, NewMessage, OptOutRecord,
    SenderChange, SenderRecord,
};
use switchboard_signing::Sealer;
use switchboard_storage::{PageRequest, StorageError, Store};
use switchboard_validation::{Policy, SendCommand};

pub use auth::{AuthError, Authenticator, KeyHasher, NewKey};
pub use batch::{BatchSent, HistoryPage, MAX_HISTORY_PAGE, MessageStats};
pub use channels::{
    ChannelMessage, MAX_LOCALE_CHARS, MAX_SCHEDULE_AHEAD_MS, MAX_TEMPLATE_LOCALES, TemplateError, TemplateRef,
};
pub use committer::{CommitError, Committer};
pub use dispatcher::DispatcherConfig;
pub use guard::{AuthGuard, GuardConfig};
pub use inspect::{MessageDetail, Viewer};
pub use keys::{KeysError, ServerKeys, sealed_key_id};
pub use lifecycle::{Inbound, Keyword, KeywordReplies};
pub use ratelimit::{RateLimiter, RetryAfter, StoreLimits};
pub use retention::RetentionConfig;
pub use tokens::{AccessToken, Tokens};
pub use waiters::{DispatchNews, Waiters};
pub use webhooks::{NewWebhook, WebhookUpdate};

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Prices.
    pub tariff: Tariff,
    /// Request limits and content rules.
    pub policy: Policy,
    /// How long a send waits for the provider after its commit, so its response can say
    /// `sent`; zero answers `queued` at once.
    pub sent_wait: Duration,
    /// Writer tasks of the group committer (1 suits SQLite's single writer).
    pub commit_writers: usize,
    /// Most messages in one commit.
    pub commit_max_batch: usize,
    /// Sends that may wait for a commit before new ones wait to enqueue.
    pub commit_queue: usize,
    /// How long a verified API key is trusted before it is read again.
    pub auth_cache_ttl: Duration,
    /// Failure budgets against credential guessing, for API keys and access tokens and, with
    /// the address budget alone, for the operator token.
    pub auth_guard: GuardConfig,
    /// Whether this node runs a dispatcher.
    pub run_dispatcher: bool,
    /// Dispatcher settings.
    pub dispatcher: DispatcherConfig,
    /// Requests per second an account may make to the rate-limited API unless its own limit
    /// says otherwise.
    pub default_rate_limit: u32,
    /// How long an access token lives.
    pub token_ttl: Duration,
    /// The answers to STOP, START and HELP.
    pub replies: KeywordReplies,
    /// What tells a recipient's validity, number type and country; `None` checks nothing.
    pub lookup: Option<Arc<dyn Lookup>>,
    /// The operator's rules on destinations, for every account.
    pub destinations: DestinationRules,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            tariff: Tariff::default(),
            policy: Policy::default(),
            sent_wait: Duration::from_millis(50),
            commit_writers: 1,
            commit_max_batch: 512,
            commit_queue: 16_384,
            auth_cache_ttl: Duration::from_secs(5),
            auth_guard: GuardConfig::default(),
            run_dispatcher: true,
            dispatcher: DispatcherConfig::default(),
            default_rate_limit: 100,
            token_ttl: Duration::from_secs(900),
            replies: KeywordReplies::default(),
            lookup: Some(destinations::default_lookup()),
            destinations: DestinationRules::default(),
        }
    }
}

/// One readiness check: its name, and what is wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `database`, `migrations`, `writer` or `dispatcher`.
    pub name: &'static str,
    /// What failed; `None` when the check passed.
    pub problem: Option<String>,
}

/// What a send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// A new message: queued, sent, or failed without charge (opted out).
    Created(MessageRecord),
    /// The idempotency key was used before with the same content: that message, as it is now.
    Replayed(MessageRecord),
}

/// Why the core did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database belongs to an installation with other server keys, or another node signs
    /// with another key of the same id; names the differing fingerprint.
    #[error(
        "the server keys are not this database's ({0} differs): it was set up with other keys (the key \
         file or `server_keys` of the installation, or of the other nodes)"
    )]
    OtherKeys(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Refuses fingerprints that differ from those recorded under the same name.
fn same_keys(recorded: &[(String, Vec<u8>)], ours: &[(String, Vec<u8>)]) -> Result<(), StartError> {
    for (name, fingerprint) in ours {
        if recorded.iter().any(|(n, f)| n == name && f != fingerprint) {
            return Err(StartError::OtherKeys(name.clone()));
        }
    }
    Ok(())
}

/// Seals again under the primary key every webhook secret sealed under another one, so that a
/// retired key stops being needed; a secret changed meanwhile is left as it is now. Returns
/// how many secrets were sealed again and how many did not open under these keys.
async fn reseal(store: &dyn Store, sealer: &Sealer) -> Result<(usize, usize), StorageError> {
    let mut resealed = 0usize;
    let mut unopened = 0usize;
    for (id, sealed) in store.sealed_webhook_secrets().await? {
        if !sealer.needs_reseal(&sealed) {
            continue;
        }
        match sealer.open(&sealed) {
            Ok(secret) => {
                if store.reseal_webhook_secret(id, &sealed, &sealer.seal(&secret)).await? {
                    resealed += 1;
                }
            }
            Err(_) => {
                unopened += 1;
                tracing::warn!(endpoint = %id, "a webhook secret does not open under the server keys");
            }
        }
    }
    if resealed > 0 {
        tracing::info!(endpoints = resealed, "sealed webhook secrets again under the current server key");
    }
    Ok((resealed, unopened))
}

/// Why a send was refused. Nothing was stored or charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The sender is not assigned to the account.
    #[error("the from number is not assigned to your account")]
    SenderNotAssigned,
    /// The sender is not active.
    #[error("the from number is not in an active state")]
    SenderInactive,
    /// The sender cannot send this kind of message.
    #[error("the from number is not enabled for this message type")]
    SenderNotCapable,
    /// The balance cannot pay.
    #[error("insufficient credits")]
    InsufficientCredits,
    /// The idempotency key was used with different content.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyConflict,
    /// No sender was named and the account has no active SMS sender to use.
    #[error("no from number given, and the account has no active SMS sender")]
    NoDefaultSender,
    /// Storage failed or the server is overloaded.
    #[error("temporarily unavailable")]
    Unavailable,
}

/// Why a resource could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// It does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// It belongs to another account.
    #[error("{0} belongs to another account")]
    Forbidden(&'static str),
    /// It conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The input is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error("temporarily unavailable")]
    Unavailable,
}

impl AccessError {
    fn from_storage(what: &'static str) -> impl Fn(StorageError) -> AccessError {
        move |e| match e {
            StorageError::NotFound => AccessError::NotFound(what),
            StorageError::Conflict(c) => AccessError::Conflict(c),
            StorageError::Ledger(l) => AccessError::Invalid(l.to_string()),
            other => {
                tracing::error!(error = %other, "storage failed");
                AccessError::Unavailable
            }
        }
    }
}

/// Counts a message stored failed at once (opted out, or its destination refused).
fn count_failed(record: &MessageRecord) {
    let error_type = record.error_type.map_or("unknown", ErrorType::as_str);
    metrics::counter!("switchboard_messages_failed_total", "error_type" => error_type).increment(1);
    destinations::count(record);
}

/// Longest names and references accepted by the admin operations.
pub const MAX_NAME_CHARS: usize = 200;
/// Most items one page holds. A list reads at most one more, which callers ask for to tell
/// whether another page follows.
pub const MAX_PAGE: u32 = 1000;

/// The core service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Core {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    auth: Authenticator,
    guard: AuthGuard,
    operator_guard: AuthGuard,
    committer: Committer,
    waiters: Arc<Waiters>,
    tokens: Tokens,
    limiter: RateLimiter,
    channels: channels::ChannelCache,
    receipts: lifecycle::ReceiptRecorder,
    smpp: smpp::SmppAuth,
    smpp_binds: smpp::SmppBinds,
    sealer: Arc<Sealer>,
    provider: Arc<dyn Provider>,
    /// Notified when an upstream can take messages again, so the dispatcher offers its backlog.
    upstream_ready: Arc<tokio::sync::Notify>,
    /// Stops this node's dispatcher, if it runs one.
    dispatcher: Option<dispatcher::Stopper>,
    config: CoreConfig,
}

impl Core {
    /// Starts the core over a store and a provider: the committer, the dispatcher if
    /// configured, and the reader of the provider's `events` (receipts and inbound messages)
    /// if given. Must run inside a Tokio runtime.
    pub async fn start(
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        events: Option<EventReceiver>,
        keys: &ServerKeys,
        config: CoreConfig,
    ) -> Result<Self, StartError> {
        // Checked before anything is written, and again after this node's fingerprints are
        // recorded, in case another node recorded others meanwhile.
        let ours = keys.fingerprints();
        same_keys(&store.key_fingerprints().await?, &ours)?;
        let sealer = Arc::new(keys.sealer());
        let had_legacy = store.legacy_server_secret().await?.is_some();
        let (resealed, unopened) = reseal(store.as_ref(), &sealer).await?;
        // An older version's secret leaves the database only once every secret it sealed is
        // sealed again under these keys.
        same_keys(&store.record_server_keys(&ours, unopened == 0).await?, &ours)?;
        if had_legacy || resealed > 0 {
            // What was removed or sealed again leaves no older copy in the database's files.
            store.scrub().await?;
        }
        let tokens = keys.tokens(config.token_ttl);
        let limiter = RateLimiter::new(config.auth_cache_ttl);
        let auth = Authenticator::new(keys.hasher(), config.auth_cache_ttl);
        let smpp = smpp::SmppAuth::new(keys.hasher(), config.auth_cache_ttl);
        let waiters = Arc::new(Waiters::default());
        let upstream_ready = Arc::new(tokio::sync::Notify::new());
        let (local, dispatcher) = match config.run_dispatcher {
            true => {
                let config = config.dispatcher.clone();
                let (fresh, stopper) =
                    dispatcher::start(store.clone(), provider.clone(), config, waiters.clone(), upstream_ready.clone());
                (Some(fresh), Some(stopper))
            }
            false => (None, None),
        };
        let committer =
            Committer::start(store.clone(), config.commit_writers, config.commit_max_batch, config.commit_queue, local);
        let channels = channels::ChannelCache::new(config.auth_cache_ttl);
        let receipts = lifecycle::ReceiptRecorder::start(store.clone());
        let guard = AuthGuard::new(config.auth_guard);
        let operator_guard = AuthGuard::new(GuardConfig { key_failures_per_minute: 0, ..config.auth_guard });
        let inner = Inner {
            store,
            auth,
            guard,
            operator_guard,
            committer,
            waiters,
            tokens,
            limiter,
            channels,
            receipts,
            smpp,
            smpp_binds: smpp::SmppBinds::default(),
            sealer,
            provider,
            upstream_ready,
            dispatcher,
            config,
        };
        let core = Self { inner: Arc::new(inner) };
        if let Some(events) = events {
            tokio::spawn(lifecycle::provider_events(core.clone(), events));
        }
        Ok(core)
    }

    /// Stops dispatching as the server stops: no more claims, and the attempts in flight end
    /// and are recorded (within the send timeout), so that nothing an upstream took is sent
    /// again after the next start. Call it once the API takes no more requests, and before
    /// the provider's [`Provider::shutdown`].
    pub async fn stop(&self) {
        if let Some(dispatcher) = &self.inner.dispatcher {
            dispatcher.stop().await;
        }
    }

    /// Whether this node can do its work, check by check: the database answers (within 2 s),
    /// its schema is this version's, a write commits and is made durable (within 5 s: on
    /// SQLite through the writer and the sync threads), and, if this node runs one, the
    /// dispatcher's tasks run. Each check is named, with what failed.
    pub async fn readiness(&self) -> Vec<Check> {
        let store = self.inner.store.as_ref();
        let mut checks = Vec::with_capacity(4);
        let version = tokio::time::timeout(Duration::from_secs(2), store.schema_version()).await;
        let (database, migrations) = match version {
            Err(_) => (Some("no answer within 2 s".to_owned()), None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the database did not answer");
                (Some("no answer (the server's log says why)".to_owned()), None)
            }
            Ok(Ok(v)) if v == switchboard_storage::SCHEMA_VERSION => (None, None),
            Ok(Ok(v)) => (
                None,
                Some(format!(
                    "the schema is at version {v}; this version needs {}",
                    switchboard_storage::SCHEMA_VERSION
                )),
            ),
        };
        checks.push(Check { name: "database", problem: database });
        checks.push(Check { name: "migrations", problem: migrations });
        let write = match tokio::time::timeout(Duration::from_secs(5), store.write_probe()).await {
            Err(_) => Some("a write was not durable within 5 s".to_owned()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: a write failed");
                Some("a write failed (the server's log says why)".to_owned())
            }
            Ok(Ok(())) => None,
        };
        checks.push(Check { name: "writer", problem: write });
        if let Some(dispatcher) = &self.inner.dispatcher {
            let problem = (!dispatcher.running()).then(|| "the dispatcher has stopped".to_owned());
            checks.push(Check { name: "dispatcher", problem });
        }
        checks
    }

    /// How much work waits: queued and scheduled messages, webhook deliveries due, messages
    /// awaiting receipts.
    pub async fn backlog(&self) -> Result<switchboard_storage::Backlog, AccessError> {
        self.inner.store.backlog(Timestamp::now()).await.map_err(AccessError::from_storage("backlog"))
    }

    /// How each upstream stands.
    pub fn upstreams(&self) -> Vec<switchboard_provider::UpstreamStatus> {
        self.inner.provider.status()
    }

    /// The store, for the services that run beside the core (the webhook worker).
    pub fn store(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// What seals the webhook signing secrets the store keeps, and derives the notification
    /// secrets.
    pub fn sealer(&self) -> Arc<Sealer> {
        self.inner.sealer.clone()
    }

    /// The request limits.
    pub fn policy(&self) -> &Policy {
        &self.inner.config.policy
    }

    /// Checks an API key id and secret presented from `client` (its address, if known),
    /// within the failure budgets of [`guard`]: an address over its budget is refused before
    /// anything is checked, and a wrong secret for a key id over its budget is
    /// [`AuthError::Throttled`] rather than invalid.
    pub async fn authenticate(
        &self,
        client: Option<std::net::IpAddr>,
        key_id: &str,
        secret: &str,
    ) -> Result<AccountId, AuthError> {
        self.inner.guard.admit(client).map_err(AuthError::Throttled)?;
        match self.inner.auth.verify(self.inner.store.as_ref(), key_id, secret).await {
            Err(AuthError::InvalidCredentials) => {
                // Ids too long to be a key's are counted against the address alone.
                let key = auth::plausible_key_id(key_id).then_some(key_id);
                self.inner.guard.failed(client, key).map_err(AuthError::Throttled)?;
                Err(AuthError::InvalidCredentials)
            }
            Ok(account) => {
                auth::note_account(account);
                Ok(account)
            }
            other => other,
        }
    }

    /// The failure budget of the operator token, per client address, for the HTTP layer that
    /// checks the token.
    pub fn operator_guard(&self) -> &AuthGuard {
        &self.inner.operator_guard
    }

    /// Sends one validated message for an account.
    pub async fn send(&self, account: AccountId, cmd: SendCommand) -> Result<SendOutcome, SendError> {
        let id = MessageId::new();
        let created_at = id.created_at();
        let price = self.inner.config.tariff.price(cmd.kind);
        let (destination, refused) = self.check_destination(&cmd.to, cmd.kind).await?;
        let message = NewMessage {
            id,
            account_id: account,
            request_id: request::current(),
            kind: cmd.kind,
            request_hash: request_hash(&cmd),
            to: cmd.to,
            from: cmd.from,
            body: cmd.body,
            media: cmd.media_url.into_iter().collect(),
            encoding: cmd.text.encoding,
            segments: cmd.text.segments,
            price,
            idempotency_key: cmd.idempotency_key,
            created_at,
            // This node's dispatcher takes its own messages at once, claimed in the same commit.
            claim_until: self
                .inner
                .config
                .run_dispatcher
                .then(|| created_at.plus_millis(self.inner.config.dispatcher.lease.as_millis() as i64)),
            batch: None,
            channel_id: None,
            scheduled_for: None,
            expires_at: None,
            details: None,
            notify_url: None,
            destination,
            refusal: refused,
        };
        let wait = self.inner.config.sent_wait;
        // Register before committing, so news from a fast dispatcher cannot be missed.
        let news = (!wait.is_zero()).then(|| self.inner.waiters.register(id));
        let outcome = self.inner.committer.submit(message).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(_) => {
                self.inner.waiters.cancel(id);
                return Err(SendError::Unavailable);
            }
        };
        if !matches!(outcome, AcceptOutcome::Queued(_)) {
            self.inner.waiters.cancel(id);
        }
        match outcome {
            AcceptOutcome::Queued(mut record) => {
                metrics::counter!("switchboard_messages_accepted_total").increment(1);
                destinations::count(&record);
                if let Some(rx) = news {
                    match tokio::time::timeout(wait, rx).await {
                        Ok(Ok(news)) => apply_news(&mut record, news),
                        _ => self.inner.waiters.cancel(id),
                    }
                }
                Ok(SendOutcome::Created(record))
            }
            AcceptOutcome::Failed(record) => {
                count_failed(&record);
                Ok(SendOutcome::Created(record))
            }
            AcceptOutcome::Replayed(record) => Ok(SendOutcome::Replayed(record)),
            other => Err(refusal(other)),
        }
    }

    /// Reads one of the account's messages.
    pub async fn message(&self, account: AccountId, id: MessageId) -> Result<MessageRecord, AccessError> {
        let record = self.inner.store.get_message(id).await.map_err(AccessError::from_storage("message"))?;
        match record {
            None => Err(AccessError::NotFound("message")),
            Some(m) if m.account_id != account => Err(AccessError::Forbidden("message")),
            Some(m) => Ok(m),
        }
    }

    /// Reads any account's message (for the operator).
    pub async fn any_message(&self, id: MessageId) -> Result<MessageRecord, AccessError> {
        self.inner
            .store
            .get_message(id)
            .await
            .map_err(AccessError::from_storage("message"))?
            .ok_or(AccessError::NotFound("message"))
    }

    /// A message's status history.
    pub async fn message_events(&self, id: MessageId) -> Result<Vec<EventRecord>, AccessError> {
        self.inner.store.message_events(id).await.map_err(AccessError::from_storage("message"))
    }

    /// Lists the account's messages, newest first.
    pub async fn messages(
        &self,
        account: AccountId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, AccessError> {
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE + 1) };
        self.inner.store.list_messages(account, page).await.map_err(AccessError::from_storage("message"))
    }

    // ---- admin ----

    /// Creates an account.
    pub async fn create_account(&self, name: &str) -> Result<AccountRecord, AccessError> {
        let name = check_name("name", name)?;
        self.inner.store.create_account(name).await.map_err(AccessError::from_storage("account"))
    }

    /// Reads an account.
    pub async fn account(&self, id: AccountId) -> Result<AccountRecord, AccessError> {
        self.inner
            .store
            .get_account(id)
            .await
            .map_err(AccessError::from_storage("account"))?
            .ok_or(AccessError::NotFound("account"))
    }

    /// Lists accounts, newest first.
    pub async fn accounts(&self, before: Option<AccountId>, limit: u32) -> Result<Vec<AccountRecord>, AccessError> {
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE + 1) };
        self.inner.store.list_accounts(page).await.map_err(AccessError::from_storage("account"))
    }

    /// Sets whether the account is refunded for messages the carrier reports undelivered or
    /// failed.
    pub async fn set_refund_carrier_failures(&self, id: AccountId, refund: bool) -> Result<AccountRecord, AccessError> {
        self.inner.store.set_refund_carrier_failures(id, refund).await.map_err(AccessError::from_storage("account"))
    }

    /// Sets the SMS balance below which a charge posts `account.balance_low` (`None`: no
    /// alert): 1 to [`MAX_LOW_BALANCE_THRESHOLD`] SMS credits.
    pub async fn set_low_balance_threshold(
        &self,
        id: AccountId,
        threshold: Option<i64>,
    ) -> Result<AccountRecord, AccessError> {
        if threshold.is_some_and(|t| !(1..=MAX_LOW_BALANCE_THRESHOLD).contains(&t)) {
            return Err(AccessError::Invalid(format!(
                "lowBalanceThreshold: must be 1 to {MAX_LOW_BALANCE_THRESHOLD} SMS credits, or null for none"
            )));
        }
        self.inner.store.set_low_balance_threshold(id, threshold).await.map_err(AccessError::from_storage("account"))
    }

    /// Sets the countries an account sends to and whether it accepts fixed-or-mobile numbers.
    pub async fn set_destinations(
        &self,
        id: AccountId,
        destinations: AccountDestinations,
    ) -> Result<AccountRecord, AccessError> {
        self.inner.store.set_destinations(id, destinations).await.map_err(AccessError::from_storage("account"))
    }

    /// Creates an API key for an account; the returned secret is never stored.
    pub async fn create_key(
        &self,
        account: AccountId,
        name: Option<&str>,
    ) -> Result<(ApiKeyRecord, NewKey), AccessError> {
        let name = name.map(|n| check_name("name", n)).transpose()?.map(str::to_owned);
        self.account(account).await?;
        let key = auth::generate_key();
        let record = self.inner.auth.record(&key, account, name);
        self.inner.store.create_api_key(&record).await.map_err(AccessError::from_storage("key"))?;
        self.inner.auth.forget(&key.id);
        Ok((record, key))
    }

    /// Lists an account's keys.
    pub async fn keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>, AccessError> {
        self.account(account).await?;
        self.inner.store.list_api_keys(account).await.map_err(AccessError::from_storage("key"))
    }

    /// Revokes a key.
    pub async fn revoke_key(&self, account: AccountId, key_id: &str) -> Result<ApiKeyRecord, AccessError> {
        let record = self
            .inner
            .store
            .revoke_api_key(account, key_id, Timestamp::now())
            .await
            .map_err(AccessError::from_storage("key"))?;
        self.inner.auth.forget(key_id);
        Ok(record)
    }

    /// Assigns a sender to an account: an E.164 number, or an alphanumeric sender ID (which
    /// cannot send MMS, and cannot be written to, so no inbound message or `STOP` reaches it).
    pub async fn add_sender(
        &self,
        account: AccountId,
        address: &str,
        active: bool,
        sms: bool,
        mms: bool,
    ) -> Result<SenderRecord, AccessError> {
        let address = SenderId::parse(address).map_err(|e| AccessError::Invalid(format!("address: {e}")))?;
        if address.is_alphanumeric() && mms {
            return Err(AccessError::Invalid("mms: an alphanumeric sender cannot send MMS".into()));
        }
        self.account(account).await?;
        let record = SenderRecord { address, account_id: account, active, sms, mms, created_at: Timestamp::now() };
        self.inner.store.create_sender(&record).await.map_err(AccessError::from_storage("sender"))?;
        Ok(record)
    }

    /// Changes a sender.
    pub async fn update_sender(
        &self,
        account: AccountId,
        address: &str,
        change: SenderChange,
    ) -> Result<SenderRecord, AccessError> {
        if change.mms == Some(true) && SenderId::parse(address).is_ok_and(|s| s.is_alphanumeric()) {
            return Err(AccessError::Invalid("mms: an alphanumeric sender cannot send MMS".into()));
        }
        self.inner.store.update_sender(account, address, change).await.map_err(AccessError::from_storage("sender"))
    }

    /// Lists an account's senders.
    pub async fn senders(&self, account: AccountId) -> Result<Vec<SenderRecord>, AccessError> {
        self.account(account).await?;
        self.inner.store.list_senders(account).await.map_err(AccessError::from_storage("sender"))
    }

    /// Adds credits.
    pub async fn top_up(
        &self,
        account: AccountId,
        amount: Credits,
        reference: Option<&str>,
    ) -> Result<LedgerRecord, AccessError> {
        let reference = reference.map(|r| check_name("reference", r)).transpose()?;
        self.inner.store.top_up(account, amount, reference).await.map_err(|e| match e {
            StorageError::Ledger(_) => {
                AccessError::Invalid(format!("sms and mms: each 0 to {}, not both 0", switchboard_ledger::MAX_TOPUP))
            }
            other => AccessError::from_storage("account")(other),
        })
    }

    /// Lists ledger entries, newest first.
    pub async fn ledger(
        &self,
        account: AccountId,
        before: Option<uuid::Uuid>,
        limit: u32,
    ) -> Result<Vec<LedgerRecord>, AccessError> {
        self.account(account).await?;
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE + 1) };
        self.inner.store.ledger(account, page).await.map_err(AccessError::from_storage("ledger entry"))
    }

    /// Suppresses a recipient for one of the account's senders.
    pub async fn add_opt_out(
        &self,
        account: AccountId,
        sender: &str,
        recipient: &str,
    ) -> Result<OptOutRecord, AccessError> {
        let recipient = Msisdn::parse(recipient).map_err(|e| AccessError::Invalid(format!("recipient: {e}")))?;
        self.owned_sender(account, sender).await?;
        self.inner
            .store
            .add_opt_out(account, sender, recipient.as_str())
            .await
            .map_err(AccessError::from_storage("opt-out"))
    }

    /// Lifts an opt-out.
    pub async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<(), AccessError> {
        self.inner.store.remove_opt_out(account, sender, recipient).await.map_err(AccessError::from_storage("opt-out"))
    }

    /// Lists an account's opt-outs.
    pub async fn opt_outs(&self, account: AccountId, limit: u32) -> Result<Vec<OptOutRecord>, AccessError> {
        self.account(account).await?;
        self.inner
            .store
            .list_opt_outs(account, limit.clamp(1, MAX_PAGE + 1))
            .await
            .map_err(AccessError::from_storage("opt-out"))
    }

    /// The account's sender with this address.
    async fn owned_sender(&self, account: AccountId, sender: &str) -> Result<SenderId, AccessError> {
        let senders = self.senders(account).await?;
        match senders.into_iter().find(|s| s.address.as_str() == sender) {
            Some(s) => Ok(s.address),
            None => Err(AccessError::Invalid(format!("sender: {sender} is not assigned to the account"))),
        }
    }
}

/// The error of an outcome that stored nothing.
/// A single message's admission as its sender sees it: the stored record (counted as accepted
/// or failed), or the refusal.
fn admitted(outcome: AcceptOutcome) -> Result<MessageRecord, SendError> {
    match outcome {
        AcceptOutcome::Queued(record) => {
            metrics::counter!("switchboard_messages_accepted_total").increment(1);
            destinations::count(&record);
            Ok(record)
        }
        AcceptOutcome::Failed(record) => {
            count_failed(&record);
            Ok(record)
        }
        AcceptOutcome::Replayed(record) => Ok(record),
        other => Err(refusal(other)),
    }
}

fn refusal(outcome: AcceptOutcome) -> SendError {
    match outcome {
        AcceptOutcome::IdempotencyConflict => SendError::IdempotencyConflict,
        AcceptOutcome::SenderNotAssigned => SendError::SenderNotAssigned,
        AcceptOutcome::SenderInactive => SendError::SenderInactive,
        AcceptOutcome::SenderNotCapable => SendError::SenderNotCapable,
        AcceptOutcome::InsufficientCredits => SendError::InsufficientCredits,
        AcceptOutcome::Queued(_) | AcceptOutcome::Failed(_) | AcceptOutcome::Replayed(_) => SendError::Unavailable,
    }
}

fn check_name<'a>(field: &str, value: &'a str) -> Result<&'a str, AccessError> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || trimmed.chars().any(char::is_control) {
        return Err(AccessError::Invalid(format!("{field}: must be 1 to {MAX_NAME_CHARS} printable characters")));
    }
    Ok(trimmed)
}

fn apply_news(record: &mut MessageRecord, news: DispatchNews) {
    match news {
        DispatchNews::Sent { at, provider_message_id } => {
            record.status = MessageStatus::Sent;
            record.sent_at = Some(at);
            record.updated_at = at;
            record.provider_message_id = Some(provider_message_id);
            record.attempts = record.attempts.max(1);
        }
        DispatchNews::Failed { error_type, message, at } => {
            record.status = MessageStatus::Failed;
            record.error_type = Some(error_type);
            record.error_message = Some(message);
            record.updated_at = at;
            record.charged = Credits::ZERO;
            record.attempts = record.attempts.max(1);
        }
    }
}

/// SHA-256 over the content that makes two requests "the same" for an idempotency key.
fn request_hash(cmd: &SendCommand) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [
        Some(cmd.kind.as_str()),
        Some(cmd.to.as_str()),
        Some(cmd.from.as_str()),
        cmd.body.as_deref(),
        cmd.media_url.as_deref(),
    ] {
        match part {
            Some(p) => {
                h.update([1u8]);
                h.update((p.len() as u64).to_be_bytes());
                h.update(p.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    h.finalize().to_vec()
}

//! Durable storage for Switchboard: the [`Store`] trait, on embedded SQLite or PostgreSQL.
//!
//! This is the only crate that knows SQL. Every store operation is one function in `ops`
//! (grouped by area), written once over a driver-neutral transaction (`engine::Tx`) with `$n`
//! SQL; the rules it applies (admission, running counts, webhook outbox, receipts, inbound
//! records) are pure code in [`rules`]. A small engine per backend runs each operation in one
//! transaction: SQLite (the embedded default, one file in WAL mode, on rusqlite) runs it whole
//! on its writer thread, whose commits a sync thread makes durable before they are answered;
//! PostgreSQL (for several nodes on one database) runs it in a sqlx transaction. Both run the
//! same SQL, but for the few differences the engine's `Backend` names (row locks, lists,
//! `SKIP LOCKED` claims), and pass the same contract suite (`tests/it`).
//!
//! [`Store::accept`] stores a whole group of messages with their charges and status events
//! under one commit (a group commit: one fsync for many requests), and
//! [`Store::record_results`] stores the dispatcher's outcomes, with refunds, the same way.
//! Every status change of a message is written with its event, its running counts and its
//! webhook deliveries in the transaction that makes it, so none of them can be lost or told
//! without the change.

mod db;
mod engine;
mod ops;
mod rows;
pub mod rules;
pub mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use rules::admission;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use async_trait::async_trait;
use switchboard_domain::{AccountDestinations, AccountId, BatchId, EventId, MessageId, Timestamp};
use switchboard_ledger::Credits;
use uuid::Uuid;

// The records this crate reads and writes are plain data in `switchboard-records`, so that
// the layers above the core can use them without this crate.
pub use switchboard_records::*;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The thing to change does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A ledger rule refused the write.
    #[error(transparent)]
    Ledger(#[from] switchboard_ledger::LedgerError),
    /// A stored value is not what the schema promises.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The embedded database's writer failed.
    #[error("database error: {0}")]
    Embedded(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file is damaged: its integrity check failed.
    #[error("the database is damaged: {0}")]
    Damaged(String),
    /// The database's schema is not one this version can upgrade.
    #[error("schema: {0}")]
    Schema(String),
    /// The database URL is not one this crate serves.
    #[error("unsupported database URL (expected sqlite: or postgres:)")]
    UnsupportedUrl,
    /// The database server could not be reached or refused the connection; the text names
    /// the cause (refused, name resolution, authentication, TLS, no answer).
    #[error("cannot connect to the database: {0}")]
    Unreachable(String),
}

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// Whether the store itself groups concurrent [`Store::accept`] calls into shared
    /// transactions and statements: SQLite's single writer runs together the admissions that
    /// wait for it, so callers need not gather them first. On PostgreSQL each call is a
    /// transaction of its own, and callers gain by grouping.
    pub fn groups_admissions(self) -> bool {
        self == Backend::Sqlite
    }
}

/// How many items a list returns at most, and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<C> {
    /// Items strictly older than this one (exclusive cursor), or from the newest.
    pub before: Option<C>,
    /// At most this many (1 to 1000).
    pub limit: u32,
}

/// The persistence interface of the core. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// The server secret that versions before the key file kept in the database, if it is
    /// still there (it goes when [`Store::record_server_keys`] records the keys that replace it).
    async fn legacy_server_secret(&self) -> Result<Option<Vec<u8>>>;
    /// The recorded fingerprints of the installation's server keys (`keys_fingerprint…`
    /// rows), by name.
    async fn key_fingerprints(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Records each fingerprint not recorded yet, and with `forget_legacy` removes the legacy
    /// server secret when the recorded hash-key fingerprint (`keys_fingerprint`) is the given
    /// one, in one transaction; returns every recorded fingerprint afterwards.
    async fn record_server_keys(
        &self,
        fingerprints: &[(String, Vec<u8>)],
        forget_legacy: bool,
    ) -> Result<Vec<(String, Vec<u8>)>>;
    /// Every webhook endpoint's sealed secret, by endpoint id.
    async fn sealed_webhook_secrets(&self) -> Result<Vec<(Uuid, SealedSecret)>>;
    /// Replaces an endpoint's sealed secret if it is still `old`; whether it was.
    async fn reseal_webhook_secret(&self, id: Uuid, old: &SealedSecret, new: &SealedSecret) -> Result<bool>;
    /// Leaves no copy of deleted content in the database's own files where the backend can:
    /// on SQLite (whose writer zeroes deleted content) a checkpoint that empties the WAL file,
    /// so no older page image stays in it; nothing on PostgreSQL, whose dead rows go with
    /// its vacuums.
    async fn scrub(&self) -> Result<()>;

    /// The newest migration applied to the database (0 for none); this version needs
    /// [`SCHEMA_VERSION`].
    async fn schema_version(&self) -> Result<i64>;

    /// How much work waits, for the metrics: messages queued and scheduled, webhook deliveries
    /// due by `now`, and messages sent and waiting for their receipts.
    async fn backlog(&self, now: Timestamp) -> Result<Backlog>;

    /// Runs an empty write transaction and returns once it is committed and durable: on SQLite
    /// it passes through the writer thread and the sync thread, on PostgreSQL it is a round trip
    /// of `BEGIN` and `COMMIT`. For readiness checks.
    async fn write_probe(&self) -> Result<()>;

    /// Creates an account with zero balances.
    async fn create_account(&self, name: &str) -> Result<AccountRecord>;
    /// Reads an account.
    async fn get_account(&self, id: AccountId) -> Result<Option<AccountRecord>>;
    /// Lists accounts, newest first.
    async fn list_accounts(&self, page: PageRequest<AccountId>) -> Result<Vec<AccountRecord>>;
    /// Sets an account's request rate limit (`None`: the server's default); `NotFound` if
    /// there is no such account.
    async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord>;

    /// Stores a new API key (its secret already hashed).
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Finds a key by id, revoked or not.
    async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// Lists an account's keys.
    async fn list_api_keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes a key of the account; `NotFound` if the account has no such key.
    async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord>;

    /// Assigns a sender to an account; `Conflict` if the address is assigned already.
    async fn create_sender(&self, sender: &SenderRecord) -> Result<()>;
    /// Changes a sender of the account; `NotFound` if the account has no such sender.
    async fn update_sender(&self, account: AccountId, address: &str, change: SenderChange) -> Result<SenderRecord>;
    /// Lists an account's senders.
    async fn list_senders(&self, account: AccountId) -> Result<Vec<SenderRecord>>;

    /// Adds credits with a ledger entry.
    async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord>;
    /// Lists an account's ledger entries, newest first.
    async fn ledger(&self, account: AccountId, page: PageRequest<uuid::Uuid>) -> Result<Vec<LedgerRecord>>;
    /// Finds an account's ledger entries that `filter` takes, newest first, before the page's
    /// cursor: by the message's index when it names a message, else by a bounded scan of the
    /// account's entries in the time range (at most [`SCAN_CAP`] examined; see [`Scanned`]).
    async fn ledger_entries(
        &self,
        account: AccountId,
        filter: &LedgerFilter,
        page: PageRequest<uuid::Uuid>,
    ) -> Result<Scanned<LedgerRecord>>;
    /// A message's ledger entries (its charge and refund), oldest first.
    async fn message_ledger(&self, message: MessageId) -> Result<Vec<LedgerRecord>>;

    /// Records an opt-out (idempotent).
    async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord>;
    /// Lifts an opt-out; `NotFound` if there was none.
    async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()>;
    /// Lists an account's opt-outs.
    async fn list_opt_outs(&self, account: AccountId, limit: u32) -> Result<Vec<OptOutRecord>>;

    /// Admits a group of new messages in one transaction, deciding each in order by the rules
    /// of [`admission`]: replay or conflict on a known idempotency key; refuse an unassigned,
    /// inactive or incapable sender; store an opted-out recipient's message as failed and
    /// free; refuse what the balance cannot pay; otherwise charge, store queued, and record
    /// the `accepted` and `queued` events. Each stored message's events (`accepted`, then
    /// `scheduled` or the opted-out `failed`) get their webhook deliveries. Returns one outcome
    /// per input, in order.
    async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>>;

    /// Reads a message.
    async fn get_message(&self, id: MessageId) -> Result<Option<MessageRecord>>;
    /// Lists an account's messages, newest first.
    async fn list_messages(&self, account: AccountId, page: PageRequest<MessageId>) -> Result<Vec<MessageRecord>>;
    /// A message's status history, oldest first.
    async fn message_events(&self, id: MessageId) -> Result<Vec<EventRecord>>;
    /// Finds the messages that `filter` takes, newest first, before the page's cursor: a
    /// bounded scan (at most [`SCAN_CAP`] rows examined; see [`Scanned`]) of the account's
    /// messages or of every message, over the ids of the time range. It adds no index to the
    /// messages: a recipient is compared whole, row by row.
    async fn search_messages(
        &self,
        filter: &MessageFilter,
        page: PageRequest<MessageId>,
    ) -> Result<Scanned<MessageRecord>>;

    /// Claims up to `limit` queued messages that are due, leasing each until `lease_until`
    /// and counting the attempt. On PostgreSQL concurrent claimers never get the same message
    /// (`FOR UPDATE SKIP LOCKED`); a message whose lease runs out is due again.
    ///
    /// First, in the same transaction, scheduled messages whose time has come are queued,
    /// except those whose recipient has opted out of their sender since they were accepted:
    /// those end `failed` (`opted_out`), refunded with a ledger entry, with their event and
    /// webhook deliveries.
    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>>;

    /// Stores dispatch outcomes in one transaction. An outcome applies only if the message is
    /// still queued under the attempt that produced it; returns the ids that changed. Each
    /// change records its event and webhook deliveries. A sent message's parts are recorded
    /// (see [`Store::record_receipts`]); receipts that came for them before are applied now, so
    /// the message may settle at once.
    async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>>;

    /// Makes queued messages that wait for a retry due at `now`: each `(id, attempt, due)` whose
    /// row is still as that retry left it (`queued`, at that attempt, due then). A message
    /// claimed, sent or ended since is left alone. Returns how many were made due.
    async fn offer_again(&self, waiting: &[(MessageId, u32, Timestamp)], now: Timestamp) -> Result<u64>;

    /// Records that the upstream took one part of a message that is still being sent (`part`
    /// from 1, with the upstream's id for it), so that no later attempt sends it again. A
    /// receipt that came for it first keeps its status, as when [`Store::record_results`]
    /// records the parts.
    async fn record_sent_part(&self, message: MessageId, part: u32, provider_ref: &str, at: Timestamp) -> Result<()>;

    /// The parts of a message that an upstream has taken: (part from 1, the upstream's id), in
    /// part order.
    async fn sent_parts(&self, message: MessageId) -> Result<Vec<(u32, String)>>;

    /// Reads a multi-recipient send request.
    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchRecord>>;
    /// Lists an account's multi-recipient send requests, newest first, optionally only those
    /// in one state: `limit` of them from `offset`, and how many match in all.
    async fn list_batches(
        &self,
        account: AccountId,
        state: Option<BatchState>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<BatchRecord>, u64)>;
    /// Counts the account's outbound messages created in `[from, to)`, by current status,
    /// from the hourly running counts and, for partial hours at either end, the messages.
    async fn message_counts(&self, account: AccountId, from: Timestamp, to: Timestamp) -> Result<MessageCounts>;

    /// Cancels a scheduled message of the account, refunding its charge with a ledger entry,
    /// recording its event and webhook deliveries, and returns it; `NotFound` if the account
    /// has no such message, `Conflict` if it is no longer scheduled.
    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<MessageRecord>;
    /// Lists a channel's messages, newest first.
    async fn list_channel_messages(&self, channel: Uuid, page: PageRequest<MessageId>) -> Result<Vec<MessageRecord>>;

    /// Creates a channel (its `mms` is read from its sender); `Conflict` if the id exists.
    async fn create_channel(&self, channel: &ChannelRecord) -> Result<ChannelRecord>;
    /// Reads a channel.
    async fn get_channel(&self, id: Uuid) -> Result<Option<ChannelRecord>>;
    /// Lists an account's channels (at most 1,000), oldest first.
    async fn list_channels(&self, account: AccountId) -> Result<Vec<ChannelRecord>>;
    /// Changes a channel of the account; `NotFound` if the account has no such channel.
    async fn update_channel(&self, account: AccountId, id: Uuid, change: &ChannelChange) -> Result<ChannelRecord>;

    /// Creates a template without versions; `Conflict` if the account has one of that name.
    async fn create_template(&self, account: AccountId, name: &str) -> Result<TemplateRecord>;
    /// Adds a version to a template of the account; `NotFound` if it has no such template.
    async fn add_template_version(
        &self,
        account: AccountId,
        template: Uuid,
        texts: &BTreeMap<String, String>,
        active: bool,
    ) -> Result<TemplateVersionRecord>;
    /// Activates or deactivates a template version; `NotFound` if the account has no such
    /// template version.
    async fn set_template_version_active(
        &self,
        account: AccountId,
        template: Uuid,
        version: Uuid,
        active: bool,
    ) -> Result<TemplateVersionRecord>;
    /// Reads a template with its versions.
    async fn get_template(&self, id: Uuid) -> Result<Option<TemplateRecord>>;
    /// Lists an account's templates (at most 1,000) with their versions, oldest first.
    async fn list_templates(&self, account: AccountId) -> Result<Vec<TemplateRecord>>;

    /// Counts the account's messages by status (for checks and metrics).
    async fn count_messages(&self, account: AccountId) -> Result<Vec<(String, i64)>>;

    /// Sets whether the account is refunded for messages the carrier reports undelivered or
    /// failed; `NotFound` if there is no such account.
    async fn set_refund_carrier_failures(&self, account: AccountId, refund: bool) -> Result<AccountRecord>;

    /// Sets the countries the account sends to and whether it accepts fixed-or-mobile
    /// numbers; sends admitted after the change are held to it. `NotFound` if there is no such
    /// account.
    async fn set_destinations(&self, account: AccountId, destinations: AccountDestinations) -> Result<AccountRecord>;

    /// Sets the SMS balance below which a charge posts `account.balance_low` (`None`: no
    /// alert); `NotFound` if there is no such account. Setting it posts nothing: the next
    /// charge that takes the balance from at or above it to below it does.
    async fn set_low_balance_threshold(&self, account: AccountId, threshold: Option<i64>) -> Result<AccountRecord>;

    /// Applies delivery receipts in one transaction, one outcome per receipt, in order.
    ///
    /// A part moves from `sent` to `delivered`, `undelivered` or `failed` once; a receipt for a
    /// part already final is `Ignored`. A receipt whose `provider_ref` no recorded submission
    /// has is stored (`Unmatched`) and applied when the submission is recorded by
    /// [`Store::record_results`]. A message in `sent` becomes `undelivered` or `failed` as soon
    /// as one part does (its error type from that part, its error message naming the part when
    /// it has several; `unknown` if the receipt gave none), and `delivered` when every one of
    /// its parts is: the parts its submission was recorded with, one per reference the
    /// provider gave, or the message's own id as its only part (normally its `segments`, but a
    /// provider that names the whole message once settles it with one receipt). Two receipts
    /// for one part in one call apply one after the other. Each change of a message records its
    /// event, its webhook deliveries and its counts; a failure refunds the charge (with a ledger
    /// entry, once) when the account has `refund_carrier_failures`. A message never moves
    /// backwards.
    async fn record_receipts(&self, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>>;
    /// A message's parts, by part number.
    async fn message_parts(&self, id: MessageId) -> Result<Vec<PartRecord>>;
    /// The parts still `sent` (no final receipt yet) of messages still `sent`, whose provider
    /// reference starts with `prefix`: at most `limit` (capped at 1000) in reference order,
    /// after `after` (the last reference of the previous page; `None` for the first). An
    /// upstream that keeps the receipts it owes in memory derives them again from these after
    /// a restart.
    async fn pending_parts(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<PendingPart>>;

    /// Stores an inbound message to `inbound.to`, which must be a sender assigned to an
    /// account (`NotFound` otherwise), in one transaction with: its `received` event and
    /// `message.inbound` webhook deliveries; the opt-out change; and the reply, if any, stored
    /// queued, free, from `inbound.to` to `inbound.from`, with its events and deliveries. The
    /// inbound message belongs to the sender's account and to the account's oldest active
    /// channel on that sender, if there is one.
    async fn receive_inbound(
        &self,
        inbound: &NewInbound,
        change: OptOutChange,
        reply: Option<&NewReply>,
    ) -> Result<InboundOutcome>;

    /// Creates a webhook endpoint; `Conflict` if the id exists.
    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<()>;
    /// Reads a webhook endpoint.
    async fn get_webhook(&self, id: Uuid) -> Result<Option<WebhookRecord>>;
    /// Lists an account's webhook endpoints (at most 1,000), oldest first.
    async fn list_webhooks(&self, account: AccountId) -> Result<Vec<WebhookRecord>>;
    /// Changes a webhook endpoint of the account; `NotFound` if it has no such endpoint.
    async fn update_webhook(&self, account: AccountId, id: Uuid, change: &WebhookChange) -> Result<WebhookRecord>;
    /// Deletes a webhook endpoint of the account, canceling its pending deliveries;
    /// `NotFound` if it has no such endpoint.
    async fn delete_webhook(&self, account: AccountId, id: Uuid) -> Result<()>;

    /// Stores a new console session.
    async fn create_console_session(&self, session: &ConsoleSessionRecord) -> Result<()>;
    /// Finds a console session by its token's hash, expired or not.
    async fn find_console_session(&self, token_hash: &[u8]) -> Result<Option<ConsoleSessionRecord>>;
    /// Notes that a console session was used at `at` (no write when it was already noted as
    /// late or later).
    async fn touch_console_session(&self, token_hash: &[u8], at: Timestamp) -> Result<()>;
    /// Ends a console session; whether there was one.
    async fn delete_console_session(&self, token_hash: &[u8]) -> Result<bool>;
    /// Removes the console sessions expired by `now` or unused since before `idle_before`;
    /// how many.
    async fn purge_console_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64>;
    /// Outbound messages created in `[from, to)` by hour and where they stand now, of one
    /// account or of all, from the hourly running counts (whole hours: the hours `from` and
    /// `to` fall in count whole); hours without messages are left out.
    async fn hourly_traffic(
        &self,
        account: Option<AccountId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TrafficBucket>>;
    /// Outbound messages created in each of `minutes` minutes (at most 60) from `from`, by
    /// where they stand now, of one account or of all, from the running counts by minute;
    /// minutes without messages are left out.
    async fn minute_traffic(
        &self,
        account: Option<AccountId>,
        from: Timestamp,
        minutes: u32,
    ) -> Result<Vec<TrafficBucket>>;
    /// The account's outbound messages waiting (accepted or queued, and scheduled), from its
    /// running counts.
    async fn account_backlog(&self, account: AccountId) -> Result<(i64, i64)>;

    /// Stores a new SMPP credential (its password already hashed); `Conflict` if its
    /// `system_id` exists, revoked or not.
    async fn create_smpp_credential(&self, credential: &SmppCredentialRecord) -> Result<()>;
    /// Finds an SMPP credential by `system_id`, revoked or not.
    async fn find_smpp_credential(&self, system_id: &str) -> Result<Option<SmppCredentialRecord>>;
    /// Lists an account's SMPP credentials (at most 1,000), oldest first.
    async fn list_smpp_credentials(&self, account: AccountId) -> Result<Vec<SmppCredentialRecord>>;
    /// Revokes an SMPP credential of the account (once; the first time stays); `NotFound` if
    /// the account has no such credential.
    async fn revoke_smpp_credential(
        &self,
        account: AccountId,
        system_id: &str,
        at: Timestamp,
    ) -> Result<SmppCredentialRecord>;
    /// Whether the account has a queued `deliver_sm` due by `now` (a read, so that a node
    /// with receiving binds can look often without writing).
    async fn due_smpp_deliveries(&self, account: AccountId, now: Timestamp) -> Result<bool>;
    /// Claims up to `limit` of the account's queued `deliver_sm` due by `now`, oldest due
    /// first: leases each until `lease_until` (when it is due again unless removed) and counts
    /// the attempt. On PostgreSQL, rows another node is claiming are skipped.
    async fn claim_smpp_deliveries(
        &self,
        account: AccountId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<SmppDeliveryRecord>>;
    /// Makes a claimed `deliver_sm` due again at `at` (its ESME refused it, or its bind
    /// ended), rather than when its lease ends.
    async fn retry_smpp_delivery(&self, id: Uuid, at: Timestamp) -> Result<()>;
    /// Removes queued `deliver_sm` (answered by an ESME, or given up); how many were there.
    async fn remove_smpp_deliveries(&self, ids: &[Uuid]) -> Result<u64>;
    /// Gives up, oldest first, up to `limit` queued `deliver_sm` whose status came before
    /// `occurred_before`; how many.
    async fn expire_smpp_deliveries(&self, occurred_before: Timestamp, limit: u32) -> Result<u64>;
    /// How many `deliver_sm` are queued.
    async fn count_smpp_deliveries(&self) -> Result<i64>;

    /// Claims up to `limit` pending deliveries that are due, oldest due first, skipping those
    /// whose target is in `busy`: leases each until `lease_until` and counts the attempt, like
    /// [`Store::claim_due`]. On PostgreSQL concurrent claimers never get the same delivery.
    /// Each claimed endpoint delivery carries its endpoint's sealed secret.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> Result<Vec<DeliveryRecord>>;
    /// Stores delivery results in one transaction. A result applies only if the delivery is
    /// still pending under the attempt that produced it; each applied result other than
    /// `Release` adds its attempt to the delivery's history.
    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<()>;
    /// Takes `want` tokens from the shared rate-limit bucket `name` when it holds that many,
    /// all or none; returns how many it took. A bucket gains `per_second` tokens a second
    /// (counted from `now` against its last take) and holds at most `per_second`; a new one
    /// starts full. Every node on the database takes from the same buckets, so a limit kept
    /// through them holds across all of them.
    async fn take_rate_tokens(&self, name: &str, per_second: u32, want: u32, now: Timestamp) -> Result<u32>;
    /// A message's webhook deliveries (at most 1,000), by event and target.
    async fn message_deliveries(&self, message: MessageId) -> Result<Vec<DeliveryRecord>>;
    /// Makes the failed deliveries of an event (only the one to `endpoint`, when given) due at
    /// `now` with a fresh budget: their retry period and backoff start over from `now`, and
    /// their attempts so far stay in their history. Returns them; `NotFound` if the event has no
    /// such delivery, `Conflict` if none of them is failed (a second resend finds them
    /// pending).
    async fn resend_deliveries(
        &self,
        event: EventId,
        endpoint: Option<Uuid>,
        now: Timestamp,
    ) -> Result<Vec<DeliveryRecord>>;
    /// Lists an account's deliveries, newest event first (by event id, then target).
    async fn list_deliveries(
        &self,
        account: AccountId,
        filter: &DeliveryFilter,
        page: PageRequest<EventId>,
    ) -> Result<Vec<DeliveryRecord>>;
    /// A delivery's attempts, oldest first.
    async fn delivery_attempts(&self, event: EventId, target: &str) -> Result<Vec<AttemptRecord>>;

    /// Removes, in one transaction, the history of up to `limit` finished messages that ended
    /// before `before`, those that ended first first, and up to `limit` receipts that no
    /// submission has matched and that came before `before`.
    ///
    /// A message is finished in a final status (`delivered`, `failed`, `undelivered`,
    /// `expired`, `canceled`, `received`) with none of its webhook deliveries still pending; a
    /// message still `sent` awaits receipts and is kept whole. Its history is its status events,
    /// its parts, and its webhook deliveries with their attempts; the message row stays, marked
    /// pruned, with its status, charge and idempotency key, and so do the ledger, the running
    /// counts and the batches. A message is pruned once: a second call finds nothing more to
    /// do. On PostgreSQL concurrent calls take different messages (`SKIP LOCKED`).
    async fn prune(&self, before: Timestamp, limit: u32) -> Result<Pruned>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.backend())
    }
}

/// How much work waits (see [`Store::backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Messages queued for the dispatcher.
    pub queued: i64,
    /// Messages scheduled for later.
    pub scheduled: i64,
    /// Webhook deliveries due now, not yet delivered.
    pub deliveries_due: i64,
    /// Messages an upstream took and whose receipts have not all come.
    pub receipts_awaited: i64,
}

/// What one [`Store::prune`] call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Messages whose history was removed (and which are now marked pruned).
    pub messages: u64,
    /// Their status events (`message_events` rows).
    pub events: u64,
    /// Their parts (`message_parts` rows).
    pub parts: u64,
    /// Their webhook deliveries (`webhook_deliveries` rows).
    pub deliveries: u64,
    /// The attempts of those deliveries (`webhook_attempts` rows).
    pub attempts: u64,
    /// Receipts no submission matched (`message_parts` rows without a message).
    pub receipts: u64,
}

impl Pruned {
    /// Rows removed in all.
    pub fn rows(&self) -> u64 {
        self.events + self.parts + self.deliveries + self.attempts + self.receipts
    }

    /// Whether a call with this `limit` left nothing more to prune: it took fewer messages and
    /// fewer receipts than it could.
    pub fn drained(&self, limit: u32) -> bool {
        let limit = u64::from(limit.max(1));
        self.messages < limit && self.receipts < limit
    }

    /// Adds another call's counts to these.
    pub fn add(&mut self, other: &Pruned) {
        self.messages += other.messages;
        self.events += other.events;
        self.parts += other.parts;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.receipts += other.receipts;
    }
}

/// The newest migration of this version's schema, the same on both engines
/// (`migrations/sqlite` and `migrations/postgres` hold one file per version).
pub const SCHEMA_VERSION: i64 = 14;

/// Opens the store a URL names (`sqlite:` or `postgres:`), creating and migrating it.
pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(db::Db { engine: engine::sqlite::SqliteEngine::open(url, options).await? }))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(db::Db { engine: engine::postgres::PgEngine::open(url, options).await? }))
    } else {
        Err(StorageError::UnsupportedUrl)
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Connections in the pool (PostgreSQL) or readers (SQLite).
    pub max_connections: u32,
    /// How long to wait for a connection or a lock.
    pub acquire_timeout: std::time::Duration,
    /// SQLite: the size the WAL file is kept under, in bytes (it may pass it by the last
    /// transaction before the writer empties it).
    pub wal_limit_bytes: u64,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(10),
            wal_limit_bytes: 64 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod schema_tests {
    /// Each engine has one migration file per version, 1 to [`super::SCHEMA_VERSION`].
    #[test]
    fn both_engines_have_every_version() {
        for engine in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(engine);
            let mut versions: Vec<i64> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().split('_').next().unwrap().parse().unwrap())
                .collect();
            versions.sort_unstable();
            assert_eq!(versions, (1..=super::SCHEMA_VERSION).collect::<Vec<_>>(), "{engine}");
        }
    }
}

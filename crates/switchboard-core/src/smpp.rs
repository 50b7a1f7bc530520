//! SMPP credentials and sends for the SMPP server (`switchboard-smpp-server`).
//!
//! SMPP's `system_id` (at most 15 characters) and `password` (at most 8) do not fit API keys,
//! so an account gets SMPP credentials of its own. The password is made here, shown once, and
//! stored only as HMAC-SHA256 under the server secret (the same [`KeyHasher`] as API keys,
//! over the `system_id` and the password together). Checking a bind costs one HMAC and, at
//! most once per cache period per `system_id`, one indexed read; failed binds spend the same
//! failure budgets ([`crate::guard`]) as failed API logins, counted per client address and per
//! `system_id`.
//!
//! [`Core::send_smpp`] stores a message exactly as an HTTP send does (validation happened in
//! the caller, through the same [`switchboard_validation::Policy`]; the destination rules,
//! sender rules, opt-outs, pricing and ledger here and in the store), with a schedule, an
//! expiry, and the receipt the ESME asked for, and returns once the message is durable.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rand::RngExt;
use subtle::ConstantTimeEq;
use switchboard_domain::{AccountId, MessageId, MessageStatus, Timestamp};
use switchboard_records::{
    MessageRecord, NewMessage, SMPP_RECEIPT_FAILURE, SMPP_RECEIPT_FINAL, SmppCredentialRecord, SmppDeliveryRecord,
};
use switchboard_validation::SendCommand;
use uuid::Uuid;

use crate::{AccessError, AuthError, Core, KeyHasher, SendError};

/// Longest `system_id` (SMPP 3.4: a C-octet string of at most 16 octets with its NUL).
pub const MAX_SYSTEM_ID: usize = 15;
/// Length of the passwords made here (SMPP 3.4 allows at most 8).
pub const PASSWORD_LEN: usize = 8;
/// Most SMPP credentials one account may hold (revoked ones included).
pub const MAX_CREDENTIALS_PER_ACCOUNT: usize = 100;
/// Largest limit a credential may set (binds, messages a second).
pub const MAX_LIMIT: u32 = 100_000;
/// Largest window a bind may have.
pub const MAX_WINDOW: u32 = 1_000;

/// A credential's limits; each `None` means the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmppLimits {
    /// Most binds at once with the credential.
    pub max_binds: Option<u32>,
    /// Most requests waiting for their answer on one bind.
    pub window: Option<u32>,
    /// Most `submit_sm` a second on one bind.
    pub max_per_second: Option<u32>,
}

/// A new credential's password, to show once.
#[derive(Clone)]
pub struct SmppPassword(pub String);

impl fmt::Debug for SmppPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmppPassword(<redacted>)")
    }
}

/// An ESME that bound: its account and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmppLogin {
    /// The account.
    pub account: AccountId,
    /// The credential's `system_id`.
    pub system_id: String,
    /// The credential's own limits.
    pub limits: SmppLimits,
}

/// The receipts an ESME asked for with `registered_delivery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptRequest {
    /// A receipt for every final status (`registered_delivery` bits 1 = 01).
    Final,
    /// A receipt for a failure only (bits = 10).
    Failure,
}

/// What an SMPP send adds to a validated [`SendCommand`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmppSend {
    /// When to send it (`schedule_delivery_time`); `None` or a past time: now.
    pub scheduled_for: Option<Timestamp>,
    /// When it expires unsent (`validity_period`).
    pub expires_at: Option<Timestamp>,
    /// The receipt asked for, if any.
    pub receipt: Option<ReceiptRequest>,
}

/// What the store said of a `system_id`.
#[derive(Clone)]
struct Cached {
    record: Option<SmppCredentialRecord>,
    fetched: Instant,
}

/// Most `system_id`s cached at once; past it, the cache starts over.
const CACHE_LIMIT: usize = 10_000;

/// Checks SMPP credentials with a cache of what the store says of each `system_id`.
pub(crate) struct SmppAuth {
    hasher: KeyHasher,
    ttl: Duration,
    stand_in: Vec<u8>,
    cache: RwLock<HashMap<String, Cached>>,
}

impl fmt::Debug for SmppAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmppAuth").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl SmppAuth {
    pub(crate) fn new(hasher: KeyHasher, ttl: Duration) -> Self {
        let stand_in = hasher.hash(&format!("{:x}", rand::rng().random::<u128>()));
        Self { hasher, ttl, stand_in, cache: RwLock::new(HashMap::new()) }
    }

    fn hash(&self, system_id: &str, password: &str) -> Vec<u8> {
        self.hasher.hash(&format!("smpp\u{0}{system_id}\u{0}{password}"))
    }

    async fn entry(&self, store: &dyn switchboard_storage::Store, system_id: &str) -> Result<Cached, AuthError> {
        let cached =
            self.cache.read().ok().and_then(|c| c.get(system_id).cloned()).filter(|c| c.fetched.elapsed() < self.ttl);
        if let Some(c) = cached {
            return Ok(c);
        }
        let record = store.find_smpp_credential(system_id).await.map_err(|_| AuthError::Unavailable)?;
        let entry = Cached { record, fetched: Instant::now() };
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(system_id.to_owned(), entry.clone());
        }
        Ok(entry)
    }

    fn forget(&self, system_id: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(system_id);
        }
    }
}

/// Whether `system_id` can name a credential: 1 to 15 printable ASCII characters, no spaces.
pub fn valid_system_id(system_id: &str) -> bool {
    !system_id.is_empty() && system_id.len() <= MAX_SYSTEM_ID && system_id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh password: 8 characters from letters and digits (OS-seeded CSPRNG).
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..PASSWORD_LEN).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

fn check_limit(field: &str, value: Option<u32>) -> Result<(), AccessError> {
    match value {
        Some(v) if v == 0 || v > MAX_LIMIT => Err(AccessError::Invalid(format!("{field}: 1 to {MAX_LIMIT}"))),
        _ => Ok(()),
    }
}

impl Core {
    /// Creates an SMPP credential for an account; the returned password is never stored.
    pub async fn create_smpp_credential(
        &self,
        account: AccountId,
        system_id: &str,
        limits: SmppLimits,
    ) -> Result<(SmppCredentialRecord, SmppPassword), AccessError> {
        if !valid_system_id(system_id) {
            return Err(AccessError::Invalid(format!(
                "system_id: 1 to {MAX_SYSTEM_ID} printable ASCII characters without spaces"
            )));
        }
        check_limit("max_binds", limits.max_binds)?;
        check_limit("window", limits.window)?;
        if limits.window.is_some_and(|w| w > MAX_WINDOW) {
            return Err(AccessError::Invalid(format!("window: 1 to {MAX_WINDOW}")));
        }
        check_limit("max_per_second", limits.max_per_second)?;
        self.account(account).await?;
        let existing = self.smpp_credentials(account).await?;
        if existing.len() >= MAX_CREDENTIALS_PER_ACCOUNT {
            return Err(AccessError::Conflict(format!(
                "the account has {MAX_CREDENTIALS_PER_ACCOUNT} SMPP credentials already"
            )));
        }
        let password = generate_password();
        let record = SmppCredentialRecord {
            system_id: system_id.to_owned(),
            account_id: account,
            password_hash: self.inner.smpp.hash(system_id, &password),
            max_binds: limits.max_binds,
            window: limits.window,
            max_per_second: limits.max_per_second,
            created_at: Timestamp::now(),
            revoked_at: None,
        };
        self.inner.store.create_smpp_credential(&record).await.map_err(AccessError::from_storage("SMPP credential"))?;
        self.inner.smpp.forget(system_id);
        Ok((record, SmppPassword(password)))
    }

    /// Lists an account's SMPP credentials.
    pub async fn smpp_credentials(&self, account: AccountId) -> Result<Vec<SmppCredentialRecord>, AccessError> {
        self.account(account).await?;
        self.inner.store.list_smpp_credentials(account).await.map_err(AccessError::from_storage("SMPP credential"))
    }

    /// Revokes an SMPP credential: no new bind with it succeeds (on other nodes, within the
    /// cache period); binds already made stay until they end.
    pub async fn revoke_smpp_credential(
        &self,
        account: AccountId,
        system_id: &str,
    ) -> Result<SmppCredentialRecord, AccessError> {
        let record = self
            .inner
            .store
            .revoke_smpp_credential(account, system_id, Timestamp::now())
            .await
            .map_err(AccessError::from_storage("SMPP credential"))?;
        self.inner.smpp.forget(system_id);
        Ok(record)
    }

    /// Checks a bind's `system_id` and `password` from `client`, within the failure budgets
    /// of API logins: an address over its budget is refused before anything is checked, and
    /// a wrong password for a `system_id` over its budget is [`AuthError::Throttled`].
    pub async fn authenticate_smpp(
        &self,
        client: Option<IpAddr>,
        system_id: &str,
        password: &str,
    ) -> Result<SmppLogin, AuthError> {
        self.inner.guard.admit(client).map_err(AuthError::Throttled)?;
        let auth = &self.inner.smpp;
        let plausible = valid_system_id(system_id) && password.len() <= PASSWORD_LEN;
        let entry = match plausible {
            true => Some(auth.entry(self.inner.store.as_ref(), system_id).await?),
            false => None,
        };
        let presented = auth.hash(system_id, password);
        let record = entry.and_then(|e| e.record);
        let expected = record.as_ref().map_or(&auth.stand_in, |r| &r.password_hash);
        let matches = bool::from(presented.ct_eq(expected));
        match record {
            Some(r) if matches && r.revoked_at.is_none() => Ok(SmppLogin {
                account: r.account_id,
                system_id: r.system_id,
                limits: SmppLimits { max_binds: r.max_binds, window: r.window, max_per_second: r.max_per_second },
            }),
            _ => {
                let key = plausible.then(|| format!("smpp:{system_id}"));
                self.inner.guard.failed(client, key.as_deref()).map_err(AuthError::Throttled)?;
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Stores one validated message sent over SMPP, as [`Core::send`] does, with its schedule,
    /// expiry and receipt request; returns once it is durable, without waiting for the
    /// dispatcher. An opted-out recipient gives a message stored `failed` (and its failure
    /// receipt, if asked for), as over HTTP.
    pub async fn send_smpp(
        &self,
        account: AccountId,
        cmd: SendCommand,
        extra: SmppSend,
    ) -> Result<MessageRecord, SendError> {
        let id = MessageId::new();
        let created_at = id.created_at();
        let config = &self.inner.config;
        let scheduled_for = extra.scheduled_for.filter(|at| *at > created_at);
        let price = config.tariff.price(cmd.kind);
        let (destination, refused) = self.check_destination(&cmd.to, cmd.kind).await?;
        let notify_url = extra.receipt.map(|r| match r {
            ReceiptRequest::Final => SMPP_RECEIPT_FINAL.to_owned(),
            ReceiptRequest::Failure => SMPP_RECEIPT_FAILURE.to_owned(),
        });
        let message = NewMessage {
            id,
            account_id: account,
            request_id: crate::request::current(),
            kind: cmd.kind,
            request_hash: Vec::new(),
            to: cmd.to,
            from: cmd.from,
            body: cmd.body,
            media: Vec::new(),
            encoding: cmd.text.encoding,
            segments: cmd.text.segments,
            price,
            idempotency_key: None,
            created_at,
            claim_until: (config.run_dispatcher && scheduled_for.is_none())
                .then(|| created_at.plus_millis(config.dispatcher.lease.as_millis() as i64)),
            batch: None,
            channel_id: None,
            scheduled_for,
            expires_at: extra.expires_at,
            details: None,
            notify_url,
            destination,
            refusal: refused,
        };
        crate::admitted(self.inner.committer.submit(message).await.map_err(|_| SendError::Unavailable)?)
    }

    /// Whether the account has `deliver_sm` due for its binds (a read).
    pub async fn smpp_deliveries_due(&self, account: AccountId) -> Result<bool, AccessError> {
        self.inner
            .store
            .due_smpp_deliveries(account, Timestamp::now())
            .await
            .map_err(AccessError::from_storage("SMPP delivery"))
    }

    /// Claims up to `limit` of the account's due `deliver_sm`, each leased for `lease`.
    pub async fn claim_smpp_deliveries(
        &self,
        account: AccountId,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<SmppDeliveryRecord>, AccessError> {
        let now = Timestamp::now();
        let until = now.plus_millis(lease.as_millis().min(i64::MAX as u128) as i64);
        self.inner
            .store
            .claim_smpp_deliveries(account, now, until, limit)
            .await
            .map_err(AccessError::from_storage("SMPP delivery"))
    }

    /// Makes a claimed `deliver_sm` due again after `delay`.
    pub async fn retry_smpp_delivery(&self, id: Uuid, delay: Duration) -> Result<(), AccessError> {
        let at = Timestamp::now().plus_millis(delay.as_millis().min(i64::MAX as u128) as i64);
        self.inner.store.retry_smpp_delivery(id, at).await.map_err(AccessError::from_storage("SMPP delivery"))
    }

    /// Removes `deliver_sm` an ESME answered, or that are given up.
    pub async fn remove_smpp_deliveries(&self, ids: &[Uuid]) -> Result<u64, AccessError> {
        self.inner.store.remove_smpp_deliveries(ids).await.map_err(AccessError::from_storage("SMPP delivery"))
    }

    /// Gives up `deliver_sm` that waited longer than `hold` for a bind (up to 1,000 a call).
    pub async fn expire_smpp_deliveries(&self, hold: Duration) -> Result<u64, AccessError> {
        let before = Timestamp::now().plus_millis(-(hold.as_millis().min(i64::MAX as u128) as i64));
        self.inner.store.expire_smpp_deliveries(before, 1000).await.map_err(AccessError::from_storage("SMPP delivery"))
    }

    /// How many `deliver_sm` wait, for the metrics.
    pub async fn smpp_backlog(&self) -> Result<i64, AccessError> {
        self.inner.store.count_smpp_deliveries().await.map_err(AccessError::from_storage("SMPP delivery"))
    }
}

/// Whether a status ends a message (receipts are only about these).
pub fn is_receipt_status(status: MessageStatus) -> bool {
    status.is_final() && status != MessageStatus::Received
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_ids_and_passwords() {
        assert!(valid_system_id("esme1"));
        assert!(valid_system_id("abcdefghijklmno"));
        assert!(!valid_system_id("abcdefghijklmnop"));
        assert!(!valid_system_id(""));
        assert!(!valid_system_id("a b"));
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), PASSWORD_LEN);
        assert_ne!(a, b);
        assert!(!format!("{:?}", SmppPassword(a.clone())).contains(&a));
    }

    #[test]
    fn binds_are_held_to_the_credential_and_account_limits() {
        let binds = SmppBinds::default();
        let account = AccountId::new();
        let login =
            |system_id: &str| SmppLogin { account, system_id: system_id.to_owned(), limits: SmppLimits::default() };
        let peer: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let a1 = binds.register(&login("a"), BindMode::Transmitter, peer, 10, 2, 3).unwrap();
        binds.register(&login("a"), BindMode::Receiver, peer, 10, 2, 3).unwrap();
        assert!(binds.register(&login("a"), BindMode::Transceiver, peer, 10, 2, 3).is_none(), "credential limit");
        binds.register(&login("b"), BindMode::Transceiver, peer, 10, 2, 3).unwrap();
        assert!(binds.register(&login("c"), BindMode::Transmitter, peer, 10, 5, 3).is_none(), "account limit");
        let other = SmppLogin { account: AccountId::new(), ..login("d") };
        binds.register(&other, BindMode::Receiver, peer, 10, 5, 3).unwrap();
        assert_eq!(binds.list().len(), 4);
        let mut receiving = binds.receiving_accounts();
        receiving.sort();
        let mut want = vec![account, other.account];
        want.sort();
        assert_eq!(receiving, want);
        binds.remove(a1.id);
        assert!(binds.register(&login("a"), BindMode::Transmitter, peer, 10, 2, 3).is_some(), "room again");
    }
}

/// How a bind receives and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindMode {
    /// Sends only.
    Transmitter,
    /// Receives only.
    Receiver,
    /// Both.
    Transceiver,
}

impl BindMode {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BindMode::Transmitter => "transmitter",
            BindMode::Receiver => "receiver",
            BindMode::Transceiver => "transceiver",
        }
    }

    /// Whether `deliver_sm` go to a bind of this mode.
    pub fn receives(self) -> bool {
        self != BindMode::Transmitter
    }

    /// Whether a bind of this mode may send `submit_sm`.
    pub fn transmits(self) -> bool {
        self != BindMode::Receiver
    }
}

/// One bind held on this node, with its counters (updated by the SMPP server as it goes).
#[derive(Debug)]
pub struct BindInfo {
    /// Its number on this node.
    pub id: u64,
    /// The account.
    pub account: AccountId,
    /// The credential it bound with.
    pub system_id: String,
    /// Its mode.
    pub mode: BindMode,
    /// The ESME's address.
    pub peer: std::net::SocketAddr,
    /// When it bound.
    pub bound_at: Timestamp,
    /// Its window.
    pub window: u32,
    /// Requests from the ESME waiting for their answer.
    pub in_window: std::sync::atomic::AtomicU32,
    /// `submit_sm` received.
    pub submits: std::sync::atomic::AtomicU64,
    /// `submit_sm` accepted.
    pub accepted: std::sync::atomic::AtomicU64,
    /// `deliver_sm` sent.
    pub delivers: std::sync::atomic::AtomicU64,
    /// `deliver_sm` answered `ESME_ROK`.
    pub delivered: std::sync::atomic::AtomicU64,
}

/// The SMPP binds held on this node, for the bind limits, the admin API and the metrics.
#[derive(Debug, Default)]
pub struct SmppBinds {
    next: std::sync::atomic::AtomicU64,
    binds: std::sync::Mutex<HashMap<u64, std::sync::Arc<BindInfo>>>,
}

impl SmppBinds {
    /// Registers a bind of `system_id` unless that credential already holds `max_binds`
    /// (and the account `max_account_binds`) binds on this node; `None` when over a limit.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        login: &SmppLogin,
        mode: BindMode,
        peer: std::net::SocketAddr,
        window: u32,
        max_binds: u32,
        max_account_binds: u32,
    ) -> Option<std::sync::Arc<BindInfo>> {
        let mut binds = self.binds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let of_account = binds.values().filter(|b| b.account == login.account).count();
        let of_credential = binds.values().filter(|b| b.system_id == login.system_id).count();
        if of_account >= max_account_binds as usize || of_credential >= max_binds as usize {
            return None;
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let info = std::sync::Arc::new(BindInfo {
            id,
            account: login.account,
            system_id: login.system_id.clone(),
            mode,
            peer,
            bound_at: Timestamp::now(),
            window,
            in_window: Default::default(),
            submits: Default::default(),
            accepted: Default::default(),
            delivers: Default::default(),
            delivered: Default::default(),
        });
        binds.insert(id, info.clone());
        Some(info)
    }

    /// Forgets a bind that ended.
    pub fn remove(&self, id: u64) {
        self.binds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }

    /// Every bind, oldest first.
    pub fn list(&self) -> Vec<std::sync::Arc<BindInfo>> {
        let mut all: Vec<_> =
            self.binds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        all.sort_by_key(|b| b.id);
        all
    }

    /// The accounts with a bind that receives, each once.
    pub fn receiving_accounts(&self) -> Vec<AccountId> {
        let mut accounts: Vec<AccountId> = self
            .binds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|b| b.mode.receives())
            .map(|b| b.account)
            .collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }
}

impl Core {
    /// The SMPP binds held on this node.
    pub fn smpp_binds(&self) -> &SmppBinds {
        &self.inner.smpp_binds
    }
}

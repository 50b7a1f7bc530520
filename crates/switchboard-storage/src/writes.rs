//! The write half of a store, implemented per backend: PostgreSQL through sqlx, SQLite on a
//! dedicated writer thread. The read half is shared (see `common`).

use switchboard_domain::{AccountId, MessageId, Timestamp};
use switchboard_ledger::Credits;

use crate::{
    AcceptOutcome, AccountRecord, ApiKeyRecord, DispatchResult, LedgerRecord, MessageRecord, NewMessage, OptOutRecord,
    Result, SenderChange, SenderRecord,
};

/// The store operations that write, each one transaction. Contracts as on [`crate::Store`].
#[async_trait::async_trait]
pub(crate) trait Writes {
    async fn server_secret(&self) -> Result<Vec<u8>>;
    async fn create_account(&self, name: &str) -> Result<AccountRecord>;
    async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord>;
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord>;
    async fn create_sender(&self, s: &SenderRecord) -> Result<()>;
    async fn update_sender(&self, account: AccountId, address: &str, c: SenderChange) -> Result<SenderRecord>;
    async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord>;
    async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord>;
    async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()>;
    async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>>;
    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>>;
    async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>>;
    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<()>;
    /// Runs statements in one transaction; returns the rows each changed. A uniqueness
    /// violation is `Conflict`.
    async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>>;
}

/// One SQL statement (`$n` placeholders, valid on both backends) and its parameters.
pub(crate) type Statement = (&'static str, Vec<Param>);

/// A statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Uuid(uuid::Uuid),
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

/// 32 random bytes for the server secret.
pub(crate) fn random_secret() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

//! Accounts and what belongs to them: API keys, senders, opt-outs; and the installation's
//! server-key records in `settings`.

use switchboard_domain::{AccountDestinations, AccountId, SenderId, Timestamp};
use switchboard_ledger::Credits;
use uuid::Uuid;

use crate::engine::{Tx, conflict_as};
use crate::rows::{ACCOUNT_COLUMNS, API_KEY_COLUMNS, OPT_OUT_COLUMNS, SENDER_COLUMNS};
use crate::{AccountRecord, ApiKeyRecord, OptOutRecord, PageRequest, Result, SenderChange, SenderRecord, StorageError};

/// The `settings` row where older versions kept the server secret; read once to upgrade.
const LEGACY_SECRET: &str = "key_hash_secret";
/// The `settings` row with the fingerprint of the installation's server keys.
const KEYS_FINGERPRINT: &str = "keys_fingerprint";

/// See [`crate::Store::create_account`].
pub(crate) async fn create(tx: &mut impl Tx, name: String) -> Result<AccountRecord> {
    let record = AccountRecord {
        id: AccountId::new(),
        name,
        balance: Credits::ZERO,
        rate_limit: None,
        refund_carrier_failures: false,
        destinations: AccountDestinations::default(),
        low_balance_threshold: None,
        created_at: Timestamp::now(),
    };
    tx.execute(
        "INSERT INTO accounts (id, name, sms_credits, mms_credits, created_at) VALUES ($1, $2, 0, 0, $3)",
        &[record.id.into(), (&record.name).into(), record.created_at.into()],
    )
    .await?;
    Ok(record)
}

/// See [`crate::Store::get_account`].
pub(crate) async fn get(tx: &mut impl Tx, id: AccountId) -> Result<Option<AccountRecord>> {
    tx.fetch_optional(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"), &[id.into()]).await
}

/// See [`crate::Store::list_accounts`].
pub(crate) async fn list(tx: &mut impl Tx, page: PageRequest<AccountId>) -> Result<Vec<AccountRecord>> {
    let before = page.before.map_or(Uuid::max(), |a| a.as_uuid());
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id < $1 ORDER BY id DESC LIMIT $2");
    tx.fetch_all(&sql, &[before.into(), page.limit.into()]).await
}

/// See [`crate::Store::set_rate_limit`].
pub(crate) async fn set_rate_limit(tx: &mut impl Tx, account: AccountId, limit: Option<u32>) -> Result<AccountRecord> {
    let sql = format!("UPDATE accounts SET rate_limit = $1 WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}");
    tx.fetch_optional(&sql, &[limit.map(i64::from).into(), account.into()]).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::set_refund_carrier_failures`].
pub(crate) async fn set_refund_carrier_failures(
    tx: &mut impl Tx,
    account: AccountId,
    refund: bool,
) -> Result<AccountRecord> {
    let sql = format!("UPDATE accounts SET refund_carrier_failures = $1 WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}");
    tx.fetch_optional(&sql, &[refund.into(), account.into()]).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::set_low_balance_threshold`].
pub(crate) async fn set_low_balance_threshold(
    tx: &mut impl Tx,
    account: AccountId,
    threshold: Option<i64>,
) -> Result<AccountRecord> {
    let sql = format!("UPDATE accounts SET low_balance_threshold = $1 WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}");
    tx.fetch_optional(&sql, &[threshold.into(), account.into()]).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::set_destinations`].
pub(crate) async fn set_destinations(
    tx: &mut impl Tx,
    account: AccountId,
    destinations: AccountDestinations,
) -> Result<AccountRecord> {
    let sql = format!(
        "UPDATE accounts SET allowed_regions = $1, accept_fixed_or_mobile = $2 WHERE id = $3 RETURNING {ACCOUNT_COLUMNS}"
    );
    let regions = destinations.stored_regions();
    tx.fetch_optional(&sql, &[regions.as_deref().into(), destinations.fixed_or_mobile.into(), account.into()])
        .await?
        .ok_or(StorageError::NotFound)
}

/// See [`crate::Store::create_api_key`].
pub(crate) async fn create_key(tx: &mut impl Tx, k: &ApiKeyRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO api_keys (id, account_id, name, secret_hash, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, NULL)",
        &[k.id.as_str().into(), k.account_id.into(), (&k.name).into(), (&k.secret_hash).into(), k.created_at.into()],
    )
    .await
    .map_err(conflict_as("key id"))?;
    Ok(())
}

/// See [`crate::Store::find_api_key`].
pub(crate) async fn find_key(tx: &mut impl Tx, id: &str) -> Result<Option<ApiKeyRecord>> {
    tx.fetch_optional(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"), &[id.into()]).await
}

/// See [`crate::Store::list_api_keys`].
pub(crate) async fn list_keys(tx: &mut impl Tx, account: AccountId) -> Result<Vec<ApiKeyRecord>> {
    let sql =
        format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id LIMIT 1000");
    tx.fetch_all(&sql, &[account.into()]).await
}

/// See [`crate::Store::revoke_api_key`].
pub(crate) async fn revoke_key(tx: &mut impl Tx, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord> {
    let sql = format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND account_id = $3 \
         RETURNING {API_KEY_COLUMNS}"
    );
    tx.fetch_optional(&sql, &[at.into(), id.into(), account.into()]).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::create_sender`].
pub(crate) async fn create_sender(tx: &mut impl Tx, s: &SenderRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO senders (address, account_id, active, sms, mms, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[(&s.address).into(), s.account_id.into(), s.active.into(), s.sms.into(), s.mms.into(), s.created_at.into()],
    )
    .await
    .map_err(conflict_as("sender address is assigned"))?;
    Ok(())
}

/// See [`crate::Store::update_sender`].
pub(crate) async fn update_sender(
    tx: &mut impl Tx,
    account: AccountId,
    address: &str,
    c: SenderChange,
) -> Result<SenderRecord> {
    let sql = format!(
        "UPDATE senders SET active = COALESCE($1, active), sms = COALESCE($2, sms), mms = COALESCE($3, mms) \
         WHERE address = $4 AND account_id = $5 RETURNING {SENDER_COLUMNS}"
    );
    tx.fetch_optional(&sql, &[c.active.into(), c.sms.into(), c.mms.into(), address.into(), account.into()])
        .await?
        .ok_or(StorageError::NotFound)
}

/// See [`crate::Store::list_senders`].
pub(crate) async fn list_senders(tx: &mut impl Tx, account: AccountId) -> Result<Vec<SenderRecord>> {
    let sql = format!("SELECT {SENDER_COLUMNS} FROM senders WHERE account_id = $1 ORDER BY address LIMIT 1000");
    tx.fetch_all(&sql, &[account.into()]).await
}

/// A sender by address, whoever owns it.
pub(crate) async fn sender(tx: &mut impl Tx, address: &SenderId) -> Result<Option<SenderRecord>> {
    tx.fetch_optional(&format!("SELECT {SENDER_COLUMNS} FROM senders WHERE address = $1"), &[address.into()]).await
}

/// See [`crate::Store::add_opt_out`].
pub(crate) async fn add_opt_out(
    tx: &mut impl Tx,
    account: AccountId,
    sender: &str,
    recipient: &str,
) -> Result<OptOutRecord> {
    tx.execute(
        "INSERT INTO opt_outs (sender, recipient, account_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sender, recipient) DO NOTHING",
        &[sender.into(), recipient.into(), account.into(), Timestamp::now().into()],
    )
    .await?;
    let sql = format!("SELECT {OPT_OUT_COLUMNS} FROM opt_outs WHERE sender = $1 AND recipient = $2");
    tx.fetch_optional(&sql, &[sender.into(), recipient.into()]).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::remove_opt_out`].
pub(crate) async fn remove_opt_out(tx: &mut impl Tx, account: AccountId, sender: &str, recipient: &str) -> Result<()> {
    let removed = tx
        .execute(
            "DELETE FROM opt_outs WHERE sender = $1 AND recipient = $2 AND account_id = $3",
            &[sender.into(), recipient.into(), account.into()],
        )
        .await?;
    if removed == 0 { Err(StorageError::NotFound) } else { Ok(()) }
}

/// See [`crate::Store::list_opt_outs`].
pub(crate) async fn list_opt_outs(tx: &mut impl Tx, account: AccountId, limit: u32) -> Result<Vec<OptOutRecord>> {
    let sql =
        format!("SELECT {OPT_OUT_COLUMNS} FROM opt_outs WHERE account_id = $1 ORDER BY sender, recipient LIMIT $2");
    tx.fetch_all(&sql, &[account.into(), limit.into()]).await
}

/// See [`crate::Store::legacy_server_secret`].
pub(crate) async fn legacy_server_secret(tx: &mut impl Tx) -> Result<Option<Vec<u8>>> {
    let row: Option<(Vec<u8>,)> =
        tx.fetch_optional("SELECT value FROM settings WHERE name = $1", &[LEGACY_SECRET.into()]).await?;
    Ok(row.map(|(v,)| v))
}

/// See [`crate::Store::key_fingerprints`].
pub(crate) async fn key_fingerprints(tx: &mut impl Tx) -> Result<Vec<(String, Vec<u8>)>> {
    tx.fetch_all("SELECT name, value FROM settings WHERE name LIKE 'keys_fingerprint%' ORDER BY name", &[]).await
}

/// See [`crate::Store::record_server_keys`].
pub(crate) async fn record_server_keys(
    tx: &mut impl Tx,
    fingerprints: &[(String, Vec<u8>)],
    forget_legacy: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    for (name, value) in fingerprints {
        tx.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[name.into(), value.into()],
        )
        .await?;
    }
    if let Some((_, hash)) = fingerprints.iter().find(|(n, _)| n == KEYS_FINGERPRINT)
        && forget_legacy
    {
        // The secret that older versions kept here goes only once the keys that replace it
        // are the installation's.
        tx.execute(
            "DELETE FROM settings WHERE name = $1 AND EXISTS (SELECT 1 FROM settings WHERE name = $2 AND value = $3)",
            &[LEGACY_SECRET.into(), KEYS_FINGERPRINT.into(), hash.into()],
        )
        .await?;
    }
    key_fingerprints(tx).await
}

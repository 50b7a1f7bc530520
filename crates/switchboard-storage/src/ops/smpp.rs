//! The SMPP server's storage: credentials, and the queue of `deliver_sm` (receipts and inbound
//! messages) waiting for a bind that receives.
//!
//! Rows of the queue are written by the changes that cause them, in their transaction (see
//! [`super::Effects`] for receipts and [`enqueue_inbound`] for inbound messages), so a
//! receipt is queued if and only if its status change committed.

use switchboard_domain::{AccountId, MessageId, MessageStatus, Timestamp};
use uuid::Uuid;

use crate::engine::{Param, Tx, Values, chunked, conflict_as, push_row};
use crate::rows::{SMPP_CREDENTIAL_COLUMNS, SMPP_DELIVERY_COLUMNS};
use crate::{Result, SmppCredentialRecord, SmppDeliveryKind, SmppDeliveryRecord, StorageError};

/// See [`crate::Store::create_smpp_credential`].
pub(crate) async fn create_credential(tx: &mut impl Tx, c: &SmppCredentialRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO smpp_credentials (system_id, account_id, password_hash, max_binds, bind_window, \
         max_per_second, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        &[
            c.system_id.as_str().into(),
            c.account_id.into(),
            (&c.password_hash).into(),
            c.max_binds.map(i64::from).into(),
            c.window.map(i64::from).into(),
            c.max_per_second.map(i64::from).into(),
            c.created_at.into(),
        ],
    )
    .await
    .map_err(conflict_as("system_id"))?;
    Ok(())
}

/// See [`crate::Store::find_smpp_credential`].
pub(crate) async fn find_credential(tx: &mut impl Tx, system_id: &str) -> Result<Option<SmppCredentialRecord>> {
    let sql = format!("SELECT {SMPP_CREDENTIAL_COLUMNS} FROM smpp_credentials WHERE system_id = $1");
    tx.fetch_optional(&sql, &[system_id.into()]).await
}

/// See [`crate::Store::list_smpp_credentials`].
pub(crate) async fn list_credentials(tx: &mut impl Tx, account: AccountId) -> Result<Vec<SmppCredentialRecord>> {
    let sql = format!(
        "SELECT {SMPP_CREDENTIAL_COLUMNS} FROM smpp_credentials WHERE account_id = $1 \
         ORDER BY created_at, system_id LIMIT 1000"
    );
    tx.fetch_all(&sql, &[account.into()]).await
}

/// See [`crate::Store::revoke_smpp_credential`].
pub(crate) async fn revoke_credential(
    tx: &mut impl Tx,
    account: AccountId,
    system_id: &str,
    at: Timestamp,
) -> Result<SmppCredentialRecord> {
    let sql = format!(
        "UPDATE smpp_credentials SET revoked_at = COALESCE(revoked_at, $1) WHERE system_id = $2 AND account_id = $3 \
         RETURNING {SMPP_CREDENTIAL_COLUMNS}"
    );
    tx.fetch_optional(&sql, &[at.into(), system_id.into(), account.into()]).await?.ok_or(StorageError::NotFound)
}

static INSERT_DELIVERIES: Values = Values::new(
    "INSERT INTO smpp_deliveries (id, account_id, kind, message_id, status, error_type, occurred_at, next_attempt_at) \
     VALUES ",
    8,
    "",
);

/// Queues `deliver_sm`s; each is due at once.
pub(crate) async fn insert_deliveries(tx: &mut impl Tx, rows: &[SmppDeliveryRecord]) -> Result<()> {
    for chunk in chunked(rows) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 8);
        for d in chunk {
            push_row(
                &mut params,
                [
                    d.id.into(),
                    d.account_id.into(),
                    d.kind.as_str().into(),
                    d.message_id.into(),
                    d.status.as_str().into(),
                    d.error_type.map(|t| t.as_str()).into(),
                    d.occurred_at.into(),
                    d.next_attempt_at.into(),
                ],
            );
        }
        tx.execute(INSERT_DELIVERIES.sql(chunk.len()), &params).await?;
    }
    Ok(())
}

/// Queues an inbound message for the account's SMPP binds when the account has an SMPP
/// credential that is not revoked (an account that never binds over SMPP queues nothing).
pub(crate) async fn enqueue_inbound(
    tx: &mut impl Tx,
    account: AccountId,
    message: MessageId,
    at: Timestamp,
) -> Result<()> {
    let has: Option<(String,)> = tx
        .fetch_optional(
            "SELECT system_id FROM smpp_credentials WHERE account_id = $1 AND revoked_at IS NULL LIMIT 1",
            &[account.into()],
        )
        .await?;
    if has.is_none() {
        return Ok(());
    }
    let row = SmppDeliveryRecord {
        id: Uuid::now_v7(),
        account_id: account,
        kind: SmppDeliveryKind::Inbound,
        message_id: message,
        status: MessageStatus::Received,
        error_type: None,
        occurred_at: at,
        attempts: 0,
        next_attempt_at: at,
    };
    insert_deliveries(tx, &[row]).await
}

/// See [`crate::Store::claim_smpp_deliveries`].
pub(crate) async fn claim(
    tx: &mut impl Tx,
    account: AccountId,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> Result<Vec<SmppDeliveryRecord>> {
    let sql = format!(
        "SELECT {SMPP_DELIVERY_COLUMNS} FROM smpp_deliveries WHERE account_id = $1 AND next_attempt_at <= $2 \
         ORDER BY next_attempt_at, id LIMIT $3{}",
        tx.backend().skip_locked()
    );
    let mut rows: Vec<SmppDeliveryRecord> =
        tx.fetch_all(&sql, &[account.into(), now.into(), i64::from(limit.clamp(1, 1000)).into()]).await?;
    for row in &mut rows {
        tx.execute(
            "UPDATE smpp_deliveries SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = $2",
            &[lease_until.into(), row.id.into()],
        )
        .await?;
        row.attempts += 1;
        row.next_attempt_at = lease_until;
    }
    Ok(rows)
}

/// See [`crate::Store::due_smpp_deliveries`].
pub(crate) async fn due(tx: &mut impl Tx, account: AccountId, now: Timestamp) -> Result<bool> {
    let row: Option<(Uuid,)> = tx
        .fetch_optional(
            "SELECT id FROM smpp_deliveries WHERE account_id = $1 AND next_attempt_at <= $2 LIMIT 1",
            &[account.into(), now.into()],
        )
        .await?;
    Ok(row.is_some())
}

/// See [`crate::Store::retry_smpp_delivery`].
pub(crate) async fn retry(tx: &mut impl Tx, id: Uuid, at: Timestamp) -> Result<()> {
    tx.execute("UPDATE smpp_deliveries SET next_attempt_at = $1 WHERE id = $2", &[at.into(), id.into()]).await?;
    Ok(())
}

/// See [`crate::Store::remove_smpp_deliveries`].
pub(crate) async fn remove(tx: &mut impl Tx, ids: &[Uuid]) -> Result<u64> {
    let mut removed = 0;
    for id in ids {
        removed += tx.execute("DELETE FROM smpp_deliveries WHERE id = $1", &[(*id).into()]).await?;
    }
    Ok(removed)
}

/// See [`crate::Store::expire_smpp_deliveries`].
pub(crate) async fn expire(tx: &mut impl Tx, occurred_before: Timestamp, limit: u32) -> Result<u64> {
    let ids: Vec<(Uuid,)> = tx
        .fetch_all(
            &format!(
                "SELECT id FROM smpp_deliveries WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2{}",
                tx.backend().skip_locked()
            ),
            &[occurred_before.into(), i64::from(limit.clamp(1, 10_000)).into()],
        )
        .await?;
    let ids: Vec<Uuid> = ids.into_iter().map(|(id,)| id).collect();
    remove(tx, &ids).await
}

/// See [`crate::Store::count_smpp_deliveries`].
pub(crate) async fn count(tx: &mut impl Tx) -> Result<i64> {
    let (n,): (i64,) = tx
        .fetch_optional("SELECT COUNT(*) FROM smpp_deliveries", &[])
        .await?
        .ok_or_else(|| StorageError::Corrupt("no count".into()))?;
    Ok(n)
}

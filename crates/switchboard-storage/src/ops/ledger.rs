//! Balances and the ledger: every change of credits goes through [`apply_delta`], which never
//! lets a balance go below zero, and is written down by [`insert_entries`].

use switchboard_domain::{AccountId, Timestamp};
use switchboard_ledger::{Balance, Credits, EntryKind, LedgerError};
use uuid::Uuid;

use crate::engine::{Param, Tx, Values, chunked, push_row};
use crate::rows::LEDGER_COLUMNS;
use crate::{LedgerFilter, LedgerRecord, PageRequest, Result, Scanned, StorageError};

/// An account's balance, locked until the transaction ends (see [`crate::Backend::for_update`]).
pub(crate) async fn lock_balance(tx: &mut impl Tx, account: AccountId) -> Result<Option<Balance>> {
    let sql = format!("SELECT sms_credits, mms_credits FROM accounts WHERE id = $1{}", tx.backend().for_update());
    let row: Option<(i64, i64)> = tx.fetch_optional(&sql, &[account.into()]).await?;
    row.map(|(sms, mms)| Balance::new(Credits::new(sms, mms))).transpose().map_err(Into::into)
}

/// Moves an account's balance by `delta` (negative for a charge), refusing to go below zero;
/// returns the balance after.
pub(crate) async fn apply_delta(tx: &mut impl Tx, account: AccountId, delta: Credits) -> Result<Credits> {
    let row: Option<(i64, i64)> = tx
        .fetch_optional(
            "UPDATE accounts SET sms_credits = sms_credits + $1, mms_credits = mms_credits + $2 \
             WHERE id = $3 AND sms_credits + $1 >= 0 AND mms_credits + $2 >= 0 RETURNING sms_credits, mms_credits",
            &[delta.sms.into(), delta.mms.into(), account.into()],
        )
        .await?;
    row.map(|(sms, mms)| Credits::new(sms, mms)).ok_or(StorageError::Ledger(LedgerError::InvalidAmount(delta)))
}

static INSERT_ENTRIES: Values = Values::new(
    "INSERT INTO ledger_entries (id, account_id, kind, sms_delta, mms_delta, sms_balance, mms_balance, \
     message_id, reference, created_at) VALUES ",
    10,
    "",
);

/// Writes ledger entries, in chunks of several rows.
pub(crate) async fn insert_entries(tx: &mut impl Tx, entries: &[LedgerRecord]) -> Result<()> {
    for chunk in chunked(entries) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 10);
        for e in chunk {
            push_row(
                &mut params,
                [
                    e.id.into(),
                    e.account_id.into(),
                    e.kind.as_str().into(),
                    e.delta.sms.into(),
                    e.delta.mms.into(),
                    e.balance_after.sms.into(),
                    e.balance_after.mms.into(),
                    e.message_id.into(),
                    (&e.reference).into(),
                    e.created_at.into(),
                ],
            );
        }
        tx.execute(INSERT_ENTRIES.sql(chunk.len()), &params).await?;
    }
    Ok(())
}

/// See [`crate::Store::top_up`].
pub(crate) async fn top_up(
    tx: &mut impl Tx,
    account: AccountId,
    amount: Credits,
    reference: Option<String>,
) -> Result<LedgerRecord> {
    let mut balance = lock_balance(tx, account).await?.ok_or(StorageError::NotFound)?;
    let delta = balance.top_up(amount)?;
    let after = apply_delta(tx, account, delta).await?;
    let entry = LedgerRecord {
        id: Uuid::now_v7(),
        account_id: account,
        kind: EntryKind::Topup,
        delta,
        balance_after: after,
        message_id: None,
        reference,
        created_at: Timestamp::now(),
    };
    insert_entries(tx, std::slice::from_ref(&entry)).await?;
    Ok(entry)
}

/// See [`crate::Store::ledger`].
pub(crate) async fn list(tx: &mut impl Tx, account: AccountId, page: PageRequest<Uuid>) -> Result<Vec<LedgerRecord>> {
    let sql = format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    );
    tx.fetch_all(&sql, &[account.into(), page.before.unwrap_or(Uuid::max()).into(), page.limit.into()]).await
}

/// See [`crate::Store::ledger_entries`].
pub(crate) async fn entries(
    tx: &mut impl Tx,
    account: AccountId,
    filter: &LedgerFilter,
    page: PageRequest<Uuid>,
) -> Result<Scanned<LedgerRecord>> {
    let (lo, hi) = super::scan::id_bounds(page.before, filter.from, filter.to);
    let kind = filter.kind.map(|k| k.as_str());
    if let Some(message) = filter.message {
        // A message has at most a charge and a refund: read them by its index alone (a
        // planner offered the account's range too may walk the account's whole ledger), and
        // hold them to the rest of the filter here.
        let items = of_message(tx, message)
            .await?
            .into_iter()
            .rev()
            .filter(|e| e.account_id == account && e.id < hi && e.id >= lo && filter.kind.is_none_or(|k| k == e.kind))
            .take(page.limit as usize)
            .collect();
        return Ok(Scanned { items, next: None, capped: false });
    }
    let range = "FROM ledger_entries WHERE account_id = $1 AND id < $2 AND id >= $3 ORDER BY id DESC";
    let sql = format!(
        "SELECT {LEDGER_COLUMNS} FROM (SELECT {LEDGER_COLUMNS} {range} LIMIT $4) s \
         WHERE ($5 IS NULL OR kind = $5) ORDER BY id DESC LIMIT $6"
    );
    let limit = page.limit.clamp(1, 1000);
    let rows: Vec<LedgerRecord> = tx
        .fetch_all(
            &sql,
            &[account.into(), hi.into(), lo.into(), crate::SCAN_CAP.into(), kind.into(), (limit + 1).into()],
        )
        .await?;
    let nth = format!("SELECT id {range} LIMIT 1 OFFSET $4");
    super::scan::page(tx, rows, limit, |e| e.id, &nth, &[account.into(), hi.into(), lo.into()]).await
}

/// See [`crate::Store::message_ledger`].
pub(crate) async fn of_message(tx: &mut impl Tx, message: switchboard_domain::MessageId) -> Result<Vec<LedgerRecord>> {
    let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE message_id = $1 ORDER BY id");
    tx.fetch_all(&sql, &[message.into()]).await
}

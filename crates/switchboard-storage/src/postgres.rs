//! The PostgreSQL store, for several Switchboard nodes on one database. Balances are locked
//! with `SELECT … FOR UPDATE` inside the admitting transaction, and dispatchers claim work with
//! `FOR UPDATE SKIP LOCKED`, so nodes never charge twice or dispatch one message twice at once.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::QueryBuilder;
use switchboard_domain::{AccountId, ErrorType, MessageId, MessageStatus, Msisdn, Timestamp};
use switchboard_ledger::{Balance, Credits, EntryKind};
use uuid::Uuid;

use crate::admission::{self, Facts, Step};
use crate::common::{
    ACCOUNT_COLUMNS, AccountRow, ApiKeyRow, DeliveryRow, MessageRow, OptOutRow, PROMOTE_BATCH, SenderRow,
    WEBHOOK_COLUMNS, WebhookRow, chunked, delivery_columns, is_unique_violation, media_columns, message_columns,
    store_impl,
};
use crate::receipts::{self, NewParts, PartState};
use crate::tally::{self, Tally};
use crate::writes::{self, Changed, Effects, Param, Statement, Writes, changed_columns, opted_out};
use crate::{
    AcceptOutcome, AccountRecord, ApiKeyRecord, Backend, ConnectOptions, DeliveryRecord, DeliveryResult,
    DispatchOutcome, DispatchResult, EventRecord, LedgerRecord, MessageRecord, NewBatch, NewInbound, NewMessage,
    NewReply, OptOutChange, OptOutRecord, ReceiptOutcome, ReceiptUpdate, Result, SealedSecret, SenderChange,
    SenderRecord, StorageError, WebhookRecord,
};

type Tx = sqlx::Transaction<'static, Postgres>;

/// The migrations of the PostgreSQL schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

const BACKEND: Backend = Backend::Postgres;

const LOCK_ACCOUNT: &str = "SELECT sms_credits, mms_credits FROM accounts WHERE id = $1 FOR UPDATE";

const CLAIM_DUE: &str = concat!(
    "UPDATE messages SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2 \
     WHERE status = 'queued' AND id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= $2 \
     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING ",
    message_columns!()
);

/// Queues the scheduled messages that have come due, or fails those whose recipient has opted
/// out: `$1` now, `$2` how many at most, `$3` the opted-out error message.
const PROMOTE_DUE: &str = concat!(
    "UPDATE messages SET status = CASE WHEN ",
    opted_out!(),
    " THEN 'failed' ELSE 'queued' END, error_type = CASE WHEN ",
    opted_out!(),
    " THEN 'opted_out' ELSE error_type END, error_message = CASE WHEN ",
    opted_out!(),
    " THEN $3 ELSE error_message END, updated_at = $1 WHERE status = 'scheduled' AND id IN \
     (SELECT id FROM messages WHERE status = 'scheduled' AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING status, sms_charged, mms_charged, ",
    changed_columns!()
);

/// Claims due deliveries: `$1` lease end, `$2` now, `$3` how many at most, `$4` busy targets.
const CLAIM_DELIVERIES: &str = concat!(
    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2 \
     WHERE state = 'pending' AND (event_id, target) IN (SELECT event_id, target FROM webhook_deliveries \
     WHERE state = 'pending' AND next_attempt_at <= $2 AND target <> ALL($4) \
     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING ",
    delivery_columns!()
);

/// Which of `recipients` have opted out of `sender`, as the stored text of their numbers.
async fn opted_out_among(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    sender: &Msisdn,
    recipients: &[&Msisdn],
) -> crate::Result<HashSet<String>> {
    let recipients: Vec<&str> = recipients.iter().map(|r| r.as_str()).collect();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT recipient FROM opt_outs WHERE sender = $1 AND recipient = ANY($2)")
            .bind(sender.as_str())
            .bind(recipients)
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().map(|(r,)| r).collect())
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
}

impl PostgresStore {
    /// Connects to and migrates the database a `postgres:` URL names.
    pub async fn open(url: &str, options: &ConnectOptions) -> crate::Result<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { write: pool.clone(), read: pool })
    }
}

store_impl!(PostgresStore);

impl PostgresStore {
    async fn lock_balance(tx: &mut Tx, account: AccountId) -> Result<Option<Balance>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as(LOCK_ACCOUNT).bind(account.as_uuid()).fetch_optional(&mut **tx).await?;
        row.map(|(sms, mms)| Balance::new(Credits::new(sms, mms))).transpose().map_err(Into::into)
    }

    async fn insert_ledger(tx: &mut Tx, entries: &[LedgerRecord]) -> Result<()> {
        for chunk in chunked(entries) {
            let mut qb = QueryBuilder::<Postgres>::new(
                "INSERT INTO ledger_entries (id, account_id, kind, sms_delta, mms_delta, sms_balance, \
                         mms_balance, message_id, reference, created_at) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.id)
                    .push_bind(e.account_id.as_uuid())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.delta.sms)
                    .push_bind(e.delta.mms)
                    .push_bind(e.balance_after.sms)
                    .push_bind(e.balance_after.mms)
                    .push_bind(e.message_id.map(|m| m.as_uuid()))
                    .push_bind(e.reference.clone())
                    .push_bind(e.created_at.millis());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_events(tx: &mut Tx, events: &[EventRecord]) -> Result<()> {
        for chunk in chunked(events) {
            let mut qb =
                QueryBuilder::<Postgres>::new("INSERT INTO message_events (message_id, status, error_type, at) ");
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.message_id.as_uuid())
                    .push_bind(e.status.as_str())
                    .push_bind(e.error_type.map(|t| t.as_str()))
                    .push_bind(e.at.millis());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_messages(tx: &mut Tx, records: &[&MessageRecord]) -> Result<()> {
        for chunk in chunked(records) {
            let mut qb = QueryBuilder::<Postgres>::new(concat!("INSERT INTO messages (", message_columns!(), ") "));
            qb.push_values(chunk, |mut b, m| {
                let (media_url, media) = media_columns(&m.media);
                b.push_bind(m.id.as_uuid())
                    .push_bind(m.account_id.as_uuid())
                    .push_bind(m.direction.as_str())
                    .push_bind(m.kind.as_str())
                    .push_bind(m.to.as_str())
                    .push_bind(m.from.as_str())
                    .push_bind(m.body.clone())
                    .push_bind(media_url)
                    .push_bind(m.encoding.as_str())
                    .push_bind(i64::from(m.segments))
                    .push_bind(m.status.as_str())
                    .push_bind(m.error_type.map(|t| t.as_str()))
                    .push_bind(m.error_message.clone())
                    .push_bind(m.charged.sms)
                    .push_bind(m.charged.mms)
                    .push_bind(m.idempotency_key.clone())
                    .push_bind(m.request_hash.clone())
                    .push_bind(i64::from(m.attempts))
                    .push_bind(m.next_attempt_at.millis())
                    .push_bind(m.provider_message_id.clone())
                    .push_bind(m.created_at.millis())
                    .push_bind(m.updated_at.millis())
                    .push_bind(m.sent_at.map(Timestamp::millis))
                    .push_bind(m.batch_id.map(|b| b.as_uuid()))
                    .push_bind(m.channel_id)
                    .push_bind(media)
                    .push_bind(m.expires_at.map(Timestamp::millis))
                    .push_bind(m.details.clone())
                    .push_bind(m.notify_url.clone());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_batch(tx: &mut Tx, b: &NewBatch) -> Result<()> {
        sqlx::query(
            "INSERT INTO batches (id, account_id, kind, sender, body, recipients, first_message_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(b.id.as_uuid())
        .bind(b.account_id.as_uuid())
        .bind(b.kind.as_str())
        .bind(b.from.as_str())
        .bind(b.body.as_deref())
        .bind(i64::from(b.recipients))
        .bind(b.first_message_id.as_uuid())
        .bind(b.created_at.millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Applies the running counts, row by row in key order; the last writes of a transaction
    /// (see `tally` on why this cannot deadlock).
    async fn apply_tally(tx: &mut Tx, tally: &Tally) -> Result<()> {
        for (account, hour, status, n) in tally.count_changes() {
            sqlx::query(tally::UPSERT_COUNT).bind(account).bind(hour).bind(status).bind(n).execute(&mut **tx).await?;
        }
        for (batch, sent, failed, sent_at) in tally.batch_changes() {
            sqlx::query(tally::UPDATE_BATCH)
                .bind(sent)
                .bind(failed)
                .bind(sent_at)
                .bind(batch)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Takes `delta` (negative for a charge) into the account's balance, refusing to
    /// go below zero; returns the balance after.
    async fn apply_delta(tx: &mut Tx, account: AccountId, delta: Credits) -> Result<Credits> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE accounts SET sms_credits = sms_credits + $1, mms_credits = mms_credits + $2 \
                     WHERE id = $3 AND sms_credits + $1 >= 0 AND mms_credits + $2 >= 0 \
                     RETURNING sms_credits, mms_credits",
        )
        .bind(delta.sms)
        .bind(delta.mms)
        .bind(account.as_uuid())
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            Some((sms, mms)) => Ok(Credits::new(sms, mms)),
            None => Err(StorageError::Ledger(switchboard_ledger::LedgerError::InvalidAmount(delta))),
        }
    }

    async fn insert_deliveries(tx: &mut Tx, deliveries: &[DeliveryRecord]) -> Result<()> {
        for chunk in chunked(deliveries) {
            let mut qb =
                QueryBuilder::<Postgres>::new(concat!("INSERT INTO webhook_deliveries (", delivery_columns!(), ") "));
            qb.push_values(chunk, |mut b, d| {
                b.push_bind(d.event_id.as_uuid())
                    .push_bind(d.target.clone())
                    .push_bind(d.account_id.as_uuid())
                    .push_bind(d.endpoint_id)
                    .push_bind(d.url.clone())
                    .push_bind(d.event_type.as_str())
                    .push_bind(d.message_id.as_uuid())
                    .push_bind(d.status.as_str())
                    .push_bind(d.error_type.map(|t| t.as_str()))
                    .push_bind(d.occurred_at.millis())
                    .push_bind(d.state.as_str())
                    .push_bind(i64::from(d.attempts))
                    .push_bind(d.next_attempt_at.millis())
                    .push_bind(d.last_status.map(i64::from))
                    .push_bind(d.last_error.clone())
                    .push_bind(d.updated_at.millis());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Applies what a write noted beside its rows, as its last steps before committing: events,
    /// webhook deliveries (one endpoint lookup for all the accounts involved), refunds in
    /// (account, message) order, and the running counts last.
    async fn finish(tx: &mut Tx, mut fx: Effects) -> Result<()> {
        Self::insert_events(tx, &fx.events).await?;
        if !fx.outbox.is_empty() {
            let accounts: Vec<Uuid> = fx.outbox.accounts().iter().map(AccountId::as_uuid).collect();
            let rows: Vec<WebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE account_id = ANY($1) AND active"
            )))
            .bind(accounts)
            .fetch_all(&mut **tx)
            .await?;
            let endpoints = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<WebhookRecord>>>()?;
            Self::insert_deliveries(tx, &fx.outbox.plan(&endpoints, Timestamp::now())).await?;
        }
        let refunds = fx.sorted_refunds();
        let mut entries = Vec::with_capacity(refunds.len());
        for (account, message, amount, at) in refunds {
            let after = Self::apply_delta(tx, account, amount).await?;
            sqlx::query(writes::ZERO_CHARGE).bind(message.as_uuid()).execute(&mut **tx).await?;
            entries.push(LedgerRecord::for_message(EntryKind::Refund, account, message, amount, after, at));
        }
        Self::insert_ledger(tx, &entries).await?;
        Self::apply_tally(tx, &fx.tally).await
    }

    /// Settles message `id` from its parts if it is still `sent` and they settle it (see
    /// [`receipts::settle`]), locking it first; returns the status it entered.
    async fn settle_message(
        tx: &mut Tx,
        id: MessageId,
        trigger: Timestamp,
        fx: &mut Effects,
    ) -> Result<Option<MessageStatus>> {
        type Row = (Uuid, Uuid, Option<Uuid>, i64, Option<String>, String, Option<i64>, i64, i64, bool);
        let row: Option<Row> = sqlx::query_as(
            "SELECT m.id, m.account_id, m.batch_id, m.created_at, m.notify_url, m.status, m.sent_at, \
             m.sms_charged, m.mms_charged, a.refund_carrier_failures \
             FROM messages m JOIN accounts a ON a.id = m.account_id WHERE m.id = $1 FOR UPDATE OF m",
        )
        .bind(id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?;
        let Some((id, account, batch, created_at, notify_url, status, sent_at, sms, mms, refund_failures)) = row else {
            return Ok(None);
        };
        if status != MessageStatus::Sent.as_str() {
            return Ok(None);
        }
        let m = Changed::from_row(id, account, batch, created_at, notify_url);
        type PartRow = (Option<i64>, String, Option<String>, Option<String>);
        let parts: Vec<PartRow> = sqlx::query_as(
            "SELECT part, status, error_type, description FROM message_parts WHERE message_id = $1 ORDER BY part",
        )
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        let parts = parts
            .into_iter()
            .map(|(part, status, error_type, description)| PartState::from_row(part, &status, error_type, description))
            .collect::<Result<Vec<_>>>()?;
        let Some(s) = receipts::settle(&parts, Credits::new(sms, mms), refund_failures) else { return Ok(None) };
        let at = receipts::settled_at(trigger, sent_at.map(Timestamp::from_millis));
        let done = sqlx::query(
            "UPDATE messages SET status = $1, error_type = $2, error_message = $3, updated_at = $4 \
             WHERE id = $5 AND status = 'sent'",
        )
        .bind(s.status.as_str())
        .bind(s.error_type.map(|t| t.as_str()))
        .bind(s.error_message.as_deref())
        .bind(at.millis())
        .bind(id)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        fx.moved(&m, MessageStatus::Sent, s.status, s.error_type, at);
        if let Some(amount) = s.refund {
            fx.refund(&m, amount, at);
        }
        Ok(Some(s.status))
    }

    async fn load_facts(tx: &mut Tx, batch: &[NewMessage]) -> Result<Facts> {
        let mut facts = Facts::default();
        // Lock balances in a fixed order so that concurrent groups cannot deadlock.
        let mut accounts: Vec<AccountId> = batch.iter().map(|m| m.account_id).collect();
        accounts.sort();
        accounts.dedup();
        for account in accounts {
            if let Some(balance) = Self::lock_balance(tx, account).await? {
                facts.balances.insert(account, balance);
            }
        }
        // Keys are read after the locks: a racing group for the same account has
        // committed by now, so its messages are seen.
        for m in batch {
            let Some(key) = &m.idempotency_key else { continue };
            if facts.by_key.contains_key(&(m.account_id, key.clone())) {
                continue;
            }
            let row: Option<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE account_id = $1 AND idempotency_key = $2"
            ))
            .bind(m.account_id.as_uuid())
            .bind(key.as_str())
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(row) = row {
                facts.by_key.insert((m.account_id, key.clone()), row.try_into()?);
            }
        }
        let mut by_sender: HashMap<&Msisdn, Vec<&Msisdn>> = HashMap::new();
        for m in batch {
            by_sender.entry(&m.from).or_default().push(&m.to);
        }
        for (sender, mut recipients) in by_sender {
            let row: Option<SenderRow> = sqlx::query_as(
                "SELECT address, account_id, active, sms, mms, created_at FROM senders WHERE address = $1",
            )
            .bind(sender.as_str())
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { continue };
            facts.senders.insert(sender.clone(), row.try_into()?);
            recipients.sort();
            recipients.dedup();
            let opted = opted_out_among(tx, sender, &recipients).await?;
            for r in recipients.into_iter().filter(|r| opted.contains(r.as_str())) {
                facts.opted_out.insert((sender.clone(), r.clone()));
            }
        }
        Ok(facts)
    }
}

#[async_trait::async_trait]
impl Writes for PostgresStore {
    async fn create_account(&self, name: &str) -> Result<AccountRecord> {
        let record = AccountRecord {
            id: AccountId::new(),
            name: name.to_owned(),
            balance: Credits::ZERO,
            rate_limit: None,
            refund_carrier_failures: false,
            created_at: Timestamp::now(),
        };
        sqlx::query("INSERT INTO accounts (id, name, sms_credits, mms_credits, created_at) VALUES ($1, $2, 0, 0, $3)")
            .bind(record.id.as_uuid())
            .bind(name)
            .bind(record.created_at.millis())
            .execute(&self.write)
            .await?;
        Ok(record)
    }

    async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord> {
        let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE accounts SET rate_limit = $1 WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}"
        )))
        .bind(limit.map(i64::from))
        .bind(account.as_uuid())
        .fetch_optional(&self.write)
        .await?;
        row.map(AccountRecord::from).ok_or(StorageError::NotFound)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, secret_hash, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(key.id.as_str())
        .bind(key.account_id.as_uuid())
        .bind(key.name.as_deref())
        .bind(key.secret_hash.clone())
        .bind(key.created_at.millis())
        .execute(&self.write)
        .await
        .map_err(|e| if is_unique_violation(&e) { StorageError::Conflict("key id".into()) } else { e.into() })?;
        Ok(())
    }

    async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord> {
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND account_id = $3 \
                     RETURNING id, account_id, name, secret_hash, created_at, revoked_at",
        )
        .bind(at.millis())
        .bind(id)
        .bind(account.as_uuid())
        .fetch_optional(&self.write)
        .await?;
        row.map(Into::into).ok_or(StorageError::NotFound)
    }

    async fn create_sender(&self, s: &SenderRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO senders (address, account_id, active, sms, mms, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.address.as_str())
        .bind(s.account_id.as_uuid())
        .bind(s.active)
        .bind(s.sms)
        .bind(s.mms)
        .bind(s.created_at.millis())
        .execute(&self.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { StorageError::Conflict("sender address is assigned".into()) } else { e.into() }
        })?;
        Ok(())
    }

    async fn update_sender(&self, account: AccountId, address: &str, c: SenderChange) -> Result<SenderRecord> {
        let row: Option<SenderRow> = sqlx::query_as(
                    "UPDATE senders SET active = COALESCE($1, active), sms = COALESCE($2, sms), mms = COALESCE($3, mms) \
                     WHERE address = $4 AND account_id = $5 RETURNING address, account_id, active, sms, mms, created_at",
                )
                .bind(c.active)
                .bind(c.sms)
                .bind(c.mms)
                .bind(address)
                .bind(account.as_uuid())
                .fetch_optional(&self.write)
                .await?;
        row.ok_or(StorageError::NotFound)?.try_into()
    }

    async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord> {
        let mut tx = self.write.begin().await?;
        let mut balance = Self::lock_balance(&mut tx, account).await?.ok_or(StorageError::NotFound)?;
        let delta = balance.top_up(amount)?;
        let after = Self::apply_delta(&mut tx, account, delta).await?;
        let entry = LedgerRecord {
            id: Uuid::now_v7(),
            account_id: account,
            kind: EntryKind::Topup,
            delta,
            balance_after: after,
            message_id: None,
            reference: reference.map(str::to_owned),
            created_at: Timestamp::now(),
        };
        Self::insert_ledger(&mut tx, std::slice::from_ref(&entry)).await?;
        tx.commit().await?;
        Ok(entry)
    }

    async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord> {
        sqlx::query(
            "INSERT INTO opt_outs (sender, recipient, account_id, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (sender, recipient) DO NOTHING",
        )
        .bind(sender)
        .bind(recipient)
        .bind(account.as_uuid())
        .bind(Timestamp::now().millis())
        .execute(&self.write)
        .await?;
        let row: OptOutRow = sqlx::query_as(
            "SELECT sender, recipient, account_id, created_at FROM opt_outs WHERE sender = $1 AND recipient = $2",
        )
        .bind(sender)
        .bind(recipient)
        .fetch_one(&self.write)
        .await?;
        row.try_into()
    }

    async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM opt_outs WHERE sender = $1 AND recipient = $2 AND account_id = $3")
            .bind(sender)
            .bind(recipient)
            .bind(account.as_uuid())
            .execute(&self.write)
            .await?;
        if done.rows_affected() == 0 { Err(StorageError::NotFound) } else { Ok(()) }
    }

    async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write.begin().await?;
        let mut facts = Self::load_facts(&mut tx, batch).await?;
        let steps = admission::plan(batch, &mut facts);

        let mut records: Vec<&MessageRecord> = Vec::new();
        let mut entries: Vec<LedgerRecord> = Vec::new();
        let mut deltas: HashMap<AccountId, Credits> = HashMap::new();
        let mut fx = Effects::default();
        for step in &steps {
            let Step::Insert { record, charge, new_batch } = step else { continue };
            if let Some(b) = new_batch {
                Self::insert_batch(&mut tx, b).await?;
            }
            fx.tally.insert(record.account_id, record.batch_id, record.created_at, record.status);
            records.push(record);
            let changed = Changed::of(record);
            for (status, error_type) in admission::initial_events(record) {
                fx.event(&changed, status, error_type, record.created_at);
            }
            if let Some((delta, after)) = charge {
                let sum = deltas.entry(record.account_id).or_insert(Credits::ZERO);
                *sum = sum.checked_add(*delta).ok_or(StorageError::Corrupt("credit overflow".into()))?;
                entries.push(LedgerRecord::for_message(
                    EntryKind::Charge,
                    record.account_id,
                    record.id,
                    *delta,
                    *after,
                    record.created_at,
                ));
            }
        }
        Self::insert_messages(&mut tx, &records).await?;
        Self::insert_ledger(&mut tx, &entries).await?;
        let mut deltas: Vec<(AccountId, Credits)> = deltas.into_iter().collect();
        deltas.sort_by_key(|(a, _)| *a);
        for (account, delta) in deltas {
            let after = Self::apply_delta(&mut tx, account, delta).await?;
            // The plan and the database must agree on the balance; if they ever do
            // not, nothing of the group is written.
            if Some(after) != facts.balances.get(&account).map(|b| b.credits()) {
                return Err(StorageError::Corrupt(format!("balance of {account} moved during admission")));
            }
        }
        Self::finish(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(steps.iter().map(Step::outcome).collect())
    }

    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let canceled: Option<(i64, i64, Uuid, Uuid, Option<Uuid>, i64, Option<String>)> = sqlx::query_as(concat!(
            "UPDATE messages SET status = 'canceled', updated_at = $1 \
             WHERE id = $2 AND account_id = $3 AND status = 'scheduled' RETURNING sms_charged, mms_charged, ",
            changed_columns!()
        ))
        .bind(at.millis())
        .bind(id.as_uuid())
        .bind(account.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((sms, mms, id, account, batch, created_at, notify_url)) = canceled else {
            let status: Option<(String,)> =
                sqlx::query_as("SELECT status FROM messages WHERE id = $1 AND account_id = $2")
                    .bind(id.as_uuid())
                    .bind(account.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match status {
                None => StorageError::NotFound,
                Some((status,)) => StorageError::Conflict(format!("the message is {status}, not scheduled")),
            });
        };
        let m = Changed::from_row(id, account, batch, created_at, notify_url);
        let mut fx = Effects::default();
        fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Canceled, None, at);
        fx.refund(&m, Credits::new(sms, mms), at);
        Self::finish(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn scrub(&self) -> Result<()> {
        Ok(())
    }

    async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>> {
        let mut tx = self.write.begin().await?;
        let mut counts = Vec::with_capacity(statements.len());
        for (sql, params) in statements {
            let mut q = sqlx::query(sql);
            for p in params {
                q = match p {
                    Param::Uuid(u) => q.bind(u),
                    Param::Text(t) => q.bind(t),
                    Param::Int(n) => q.bind(n),
                    Param::Bool(b) => q.bind(b),
                    Param::Bytes(b) => q.bind(b),
                };
            }
            let done = q.execute(&mut *tx).await.map_err(|e| {
                if is_unique_violation(&e) { StorageError::Conflict("already exists".into()) } else { e.into() }
            })?;
            counts.push(done.rows_affected());
        }
        tx.commit().await?;
        Ok(counts)
    }

    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>> {
        let mut tx = self.write.begin().await?;
        // Scheduled messages whose time has come join the queue first, unless their recipient
        // opted out since they were accepted.
        let promoted: Vec<(String, i64, i64, Uuid, Uuid, Option<Uuid>, i64, Option<String>)> =
            sqlx::query_as(PROMOTE_DUE)
                .bind(now.millis())
                .bind(i64::from(PROMOTE_BATCH))
                .bind(ErrorType::OptedOut.description())
                .fetch_all(&mut *tx)
                .await?;
        if !promoted.is_empty() {
            let mut fx = Effects::default();
            for (status, sms, mms, id, account, batch, created_at, notify_url) in promoted {
                let m = Changed::from_row(id, account, batch, created_at, notify_url);
                if status == MessageStatus::Failed.as_str() {
                    fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Failed, Some(ErrorType::OptedOut), now);
                    fx.refund(&m, Credits::new(sms, mms), now);
                } else {
                    fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Queued, None, now);
                }
            }
            Self::finish(&mut tx, fx).await?;
        }
        // The running counts are locked above, and the claim comes after them: it cannot wait
        // on another writer (`SKIP LOCKED`), so this order cannot deadlock.
        let rows: Vec<MessageRow> = sqlx::query_as(CLAIM_DUE)
            .bind(lease_until.millis())
            .bind(now.millis())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write.begin().await?;
        let mut changed = Vec::with_capacity(results.len());
        let mut fx = Effects::default();
        let sent: Vec<(&DispatchResult, &str, &[String])> = results
            .iter()
            .filter_map(|r| match &r.outcome {
                DispatchOutcome::Sent { provider_message_id, parts } => {
                    Some((r, provider_message_id.as_str(), parts.as_slice()))
                }
                _ => None,
            })
            .collect();
        // The parts of the messages sent, as arrays for one statement.
        let mut new_parts = NewParts::default();
        let (mut refs, mut part_messages, mut numbers, mut times) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sent_at: HashMap<Uuid, Timestamp> = HashMap::new();
        for chunk in chunked(&sent) {
            // One statement per chunk: at full load most results are sends.
            let mut qb = QueryBuilder::<Postgres>::new(
                "UPDATE messages SET status = 'sent', sent_at = v.at, updated_at = v.at, \
                         provider_message_id = v.pid, error_message = NULL \
                         FROM (SELECT column1 AS id, column2 AS attempt, column3 AS pid, column4 AS at FROM (",
            );
            qb.push_values(chunk, |mut b, (r, pid, _)| {
                b.push_bind(r.id.as_uuid())
                    .push_bind(i64::from(r.attempt))
                    .push_bind(pid.to_string())
                    .push_bind(r.at.millis());
            });
            qb.push(
                ") AS t) AS v WHERE messages.id = v.id AND messages.attempts = v.attempt \
                         AND messages.status = 'queued' \
                         RETURNING messages.id, messages.account_id, messages.batch_id, messages.created_at, \
                         messages.notify_url",
            );
            let updated: Vec<(Uuid, Uuid, Option<Uuid>, i64, Option<String>)> =
                qb.build_query_as().fetch_all(&mut *tx).await?;
            let mut updated: HashMap<Uuid, Changed> =
                updated.into_iter().map(|(id, a, b, c, n)| (id, Changed::from_row(id, a, b, c, n))).collect();
            for (r, pid, parts) in chunk {
                // The first result for a message is the one that applied.
                let Some(m) = updated.remove(&r.id.as_uuid()) else { continue };
                fx.moved(&m, MessageStatus::Queued, MessageStatus::Sent, None, r.at);
                fx.tally.sent_at(m.batch, r.at);
                changed.push(r.id);
                sent_at.insert(r.id.as_uuid(), r.at);
                for (part_ref, part) in new_parts.of(pid, parts) {
                    refs.push(part_ref);
                    part_messages.push(r.id.as_uuid());
                    numbers.push(i64::from(part));
                    times.push(r.at.millis());
                }
            }
        }
        if !refs.is_empty() {
            // A part that a receipt reached first keeps the receipt's status; its message is
            // settled below.
            let parts: Vec<(Uuid, String)> = sqlx::query_as(
                "INSERT INTO message_parts (provider_ref, message_id, part, status, at) \
                 SELECT r, m, p, 'sent', a FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::bigint[]) \
                 AS t (r, m, p, a) ON CONFLICT (provider_ref) DO UPDATE \
                 SET message_id = excluded.message_id, part = excluded.part RETURNING message_id, status",
            )
            .bind(refs)
            .bind(part_messages)
            .bind(numbers)
            .bind(times)
            .fetch_all(&mut *tx)
            .await?;
            let early: BTreeSet<Uuid> =
                parts.into_iter().filter(|(_, s)| s != MessageStatus::Sent.as_str()).map(|(m, _)| m).collect();
            for id in early {
                let at = sent_at.get(&id).copied().unwrap_or_else(Timestamp::now);
                Self::settle_message(&mut tx, MessageId::from_uuid(id), at, &mut fx).await?;
            }
        }
        for r in results {
            let (id, attempt) = (r.id.as_uuid(), i64::from(r.attempt));
            match &r.outcome {
                // Sent results are applied in bulk above.
                DispatchOutcome::Sent { .. } => {}
                DispatchOutcome::Retry { next_attempt_at, error } => {
                    let done = sqlx::query(
                        "UPDATE messages SET next_attempt_at = $1, error_message = $2, updated_at = $3 \
                                 WHERE id = $4 AND status = 'queued' AND attempts = $5",
                    )
                    .bind(next_attempt_at.millis())
                    .bind(error.as_str())
                    .bind(r.at.millis())
                    .bind(id)
                    .bind(attempt)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        changed.push(r.id);
                    }
                }
                DispatchOutcome::Failed { .. } | DispatchOutcome::Expired => {
                    let Some((status, error_type, message, refund)) = r.outcome.ending() else { continue };
                    let ended: Option<(i64, i64, Uuid, Uuid, Option<Uuid>, i64, Option<String>)> =
                        sqlx::query_as(concat!(
                            "UPDATE messages SET status = $6, error_type = $1, error_message = $2, updated_at = $3 \
                             WHERE id = $4 AND status = 'queued' AND attempts = $5 \
                             RETURNING sms_charged, mms_charged, ",
                            changed_columns!()
                        ))
                        .bind(error_type.map(|t| t.as_str()))
                        .bind(message)
                        .bind(r.at.millis())
                        .bind(id)
                        .bind(attempt)
                        .bind(status.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some((sms, mms, id, account, batch, created_at, notify_url)) = ended else { continue };
                    let m = Changed::from_row(id, account, batch, created_at, notify_url);
                    fx.moved(&m, MessageStatus::Queued, status, error_type, r.at);
                    changed.push(r.id);
                    if refund {
                        fx.refund(&m, Credits::new(sms, mms), r.at);
                    }
                }
            }
        }
        Self::finish(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn record_receipts(&self, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
        let mut tx = self.write.begin().await?;
        let refs: Vec<&str> = receipts
            .iter()
            .filter(|r| receipts::is_receipt_status(r.status))
            .map(|r| r.provider_ref.as_str())
            .collect();
        if !refs.is_empty() {
            // The messages the receipts are for are locked first, in one order: concurrent calls
            // settle each message in turn (each seeing the parts the other changed), and do not
            // wait on each other's parts while holding a message.
            sqlx::query(
                "SELECT id FROM messages WHERE id IN \
                 (SELECT message_id FROM message_parts WHERE provider_ref = ANY($1)) ORDER BY id FOR UPDATE",
            )
            .bind(refs)
            .fetch_all(&mut *tx)
            .await?;
        }
        let mut fx = Effects::default();
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts {
            if !receipts::is_receipt_status(r.status) {
                out.push(ReceiptOutcome::Ignored);
                continue;
            }
            let part: Option<(Option<Uuid>,)> = sqlx::query_as(writes::UPSERT_RECEIPT)
                .bind(r.provider_ref.as_str())
                .bind(r.status.as_str())
                .bind(r.error_type.map(|t| t.as_str()))
                .bind(r.description.as_deref())
                .bind(r.at.millis())
                .fetch_optional(&mut *tx)
                .await?;
            out.push(match part {
                None => ReceiptOutcome::Ignored,
                Some((None,)) => ReceiptOutcome::Unmatched,
                Some((Some(message),)) => {
                    let message = MessageId::from_uuid(message);
                    receipts::applied(message, Self::settle_message(&mut tx, message, r.at, &mut fx).await?)
                }
            });
        }
        Self::finish(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn receive_inbound(
        &self,
        inbound: &NewInbound,
        change: OptOutChange,
        reply: Option<&NewReply>,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let account: Option<(Uuid,)> = sqlx::query_as("SELECT account_id FROM senders WHERE address = $1")
            .bind(inbound.to.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let account = AccountId::from_uuid(account.ok_or(StorageError::NotFound)?.0);
        let channel: Option<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM channels WHERE account_id = $1 AND sender = $2 AND active ORDER BY created_at, id LIMIT 1",
        )
        .bind(account.as_uuid())
        .bind(inbound.to.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let channel = channel.map(|(c,)| c);
        let conflict = |e: StorageError| match e {
            StorageError::Database(e) if is_unique_violation(&e) => StorageError::Conflict("message id".into()),
            e => e,
        };
        let message = crate::inbound::inbound_record(inbound, account, channel);
        let mut fx = Effects::default();
        fx.event(&Changed::of(&message), MessageStatus::Received, None, inbound.received_at);
        let mut records = vec![message];
        if let Some(reply) = reply {
            let now = Timestamp::now();
            let record = crate::inbound::reply_record(inbound, reply, account, channel, now);
            fx.tally.insert(account, None, now, record.status);
            let m = Changed::of(&record);
            for (status, error_type) in admission::initial_events(&record) {
                fx.event(&m, status, error_type, now);
            }
            records.push(record);
        }
        Self::insert_messages(&mut tx, &records.iter().collect::<Vec<_>>()).await.map_err(conflict)?;
        let changed = match change {
            OptOutChange::Keep => 0,
            OptOutChange::OptOut => sqlx::query(
                "INSERT INTO opt_outs (sender, recipient, account_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (sender, recipient) DO NOTHING",
            )
            .bind(inbound.to.as_str())
            .bind(inbound.from.as_str())
            .bind(account.as_uuid())
            .bind(inbound.received_at.millis())
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            OptOutChange::OptIn => {
                sqlx::query("DELETE FROM opt_outs WHERE sender = $1 AND recipient = $2 AND account_id = $3")
                    .bind(inbound.to.as_str())
                    .bind(inbound.from.as_str())
                    .bind(account.as_uuid())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
        };
        Self::finish(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> Result<Vec<DeliveryRecord>> {
        let mut tx = self.write.begin().await?;
        let rows: Vec<DeliveryRow> = sqlx::query_as(CLAIM_DELIVERIES)
            .bind(lease_until.millis())
            .bind(now.millis())
            .bind(i64::from(limit))
            .bind(busy.to_vec())
            .fetch_all(&mut *tx)
            .await?;
        let mut endpoints: Vec<Uuid> = rows.iter().filter_map(|r| r.endpoint_id).collect();
        endpoints.sort();
        endpoints.dedup();
        let secrets: HashMap<Uuid, Vec<u8>> = if endpoints.is_empty() {
            HashMap::new()
        } else {
            let rows: Vec<(Uuid, Vec<u8>)> =
                sqlx::query_as("SELECT id, secret FROM webhook_endpoints WHERE id = ANY($1)")
                    .bind(endpoints)
                    .fetch_all(&mut *tx)
                    .await?;
            rows.into_iter().collect()
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut d = DeliveryRecord::try_from(row)?;
            if let Some(endpoint) = d.endpoint_id {
                let Some(secret) = secrets.get(&endpoint) else {
                    // Its endpoint was deleted while the event was being recorded.
                    sqlx::query(
                        "UPDATE webhook_deliveries SET state = 'canceled', updated_at = $1 \
                         WHERE event_id = $2 AND target = $3",
                    )
                    .bind(now.millis())
                    .bind(d.event_id.as_uuid())
                    .bind(d.target.as_str())
                    .execute(&mut *tx)
                    .await?;
                    continue;
                };
                d.secret = Some(SealedSecret(secret.clone()));
            }
            out.push(d);
        }
        tx.commit().await?;
        out.sort_by(|a, b| (a.event_id, &a.target).cmp(&(b.event_id, &b.target)));
        Ok(out)
    }

    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for r in writes::sorted_results(results) {
            let (event, attempt) = (r.event_id.as_uuid(), i64::from(r.attempt));
            let Some((state, next)) = writes::delivery_change(&r.outcome) else {
                sqlx::query(writes::RELEASE_DELIVERY)
                    .bind(r.record.at.millis())
                    .bind(event)
                    .bind(r.target.as_str())
                    .bind(attempt)
                    .execute(&mut *tx)
                    .await?;
                continue;
            };
            let done = sqlx::query(writes::FINISH_DELIVERY)
                .bind(state.as_str())
                .bind(next.map(Timestamp::millis))
                .bind(r.record.status_code.map(i64::from))
                .bind(r.record.error.as_deref())
                .bind(writes::finished_at(r).millis())
                .bind(event)
                .bind(r.target.as_str())
                .bind(attempt)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 {
                sqlx::query(writes::INSERT_ATTEMPT)
                    .bind(event)
                    .bind(r.target.as_str())
                    .bind(attempt)
                    .bind(r.record.at.millis())
                    .bind(r.record.status_code.map(i64::from))
                    .bind(r.record.error.as_deref())
                    .bind(i64::from(r.record.duration_ms))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

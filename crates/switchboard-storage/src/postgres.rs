//! The PostgreSQL store, for several Switchboard nodes on one database. Balances are locked
//! with `SELECT … FOR UPDATE` inside the admitting transaction, and dispatchers claim work with
//! `FOR UPDATE SKIP LOCKED`, so nodes never charge twice or dispatch one message twice at once.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use std::collections::HashMap;

use sqlx::QueryBuilder;
use switchboard_domain::{AccountId, BatchId, MessageId, MessageStatus, Timestamp};
use switchboard_ledger::{Balance, Credits, EntryKind};
use uuid::Uuid;

use crate::admission::{self, Facts, Step};
use crate::common::{
    ACCOUNT_COLUMNS, AccountRow, ApiKeyRow, MessageRow, OptOutRow, PROMOTE_BATCH, SenderRow, chunked,
    is_unique_violation, media_columns, message_columns, store_impl,
};
use crate::tally::{self, Tally};
use crate::writes::{Param, Statement, Writes};
use crate::{
    AcceptOutcome, AccountRecord, ApiKeyRecord, Backend, ConnectOptions, DispatchOutcome, DispatchResult, EventRecord,
    LedgerRecord, MessageRecord, NewBatch, NewMessage, OptOutRecord, Result, SenderChange, SenderRecord, StorageError,
};

type Tx = sqlx::Transaction<'static, Postgres>;

const SECRET_NAME: &str = "key_hash_secret";

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

async fn opted_out_among(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    sender: &str,
    recipients: &[String],
) -> crate::Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT recipient FROM opt_outs WHERE sender = $1 AND recipient = ANY($2)")
            .bind(sender)
            .bind(recipients.to_vec())
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
                    .push_bind(m.to.clone())
                    .push_bind(m.from.clone())
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
                    .push_bind(m.details.clone());
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
        let mut by_sender: HashMap<&str, Vec<String>> = HashMap::new();
        for m in batch {
            by_sender.entry(m.from.as_str()).or_default().push(m.to.clone());
        }
        for (sender, mut recipients) in by_sender {
            let row: Option<SenderRow> = sqlx::query_as(
                "SELECT address, account_id, active, sms, mms, created_at FROM senders WHERE address = $1",
            )
            .bind(sender)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { continue };
            facts.senders.insert(sender.to_owned(), row.into());
            recipients.sort();
            recipients.dedup();
            for r in opted_out_among(tx, sender, &recipients).await? {
                facts.opted_out.insert((sender.to_owned(), r));
            }
        }
        Ok(facts)
    }
}

#[async_trait::async_trait]
impl Writes for PostgresStore {
    async fn server_secret(&self) -> Result<Vec<u8>> {
        let fresh: [u8; 32] = crate::writes::random_secret();
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(SECRET_NAME)
            .bind(fresh.to_vec())
            .execute(&self.write)
            .await?;
        let (value,): (Vec<u8>,) = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
            .bind(SECRET_NAME)
            .fetch_one(&self.write)
            .await?;
        Ok(value)
    }

    async fn create_account(&self, name: &str) -> Result<AccountRecord> {
        let record = AccountRecord {
            id: AccountId::new(),
            name: name.to_owned(),
            balance: Credits::ZERO,
            rate_limit: None,
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
        row.map(Into::into).ok_or(StorageError::NotFound)
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
        Ok(row.into())
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
        let mut events: Vec<EventRecord> = Vec::new();
        let mut entries: Vec<LedgerRecord> = Vec::new();
        let mut deltas: HashMap<AccountId, Credits> = HashMap::new();
        let mut tally = Tally::default();
        for step in &steps {
            let Step::Insert { record, charge, new_batch } = step else { continue };
            if let Some(b) = new_batch {
                Self::insert_batch(&mut tx, b).await?;
            }
            tally.insert(record.account_id, record.batch_id, record.created_at, record.status);
            records.push(record);
            for (status, error_type) in admission::initial_events(record) {
                events.push(EventRecord { message_id: record.id, status, error_type, at: record.created_at });
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
        Self::insert_events(&mut tx, &events).await?;
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
        Self::apply_tally(&mut tx, &tally).await?;
        tx.commit().await?;
        Ok(steps.iter().map(Step::outcome).collect())
    }

    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let canceled: Option<(i64, i64, Option<Uuid>, i64)> = sqlx::query_as(
            "UPDATE messages SET status = 'canceled', updated_at = $1 \
             WHERE id = $2 AND account_id = $3 AND status = 'scheduled' \
             RETURNING sms_charged, mms_charged, batch_id, created_at",
        )
        .bind(at.millis())
        .bind(id.as_uuid())
        .bind(account.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((sms, mms, batch, created_at)) = canceled else {
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
        let event = EventRecord { message_id: id, status: MessageStatus::Canceled, error_type: None, at };
        Self::insert_events(&mut tx, &[event]).await?;
        let charged = Credits::new(sms, mms);
        if !charged.is_zero() {
            let after = Self::apply_delta(&mut tx, account, charged).await?;
            sqlx::query("UPDATE messages SET sms_charged = 0, mms_charged = 0 WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            let entry = LedgerRecord::for_message(EntryKind::Refund, account, id, charged, after, at);
            Self::insert_ledger(&mut tx, &[entry]).await?;
        }
        let mut tally = Tally::default();
        let (batch, created_at) = (batch.map(BatchId::from_uuid), Timestamp::from_millis(created_at));
        tally.change(account, batch, created_at, MessageStatus::Scheduled, MessageStatus::Canceled);
        Self::apply_tally(&mut tx, &tally).await?;
        tx.commit().await?;
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
        // Scheduled messages whose time has come join the queue first.
        let promoted: Vec<(Uuid, Uuid, Option<Uuid>, i64)> = sqlx::query_as(
            "UPDATE messages SET status = 'queued', updated_at = $1 WHERE status = 'scheduled' AND id IN \
             (SELECT id FROM messages WHERE status = 'scheduled' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, account_id, batch_id, created_at",
        )
        .bind(now.millis())
        .bind(i64::from(PROMOTE_BATCH))
        .fetch_all(&mut *tx)
        .await?;
        if !promoted.is_empty() {
            let mut tally = Tally::default();
            let mut events = Vec::with_capacity(promoted.len());
            for (id, account, batch, created_at) in promoted {
                let (account, batch) = (AccountId::from_uuid(account), batch.map(BatchId::from_uuid));
                let created_at = Timestamp::from_millis(created_at);
                tally.change(account, batch, created_at, MessageStatus::Scheduled, MessageStatus::Queued);
                let message_id = MessageId::from_uuid(id);
                events.push(EventRecord { message_id, status: MessageStatus::Queued, error_type: None, at: now });
            }
            Self::insert_events(&mut tx, &events).await?;
            Self::apply_tally(&mut tx, &tally).await?;
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
        let mut events = Vec::new();
        let mut refunds: Vec<(AccountId, MessageId, Credits, Timestamp)> = Vec::new();
        let mut tally = Tally::default();
        let sent: Vec<(&DispatchResult, &str)> = results
            .iter()
            .filter_map(|r| match &r.outcome {
                DispatchOutcome::Sent { provider_message_id } => Some((r, provider_message_id.as_str())),
                _ => None,
            })
            .collect();
        for chunk in chunked(&sent) {
            // One statement per chunk: at full load most results are sends.
            let mut qb = QueryBuilder::<Postgres>::new(
                "UPDATE messages SET status = 'sent', sent_at = v.at, updated_at = v.at, \
                         provider_message_id = v.pid, error_message = NULL \
                         FROM (SELECT column1 AS id, column2 AS attempt, column3 AS pid, column4 AS at FROM (",
            );
            qb.push_values(chunk, |mut b, (r, pid)| {
                b.push_bind(r.id.as_uuid())
                    .push_bind(i64::from(r.attempt))
                    .push_bind(pid.to_string())
                    .push_bind(r.at.millis());
            });
            qb.push(
                ") AS t) AS v WHERE messages.id = v.id AND messages.attempts = v.attempt \
                         AND messages.status = 'queued' \
                         RETURNING messages.id, messages.account_id, messages.batch_id, messages.created_at, \
                         messages.sent_at",
            );
            let updated: Vec<(Uuid, Uuid, Option<Uuid>, i64, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            for (_, account, batch, created_at, sent_at) in &updated {
                let batch = batch.map(BatchId::from_uuid);
                tally.change(
                    AccountId::from_uuid(*account),
                    batch,
                    Timestamp::from_millis(*created_at),
                    MessageStatus::Queued,
                    MessageStatus::Sent,
                );
                tally.sent_at(batch, Timestamp::from_millis(*sent_at));
            }
            let updated: std::collections::HashSet<Uuid> = updated.into_iter().map(|(id, ..)| id).collect();
            for (r, _) in chunk {
                if updated.contains(&r.id.as_uuid()) {
                    changed.push(r.id);
                    events.push(EventRecord {
                        message_id: r.id,
                        status: MessageStatus::Sent,
                        error_type: None,
                        at: r.at,
                    });
                }
            }
        }
        for r in results {
            let (id, attempt) = (r.id.as_uuid(), i64::from(r.attempt));
            match &r.outcome {
                // Sent results are applied in bulk below.
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
                    let charged: Option<(i64, i64, Uuid, Option<Uuid>, i64)> = sqlx::query_as(
                        "UPDATE messages SET status = $6, error_type = $1, error_message = $2, updated_at = $3 \
                         WHERE id = $4 AND status = 'queued' AND attempts = $5 \
                         RETURNING sms_charged, mms_charged, account_id, batch_id, created_at",
                    )
                    .bind(error_type.map(|t| t.as_str()))
                    .bind(message)
                    .bind(r.at.millis())
                    .bind(id)
                    .bind(attempt)
                    .bind(status.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((sms, mms, account, batch, created_at)) = charged else { continue };
                    tally.change(
                        AccountId::from_uuid(account),
                        batch.map(BatchId::from_uuid),
                        Timestamp::from_millis(created_at),
                        MessageStatus::Queued,
                        status,
                    );
                    changed.push(r.id);
                    events.push(EventRecord { message_id: r.id, status, error_type, at: r.at });
                    let amount = Credits::new(sms, mms);
                    if refund && !amount.is_zero() {
                        refunds.push((r.account_id, r.id, amount, r.at));
                    }
                }
            }
        }
        refunds.sort_by_key(|(a, m, _, _)| (*a, *m));
        let mut entries = Vec::with_capacity(refunds.len());
        for (account, message, amount, at) in refunds {
            let after = Self::apply_delta(&mut tx, account, amount).await?;
            sqlx::query("UPDATE messages SET sms_charged = 0, mms_charged = 0 WHERE id = $1")
                .bind(message.as_uuid())
                .execute(&mut *tx)
                .await?;
            entries.push(LedgerRecord::for_message(EntryKind::Refund, account, message, amount, after, at));
        }
        Self::insert_events(&mut tx, &events).await?;
        Self::insert_ledger(&mut tx, &entries).await?;
        Self::apply_tally(&mut tx, &tally).await?;
        tx.commit().await?;
        Ok(changed)
    }
}

//! Messages: admitting a group ([`accept`]), reading them, canceling a scheduled one, and
//! storing an inbound one with its automatic reply.

use std::collections::{HashMap, HashSet};

use switchboard_domain::{AccountDestinations, AccountId, Dialect, MessageId, MessageStatus, SenderId, Timestamp};
use switchboard_ledger::{Balance, Credits, EntryKind};
use uuid::Uuid;

use super::{Effects, finish, insert_messages, ledger};
use crate::engine::{Param, Tx, conflict_as};
use crate::rows::{Changed, Charged, EVENT_COLUMNS, changed_columns, message_columns};
use crate::rules::admission::{self, Facts, Step};
use crate::rules::inbound;
use crate::rules::low_balance::Watch;
use crate::{
    AcceptOutcome, EventRecord, LedgerRecord, MessageFilter, MessageRecord, NewInbound, NewMessage, NewReply,
    OptOutChange, PageRequest, Result, Scanned, StorageError,
};

/// See [`crate::Store::accept`].
pub(crate) async fn accept(tx: &mut impl Tx, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>> {
    let (mut facts, mut watch) = load_facts(tx, batch).await?;
    let steps = admission::plan(batch, &mut facts);
    let mut records: Vec<&MessageRecord> = Vec::new();
    let mut entries: Vec<LedgerRecord> = Vec::new();
    let mut deltas: HashMap<AccountId, Credits> = HashMap::new();
    let mut fx = Effects::default();
    for step in &steps {
        let Step::Insert { record, charge, new_batch } = step else { continue };
        if let Some(b) = new_batch {
            tx.execute(
                "INSERT INTO batches (id, account_id, kind, sender, body, recipients, first_message_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    b.id.into(),
                    b.account_id.into(),
                    b.kind.as_str().into(),
                    (&b.from).into(),
                    (&b.body).into(),
                    b.recipients.into(),
                    b.first_message_id.into(),
                    b.created_at.into(),
                ],
            )
            .await?;
        }
        fx.stored(record, record.created_at);
        records.push(record);
        if let Some((delta, after)) = charge {
            if !watch.is_empty()
                && let Some(low) = watch.charged(record.account_id, after.sms)
            {
                fx.balance_low(record, low);
            }
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
    insert_messages(tx, &records).await?;
    ledger::insert_entries(tx, &entries).await?;
    let mut deltas: Vec<(AccountId, Credits)> = deltas.into_iter().collect();
    deltas.sort_by_key(|(a, _)| *a);
    for (account, delta) in deltas {
        let after = ledger::apply_delta(tx, account, delta).await?;
        // The plan and the database must agree on the balance; if they ever do not, nothing
        // of the group is written.
        if Some(after) != facts.balances.get(&account).map(|b| b.credits()) {
            return Err(StorageError::Corrupt(format!("balance of {account} moved during admission")));
        }
    }
    finish(tx, fx).await?;
    Ok(steps.iter().map(Step::outcome).collect())
}

/// The columns [`lock_account`] reads: SMS and MMS balances, allowed regions, whether
/// fixed-or-mobile numbers are accepted, and the low-balance threshold.
type AccountRow = (i64, i64, Option<String>, bool, Option<i64>);

/// What an admission reads of an account with its locked balance.
struct Locked {
    balance: Balance,
    destinations: AccountDestinations,
    low_balance_threshold: Option<i64>,
}

/// Locks an account's balance for an admission and reads its destination settings and its
/// low-balance threshold with it.
async fn lock_account(tx: &mut impl Tx, account: AccountId) -> Result<Option<Locked>> {
    let sql = format!(
        "SELECT sms_credits, mms_credits, allowed_regions, accept_fixed_or_mobile, low_balance_threshold \
         FROM accounts WHERE id = $1{}",
        tx.backend().for_update()
    );
    let row: Option<AccountRow> = tx.fetch_optional(&sql, &[account.into()]).await?;
    let Some((sms, mms, regions, fixed_or_mobile, low_balance_threshold)) = row else { return Ok(None) };
    let balance = Balance::new(Credits::new(sms, mms))?;
    let allowed_regions = crate::rows::allowed_regions(regions)?;
    Ok(Some(Locked {
        balance,
        destinations: AccountDestinations { allowed_regions, fixed_or_mobile },
        low_balance_threshold,
    }))
}

/// What the admission rules need to know of a group, read inside its transaction, and the
/// low-balance thresholds of its accounts to follow through its charges.
async fn load_facts(tx: &mut impl Tx, batch: &[NewMessage]) -> Result<(Facts, Watch)> {
    let mut facts = Facts::default();
    let mut watch = Watch::default();
    // Balances are locked in a fixed order, so that concurrent groups cannot deadlock.
    let mut accounts: Vec<AccountId> = batch.iter().map(|m| m.account_id).collect();
    accounts.sort();
    accounts.dedup();
    for account in accounts {
        if let Some(locked) = lock_account(tx, account).await? {
            if let Some(threshold) = locked.low_balance_threshold {
                watch.watch(account, threshold, locked.balance.credits().sms);
            }
            facts.balances.insert(account, locked.balance);
            facts.destinations.insert(account, locked.destinations);
        }
    }
    // Keys are read after the locks: a racing group for the same account has committed by
    // now, so its messages are seen.
    for m in batch {
        let Some(key) = &m.idempotency_key else { continue };
        if facts.by_key.contains_key(&(m.account_id, key.clone())) {
            continue;
        }
        let earlier: Option<MessageRecord> = tx
            .fetch_optional(
                concat!("SELECT ", message_columns!(), " FROM messages WHERE account_id = $1 AND idempotency_key = $2"),
                &[m.account_id.into(), key.into()],
            )
            .await?;
        if let Some(earlier) = earlier {
            facts.by_key.insert((m.account_id, key.clone()), earlier);
        }
    }
    let mut by_sender: HashMap<&SenderId, Vec<&str>> = HashMap::new();
    for m in batch {
        by_sender.entry(&m.from).or_default().push(m.to.as_str());
    }
    for (sender, mut recipients) in by_sender {
        let Some(record) = super::accounts::sender(tx, sender).await? else { continue };
        facts.senders.insert(sender.clone(), record);
        recipients.sort_unstable();
        recipients.dedup();
        let sql = format!("SELECT recipient FROM opt_outs WHERE sender = $1 AND recipient {}", tx.backend().in_list(2));
        let opted: Vec<(String,)> = tx.fetch_all(&sql, &[sender.into(), Param::Texts(&recipients)]).await?;
        let opted: HashSet<String> = opted.into_iter().map(|(r,)| r).collect();
        for m in batch.iter().filter(|m| &m.from == sender && opted.contains(m.to.as_str())) {
            facts.opted_out.insert((sender.clone(), m.to.clone()));
        }
    }
    Ok((facts, watch))
}

/// See [`crate::Store::get_message`].
pub(crate) async fn get(tx: &mut impl Tx, id: MessageId) -> Result<Option<MessageRecord>> {
    tx.fetch_optional(concat!("SELECT ", message_columns!(), " FROM messages WHERE id = $1"), &[id.into()]).await
}

/// See [`crate::Store::list_messages`].
pub(crate) async fn list(
    tx: &mut impl Tx,
    account: AccountId,
    page: PageRequest<MessageId>,
) -> Result<Vec<MessageRecord>> {
    newest_first(tx, "account_id", account.into(), page).await
}

/// See [`crate::Store::list_channel_messages`].
pub(crate) async fn list_in_channel(
    tx: &mut impl Tx,
    channel: Uuid,
    page: PageRequest<MessageId>,
) -> Result<Vec<MessageRecord>> {
    newest_first(tx, "channel_id", channel.into(), page).await
}

/// A page of the messages whose `column` is `key`, newest first.
async fn newest_first(
    tx: &mut impl Tx,
    column: &'static str,
    key: Param<'_>,
    page: PageRequest<MessageId>,
) -> Result<Vec<MessageRecord>> {
    let before = page.before.map_or(Uuid::max(), |m| m.as_uuid());
    let sql = format!(
        concat!("SELECT ", message_columns!(), " FROM messages WHERE {} = $1 AND id < $2 ORDER BY id DESC LIMIT $3"),
        column
    );
    tx.fetch_all(&sql, &[key, before.into(), page.limit.into()]).await
}

/// The SQL condition that a message came the way `dialect` names, the rule of
/// [`MessageRecord::dialect`] over the stored columns.
fn dialect_condition(dialect: Option<Dialect>) -> &'static str {
    match dialect {
        None => "TRUE",
        Some(Dialect::Inbound) => "direction = 'inbound'",
        Some(Dialect::Reply) => "direction = 'outbound' AND request_hash IS NULL",
        Some(Dialect::Bird) => "direction = 'outbound' AND request_hash IS NOT NULL AND channel_id IS NOT NULL",
        Some(Dialect::Mudbase) => {
            "direction = 'outbound' AND request_hash IS NOT NULL AND channel_id IS NULL AND batch_id IS NOT NULL"
        }
        Some(Dialect::Smpp) => {
            "direction = 'outbound' AND request_hash IS NOT NULL AND channel_id IS NULL AND batch_id IS NULL \
             AND length(request_hash) = 0"
        }
        Some(Dialect::TextingLine) => {
            "direction = 'outbound' AND request_hash IS NOT NULL AND channel_id IS NULL AND batch_id IS NULL \
             AND length(request_hash) > 0"
        }
    }
}

/// See [`crate::Store::search_messages`]: a bounded scan of the account's messages (by its
/// index) or of every message (by id), in the filter's time range, newest first.
pub(crate) async fn search(
    tx: &mut impl Tx,
    filter: &MessageFilter,
    page: PageRequest<MessageId>,
) -> Result<Scanned<MessageRecord>> {
    let (lo, hi) = super::scan::id_bounds(page.before.map(|m| m.as_uuid()), filter.from, filter.to);
    let mut range: Vec<Param<'_>> = Vec::with_capacity(3);
    let within = match filter.account {
        Some(account) => {
            range.push(account.into());
            "account_id = $1 AND id < $2 AND id >= $3"
        }
        None => {
            range.push(Param::Uuid(None));
            "$1 IS NULL AND id < $2 AND id >= $3"
        }
    };
    range.extend::<[Param<'_>; 2]>([hi.into(), lo.into()]);
    let from = format!("FROM messages WHERE {within} ORDER BY id DESC");
    let sql = format!(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM (SELECT ",
            message_columns!(),
            " {} LIMIT $4) s WHERE ($5 IS NULL OR recipient = $5) AND ($6 IS NULL OR status = $6) AND {} \
             ORDER BY id DESC LIMIT $7"
        ),
        from,
        dialect_condition(filter.dialect)
    );
    let limit = page.limit.clamp(1, 1000);
    let mut params = range.clone();
    params.extend::<[Param<'_>; 4]>([
        crate::SCAN_CAP.into(),
        filter.recipient.as_ref().map(|r| r.as_str()).into(),
        filter.status.map(|s| s.as_str()).into(),
        (limit + 1).into(),
    ]);
    let rows: Vec<MessageRecord> = tx.fetch_all(&sql, &params).await?;
    let nth = format!("SELECT id {from} LIMIT 1 OFFSET $4");
    super::scan::page(tx, rows, limit, |m| m.id.as_uuid(), &nth, &range).await
}

/// See [`crate::Store::message_events`].
pub(crate) async fn events(tx: &mut impl Tx, id: MessageId) -> Result<Vec<EventRecord>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM message_events WHERE message_id = $1 ORDER BY at");
    let mut events: Vec<EventRecord> = tx.fetch_all(&sql, &[id.into()]).await?;
    // Events of one instant keep lifecycle order.
    events.sort_by_key(|e| (e.at, MessageStatus::ALL.iter().position(|s| *s == e.status)));
    Ok(events)
}

/// See [`crate::Store::cancel_scheduled`].
pub(crate) async fn cancel_scheduled(
    tx: &mut impl Tx,
    account: AccountId,
    id: MessageId,
    at: Timestamp,
) -> Result<MessageRecord> {
    let canceled: Option<Charged> = tx
        .fetch_optional(
            concat!(
                "UPDATE messages SET status = 'canceled', updated_at = $1 \
                 WHERE id = $2 AND account_id = $3 AND status = 'scheduled' RETURNING sms_charged, mms_charged, ",
                changed_columns!()
            ),
            &[at.into(), id.into(), account.into()],
        )
        .await?;
    let Some(Charged(charged, m)) = canceled else {
        let status: Option<(String,)> = tx
            .fetch_optional(
                "SELECT status FROM messages WHERE id = $1 AND account_id = $2",
                &[id.into(), account.into()],
            )
            .await?;
        return Err(match status {
            None => StorageError::NotFound,
            Some((status,)) => StorageError::Conflict(format!("the message is {status}, not scheduled")),
        });
    };
    let mut fx = Effects::default();
    fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Canceled, None, at);
    fx.refund(&m, charged, at);
    finish(tx, fx).await?;
    get(tx, id).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::receive_inbound`]: the inbound message, the reply if any, and whether
/// the opt-out list changed.
pub(crate) async fn receive_inbound(
    tx: &mut impl Tx,
    inbound: &NewInbound,
    change: OptOutChange,
    reply: Option<&NewReply>,
) -> Result<crate::InboundOutcome> {
    let account: Option<(AccountId,)> =
        tx.fetch_optional("SELECT account_id FROM senders WHERE address = $1", &[(&inbound.to).into()]).await?;
    let (account,) = account.ok_or(StorageError::NotFound)?;
    let channel: Option<(Uuid,)> = tx
        .fetch_optional(
            "SELECT id FROM channels WHERE account_id = $1 AND sender = $2 AND active ORDER BY created_at, id LIMIT 1",
            &[account.into(), (&inbound.to).into()],
        )
        .await?;
    let channel = channel.map(|(c,)| c);
    let message = inbound::inbound_record(inbound, account, channel);
    let mut fx = Effects::default();
    fx.event(&Changed::of(&message), MessageStatus::Received, None, inbound.received_at);
    let reply = reply.map(|reply| {
        let now = Timestamp::now();
        let record = inbound::reply_record(inbound, reply, account, channel, now);
        fx.stored(&record, now);
        record
    });
    let records: Vec<&MessageRecord> = std::iter::once(&message).chain(reply.as_ref()).collect();
    insert_messages(tx, &records).await.map_err(conflict_as("message id"))?;
    let pair = [(&inbound.to).into(), (&inbound.from).into(), account.into()];
    let changed = match change {
        OptOutChange::Keep => 0,
        OptOutChange::OptOut => {
            tx.execute(
                "INSERT INTO opt_outs (sender, recipient, account_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (sender, recipient) DO NOTHING",
                &[pair[0], pair[1], pair[2], inbound.received_at.into()],
            )
            .await?
        }
        OptOutChange::OptIn => {
            tx.execute("DELETE FROM opt_outs WHERE sender = $1 AND recipient = $2 AND account_id = $3", &pair).await?
        }
    };
    super::smpp::enqueue_inbound(tx, account, message.id, inbound.received_at).await?;
    finish(tx, fx).await?;
    Ok(crate::InboundOutcome { message, reply, opt_out_changed: changed > 0 })
}

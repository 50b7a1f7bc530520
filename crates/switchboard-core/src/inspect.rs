//! What the operator and account holders read of an account's money and messages: the ledger
//! filtered by kind, time and message; messages found by id, recipient, status, dialect and
//! time; one message with everything recorded about it; and the operator's resend of a failed
//! webhook delivery. The admin API and the console both read through these, so there is one
//! data path.
//!
//! Every read is scoped by a [`Viewer`]: the operator sees every account, an account holder
//! only their own, and a message of another account is answered as if it did not exist.

use switchboard_domain::{AccountId, EventId, MessageId};
use switchboard_records::{
    AttemptRecord, DeliveryRecord, EventRecord, LedgerFilter, LedgerRecord, MessageFilter, MessageRecord, PartRecord,
    Scanned,
};
use switchboard_storage::PageRequest;
use uuid::Uuid;

use crate::{AccessError, Core, MAX_PAGE};

/// Who reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// The operator: every account.
    Operator,
    /// The holder of one account's key: that account only.
    Account(AccountId),
}

impl Viewer {
    /// Whether this viewer may see what belongs to `account`.
    pub fn sees(self, account: AccountId) -> bool {
        match self {
            Viewer::Operator => true,
            Viewer::Account(own) => own == account,
        }
    }
}

/// One message with everything recorded about it.
#[derive(Debug, Clone)]
pub struct MessageDetail {
    /// The message.
    pub message: MessageRecord,
    /// Its status history, oldest first.
    pub events: Vec<EventRecord>,
    /// Its parts as the upstream knows them, by part number.
    pub parts: Vec<PartRecord>,
    /// Its charge and refund, oldest first.
    pub ledger: Vec<LedgerRecord>,
    /// Its webhook deliveries, by event and target, each with its attempts, oldest first.
    pub deliveries: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
}

impl Core {
    /// An account's ledger entries that `filter` takes, newest first, before `before`: at most
    /// `limit` (1 to 1000), from a bounded scan (see [`Scanned`]).
    pub async fn ledger_entries(
        &self,
        viewer: Viewer,
        account: AccountId,
        filter: &LedgerFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Scanned<LedgerRecord>, AccessError> {
        if !viewer.sees(account) {
            return Err(AccessError::NotFound("account"));
        }
        check_range(filter.from, filter.to)?;
        self.account(account).await?;
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE) };
        self.inner.store.ledger_entries(account, filter, page).await.map_err(AccessError::from_storage("ledger entry"))
    }

    /// Finds messages, newest first, before `before`: the one with `id` when it is given (if
    /// the viewer sees it and it matches the filter), else those `filter` takes, from a
    /// bounded scan (see [`Scanned`]). An account holder's search is held to their account
    /// whatever the filter says.
    pub async fn find_messages(
        &self,
        viewer: Viewer,
        id: Option<MessageId>,
        filter: &MessageFilter,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Scanned<MessageRecord>, AccessError> {
        check_range(filter.from, filter.to)?;
        let mut filter = filter.clone();
        if let Viewer::Account(own) = viewer {
            if filter.account.is_some_and(|a| a != own) {
                return Err(AccessError::NotFound("account"));
            }
            filter.account = Some(own);
        }
        if let Some(id) = id {
            let found = self.inner.store.get_message(id).await.map_err(AccessError::from_storage("message"))?;
            let items = found.filter(|m| viewer.sees(m.account_id) && matches(&filter, m)).into_iter().collect();
            return Ok(Scanned { items, next: None, capped: false });
        }
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE) };
        self.inner.store.search_messages(&filter, page).await.map_err(AccessError::from_storage("message"))
    }

    /// One message with its status history, parts, charge and refund, and webhook deliveries
    /// with their attempts; `NotFound` when it does not exist or the viewer does not see it.
    pub async fn message_detail(&self, viewer: Viewer, id: MessageId) -> Result<MessageDetail, AccessError> {
        let store = &self.inner.store;
        let gone = AccessError::from_storage("message");
        let message = store.get_message(id).await.map_err(&gone)?;
        let message = message.filter(|m| viewer.sees(m.account_id)).ok_or(AccessError::NotFound("message"))?;
        let events = store.message_events(id).await.map_err(&gone)?;
        let parts = store.message_parts(id).await.map_err(&gone)?;
        let ledger = store.message_ledger(id).await.map_err(&gone)?;
        let mut deliveries = Vec::new();
        for d in store.message_deliveries(id).await.map_err(&gone)? {
            let attempts = store.delivery_attempts(d.event_id, &d.target).await.map_err(&gone)?;
            deliveries.push((d, attempts));
        }
        Ok(MessageDetail { message, events, parts, ledger, deliveries })
    }

    /// Makes the failed deliveries of an event (only the one to `endpoint`, when given) due
    /// now with a fresh retry budget, once: a second call finds them pending and is a
    /// `Conflict`. For the operator.
    pub async fn resend_deliveries(
        &self,
        event: EventId,
        endpoint: Option<Uuid>,
    ) -> Result<Vec<DeliveryRecord>, AccessError> {
        let now = switchboard_domain::Timestamp::now();
        self.inner.store.resend_deliveries(event, endpoint, now).await.map_err(AccessError::from_storage("delivery"))
    }
}

/// A time range must not end before it starts.
fn check_range(
    from: Option<switchboard_domain::Timestamp>,
    to: Option<switchboard_domain::Timestamp>,
) -> Result<(), AccessError> {
    match (from, to) {
        (Some(from), Some(to)) if to < from => Err(AccessError::Invalid("to: must not be before from".into())),
        _ => Ok(()),
    }
}

/// Whether `m` is one that `filter` takes (what the store's search applies in SQL).
fn matches(filter: &MessageFilter, m: &MessageRecord) -> bool {
    filter.account.is_none_or(|a| a == m.account_id)
        && filter.recipient.as_ref().is_none_or(|r| *r == m.to)
        && filter.status.is_none_or(|s| s == m.status)
        && filter.dialect.is_none_or(|d| d == m.dialect())
        && filter.from.is_none_or(|from| m.created_at >= from)
        && filter.to.is_none_or(|to| m.created_at < to)
}

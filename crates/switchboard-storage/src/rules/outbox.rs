//! The webhook outbox, planned the same way on both backends.
//!
//! A write operation notes in an [`Outbox`] every status event it records for a message. As
//! one of its last steps before committing, it loads the active endpoints of the accounts
//! involved (none at all when nothing that raises a webhook event was noted), and inserts the
//! deliveries [`Outbox::plan`] makes: for each event, one per endpoint that takes its type and
//! one to the message's own `notify_url`, all sharing one fresh [`EventId`]. The deliveries are
//! written in the same transaction as the status changes, so an event is delivered if and only
//! if its change committed.
//!
//! An `account.balance_low` event is noted the same way by the admission whose charge crossed
//! the account's threshold; it goes to the account's endpoints that take it, never to a
//! message's own URL.
//!
//! Deliveries are new rows under fresh keys: inserting them never waits on another writer, so
//! they do not change the lock order the running counts rely on (see `tally`).

use std::collections::HashMap;

use switchboard_domain::{AccountId, ErrorType, EventId, EventType, MessageId, MessageStatus, Timestamp};

use crate::{BalanceLow, DeliveryRecord, DeliveryState, WebhookRecord};

/// One status event that may raise a webhook event.
#[derive(Debug)]
struct Noted {
    event_type: EventType,
    account: AccountId,
    message: MessageId,
    status: MessageStatus,
    error_type: Option<ErrorType>,
    at: Timestamp,
    notify_url: Option<String>,
    balance_low: Option<BalanceLow>,
}

/// The status events of one transaction, to turn into deliveries before it commits.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    noted: Vec<Noted>,
}

impl Outbox {
    /// A message of `account` entered `status` at `at`; `notify_url` is the message's own.
    /// A status that raises no webhook event (`queued`) is not kept.
    pub(crate) fn note(
        &mut self,
        account: AccountId,
        message: MessageId,
        status: MessageStatus,
        error_type: Option<ErrorType>,
        at: Timestamp,
        notify_url: Option<&str>,
    ) {
        let Some(event_type) = EventType::for_status(status) else { return };
        self.noted.push(Noted {
            event_type,
            account,
            message,
            status,
            error_type,
            at,
            notify_url: notify_url.map(str::to_owned),
            balance_low: None,
        });
    }

    /// The charge of `message` (now `status`) took `account`'s SMS balance below its
    /// threshold at `at`: an `account.balance_low` event for the account's endpoints.
    pub(crate) fn note_balance_low(
        &mut self,
        account: AccountId,
        message: MessageId,
        status: MessageStatus,
        balance_low: BalanceLow,
        at: Timestamp,
    ) {
        self.noted.push(Noted {
            event_type: EventType::BalanceLow,
            account,
            message,
            status,
            error_type: None,
            at,
            notify_url: None,
            balance_low: Some(balance_low),
        });
    }

    /// Whether nothing that raises a webhook event was noted: then there is nothing to load.
    pub(crate) fn is_empty(&self) -> bool {
        self.noted.is_empty()
    }

    /// The accounts whose active endpoints [`Outbox::plan`] needs, each once, in order.
    pub(crate) fn accounts(&self) -> Vec<AccountId> {
        let mut accounts: Vec<AccountId> = self.noted.iter().map(|n| n.account).collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// The deliveries to insert, given the endpoints of [`Outbox::accounts`] (inactive ones and
    /// those of other accounts are skipped), all pending and due at their event's time.
    pub(crate) fn plan(&self, endpoints: &[WebhookRecord], now: Timestamp) -> Vec<DeliveryRecord> {
        let mut by_account: HashMap<AccountId, Vec<&WebhookRecord>> = HashMap::new();
        for e in endpoints.iter().filter(|e| e.active) {
            by_account.entry(e.account_id).or_default().push(e);
        }
        let mut out = Vec::new();
        for n in &self.noted {
            let mut targets: Vec<(String, Option<uuid::Uuid>, &str)> = by_account
                .get(&n.account)
                .into_iter()
                .flatten()
                .filter(|e| e.wants(n.event_type))
                .map(|e| (e.id.hyphenated().to_string(), Some(e.id), e.url.as_str()))
                .collect();
            if let Some(url) = &n.notify_url {
                targets.push((url.clone(), None, url.as_str()));
            }
            if targets.is_empty() {
                continue;
            }
            let event_id = EventId::new();
            out.extend(targets.into_iter().map(|(target, endpoint_id, url)| DeliveryRecord {
                event_id,
                target,
                account_id: n.account,
                endpoint_id,
                url: url.to_owned(),
                secret: None,
                event_type: n.event_type,
                message_id: n.message,
                status: n.status,
                error_type: n.error_type,
                occurred_at: n.at,
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: n.at,
                last_status: None,
                last_error: None,
                updated_at: now,
                balance_low: n.balance_low,
                resent_at: None,
                resent_after: 0,
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SealedSecret;

    fn endpoint(account: AccountId, events: Vec<EventType>, active: bool) -> WebhookRecord {
        WebhookRecord {
            id: uuid::Uuid::new_v4(),
            account_id: account,
            url: format!("https://example.com/{}", uuid::Uuid::new_v4()),
            secret: SealedSecret(vec![1, 2, 3]),
            events,
            active,
            created_at: Timestamp::from_millis(1),
        }
    }

    #[test]
    fn nothing_to_load_for_queued_only() {
        let mut outbox = Outbox::default();
        outbox.note(AccountId::new(), MessageId::new(), MessageStatus::Queued, None, Timestamp::now(), Some("x"));
        assert!(outbox.is_empty());
        assert!(outbox.accounts().is_empty());
    }

    #[test]
    fn one_event_id_per_event_and_one_delivery_per_target() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let only_delivered = endpoint(a, vec![EventType::Delivered], true);
        let all = endpoint(a, Vec::new(), true);
        let inactive = endpoint(a, Vec::new(), false);
        let foreign = endpoint(b, Vec::new(), true);
        let endpoints = [only_delivered.clone(), all.clone(), inactive, foreign];
        let (m, at) = (MessageId::new(), Timestamp::from_millis(42));
        let mut outbox = Outbox::default();
        outbox.note(a, m, MessageStatus::Accepted, None, at, Some("https://hook.example/m"));
        outbox.note(a, m, MessageStatus::Queued, None, at, Some("https://hook.example/m"));
        outbox.note(a, m, MessageStatus::Delivered, None, at, None);
        outbox.note(b, MessageId::new(), MessageStatus::Sent, None, at, None);
        assert_eq!(outbox.accounts().len(), 2);
        let plan = outbox.plan(&endpoints, Timestamp::from_millis(50));
        let pairs: Vec<(EventType, &str)> = plan.iter().map(|d| (d.event_type, d.target.as_str())).collect();
        let (all_id, delivered_id) = (all.id.hyphenated().to_string(), only_delivered.id.hyphenated().to_string());
        let foreign_id = endpoints[3].id.hyphenated().to_string();
        assert_eq!(
            pairs,
            vec![
                (EventType::Accepted, all_id.as_str()),
                (EventType::Accepted, "https://hook.example/m"),
                (EventType::Delivered, delivered_id.as_str()),
                (EventType::Delivered, all_id.as_str()),
                (EventType::Sent, foreign_id.as_str()),
            ]
        );
        assert_eq!(plan[0].event_id, plan[1].event_id);
        assert_eq!(plan[2].event_id, plan[3].event_id);
        assert_ne!(plan[0].event_id, plan[2].event_id);
        assert_eq!((plan[1].endpoint_id, plan[1].url.as_str()), (None, "https://hook.example/m"));
        assert_eq!((plan[0].endpoint_id, plan[0].url.as_str()), (Some(all.id), all.url.as_str()));
        assert!(plan.iter().all(|d| d.state == DeliveryState::Pending && d.attempts == 0 && d.next_attempt_at == at));
        assert!(plan.iter().all(|d| d.balance_low.is_none()));
    }

    #[test]
    fn a_balance_event_goes_to_the_endpoints_that_take_it_only() {
        let a = AccountId::new();
        let low_only = endpoint(a, vec![EventType::BalanceLow], true);
        let all = endpoint(a, Vec::new(), true);
        let delivered_only = endpoint(a, vec![EventType::Delivered], true);
        let endpoints = [low_only.clone(), all.clone(), delivered_only];
        let (m, at) = (MessageId::new(), Timestamp::from_millis(42));
        let low = BalanceLow { sms_credits: 8, threshold: 10 };
        let mut outbox = Outbox::default();
        outbox.note_balance_low(a, m, MessageStatus::Queued, low, at);
        assert!(!outbox.is_empty());
        assert_eq!(outbox.accounts(), vec![a]);
        let plan = outbox.plan(&endpoints, Timestamp::from_millis(50));
        let targets: Vec<Option<uuid::Uuid>> = plan.iter().map(|d| d.endpoint_id).collect();
        assert_eq!(targets, vec![Some(low_only.id), Some(all.id)]);
        assert!(plan.iter().all(|d| d.event_type == EventType::BalanceLow && d.balance_low == Some(low)));
        assert!(plan.iter().all(|d| d.message_id == m && d.event_id == plan[0].event_id));
    }
}

//! The admission rules that [`crate::Store::accept`] applies, shared by both backends.
//!
//! A backend loads the facts a group of messages needs (locked balances, senders, opt-outs,
//! earlier uses of idempotency keys) inside its transaction, calls [`plan`], writes what the
//! plan says, and commits. Keeping the rules here, pure, means SQLite and PostgreSQL cannot
//! disagree on them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use switchboard_domain::{AccountDestinations, AccountId, Direction, ErrorType, MessageStatus, Msisdn, SenderId};
use switchboard_ledger::{Balance, Credits};

use crate::{AcceptOutcome, MessageRecord, NewBatch, NewMessage, SenderRecord};

/// What the rules need to know, loaded inside the transaction.
#[derive(Debug, Default)]
pub struct Facts {
    /// Balances of every account in the group (locked for the transaction).
    pub balances: HashMap<AccountId, Balance>,
    /// Every sender address in the group that exists, whoever owns it.
    pub senders: HashMap<SenderId, SenderRecord>,
    /// Opted-out (sender, recipient) pairs among the group's.
    pub opted_out: HashSet<(SenderId, Msisdn)>,
    /// Earlier messages by (account, idempotency key), among the group's keys.
    pub by_key: HashMap<(AccountId, String), MessageRecord>,
    /// The destination settings of every account in the group.
    pub destinations: HashMap<AccountId, AccountDestinations>,
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Store this record. If `charge` is set, write a charge entry with this delta and the
    /// balance after it, and take it from the account. If `new_batch` is set, store that
    /// request first (it comes with the first message of a request).
    Insert {
        /// The record to store.
        record: MessageRecord,
        /// (delta, balance after) of the charge entry.
        charge: Option<(Credits, Credits)>,
        /// The multi-recipient request this message opens.
        new_batch: Option<Arc<NewBatch>>,
    },
    /// Store nothing; answer with this outcome.
    Answer(AcceptOutcome),
}

impl Step {
    /// The outcome to report once the step is written.
    pub fn outcome(&self) -> AcceptOutcome {
        match self {
            Step::Insert { record, .. } if record.status == MessageStatus::Failed => {
                AcceptOutcome::Failed(record.clone())
            }
            // Queued or scheduled.
            Step::Insert { record, .. } => AcceptOutcome::Queued(record.clone()),
            Step::Answer(outcome) => outcome.clone(),
        }
    }
}

/// Decides every message of a group, in order. Charges are applied to `facts.balances`, and
/// each stored message with a key joins `facts.by_key`, so later messages in the same group
/// see earlier ones exactly as a later group would.
///
/// The messages of one multi-recipient request (consecutive, sharing a `batch`) are decided
/// together: if the balance cannot pay for every one of them that would be charged, none is
/// stored and each answers [`AcceptOutcome::InsufficientCredits`].
pub fn plan(batch: &[NewMessage], facts: &mut Facts) -> Vec<Step> {
    let mut steps = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let Some(request) = &batch[i].batch else {
            steps.push(decide(&batch[i], facts));
            i += 1;
            continue;
        };
        let run = batch[i..].iter().take_while(|m| m.batch.as_ref().is_some_and(|b| b.id == request.id)).count();
        let members = &batch[i..i + run];
        // The sender rules come before the balance, as for a single message; the members of one
        // request share their account and sender.
        if let Some(refusal) = sender_refusal(&members[0], facts) {
            steps.extend(members.iter().map(|_| Step::Answer(refusal.clone())));
        } else if !affordable(members, facts) {
            steps.extend(members.iter().map(|_| Step::Answer(AcceptOutcome::InsufficientCredits)));
        } else {
            for (n, m) in members.iter().enumerate() {
                let mut step = decide(m, facts);
                if let Step::Insert { new_batch, .. } = &mut step
                    && n == 0
                {
                    *new_batch = Some(request.clone());
                }
                steps.push(step);
            }
        }
        i += run;
    }
    steps
}

/// Why the message's sender may not send it, if it may not.
fn sender_refusal(m: &NewMessage, facts: &Facts) -> Option<AcceptOutcome> {
    match facts.senders.get(&m.from) {
        Some(s) if s.account_id != m.account_id => Some(AcceptOutcome::SenderNotAssigned),
        None => Some(AcceptOutcome::SenderNotAssigned),
        Some(s) if !s.active => Some(AcceptOutcome::SenderInactive),
        Some(s) if !s.can_send(m.kind) => Some(AcceptOutcome::SenderNotCapable),
        Some(_) => None,
    }
}

/// Whether the account can pay for every member of a request that would be charged.
fn affordable(members: &[NewMessage], facts: &Facts) -> bool {
    let Some(first) = members.first() else { return true };
    let Some(balance) = facts.balances.get(&first.account_id) else { return false };
    let mut balance = *balance;
    members.iter().filter(|m| refusal(m, facts).is_none()).all(|m| balance.charge(m.price).is_ok())
}

/// Why the message is stored failed and free rather than charged, if it is: the operator's
/// rules refused its destination, the account's own rules do, or the recipient opted out
/// from the sender.
fn refusal(m: &NewMessage, facts: &Facts) -> Option<ErrorType> {
    m.refusal
        .or_else(|| {
            let destination = m.destination.as_ref()?;
            facts.destinations.get(&m.account_id)?.refusal(destination)
        })
        .or_else(|| facts.opted_out.contains(&(m.from.clone(), m.to.clone())).then_some(ErrorType::OptedOut))
}

fn decide(m: &NewMessage, facts: &mut Facts) -> Step {
    if let Some(key) = &m.idempotency_key
        && let Some(earlier) = facts.by_key.get(&(m.account_id, key.clone()))
    {
        return Step::Answer(if earlier.request_hash.as_deref() == Some(m.request_hash.as_slice()) {
            AcceptOutcome::Replayed(earlier.clone())
        } else {
            AcceptOutcome::IdempotencyConflict
        });
    }
    if let Some(refusal) = sender_refusal(m, facts) {
        return Step::Answer(refusal);
    }

    let mut record = MessageRecord {
        id: m.id,
        account_id: m.account_id,
        direction: Direction::Outbound,
        kind: m.kind,
        to: m.to.clone(),
        from: m.from.clone(),
        body: m.body.clone(),
        media: m.media.clone(),
        encoding: m.encoding,
        segments: m.segments,
        status: if m.scheduled_for.is_some() { MessageStatus::Scheduled } else { MessageStatus::Queued },
        error_type: None,
        error_message: None,
        charged: Credits::ZERO,
        idempotency_key: m.idempotency_key.clone(),
        request_hash: Some(m.request_hash.clone()),
        attempts: u32::from(m.claim_until.is_some() && m.scheduled_for.is_none()),
        unavailable_attempts: 0,
        next_attempt_at: m.scheduled_for.or(m.claim_until).unwrap_or(m.created_at),
        provider_message_id: None,
        created_at: m.created_at,
        updated_at: m.created_at,
        sent_at: None,
        batch_id: m.batch.as_ref().map(|b| b.id),
        channel_id: m.channel_id,
        expires_at: m.expires_at,
        details: m.details.clone(),
        notify_url: m.notify_url.clone(),
        destination: m.destination,
        request_id: m.request_id.clone(),
    };

    let charge = if let Some(error) = refusal(m, facts) {
        record.status = MessageStatus::Failed;
        record.error_type = Some(error);
        record.error_message = Some(error.description().to_owned());
        None
    } else {
        let Some(balance) = facts.balances.get_mut(&m.account_id) else {
            return Step::Answer(AcceptOutcome::InsufficientCredits);
        };
        match balance.charge(m.price) {
            Ok(delta) => {
                record.charged = m.price;
                Some((delta, balance.credits()))
            }
            Err(_) => return Step::Answer(AcceptOutcome::InsufficientCredits),
        }
    };
    if let Some(key) = &m.idempotency_key {
        facts.by_key.insert((m.account_id, key.clone()), record.clone());
    }
    Step::Insert { record, charge, new_batch: None }
}

/// The events a newly stored message starts with.
pub fn initial_events(record: &MessageRecord) -> [(MessageStatus, Option<ErrorType>); 2] {
    [(MessageStatus::Accepted, None), (record.status, record.error_type)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::{Encoding, MessageId, MessageKind, Timestamp};

    fn n(number: &str) -> Msisdn {
        Msisdn::parse(number).unwrap()
    }

    fn s(number: &str) -> SenderId {
        SenderId::parse(number).unwrap()
    }

    fn sender(account: AccountId) -> SenderRecord {
        SenderRecord {
            address: s("+18005559876"),
            account_id: account,
            active: true,
            sms: true,
            mms: false,
            created_at: Timestamp::from_millis(0),
        }
    }

    fn msg(account: AccountId, key: Option<&str>, body: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            account_id: account,
            kind: MessageKind::Sms,
            to: n("+18005551234"),
            from: s("+18005559876"),
            body: Some(body.into()),
            media: Vec::new(),
            encoding: Encoding::Gsm7,
            segments: 1,
            price: Credits::new(2, 0),
            idempotency_key: key.map(str::to_owned),
            request_hash: body.as_bytes().to_vec(),
            created_at: Timestamp::from_millis(1),
            claim_until: None,
            batch: None,
            channel_id: None,
            scheduled_for: None,
            expires_at: None,
            details: None,
            notify_url: None,
            destination: None,
            refusal: None,
            request_id: None,
        }
    }

    fn facts(account: AccountId, sms: i64) -> Facts {
        let mut f = Facts::default();
        f.balances.insert(account, Balance::new(Credits::new(sms, 0)).unwrap());
        f.senders.insert(s("+18005559876"), sender(account));
        f
    }

    #[test]
    fn charges_until_the_balance_runs_out() {
        let a = AccountId::new();
        let mut f = facts(a, 5);
        let steps = plan(&[msg(a, None, "1"), msg(a, None, "2"), msg(a, None, "3")], &mut f);
        assert!(matches!(steps[0].outcome(), AcceptOutcome::Queued(_)));
        assert!(matches!(steps[1].outcome(), AcceptOutcome::Queued(_)));
        assert_eq!(steps[2].outcome(), AcceptOutcome::InsufficientCredits);
        assert_eq!(f.balances[&a].credits(), Credits::new(1, 0));
    }

    #[test]
    fn same_key_in_one_group_replays_or_conflicts() {
        let a = AccountId::new();
        let mut f = facts(a, 100);
        let steps = plan(&[msg(a, Some("k"), "x"), msg(a, Some("k"), "x"), msg(a, Some("k"), "y")], &mut f);
        let AcceptOutcome::Queued(first) = steps[0].outcome() else { panic!() };
        assert_eq!(steps[1].outcome(), AcceptOutcome::Replayed(first));
        assert_eq!(steps[2].outcome(), AcceptOutcome::IdempotencyConflict);
        assert_eq!(f.balances[&a].credits(), Credits::new(98, 0));
    }

    #[test]
    fn sender_rules() {
        let a = AccountId::new();
        let other = AccountId::new();
        let mut f = facts(a, 100);
        assert_eq!(plan(&[msg(other, None, "x")], &mut f)[0].outcome(), AcceptOutcome::SenderNotAssigned);
        f.senders.get_mut(&s("+18005559876")).unwrap().active = false;
        assert_eq!(plan(&[msg(a, None, "x")], &mut f)[0].outcome(), AcceptOutcome::SenderInactive);
        f.senders.get_mut(&s("+18005559876")).unwrap().active = true;
        let mut mms = msg(a, None, "x");
        mms.kind = MessageKind::Mms;
        assert_eq!(plan(&[mms], &mut f)[0].outcome(), AcceptOutcome::SenderNotCapable);
    }

    #[test]
    fn a_request_is_admitted_all_or_nothing() {
        let a = AccountId::new();
        let request = Arc::new(NewBatch {
            id: switchboard_domain::BatchId::new(),
            account_id: a,
            kind: MessageKind::Sms,
            from: s("+18005559876"),
            body: Some("x".into()),
            recipients: 3,
            first_message_id: MessageId::new(),
            created_at: Timestamp::from_millis(1),
        });
        let member = |to: &str| {
            let mut m = msg(a, None, "x");
            m.to = n(to);
            m.batch = Some(request.clone());
            m
        };
        let members = [member("+18005550001"), member("+18005550002"), member("+18005550003")];

        // A sender refusal comes first, whatever the balance.
        let mut f = facts(a, 0);
        f.senders.get_mut(&s("+18005559876")).unwrap().active = false;
        let steps = plan(&members, &mut f);
        assert!(steps.iter().all(|s| s.outcome() == AcceptOutcome::SenderInactive));

        // 5 credits cannot pay for three messages at 2: nothing is charged.
        let mut f = facts(a, 5);
        let steps = plan(&members, &mut f);
        assert!(steps.iter().all(|s| s.outcome() == AcceptOutcome::InsufficientCredits));
        assert_eq!(f.balances[&a].credits(), Credits::new(5, 0));

        // With one recipient opted out, two charged messages fit; the request is stored once.
        f.opted_out.insert((s("+18005559876"), n("+18005550002")));
        let steps = plan(&members, &mut f);
        assert!(matches!(&steps[0], Step::Insert { new_batch: Some(_), .. }));
        assert!(matches!(&steps[1], Step::Insert { new_batch: None, charge: None, .. }));
        assert!(matches!(steps[2].outcome(), AcceptOutcome::Queued(_)));
        assert_eq!(f.balances[&a].credits(), Credits::new(1, 0));
    }

    #[test]
    fn opted_out_is_stored_failed_and_free() {
        let a = AccountId::new();
        let mut f = facts(a, 0);
        f.opted_out.insert((s("+18005559876"), n("+18005551234")));
        let step = plan(&[msg(a, None, "x")], &mut f).remove(0);
        let Step::Insert { record, charge: None, .. } = &step else { panic!("{step:?}") };
        assert_eq!(record.status, MessageStatus::Failed);
        assert_eq!(record.error_type, Some(ErrorType::OptedOut));
        assert!(matches!(step.outcome(), AcceptOutcome::Failed(_)));
    }

    #[test]
    fn refused_destinations_are_stored_failed_and_free() {
        use switchboard_domain::{Destination, NumberType, Region};
        let a = AccountId::new();
        let us =
            Destination { valid: true, number_type: NumberType::FixedLineOrMobile, region: Region::parse("US").ok() };
        let mut f = facts(a, 2);
        f.destinations.insert(
            a,
            AccountDestinations { allowed_regions: Some([Region::parse("CA").unwrap()].into()), fixed_or_mobile: true },
        );
        // The operator's refusal, then the account's country list; neither is charged.
        let mut refused = msg(a, None, "x");
        refused.refusal = Some(ErrorType::ServiceRestricted);
        let mut outside = msg(a, None, "y");
        outside.destination = Some(us);
        let steps = plan(&[refused, outside.clone()], &mut f);
        for (step, error) in steps.iter().zip([ErrorType::ServiceRestricted, ErrorType::GeographicRestriction]) {
            let Step::Insert { record, charge: None, .. } = step else { panic!("{step:?}") };
            assert_eq!((record.status, record.error_type), (MessageStatus::Failed, Some(error)));
            assert_eq!(record.charged, Credits::ZERO);
        }
        assert_eq!(f.balances[&a].credits(), Credits::new(2, 0));
        // Another account without a list sends there, and pays.
        let b = AccountId::new();
        f.balances.insert(b, Balance::new(Credits::new(2, 0)).unwrap());
        f.senders.insert(s("+18005559876"), sender(b));
        outside.account_id = b;
        let step = plan(&[outside], &mut f).remove(0);
        let Step::Insert { record, charge: Some(_), .. } = &step else { panic!("{step:?}") };
        assert_eq!(record.destination, Some(us));
        assert_eq!(f.balances[&b].credits(), Credits::ZERO);
    }
}

//! The records [`crate::Store::receive_inbound`] stores, built the same way on both backends.

use switchboard_domain::{AccountId, Direction, MessageKind, MessageStatus, Timestamp};
use switchboard_ledger::Credits;
use uuid::Uuid;

use crate::{MessageRecord, NewInbound, NewReply};

/// The inbound message: `received`, free, from the handset to the account's number, on
/// `channel` (the account's oldest active channel on that number, if any).
pub(crate) fn inbound_record(inbound: &NewInbound, account: AccountId, channel: Option<Uuid>) -> MessageRecord {
    MessageRecord {
        id: inbound.id,
        account_id: account,
        direction: Direction::Inbound,
        kind: inbound.kind,
        to: inbound.to.clone(),
        from: inbound.from.clone().into(),
        body: inbound.body.clone(),
        media: inbound.media.clone(),
        encoding: inbound.encoding,
        segments: inbound.segments,
        status: MessageStatus::Received,
        error_type: None,
        error_message: None,
        charged: Credits::ZERO,
        idempotency_key: None,
        request_hash: None,
        attempts: 0,
        unavailable_attempts: 0,
        next_attempt_at: inbound.received_at,
        provider_message_id: inbound.provider_ref.clone(),
        created_at: inbound.received_at,
        updated_at: inbound.received_at,
        sent_at: None,
        batch_id: None,
        channel_id: channel,
        expires_at: None,
        details: None,
        notify_url: None,
        destination: None,
        request_id: None,
    }
}

/// The automatic answer: an outbound SMS back from the number written to, queued and due at
/// `now`, free, on the inbound message's channel.
pub(crate) fn reply_record(
    inbound: &NewInbound,
    reply: &NewReply,
    account: AccountId,
    channel: Option<Uuid>,
    now: Timestamp,
) -> MessageRecord {
    MessageRecord {
        id: reply.id,
        direction: Direction::Outbound,
        kind: MessageKind::Sms,
        to: inbound.from.clone(),
        from: inbound.to.clone().into(),
        body: Some(reply.body.clone()),
        media: Vec::new(),
        encoding: reply.encoding,
        segments: reply.segments,
        status: MessageStatus::Queued,
        next_attempt_at: now,
        provider_message_id: None,
        created_at: now,
        updated_at: now,
        ..inbound_record(inbound, account, channel)
    }
}

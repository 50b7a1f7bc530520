//! What happens after a message leaves: delivery receipts, inbound messages, and the opt-out
//! keywords (STOP, START, HELP) a handset can send.
//!
//! Receipts and inbound messages come from the provider as [`ProviderEvent`]s (or from the
//! operator, standing in for a carrier). Receipts are stored in groups, one transaction each,
//! like dispatch results; an inbound message is stored with its opt-out change and automatic
//! reply in one transaction. Each event's [`Ack`] is answered only after that transaction has
//! committed (or when it failed), so that an upstream acknowledges nothing to its carrier
//! before it is stored.

use std::sync::Arc;
use std::time::Duration;

use switchboard_domain::encoding;
use switchboard_domain::{MessageId, MessageKind, MessageStatus, Msisdn, Timestamp};
use switchboard_provider::simulator::{self, SentPart, Simulator};
use switchboard_provider::{Ack, EventReceiver, InboundMessage, ProviderEvent, Receipt, ReceiptStatus, Report};
use switchboard_records::{InboundOutcome, NewInbound, NewReply, OptOutChange, ReceiptOutcome, ReceiptUpdate};
use switchboard_storage::{StorageError, Store};
use tokio::sync::{mpsc, oneshot};

use crate::AccessError;

/// Longest inbound text, in characters (ten concatenated UCS-2 parts and then some).
pub const MAX_INBOUND_CHARS: usize = 1600;
/// Most media URLs on one inbound message.
pub const MAX_INBOUND_MEDIA: usize = 10;
/// Most receipts in one call.
pub const MAX_RECEIPTS: usize = 1000;

/// The answers sent to the opt-out keywords; an empty text sends no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordReplies {
    /// The answer to STOP and its synonyms.
    pub stop: String,
    /// The answer to START and its synonyms.
    pub start: String,
    /// The answer to HELP.
    pub help: String,
}

impl Default for KeywordReplies {
    fn default() -> Self {
        Self {
            stop: "You have been unsubscribed and will receive no more messages from this number. \
                   Reply START to resubscribe."
                .into(),
            start: "You have been resubscribed and will receive messages from this number again. \
                    Reply STOP to unsubscribe."
                .into(),
            help: "Reply STOP to unsubscribe, START to resubscribe. Msg & data rates may apply.".into(),
        }
    }
}

/// A keyword an inbound message can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT: opt out.
    Stop,
    /// START, UNSTOP, YES: lift the opt-out.
    Start,
    /// HELP.
    Help,
}

impl Keyword {
    /// The keyword a whole message text is (trimmed, any case), if it is one.
    pub fn of(body: &str) -> Option<Self> {
        let word = body.trim().to_ascii_uppercase();
        Some(match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => Keyword::Stop,
            "START" | "UNSTOP" | "YES" => Keyword::Start,
            "HELP" => Keyword::Help,
            _ => return None,
        })
    }
}

/// What the operator (or a carrier) reports as received from a handset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The handset, E.164.
    pub from: String,
    /// The number it wrote to, E.164: one of an account's senders.
    pub to: String,
    /// Text.
    pub body: Option<String>,
    /// Media URLs.
    pub media: Vec<String>,
    /// The upstream's id for it.
    pub provider_ref: Option<String>,
}

/// Turns a provider receipt into the store's form.
pub fn receipt_update(r: Receipt) -> ReceiptUpdate {
    let status = match r.status {
        ReceiptStatus::Delivered => MessageStatus::Delivered,
        ReceiptStatus::Undelivered => MessageStatus::Undelivered,
        ReceiptStatus::Failed => MessageStatus::Failed,
    };
    ReceiptUpdate {
        provider_ref: r.provider_ref,
        status,
        error_type: r.error_type,
        description: r.description,
        at: r.at,
    }
}

/// Stores receipts in groups: many receipts, one transaction.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptRecorder {
    tx: mpsc::UnboundedSender<ReceiptJob>,
}

/// Most receipts stored in one transaction.
const RECEIPT_BATCH: usize = 1024;
/// How long the recorder waits for more receipts before storing a small group.
const RECEIPT_GATHER: Duration = Duration::from_millis(2);
/// How often a group is tried before its receipts are given up (and logged).
const RECEIPT_TRIES: u32 = 10;

impl ReceiptRecorder {
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(record_receipts(store, rx));
        Self { tx }
    }

    /// Stores a receipt without waiting, and answers `ack` once its group has committed (or
    /// drops it unanswered if the group could not be stored).
    pub(crate) fn push(&self, receipt: ReceiptUpdate, ack: Ack) {
        let _ = self.tx.send((vec![receipt], Reply::Ack(ack)));
    }

    /// Stores receipts and waits for what each did.
    pub(crate) async fn record(&self, receipts: Vec<ReceiptUpdate>) -> Result<Vec<ReceiptOutcome>, AccessError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((receipts, Reply::Outcomes(reply))).map_err(|_| AccessError::Unavailable)?;
        rx.await.map_err(|_| AccessError::Unavailable)?
    }
}

/// Who hears that a job's receipts are stored.
#[derive(Debug)]
enum Reply {
    /// A caller waiting for what each receipt did.
    Outcomes(oneshot::Sender<Result<Vec<ReceiptOutcome>, AccessError>>),
    /// The upstream that reported it, which acknowledges it to its sender once it is stored.
    Ack(Ack),
}

/// Receipts to store, and who hears that they are.
type ReceiptJob = (Vec<ReceiptUpdate>, Reply);

async fn record_receipts(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<ReceiptJob>) {
    let mut jobs: Vec<ReceiptJob> = Vec::new();
    loop {
        if rx.recv_many(&mut jobs, RECEIPT_BATCH).await == 0 {
            return;
        }
        if jobs.len() < RECEIPT_BATCH / 4 {
            tokio::time::sleep(RECEIPT_GATHER).await;
            while jobs.len() < RECEIPT_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let receipts: Vec<ReceiptUpdate> = jobs.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        let mut tries = 0;
        let result = loop {
            tries += 1;
            match store.record_receipts(&receipts).await {
                Ok(outcomes) => break Ok(outcomes),
                Err(e) if tries < RECEIPT_TRIES => {
                    tracing::error!(error = %e, count = receipts.len(), "storing receipts failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(outcomes) => {
                for o in &outcomes {
                    let what = match o {
                        ReceiptOutcome::Applied { .. } => "applied",
                        ReceiptOutcome::Ignored => "ignored",
                        ReceiptOutcome::Unmatched => "unmatched",
                    };
                    metrics::counter!("switchboard_receipts_total", "outcome" => what).increment(1);
                }
                let mut outcomes = outcomes.into_iter();
                for (r, reply) in jobs.drain(..) {
                    let own: Vec<_> = outcomes.by_ref().take(r.len()).collect();
                    match reply {
                        Reply::Outcomes(reply) => {
                            let _ = reply.send(Ok(own));
                        }
                        Reply::Ack(ack) => ack.stored(),
                    }
                }
            }
            Err(e) => {
                // The upstreams that wait answer their carriers with a temporary error, so
                // that the receipts are sent again.
                tracing::error!(error = %e, count = receipts.len(), "storing receipts failed; not acknowledged");
                for (_, reply) in jobs.drain(..) {
                    match reply {
                        Reply::Outcomes(reply) => {
                            let _ = reply.send(Err(AccessError::Unavailable));
                        }
                        Reply::Ack(ack) => ack.not_stored(),
                    }
                }
            }
        }
    }
}

/// Reads the provider's events until it stops: receipts to the recorder, inbound messages to
/// the inbound path. Each event's acknowledgement is answered once it is stored: `stored` after
/// the commit, `refused` for an inbound message that can never be stored (it names no
/// account's number, or fails the checks), and unanswered when storage failed.
pub(crate) async fn provider_events(core: crate::Core, mut events: EventReceiver) {
    while let Some(Report { event, ack }) = events.recv().await {
        match event {
            ProviderEvent::Receipt(r) => core.inner.receipts.push(receipt_update(r), ack),
            ProviderEvent::PartSent { message, part, provider_ref } => {
                let store = core.inner.store.clone();
                tokio::spawn(async move {
                    match store.record_sent_part(message, part, &provider_ref, Timestamp::now()).await {
                        Ok(()) => ack.stored(),
                        Err(e) => {
                            tracing::warn!(error = %e, message_id = %message, part, "a part sent could not be recorded");
                            ack.not_stored();
                        }
                    }
                });
            }
            ProviderEvent::Ready { upstream } => {
                tracing::info!(%upstream, "upstream ready");
                core.inner.upstream_ready.notify_one();
            }
            ProviderEvent::Inbound(m) => {
                let core = core.clone();
                tokio::spawn(async move {
                    match core.receive(inbound_of(m)).await {
                        Ok(_) => ack.stored(),
                        Err(AccessError::Unavailable) => {
                            tracing::warn!("an inbound message could not be stored; not acknowledged");
                            ack.not_stored();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "an inbound message was refused");
                            ack.refused();
                        }
                    }
                });
            }
        }
    }
}

fn inbound_of(m: InboundMessage) -> Inbound {
    Inbound {
        from: m.from.as_str().to_owned(),
        to: m.to.as_str().to_owned(),
        body: m.body,
        media: m.media,
        provider_ref: m.provider_ref,
    }
}

/// Most parts read back in one page when resuming the simulator's receipts.
const RESUME_PAGE: u32 = 1000;
/// How often a page is tried before resuming gives up (and logs it).
const RESUME_TRIES: u32 = 10;

impl crate::Core {
    /// Hands `simulator` the parts that a simulator took before this start and that still wait
    /// for their receipt (`sent` parts of `sent` messages whose ids carry the simulator's
    /// prefix), so that it sends their receipts when they are due: the simulator keeps the
    /// receipts it owes in memory only. Reads the store page by page in a task of its own and
    /// returns at once; the task ends with how many receipts it scheduled.
    ///
    /// On PostgreSQL every node that starts does this for every such part, whichever node's
    /// simulator took it: a receipt for a part already settled changes nothing, so the
    /// duplicates are harmless. Parts recorded after this call are left to the simulator that
    /// took them.
    pub fn resume_simulator_receipts(&self, simulator: Simulator) -> tokio::task::JoinHandle<usize> {
        let store = self.inner.store.clone();
        let started = Timestamp::now();
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            let mut scheduled = 0;
            loop {
                let mut tries = 0;
                let page = loop {
                    tries += 1;
                    match store.pending_parts(simulator::ID_PREFIX, after.as_deref(), RESUME_PAGE).await {
                        Ok(page) => break page,
                        Err(e) if tries < RESUME_TRIES => {
                            tracing::warn!(error = %e, "reading the simulator's pending receipts failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reading the simulator's pending receipts failed; they wait for the next start");
                            return scheduled;
                        }
                    }
                };
                let Some(last) = page.last() else { break };
                after = Some(last.provider_ref.clone());
                let full = page.len() >= RESUME_PAGE as usize;
                let parts = page
                    .into_iter()
                    .filter(|p| p.sent_at <= started)
                    .map(|p| SentPart {
                        provider_ref: p.provider_ref,
                        recipient: p.to,
                        part: p.part,
                        parts: p.parts,
                        sent_at: p.sent_at,
                    })
                    .collect();
                scheduled += simulator.resume(parts);
                if !full {
                    break;
                }
            }
            if scheduled > 0 {
                tracing::info!(
                    receipts = scheduled,
                    "the simulator's receipts pending before this start are scheduled"
                );
            }
            scheduled
        })
    }

    /// Stores delivery receipts and says what each did.
    pub async fn record_receipts(&self, receipts: Vec<Receipt>) -> Result<Vec<ReceiptOutcome>, AccessError> {
        if receipts.is_empty() || receipts.len() > MAX_RECEIPTS {
            return Err(AccessError::Invalid(format!("receipts: 1 to {MAX_RECEIPTS}")));
        }
        for r in &receipts {
            if r.provider_ref.is_empty() || r.provider_ref.len() > 255 || r.provider_ref.chars().any(char::is_control) {
                return Err(AccessError::Invalid("providerRef: 1 to 255 printable characters".into()));
            }
            if r.description.as_ref().is_some_and(|d| d.chars().count() > 500 || d.contains('\0')) {
                return Err(AccessError::Invalid("description: at most 500 characters".into()));
            }
        }
        self.inner.receipts.record(receipts.into_iter().map(receipt_update).collect()).await
    }

    /// A message's parts as the upstream knows them.
    pub async fn message_parts(&self, id: MessageId) -> Result<Vec<switchboard_records::PartRecord>, AccessError> {
        self.inner.store.message_parts(id).await.map_err(AccessError::from_storage("message"))
    }

    /// Stores a message received from a handset, acting on an opt-out keyword and answering
    /// it. `NotFound` when the number it was sent to is no account's sender.
    pub async fn receive(&self, inbound: Inbound) -> Result<InboundOutcome, AccessError> {
        let from = Msisdn::parse(&inbound.from).map_err(|e| AccessError::Invalid(format!("from: {e}")))?;
        let to = Msisdn::parse(&inbound.to).map_err(|e| AccessError::Invalid(format!("to: {e}")))?;
        let body = inbound.body.filter(|b| !b.is_empty());
        if let Some(b) = &body {
            if b.chars().count() > MAX_INBOUND_CHARS {
                return Err(AccessError::Invalid(format!("body: at most {MAX_INBOUND_CHARS} characters")));
            }
            if b.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
                return Err(AccessError::Invalid("body: control characters are not allowed".into()));
            }
        }
        if inbound.media.len() > MAX_INBOUND_MEDIA {
            return Err(AccessError::Invalid(format!("mediaUrls: at most {MAX_INBOUND_MEDIA}")));
        }
        for url in &inbound.media {
            self.policy()
                .check_media_url(url)
                .map_err(|_| AccessError::Invalid("mediaUrls: each must be an absolute http(s) URL".into()))?;
        }
        if body.is_none() && inbound.media.is_empty() {
            return Err(AccessError::Invalid("body: a text or media is required".into()));
        }
        if let Some(r) = &inbound.provider_ref
            && (r.is_empty() || r.len() > 255 || r.chars().any(char::is_control))
        {
            return Err(AccessError::Invalid("providerRef: 1 to 255 printable characters".into()));
        }
        let info = encoding::analyze(body.as_deref().unwrap_or(""));
        let keyword = body.as_deref().and_then(Keyword::of).filter(|_| inbound.media.is_empty());
        let replies = &self.inner.config.replies;
        let (change, answer) = match keyword {
            Some(Keyword::Stop) => (OptOutChange::OptOut, replies.stop.as_str()),
            Some(Keyword::Start) => (OptOutChange::OptIn, replies.start.as_str()),
            Some(Keyword::Help) => (OptOutChange::Keep, replies.help.as_str()),
            None => (OptOutChange::Keep, ""),
        };
        let reply = (!answer.is_empty()).then(|| {
            let text = encoding::analyze(answer);
            NewReply { id: MessageId::new(), body: answer.to_owned(), encoding: text.encoding, segments: text.segments }
        });
        let kind = if inbound.media.is_empty() { MessageKind::Sms } else { MessageKind::Mms };
        let message = NewInbound {
            id: MessageId::new(),
            from,
            to,
            kind,
            body,
            media: inbound.media,
            encoding: info.encoding,
            segments: info.segments.max(1),
            provider_ref: inbound.provider_ref,
            received_at: Timestamp::now(),
        };
        let outcome =
            self.inner.store.receive_inbound(&message, change, reply.as_ref()).await.map_err(|e| match e {
                StorageError::NotFound => AccessError::NotFound("number"),
                other => AccessError::from_storage("message")(other),
            })?;
        metrics::counter!("switchboard_messages_received_total").increment(1);
        if outcome.opt_out_changed {
            let what = if change == OptOutChange::OptOut { "added" } else { "removed" };
            metrics::counter!("switchboard_opt_outs_total", "change" => what).increment(1);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_trimmed_words_in_any_case() {
        for w in ["STOP", "stop", " Stop\n", "STOPALL", "unsubscribe", "Cancel", "END", "quit"] {
            assert_eq!(Keyword::of(w), Some(Keyword::Stop), "{w:?}");
        }
        for w in ["START", "unstop", " yes "] {
            assert_eq!(Keyword::of(w), Some(Keyword::Start), "{w:?}");
        }
        assert_eq!(Keyword::of("help"), Some(Keyword::Help));
        for w in ["STOP IT", "please stop", "", "stops", "yes please", "HELPME"] {
            assert_eq!(Keyword::of(w), None, "{w:?}");
        }
    }

    #[test]
    fn default_replies_are_single_gsm7_messages() {
        let r = KeywordReplies::default();
        for text in [&r.stop, &r.start, &r.help] {
            let info = encoding::analyze(text);
            assert_eq!(info.encoding, switchboard_domain::Encoding::Gsm7, "{text}");
            assert!(info.segments == 1, "{text}: {} parts", info.segments);
        }
    }
}

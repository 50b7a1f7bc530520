//! Multi-recipient sends, their history, message statistics, access tokens and request rate
//! limits: what the Mudbase dialect needs, kept free of its wire format.

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use switchboard_domain::{AccountId, BatchId, MessageId, MessageKind, MessageStatus, SenderId, Timestamp};
use switchboard_records::{
    AcceptOutcome, AccountRecord, BatchRecord, BatchState, MessageCounts, MessageRecord, NewBatch, NewMessage,
};
use switchboard_validation::BatchCommand;

use crate::{AccessError, AccessToken, AuthError, Core, RetryAfter, SendError, apply_news};

/// Most requests one history page shows.
pub const MAX_HISTORY_PAGE: u32 = 100;

/// A multi-recipient send that was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSent {
    /// The request, with its counts as of the response.
    pub batch: BatchRecord,
    /// Each recipient's message, in the order of the recipients, as of the response.
    pub messages: Vec<MessageRecord>,
}

/// One page of an account's multi-recipient requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The requests, newest first.
    pub items: Vec<BatchRecord>,
    /// How many match in all.
    pub total: u64,
    /// The page (from 1).
    pub page: u32,
    /// Requests per page.
    pub limit: u32,
}

/// Outbound messages created in a period, by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStats {
    /// Start of the period (inclusive).
    pub from: Timestamp,
    /// End of the period (exclusive).
    pub to: Timestamp,
    /// The counts.
    pub counts: MessageCounts,
}

impl Core {
    /// Sends one SMS text to several recipients: each recipient is a message of its own,
    /// charged, stored, dispatched and tracked on its own, but the request is admitted whole
    /// or not at all. Opted-out recipients are stored as failed and cost nothing.
    pub async fn send_batch(&self, account: AccountId, cmd: BatchCommand) -> Result<BatchSent, SendError> {
        let from = match cmd.from {
            Some(from) => from,
            None => self.default_sender(account).await?,
        };
        let price = self.inner.config.tariff.price(MessageKind::Sms);
        let ids: Vec<MessageId> = cmd.recipients.iter().map(|_| MessageId::new()).collect();
        let batch_id = BatchId::new();
        let batch = Arc::new(NewBatch {
            id: batch_id,
            account_id: account,
            kind: MessageKind::Sms,
            from: from.clone(),
            body: Some(cmd.body.clone()),
            recipients: u32::try_from(ids.len()).map_err(|_| SendError::Unavailable)?,
            first_message_id: ids[0],
            created_at: batch_id.created_at(),
        });
        let mut hash = Sha256::new();
        hash.update(from.as_str().as_bytes());
        hash.update([0]);
        hash.update(cmd.body.as_bytes());
        let request_hash = hash.finalize().to_vec();
        let lease = self.inner.config.dispatcher.lease.as_millis() as i64;
        let mut checked = Vec::with_capacity(cmd.recipients.len());
        for to in &cmd.recipients {
            checked.push(self.check_destination(to, MessageKind::Sms).await?);
        }
        let request_id = crate::request::current();
        let messages: Vec<NewMessage> = cmd
            .recipients
            .iter()
            .zip(&ids)
            .zip(checked)
            .map(|((to, id), (destination, refusal))| NewMessage {
                id: *id,
                account_id: account,
                request_id: request_id.clone(),
                kind: MessageKind::Sms,
                to: to.clone(),
                from: from.clone(),
                body: Some(cmd.body.clone()),
                media: Vec::new(),
                encoding: cmd.text.encoding,
                segments: cmd.text.segments,
                price,
                idempotency_key: None,
                request_hash: request_hash.clone(),
                created_at: id.created_at(),
                claim_until: self.inner.config.run_dispatcher.then(|| id.created_at().plus_millis(lease)),
                batch: Some(batch.clone()),
                channel_id: None,
                scheduled_for: None,
                expires_at: None,
                details: None,
                notify_url: None,
                destination,
                refusal,
            })
            .collect();

        let wait = self.inner.config.sent_wait;
        let mut news: Vec<_> = if wait.is_zero() {
            Vec::new()
        } else {
            ids.iter().map(|id| Some(self.inner.waiters.register(*id))).collect()
        };
        let cancel_all = |core: &Core| ids.iter().for_each(|id| core.inner.waiters.cancel(*id));
        let outcomes = match self.inner.committer.submit_all(messages).await {
            Ok(o) => o,
            Err(_) => {
                cancel_all(self);
                return Err(SendError::Unavailable);
            }
        };
        let mut records = Vec::with_capacity(outcomes.len());
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let record = match outcome {
                AcceptOutcome::Queued(r) => r,
                AcceptOutcome::Failed(r) => {
                    if let Some(n) = news.get_mut(i) {
                        *n = None;
                    }
                    self.inner.waiters.cancel(r.id);
                    r
                }
                refused => {
                    cancel_all(self);
                    return Err(match refused {
                        AcceptOutcome::SenderNotAssigned => SendError::SenderNotAssigned,
                        AcceptOutcome::SenderInactive => SendError::SenderInactive,
                        AcceptOutcome::SenderNotCapable => SendError::SenderNotCapable,
                        AcceptOutcome::InsufficientCredits => SendError::InsufficientCredits,
                        // Multi-recipient messages carry no idempotency key.
                        _ => SendError::Unavailable,
                    });
                }
            };
            records.push(record);
        }
        for record in &records {
            if record.status == MessageStatus::Failed {
                crate::count_failed(record);
            } else {
                metrics::counter!("switchboard_messages_accepted_total").increment(1);
                crate::destinations::count(record);
            }
        }

        // Wait, all together, for the provider to take the queued ones.
        let deadline = tokio::time::Instant::now() + wait;
        for (record, rx) in records.iter_mut().zip(news) {
            let Some(rx) = rx else { continue };
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(n)) => apply_news(record, n),
                _ => self.inner.waiters.cancel(record.id),
            }
        }
        let count = |s: MessageStatus| records.iter().filter(|r| r.status == s).count() as u32;
        let batch = BatchRecord {
            id: batch.id,
            account_id: account,
            kind: batch.kind,
            from: batch.from.clone(),
            body: batch.body.clone(),
            recipients: batch.recipients,
            first_message_id: batch.first_message_id,
            sent: count(MessageStatus::Sent),
            failed: count(MessageStatus::Failed),
            sent_at: records.iter().filter_map(|r| r.sent_at).min(),
            created_at: batch.created_at,
        };
        Ok(BatchSent { batch, messages: records })
    }

    /// The sender a request that names none sends from: the account's first active SMS sender.
    async fn default_sender(&self, account: AccountId) -> Result<SenderId, SendError> {
        let senders = self.inner.store.list_senders(account).await.map_err(|_| SendError::Unavailable)?;
        senders.into_iter().find(|s| s.active && s.sms).map(|s| s.address).ok_or(SendError::NoDefaultSender)
    }

    /// One page (from 1) of the account's multi-recipient requests, newest first, optionally
    /// only those in one state.
    pub async fn history(
        &self,
        account: AccountId,
        state: Option<BatchState>,
        page: u32,
        limit: u32,
    ) -> Result<HistoryPage, AccessError> {
        let (page, limit) = (page.max(1), limit.clamp(1, MAX_HISTORY_PAGE));
        let offset = u64::from(page - 1) * u64::from(limit);
        let (items, total) = self
            .inner
            .store
            .list_batches(account, state, offset, limit)
            .await
            .map_err(AccessError::from_storage("message"))?;
        Ok(HistoryPage { items, total, page, limit })
    }

    /// Counts the account's outbound messages created in `[from, to)` by status.
    pub async fn message_stats(
        &self,
        account: AccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<MessageStats, AccessError> {
        if to < from {
            return Err(AccessError::Invalid("endDate: must not be before startDate".into()));
        }
        let counts =
            self.inner.store.message_counts(account, from, to).await.map_err(AccessError::from_storage("message"))?;
        Ok(MessageStats { from, to, counts })
    }

    /// Issues an access token for an API key already authenticated for `account`.
    pub fn issue_token(&self, key_id: &str, account: AccountId) -> AccessToken {
        self.inner.tokens.issue(key_id, account, Timestamp::now())
    }

    /// Checks an access token presented from `client` (its address, if known), and that its
    /// key is still valid; returns its account. A failure counts against the address's failure
    /// budget, and an address over it is refused before the token is checked.
    pub async fn authenticate_token(
        &self,
        client: Option<std::net::IpAddr>,
        token: &str,
    ) -> Result<AccountId, AuthError> {
        self.inner.guard.admit(client).map_err(AuthError::Throttled)?;
        let checked = match self.inner.tokens.verify(token) {
            Ok((key_id, account)) => {
                self.inner.auth.check_key(self.inner.store.as_ref(), &key_id, account).await.map(|()| account)
            }
            Err(e) => Err(e),
        };
        if checked == Err(AuthError::InvalidCredentials) {
            // A token names its key only once its signature holds: the address alone pays.
            self.inner.guard.failed(client, None).map_err(AuthError::Throttled)?;
        }
        if let Ok(account) = &checked {
            crate::auth::note_account(*account);
        }
        checked
    }

    /// Counts one request against the account's rate limit.
    pub async fn check_rate(&self, account: AccountId) -> Result<(), RetryAfter> {
        let limiter = &self.inner.limiter;
        let rate = match limiter.known_rate(account) {
            Some(rate) => rate,
            None => match self.inner.store.get_account(account).await {
                Ok(a) => a.and_then(|a| a.rate_limit).unwrap_or(self.inner.config.default_rate_limit),
                Err(e) => {
                    // The default still applies; an unreadable setting must not refuse traffic.
                    tracing::warn!(error = %e, "reading an account's rate limit failed");
                    self.inner.config.default_rate_limit
                }
            },
        };
        limiter.take(account, rate, Instant::now())
    }

    /// Sets an account's request rate limit (`None`: the server's default).
    pub async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord, AccessError> {
        if limit == Some(0) {
            return Err(AccessError::Invalid("rateLimit: must be at least 1, or null for the default".into()));
        }
        let record =
            self.inner.store.set_rate_limit(account, limit).await.map_err(AccessError::from_storage("account"))?;
        self.inner.limiter.forget(account);
        Ok(record)
    }
}

//! The one implementation of [`Store`]: each method hands its operation in `crate::ops` to the
//! engine of the backend, as a write (one transaction, durable before it returns) or a read.

use std::collections::BTreeMap;

use switchboard_domain::{AccountDestinations, AccountId, BatchId, EventId, MessageId, Timestamp};
use switchboard_ledger::Credits;
use uuid::Uuid;

use crate::engine::Engine;
use crate::ops::{accounts, channels, console, dispatch, ledger, messages, receipts, retention, smpp, stats, webhooks};
use crate::*;

/// [`messages::accept`] as a grouped operation: concurrent admissions may share its call.
fn accept<'t, X: crate::engine::Tx>(
    tx: &'t mut X,
    batch: &'t [NewMessage],
) -> crate::engine::Op<'t, Vec<AcceptOutcome>> {
    Box::pin(messages::accept(tx, batch))
}

/// A store on one engine.
#[derive(Debug)]
pub(crate) struct Db<E> {
    pub(crate) engine: E,
}

#[async_trait]
impl<E: Engine> Store for Db<E> {
    fn backend(&self) -> Backend {
        self.engine.backend()
    }

    async fn legacy_server_secret(&self) -> Result<Option<Vec<u8>>> {
        self.engine.read(|tx| Box::pin(accounts::legacy_server_secret(tx))).await
    }

    async fn key_fingerprints(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.engine.read(|tx| Box::pin(accounts::key_fingerprints(tx))).await
    }

    async fn record_server_keys(
        &self,
        fingerprints: &[(String, Vec<u8>)],
        forget_legacy: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let fingerprints = fingerprints.to_vec();
        self.engine
            .write(move |tx| {
                Box::pin(async move { accounts::record_server_keys(tx, &fingerprints, forget_legacy).await })
            })
            .await
    }

    async fn sealed_webhook_secrets(&self) -> Result<Vec<(Uuid, SealedSecret)>> {
        self.engine.read(|tx| Box::pin(webhooks::sealed_secrets(tx))).await
    }

    async fn reseal_webhook_secret(&self, id: Uuid, old: &SealedSecret, new: &SealedSecret) -> Result<bool> {
        let (old, new) = (old.clone(), new.clone());
        self.engine.write(move |tx| Box::pin(async move { webhooks::reseal_secret(tx, id, &old, &new).await })).await
    }

    async fn scrub(&self) -> Result<()> {
        self.engine.scrub().await
    }

    async fn schema_version(&self) -> Result<i64> {
        self.engine.read(|tx| Box::pin(stats::schema_version(tx))).await
    }

    async fn backlog(&self, now: Timestamp) -> Result<Backlog> {
        self.engine.read(move |tx| Box::pin(stats::backlog(tx, now))).await
    }

    async fn write_probe(&self) -> Result<()> {
        self.engine.write(|_| Box::pin(async { Ok(()) })).await
    }

    async fn create_account(&self, name: &str) -> Result<AccountRecord> {
        let name = name.to_owned();
        self.engine.write(move |tx| Box::pin(accounts::create(tx, name))).await
    }

    async fn get_account(&self, id: AccountId) -> Result<Option<AccountRecord>> {
        self.engine.read(move |tx| Box::pin(accounts::get(tx, id))).await
    }

    async fn list_accounts(&self, page: PageRequest<AccountId>) -> Result<Vec<AccountRecord>> {
        self.engine.read(move |tx| Box::pin(accounts::list(tx, page))).await
    }

    async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord> {
        self.engine.write(move |tx| Box::pin(accounts::set_rate_limit(tx, account, limit))).await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let key = key.clone();
        self.engine.write(move |tx| Box::pin(async move { accounts::create_key(tx, &key).await })).await
    }

    async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let id = id.to_owned();
        self.engine.read(move |tx| Box::pin(async move { accounts::find_key(tx, &id).await })).await
    }

    async fn list_api_keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>> {
        self.engine.read(move |tx| Box::pin(accounts::list_keys(tx, account))).await
    }

    async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord> {
        let id = id.to_owned();
        self.engine.write(move |tx| Box::pin(async move { accounts::revoke_key(tx, account, &id, at).await })).await
    }

    async fn create_sender(&self, sender: &SenderRecord) -> Result<()> {
        let sender = sender.clone();
        self.engine.write(move |tx| Box::pin(async move { accounts::create_sender(tx, &sender).await })).await
    }

    async fn update_sender(&self, account: AccountId, address: &str, change: SenderChange) -> Result<SenderRecord> {
        let address = address.to_owned();
        self.engine
            .write(move |tx| Box::pin(async move { accounts::update_sender(tx, account, &address, change).await }))
            .await
    }

    async fn list_senders(&self, account: AccountId) -> Result<Vec<SenderRecord>> {
        self.engine.read(move |tx| Box::pin(accounts::list_senders(tx, account))).await
    }

    async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord> {
        let reference = reference.map(str::to_owned);
        self.engine.write(move |tx| Box::pin(ledger::top_up(tx, account, amount, reference))).await
    }

    async fn ledger(&self, account: AccountId, page: PageRequest<Uuid>) -> Result<Vec<LedgerRecord>> {
        self.engine.read(move |tx| Box::pin(ledger::list(tx, account, page))).await
    }

    async fn ledger_entries(
        &self,
        account: AccountId,
        filter: &LedgerFilter,
        page: PageRequest<Uuid>,
    ) -> Result<Scanned<LedgerRecord>> {
        let filter = filter.clone();
        self.engine.read(move |tx| Box::pin(async move { ledger::entries(tx, account, &filter, page).await })).await
    }

    async fn message_ledger(&self, message: MessageId) -> Result<Vec<LedgerRecord>> {
        self.engine.read(move |tx| Box::pin(ledger::of_message(tx, message))).await
    }

    async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord> {
        let (sender, recipient) = (sender.to_owned(), recipient.to_owned());
        self.engine
            .write(move |tx| Box::pin(async move { accounts::add_opt_out(tx, account, &sender, &recipient).await }))
            .await
    }

    async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()> {
        let (sender, recipient) = (sender.to_owned(), recipient.to_owned());
        self.engine
            .write(move |tx| Box::pin(async move { accounts::remove_opt_out(tx, account, &sender, &recipient).await }))
            .await
    }

    async fn list_opt_outs(&self, account: AccountId, limit: u32) -> Result<Vec<OptOutRecord>> {
        self.engine.read(move |tx| Box::pin(accounts::list_opt_outs(tx, account, limit))).await
    }

    async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.engine.write_grouped(batch.to_vec(), accept::<E::Tx>).await
    }

    async fn get_message(&self, id: MessageId) -> Result<Option<MessageRecord>> {
        self.engine.read(move |tx| Box::pin(messages::get(tx, id))).await
    }

    async fn list_messages(&self, account: AccountId, page: PageRequest<MessageId>) -> Result<Vec<MessageRecord>> {
        self.engine.read(move |tx| Box::pin(messages::list(tx, account, page))).await
    }

    async fn message_events(&self, id: MessageId) -> Result<Vec<EventRecord>> {
        self.engine.read(move |tx| Box::pin(messages::events(tx, id))).await
    }

    async fn search_messages(
        &self,
        filter: &MessageFilter,
        page: PageRequest<MessageId>,
    ) -> Result<Scanned<MessageRecord>> {
        let filter = filter.clone();
        self.engine.read(move |tx| Box::pin(async move { messages::search(tx, &filter, page).await })).await
    }

    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>> {
        self.engine.write(move |tx| Box::pin(dispatch::claim_due(tx, now, lease_until, limit))).await
    }

    async fn record_sent_part(&self, message: MessageId, part: u32, provider_ref: &str, at: Timestamp) -> Result<()> {
        let provider_ref = provider_ref.to_owned();
        self.engine
            .write(move |tx| {
                Box::pin(async move { dispatch::record_sent_part(tx, message, part, &provider_ref, at).await })
            })
            .await
    }

    async fn sent_parts(&self, message: MessageId) -> Result<Vec<(u32, String)>> {
        self.engine.read(move |tx| Box::pin(dispatch::sent_parts(tx, message))).await
    }

    async fn offer_again(&self, waiting: &[(MessageId, u32, Timestamp)], now: Timestamp) -> Result<u64> {
        if waiting.is_empty() {
            return Ok(0);
        }
        let waiting = waiting.to_vec();
        self.engine.write(move |tx| Box::pin(async move { dispatch::offer_again(tx, &waiting, now).await })).await
    }

    async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let results = results.to_vec();
        self.engine.write(move |tx| Box::pin(async move { dispatch::record_results(tx, &results).await })).await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchRecord>> {
        self.engine.read(move |tx| Box::pin(stats::get_batch(tx, id))).await
    }

    async fn list_batches(
        &self,
        account: AccountId,
        state: Option<BatchState>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<BatchRecord>, u64)> {
        self.engine.read(move |tx| Box::pin(stats::list_batches(tx, account, state, offset, limit))).await
    }

    async fn message_counts(&self, account: AccountId, from: Timestamp, to: Timestamp) -> Result<MessageCounts> {
        self.engine.read(move |tx| Box::pin(stats::message_counts(tx, account, from, to))).await
    }

    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<MessageRecord> {
        self.engine.write(move |tx| Box::pin(messages::cancel_scheduled(tx, account, id, at))).await
    }

    async fn list_channel_messages(&self, channel: Uuid, page: PageRequest<MessageId>) -> Result<Vec<MessageRecord>> {
        self.engine.read(move |tx| Box::pin(messages::list_in_channel(tx, channel, page))).await
    }

    async fn create_channel(&self, channel: &ChannelRecord) -> Result<ChannelRecord> {
        let channel = channel.clone();
        self.engine.write(move |tx| Box::pin(async move { channels::create(tx, &channel).await })).await
    }

    async fn get_channel(&self, id: Uuid) -> Result<Option<ChannelRecord>> {
        self.engine.read(move |tx| Box::pin(channels::get(tx, id))).await
    }

    async fn list_channels(&self, account: AccountId) -> Result<Vec<ChannelRecord>> {
        self.engine.read(move |tx| Box::pin(channels::list(tx, account))).await
    }

    async fn update_channel(&self, account: AccountId, id: Uuid, change: &ChannelChange) -> Result<ChannelRecord> {
        let change = change.clone();
        self.engine.write(move |tx| Box::pin(async move { channels::update(tx, account, id, &change).await })).await
    }

    async fn create_template(&self, account: AccountId, name: &str) -> Result<TemplateRecord> {
        let name = name.to_owned();
        self.engine.write(move |tx| Box::pin(async move { channels::create_template(tx, account, &name).await })).await
    }

    async fn add_template_version(
        &self,
        account: AccountId,
        template: Uuid,
        texts: &BTreeMap<String, String>,
        active: bool,
    ) -> Result<TemplateVersionRecord> {
        let texts = texts.clone();
        self.engine
            .write(move |tx| {
                Box::pin(async move { channels::add_version(tx, account, template, &texts, active).await })
            })
            .await
    }

    async fn set_template_version_active(
        &self,
        account: AccountId,
        template: Uuid,
        version: Uuid,
        active: bool,
    ) -> Result<TemplateVersionRecord> {
        self.engine
            .write(move |tx| Box::pin(channels::set_version_active(tx, account, template, version, active)))
            .await
    }

    async fn get_template(&self, id: Uuid) -> Result<Option<TemplateRecord>> {
        self.engine.read(move |tx| Box::pin(channels::get_template(tx, id))).await
    }

    async fn list_templates(&self, account: AccountId) -> Result<Vec<TemplateRecord>> {
        self.engine.read(move |tx| Box::pin(channels::list_templates(tx, account))).await
    }

    async fn count_messages(&self, account: AccountId) -> Result<Vec<(String, i64)>> {
        self.engine.read(move |tx| Box::pin(stats::count_messages(tx, account))).await
    }

    async fn set_refund_carrier_failures(&self, account: AccountId, refund: bool) -> Result<AccountRecord> {
        self.engine.write(move |tx| Box::pin(accounts::set_refund_carrier_failures(tx, account, refund))).await
    }

    async fn set_destinations(&self, account: AccountId, destinations: AccountDestinations) -> Result<AccountRecord> {
        self.engine.write(move |tx| Box::pin(accounts::set_destinations(tx, account, destinations))).await
    }

    async fn set_low_balance_threshold(&self, account: AccountId, threshold: Option<i64>) -> Result<AccountRecord> {
        self.engine.write(move |tx| Box::pin(accounts::set_low_balance_threshold(tx, account, threshold))).await
    }

    async fn record_receipts(&self, updates: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        self.engine.write(move |tx| Box::pin(async move { receipts::record(tx, &updates).await })).await
    }

    async fn message_parts(&self, id: MessageId) -> Result<Vec<PartRecord>> {
        self.engine.read(move |tx| Box::pin(receipts::parts(tx, id))).await
    }

    async fn pending_parts(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<PendingPart>> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.engine
            .read(move |tx| Box::pin(async move { receipts::pending(tx, &prefix, after.as_deref(), limit).await }))
            .await
    }

    async fn receive_inbound(
        &self,
        inbound: &NewInbound,
        change: OptOutChange,
        reply: Option<&NewReply>,
    ) -> Result<InboundOutcome> {
        let (inbound, reply) = (inbound.clone(), reply.cloned());
        self.engine
            .write(move |tx| {
                Box::pin(async move { messages::receive_inbound(tx, &inbound, change, reply.as_ref()).await })
            })
            .await
    }

    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        let webhook = webhook.clone();
        self.engine.write(move |tx| Box::pin(async move { webhooks::create(tx, &webhook).await })).await
    }

    async fn get_webhook(&self, id: Uuid) -> Result<Option<WebhookRecord>> {
        self.engine.read(move |tx| Box::pin(webhooks::get(tx, id))).await
    }

    async fn list_webhooks(&self, account: AccountId) -> Result<Vec<WebhookRecord>> {
        self.engine.read(move |tx| Box::pin(webhooks::list(tx, account))).await
    }

    async fn update_webhook(&self, account: AccountId, id: Uuid, change: &WebhookChange) -> Result<WebhookRecord> {
        let change = change.clone();
        self.engine.write(move |tx| Box::pin(async move { webhooks::update(tx, account, id, &change).await })).await
    }

    async fn create_console_session(&self, session: &ConsoleSessionRecord) -> Result<()> {
        let session = session.clone();
        self.engine.write(move |tx| Box::pin(async move { console::create_session(tx, &session).await })).await
    }

    async fn find_console_session(&self, token_hash: &[u8]) -> Result<Option<ConsoleSessionRecord>> {
        let hash = token_hash.to_vec();
        self.engine.read(move |tx| Box::pin(async move { console::find_session(tx, &hash).await })).await
    }

    async fn touch_console_session(&self, token_hash: &[u8], at: Timestamp) -> Result<()> {
        let hash = token_hash.to_vec();
        self.engine.write(move |tx| Box::pin(async move { console::touch_session(tx, &hash, at).await })).await
    }

    async fn delete_console_session(&self, token_hash: &[u8]) -> Result<bool> {
        let hash = token_hash.to_vec();
        self.engine.write(move |tx| Box::pin(async move { console::delete_session(tx, &hash).await })).await
    }

    async fn purge_console_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64> {
        self.engine.write(move |tx| Box::pin(console::purge_sessions(tx, now, idle_before))).await
    }

    async fn hourly_traffic(
        &self,
        account: Option<AccountId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TrafficBucket>> {
        self.engine.read(move |tx| Box::pin(console::hourly_traffic(tx, account, from, to))).await
    }

    async fn minute_traffic(
        &self,
        account: Option<AccountId>,
        from: Timestamp,
        minutes: u32,
    ) -> Result<Vec<TrafficBucket>> {
        self.engine.read(move |tx| Box::pin(console::minute_traffic(tx, account, from, minutes))).await
    }

    async fn account_backlog(&self, account: AccountId) -> Result<(i64, i64)> {
        self.engine.read(move |tx| Box::pin(console::account_backlog(tx, account))).await
    }

    async fn create_smpp_credential(&self, credential: &SmppCredentialRecord) -> Result<()> {
        let credential = credential.clone();
        self.engine.write(move |tx| Box::pin(async move { smpp::create_credential(tx, &credential).await })).await
    }

    async fn find_smpp_credential(&self, system_id: &str) -> Result<Option<SmppCredentialRecord>> {
        let system_id = system_id.to_owned();
        self.engine.read(move |tx| Box::pin(async move { smpp::find_credential(tx, &system_id).await })).await
    }

    async fn list_smpp_credentials(&self, account: AccountId) -> Result<Vec<SmppCredentialRecord>> {
        self.engine.read(move |tx| Box::pin(smpp::list_credentials(tx, account))).await
    }

    async fn revoke_smpp_credential(
        &self,
        account: AccountId,
        system_id: &str,
        at: Timestamp,
    ) -> Result<SmppCredentialRecord> {
        let system_id = system_id.to_owned();
        self.engine
            .write(move |tx| Box::pin(async move { smpp::revoke_credential(tx, account, &system_id, at).await }))
            .await
    }

    async fn due_smpp_deliveries(&self, account: AccountId, now: Timestamp) -> Result<bool> {
        self.engine.read(move |tx| Box::pin(smpp::due(tx, account, now))).await
    }

    async fn claim_smpp_deliveries(
        &self,
        account: AccountId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<SmppDeliveryRecord>> {
        self.engine.write(move |tx| Box::pin(smpp::claim(tx, account, now, lease_until, limit))).await
    }

    async fn retry_smpp_delivery(&self, id: Uuid, at: Timestamp) -> Result<()> {
        self.engine.write(move |tx| Box::pin(smpp::retry(tx, id, at))).await
    }

    async fn remove_smpp_deliveries(&self, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = ids.to_vec();
        self.engine.write(move |tx| Box::pin(async move { smpp::remove(tx, &ids).await })).await
    }

    async fn expire_smpp_deliveries(&self, occurred_before: Timestamp, limit: u32) -> Result<u64> {
        self.engine.write(move |tx| Box::pin(smpp::expire(tx, occurred_before, limit))).await
    }

    async fn count_smpp_deliveries(&self) -> Result<i64> {
        self.engine.read(|tx| Box::pin(smpp::count(tx))).await
    }

    async fn delete_webhook(&self, account: AccountId, id: Uuid) -> Result<()> {
        self.engine.write(move |tx| Box::pin(webhooks::delete(tx, account, id))).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> Result<Vec<DeliveryRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let busy = busy.to_vec();
        self.engine
            .write(move |tx| Box::pin(async move { webhooks::claim(tx, now, lease_until, limit, &busy).await }))
            .await
    }

    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let results = results.to_vec();
        self.engine.write(move |tx| Box::pin(async move { webhooks::record(tx, &results).await })).await
    }

    async fn take_rate_tokens(&self, name: &str, per_second: u32, want: u32, now: Timestamp) -> Result<u32> {
        if want == 0 || per_second == 0 || want > per_second {
            return Ok(0);
        }
        let name = name.to_owned();
        self.engine
            .write(move |tx| Box::pin(async move { stats::take_rate_tokens(tx, &name, per_second, want, now).await }))
            .await
    }

    async fn message_deliveries(&self, message: MessageId) -> Result<Vec<DeliveryRecord>> {
        self.engine.read(move |tx| Box::pin(webhooks::of_message(tx, message))).await
    }

    async fn resend_deliveries(
        &self,
        event: EventId,
        endpoint: Option<Uuid>,
        now: Timestamp,
    ) -> Result<Vec<DeliveryRecord>> {
        self.engine.write(move |tx| Box::pin(webhooks::resend(tx, event, endpoint, now))).await
    }

    async fn list_deliveries(
        &self,
        account: AccountId,
        filter: &DeliveryFilter,
        page: PageRequest<EventId>,
    ) -> Result<Vec<DeliveryRecord>> {
        let filter = filter.clone();
        self.engine
            .read(move |tx| Box::pin(async move { webhooks::list_deliveries(tx, account, &filter, page).await }))
            .await
    }

    async fn delivery_attempts(&self, event: EventId, target: &str) -> Result<Vec<AttemptRecord>> {
        let target = target.to_owned();
        self.engine.read(move |tx| Box::pin(async move { webhooks::attempts(tx, event, &target).await })).await
    }

    async fn prune(&self, before: Timestamp, limit: u32) -> Result<Pruned> {
        self.engine.write(move |tx| Box::pin(retention::prune(tx, before, limit, Timestamp::now()))).await
    }
}

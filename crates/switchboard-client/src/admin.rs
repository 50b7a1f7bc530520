//! The admin API, under `/admin/v1`: accounts, API keys, senders, channels, templates,
//! credits, opt-outs, webhook endpoints and deliveries, upstreams, and the simulator that
//! stands in for a carrier ([`AdminClient`]).

use std::fmt;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_domain::wire::webhooks::{
    CreateWebhook, InboundResult, InjectInbound, InjectReceipts, NotificationSecret, ReceiptResults, UpdateWebhook,
    Upstream, Webhook, WebhookDelivery,
};
use switchboard_domain::wire::{
    Account, ApiKey, ApiKeyCreated, Balance, Channel, CreateAccount, CreateApiKey, CreateChannel, CreateSender,
    CreateSmppCredential, CreateTemplate, CreateTemplateVersion, LedgerEntry, Message, OptOut, OptOutRequest, Page,
    SearchPage, Sender, SmppBind, SmppCredential, SmppCredentialCreated, Template, TemplateVersion, TopUp,
    UpdateAccount, UpdateChannel, UpdateSender, UpdateTemplateVersion,
};
use switchboard_domain::{Dialect as MessageDialect, EventId, MessageId, MessageStatus, Msisdn, Region, Timestamp};
use uuid::Uuid;

use crate::error::{Dialect, Result};
use crate::http::{Http, read, read_empty, segment};

/// The paging of the admin lists that page.
#[derive(Serialize)]
struct PageQuery<'a> {
    limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

/// Filters and paging of [`AdminClient::webhook_deliveries`]; `None` leaves a filter out (and
/// the page size to the server's default, 50).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryQuery {
    /// Items per page, 1 to 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only deliveries to this webhook endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Uuid>,
    /// Only deliveries about this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageId>,
    /// Only deliveries in this state: `pending`, `delivered`, `failed` or `canceled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Filters and paging of [`AdminClient::search_ledger`]; `None` leaves a filter out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only entries of this kind: `topup`, `charge` or `refund`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only the entries of this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageId>,
    /// Only entries made at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// Only entries made before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
}

/// Filters and paging of [`AdminClient::search_messages`]; `None` leaves a filter out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only the message with this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
    /// Only this account's messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Uuid>,
    /// Only messages to this number, matched whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Msisdn>,
    /// Only messages in this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// Only messages that came this way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<MessageDialect>,
    /// Only messages created at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// Only messages created before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
}

/// An admin API client, authenticated with the operator token (`Authorization: Bearer`).
///
/// ```no_run
/// use switchboard_client::AdminClient;
/// use switchboard_client::wire::{CreateSender, TopUp};
///
/// # async fn run() -> Result<(), switchboard_client::ClientError> {
/// let admin = AdminClient::new("https://sms.example.com", "the operator token")?;
/// let account = admin.create_account("Acme").await?;
/// admin.top_up(account.id, &TopUp { sms: 1000, mms: 0, reference: Some("inv-1".into()) }).await?;
/// let sender = CreateSender { address: "+18005559876".into(), active: true, sms: true, mms: false };
/// admin.add_sender(account.id, &sender).await?;
/// let key = admin.create_key(account.id, Some("web shop")).await?;
/// println!("key {} (secret shown once: {})", key.key.id, key.secret);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AdminClient {
    http: Http,
    token: String,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient").field("base", &self.http.base).finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the server at `base_url` with the operator token, and the default
    /// settings.
    pub fn new(base_url: &str, token: &str) -> Result<Self> {
        Ok(crate::Switchboard::new(base_url)?.admin(token))
    }

    pub(crate) fn with_http(http: Http, token: &str) -> Self {
        Self { http, token: token.to_owned() }
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&impl Serialize>) -> Result<T> {
        let mut request = self.http.request(method, path).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        read(Dialect::Admin, request.send().await?).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    async fn get_with_query<T: DeserializeOwned>(&self, path: &str, query: &impl Serialize) -> Result<T> {
        read(Dialect::Admin, self.http.request(Method::GET, path).bearer_auth(&self.token).query(query).send().await?)
            .await
    }

    /// Makes a call whose success has no body (such as a 204).
    async fn call_no_content(&self, method: Method, path: &str) -> Result<()> {
        read_empty(Dialect::Admin, self.http.request(method, path).bearer_auth(&self.token).send().await?).await
    }

    /// Creates an account.
    pub async fn create_account(&self, name: &str) -> Result<Account> {
        self.call(Method::POST, "/admin/v1/accounts", Some(&CreateAccount { name: name.to_owned() })).await
    }

    /// Lists accounts.
    pub async fn accounts(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Account>> {
        self.get_with_query("/admin/v1/accounts", &PageQuery { limit, cursor }).await
    }

    /// Reads an account.
    pub async fn account(&self, id: Uuid) -> Result<Account> {
        self.get(&format!("/admin/v1/accounts/{id}")).await
    }

    /// Sets an account's Mudbase request rate limit (`None`: the server's default).
    pub async fn set_rate_limit(&self, id: Uuid, rate_limit: Option<u32>) -> Result<Account> {
        self.call(
            Method::PATCH,
            &format!("/admin/v1/accounts/{id}"),
            Some(&UpdateAccount { rate_limit: Some(rate_limit), ..UpdateAccount::default() }),
        )
        .await
    }

    /// Sets whether the account's messages that the carrier reports undelivered or failed are
    /// refunded.
    pub async fn set_refund_carrier_failures(&self, id: Uuid, refund: bool) -> Result<Account> {
        let change = UpdateAccount { refund_carrier_failures: Some(refund), ..UpdateAccount::default() };
        self.call(Method::PATCH, &format!("/admin/v1/accounts/{id}"), Some(&change)).await
    }

    /// Sets the SMS balance below which a charge posts `account.balance_low` (`None`: no
    /// alert).
    pub async fn set_low_balance_threshold(&self, id: Uuid, threshold: Option<i64>) -> Result<Account> {
        let change = UpdateAccount { low_balance_threshold: Some(threshold), ..UpdateAccount::default() };
        self.call(Method::PATCH, &format!("/admin/v1/accounts/{id}"), Some(&change)).await
    }

    /// Changes an account's settings: the fields of `change` that are set.
    pub async fn update_account(&self, id: Uuid, change: &UpdateAccount) -> Result<Account> {
        self.call(Method::PATCH, &format!("/admin/v1/accounts/{id}"), Some(change)).await
    }

    /// Sets the countries an account sends to (`Some(None)`: every country) and whether it
    /// accepts fixed-or-mobile numbers; `None` leaves either as it is.
    pub async fn set_destinations(
        &self,
        id: Uuid,
        allowed_countries: Option<Option<Vec<Region>>>,
        accept_fixed_or_mobile: Option<bool>,
    ) -> Result<Account> {
        let change = UpdateAccount { allowed_countries, accept_fixed_or_mobile, ..UpdateAccount::default() };
        self.update_account(id, &change).await
    }

    /// Creates an API key; the only time its secret is shown.
    pub async fn create_key(&self, account: Uuid, name: Option<&str>) -> Result<ApiKeyCreated> {
        let body = CreateApiKey { name: name.map(str::to_owned) };
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/keys"), Some(&body)).await
    }

    /// Lists an account's keys.
    pub async fn keys(&self, account: Uuid) -> Result<Page<ApiKey>> {
        self.get(&format!("/admin/v1/accounts/{account}/keys")).await
    }

    /// Revokes a key.
    pub async fn revoke_key(&self, account: Uuid, key_id: &str) -> Result<ApiKey> {
        self.call(Method::DELETE, &format!("/admin/v1/accounts/{account}/keys/{}", segment(key_id)), None::<&()>).await
    }

    /// Creates an SMPP credential; its password is in the answer only.
    pub async fn create_smpp_credential(
        &self,
        account: Uuid,
        credential: &CreateSmppCredential,
    ) -> Result<SmppCredentialCreated> {
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/smpp-credentials"), Some(credential)).await
    }

    /// Lists an account's SMPP credentials.
    pub async fn smpp_credentials(&self, account: Uuid) -> Result<Page<SmppCredential>> {
        self.get(&format!("/admin/v1/accounts/{account}/smpp-credentials")).await
    }

    /// Revokes an SMPP credential.
    pub async fn revoke_smpp_credential(&self, account: Uuid, system_id: &str) -> Result<SmppCredential> {
        let path = format!("/admin/v1/accounts/{account}/smpp-credentials/{}", segment(system_id));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// Lists the SMPP binds held on the node that answers.
    pub async fn smpp_binds(&self) -> Result<Page<SmppBind>> {
        self.get("/admin/v1/smpp/binds").await
    }

    /// Assigns a sender.
    pub async fn add_sender(&self, account: Uuid, sender: &CreateSender) -> Result<Sender> {
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/senders"), Some(sender)).await
    }

    /// Changes a sender.
    pub async fn update_sender(&self, account: Uuid, address: &str, change: &UpdateSender) -> Result<Sender> {
        let path = format!("/admin/v1/accounts/{account}/senders/{}", segment(address));
        self.call(Method::PATCH, &path, Some(change)).await
    }

    /// Lists senders.
    pub async fn senders(&self, account: Uuid) -> Result<Page<Sender>> {
        self.get(&format!("/admin/v1/accounts/{account}/senders")).await
    }

    /// Adds credits.
    pub async fn top_up(&self, account: Uuid, top_up: &TopUp) -> Result<LedgerEntry> {
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/credits"), Some(top_up)).await
    }

    /// Reads balances.
    pub async fn balance(&self, account: Uuid) -> Result<Balance> {
        self.get(&format!("/admin/v1/accounts/{account}/balance")).await
    }

    /// Lists ledger entries.
    pub async fn ledger(&self, account: Uuid, limit: u32, cursor: Option<&str>) -> Result<Page<LedgerEntry>> {
        self.get_with_query(&format!("/admin/v1/accounts/{account}/ledger"), &PageQuery { limit, cursor }).await
    }

    /// Finds an account's ledger entries (see [`LedgerQuery`]); a page that stopped at the
    /// server's cap of rows examined says `capped`, and its cursor goes on from there.
    pub async fn search_ledger(&self, account: Uuid, query: &LedgerQuery) -> Result<SearchPage<LedgerEntry>> {
        self.get_with_query(&format!("/admin/v1/accounts/{account}/ledger"), query).await
    }

    /// Adds an opt-out.
    pub async fn add_opt_out(&self, account: Uuid, sender: &str, recipient: &str) -> Result<OptOut> {
        let body = OptOutRequest { sender: sender.to_owned(), recipient: recipient.to_owned() };
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/opt-outs"), Some(&body)).await
    }

    /// Lifts an opt-out.
    pub async fn remove_opt_out(&self, account: Uuid, sender: &str, recipient: &str) -> Result<()> {
        let (s, r) = (segment(sender), segment(recipient));
        self.call_no_content(Method::DELETE, &format!("/admin/v1/accounts/{account}/opt-outs/{s}/{r}")).await
    }

    /// Lists opt-outs.
    pub async fn opt_outs(&self, account: Uuid) -> Result<Page<OptOut>> {
        self.get(&format!("/admin/v1/accounts/{account}/opt-outs")).await
    }

    /// Lists an account's messages.
    pub async fn messages(&self, account: Uuid, limit: u32, cursor: Option<&str>) -> Result<Page<Message>> {
        self.get_with_query(&format!("/admin/v1/accounts/{account}/messages"), &PageQuery { limit, cursor }).await
    }

    /// Reads a message with its status history.
    pub async fn message(&self, id: MessageId) -> Result<Message> {
        self.get(&format!("/admin/v1/messages/{id}")).await
    }

    /// Finds messages of every account (see [`MessageQuery`]); a page that stopped at the
    /// server's cap of rows examined says `capped`, and its cursor goes on from there.
    pub async fn search_messages(&self, query: &MessageQuery) -> Result<SearchPage<Message>> {
        self.get_with_query("/admin/v1/messages", query).await
    }

    /// Resends an event's failed webhook deliveries (only the one to `webhook`, when given),
    /// with a fresh retry budget; returns them.
    pub async fn retry_delivery(&self, event: EventId, webhook: Option<Uuid>) -> Result<Page<WebhookDelivery>> {
        let path = match webhook {
            Some(w) => format!("/admin/v1/webhook-deliveries/{event}/retry?webhook={w}"),
            None => format!("/admin/v1/webhook-deliveries/{event}/retry"),
        };
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// Creates a channel on one of the account's senders.
    pub async fn create_channel(&self, account: Uuid, channel: &CreateChannel) -> Result<Channel> {
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/channels"), Some(channel)).await
    }

    /// Lists an account's channels.
    pub async fn channels(&self, account: Uuid) -> Result<Page<Channel>> {
        self.get(&format!("/admin/v1/accounts/{account}/channels")).await
    }

    /// Reads a channel.
    pub async fn channel(&self, account: Uuid, id: Uuid) -> Result<Channel> {
        self.get(&format!("/admin/v1/accounts/{account}/channels/{id}")).await
    }

    /// Renames, activates or deactivates a channel.
    pub async fn update_channel(&self, account: Uuid, id: Uuid, change: &UpdateChannel) -> Result<Channel> {
        self.call(Method::PATCH, &format!("/admin/v1/accounts/{account}/channels/{id}"), Some(change)).await
    }

    /// Creates a template without versions.
    pub async fn create_template(&self, account: Uuid, name: &str) -> Result<Template> {
        let body = CreateTemplate { name: name.to_owned() };
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/templates"), Some(&body)).await
    }

    /// Lists an account's templates with their versions.
    pub async fn templates(&self, account: Uuid) -> Result<Page<Template>> {
        self.get(&format!("/admin/v1/accounts/{account}/templates")).await
    }

    /// Reads a template with its versions, oldest first.
    pub async fn template(&self, account: Uuid, id: Uuid) -> Result<Template> {
        self.get(&format!("/admin/v1/accounts/{account}/templates/{id}")).await
    }

    /// Adds a version to a template.
    pub async fn add_template_version(
        &self,
        account: Uuid,
        template: Uuid,
        version: &CreateTemplateVersion,
    ) -> Result<TemplateVersion> {
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/templates/{template}/versions"), Some(version))
            .await
    }

    /// Activates or deactivates a template version.
    pub async fn set_template_version_active(
        &self,
        account: Uuid,
        template: Uuid,
        version: Uuid,
        active: bool,
    ) -> Result<TemplateVersion> {
        let path = format!("/admin/v1/accounts/{account}/templates/{template}/versions/{version}");
        self.call(Method::PATCH, &path, Some(&UpdateTemplateVersion { active })).await
    }

    /// Creates a webhook endpoint; the answer is the only one, besides a change of secret,
    /// that shows its signing secret.
    pub async fn create_webhook(&self, account: Uuid, webhook: &CreateWebhook) -> Result<Webhook> {
        self.call(Method::POST, &format!("/admin/v1/accounts/{account}/webhooks"), Some(webhook)).await
    }

    /// Lists an account's webhook endpoints.
    pub async fn webhooks(&self, account: Uuid) -> Result<Page<Webhook>> {
        self.get(&format!("/admin/v1/accounts/{account}/webhooks")).await
    }

    /// Reads a webhook endpoint.
    pub async fn webhook(&self, account: Uuid, id: Uuid) -> Result<Webhook> {
        self.get(&format!("/admin/v1/accounts/{account}/webhooks/{id}")).await
    }

    /// Changes a webhook endpoint's URL, event types, activity or signing secret; the answer
    /// shows the secret when it changed.
    pub async fn update_webhook(&self, account: Uuid, id: Uuid, change: &UpdateWebhook) -> Result<Webhook> {
        self.call(Method::PATCH, &format!("/admin/v1/accounts/{account}/webhooks/{id}"), Some(change)).await
    }

    /// Deletes a webhook endpoint; its pending deliveries are canceled.
    pub async fn delete_webhook(&self, account: Uuid, id: Uuid) -> Result<()> {
        self.call_no_content(Method::DELETE, &format!("/admin/v1/accounts/{account}/webhooks/{id}")).await
    }

    /// Lists the upstreams and how each stands.
    pub async fn upstreams(&self) -> Result<Page<Upstream>> {
        self.get("/admin/v1/upstreams").await
    }

    /// Reads the secret that signs deliveries to the account's messages' own notification URLs.
    pub async fn notification_secret(&self, account: Uuid) -> Result<NotificationSecret> {
        self.get(&format!("/admin/v1/accounts/{account}/notification-secret")).await
    }

    /// Lists an account's webhook deliveries with their attempts, newest event first.
    pub async fn webhook_deliveries(&self, account: Uuid, query: &DeliveryQuery) -> Result<Page<WebhookDelivery>> {
        self.get_with_query(&format!("/admin/v1/accounts/{account}/webhook-deliveries"), query).await
    }

    /// Simulator: receives a message from a handset, as a carrier would deliver it.
    pub async fn inject_inbound(&self, inbound: &InjectInbound) -> Result<InboundResult> {
        self.call(Method::POST, "/admin/v1/simulator/inbound", Some(inbound)).await
    }

    /// Simulator: applies delivery receipts, as a carrier would send them; one result per
    /// receipt, in order.
    pub async fn inject_receipts(&self, receipts: &InjectReceipts) -> Result<ReceiptResults> {
        self.call(Method::POST, "/admin/v1/simulator/receipts", Some(receipts)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::segment;

    fn query_of(query: &DeliveryQuery) -> Option<String> {
        let request = reqwest::Client::new().get("http://localhost/d").query(query).build().unwrap();
        request.url().query().map(str::to_owned)
    }

    #[test]
    fn a_delivery_query_leaves_out_what_is_not_given() {
        assert_eq!(query_of(&DeliveryQuery::default()), None);
        let webhook = Uuid::nil();
        let message = MessageId::from_uuid(Uuid::from_u128(1));
        let query = DeliveryQuery {
            limit: Some(10),
            cursor: None,
            webhook: Some(webhook),
            message: Some(message),
            state: Some("failed".into()),
        };
        assert_eq!(query_of(&query).unwrap(), format!("limit=10&webhook={webhook}&message={message}&state=failed"),);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("+18005559876"), "+18005559876");
        assert_eq!(segment("ACME Bank"), "ACME%20Bank");
        assert_eq!(segment("msg_DsAdb4EBYBh3z25sBA1qnv"), "msg_DsAdb4EBYBh3z25sBA1qnv");
        assert_eq!(segment("../../admin?x=1#f"), "..%2F..%2Fadmin%3Fx%3D1%23f");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("é"), "%C3%A9");
        let query = PageQuery { limit: 5, cursor: Some("a&b") };
        let request = reqwest::Client::new().get("http://localhost/d").query(&query).build().unwrap();
        assert_eq!(request.url().query(), Some("limit=5&cursor=a%26b"));
    }
}

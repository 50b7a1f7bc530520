//! The operator's webhook operations: an account's endpoints (URL, signing secret, event
//! types), the signing secret of a message's own notification URL, and the outbox's
//! deliveries with their attempts. Delivery itself is `switchboard-webhooks`' worker.

use switchboard_domain::{AccountId, EventId, EventType, Timestamp};
use switchboard_records::{AttemptRecord, DeliveryFilter, DeliveryRecord, WebhookChange, WebhookRecord};
use switchboard_signing::Secret;
use switchboard_storage::PageRequest;
use uuid::Uuid;

use crate::{AccessError, Core, MAX_PAGE};

/// Most endpoints an account may have.
pub const MAX_WEBHOOKS: usize = 20;

/// A new endpoint, as the operator asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    /// Where to post events: an absolute http(s) URL that the server's URL policy allows.
    pub url: String,
    /// The signing secret (`whsec_…`); generated when absent.
    pub secret: Option<String>,
    /// Event types to send (`message.delivered`, …); empty for all.
    pub events: Vec<String>,
    /// Whether to deliver to it now.
    pub active: bool,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    /// URL.
    pub url: Option<String>,
    /// A new signing secret; `Some(None)` generates one.
    pub secret: Option<Option<String>>,
    /// Event types (empty for all).
    pub events: Option<Vec<String>>,
    /// Active.
    pub active: Option<bool>,
}

impl Core {
    /// Checks an endpoint's URL with the server's URL policy (`Policy::urls`), the one that
    /// Bird's `notification.url` and the webhook worker's connections are held to.
    fn check_webhook_url(&self, url: &str) -> Result<String, AccessError> {
        match self.policy().urls.check_url(url) {
            Ok(_) => Ok(url.to_owned()),
            Err(e) => Err(AccessError::Invalid(format!("url: {e}"))),
        }
    }

    fn parse_secret(secret: Option<&str>) -> Result<Secret, AccessError> {
        match secret {
            None => Ok(Secret::generate()),
            Some(s) => Secret::parse(s).map_err(|e| AccessError::Invalid(format!("secret: {e}"))),
        }
    }

    /// Creates an endpoint; returns it with its signing secret, which can be read again only
    /// by rotating it.
    pub async fn create_webhook(
        &self,
        account: AccountId,
        new: NewWebhook,
    ) -> Result<(WebhookRecord, Secret), AccessError> {
        let url = self.check_webhook_url(&new.url)?;
        let events = parse_events(&new.events)?;
        let secret = Self::parse_secret(new.secret.as_deref())?;
        self.account(account).await?;
        let existing = self.webhooks(account).await?;
        if existing.len() >= MAX_WEBHOOKS {
            return Err(AccessError::Conflict(format!("an account has at most {MAX_WEBHOOKS} webhook endpoints")));
        }
        let record = WebhookRecord {
            id: Uuid::now_v7(),
            account_id: account,
            url,
            secret: self.inner.sealer.seal(&secret),
            events,
            active: new.active,
            created_at: Timestamp::now(),
        };
        self.inner.store.create_webhook(&record).await.map_err(AccessError::from_storage("webhook"))?;
        Ok((record, secret))
    }

    /// Lists an account's endpoints.
    pub async fn webhooks(&self, account: AccountId) -> Result<Vec<WebhookRecord>, AccessError> {
        self.account(account).await?;
        self.inner.store.list_webhooks(account).await.map_err(AccessError::from_storage("webhook"))
    }

    /// Reads one of an account's endpoints.
    pub async fn webhook(&self, account: AccountId, id: Uuid) -> Result<WebhookRecord, AccessError> {
        match self.inner.store.get_webhook(id).await.map_err(AccessError::from_storage("webhook"))? {
            Some(w) if w.account_id == account => Ok(w),
            _ => Err(AccessError::NotFound("webhook")),
        }
    }

    /// Changes an endpoint; returns it, and its new secret if the secret changed.
    pub async fn update_webhook(
        &self,
        account: AccountId,
        id: Uuid,
        update: WebhookUpdate,
    ) -> Result<(WebhookRecord, Option<Secret>), AccessError> {
        let url = update.url.as_deref().map(|u| self.check_webhook_url(u)).transpose()?;
        let events = update.events.as_deref().map(parse_events).transpose()?;
        let secret = update.secret.as_ref().map(|s| Self::parse_secret(s.as_deref())).transpose()?;
        let change = WebhookChange {
            url,
            secret: secret.as_ref().map(|s| self.inner.sealer.seal(s)),
            events,
            active: update.active,
        };
        let record = self
            .inner
            .store
            .update_webhook(account, id, &change)
            .await
            .map_err(AccessError::from_storage("webhook"))?;
        Ok((record, secret))
    }

    /// Deletes an endpoint; its pending deliveries are canceled.
    pub async fn delete_webhook(&self, account: AccountId, id: Uuid) -> Result<(), AccessError> {
        self.inner.store.delete_webhook(account, id).await.map_err(AccessError::from_storage("webhook"))
    }

    /// The secret that signs deliveries to a message's own notification URL (Bird's
    /// `notification.url`) for this account.
    pub async fn notification_secret(&self, account: AccountId) -> Result<Secret, AccessError> {
        self.account(account).await?;
        Ok(self.inner.sealer.notification_secret(account))
    }

    /// Lists an account's webhook deliveries, newest event first.
    pub async fn deliveries(
        &self,
        account: AccountId,
        filter: DeliveryFilter,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, AccessError> {
        self.account(account).await?;
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE + 1) };
        self.inner.store.list_deliveries(account, &filter, page).await.map_err(AccessError::from_storage("delivery"))
    }

    /// One delivery's attempts, oldest first.
    pub async fn delivery_attempts(&self, event: EventId, target: &str) -> Result<Vec<AttemptRecord>, AccessError> {
        self.inner.store.delivery_attempts(event, target).await.map_err(AccessError::from_storage("delivery"))
    }
}

/// Parses event type names, refusing unknown ones and duplicates.
fn parse_events(names: &[String]) -> Result<Vec<EventType>, AccessError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let event = EventType::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
            AccessError::Invalid(format!(
                "events: unknown event type `{}`; known: {}",
                truncate(name),
                known.join(", ")
            ))
        })?;
        if !out.contains(&event) {
            out.push(event);
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_checked() {
        let ok = parse_events(&["message.delivered".into(), "message.failed".into(), "message.delivered".into()]);
        assert_eq!(ok.unwrap(), [EventType::Delivered, EventType::Failed]);
        assert!(parse_events(&["message.exploded".into()]).is_err());
        assert!(parse_events(&[]).unwrap().is_empty());
    }
}

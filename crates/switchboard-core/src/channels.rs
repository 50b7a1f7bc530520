//! Channels and templates: sending on an account's channel (text, MMS media, a rendered
//! template; now, at a scheduled time, or within a validity), canceling a scheduled message,
//! and the operator's management of channels and template versions.

use std::collections::{BTreeMap, HashMap};

use switchboard_domain::encoding::TextInfo;
use switchboard_domain::{AccountId, MessageId, MessageKind, Msisdn, Timestamp};
use switchboard_records::{
    ChannelChange, ChannelRecord, MessageRecord, NewMessage, TemplateRecord, TemplateVersionRecord,
};
use switchboard_storage::{PageRequest, StorageError};
use switchboard_validation::template;
use uuid::Uuid;

use crate::{AccessError, Core, MAX_PAGE, SendError, check_name};

/// Longest a message may be scheduled ahead, or be valid for: 35 days.
pub const MAX_SCHEDULE_AHEAD_MS: i64 = 35 * 24 * 3600 * 1000;
/// Most locales one template version may have.
pub const MAX_TEMPLATE_LOCALES: usize = 100;
/// Longest locale code.
pub const MAX_LOCALE_CHARS: usize = 35;

/// A validated message to send on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    /// Recipient.
    pub to: Msisdn,
    /// SMS, or MMS when it carries media.
    pub kind: MessageKind,
    /// Text (the rendered template, for a template message).
    pub body: Option<String>,
    /// Encoding and parts of the text.
    pub text: TextInfo,
    /// Media URLs of an MMS, in order.
    pub media: Vec<String>,
    /// Keep it `scheduled` until this time.
    pub scheduled_for: Option<Timestamp>,
    /// If not sent by this time, it ends `expired` and is refunded.
    pub expires_at: Option<Timestamp>,
    /// The dialect's own fields of the request, as a JSON object, kept with the message.
    pub details: Option<String>,
    /// Where this message's own status notifications go (an absolute http(s) URL).
    pub notify_url: Option<String>,
}

/// Which template to render, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    /// The template's id.
    pub template: Uuid,
    /// A version's id, or `None` for the newest active version.
    pub version: Option<Uuid>,
    /// The locale, such as `en` or `en-US`.
    pub locale: String,
    /// Parameter values by name.
    pub parameters: HashMap<String, String>,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The account has no template with this id.
    #[error("no such template")]
    NotFound,
    /// The template has no version with this id.
    #[error("the template has no such version")]
    VersionNotFound,
    /// The version asked for is not active.
    #[error("the template version is not active")]
    VersionInactive,
    /// `latest` was asked for, and no version is active.
    #[error("the template has no active version")]
    NoActiveVersion,
    /// The version has no text for the locale.
    #[error("the template version has no text for locale `{locale}` (it has: {})", available.join(", "))]
    UnknownLocale {
        /// The locale asked for.
        locale: String,
        /// The locales the version has.
        available: Vec<String>,
    },
    /// A placeholder has no value.
    #[error("{0}")]
    MissingParameter(template::MissingParameter),
    /// Storage failed.
    #[error("temporarily unavailable")]
    Unavailable,
}

impl Core {
    /// Reads one of the account's channels; another account's channel is `NotFound`, so
    /// that ids do not leak across accounts.
    pub async fn channel(&self, account: AccountId, id: Uuid) -> Result<ChannelRecord, AccessError> {
        let read = self.inner.store.get_channel(id).await.map_err(AccessError::from_storage("channel"))?;
        if let Some(c) = &read {
            self.inner.channels.put(c.clone());
        }
        owned_channel(account, read)
    }

    /// [`Core::channel`] for the send path: a channel read is trusted for the auth cache's
    /// period, so a send costs no database read for it (a change made on this node applies
    /// at once). The sender rules are checked again where the message is stored.
    pub async fn sending_channel(&self, account: AccountId, id: Uuid) -> Result<ChannelRecord, AccessError> {
        match self.inner.channels.get(id) {
            Some(c) => owned_channel(account, Some(c)),
            None => self.channel(account, id).await,
        }
    }

    /// Sends one message on a channel. The caller has checked the channel's account, that it
    /// is active, and that it can send MMS if the message is one.
    pub async fn send_on_channel(
        &self,
        channel: &ChannelRecord,
        message: ChannelMessage,
    ) -> Result<MessageRecord, SendError> {
        let id = MessageId::new();
        let created_at = id.created_at();
        let config = &self.inner.config;
        let scheduled_for = message.scheduled_for.filter(|at| *at > created_at);
        let (destination, refused) = self.check_destination(&message.to, message.kind).await?;
        let new = NewMessage {
            id,
            account_id: channel.account_id,
            request_id: crate::request::current(),
            kind: message.kind,
            to: message.to,
            from: channel.sender.clone(),
            body: message.body,
            media: message.media,
            encoding: message.text.encoding,
            segments: message.text.segments,
            price: config.tariff.price(message.kind),
            idempotency_key: None,
            request_hash: Vec::new(),
            created_at,
            // A message due now goes straight to this node's dispatcher, claimed in the commit.
            claim_until: (config.run_dispatcher && scheduled_for.is_none())
                .then(|| created_at.plus_millis(config.dispatcher.lease.as_millis() as i64)),
            batch: None,
            channel_id: Some(channel.id),
            scheduled_for,
            expires_at: message.expires_at,
            details: message.details,
            notify_url: message.notify_url,
            destination,
            refusal: refused,
        };
        crate::admitted(self.inner.committer.submit(new).await.map_err(|_| SendError::Unavailable)?)
    }

    /// Cancels one of the account's scheduled messages and refunds it.
    pub async fn cancel_message(&self, account: AccountId, id: MessageId) -> Result<MessageRecord, AccessError> {
        self.inner.store.cancel_scheduled(account, id, Timestamp::now()).await.map_err(|e| match e {
            StorageError::NotFound => AccessError::NotFound("message"),
            other => AccessError::from_storage("message")(other),
        })
    }

    /// Lists a channel's messages, newest first.
    pub async fn channel_messages(
        &self,
        channel: Uuid,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, AccessError> {
        let page = PageRequest { before, limit: limit.clamp(1, MAX_PAGE + 1) };
        self.inner.store.list_channel_messages(channel, page).await.map_err(AccessError::from_storage("message"))
    }

    /// Renders one of the account's templates.
    pub async fn render_template(&self, account: AccountId, r: &TemplateRef) -> Result<String, TemplateError> {
        let template = match self.inner.store.get_template(r.template).await {
            Ok(Some(t)) if t.account_id == account => t,
            Ok(_) => return Err(TemplateError::NotFound),
            Err(e) => {
                tracing::error!(error = %e, "reading a template failed");
                return Err(TemplateError::Unavailable);
            }
        };
        let version = match r.version {
            Some(id) => {
                let v = template.versions.iter().find(|v| v.id == id).ok_or(TemplateError::VersionNotFound)?;
                if !v.active {
                    return Err(TemplateError::VersionInactive);
                }
                v
            }
            None => template.versions.iter().rev().find(|v| v.active).ok_or(TemplateError::NoActiveVersion)?,
        };
        let text = locale_text(&version.texts, &r.locale).ok_or_else(|| TemplateError::UnknownLocale {
            locale: r.locale.clone(),
            available: version.texts.keys().cloned().collect(),
        })?;
        template::render(text, |name| r.parameters.get(name).map(String::as_str))
            .map_err(TemplateError::MissingParameter)
    }

    // ---- admin ----

    /// Creates a channel sending from one of the account's senders.
    pub async fn create_channel(
        &self,
        account: AccountId,
        name: &str,
        sender: &str,
        active: bool,
    ) -> Result<ChannelRecord, AccessError> {
        let name = check_name("name", name)?;
        let sender = self.owned_sender(account, sender).await?;
        let record = ChannelRecord {
            // Time-ordered, so that an account's channels list oldest first.
            id: Uuid::now_v7(),
            account_id: account,
            name: name.to_owned(),
            sender,
            active,
            mms: false,
            created_at: Timestamp::now(),
        };
        self.inner.store.create_channel(&record).await.map_err(AccessError::from_storage("channel"))
    }

    /// Lists an account's channels.
    pub async fn channels(&self, account: AccountId) -> Result<Vec<ChannelRecord>, AccessError> {
        self.account(account).await?;
        self.inner.store.list_channels(account).await.map_err(AccessError::from_storage("channel"))
    }

    /// Renames, activates or deactivates a channel.
    pub async fn update_channel(
        &self,
        account: AccountId,
        id: Uuid,
        name: Option<&str>,
        active: Option<bool>,
    ) -> Result<ChannelRecord, AccessError> {
        let name = name.map(|n| check_name("name", n)).transpose()?.map(str::to_owned);
        let change = ChannelChange { name, active };
        let updated =
            self.inner.store.update_channel(account, id, &change).await.map_err(AccessError::from_storage("channel"));
        self.inner.channels.forget(id);
        updated
    }

    /// Creates a template without versions.
    pub async fn create_template(&self, account: AccountId, name: &str) -> Result<TemplateRecord, AccessError> {
        let name = check_name("name", name)?;
        self.account(account).await?;
        self.inner.store.create_template(account, name).await.map_err(|e| match e {
            StorageError::Conflict(_) => AccessError::Conflict(format!("name: the account has a template `{name}`")),
            other => AccessError::from_storage("template")(other),
        })
    }

    /// Adds a version to a template: a text per locale, each with well-formed placeholders
    /// and sendable characters.
    pub async fn add_template_version(
        &self,
        account: AccountId,
        template: Uuid,
        texts: BTreeMap<String, String>,
        active: bool,
    ) -> Result<TemplateVersionRecord, AccessError> {
        if texts.is_empty() || texts.len() > MAX_TEMPLATE_LOCALES {
            return Err(AccessError::Invalid(format!("texts: 1 to {MAX_TEMPLATE_LOCALES} locales")));
        }
        for (locale, text) in &texts {
            if !valid_locale(locale) {
                return Err(AccessError::Invalid(format!(
                    "texts: `{locale}` is not a locale code (letters, digits, `-` or `_`, at most {MAX_LOCALE_CHARS})"
                )));
            }
            template::placeholders(text).map_err(|e| AccessError::Invalid(format!("texts.{locale}: {e}")))?;
            if text.trim().is_empty() {
                return Err(AccessError::Invalid(format!("texts.{locale}: must not be empty")));
            }
            self.policy().check_text(text).map_err(|e| AccessError::Invalid(format!("texts.{locale}: {e}")))?;
        }
        self.inner
            .store
            .add_template_version(account, template, &texts, active)
            .await
            .map_err(AccessError::from_storage("template"))
    }

    /// Activates or deactivates a template version.
    pub async fn set_template_version_active(
        &self,
        account: AccountId,
        template: Uuid,
        version: Uuid,
        active: bool,
    ) -> Result<TemplateVersionRecord, AccessError> {
        self.inner
            .store
            .set_template_version_active(account, template, version, active)
            .await
            .map_err(AccessError::from_storage("template version"))
    }

    /// Reads one of the account's templates.
    pub async fn template(&self, account: AccountId, id: Uuid) -> Result<TemplateRecord, AccessError> {
        match self.inner.store.get_template(id).await.map_err(AccessError::from_storage("template"))? {
            Some(t) if t.account_id == account => Ok(t),
            _ => Err(AccessError::NotFound("template")),
        }
    }

    /// Lists an account's templates.
    pub async fn templates(&self, account: AccountId) -> Result<Vec<TemplateRecord>, AccessError> {
        self.account(account).await?;
        self.inner.store.list_templates(account).await.map_err(AccessError::from_storage("template"))
    }
}

/// Channels read recently, so that a send costs no database read for its channel.
#[derive(Debug)]
pub(crate) struct ChannelCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<HashMap<Uuid, (ChannelRecord, std::time::Instant)>>,
}

/// Most channels the cache holds before it starts over.
const CHANNEL_CACHE_MAX: usize = 10_000;

impl ChannelCache {
    pub(crate) fn new(ttl: std::time::Duration) -> Self {
        Self { ttl, entries: Default::default() }
    }

    fn get(&self, id: Uuid) -> Option<ChannelRecord> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&id).filter(|(_, at)| at.elapsed() < self.ttl).map(|(c, _)| c.clone())
    }

    fn put(&self, channel: ChannelRecord) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= CHANNEL_CACHE_MAX {
            entries.clear();
        }
        entries.insert(channel.id, (channel, std::time::Instant::now()));
    }

    fn forget(&self, id: Uuid) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }
}

fn owned_channel(account: AccountId, channel: Option<ChannelRecord>) -> Result<ChannelRecord, AccessError> {
    match channel {
        Some(c) if c.account_id == account => Ok(c),
        _ => Err(AccessError::NotFound("channel")),
    }
}

fn valid_locale(locale: &str) -> bool {
    !locale.is_empty()
        && locale.len() <= MAX_LOCALE_CHARS
        && locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The text for a locale: an exact match (ignoring case, and `_` for `-`), else the text of
/// its language alone (`en` for `en-US`).
fn locale_text<'t>(texts: &'t BTreeMap<String, String>, locale: &str) -> Option<&'t str> {
    let norm = |l: &str| l.to_ascii_lowercase().replace('_', "-");
    let wanted = norm(locale);
    let find = |w: &str| texts.iter().find(|(l, _)| norm(l) == w).map(|(_, t)| t.as_str());
    find(&wanted).or_else(|| wanted.split_once('-').and_then(|(language, _)| find(language)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_match_exactly_then_by_language() {
        let texts: BTreeMap<String, String> =
            [("en".to_owned(), "en".to_owned()), ("pt_BR".to_owned(), "pt-br".to_owned())].into();
        assert_eq!(locale_text(&texts, "en"), Some("en"));
        assert_eq!(locale_text(&texts, "EN-us"), Some("en"));
        assert_eq!(locale_text(&texts, "pt-BR"), Some("pt-br"));
        assert_eq!(locale_text(&texts, "pt"), None);
        assert_eq!(locale_text(&texts, "nl"), None);
    }
}

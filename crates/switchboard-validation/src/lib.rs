//! Request-level checks that turn a dialect's send request into a validated [`SendCommand`].
//!
//! Each dialect parses its own JSON, then hands the fields to [`Policy::check_send`]. What comes
//! back is either a command whose every field is known good (E.164 numbers, sendable text with
//! its encoding and segment count, an absolute http(s) media URL) or a [`ValidationError`] that
//! the dialect maps onto its own error codes. Nothing here touches storage: whether the sender
//! belongs to the account, or the balance can pay, is decided where the message is stored.
//!
//! [`template`] parses and fills message templates' `{{parameter}}` placeholders.

pub mod template;

use switchboard_domain::encoding::{self, TextInfo, UnsupportedCharacter};
use switchboard_domain::{MessageKind, Msisdn, PhoneError, SenderId, UrlPolicy};
use validator::{ValidateLength, ValidateUrl};

/// The limits a send request must respect.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Longest message text, in characters (TextingLine: 640).
    pub max_body_chars: u64,
    /// Longest media URL, in bytes.
    pub max_media_url_len: u64,
    /// Longest idempotency key, in characters.
    pub max_idempotency_key_len: u64,
    /// Words or phrases that a message may not contain (compared case-insensitively).
    pub blocked_terms: Vec<String>,
    /// Most distinct recipients of one multi-recipient send.
    pub max_recipients: usize,
    /// Which URLs the server may call on a tenant's behalf (webhook endpoints, Bird's
    /// `notification.url`), with the ranges the operator allows; the webhook worker holds the
    /// same policy at connect time.
    pub urls: UrlPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_body_chars: 640,
            max_media_url_len: 2048,
            max_idempotency_key_len: 255,
            blocked_terms: Vec::new(),
            max_recipients: 1000,
            urls: UrlPolicy::default(),
        }
    }
}

/// The fields of a single-recipient send, as a dialect received them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendFields<'a> {
    /// Recipient.
    pub to: &'a str,
    /// Sender.
    pub from: &'a str,
    /// Whether `from` may be an alphanumeric sender ID as well as an E.164 number.
    pub alphanumeric_from: bool,
    /// Text.
    pub body: Option<&'a str>,
    /// Media URL; its presence makes the message an MMS.
    pub media_url: Option<&'a str>,
    /// Idempotency key.
    pub idempotency_key: Option<&'a str>,
}

/// A send request that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCommand {
    /// Recipient.
    pub to: Msisdn,
    /// Sender.
    pub from: SenderId,
    /// SMS, or MMS when a media URL is given.
    pub kind: MessageKind,
    /// The text (None for a media-only MMS).
    pub body: Option<String>,
    /// The media URL of an MMS.
    pub media_url: Option<String>,
    /// Encoding and segments of the text.
    pub text: TextInfo,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
}

/// The fields of a multi-recipient SMS send, as a dialect received them.
#[derive(Debug, Clone, Default)]
pub struct BatchFields<'a> {
    /// Recipients, in the order given, possibly repeated.
    pub to: Vec<&'a str>,
    /// Sender; `None` lets the account's default sender send.
    pub from: Option<&'a str>,
    /// Whether `from` may be an alphanumeric sender ID as well as an E.164 number.
    pub alphanumeric_from: bool,
    /// Text.
    pub body: Option<&'a str>,
}

/// A multi-recipient SMS send that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCommand {
    /// Distinct recipients, in the order first given.
    pub recipients: Vec<Msisdn>,
    /// Sender, if one was named.
    pub from: Option<SenderId>,
    /// The text.
    pub body: String,
    /// Encoding and segments of the text.
    pub text: TextInfo,
}

/// Why a send request was refused before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `to` is not E.164.
    #[error("to: {0}")]
    InvalidTo(PhoneError),
    /// `from` is not E.164 (nor, where the dialect allows one, an alphanumeric sender ID).
    #[error("from: {0}")]
    InvalidFrom(PhoneError),
    /// An SMS without text.
    #[error("body: required for SMS (give a body, or a mediaUrl to send an MMS)")]
    MissingBody,
    /// Text over the limit.
    #[error("body: {chars} characters is over the limit of {max}")]
    BodyTooLong {
        /// The text's length in characters.
        chars: usize,
        /// The limit.
        max: u64,
    },
    /// Text with a character no encoding carries.
    #[error("body: {0}")]
    UnsupportedCharacter(UnsupportedCharacter),
    /// The media URL is not an absolute http(s) URL or is too long.
    #[error("mediaUrl: must be an absolute http or https URL of at most {max} bytes")]
    InvalidMediaUrl {
        /// The limit.
        max: u64,
    },
    /// Empty or overlong idempotency key.
    #[error("idempotencyKey: must be 1 to {max} characters")]
    InvalidIdempotencyKey {
        /// The limit.
        max: u64,
    },
    /// The text contains a blocked term.
    #[error("body: the message violates compliance rules")]
    Compliance,
    /// A multi-recipient send without recipients.
    #[error("to: at least one recipient is required")]
    NoRecipients,
    /// A multi-recipient send over the recipient limit.
    #[error("to: {count} distinct recipients is over the limit of {max}")]
    TooManyRecipients {
        /// Distinct recipients given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One recipient of a multi-recipient send is not E.164.
    #[error("to[{index}]: {error}")]
    InvalidRecipient {
        /// Its position in the list given.
        index: usize,
        /// What is wrong with it.
        error: PhoneError,
    },
}

/// Parses a sender: an E.164 number, or also an alphanumeric sender ID if `alphanumeric` is set.
fn sender(from: &str, alphanumeric: bool) -> Result<SenderId, ValidationError> {
    let parsed = if alphanumeric { SenderId::parse(from) } else { SenderId::parse_number(from) };
    parsed.map_err(ValidationError::InvalidFrom)
}

impl Policy {
    /// Checks a single-recipient send.
    pub fn check_send(&self, f: SendFields<'_>) -> Result<SendCommand, ValidationError> {
        let to = Msisdn::parse(f.to).map_err(ValidationError::InvalidTo)?;
        let from = sender(f.from, f.alphanumeric_from)?;

        let media_url = match f.media_url {
            None => None,
            Some(url) => Some(self.check_media_url(url)?.to_owned()),
        };
        let kind = if media_url.is_some() { MessageKind::Mms } else { MessageKind::Sms };

        // An empty body on an MMS is the same as no body.
        let body = f.body.filter(|b| !(b.is_empty() && kind == MessageKind::Mms));
        let body = match (body, kind) {
            (None, MessageKind::Sms) => return Err(ValidationError::MissingBody),
            (Some(b), MessageKind::Sms) if b.trim().is_empty() => {
                return Err(ValidationError::MissingBody);
            }
            (b, _) => b,
        };
        let text = match body {
            Some(b) => self.check_text(b)?,
            None => encoding::analyze(""),
        };

        let idempotency_key = match f.idempotency_key {
            None => None,
            Some(k) => {
                if !k.validate_length(Some(1), Some(self.max_idempotency_key_len), None) {
                    return Err(ValidationError::InvalidIdempotencyKey { max: self.max_idempotency_key_len });
                }
                Some(k.to_owned())
            }
        };

        Ok(SendCommand { to, from, kind, body: body.map(str::to_owned), media_url, text, idempotency_key })
    }

    /// Checks a multi-recipient SMS send. Recipients are deduplicated (after normalising), and
    /// the limit applies to the distinct ones.
    pub fn check_batch(&self, f: BatchFields<'_>) -> Result<BatchCommand, ValidationError> {
        if f.to.is_empty() {
            return Err(ValidationError::NoRecipients);
        }
        let mut seen = std::collections::HashSet::with_capacity(f.to.len());
        let mut recipients = Vec::with_capacity(f.to.len().min(self.max_recipients));
        for (index, raw) in f.to.iter().enumerate() {
            let number = Msisdn::parse(raw).map_err(|error| ValidationError::InvalidRecipient { index, error })?;
            if seen.insert(number.as_str().to_owned()) {
                recipients.push(number);
            }
        }
        if recipients.len() > self.max_recipients {
            return Err(ValidationError::TooManyRecipients { count: recipients.len(), max: self.max_recipients });
        }
        let from = f.from.map(|from| sender(from, f.alphanumeric_from)).transpose()?;
        let body = match f.body {
            Some(b) if !b.trim().is_empty() => b,
            _ => return Err(ValidationError::MissingBody),
        };
        let text = self.check_text(body)?;
        Ok(BatchCommand { recipients, from, body: body.to_owned(), text })
    }

    /// Checks a message text: length, sendable characters, compliance. Returns its encoding.
    pub fn check_text(&self, body: &str) -> Result<TextInfo, ValidationError> {
        if !body.validate_length(None, Some(self.max_body_chars), None) {
            return Err(ValidationError::BodyTooLong { chars: body.chars().count(), max: self.max_body_chars });
        }
        encoding::check_sendable(body).map_err(ValidationError::UnsupportedCharacter)?;
        if self.violates_compliance(body) {
            return Err(ValidationError::Compliance);
        }
        Ok(encoding::analyze(body))
    }

    /// Checks a media URL.
    pub fn check_media_url<'u>(&self, url: &'u str) -> Result<&'u str, ValidationError> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let ok = url.len() as u64 <= self.max_media_url_len
            && (lower.starts_with("http://") || lower.starts_with("https://"))
            // No whitespace or control characters (a NUL cannot even be stored on PostgreSQL).
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
            && url.validate_url();
        if ok { Ok(url) } else { Err(ValidationError::InvalidMediaUrl { max: self.max_media_url_len }) }
    }

    fn violates_compliance(&self, body: &str) -> bool {
        if self.blocked_terms.is_empty() {
            return false;
        }
        let text = body.to_lowercase();
        self.blocked_terms.iter().any(|term| {
            let term = term.to_lowercase();
            !term.is_empty()
                && text.match_indices(&term).any(|(i, _)| {
                    let before = text[..i].chars().next_back();
                    let after = text[i + term.len()..].chars().next();
                    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::Encoding;

    fn sms(body: &str) -> SendFields<'_> {
        SendFields { to: "+18005551234", from: "+18005559876", body: Some(body), ..Default::default() }
    }

    #[test]
    fn a_plain_sms_passes() {
        let cmd = Policy::default().check_send(sms("Your verification code is 482910")).unwrap();
        assert_eq!(cmd.kind, MessageKind::Sms);
        assert_eq!(cmd.text.encoding, Encoding::Gsm7);
        assert_eq!(cmd.text.segments, 1);
    }

    #[test]
    fn alphanumeric_senders_only_where_the_dialect_allows_them() {
        let p = Policy::default();
        let named = SendFields { from: "ACME", ..sms("hi") };
        assert!(matches!(p.check_send(named), Err(ValidationError::InvalidFrom(PhoneError::NotE164(_)))));
        let cmd = p.check_send(SendFields { alphanumeric_from: true, ..named }).unwrap();
        assert!(cmd.from.is_alphanumeric());
        assert_eq!(cmd.from.as_str(), "ACME");
        let long = SendFields { from: "ACMEACMEACME", alphanumeric_from: true, ..sms("hi") };
        assert!(matches!(p.check_send(long), Err(ValidationError::InvalidFrom(PhoneError::NotSenderId(_)))));
        let batch =
            BatchFields { to: vec!["+18005551234"], from: Some("ACME"), body: Some("hi"), alphanumeric_from: true };
        assert_eq!(p.check_batch(batch).unwrap().from.unwrap().as_str(), "ACME");
    }

    #[test]
    fn body_limits() {
        let p = Policy::default();
        assert!(p.check_send(sms(&"é".repeat(640))).is_ok());
        assert!(matches!(p.check_send(sms(&"a".repeat(641))), Err(ValidationError::BodyTooLong { chars: 641, .. })));
        assert_eq!(p.check_send(sms("   ")), Err(ValidationError::MissingBody));
        let f = SendFields { body: None, ..sms("") };
        assert_eq!(p.check_send(f), Err(ValidationError::MissingBody));
        assert!(matches!(p.check_send(sms("a\u{0}b")), Err(ValidationError::UnsupportedCharacter(_))));
    }

    #[test]
    fn mms_needs_a_good_url_and_no_body() {
        let p = Policy::default();
        let f = SendFields { body: None, media_url: Some("https://example.com/a.jpg"), ..sms("") };
        let cmd = p.check_send(f).unwrap();
        assert_eq!((cmd.kind, cmd.body), (MessageKind::Mms, None));
        for bad in [
            "ftp://example.com/a.jpg",
            "/a.jpg",
            "https://",
            "not a url",
            "javascript:alert(1)",
            "https://example.com/a\u{0}b.jpg",
            "https://example.com/a b.jpg",
            "https://example.com/a.jpg\n",
        ] {
            let f = SendFields { media_url: Some(bad), ..sms("x") };
            assert!(matches!(p.check_send(f), Err(ValidationError::InvalidMediaUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn numbers_must_be_e164() {
        let p = Policy::default();
        assert!(matches!(
            p.check_send(SendFields { to: "port back up", ..sms("x") }),
            Err(ValidationError::InvalidTo(_))
        ));
        assert!(matches!(p.check_send(SendFields { from: "12345", ..sms("x") }), Err(ValidationError::InvalidFrom(_))));
    }

    #[test]
    fn idempotency_key_bounds() {
        let p = Policy::default();
        assert!(p.check_send(SendFields { idempotency_key: Some(""), ..sms("x") }).is_err());
        let long = "k".repeat(256);
        assert!(p.check_send(SendFields { idempotency_key: Some(&long), ..sms("x") }).is_err());
        assert!(p.check_send(SendFields { idempotency_key: Some("order-1"), ..sms("x") }).is_ok());
    }

    #[test]
    fn batches_are_deduplicated_and_capped() {
        let p = Policy { max_recipients: 2, ..Policy::default() };
        let f = |to: Vec<&'static str>| BatchFields { to, from: None, body: Some("hi"), alphanumeric_from: false };
        let cmd = p.check_batch(f(vec!["+18005550001", "+18005550001", "+18005550002"])).unwrap();
        assert_eq!(cmd.recipients.len(), 2);
        assert_eq!(cmd.from, None);
        assert!(matches!(
            p.check_batch(f(vec!["+18005550001", "+18005550002", "+18005550003"])),
            Err(ValidationError::TooManyRecipients { count: 3, max: 2 })
        ));
        assert_eq!(p.check_batch(f(vec![])), Err(ValidationError::NoRecipients));
        assert!(matches!(
            p.check_batch(f(vec!["+18005550001", "feed generate"])),
            Err(ValidationError::InvalidRecipient { index: 1, .. })
        ));
        let empty = BatchFields { body: Some(" "), ..f(vec!["+18005550001"]) };
        assert_eq!(p.check_batch(empty), Err(ValidationError::MissingBody));
    }

    #[test]
    fn blocked_terms_match_whole_words() {
        let p = Policy { blocked_terms: vec!["casino".into()], ..Policy::default() };
        assert_eq!(p.check_send(sms("Win at the CASINO tonight")), Err(ValidationError::Compliance));
        assert!(p.check_send(sms("casinos-free zone")).is_ok());
    }
}

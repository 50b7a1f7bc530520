//! Delivery-receipt text (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`,
//! SMPP 3.4 appendix B) and what its `stat:` and `err:` mean for Switchboard.
//!
//! The format is informal and vendors vary it; [`parse_receipt_text`] accepts keys in any case,
//! `submit date`, `submit_date` or `submitdate` (and the same for `done date`), any spaces
//! around keys, colons and values, fields in any order or missing, and a `text:` that runs to
//! the end and may hold spaces and colons.

use switchboard_domain::ErrorType;
use switchboard_provider::ReceiptStatus;

/// The fields of a receipt text, as written (trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    /// `id:` — the message id, in whatever base the SMSC writes it.
    pub id: Option<String>,
    /// `sub:` — parts submitted.
    pub sub: Option<String>,
    /// `dlvrd:` — parts delivered.
    pub dlvrd: Option<String>,
    /// `submit date:` — `YYMMDDhhmm[ss]`, in the SMSC's time zone.
    pub submit_date: Option<String>,
    /// `done date:` — `YYMMDDhhmm[ss]`, in the SMSC's time zone.
    pub done_date: Option<String>,
    /// `stat:` — `DELIVRD`, `UNDELIV`, …
    pub stat: Option<String>,
    /// `err:` — the network or SMSC error code.
    pub err: Option<String>,
    /// `text:` — the start of the message.
    pub text: Option<String>,
}

impl ReceiptText {
    /// Whether the text is a receipt at all: it has both an `id:` and a `stat:`.
    pub fn is_receipt(&self) -> bool {
        self.id.is_some() && self.stat.is_some()
    }
}

impl ReceiptText {
    /// Writes the receipt text in the form of SMPP 3.4 appendix B, fields in the usual order:
    /// `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…` (a missing field is
    /// written empty). [`parse_receipt_text`] reads it back.
    pub fn write(&self) -> String {
        let f = |v: &Option<String>| v.clone().unwrap_or_default();
        format!(
            "id:{} sub:{} dlvrd:{} submit date:{} done date:{} stat:{} err:{} text:{}",
            f(&self.id),
            f(&self.sub),
            f(&self.dlvrd),
            f(&self.submit_date),
            f(&self.done_date),
            f(&self.stat),
            f(&self.err),
            f(&self.text)
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// Keys as words (joined by spaces, underscores or nothing); longer spellings first.
const KEYS: [(&[&str], Key); 8] = [
    (&["submit", "date"], Key::SubmitDate),
    (&["done", "date"], Key::DoneDate),
    (&["dlvrd"], Key::Dlvrd),
    (&["stat"], Key::Stat),
    (&["text"], Key::Text),
    (&["sub"], Key::Sub),
    (&["err"], Key::Err),
    (&["id"], Key::Id),
];

/// If a key starts at byte `at` of `lower` (the lower-cased text), the key and where its value
/// starts (after the colon).
fn key_at(lower: &[u8], at: usize) -> Option<(Key, usize)> {
    if at > 0 && lower[at - 1].is_ascii_alphanumeric() {
        return None;
    }
    'keys: for (words, key) in KEYS {
        let mut i = at;
        for (n, word) in words.iter().enumerate() {
            if n > 0 {
                while i < lower.len() && (lower[i] == b' ' || lower[i] == b'_') {
                    i += 1;
                }
            }
            if !lower[i..].starts_with(word.as_bytes()) {
                continue 'keys;
            }
            i += word.len();
        }
        while i < lower.len() && lower[i].is_ascii_whitespace() {
            i += 1;
        }
        if lower.get(i) == Some(&b':') {
            return Some((key, i + 1));
        }
    }
    None
}

/// Reads the fields of a receipt text. Never fails: fields it cannot find are `None`; see
/// [`ReceiptText::is_receipt`].
pub fn parse_receipt_text(text: &str) -> ReceiptText {
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    // (key, where the key starts, where its value starts)
    let mut found: Vec<(Key, usize, usize)> = Vec::new();
    let mut at = 0;
    while at < lower.len() {
        if let Some((key, value_at)) = key_at(lower, at) {
            found.push((key, at, value_at));
            if key == Key::Text {
                // The text runs to the end, whatever it holds.
                break;
            }
            at = value_at;
        } else {
            at += 1;
        }
    }
    let mut out = ReceiptText::default();
    for (n, &(key, _, value_at)) in found.iter().enumerate() {
        let end = found.get(n + 1).map_or(text.len(), |next| next.1);
        let Some(value) = text.get(value_at..end) else { continue };
        let value = value.trim();
        let slot = match key {
            Key::Id => &mut out.id,
            Key::Sub => &mut out.sub,
            Key::Dlvrd => &mut out.dlvrd,
            Key::SubmitDate => &mut out.submit_date,
            Key::DoneDate => &mut out.done_date,
            Key::Stat => &mut out.stat,
            Key::Err => &mut out.err,
            Key::Text => &mut out.text,
        };
        // The first occurrence wins; an empty id or stat counts as missing.
        if slot.is_none() && !(value.is_empty() && matches!(key, Key::Id | Key::Stat)) {
            *slot = Some(value.to_owned());
        }
    }
    out
}

/// What a receipt's state means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptState {
    /// A final state.
    Final(ReceiptStatus),
    /// Not final yet (`ENROUTE`, `ACCEPTD`, scheduled): no event.
    Pending,
    /// A state this crate does not know.
    Unknown,
}

/// Reads `stat:`: `DELIVRD` → delivered; `UNDELIV`, `EXPIRED`, `DELETED`, `UNKNOWN` →
/// undelivered; `REJECTD` → failed; `ENROUTE`, `ACCEPTD` → not final. Spelled-out forms
/// (`DELIVERED`, `UNDELIVERABLE`, `REJECTED`, `ACCEPTED`, …) are read the same way.
pub fn stat_state(stat: &str) -> ReceiptState {
    let s = stat.trim().to_ascii_uppercase();
    let starts = |p: &str| s.starts_with(p);
    if starts("DELIV") {
        ReceiptState::Final(ReceiptStatus::Delivered)
    } else if starts("UNDELIV") || starts("EXPIR") || starts("DELET") || starts("UNKNOWN") || starts("FAIL") {
        ReceiptState::Final(ReceiptStatus::Undelivered)
    } else if starts("REJECT") {
        ReceiptState::Final(ReceiptStatus::Failed)
    } else if starts("ENROUTE") || starts("ACCEPT") || starts("SCHEDUL") || starts("BUFFERED") {
        ReceiptState::Pending
    } else {
        ReceiptState::Unknown
    }
}

/// Reads the `message_state` TLV (SMPP 3.4 section 5.2.28), for receipts without a `stat:`.
pub fn message_state(value: u8) -> ReceiptState {
    match value {
        2 => ReceiptState::Final(ReceiptStatus::Delivered),
        3..=5 | 7 => ReceiptState::Final(ReceiptStatus::Undelivered),
        8 => ReceiptState::Final(ReceiptStatus::Failed),
        0 | 1 | 6 => ReceiptState::Pending,
        _ => ReceiptState::Unknown,
    }
}

/// The `stat:` name of a `message_state` TLV value.
pub fn message_state_name(value: u8) -> &'static str {
    match value {
        0 => "SCHEDULED",
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        7 => "UNKNOWN",
        8 => "REJECTD",
        _ => "SKIPPED",
    }
}

/// The error type of a failed part from its `err:` code. Codes are network- and SMSC-specific
/// (no standard maps them), so any code but zero is `unknown`; zero, or no code, gives none.
pub fn err_type(err: Option<&str>) -> Option<ErrorType> {
    let err = err?.trim();
    if err.is_empty() || err.bytes().all(|b| b == b'0') { None } else { Some(ErrorType::Unknown) }
}

#[cfg(test)]
mod tests;

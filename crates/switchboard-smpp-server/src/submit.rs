//! Reading a `submit_sm` into what the core sends, and mapping every refusal onto an SMPP
//! command status, with no I/O.
//!
//! | refusal | command status |
//! | --- | --- |
//! | destination not an E.164 number (TON international or unknown, or `+…`) | `ESME_RINVDSTADR` |
//! | source not a number or alphanumeric sender ID, or not the account's active SMS sender | `ESME_RINVSRCADR` |
//! | `data_coding` other than 0 (GSM 7-bit, unpacked), 1 (IA5), 3 (Latin-1) or 8 (UCS-2) | `ESME_RINVDCS` |
//! | `esm_class` message type of a receipt or notification | `ESME_RINVESMCLASS` |
//! | empty text, text over the limit, characters that cannot be sent, a part of more than 255 octets or of a message of more than 32 parts | `ESME_RINVMSGLEN` |
//! | blocked by the content rules | `ESME_RSUBMITFAIL` |
//! | `schedule_delivery_time` that does not parse or is over 35 days ahead | `ESME_RINVSCHED` |
//! | `validity_period` that does not parse, is past, or is over 35 days ahead | `ESME_RINVEXPIRY` |
//! | insufficient credits (nothing is stored or charged) | `ESME_RSUBMITFAIL` |
//! | storage failed or the server is overloaded | `ESME_RSYSERR` |
//!
//! A recipient who opted out, or a destination the operator's rules refuse, is not a refusal:
//! as over HTTP, the message is stored `failed` and free, answered `ESME_ROK` with its id, and
//! its failure receipt follows when one was asked for.

use rusmpp::CommandStatus;
use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::TlvValue;
use switchboard_core::SendError;
use switchboard_core::smpp::{ReceiptRequest, SmppSend};
use switchboard_domain::Timestamp;
use switchboard_smpp::reassembly::{self, Concatenation};
use switchboard_smpp::text;
use switchboard_validation::ValidationError;

/// Longest a message may be scheduled ahead, or be valid for (as for Bird channel sends).
const MAX_AHEAD_MS: i64 = switchboard_core::MAX_SCHEDULE_AHEAD_MS;

/// The `esm_class` GSM message-type bits (2 and 5: a receipt or an intermediate
/// notification, which an ESME does not submit); bits 3 and 4 are ANSI-41 specific and
/// ignored.
const ESM_TYPE_MASK: u8 = 0x24;

/// SMPP TON values used here.
const TON_INTERNATIONAL: u8 = 1;
const TON_ALPHANUMERIC: u8 = 5;

/// A `submit_sm` as read: addresses, text octets and what the core adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The source as the core reads a sender: `+` and digits, or an alphanumeric sender ID.
    pub from: String,
    /// Whether the source may be an alphanumeric sender ID.
    pub alphanumeric_from: bool,
    /// The destination in E.164.
    pub to: String,
    /// The `data_coding`.
    pub data_coding: u8,
    /// The text's octets, without any user data header.
    pub data: Vec<u8>,
    /// Where the part belongs, when this is a part of a concatenated message.
    pub concatenation: Option<Concatenation>,
    /// Schedule, expiry and receipt request.
    pub extra: SmppSend,
}

impl Submitted {
    /// The text, decoded by its `data_coding` (which [`read_submit`] checked is text).
    pub fn text(&self) -> String {
        text::decode_text(self.data_coding, &self.data).unwrap_or_default()
    }
}

/// Reads a `submit_sm` received at `now`.
pub fn read_submit(sm: &SubmitSm, now: Timestamp) -> Result<Submitted, CommandStatus> {
    let esm = u8::from(sm.esm_class);
    if esm & ESM_TYPE_MASK != 0 {
        return Err(CommandStatus::EsmeRinvesmclass);
    }
    let udhi = esm & text::ESM_CLASS_UDHI != 0;
    let data_coding = u8::from(sm.data_coding);
    if !matches!(data_coding, text::DATA_CODING_GSM7 | 0x01 | 0x03 | text::DATA_CODING_UCS2) {
        return Err(CommandStatus::EsmeRinvdcs);
    }
    let to =
        destination(sm.destination_addr.as_str(), u8::from(sm.dest_addr_ton)).ok_or(CommandStatus::EsmeRinvdstadr)?;
    let (from, alphanumeric_from) =
        source(sm.source_addr.as_str(), u8::from(sm.source_addr_ton)).ok_or(CommandStatus::EsmeRinvsrcadr)?;

    let mut bytes: &[u8] = sm.short_message().as_ref();
    let (mut sar_reference, mut sar_total, mut sar_seq) = (None, None, None);
    for tlv in sm.tlvs() {
        match tlv.value() {
            Some(TlvValue::MessagePayload(payload)) if bytes.is_empty() => bytes = payload.value.as_ref(),
            Some(TlvValue::SarMsgRefNum(reference)) => sar_reference = Some(*reference),
            Some(TlvValue::SarTotalSegments(total)) => sar_total = Some(*total),
            Some(TlvValue::SarSegmentSeqnum(seq)) => sar_seq = Some(*seq),
            _ => {}
        }
    }
    let concatenation = udhi
        .then(|| reassembly::udh_concatenation(bytes))
        .flatten()
        .or_else(|| reassembly::sar_concatenation(sar_reference, sar_total, sar_seq));
    let data = text::strip_udh(udhi, bytes).to_vec();

    let scheduled_for = parse_time(sm.schedule_delivery_time.as_str(), now)
        .map_err(|_| CommandStatus::EsmeRinvsched)?
        .filter(|at| *at > now);
    if scheduled_for.is_some_and(|at| at.millis() - now.millis() > MAX_AHEAD_MS) {
        return Err(CommandStatus::EsmeRinvsched);
    }
    let expires_at = parse_time(sm.validity_period.as_str(), now).map_err(|_| CommandStatus::EsmeRinvexpiry)?;
    if expires_at.is_some_and(|at| {
        at <= now || at <= scheduled_for.unwrap_or(now) || at.millis() - now.millis() > MAX_AHEAD_MS + MAX_AHEAD_MS
    }) {
        return Err(CommandStatus::EsmeRinvexpiry);
    }
    let receipt = match u8::from(sm.registered_delivery) & 0x03 {
        0 => None,
        2 => Some(ReceiptRequest::Failure),
        // 1, and 3 (which SMPP 3.4 reserves, and later versions use for "on success"): every
        // final status.
        _ => Some(ReceiptRequest::Final),
    };
    Ok(Submitted {
        from,
        alphanumeric_from,
        to,
        data_coding,
        data,
        concatenation,
        extra: SmppSend { scheduled_for, expires_at, receipt },
    })
}

/// A destination in E.164: `+` and digits as given, or digits with TON international or
/// unknown (where a leading `00` is dropped).
fn destination(addr: &str, ton: u8) -> Option<String> {
    switchboard_smpp::pdu::e164(addr, ton).map(|m| m.as_str().to_owned())
}

/// A source as the core reads a sender, and whether it may be alphanumeric: TON alphanumeric
/// (5) is a sender ID as given; a number (`+…`, or digits with TON international or unknown)
/// is made E.164; letters with TON unknown are read as a sender ID too.
fn source(addr: &str, ton: u8) -> Option<(String, bool)> {
    let addr = addr.trim();
    if addr.is_empty() {
        return None;
    }
    if ton == TON_ALPHANUMERIC {
        return Some((addr.to_owned(), true));
    }
    if let Some(number) = switchboard_smpp::pdu::e164(addr, ton) {
        return Some((number.as_str().to_owned(), false));
    }
    if ton != TON_INTERNATIONAL && addr.chars().any(|c| c.is_ascii_alphabetic()) {
        return Some((addr.to_owned(), true));
    }
    None
}

/// Why a time field did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTime;

/// Reads an SMPP time (`schedule_delivery_time`, `validity_period`): empty is `None`;
/// `YYMMDDhhmmsstnnp` is absolute when `p` is `+` or `-` (local time `nn` quarter hours
/// ahead of or behind UTC) and relative to `now` when `p` is `R` (years of 365 days and
/// months of 30 days).
pub fn parse_time(s: &str, now: Timestamp) -> Result<Option<Timestamp>, BadTime> {
    if s.is_empty() {
        return Ok(None);
    }
    let b = s.as_bytes();
    if b.len() != 16 || !b[..15].iter().all(u8::is_ascii_digit) {
        return Err(BadTime);
    }
    let n = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (yy, mo, dd, hh, mi, ss) = (n(0), n(2), n(4), n(6), n(8), n(10));
    let tenths = i64::from(b[12] - b'0');
    let quarters = n(13);
    match b[15] {
        b'R' => {
            let days = yy * 365 + mo * 30 + dd;
            let ms = ((days * 24 + hh) * 60 + mi) * 60_000 + ss * 1000;
            Ok(Some(now.plus_millis(ms)))
        }
        sign @ (b'+' | b'-') => {
            if quarters > 48 || hh > 23 || mi > 59 || ss > 59 {
                return Err(BadTime);
            }
            let month = time::Month::try_from(u8::try_from(mo).map_err(|_| BadTime)?).map_err(|_| BadTime)?;
            let date = time::Date::from_calendar_date(2000 + yy as i32, month, dd as u8).map_err(|_| BadTime)?;
            let at = date.with_hms(hh as u8, mi as u8, ss as u8).map_err(|_| BadTime)?.assume_utc();
            let local_ms = (at.unix_timestamp_nanos() / 1_000_000) as i64 + tenths * 100;
            let offset = quarters * 15 * 60_000;
            let utc = if sign == b'+' { local_ms - offset } else { local_ms + offset };
            Ok(Some(Timestamp::from_millis(utc)))
        }
        _ => Err(BadTime),
    }
}

/// The status for a send that validation refused.
pub fn validation_status(e: &ValidationError) -> CommandStatus {
    match e {
        ValidationError::InvalidTo(_) => CommandStatus::EsmeRinvdstadr,
        ValidationError::InvalidFrom(_) => CommandStatus::EsmeRinvsrcadr,
        ValidationError::Compliance => CommandStatus::EsmeRsubmitfail,
        _ => CommandStatus::EsmeRinvmsglen,
    }
}

/// The status for a send that the core refused (nothing stored or charged).
pub fn send_status(e: SendError) -> CommandStatus {
    match e {
        SendError::SenderNotAssigned
        | SendError::SenderInactive
        | SendError::SenderNotCapable
        | SendError::NoDefaultSender => CommandStatus::EsmeRinvsrcadr,
        SendError::InsufficientCredits | SendError::IdempotencyConflict => CommandStatus::EsmeRsubmitfail,
        SendError::Unavailable => CommandStatus::EsmeRsyserr,
    }
}

#[cfg(test)]
mod tests;

//! Building `submit_sm` from an outbound message and reading what comes back (`submit_sm_resp`
//! statuses, `deliver_sm`, `data_sm`), with no I/O.

use rusmpp::CommandStatus;
use rusmpp::pdus::{DataSm, DeliverSm, SubmitSm};
use rusmpp::tlvs::{Tlv, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};
use switchboard_domain::{ErrorType, MessageKind, Msisdn, Timestamp};
use switchboard_provider::{InboundMessage, OutboundMessage, ProviderError, ProviderEvent, Receipt, ReceiptStatus};

use crate::config::{MsgIdFormat, SmppConfig};
use crate::reassembly::{self, Part};
use crate::receipt::{self, ReceiptState};
use crate::text::{self, ESM_CLASS_UDHI};

/// The `esm_class` message-type bits (2 to 5).
const ESM_TYPE_MASK: u8 = 0x3c;
/// Message type: an SMSC delivery receipt.
const ESM_TYPE_RECEIPT: u8 = 0x04;
/// Message type: an intermediate delivery notification.
const ESM_TYPE_INTERMEDIATE: u8 = 0x20;

/// The 8-bit concatenation reference of a message: taken from its id, so that every attempt at
/// the same message uses the same one.
pub fn reference_of(message: &OutboundMessage) -> u8 {
    message.id.as_uuid().as_bytes().iter().fold(0u8, |acc, b| acc ^ b)
}

/// The `submit_sm` of each part of `message`, in order.
///
/// Refused permanently: an MMS or a message without text (`invalid_content`), a text of more
/// than 255 parts (`invalid_content`), a sender SMPP cannot carry (`invalid_sender`).
pub fn build_submits(message: &OutboundMessage, config: &SmppConfig) -> Result<Vec<SubmitSm>, ProviderError> {
    if message.kind == MessageKind::Mms || !message.media.is_empty() {
        return Err(ProviderError::permanent_with(ErrorType::InvalidContent, "SMPP cannot carry MMS media"));
    }
    let Some(body) = message.body.as_deref() else {
        return Err(ProviderError::permanent_with(ErrorType::InvalidContent, "the message has no text"));
    };
    let from = message.from.as_str();
    let (source, source_ton, source_npi) = if message.from.is_alphanumeric() {
        (from, config.alphanumeric_source_ton, config.alphanumeric_source_npi)
    } else {
        (from.trim_start_matches('+'), config.source_ton, config.source_npi)
    };
    let source_addr = COctetString::<1, 21>::from_string(source.to_owned()).map_err(|_| {
        ProviderError::permanent_with(
            ErrorType::InvalidSender,
            "the sender does not fit SMPP's source_addr (20 ASCII characters)",
        )
    })?;
    let destination_addr = COctetString::<1, 21>::from_string(message.to.as_str().trim_start_matches('+').to_owned())
        .map_err(|_| ProviderError::permanent(ErrorType::InvalidDestination))?;
    let encoded = text::encode_text(body, message.encoding, reference_of(message))
        .map_err(|e| ProviderError::permanent_with(ErrorType::InvalidContent, e.to_string()))?;
    if encoded.fell_back_to_ucs2 {
        tracing::debug!(message_id = %message.id, "text marked GSM-7 holds other characters; sending it in UCS-2");
    }
    let registered_delivery = RegisteredDelivery::from(u8::from(config.registered_delivery));
    let esm_class = EsmClass::from(if encoded.udhi { ESM_CLASS_UDHI } else { 0 });
    let template = SubmitSm::builder()
        .source_addr_ton(Ton::from(source_ton))
        .source_addr_npi(Npi::from(source_npi))
        .source_addr(source_addr)
        .dest_addr_ton(Ton::from(config.dest_ton))
        .dest_addr_npi(Npi::from(config.dest_npi))
        .destination_addr(destination_addr)
        .esm_class(esm_class)
        .registered_delivery(registered_delivery)
        .data_coding(DataCoding::from(encoded.data_coding))
        .build();
    encoded
        .parts
        .into_iter()
        .map(|part| {
            let short_message = OctetString::<0, 255>::from_vec(part)
                .map_err(|e| ProviderError::permanent_with(ErrorType::InvalidContent, e.to_string()))?;
            Ok(template.clone().with_short_message(short_message))
        })
        .collect()
}

/// The SMPP name of a command status (`ESME_RTHROTTLED`), or `unknown` for one SMPP lacks.
pub fn status_name(status: CommandStatus) -> String {
    let debug = format!("{status:?}");
    match debug.strip_prefix("EsmeR") {
        Some(rest) if !debug.starts_with("Other") => format!("ESME_R{}", rest.to_ascii_uppercase()),
        _ => "unknown status".to_owned(),
    }
}

/// A command status as text: `ESME_RTHROTTLED (0x00000058)`.
pub fn status_text(status: CommandStatus) -> String {
    format!("{} (0x{:08X})", status_name(status), u32::from(status))
}

/// What a `submit_sm_resp` status other than `ESME_ROK` means for the message.
///
/// `ESME_RTHROTTLED`, `ESME_RMSGQFUL` and `ESME_RSYSERR` are retryable `provider_error`s;
/// `ESME_RINVDSTADR` is a permanent `invalid_destination`; `ESME_RINVSRCADR` a permanent
/// `invalid_sender`; anything else a permanent `provider_error` naming the status.
pub fn submit_status_error(status: CommandStatus) -> ProviderError {
    let text = status_text(status);
    match status {
        CommandStatus::EsmeRthrottled => {
            ProviderError::retryable(ErrorType::ProviderError, format!("the SMSC is throttling: {text}"))
        }
        CommandStatus::EsmeRmsgqful => {
            ProviderError::retryable(ErrorType::ProviderError, format!("the SMSC's queue is full: {text}"))
        }
        CommandStatus::EsmeRsyserr => {
            ProviderError::retryable(ErrorType::ProviderError, format!("the SMSC had a system error: {text}"))
        }
        CommandStatus::EsmeRinvdstadr => ProviderError::permanent_with(
            ErrorType::InvalidDestination,
            format!("the SMSC refused the destination: {text}"),
        ),
        CommandStatus::EsmeRinvsrcadr => {
            ProviderError::permanent_with(ErrorType::InvalidSender, format!("the SMSC refused the sender: {text}"))
        }
        _ => ProviderError::permanent_with(ErrorType::ProviderError, format!("the SMSC refused the message: {text}")),
    }
}

/// What a `deliver_sm` or a `data_sm` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A final receipt or an inbound message, for the core.
    Event(ProviderEvent),
    /// One part of a concatenated inbound message, to be joined with the others (see
    /// [`crate::reassembly`]).
    Part(Part),
    /// A receipt of a state that is not final (`ENROUTE`, `ACCEPTD`): nothing to report.
    Pending {
        /// The part's canonical id.
        provider_ref: String,
        /// The state.
        stat: String,
    },
    /// Something that cannot be reported, and why.
    Skipped(String),
}

/// Reads a `deliver_sm`: a delivery receipt (the `esm_class` says so, or the text reads as one)
/// or an inbound message.
///
/// A receipt names its part by the `receipted_message_id` TLV when present (read as a
/// submission id), else by its text's `id:` (read as a receipt id); see [`MsgIdFormat`]. Its
/// state comes from `stat:`, else from the `message_state` TLV. Receipt dates carry no time zone,
/// so a receipt's time is when it arrived.
///
/// An inbound message needs a source and destination that can be written in E.164 (given with
/// `+`, or as digits with TON international or unknown; with TON unknown a leading `00` is
/// dropped), and a text in `data_coding` 0, 1, 3 or 8, in `short_message` or else in the
/// `message_payload` TLV. A part of a concatenated message (a user data header with a
/// concatenation element, or the three SAR TLVs, for a message of two parts or more) is a
/// [`Delivery::Part`], its text still to be joined with the other parts'.
pub fn read_deliver_sm(pdu: &DeliverSm, format: MsgIdFormat) -> Delivery {
    read_incoming(
        Incoming {
            esm_class: u8::from(pdu.esm_class),
            data_coding: u8::from(pdu.data_coding),
            short_message: pdu.short_message().as_ref(),
            tlvs: pdu.tlvs(),
            source: (pdu.source_addr.as_str(), u8::from(pdu.source_addr_ton)),
            destination: (pdu.destination_addr.as_str(), u8::from(pdu.dest_addr_ton)),
        },
        format,
    )
}

/// Reads a `data_sm` from the SMSC as [`read_deliver_sm`] reads a `deliver_sm`: its text (a
/// receipt's or an inbound message's) is in the `message_payload` TLV, since `data_sm` has no
/// `short_message`.
pub fn read_data_sm(pdu: &DataSm, format: MsgIdFormat) -> Delivery {
    read_incoming(
        Incoming {
            esm_class: u8::from(pdu.esm_class),
            data_coding: u8::from(pdu.data_coding),
            short_message: &[],
            tlvs: pdu.tlvs(),
            source: (pdu.source_addr.as_str(), u8::from(pdu.source_addr_ton)),
            destination: (pdu.destination_addr.as_str(), u8::from(pdu.dest_addr_ton)),
        },
        format,
    )
}

/// The fields of a `deliver_sm` or `data_sm` that say what it carries.
struct Incoming<'a> {
    esm_class: u8,
    data_coding: u8,
    short_message: &'a [u8],
    tlvs: &'a [Tlv],
    /// Address and TON.
    source: (&'a str, u8),
    destination: (&'a str, u8),
}

fn read_incoming(pdu: Incoming<'_>, format: MsgIdFormat) -> Delivery {
    let esm = pdu.esm_class;
    let udhi = esm & ESM_CLASS_UDHI != 0;
    let data_coding = pdu.data_coding;
    let mut bytes: &[u8] = pdu.short_message;
    let mut tlv_id = None;
    let mut tlv_state = None;
    let (mut sar_reference, mut sar_total, mut sar_seq) = (None, None, None);
    for tlv in pdu.tlvs {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(state)) => tlv_state = Some(u8::from(*state)),
            Some(TlvValue::MessagePayload(payload)) if bytes.is_empty() => bytes = payload.value.as_ref(),
            Some(TlvValue::SarMsgRefNum(reference)) => sar_reference = Some(*reference),
            Some(TlvValue::SarTotalSegments(total)) => sar_total = Some(*total),
            Some(TlvValue::SarSegmentSeqnum(seq)) => sar_seq = Some(*seq),
            _ => {}
        }
    }
    let body = text::strip_udh(udhi, bytes);
    let kind = esm & ESM_TYPE_MASK;
    let flagged = kind == ESM_TYPE_RECEIPT || kind == ESM_TYPE_INTERMEDIATE;
    // Receipt texts are ASCII whatever the data_coding says (GSM-7 would read `_` as `§`).
    let receipt_text = match data_coding {
        text::DATA_CODING_UCS2 => text::decode_ucs2(body),
        _ => body.iter().map(|&b| char::from(b)).collect(),
    };
    let fields = receipt::parse_receipt_text(&receipt_text);
    if flagged || fields.is_receipt() || tlv_id.is_some() && (tlv_state.is_some() || fields.stat.is_some()) {
        return read_receipt(fields, tlv_id, tlv_state, format);
    }
    let (source, source_ton) = pdu.source;
    let Some(from) = e164(source, source_ton) else {
        return Delivery::Skipped(format!("inbound message from `{}`, which is not an E.164 number", mask(source)));
    };
    let (destination, dest_ton) = pdu.destination;
    let Some(to) = e164(destination, dest_ton) else {
        return Delivery::Skipped(format!("inbound message to `{destination}`, which is not an E.164 number"));
    };
    let Some(decoded) = text::decode_text(data_coding, body) else {
        return Delivery::Skipped(format!("inbound message in data_coding 0x{data_coding:02X}, which is not text"));
    };
    let concatenation = udhi
        .then(|| reassembly::udh_concatenation(bytes))
        .flatten()
        .or_else(|| reassembly::sar_concatenation(sar_reference, sar_total, sar_seq));
    if let Some(concatenation) = concatenation {
        return Delivery::Part(Part { from, to, concatenation, data_coding, data: body.to_vec() });
    }
    Delivery::Event(ProviderEvent::Inbound(InboundMessage {
        from,
        to,
        body: Some(decoded),
        media: Vec::new(),
        provider_ref: None,
        at: Timestamp::now(),
    }))
}

fn read_receipt(
    fields: receipt::ReceiptText,
    tlv_id: Option<String>,
    tlv_state: Option<u8>,
    format: MsgIdFormat,
) -> Delivery {
    let provider_ref = match (&tlv_id, &fields.id) {
        (Some(id), _) if !id.trim().is_empty() => format.submit_id(id),
        (_, Some(id)) => format.receipt_id(id),
        _ => return Delivery::Skipped("delivery receipt without a message id".to_owned()),
    };
    let (stat, state) = match (&fields.stat, tlv_state) {
        (Some(stat), _) => (stat.clone(), receipt::stat_state(stat)),
        (None, Some(state)) => (receipt::message_state_name(state).to_owned(), receipt::message_state(state)),
        (None, None) => return Delivery::Skipped(format!("delivery receipt for {provider_ref} without a state")),
    };
    let status = match state {
        ReceiptState::Final(status) => status,
        ReceiptState::Pending => return Delivery::Pending { provider_ref, stat },
        ReceiptState::Unknown => {
            return Delivery::Skipped(format!("delivery receipt for {provider_ref} with unknown state `{stat}`"));
        }
    };
    let (error_type, description) = match status {
        ReceiptStatus::Delivered => (None, None),
        _ => {
            let err = fields.err.as_deref().unwrap_or("");
            let description = if err.is_empty() { format!("stat:{stat}") } else { format!("stat:{stat} err:{err}") };
            (receipt::err_type(fields.err.as_deref()), Some(description))
        }
    };
    Delivery::Event(ProviderEvent::Receipt(Receipt {
        provider_ref,
        status,
        error_type,
        description,
        at: Timestamp::now(),
    }))
}

/// An SMPP address as E.164, if it can be written so: `+` and digits as given, or digits with
/// TON international (1) or unknown (0, where a leading `00` is dropped).
pub fn e164(addr: &str, ton: u8) -> Option<Msisdn> {
    let addr = addr.trim();
    if addr.starts_with('+') {
        return Msisdn::parse(addr).ok();
    }
    let digits = match ton {
        1 => addr,
        0 => addr.strip_prefix("00").unwrap_or(addr),
        _ => return None,
    };
    Msisdn::parse(&format!("+{digits}")).ok()
}

/// An address with all but its last four characters masked, for logs.
fn mask(addr: &str) -> String {
    let n = addr.chars().count();
    addr.chars().enumerate().map(|(i, c)| if i + 4 < n { '*' } else { c }).collect()
}

#[cfg(test)]
mod tests;

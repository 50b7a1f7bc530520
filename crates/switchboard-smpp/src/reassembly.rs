//! Joining the parts of a concatenated inbound message, with no I/O.
//!
//! A part says where it belongs either in its user data header (`esm_class` UDHI set; element
//! 0x00 with an 8-bit reference, or 0x08 with a 16-bit one: reference, count, number) or in the
//! `sar_msg_ref_num`, `sar_total_segments` and `sar_segment_seqnum` TLVs. Parts belong to one
//! message when they share source, destination, reference and count.
//!
//! A [`Reassembler`] keeps the parts of each message until the last one comes, with whatever
//! the caller needs to answer each part later (`T`: here, the SMSC's `deliver_sm` or `data_sm`
//! waiting for its answer). Nothing is answered by it: it hands back what to answer, and when.
//!
//! - Once every part has come, the message's text is the parts' texts joined in order. The
//!   octets of consecutive parts in the same `data_coding` are joined before they are decoded,
//!   so that a UCS-2 surrogate pair (or a GSM-7 escape) cut across two parts reads whole.
//! - A message not complete within the timeout of its first part is given up: every answer it
//!   holds is handed back (for a temporary error, so that the SMSC delivers the parts again).
//! - At most `cap` incomplete messages are kept; starting one more gives up the oldest.
//! - A part that comes again while its message is incomplete is kept with the earlier copy
//!   (the newest text counts) and both are answered with the message; past [`MAX_COPIES`]
//!   copies of one part, the oldest copy is handed back at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use switchboard_domain::{Msisdn, Timestamp};
use switchboard_provider::InboundMessage;
use tokio::time::Instant;

use crate::text;

/// Most incomplete messages a session's upstream keeps at once by default.
pub const MAX_INCOMPLETE: usize = 1_000;
/// Most copies of one part kept at once.
pub const MAX_COPIES: usize = 4;

/// User data header element: concatenation with an 8-bit reference.
const IEI_CONCAT_8: u8 = 0x00;
/// User data header element: concatenation with a 16-bit reference.
const IEI_CONCAT_16: u8 = 0x08;

/// Where a part belongs: its message's reference and part count, and its own number (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concatenation {
    /// The message's reference (an 8-bit one is kept as is).
    pub reference: u16,
    /// How many parts the message has (2 to 255).
    pub total: u8,
    /// This part's number, from 1 to `total`.
    pub seq: u8,
}

impl Concatenation {
    /// The concatenation when it describes a part of a message of two parts or more; `None`
    /// for a count below 2 or a number outside 1 to the count (such a header is ignored, and
    /// the part read as a message of its own).
    pub fn new(reference: u16, total: u8, seq: u8) -> Option<Concatenation> {
        (total >= 2 && seq >= 1 && seq <= total).then_some(Concatenation { reference, total, seq })
    }
}

/// The concatenation element of a user data header, read from a short message (or payload)
/// that starts with the header. The first usable element counts; `None` without one, or when
/// the header is cut short.
pub fn udh_concatenation(user_data: &[u8]) -> Option<Concatenation> {
    let (&length, rest) = user_data.split_first()?;
    let mut header = rest.get(..usize::from(length))?;
    while let [iei, len, tail @ ..] = header {
        let data = tail.get(..usize::from(*len))?;
        let found = match (*iei, data) {
            (IEI_CONCAT_8, &[reference, total, seq]) => Concatenation::new(u16::from(reference), total, seq),
            (IEI_CONCAT_16, &[hi, lo, total, seq]) => Concatenation::new(u16::from_be_bytes([hi, lo]), total, seq),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        header = &tail[usize::from(*len)..];
    }
    None
}

/// The concatenation given by the SAR TLVs, when all three are there.
pub fn sar_concatenation(reference: Option<u16>, total: Option<u8>, seq: Option<u8>) -> Option<Concatenation> {
    Concatenation::new(reference?, total?, seq?)
}

/// One part of a concatenated message, between two addresses of type `A` (an inbound
/// message's numbers; the SMPP server's `submit_sm` keys its parts by the addresses as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<A = Msisdn> {
    /// The sender.
    pub from: A,
    /// The recipient.
    pub to: A,
    /// Where it belongs.
    pub concatenation: Concatenation,
    /// Its `data_coding` (one that [`text::decode_text`] reads).
    pub data_coding: u8,
    /// Its octets, without the user data header.
    pub data: Vec<u8>,
}

/// What one message's parts share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key<A> {
    from: A,
    to: A,
    reference: u16,
    total: u8,
}

/// One part received, with the answers held for its copies (oldest first).
struct Slot<T> {
    data_coding: u8,
    data: Vec<u8>,
    held: Vec<T>,
}

/// A message missing parts.
struct Incomplete<T> {
    /// Its place in the order messages were started.
    started: u64,
    deadline: Instant,
    slots: Vec<Option<Slot<T>>>,
    received: usize,
}

impl<T> Incomplete<T> {
    fn into_held(self) -> impl Iterator<Item = T> {
        self.slots.into_iter().flatten().flat_map(|slot| slot.held)
    }
}

/// What became of a part given to [`Reassembler::add`].
#[must_use]
pub struct Added<T, C = InboundMessage> {
    /// The whole message, with the answers held for all its parts (this one included), when
    /// this part completed it.
    pub complete: Option<(C, Vec<T>)>,
    /// When the part started a new incomplete message: that message's deadline (check
    /// [`Reassembler::expire`] then).
    pub deadline: Option<Instant>,
    /// Answers to give up on now (answer them with a temporary error): the oldest copy of a
    /// part received more than [`MAX_COPIES`] times, or every part of the oldest incomplete
    /// message when one more than the cap was started.
    pub released: Vec<T>,
}

/// The incomplete messages of an upstream. See the module documentation.
pub struct Reassembler<T, A = Msisdn> {
    timeout: Duration,
    cap: usize,
    next: u64,
    incomplete: HashMap<Key<A>, Incomplete<T>>,
    /// The incomplete messages by the order they were started, which is also the order of
    /// their deadlines.
    order: BTreeMap<u64, Key<A>>,
}

/// A whole message that [`Reassembler::add_part`] joined: its addresses and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined<A> {
    /// The sender.
    pub from: A,
    /// The recipient.
    pub to: A,
    /// The parts' texts, joined in order.
    pub text: String,
}

impl<T, A> std::fmt::Debug for Reassembler<T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("timeout", &self.timeout)
            .field("cap", &self.cap)
            .field("incomplete", &self.incomplete.len())
            .finish()
    }
}

impl<T> Reassembler<T> {
    /// Takes one part of an inbound message that came at `now`, with `held`, what is needed
    /// to answer it later; a completed message comes back as an [`InboundMessage`].
    pub fn add(&mut self, part: Part, held: T, now: Instant) -> Added<T> {
        let Added { complete, deadline, released } = self.add_part(part, held, now);
        let complete = complete.map(|(joined, held)| {
            let inbound = InboundMessage {
                from: joined.from,
                to: joined.to,
                body: Some(joined.text),
                media: Vec::new(),
                provider_ref: None,
                at: Timestamp::now(),
            };
            (inbound, held)
        });
        Added { complete, deadline, released }
    }
}

impl<T, A: Clone + Eq + std::hash::Hash> Reassembler<T, A> {
    /// Keeps at most `cap` (at least 1) incomplete messages, each at most `timeout` after its
    /// first part came.
    pub fn new(timeout: Duration, cap: usize) -> Self {
        Self { timeout, cap: cap.max(1), next: 0, incomplete: HashMap::new(), order: BTreeMap::new() }
    }

    /// How many messages miss parts.
    pub fn incomplete(&self) -> usize {
        self.incomplete.len()
    }

    /// How many answers are held.
    pub fn held(&self) -> usize {
        self.incomplete.values().flat_map(|m| m.slots.iter().flatten()).map(|s| s.held.len()).sum()
    }

    /// The earliest deadline of an incomplete message.
    pub fn next_deadline(&self) -> Option<Instant> {
        let key = self.order.values().next()?;
        self.incomplete.get(key).map(|m| m.deadline)
    }

    /// Takes one part that came at `now`, with `held`, what is needed to answer it later.
    pub fn add_part(&mut self, part: Part<A>, held: T, now: Instant) -> Added<T, Joined<A>> {
        let Part { from, to, concatenation, data_coding, data } = part;
        let Concatenation { reference, total, seq } = concatenation;
        let key = Key { from, to, reference, total };
        let mut released = Vec::new();
        let mut deadline = None;
        if !self.incomplete.contains_key(&key) {
            while self.incomplete.len() >= self.cap {
                let Some((_, oldest)) = self.order.pop_first() else { break };
                if let Some(message) = self.incomplete.remove(&oldest) {
                    released.extend(message.into_held());
                }
            }
            let started = self.next;
            self.next += 1;
            let at = now + self.timeout;
            deadline = Some(at);
            self.order.insert(started, key.clone());
            let slots = (0..total).map(|_| None).collect();
            self.incomplete.insert(key.clone(), Incomplete { started, deadline: at, slots, received: 0 });
        }
        let Some(message) = self.incomplete.get_mut(&key) else {
            unreachable!("the message was just found or inserted");
        };
        let index = usize::from(seq - 1);
        match &mut message.slots[index] {
            Some(slot) => {
                slot.data_coding = data_coding;
                slot.data = data;
                slot.held.push(held);
                if slot.held.len() > MAX_COPIES {
                    released.push(slot.held.remove(0));
                }
            }
            empty => {
                *empty = Some(Slot { data_coding, data, held: vec![held] });
                message.received += 1;
            }
        }
        if message.received < message.slots.len() {
            return Added { complete: None, deadline, released };
        }
        let Some(message) = self.incomplete.remove(&key) else {
            unreachable!("the message was just found");
        };
        self.order.remove(&message.started);
        let slots: Vec<Slot<T>> = message.slots.into_iter().flatten().collect();
        let body = join_text(&slots);
        let held = slots.into_iter().flat_map(|slot| slot.held).collect();
        Added { complete: Some((Joined { from: key.from, to: key.to, text: body }, held)), deadline, released }
    }

    /// Gives up every message whose deadline is `now` or past, returning the answers they
    /// held (oldest message first).
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut released = Vec::new();
        while let Some(deadline) = self.next_deadline()
            && deadline <= now
        {
            let Some((_, key)) = self.order.pop_first() else { break };
            if let Some(message) = self.incomplete.remove(&key) {
                released.extend(message.into_held());
            }
        }
        released
    }
}

/// The text of a message's parts, in order: the octets of consecutive parts in the same
/// `data_coding` are joined, then decoded.
fn join_text<T>(slots: &[Slot<T>]) -> String {
    let mut body = String::new();
    let mut run: Vec<u8> = Vec::new();
    let mut coding = None;
    for slot in slots {
        if coding.is_some_and(|c| c != slot.data_coding) {
            body.push_str(&decode(coding, &run));
            run.clear();
        }
        coding = Some(slot.data_coding);
        let data = match slot.data_coding {
            // A stray odd octet would shift every later UTF-16 unit.
            text::DATA_CODING_UCS2 => &slot.data[..slot.data.len() & !1],
            _ => &slot.data[..],
        };
        run.extend_from_slice(data);
    }
    body.push_str(&decode(coding, &run));
    body
}

fn decode(coding: Option<u8>, bytes: &[u8]) -> String {
    coding.and_then(|c| text::decode_text(c, bytes)).unwrap_or_default()
}

#[cfg(test)]
mod tests;

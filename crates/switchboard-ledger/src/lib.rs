//! Credit pricing and ledger rules.
//!
//! Every account has two balances, SMS credits and MMS credits. They change only through
//! [`Entry`]s (a top-up, a charge for a message, a refund of that charge), each immutable and
//! tied to its cause. This crate is pure arithmetic: it says what a message costs and whether a
//! balance can pay; storage applies the entries in the same transaction as the message.
//!
//! Prices are TextingLine's: an SMS costs 2 SMS credits (1 message + 1 carrier lookup); an MMS
//! costs 2 SMS credits + 1 MMS credit. Balances never go negative.

use serde::{Deserialize, Serialize};
use switchboard_domain::MessageKind;

/// An amount of both kinds of credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Credits {
    /// SMS credits.
    pub sms: i64,
    /// MMS credits.
    pub mms: i64,
}

impl std::ops::Neg for Credits {
    type Output = Credits;
    fn neg(self) -> Credits {
        Credits { sms: -self.sms, mms: -self.mms }
    }
}

impl Credits {
    /// Nothing.
    pub const ZERO: Credits = Credits { sms: 0, mms: 0 };

    /// A new amount.
    pub const fn new(sms: i64, mms: i64) -> Self {
        Self { sms, mms }
    }

    /// Whether both parts are zero.
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Credits) -> Option<Credits> {
        Some(Credits { sms: self.sms.checked_add(other.sms)?, mms: self.mms.checked_add(other.mms)? })
    }

    /// The difference, or `None` on overflow.
    pub fn checked_sub(self, other: Credits) -> Option<Credits> {
        Some(Credits { sms: self.sms.checked_sub(other.sms)?, mms: self.mms.checked_sub(other.mms)? })
    }
}

/// What sending costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    /// Cost of one SMS.
    pub sms: Credits,
    /// Cost of one MMS.
    pub mms: Credits,
}

impl Default for Tariff {
    /// TextingLine's published prices.
    fn default() -> Self {
        Tariff { sms: Credits::new(2, 0), mms: Credits::new(2, 1) }
    }
}

impl Tariff {
    /// The price of one message of this kind. A message is charged once whatever its segment
    /// count, as TextingLine prices it.
    pub fn price(&self, kind: MessageKind) -> Credits {
        match kind {
            MessageKind::Sms => self.sms,
            MessageKind::Mms => self.mms,
        }
    }
}

/// Why a ledger operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The balance cannot pay.
    #[error("insufficient credits: balance {balance:?}, needed {needed:?}")]
    Insufficient {
        /// The balance.
        balance: Credits,
        /// The amount asked for.
        needed: Credits,
    },
    /// An amount was negative where it must not be, or arithmetic overflowed.
    #[error("invalid amount {0:?}")]
    InvalidAmount(Credits),
}

/// The kind of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Credits added by the operator.
    Topup,
    /// A message's price taken.
    Charge,
    /// A charge given back.
    Refund,
}

impl EntryKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Topup => "topup",
            EntryKind::Charge => "charge",
            EntryKind::Refund => "refund",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "topup" => Some(EntryKind::Topup),
            "charge" => Some(EntryKind::Charge),
            "refund" => Some(EntryKind::Refund),
            _ => None,
        }
    }
}

/// An account's balances, changed only by the methods below, each of which returns the
/// signed delta that its ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance(Credits);

/// The largest single top-up of either credit.
pub const MAX_TOPUP: i64 = 1_000_000_000;

impl Balance {
    /// A balance as stored. Negative stored values are a corruption and are refused.
    pub fn new(credits: Credits) -> Result<Self, LedgerError> {
        if credits.sms < 0 || credits.mms < 0 {
            return Err(LedgerError::InvalidAmount(credits));
        }
        Ok(Self(credits))
    }

    /// The credits.
    pub fn credits(self) -> Credits {
        self.0
    }

    /// Whether the balance can pay `price`.
    pub fn covers(self, price: Credits) -> bool {
        self.0.sms >= price.sms && self.0.mms >= price.mms
    }

    /// Takes `price`; refuses if either balance would go negative. Returns the entry delta.
    pub fn charge(&mut self, price: Credits) -> Result<Credits, LedgerError> {
        if price.sms < 0 || price.mms < 0 {
            return Err(LedgerError::InvalidAmount(price));
        }
        if !self.covers(price) {
            return Err(LedgerError::Insufficient { balance: self.0, needed: price });
        }
        self.0 = self.0.checked_sub(price).ok_or(LedgerError::InvalidAmount(price))?;
        Ok(-price)
    }

    /// Gives back an earlier charge. Returns the entry delta.
    pub fn refund(&mut self, charged: Credits) -> Result<Credits, LedgerError> {
        if charged.sms < 0 || charged.mms < 0 {
            return Err(LedgerError::InvalidAmount(charged));
        }
        self.0 = self.0.checked_add(charged).ok_or(LedgerError::InvalidAmount(charged))?;
        Ok(charged)
    }

    /// Adds credits bought. Each part must be within 0..=[`MAX_TOPUP`] and not both zero.
    pub fn top_up(&mut self, amount: Credits) -> Result<Credits, LedgerError> {
        let in_range = |v: i64| (0..=MAX_TOPUP).contains(&v);
        if !in_range(amount.sms) || !in_range(amount.mms) || amount.is_zero() {
            return Err(LedgerError::InvalidAmount(amount));
        }
        self.0 = self.0.checked_add(amount).ok_or(LedgerError::InvalidAmount(amount))?;
        Ok(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn textingline_prices() {
        let t = Tariff::default();
        assert_eq!(t.price(MessageKind::Sms), Credits::new(2, 0));
        assert_eq!(t.price(MessageKind::Mms), Credits::new(2, 1));
    }

    #[test]
    fn charge_refuses_to_go_negative() {
        let mut b = Balance::new(Credits::new(3, 0)).unwrap();
        assert_eq!(b.charge(Credits::new(2, 0)), Ok(Credits::new(-2, 0)));
        assert!(matches!(b.charge(Credits::new(2, 0)), Err(LedgerError::Insufficient { .. })));
        assert_eq!(b.credits(), Credits::new(1, 0));
        // An MMS needs both balances.
        let mut b = Balance::new(Credits::new(10, 0)).unwrap();
        assert!(b.charge(Credits::new(2, 1)).is_err());
        assert_eq!(b.credits(), Credits::new(10, 0));
    }

    #[test]
    fn top_up_bounds() {
        let mut b = Balance::default();
        assert!(b.top_up(Credits::ZERO).is_err());
        assert!(b.top_up(Credits::new(-1, 5)).is_err());
        assert!(b.top_up(Credits::new(MAX_TOPUP + 1, 0)).is_err());
        assert_eq!(b.top_up(Credits::new(10, 1)), Ok(Credits::new(10, 1)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        TopUp(i64, i64),
        Charge(MessageKind),
        RefundLast,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..20, 0i64..5).prop_map(|(s, m)| Op::TopUp(s, m)),
            Just(Op::Charge(MessageKind::Sms)),
            Just(Op::Charge(MessageKind::Mms)),
            Just(Op::RefundLast),
        ]
    }

    proptest! {
        /// The balance always equals the sum of the recorded entries and never goes negative;
        /// a refund only ever returns a charge once.
        #[test]
        fn balance_is_the_sum_of_entries(ops in proptest::collection::vec(op(), 0..200)) {
            let tariff = Tariff::default();
            let mut balance = Balance::default();
            let mut entries: Vec<Credits> = Vec::new();
            let mut refundable: Vec<Credits> = Vec::new();
            for op in ops {
                match op {
                    Op::TopUp(s, m) => if let Ok(d) = balance.top_up(Credits::new(s, m)) { entries.push(d) },
                    Op::Charge(kind) => if let Ok(d) = balance.charge(tariff.price(kind)) {
                        entries.push(d);
                        refundable.push(-d);
                    },
                    Op::RefundLast => if let Some(c) = refundable.pop() {
                        entries.push(balance.refund(c).unwrap());
                    },
                }
                let c = balance.credits();
                prop_assert!(c.sms >= 0 && c.mms >= 0);
                let sum = entries.iter().fold(Credits::ZERO, |a, e| a.checked_add(*e).unwrap());
                prop_assert_eq!(sum, c);
            }
        }
    }
}

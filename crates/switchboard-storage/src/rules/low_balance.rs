//! When a charge crosses an account's low-balance threshold.
//!
//! An admission locks the balances of its group's accounts and reads each one's threshold with
//! its balance (no query of its own). [`Watch`] then follows the SMS balance of every account
//! that has a threshold through the group's charges, in order: the charge that takes it from
//! at or above the threshold to below it raises `account.balance_low`, and no other does. So
//! the event is posted once per crossing, and a top-up or refund that brings the balance back
//! to the threshold or above arms the next one without anything being stored for it.

use std::collections::HashMap;

use switchboard_domain::AccountId;

use crate::BalanceLow;

/// The accounts of a group that have a threshold: (threshold, SMS balance as the group's
/// charges so far leave it).
#[derive(Debug, Default)]
pub struct Watch {
    accounts: HashMap<AccountId, (i64, i64)>,
}

impl Watch {
    /// Follows `account`, whose SMS balance is `sms` before the group, with `threshold`.
    pub fn watch(&mut self, account: AccountId, threshold: i64, sms: i64) {
        self.accounts.insert(account, (threshold, sms));
    }

    /// Whether no account of the group has a threshold: then there is nothing to follow.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// A charge left `account`'s SMS balance at `sms_after`: what to report if it crossed the
    /// threshold.
    pub fn charged(&mut self, account: AccountId, sms_after: i64) -> Option<BalanceLow> {
        let (threshold, sms) = self.accounts.get_mut(&account)?;
        let crossed = *sms >= *threshold && sms_after < *threshold;
        *sms = sms_after;
        crossed.then_some(BalanceLow { sms_credits: sms_after, threshold: *threshold })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_charge_that_crosses_reports() {
        let a = AccountId::new();
        let mut w = Watch::default();
        w.watch(a, 10, 14);
        assert_eq!(w.charged(a, 12), None);
        assert_eq!(w.charged(a, 10), None, "at the threshold is not below it");
        assert_eq!(w.charged(a, 8), Some(BalanceLow { sms_credits: 8, threshold: 10 }));
        assert_eq!(w.charged(a, 6), None, "already below");
        assert_eq!(w.charged(a, 0), None);
    }

    #[test]
    fn a_group_that_starts_below_reports_nothing() {
        let a = AccountId::new();
        let mut w = Watch::default();
        w.watch(a, 10, 9);
        assert_eq!(w.charged(a, 7), None);
    }

    #[test]
    fn a_crossing_in_one_step_from_above_reports() {
        let a = AccountId::new();
        let mut w = Watch::default();
        w.watch(a, 10, 100);
        assert_eq!(w.charged(a, 2), Some(BalanceLow { sms_credits: 2, threshold: 10 }));
    }

    #[test]
    fn accounts_without_a_threshold_are_not_followed() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let mut w = Watch::default();
        assert!(w.is_empty());
        w.watch(a, 10, 12);
        assert_eq!(w.charged(b, 0), None);
        assert_eq!(w.charged(a, 9).map(|l| l.sms_credits), Some(9));
    }
}

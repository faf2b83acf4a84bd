//! Double entry: every transaction is a set of postings that sum to zero per unit.
//!
//! Postings are stored inside the transaction's event (not derived later) so that a
//! projection or an auditor can check the books from the log alone, without knowing the
//! rules that produced them.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::account::AccountId;
use super::units::{hundredths, Unit, POSTING_AMOUNT_MAX, UNIT_SCALE_MAX};

/// One leg of a transaction: `amount` (signed; + credits the account) of `unit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: AccountId,
    pub unit: Unit,
    #[serde(
        serialize_with = "super::units::amount_serde::serialize",
        deserialize_with = "stored_amount"
    )]
    pub amount: Decimal,
}

/// A stored leg's amount: not zero, whole hundredths, at most
/// [`POSTING_AMOUNT_MAX`] either way. Checked when read, like the amount types
/// (`units.rs` says why): a payload is not trusted to have come through the handler.
fn stored_amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let value = super::units::amount_serde::deserialize(d)?;
    let max = hundredths(POSTING_AMOUNT_MAX).expect("the posting maximum is whole hundredths");
    if !hundredths(value).is_some_and(|h| h != 0 && h.unsigned_abs() <= max.unsigned_abs()) {
        return Err(serde::de::Error::custom(format_args!(
            "posting amount {value} is not a non-zero amount of at most {UNIT_SCALE_MAX} places and at most {POSTING_AMOUNT_MAX} either way"
        )));
    }
    Ok(value)
}

/// Move `amount` (positive) of `unit` from `from` to `to`: two legs that cancel.
pub fn movement(unit: Unit, from: &AccountId, to: &AccountId, amount: Decimal) -> [Posting; 2] {
    assert!(amount > Decimal::ZERO, "a movement moves a positive amount");
    two_legs(unit, from, to, amount)
}

/// The two legs of moving `amount` of `unit` from `from` to `to`, for any amount: what
/// a stored event's own fields say its postings are (`LedgerEvent::inconsistency`),
/// where an amount that is not positive is the stored event's problem, not a bug.
pub fn two_legs(unit: Unit, from: &AccountId, to: &AccountId, amount: Decimal) -> [Posting; 2] {
    [
        Posting {
            account: from.clone(),
            unit,
            amount: -amount,
        },
        Posting {
            account: to.clone(),
            unit,
            amount,
        },
    ]
}

/// The compensating postings of `postings`: every leg negated.
pub fn compensate(postings: &[Posting]) -> Vec<Posting> {
    postings
        .iter()
        .map(|p| Posting {
            account: p.account.clone(),
            unit: p.unit,
            amount: -p.amount,
        })
        .collect()
}

/// The sum of `postings` per unit.
pub fn sums_per_unit<'a>(
    postings: impl IntoIterator<Item = &'a Posting>,
) -> BTreeMap<Unit, Decimal> {
    let mut sums = BTreeMap::new();
    for p in postings {
        *sums.entry(p.unit).or_insert(Decimal::ZERO) += p.amount;
    }
    sums
}

/// True if `postings` sum to zero in every unit.
pub fn balanced(postings: &[Posting]) -> bool {
    sums_per_unit(postings).values().all(|s| s.is_zero())
}

/// The net change `postings` make to `account` in `unit`.
pub fn net_for(postings: &[Posting], account: &AccountId, unit: Unit) -> Decimal {
    postings
        .iter()
        .filter(|p| &p.account == account && p.unit == unit)
        .map(|p| p.amount)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movements_and_compensations_balance() {
        let a = AccountId::new("a").unwrap();
        let b = AccountId::new("b").unwrap();
        let m = movement(Unit::Hours, &a, &b, Decimal::new(150, 2));
        assert!(balanced(&m));
        assert_eq!(net_for(&m, &a, Unit::Hours), Decimal::new(-150, 2));
        let c = compensate(&m);
        assert!(balanced(&c));
        assert_eq!(net_for(&c, &a, Unit::Hours), Decimal::new(150, 2));
        let mut unbalanced = m.to_vec();
        unbalanced.pop();
        assert!(!balanced(&unbalanced));
    }
}

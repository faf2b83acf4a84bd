//! Random command sequences through the handler over `MemoryLog`. After every step:
//! postings over all transaction events sum to zero per unit, no volunteer's spendable
//! balance (from the postings) is negative, and each account's folded state agrees with
//! the postings (so receipts were delivered exactly once), and the handler's cached
//! state equals a fresh fold of the stream.

mod common;

use std::collections::BTreeMap;

use common::*;
use ledger_core::app::{CommandError, Handler};
use ledger_core::domain::account::AccountId;
use ledger_core::domain::commands::Command;
use ledger_core::domain::events::HourKind;
use ledger_core::domain::events::LedgerEvent;
use ledger_core::domain::ids::TransactionId;
use ledger_core::domain::postings::sums_per_unit;
use ledger_core::domain::units::Unit;
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::{EventLog, ReadFrom};
use proptest::prelude::*;
use rust_decimal::Decimal;

const PEOPLE: [&str; 3] = ["v1", "v2", "v3"];

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        who: usize,
        cents: u32,
        day: i64,
        hour: i64,
        honour: bool,
    },
    Spend {
        who: usize,
        cents: u32,
    },
    Exchange {
        who: usize,
        cents: u32,
    },
    Transfer {
        from: usize,
        to: usize,
        cents: u32,
    },
    Donate {
        from: usize,
        cents: u32,
    },
    /// Reverse the n-th successful transaction (mod count), on account `who` or on
    /// the account that transaction debits on reversal.
    Reverse {
        nth: usize,
        who: Option<usize>,
    },
}

fn amount(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PEOPLE.len();
    let cents = 1u32..=400;
    // Debits are smaller than deposits so that most of them can succeed.
    let debit = 1u32..=150;
    prop_oneof![
        3 => (who.clone(), cents.clone(), 0i64..6, 0i64..20, proptest::bool::weighted(0.2))
            .prop_map(|(who, cents, day, hour, honour)| Op::Deposit { who, cents, day, hour, honour }),
        2 => (who.clone(), debit.clone()).prop_map(|(who, cents)| Op::Spend { who, cents }),
        1 => (who.clone(), debit.clone()).prop_map(|(who, cents)| Op::Exchange { who, cents }),
        2 => (who.clone(), who.clone(), debit.clone()).prop_map(|(from, to, cents)| Op::Transfer { from, to, cents }),
        1 => (who.clone(), debit).prop_map(|(from, cents)| Op::Donate { from, cents }),
        2 => (any::<usize>(), proptest::option::of(who)).prop_map(|(nth, who)| Op::Reverse { nth, who }),
    ]
}

/// Sums of postings per (account, unit) and per unit over the whole log.
async fn books(
    log: &MemoryLog,
) -> (
    BTreeMap<(AccountId, Unit), Decimal>,
    BTreeMap<Unit, Decimal>,
) {
    let events = log.read_all(ReadFrom::Start, 4096).await.unwrap();
    let mut per_account = BTreeMap::new();
    let mut all = Vec::new();
    for e in &events {
        let event = LedgerEvent::decode(&e.event_type, &e.data).unwrap();
        if let Some(postings) = event.postings() {
            for p in postings {
                *per_account
                    .entry((p.account.clone(), p.unit))
                    .or_insert(Decimal::ZERO) += p.amount;
            }
            all.extend_from_slice(postings);
        }
    }
    (per_account, sums_per_unit(&all))
}

async fn run(ops: Vec<Op>) {
    let (log, handler): (MemoryLog, Handler) = new_handler();
    setup(&handler).await;
    handler
        .execute(&register("r-v3", "v3", volunteer_kind()))
        .await
        .unwrap();
    // (transaction, the account that holds it for reversal)
    let mut txs: Vec<(TransactionId, &str)> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let req = format!("req-{i}");
        let (cmd, holder) = match op {
            Op::Deposit {
                who,
                cents,
                day,
                hour,
                honour,
            } => {
                let mut cmd = deposit(&req, PEOPLE[who], &amount(cents), day, hour);
                if let (true, Command::DepositHours(d)) = (honour, &mut cmd) {
                    d.kind = HourKind::Honour;
                }
                (cmd, PEOPLE[who])
            }
            Op::Spend { who, cents } => (spend(&req, PEOPLE[who], &amount(cents)), PEOPLE[who]),
            Op::Exchange { who, cents } => {
                (exchange(&req, PEOPLE[who], &amount(cents)), PEOPLE[who])
            }
            Op::Transfer { from, to, cents } => (
                transfer(&req, PEOPLE[from], PEOPLE[to], &amount(cents)),
                PEOPLE[to],
            ),
            Op::Donate { from, cents } => (donate(&req, PEOPLE[from], "p", &amount(cents)), "p"),
            Op::Reverse { nth, who } => {
                if txs.is_empty() {
                    continue;
                }
                let (tx, holder) = txs[nth % txs.len()];
                let account = who.map_or(holder, |w| PEOPLE[w]);
                // Reversals are recorded on the account they were sent for, so a
                // later Reverse may pick one (and must be refused).
                (reverse(&req, account, tx), account)
            }
        };
        match handler.execute(&cmd).await {
            Ok(outcome) => {
                txs.push((outcome.transaction, holder));
                // A retry is a replay.
                let again = handler.execute(&cmd).await.unwrap();
                assert!(again.replayed);
                assert_eq!(again.transaction, outcome.transaction);
            }
            Err(CommandError::Rejected(_)) => {}
            Err(e) => panic!("step {i}: {e}"),
        }
        let (per_account, per_unit) = books(&log).await;
        for (unit, sum) in &per_unit {
            assert!(sum.is_zero(), "step {i}: {unit:?} postings sum to {sum}");
        }
        // The handler folds what it appends from the events it decided; a handler
        // with nothing cached folds the stored events: both must agree exactly.
        let fresh = handler_over(std::sync::Arc::new(log.clone()));
        for who in PEOPLE.iter().chain(["p"].iter()) {
            let id = acc(who);
            let state = handler.load(&id).await.unwrap();
            assert_eq!(
                *state,
                *fresh.load(&id).await.unwrap(),
                "step {i}: {who}'s cached state vs a fold of its stream"
            );
            for unit in [Unit::Hours, Unit::HonourHours, Unit::Points] {
                let booked = per_account
                    .get(&(id.clone(), unit))
                    .copied()
                    .unwrap_or_default();
                assert!(
                    booked >= Decimal::ZERO,
                    "step {i}: {who} {unit:?} is {booked}"
                );
                assert_eq!(
                    state.balance(unit),
                    booked,
                    "step {i}: {who} {unit:?} state vs postings"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn postings_balance_and_no_spendable_balance_goes_negative(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(ops));
    }
}

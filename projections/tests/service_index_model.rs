//! The service index against a reference computed the slow, obvious way.
//!
//! Given: volunteers registered at nodes of a small region tree (leaves and inner
//! nodes), deposits in a handful of activities over months of two years, some of them
//! reversed. Then: for every node and every period, each figure `service_index`
//! answers equals the one counted directly from the registrations and the standing
//! deposits (sums over the node's subtree; distinct volunteers and activities). The
//! index keeps its sums per node and carries distinct activities up the tree only
//! when an activity comes into or leaves a cell (`index.rs`); this is what checks
//! that the shortcut answers what the definition says.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};
use ledger_core::domain::events::LedgerEvent;
use projections::{Period, ReadModels};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Region paths; volunteers register at any of them, inner nodes included.
const REGIONS: [&str; 7] = ["hz", "hz/a", "hz/a/1", "hz/a/2", "hz/b", "hz/b/1", "sh"];

#[derive(Clone, Debug)]
enum Op {
    /// Volunteer `v` (registered on first use) deposits.
    Deposit {
        v: u8,
        activity: u8,
        month: u8,
        quarters: u8,
    },
    /// Reverse the standing deposit at this index (modulo how many stand).
    Reverse(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, 0u8..5, 0u8..20, 1u8..12).prop_map(|(v, activity, month, quarters)| Op::Deposit { v, activity, month, quarters }),
        1 => any::<u16>().prop_map(Op::Reverse),
    ]
}

/// Fold an event given as its JSON payload.
fn apply(m: &mut ReadModels, event_type: &str, json: &str) {
    let event = LedgerEvent::decode(event_type, json.as_bytes()).expect("a test payload decodes");
    assert_eq!(m.apply_event(&event), None);
}

/// Transaction `n` as its UUID's text (the fold files deposits under it).
fn tx(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Volunteer `v`'s region: spread over every node.
fn region_of(v: u8) -> &'static str {
    REGIONS[v as usize % REGIONS.len()]
}

/// Month `m` of the op: 20 months from 2025-01.
fn day_of(month: u8) -> NaiveDate {
    let m = u32::from(month);
    NaiveDate::from_ymd_opt(2025 + (m / 12) as i32, m % 12 + 1, 1 + m).expect("a real day")
}

struct Deposit {
    tx: u64,
    v: u8,
    activity: u8,
    day: NaiveDate,
    centi: i64,
}

fn run(ops: &[Op]) {
    let mut m = ReadModels::new();
    let mut next_tx = 1u64;
    let mut registered: Vec<(u8, NaiveDate)> = Vec::new();
    let mut standing: Vec<Deposit> = Vec::new();
    for op in ops {
        match *op {
            Op::Deposit {
                v,
                activity,
                month,
                quarters,
            } => {
                if !registered.iter().any(|r| r.0 == v) {
                    // Joined in a month of its own, so registrations spread too.
                    let joined = day_of(v % 20);
                    apply(
                        &mut m,
                        "AccountRegistered.v1",
                        &format!(
                            r#"{{"account":"v-{v}","kind":"volunteer","region":"{}","joined_on":"{joined}","registered_at":"2025-01-01T00:00:00Z"}}"#,
                            region_of(v)
                        ),
                    );
                    next_tx += 1;
                    registered.push((v, joined));
                }
                let day = day_of(month);
                let centi = i64::from(quarters) * 25;
                let hours = Decimal::new(centi, 2);
                let t = next_tx;
                next_tx += 1;
                apply(
                    &mut m,
                    "HoursDeposited.v1",
                    &format!(
                        r#"{{"transaction":"{}","volunteer":"v-{v}","organisation":"org-{o}","activity":"act-{activity}","service_date":"{day}","started_at":"{day}T09:00:00Z","ended_at":"{day}T11:00:00Z","category":"elderly-care","hours":"{hours}","kind":"credit","verifier":"ver-1","postings":[{{"account":"system:hour-issuance","unit":"hours","amount":"-{hours}"}},{{"account":"v-{v}","unit":"hours","amount":"{hours}"}}],"recorded_at":"{day}T12:00:00Z"}}"#,
                        tx(t),
                        o = activity % 2,
                    ),
                );
                standing.push(Deposit {
                    tx: t,
                    v,
                    activity,
                    day,
                    centi,
                });
            }
            Op::Reverse(i) => {
                if standing.is_empty() {
                    continue;
                }
                let d = standing.remove(usize::from(i) % standing.len());
                let hours = Decimal::new(d.centi, 2);
                let t = next_tx;
                next_tx += 1;
                apply(
                    &mut m,
                    "TransactionReversed.v1",
                    &format!(
                        r#"{{"transaction":"{}","original":"{}","account":"v-{v}","reason":"entered twice","postings":[{{"account":"system:hour-issuance","unit":"hours","amount":"{hours}"}},{{"account":"v-{v}","unit":"hours","amount":"-{hours}"}}],"recorded_at":"2026-12-01T00:00:00Z"}}"#,
                        tx(t),
                        tx(d.tx),
                        v = d.v,
                    ),
                );
            }
        }
    }

    // Every period any registration or deposit named, and one nobody did.
    let mut periods: BTreeSet<Period> = BTreeSet::new();
    periods.insert(Period::Year(2030));
    for day in registered
        .iter()
        .map(|r| r.1)
        .chain(standing.iter().map(|d| d.day))
    {
        periods.extend(Period::of_day(day));
    }
    let under = |v: u8, node: &str| {
        let r = region_of(v);
        r == node || r.starts_with(&format!("{node}/"))
    };
    for node in REGIONS {
        for &p in &periods {
            let Some(got) = m.service_index(node, p) else {
                // A node no volunteer has registered under yet is unknown.
                assert!(
                    !registered.iter().any(|r| under(r.0, node)),
                    "{node} is known once a volunteer registered under it"
                );
                continue;
            };
            let mine: Vec<&Deposit> = standing
                .iter()
                .filter(|d| under(d.v, node) && p.contains(d.day))
                .collect();
            let end_of = |y: i32, last: u32| move |d: NaiveDate| (d.year(), d.month()) <= (y, last);
            let counts_by: Box<dyn Fn(NaiveDate) -> bool> = match p {
                Period::All => Box::new(|_| true),
                Period::Year(y) => Box::new(end_of(y, 12)),
                Period::Month(y, mo) => Box::new(end_of(y, mo)),
            };
            let want_registered = registered
                .iter()
                .filter(|r| under(r.0, node) && counts_by(r.1))
                .count() as u32;
            let want_active = mine.iter().map(|d| d.v).collect::<BTreeSet<_>>().len() as u32;
            let want_activities = mine
                .iter()
                .map(|d| d.activity)
                .collect::<BTreeSet<_>>()
                .len() as u32;
            let want_hours = Decimal::new(mine.iter().map(|d| d.centi).sum(), 2);
            assert_eq!(
                (
                    got.registered_volunteers,
                    got.active_volunteers,
                    got.activities,
                    got.participations,
                    got.total_hours
                ),
                (
                    want_registered,
                    want_active,
                    want_activities,
                    mine.len() as u64,
                    want_hours
                ),
                "{node} {p:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn every_figure_of_every_node_and_period_is_the_directly_counted_one(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        run(&ops);
    }
}

/// One activity served in two communities of one district, then taken back from one:
/// the district still counts it once, the community it left not at all.
#[test]
fn an_activity_in_two_communities_counts_once_in_their_district() {
    run(&[
        Op::Deposit {
            v: 2, // hz/a/1
            activity: 0,
            month: 3,
            quarters: 4,
        },
        Op::Deposit {
            v: 3, // hz/a/2
            activity: 0,
            month: 3,
            quarters: 4,
        },
        Op::Reverse(0),
    ]);
}

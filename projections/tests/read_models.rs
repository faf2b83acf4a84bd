//! Given/when/then tests for each read model, on events written by the real handler.

mod common;

use common::*;
use ledger_core::domain::events::HourKind;
use ledger_core::domain::ids::TransactionId;
use projections::annual::Scope;
use projections::credit::{credit_report, read_account_stream, CREDIT_MODEL_V1};
use projections::{Period, StarPolicy};

const XIHU: &str = "hangzhou/xihu/lingyin/c3";

/// The instant the account views in these tests are asked at (no hold in them).
fn view_now() -> chrono::DateTime<chrono::Utc> {
    "2026-11-23T12:00:00Z".parse().expect("an instant")
}

/// The calendar of a ledger on UTC (the default `--calendar-offset`).
fn utc() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(0).unwrap()
}
const XIHU2: &str = "hangzhou/xihu/beishan";
const BINJ: &str = "hangzhou/binjiang";

async fn small_city() -> City {
    let mut c = City::new();
    c.organisation("org-a", "hangzhou/xihu").await;
    c.organisation("org-b", BINJ).await;
    c.project("proj-1").await;
    c.project("proj-2").await;
    c.volunteer("li", XIHU, "2024-11-20").await;
    c.volunteer("wang", XIHU2, "2025-03-01").await;
    c.volunteer("zhao", BINJ, "2026-02-01").await;
    c
}

fn tx(o: &ledger_core::domain::state::Outcome) -> TransactionId {
    o.transaction
}

#[tokio::test]
async fn given_deposits_spends_and_exchanges_when_viewing_the_account_then_balances_and_lifetime_differ(
) {
    let mut c = small_city().await;
    c.deposit("li", "org-a", "2026-03-05", "4").await;
    c.deposit("li", "org-a", "2025-12-31", "2.5").await;
    c.honour("li", "org-a", "2026-04-01", "10").await;
    let wrong = c.deposit("li", "org-a", "2026-05-01", "3").await;
    c.reverse("li", tx(&wrong)).await;
    c.spend("li", "org-a", "1.25").await;
    c.exchange("li", "2").await;
    let m = c.models().await;
    let v = m
        .account_view("li", 2026, &StarPolicy::national(), view_now())
        .unwrap();
    assert_eq!(v.kind, "volunteer");
    assert_eq!(v.region.as_deref(), Some(XIHU));
    // 4 + 2.5 − 1.25 − 2 (the reversed 3 came and went)
    assert_eq!(v.spendable_hours, dec("3.25"));
    assert_eq!(v.honour_hours, dec("10"));
    assert_eq!(v.points_available, dec("20"));
    assert_eq!(v.points_held, dec("0"));
    // Spending never reduces what was done; the reversed deposit is not on record.
    assert_eq!(v.lifetime_credit_hours, dec("6.5"));
    assert_eq!(v.lifetime_honour_hours, dec("10"));
    assert_eq!(v.hours_this_year, dec("14"));
    assert_eq!(v.activity_count, 3);
    assert_eq!(v.first_service_date, Some(day("2025-12-31")));
    assert_eq!(v.last_service_date, Some(day("2026-04-01")));
    assert_eq!(v.star.stars, 0);
    assert_eq!(v.star.next_threshold, Some(dec("100")));
    assert!(m
        .account_view("nobody", 2026, &StarPolicy::national(), view_now())
        .is_none());
}

#[tokio::test]
async fn given_100_verified_hours_then_one_star_and_300_next_under_the_national_policy() {
    let mut c = small_city().await;
    for d in 1..=5 {
        c.deposit("wang", "org-a", &format!("2026-06-0{d}"), "20")
            .await;
    }
    let m = c.models().await;
    let v = m
        .account_view("wang", 2026, &StarPolicy::national(), view_now())
        .unwrap();
    assert_eq!((v.star.stars, v.star.next_threshold), (1, Some(dec("300"))));
    let strict = StarPolicy::new(
        "strict",
        [200, 400, 800, 1600, 3200].map(rust_decimal::Decimal::from),
    )
    .unwrap();
    let v = m.account_view("wang", 2026, &strict, view_now()).unwrap();
    assert_eq!(
        (v.star.stars, v.star.policy_version.as_str()),
        (0, "strict")
    );
}

#[tokio::test]
async fn given_service_in_several_regions_when_ranking_then_hours_order_with_ties_by_id() {
    let mut c = small_city().await;
    c.volunteer("an", XIHU, "2025-01-01").await;
    c.deposit("li", "org-a", "2026-03-05", "5").await;
    c.deposit("an", "org-a", "2026-03-06", "5").await;
    c.deposit("wang", "org-a", "2026-03-07", "7").await;
    c.deposit("wang", "org-a", "2025-03-07", "9").await;
    c.deposit("zhao", "org-b", "2026-04-01", "3").await;
    let m = c.models().await;
    let ids = |v: Vec<projections::rankings::Ranked>| {
        v.into_iter()
            .map(|r| (r.id, r.hours.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(m
            .top_volunteers("hangzhou", Period::Month(2026, 3), 10)
            .unwrap()),
        [("wang", "7.00"), ("an", "5.00"), ("li", "5.00")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(
        ids(m.top_volunteers("hangzhou/xihu", Period::All, 1).unwrap()),
        [("wang".to_owned(), "16.00".to_owned())]
    );
    assert_eq!(
        ids(m.top_volunteers(BINJ, Period::Year(2026), 10).unwrap()),
        [("zhao".to_owned(), "3.00".to_owned())]
    );
    assert!(m.top_volunteers("nowhere", Period::All, 10).is_err());
    assert_eq!(
        ids(m.top_regions("hangzhou", Period::Year(2026), 10).unwrap()),
        [("hangzhou/xihu", "17.00"), ("hangzhou/binjiang", "3.00")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(
        ids(m.top_regions("", Period::All, 10).unwrap()),
        [("hangzhou".to_owned(), "29.00".to_owned())]
    );
}

#[tokio::test]
async fn given_donations_and_a_reversed_one_when_ranking_projects_then_standing_hours_count() {
    let mut c = small_city().await;
    c.deposit("li", "org-a", "2026-03-05", "10").await;
    c.donate("li", "proj-1", "3").await;
    let d = c.donate("li", "proj-2", "4").await;
    c.donate("li", "proj-2", "1").await;
    c.spend("li", "proj-1", "0.5").await;
    let m = c.models().await;
    let top: Vec<(String, String, String)> = m
        .top_projects(10)
        .into_iter()
        .map(|r| (r.id, r.hours.to_string(), r.served.to_string()))
        .collect();
    assert_eq!(top[0], ("proj-2".into(), "5.00".into(), "0.00".into()));
    assert_eq!(top[1], ("proj-1".into(), "3.00".into(), "0.50".into()));
    // The donation is reversed on the project's stream (it debits the project).
    c.reverse("proj-2", tx(&d)).await;
    let m = c.models().await;
    assert_eq!(m.top_projects(1)[0].id, "proj-1");
    assert_eq!(m.top_projects(2)[1].hours, dec("1"));
}

#[tokio::test]
async fn given_service_when_reading_the_index_then_it_rolls_up_the_region_tree() {
    let mut c = small_city().await;
    c.deposit_in("li", "org-a", "2026-03-05", "2", "elderly-care", "act-1")
        .await;
    c.deposit_in("wang", "org-a", "2026-03-05", "3", "elderly-care", "act-1")
        .await;
    c.deposit_in("wang", "org-a", "2026-03-09", "1", "river-patrol", "act-2")
        .await;
    let gone = c
        .deposit_in("zhao", "org-b", "2026-03-10", "4", "traffic", "act-3")
        .await;
    c.deposit_in("zhao", "org-b", "2026-04-10", "1", "traffic", "act-3")
        .await;
    let m = c.models().await;
    let i = m.service_index("hangzhou", Period::Month(2026, 3)).unwrap();
    assert_eq!(
        (
            i.registered_volunteers,
            i.active_volunteers,
            i.activities,
            i.participations,
            i.total_hours
        ),
        (3, 3, 3, 4, dec("10"))
    );
    let x = m
        .service_index("hangzhou/xihu", Period::Year(2026))
        .unwrap();
    assert_eq!(
        (
            x.registered_volunteers,
            x.active_volunteers,
            x.activities,
            x.participations,
            x.total_hours
        ),
        (2, 2, 2, 3, dec("6"))
    );
    let leaf = m.service_index(XIHU, Period::All).unwrap();
    assert_eq!(
        (
            leaf.registered_volunteers,
            leaf.active_volunteers,
            leaf.total_hours
        ),
        (1, 1, dec("2"))
    );
    // Registered up to the end of 2025: li (2024) and wang (2025), not zhao (2026).
    assert_eq!(
        m.service_index("hangzhou", Period::Year(2025))
            .unwrap()
            .registered_volunteers,
        2
    );
    c.reverse("zhao", tx(&gone)).await;
    let m = c.models().await;
    let i = m.service_index("hangzhou", Period::Month(2026, 3)).unwrap();
    assert_eq!(
        (
            i.active_volunteers,
            i.activities,
            i.participations,
            i.total_hours
        ),
        (2, 2, 3, dec("6"))
    );
    let b = m.service_index(BINJ, Period::Year(2026)).unwrap();
    assert_eq!((b.active_volunteers, b.total_hours), (1, dec("1")));
    assert!(m.service_index("nowhere", Period::All).is_none());
}

#[tokio::test]
async fn given_a_year_of_service_when_asking_below_20_hours_then_the_short_ones_fewest_first() {
    let mut c = small_city().await;
    c.deposit("li", "org-a", "2025-06-01", "12").await;
    c.deposit("li", "org-a", "2025-07-01", "12").await;
    c.deposit("wang", "org-a", "2025-06-01", "19.75").await;
    c.deposit("wang", "org-a", "2026-06-01", "10").await;
    c.honour("zhao", "org-b", "2026-05-01", "5").await;
    let m = c.models().await;
    let r = m
        .below_annual_minimum(Scope::Region("hangzhou"), 2025, utc(), dec("20"), 100)
        .unwrap();
    // zhao joined in 2026: not a member in 2025.
    assert_eq!(r.volunteers, vec![("wang".to_owned(), dec("19.75"))]);
    assert_eq!((r.total, r.considered), (1, 2));
    let r = m
        .below_annual_minimum(Scope::Region("hangzhou"), 2026, utc(), dec("20"), 100)
        .unwrap();
    assert_eq!(
        r.volunteers,
        vec![
            ("li".to_owned(), dec("0")),
            ("zhao".to_owned(), dec("5")),
            ("wang".to_owned(), dec("10"))
        ]
    );
    let r = m
        .below_annual_minimum(Scope::Organisation("org-b"), 2026, utc(), dec("20"), 100)
        .unwrap();
    assert_eq!(r.volunteers, vec![("zhao".to_owned(), dec("5"))]);
    assert!(m
        .below_annual_minimum(Scope::Organisation("li"), 2026, utc(), dec("20"), 100)
        .is_err());
    assert!(m
        .below_annual_minimum(Scope::Region("hangzhou"), 2026, utc(), dec("100000"), 100)
        .is_err());
}

/// Worked example A of docs/credit-score.md.
#[tokio::test]
async fn worked_example_a_regular_volunteer_scores_478() {
    let mut c = small_city().await;
    let mut first = None;
    for (y, m) in [(2025, 12)].into_iter().chain((1..=11).map(|m| (2026, m))) {
        let o = c
            .deposit("li", "org-a", &format!("{y}-{m:02}-05"), "4")
            .await;
        first.get_or_insert(o.transaction);
    }
    let o = c
        .deposit_in("li", "org-b", "2026-11-10", "2", "river-patrol", "act-9")
        .await;
    let rate = c.rate_cmd("li", first.unwrap(), 5);
    c.run(rate).await;
    let events = read_account_stream(&c.log, &acc("li")).await.unwrap();
    let r = credit_report(
        &acc("li"),
        &events,
        ts(NOW),
        utc(),
        CREDIT_MODEL_V1,
        &StarPolicy::national(),
    )
    .unwrap();
    let points: Vec<u32> = r.contributions.iter().map(|c| c.points).collect();
    assert_eq!(points, [73, 75, 100, 40, 40, 150]);
    assert_eq!(r.score, 478);
    assert_eq!(
        r.reason_codes,
        [
            "FEW_LIFETIME_HOURS",
            "IRREGULAR_SERVICE",
            "SHORT_TENURE",
            "NARROW_SERVICE"
        ]
    );
    assert_eq!(
        (r.lifetime_hours, r.last_12_months_hours),
        (dec("50"), dec("50"))
    );
    assert_eq!(r.star.stars, 0);
    assert!(r.position >= Some(o.position));
    assert_eq!(r.model_version, "tb-credit-1");
}

/// Worked example B of docs/credit-score.md.
#[tokio::test]
async fn worked_example_b_new_volunteer_with_a_no_show_and_a_reversal_scores_214() {
    let mut c = small_city().await;
    c.volunteer("chen", XIHU, "2026-10-01").await;
    c.deposit("chen", "org-a", "2026-10-15", "10").await;
    let wrong = c.deposit("chen", "org-a", "2026-10-20", "2").await;
    c.reverse("chen", tx(&wrong)).await;
    let ns = c.no_show_cmd("chen", "org-a", "2026-11-01");
    c.run(ns).await;
    let events = read_account_stream(&c.log, &acc("chen")).await.unwrap();
    let r = credit_report(
        &acc("chen"),
        &events,
        ts(NOW),
        utc(),
        "",
        &StarPolicy::national(),
    )
    .unwrap();
    let points: Vec<u32> = r.contributions.iter().map(|c| c.points).collect();
    assert_eq!(points, [32, 6, 75, 1, 20, 80]);
    assert_eq!(r.score, 214);
    assert_eq!(r.reason_codes[0], "FEW_LIFETIME_HOURS");
    assert!(credit_report(
        &acc("chen"),
        &events,
        ts(NOW),
        utc(),
        "tb-credit-0",
        &StarPolicy::national()
    )
    .is_err());
    assert!(credit_report(
        &acc("org-a"),
        &[],
        ts(NOW),
        utc(),
        "",
        &StarPolicy::national()
    )
    .is_err());
}

#[tokio::test]
async fn given_a_report_live_at_t_when_asked_as_of_t_later_then_it_is_the_same_report() {
    let mut c = City::new();
    c.set_now("2026-06-01T12:00:00Z");
    c.organisation("org-a", "hangzhou/xihu").await;
    c.organisation("org-b", BINJ).await;
    c.volunteer("wang", XIHU2, "2025-03-01").await;
    c.deposit("wang", "org-a", "2026-05-01", "8").await;
    let d = c.deposit("wang", "org-a", "2026-05-20", "3").await;
    let t = ts("2026-06-01T12:00:00Z");
    let events = read_account_stream(&c.log, &acc("wang")).await.unwrap();
    let live = credit_report(
        &acc("wang"),
        &events,
        t,
        utc(),
        CREDIT_MODEL_V1,
        &StarPolicy::national(),
    )
    .unwrap();
    // Later: more service, a no-show, a rating and a reversal of a deposit seen at T.
    c.set_now("2026-09-01T12:00:00Z");
    c.deposit("wang", "org-b", "2026-08-01", "6").await;
    let ns = c.no_show_cmd("wang", "org-a", "2026-08-15");
    c.run(ns).await;
    c.reverse("wang", d.transaction).await;
    let events = read_account_stream(&c.log, &acc("wang")).await.unwrap();
    let again = credit_report(
        &acc("wang"),
        &events,
        t,
        utc(),
        CREDIT_MODEL_V1,
        &StarPolicy::national(),
    )
    .unwrap();
    assert_eq!(again, live);
    let now = credit_report(
        &acc("wang"),
        &events,
        ts("2026-09-01T12:00:00Z"),
        utc(),
        CREDIT_MODEL_V1,
        &StarPolicy::national(),
    )
    .unwrap();
    assert_ne!(now.inputs_digest, live.inputs_digest);
    assert_ne!(now.score, live.score);
}

#[tokio::test]
async fn honour_deposits_count_for_stars_but_not_for_credit_hours() {
    let mut c = small_city().await;
    let o = c.deposit_cmd(
        "li",
        "org-a",
        "2026-01-01",
        "24",
        "x",
        "a",
        HourKind::Honour,
    );
    c.run(o).await;
    let m = c.models().await;
    let v = m
        .account_view("li", 2026, &StarPolicy::national(), view_now())
        .unwrap();
    assert_eq!(
        (
            v.lifetime_credit_hours,
            v.lifetime_honour_hours,
            v.spendable_hours
        ),
        (dec("0"), dec("24"), dec("0"))
    );
}

/// In a UTC+8 calendar a service day starts at 16:00 UTC the day before, so a deposit
/// can be recorded before `as_of` with a service date after `as_of`'s UTC day. The
/// report folds every event recorded at or before `as_of` (docs/credit-score.md, "As of
/// a time"): such a deposit is standing service, in every factor as in the report's
/// own lifetime hours.
#[tokio::test]
async fn given_a_deposit_recorded_before_as_of_but_dated_its_next_utc_day_then_every_factor_counts_it(
) {
    let mut c = City::with_config(ledger_core::app::LedgerConfig {
        calendar_offset: chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        ..Default::default()
    });
    c.organisation("org-a", "hangzhou/xihu").await;
    c.volunteer("li", XIHU, "2026-01-01").await;
    // 2026-11-20T17:00Z is 2026-11-21 01:00 in the ledger's calendar.
    c.set_now("2026-11-20T17:00:00Z");
    let mut cmd = c.deposit_cmd(
        "li",
        "org-a",
        "2026-11-21",
        "0.5",
        "elderly-care",
        "act-1",
        HourKind::Credit,
    );
    if let ledger_core::domain::commands::Command::DepositHours(d) = &mut cmd {
        // 00:00–00:30 on the 21st in the ledger's calendar.
        d.started_at = ts("2026-11-20T16:00:00Z");
        d.ended_at = ts("2026-11-20T16:30:00Z");
    }
    c.run(cmd).await;
    let events = read_account_stream(&c.log, &acc("li")).await.unwrap();
    let r = credit_report(
        &acc("li"),
        &events,
        ts("2026-11-20T18:00:00Z"),
        chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        CREDIT_MODEL_V1,
        &StarPolicy::national(),
    )
    .unwrap();
    assert_eq!(r.lifetime_hours, dec("0.5"));
    let factor = |f: &str| {
        r.contributions
            .iter()
            .find(|c| c.factor.name() == f)
            .unwrap()
            .clone()
    };
    // The report's own lifetime hours are the hours factor's input.
    assert_eq!(factor("hours").detail, "0.50 lifetime credit hours");
    // isqrt(16 · 50 / 15)
    assert_eq!(factor("hours").points, 7);
    // One organisation, one category.
    assert_eq!(factor("breadth").points, 20);
    // With a standing deposit and a clean record: 130.
    assert_eq!(factor("reliability").points, 130);
}

/// Annual minimum of an organisation: a volunteer is counted in the years they were a
/// volunteer of the scheme, as for a region (docs/queries.md: joined by the year's end,
/// not closed before it began). One who joined later cannot have fallen short in an
/// earlier year, nor one who had left.
#[tokio::test]
async fn given_an_organisations_volunteer_who_joined_later_when_asking_an_earlier_year_then_not_listed(
) {
    let mut c = City::new();
    c.set_now("2025-01-10T12:00:00Z");
    c.organisation("org-b", BINJ).await;
    c.volunteer("li", BINJ, "2024-11-20").await;
    c.set_now("2025-06-01T12:00:00Z");
    c.deposit("li", "org-b", "2025-03-01", "3").await;
    let close = c.close_cmd("li");
    c.run(close).await;
    c.set_now(NOW);
    c.volunteer("zhao", BINJ, "2026-02-01").await;
    c.deposit("zhao", "org-b", "2026-05-01", "5").await;
    let m = c.models().await;
    let region = m
        .below_annual_minimum(Scope::Region(BINJ), 2025, utc(), dec("20"), 100)
        .unwrap();
    // li only: zhao had not joined in 2025.
    assert_eq!(region.considered, 1);
    let r = m
        .below_annual_minimum(Scope::Organisation("org-b"), 2025, utc(), dec("20"), 100)
        .unwrap();
    assert_eq!(r.volunteers, vec![("li".to_owned(), dec("3"))]);
    assert_eq!((r.total, r.considered), (1, 1));
    let r = m
        .below_annual_minimum(Scope::Organisation("org-b"), 2026, utc(), dec("20"), 100)
        .unwrap();
    // li closed in 2025, before 2026 began.
    assert_eq!(r.volunteers, vec![("zhao".to_owned(), dec("5"))]);
    assert_eq!((r.total, r.considered), (1, 1));
}

/// Years are years of the ledger's calendar (service dates). In a UTC+8 calendar an
/// account closed at 2025-12-31T17:00Z closed on 2026-01-01, after 2026 began: for 2026
/// the volunteer is still one of the region's (docs/queries.md: "not closed before it
/// began"), as a deposit dated that day would be in 2026.
#[tokio::test]
async fn given_a_utc8_calendar_when_closed_on_new_years_day_local_then_counted_that_year() {
    let mut c = City::with_config(ledger_core::app::LedgerConfig {
        calendar_offset: chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        ..Default::default()
    });
    c.set_now("2025-06-01T12:00:00Z");
    c.organisation("org-b", BINJ).await;
    c.volunteer("li", BINJ, "2024-11-20").await;
    // 2025-12-31T17:00Z is 2026-01-01 01:00 in the ledger's calendar.
    c.set_now("2025-12-31T17:00:00Z");
    let close = c.close_cmd("li");
    c.run(close).await;
    let m = c.models().await;
    let r = m
        .below_annual_minimum(
            Scope::Region(BINJ),
            2026,
            chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
            dec("20"),
            100,
        )
        .unwrap();
    assert_eq!(r.considered, 1);
    assert_eq!(r.volunteers, vec![("li".to_owned(), dec("0"))]);
    // In UTC the same closure fell on 2025-12-31, before 2026 began.
    let utc_answer = m
        .below_annual_minimum(Scope::Region(BINJ), 2026, utc(), dec("20"), 100)
        .unwrap();
    assert_eq!(utc_answer.considered, 0);
}

/// An auditor re-derives a report's `inputs_digest` from the volunteer's events alone,
/// with the recipe docs/credit-score.md gives ("Inputs digest"), byte for byte: the
/// model version, `as_of` as written there, then per included event its position
/// (commit, prepare), id and content digest (computed here from docs/events.md, not by
/// the ledger's code).
#[tokio::test]
async fn an_inputs_digest_is_rederived_from_the_documented_recipe() {
    let mut c = small_city().await;
    let d = c.deposit("li", "org-a", "2026-11-05", "4").await;
    c.spend("li", "org-a", "1").await;
    let rate = c.rate_cmd("li", d.transaction, 4);
    c.run(rate).await;
    let events = read_account_stream(&c.log, &acc("li")).await.unwrap();
    let content_digest = |e: &ledger_core::log::RecordedEvent| {
        let mut h = blake3::Hasher::new();
        for part in [
            e.stream.as_str().as_bytes(),
            e.event_type.as_bytes(),
            &e.data,
            &e.metadata,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().as_bytes()[..16].to_vec()
    };
    for (as_of, text) in [
        ("2026-11-20T12:00:00Z", "2026-11-20T12:00:00+00:00"),
        ("2026-11-20T12:00:00.5Z", "2026-11-20T12:00:00.500+00:00"),
    ] {
        let r = credit_report(
            &acc("li"),
            &events,
            ts(as_of),
            utc(),
            CREDIT_MODEL_V1,
            &StarPolicy::national(),
        )
        .unwrap();
        let mut h = blake3::Hasher::new();
        h.update(b"tb-credit-1");
        h.update(text.as_bytes());
        // Every event of li's stream was recorded at NOW, none is a partner event.
        assert_eq!(r.events_included, events.len() as u64);
        for e in &events {
            h.update(&e.position.commit().to_le_bytes());
            h.update(&e.position.prepare().to_le_bytes());
            h.update(e.id.0.as_bytes());
            h.update(&content_digest(e));
        }
        assert_eq!(
            r.inputs_digest,
            h.finalize().to_hex().to_string(),
            "{as_of}"
        );
    }
}

/// Every answer of the read models, for comparing two histories.
fn answers(m: &projections::ReadModels) -> Vec<String> {
    let mut out = Vec::new();
    let national = StarPolicy::national();
    for v in ["li", "wang", "zhao"] {
        for year in [2024, 2025, 2026] {
            out.push(format!(
                "{:?}",
                m.account_view(v, year, &national, view_now())
            ));
        }
    }
    let mut periods = vec![Period::All];
    for y in 2023..=2026 {
        periods.push(Period::Year(y));
        for month in 1..=12 {
            periods.push(Period::Month(y, month));
        }
    }
    let regions: Vec<String> = m.regions.paths.names().map(str::to_owned).collect();
    for &p in &periods {
        out.push(format!("{p:?} {:?}", m.top_volunteers("", p, 100)));
        out.push(format!("{p:?} {:?}", m.top_regions("", p, 100)));
        for r in &regions {
            out.push(format!("{r} {p:?} {:?}", m.top_volunteers(r, p, 100)));
            out.push(format!("{r} {p:?} {:?}", m.top_regions(r, p, 100)));
            out.push(format!("{r} {p:?} {:?}", m.service_index(r, p)));
        }
    }
    for y in 2023..=2026 {
        for scope in [
            Scope::Region("hangzhou"),
            Scope::Region(BINJ),
            Scope::Organisation("org-a"),
            Scope::Organisation("org-b"),
        ] {
            let r = m.below_annual_minimum(scope.clone(), y, utc(), dec("20"), 100);
            out.push(format!("{scope:?} {y} {r:?}"));
        }
    }
    out.push(format!("{:?}", m.top_projects(100)));
    out
}

/// A reversed deposit leaves every figure as if it had never been recorded
/// (docs/events.md, `TransactionReversed.v1`): balances, lifetime hours, activity counts
/// and service dates, rankings, the service index's distinct counts (active volunteers,
/// activities), annual minimums. Reversed here: deposits on New Year's Eve and Day, on
/// a leap day, the only deposit of a volunteer in a month and a year, one of two
/// volunteers' deposits in a shared activity, and the only honour deposit.
#[tokio::test]
async fn given_reversed_deposits_then_every_answer_is_that_of_the_history_without_them() {
    async fn city(with_reversed: bool) -> City {
        let mut c = City::new();
        c.organisation("org-a", "hangzhou/xihu").await;
        c.organisation("org-b", BINJ).await;
        c.volunteer("li", XIHU, "2023-11-20").await;
        c.volunteer("wang", XIHU2, "2024-01-01").await;
        c.volunteer("zhao", BINJ, "2024-02-01").await;
        let mut standing = vec![
            ("li", "org-a", "2024-12-31", "3", "care", "act-1"),
            ("wang", "org-a", "2025-01-01", "2", "care", "act-1"),
            ("wang", "org-a", "2024-02-28", "1.5", "care", "act-2"),
            ("zhao", "org-b", "2026-03-05", "4", "traffic", "act-3"),
        ];
        let reversed = [
            ("li", "org-a", "2024-12-31", "2", "care", "act-1"),
            ("li", "org-b", "2025-01-01", "5", "traffic", "act-3"),
            ("zhao", "org-a", "2024-02-29", "6", "care", "act-2"),
            ("wang", "org-b", "2026-03-05", "1", "traffic", "act-3"),
            ("zhao", "org-b", "2023-12-31", "0.25", "traffic", "act-9"),
        ];
        if with_reversed {
            // Interleaved with the standing ones, each reversed right away or at the end.
            let mut later = Vec::new();
            for (i, (who, org, date, hours, cat, act)) in reversed.into_iter().enumerate() {
                if let Some(s) = standing.pop() {
                    c.deposit_in(s.0, s.1, s.2, s.3, s.4, s.5).await;
                }
                let o = if i == 0 {
                    let cmd = c.deposit_cmd(who, org, date, hours, cat, act, HourKind::Honour);
                    c.run(cmd).await
                } else {
                    c.deposit_in(who, org, date, hours, cat, act).await
                };
                if i % 2 == 0 {
                    c.reverse(who, tx(&o)).await;
                } else {
                    later.push((who, tx(&o)));
                }
            }
            for (who, t) in later {
                c.reverse(who, t).await;
            }
        } else {
            while let Some(s) = standing.pop() {
                c.deposit_in(s.0, s.1, s.2, s.3, s.4, s.5).await;
            }
        }
        c
    }
    let with = city(true).await.models().await;
    let without = city(false).await.models().await;
    let (a, b) = (answers(&with), answers(&without));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    // The comparison is not vacuous: the standing service is there.
    let v = with
        .account_view("wang", 2025, &StarPolicy::national(), view_now())
        .unwrap();
    assert_eq!((v.lifetime_credit_hours, v.activity_count), (dec("3.5"), 2));
    let i = with.service_index("hangzhou", Period::Year(2025)).unwrap();
    assert_eq!(
        (i.active_volunteers, i.activities, i.total_hours),
        (1, 1, dec("2"))
    );
}

/// A receipt is appended after its transaction, and after a crash only by the receipts
/// catch-up, minutes later. A report as of T asked before the receipt landed and one
/// asked after it must agree (docs/credit-score.md: re-asking with the same as_of gives
/// the same digest). Found as a defect: the receipt carried its transaction's
/// `recorded_at`, so it joined reports as of earlier times and changed their digest; it
/// now records when it was written.
#[tokio::test]
async fn given_a_receipt_that_lands_late_when_re_asking_as_of_t_then_the_digest_is_unchanged() {
    let mut c = small_city().await;
    c.deposit("li", "org-a", "2026-11-05", "4").await;
    c.deposit("wang", "org-a", "2026-11-06", "3").await;
    // The transfer commits at NOW; its receipt to wang is lost in a crash.
    let lossy = ledger_core::app::Handler::new(
        std::sync::Arc::new(
            ledger_core::log::faulty::FaultyLog::over(c.log.clone())
                .losing_appends_of("HoursReceived.v1"),
        ),
        c.clock.clone(),
        ledger_core::app::LedgerConfig::default(),
    );
    let t = c.transfer_cmd("li", "wang", "1");
    lossy.execute(&t).await.unwrap();
    assert!(lossy.take_receipts_pending());
    let report = |events: &[ledger_core::log::RecordedEvent], as_of| {
        credit_report(
            &acc("wang"),
            events,
            as_of,
            utc(),
            CREDIT_MODEL_V1,
            &StarPolicy::national(),
        )
        .unwrap()
    };
    let before_receipt = read_account_stream(&c.log, &acc("wang")).await.unwrap();
    let early = report(&before_receipt, ts(NOW));
    // Ten minutes later the catch-up heals the receipt.
    let healed_at = ts(NOW) + chrono::Duration::minutes(10);
    c.clock.set(healed_at);
    let healed = c
        .handler
        .deliver_receipts(ledger_core::log::ReadFrom::Start)
        .await
        .unwrap();
    assert_eq!(healed.delivered, 1);
    let events = read_account_stream(&c.log, &acc("wang")).await.unwrap();
    let receipt = events.last().unwrap();
    assert_eq!(receipt.event_type, "HoursReceived.v1");
    match ledger_core::domain::events::LedgerEvent::decode(&receipt.event_type, &receipt.data)
        .unwrap()
    {
        ledger_core::domain::events::LedgerEvent::HoursReceived(r) => {
            assert_eq!(
                r.recorded_at, healed_at,
                "the receipt records when it landed"
            )
        }
        other => panic!("{other:?}"),
    }
    let late = report(&events, ts(NOW));
    assert_eq!(early.score, late.score);
    assert_eq!(early.inputs_digest, late.inputs_digest);
    assert_eq!(early.position, late.position);
    // From the time it landed on, reports include it.
    let after = report(&events, healed_at);
    assert_eq!(after.position, Some(receipt.position));
}

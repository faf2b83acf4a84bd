//! `ledger-server demo` and `ledger-server seed`: seed the demo city into a data
//! directory's embedded log (on first start), then serve it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Days, FixedOffset, Utc};
use ledger_core::app::LedgerConfig;
use ledger_core::domain::events::PayloadEncoding;
use ledger_core::log::EventLog;
use ledger_store::EmbeddedLog;

use super::{ledger_config, seed, DemoConfig, DemoError, Sample, DEMO_CALENDAR_OFFSET_SECS};
use crate::auth::{hash_key, Access, CallerEntry, LoadAccessError};
use crate::auth::{Caller, Role};
use crate::{open_log, run_on, RunConfig, ServeError, ServeOptions};

/// Written next to the log's segments after seeding (the log ignores other files), so later starts can print calls with real
/// account ids without generating the city again.
const SAMPLE_FILE: &str = "demo-accounts.txt";

/// The demo's access file, written into the data directory on first start (kept if it
/// exists, so an edited one is served as it is).
pub const ACCESS_FILE: &str = "access.toml";

/// The demo's callers and their keys. **Demo only**: these keys are published in this
/// source file, the banner and `docs/quickstart.md`; anyone can use them. A real
/// deployment makes its own with `ledger-server keygen` (they are random, these are
/// not, so that the quickstart's commands can be pasted as they are).
pub const DEMO_KEYS: [(&str, &str); 5] = [
    (
        "demo-admin",
        "tbk_DEMO-ONLY-admin-key-published-in-the-docs",
    ),
    (
        "demo-platform",
        "tbk_DEMO-ONLY-platform-key-published-in-the-docs",
    ),
    (
        "demo-auditor",
        "tbk_DEMO-ONLY-auditor-key-published-in-the-docs",
    ),
    (
        DEMO_BANK_CALLER,
        "tbk_DEMO-ONLY-bank-key-published-in-the-docs",
    ),
    (
        "demo-merchant",
        "tbk_DEMO-ONLY-merchant-key-published-in-the-docs",
    ),
];

/// The bank account id of the demo's bank caller: the city's first bank.
pub const DEMO_BANK: &str = super::city::BANKS[0];
/// The demo bank caller's name (in [`DEMO_KEYS`]), also recorded in seeded inquiries.
pub const DEMO_BANK_CALLER: &str = "demo-bank";
/// The merchant account of the demo's merchant caller: the city's first merchant
/// (`city::City::generate` names them `merchant-001` …, and every city has one).
pub const DEMO_MERCHANT: &str = "merchant-001";

/// The key of the demo caller `name` (one of [`DEMO_KEYS`]).
pub fn demo_key(name: &str) -> &'static str {
    DEMO_KEYS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, k)| k)
}

/// The demo access file's text: an admin, a platform over the whole city (region
/// prefix `hangzhou`), an auditor, the bank `bank-demo` and the first merchant.
pub fn demo_access_toml() -> String {
    let roles = [
        Role::Admin,
        Role::Platform {
            regions: vec![super::city::CITY.to_owned()],
            organisations: Vec::new(),
        },
        Role::Auditor,
        Role::Bank {
            bank: DEMO_BANK.to_owned(),
        },
        Role::Merchant {
            merchant: DEMO_MERCHANT.to_owned(),
        },
    ];
    let mut out = String::from(
        "# The demo city's access file, written by `ledger-server demo`.\n\
         # DEMO ONLY: the keys of these callers are published (banner, docs/quickstart.md);\n\
         # never serve real data with this file. Make real keys with `ledger-server keygen`.\n\n",
    );
    for ((name, key), role) in DEMO_KEYS.iter().zip(roles) {
        let entry = CallerEntry {
            caller: Caller {
                name: (*name).to_owned(),
                role,
            },
            key: Some(hash_key(key)),
            certificate_name: None,
        };
        out.push_str(&format!("# key: {key}\n{}\n", entry.to_toml()));
    }
    out.push_str(
        "[limits]\n\
         # Demo: far above the default (2,000/s) so that `ledger-server load` measures the\n\
         # server, not the limit.\n\
         requests_per_second_max = 1000000\n\
         burst_max = 1000000\n",
    );
    out
}

/// Write the demo access file into `data_dir` unless one is there, then load it.
fn demo_access(data_dir: &Path) -> Result<Access, DemoRunError> {
    let path = data_dir.join(ACCESS_FILE);
    if !path.exists() {
        std::fs::write(&path, demo_access_toml()).map_err(|source| DemoRunError::WriteAccess {
            path: path.clone(),
            source,
        })?;
        eprintln!(
            "wrote {} with DEMO-ONLY keys (published in the docs)",
            path.display()
        );
    }
    Ok(Access::load(&path)?)
}

#[derive(Debug, thiserror::Error)]
pub enum DemoRunError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("seeding the demo city failed: {0}")]
    Seed(#[from] DemoError),
    #[error("the demo generator refused {0} of its own steps (a generator bug); the log holds a partial city: delete the data directory and report the bug")]
    Rejected(u64),
    #[error("a blocking task failed: {0}")]
    Blocking(String),
    #[error("{dir} holds a log of {events} events that the demo did not seed (no {SAMPLE_FILE}): the demo serves with keys published in the docs, so it does not serve it; serve it with `ledger-server serve --data-dir {dir} --access FILE` (docs/operations.md), or give the demo an empty directory", dir = dir.display())]
    NotADemoLog { dir: PathBuf, events: u64 },
    #[error("cannot write {path}, which marks a data directory as the demo's: {source}; check that the data directory is writable")]
    WriteMarker {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the demo access file {path}: {source}")]
    WriteAccess {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}; delete it to get the demo's own again")]
    Access(#[from] LoadAccessError),
}

async fn open(dir: PathBuf) -> Result<EmbeddedLog, DemoRunError> {
    tokio::task::spawn_blocking(move || open_log(&dir))
        .await
        .map_err(|e| DemoRunError::Blocking(e.to_string()))?
        .map_err(DemoRunError::from)
}

/// Seed `config`'s city into the empty log in `data_dir`, print the report, and
/// return the open log with the sample accounts.
async fn seed_into(
    data_dir: &Path,
    log: &EmbeddedLog,
    config: &DemoConfig,
) -> Result<Sample, DemoRunError> {
    eprintln!(
        "seeding the demo city ({} volunteers, seed {}, year {}) into {} …",
        config.volunteers,
        config.seed,
        config.year,
        data_dir.display()
    );
    // Marks the directory as the demo's before the first event: a seeding cut short
    // (Ctrl-C, a kill) leaves a log that a later `demo` still serves as its own. The
    // sample accounts replace this line once the city is written.
    let marker = data_dir.join(SAMPLE_FILE);
    std::fs::write(
        &marker,
        "# the demo city is being seeded into this directory\n",
    )
    .map_err(|source| DemoRunError::WriteMarker {
        path: marker.clone(),
        source,
    })?;
    let report = seed(Arc::new(log.clone()) as Arc<dyn EventLog>, config).await?;
    eprint!("{}", report.render());
    if report.rejected() > 0 {
        return Err(DemoRunError::Rejected(report.rejected()));
    }
    if let Some(mark) = &report.receipts_mark {
        crate::receipts::ReceiptCheckpoint::in_dir(data_dir).save(mark);
    }
    let s = &report.sample;
    let text = format!(
        "volunteer {}\norganisation {}\nproject {}\nmerchant {}\nconsenting_volunteer {}\nbank {}\n",
        s.volunteer, s.organisation, s.project, s.merchant, s.consenting_volunteer, s.bank
    );
    if let Err(e) = std::fs::write(data_dir.join(SAMPLE_FILE), text) {
        tracing::warn!("cannot write {SAMPLE_FILE}: {e}");
    }
    Ok(report.sample)
}

fn read_sample(data_dir: &Path) -> Option<Sample> {
    let text = std::fs::read_to_string(data_dir.join(SAMPLE_FILE)).ok()?;
    let mut s = Sample::default();
    for line in text.lines() {
        let (k, v) = line.split_once(' ')?;
        let v = v.to_owned();
        match k {
            "volunteer" => s.volunteer = v,
            "organisation" => s.organisation = v,
            "project" => s.project = v,
            "merchant" => s.merchant = v,
            "consenting_volunteer" => s.consenting_volunteer = v,
            "bank" => s.bank = v,
            _ => {}
        }
    }
    // Only the marker of a seeding cut short: no sample accounts to print.
    (!s.volunteer.is_empty()).then_some(s)
}

/// `ledger-server seed`: seed into an empty data directory and stop.
pub async fn seed_only(data_dir: PathBuf, config: DemoConfig) -> Result<(), DemoRunError> {
    let log = open(data_dir.clone()).await?;
    let result = seed_into(&data_dir, &log, &config).await;
    let closing = log.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    result.map(|_| ())
}

/// `ledger-server demo`: seed on first start (empty log), then serve with the demo's
/// ledger configuration (UTC+8 calendar), printing ready-to-paste grpcurl calls.
/// `star_policies` are what the queries grade star levels by (`--star-policy`).
pub async fn seed_and_serve(
    data_dir: PathBuf,
    listen: SocketAddr,
    config: DemoConfig,
    star_policies: projections::StarPolicies,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoRunError> {
    let payload_encoding = config.payload_encoding;
    let log = open(data_dir.clone()).await?;
    // The demo serves with keys published in the docs: never a log it did not seed.
    // `demo-accounts.txt` is written by the seeding (here or by `seed`).
    if log.event_count() > 0 && !data_dir.join(SAMPLE_FILE).exists() {
        let events = log.event_count();
        let closing = log.clone();
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
        return Err(DemoRunError::NotADemoLog {
            dir: data_dir,
            events,
        });
    }
    let access = match demo_access(&data_dir) {
        Ok(a) => a,
        Err(e) => {
            let closing = log.clone();
            let _ = tokio::task::spawn_blocking(move || closing.close()).await;
            return Err(e);
        }
    };
    let sample = if log.event_count() == 0 {
        match seed_into(&data_dir, &log, &config).await {
            Ok(s) => Some(s),
            Err(e) => {
                let closing = log.clone();
                let _ = tokio::task::spawn_blocking(move || closing.close()).await;
                return Err(e);
            }
        }
    } else {
        eprintln!(
            "{} already holds {} events: serving them as they are",
            data_dir.display(),
            log.event_count()
        );
        read_sample(&data_dir)
    };
    if let Some(s) = &sample {
        renew_sample_consent(
            Arc::new(log.clone()) as Arc<dyn EventLog>,
            s,
            payload_encoding,
        )
        .await;
    }
    println!(
        "{}",
        banner(listen, &data_dir, log.event_count(), sample.as_ref())
    );
    let run = RunConfig {
        data_dir: data_dir.clone(),
        listen,
        ledger: LedgerConfig {
            payload_encoding,
            ..ledger_config()
        },
        store: None,
        serve: ServeOptions::with_access(access),
        star_policies,
        // The demo's log is already open (it was seeded) with the defaults.
        commit_delay: None,
    };
    Ok(run_on(ledger_store::Store::Embedded(log), run, shutdown).await?)
}

/// How long a renewed sample consent lasts: a year, within the ledger's maximum
/// (`CONSENT_DAYS_MAX`, 366 days).
const SAMPLE_CONSENT_RENEWAL_DAYS: i64 = 365;

/// Keep the documented bank calls working: the seeded consent of the sample
/// volunteer to the demo bank lasts until the end of the year after the demo year (a
/// consent lasts at most 366 days); once a wall-clock start finds it expired, grant it
/// again for a year, through the same handler and rules as `Consents/GrantConsent`.
///
/// Option not taken: a longer consent in the seeded log, which the ledger's own rule
/// refuses. The renewal changes the log only after seeding, so the same seed still
/// seeds the same log; a failure is only a warning (the demo serves regardless).
async fn renew_sample_consent(
    log: Arc<dyn EventLog>,
    sample: &Sample,
    payload_encoding: PayloadEncoding,
) -> bool {
    use ledger_core::app::{Clock, Handler, SystemClock};
    use ledger_core::domain::account::AccountId;
    use ledger_core::domain::commands::{Command, GrantConsent};
    use ledger_core::domain::ids::{Purpose, RequestId};

    let (Ok(volunteer), Ok(bank), Ok(purpose)) = (
        AccountId::new(&sample.consenting_volunteer),
        AccountId::new(&sample.bank),
        Purpose::new(super::scenario::CONSENT_PURPOSE),
    ) else {
        return false; // an older sample file without a consenting volunteer
    };
    // In the city's encoding, like the events the server writes after it.
    let config = LedgerConfig {
        payload_encoding,
        ..ledger_config()
    };
    let handler = Handler::new(log, Arc::new(SystemClock), config);
    let now = SystemClock.now();
    match handler.load(&volunteer).await {
        Ok(state) if state.current_consent(&bank, &purpose, now).is_some() => return false,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!("cannot read {volunteer} to renew the demo consent: {e}");
            return false;
        }
    }
    let Ok(request_id) = RequestId::new(format!(
        "demo-renew-consent:{volunteer}:{}",
        now.format("%Y-%m-%d")
    )) else {
        return false;
    };
    let command = Command::GrantConsent(GrantConsent {
        request_id,
        volunteer: volunteer.clone(),
        bank: bank.clone(),
        purpose,
        expires_at: now + chrono::Duration::days(SAMPLE_CONSENT_RENEWAL_DAYS),
    });
    match handler.execute(&command).await {
        Ok(_) => {
            eprintln!(
                "renewed the demo consent of {volunteer} to {bank} (the seeded one had expired)"
            );
            true
        }
        Err(e) => {
            tracing::warn!("cannot renew the demo consent of {volunteer}: {e}");
            false
        }
    }
}

/// The region of the volunteer each start's banner registers (the demo platform's,
/// under `hangzhou`).
const TRY_REGION: &str = "hangzhou/xihu/street-01/community-01";

/// Where the server listens and a few calls to paste: a new volunteer of this start's
/// own (registered, credited, spending), and the city's real accounts.
pub fn banner(listen: SocketAddr, data_dir: &Path, events: u64, sample: Option<&Sample>) -> String {
    let a = listen;
    let mut out = format!(
        "\ntimebank demo ledger: {events} events in {}, gRPC on {a} (plaintext, reflection on)\n\n\
         Try (grpcurl):\n\n\
         grpcurl -plaintext {a} list\n\
         grpcurl -plaintext -d '{{\"service\":\"timebank.v1.LedgerCommands\"}}' {a} grpc.health.v1.Health/Check\n\n\
         Every timebank.v1 call needs a key (health and reflection above do not). The demo's\n\
         callers, from {access} (DEMO-ONLY keys, published in the docs):\n\n",
        data_dir.display(),
        access = data_dir.join(ACCESS_FILE).display(),
    );
    for (name, key) in DEMO_KEYS {
        out.push_str(&format!("  {name:<14} -H 'authorization: Bearer {key}'\n"));
    }
    out.push('\n');
    let platform = format!("-H 'authorization: Bearer {}'", demo_key("demo-platform"));
    let auditor = format!("-H 'authorization: Bearer {}'", demo_key("demo-auditor"));
    if let Some(s) = sample {
        let offset = FixedOffset::east_opt(DEMO_CALENDAR_OFFSET_SECS).expect("UTC+8");
        // Yesterday in the ledger's calendar: the whole interval is in the past.
        let day = Utc::now().with_timezone(&offset).date_naive() - Days::new(1);
        let (start, end) = (format!("{day}T06:00:00Z"), format!("{day}T09:00:00Z"));
        let stamp = Utc::now().format("%Y%m%d%H%M%S");
        // A new volunteer of this start's own: pasted after a restart (or on the same
        // day as the quickstart's calls), the calls meet no earlier service of theirs.
        // With the city's sample volunteer, every start printed the same interval, and
        // the second start's deposit was OVERLAPPING_SERVICE (newcomer's probe).
        let v = format!("v-try-{stamp}");
        out.push_str(&format!(
            "grpcurl -plaintext {platform} -d '{{\"request_id\":\"try-reg-{stamp}\",\"account_id\":\"{v}\",\"kind\":\"ACCOUNT_KIND_VOLUNTEER\",\"region_code\":\"{region}\",\"join_date\":\"{day}\"}}' {a} timebank.v1.LedgerCommands/RegisterAccount\n\
             grpcurl -plaintext {platform} -d '{{\"request_id\":\"try-dep-{stamp}\",\"volunteer_id\":\"{v}\",\"organisation_id\":\"{o}\",\"activity_id\":\"try-river-patrol-{day}\",\"service_date\":\"{day}\",\"started_at\":\"{start}\",\"ended_at\":\"{end}\",\"category\":\"river-patrol\",\"hours\":\"3\",\"kind\":\"HOUR_KIND_CREDIT\",\"verifier_id\":\"staff-017\"}}' {a} timebank.v1.LedgerCommands/DepositHours\n\
             grpcurl -plaintext {platform} -d '{{\"request_id\":\"try-spend-{stamp}\",\"volunteer_id\":\"{v}\",\"purpose\":\"SPEND_PURPOSE_RECEIVED_SERVICE\",\"counterparty_id\":\"{o}\",\"hours\":\"1.5\",\"memo\":\"home visit\"}}' {a} timebank.v1.LedgerCommands/SpendHours\n\
             grpcurl -plaintext {platform} -d '{{\"request_id\":\"try-exchange-{stamp}\",\"volunteer_id\":\"{v}\",\"hours\":\"0.5\"}}' {a} timebank.v1.LedgerCommands/ExchangeHours\n\
             grpcurl -plaintext {platform} -d '{{\"request_id\":\"try-donate-{stamp}\",\"volunteer_id\":\"{v}\",\"project_id\":\"{p}\",\"hours\":\"0.5\"}}' {a} timebank.v1.LedgerCommands/DonateHours\n\
             grpcurl -plaintext {auditor} -d '{{\"account_id\":\"{v}\"}}' {a} timebank.v1.LedgerQueries/GetAccount\n\
             grpcurl -plaintext {auditor} -d '{{\"account_id\":\"{top}\"}}' {a} timebank.v1.LedgerQueries/GetAccount\n",
            region = TRY_REGION,
            top = s.volunteer,
            o = s.organisation,
            p = s.project,
        ));
        let bank = format!("-H 'authorization: Bearer {}'", demo_key(DEMO_BANK_CALLER));
        let merchant = format!("-H 'authorization: Bearer {}'", demo_key("demo-merchant"));
        if !s.consenting_volunteer.is_empty() {
            out.push_str(&format!(
                "grpcurl -plaintext {bank} -d '{{\"request_id\":\"try-report-{stamp}\",\"volunteer_id\":\"{cv}\",\"purpose\":\"{purpose}\"}}' {a} timebank.v1.Banks/GetCreditReport\n",
                cv = s.consenting_volunteer,
                purpose = super::scenario::CONSENT_PURPOSE,
            ));
        }
        out.push_str(&format!(
            "grpcurl -plaintext {merchant} -d '{{\"merchant_id\":\"{m}\",\"page_size\":5}}' {a} timebank.v1.Redemptions/ListRedemptions\n\
             grpcurl -plaintext {merchant} -d '{{\"merchant_id\":\"{m}\",\"from\":\"{y}-01-01T00:00:00+08:00\",\"to\":\"{y1}-01-01T00:00:00+08:00\"}}' {a} timebank.v1.Redemptions/GetSettlementStatement\n",
            m = DEMO_MERCHANT,
            y = super::DEMO_YEAR,
            y1 = super::DEMO_YEAR + 1,
        ));
        out.push_str(&format!(
            "\n(the calls above register {v} for this start; volunteer {} served most this demo year; {} consented to {} for {}; merchant {}; docs/quickstart.md and docs/partners.md have more)\n",
            s.volunteer,
            s.consenting_volunteer,
            s.bank,
            super::scenario::CONSENT_PURPOSE,
            s.merchant
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::log::memory::MemoryLog;

    /// A city of a year whose sample consent has expired by now (granted at the end of
    /// 2024 for 366 days): the first start renews it, the next finds it current.
    #[tokio::test]
    async fn an_expired_sample_consent_is_renewed_once() {
        let log = Arc::new(MemoryLog::new()) as Arc<dyn EventLog>;
        let config = DemoConfig {
            volunteers: 30,
            year: 2024,
            progress: false,
            ..DemoConfig::default()
        };
        let report = seed(log.clone(), &config).await.unwrap();
        assert_eq!(report.rejected(), 0, "{}", report.render());
        assert!(renew_sample_consent(log.clone(), &report.sample, PayloadEncoding::Json).await);
        assert!(!renew_sample_consent(log, &report.sample, PayloadEncoding::Json).await);
    }

    /// `demo --payload-encoding binary`: the consent renewed at a later start is
    /// written in the city's encoding, like every event the demo's server writes.
    #[tokio::test]
    async fn a_renewed_sample_consent_is_written_in_the_demo_encoding() {
        let log = Arc::new(MemoryLog::new()) as Arc<dyn EventLog>;
        let config = DemoConfig {
            volunteers: 30,
            year: 2024,
            progress: false,
            payload_encoding: PayloadEncoding::Binary,
            ..DemoConfig::default()
        };
        let report = seed(log.clone(), &config).await.unwrap();
        assert!(renew_sample_consent(log.clone(), &report.sample, PayloadEncoding::Binary).await);
        let volunteer = ledger_core::domain::account::AccountId::new(
            report.sample.consenting_volunteer.clone(),
        )
        .unwrap();
        let events = log
            .read_stream(
                &volunteer.stream(),
                0,
                ledger_core::log::limits::READ_EVENTS_MAX,
            )
            .await
            .unwrap();
        let renewal = events.last().expect("the renewal");
        assert_eq!(renewal.event_type, "ConsentGranted.v1");
        assert!(
            ledger_core::domain::events::is_binary_payload(&renewal.data),
            "{}",
            String::from_utf8_lossy(&renewal.data)
        );
    }
}

//! `ledger-server demo` and `ledger-server seed`: seed the demo city into a data
//! directory's embedded log (on first start), then serve it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Days, FixedOffset, Utc};
use ledger_core::log::EventLog;
use ledger_store::EmbeddedLog;

use super::{ledger_config, seed, DemoConfig, DemoError, Sample, DEMO_CALENDAR_OFFSET_SECS};
use crate::{open_log, run_on, RunConfig, ServeError};

/// Written next to the log's segments after seeding (the log ignores other files), so later starts can print calls with real
/// account ids without generating the city again.
const SAMPLE_FILE: &str = "demo-accounts.txt";

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
    let report = seed(Arc::new(log.clone()) as Arc<dyn EventLog>, config).await?;
    eprint!("{}", report.render());
    if report.rejected() > 0 {
        return Err(DemoRunError::Rejected(report.rejected()));
    }
    let s = &report.sample;
    let text = format!(
        "volunteer {}\norganisation {}\nproject {}\nmerchant {}\n",
        s.volunteer, s.organisation, s.project, s.merchant
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
            _ => {}
        }
    }
    Some(s)
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
    let log = open(data_dir.clone()).await?;
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
    println!(
        "{}",
        banner(listen, &data_dir, log.event_count(), sample.as_ref())
    );
    let run = RunConfig {
        data_dir: data_dir.clone(),
        listen,
        ledger: ledger_config(),
        store: None,
        star_policies,
    };
    Ok(run_on(ledger_store::Store::Embedded(log), run, shutdown).await?)
}

/// Where the server listens and a few calls to paste, with real accounts.
pub fn banner(listen: SocketAddr, data_dir: &Path, events: u64, sample: Option<&Sample>) -> String {
    let a = listen;
    let mut out = format!(
        "\ntimebank demo ledger: {events} events in {}, gRPC on {a} (plaintext, reflection on)\n\n\
         Try (grpcurl):\n\n\
         grpcurl -plaintext {a} list\n\
         grpcurl -plaintext -d '{{\"service\":\"timebank.v1.LedgerCommands\"}}' {a} grpc.health.v1.Health/Check\n",
        data_dir.display()
    );
    if let Some(s) = sample {
        let offset = FixedOffset::east_opt(DEMO_CALENDAR_OFFSET_SECS).expect("UTC+8");
        // Yesterday in the ledger's calendar: the whole interval is in the past.
        let day = Utc::now().with_timezone(&offset).date_naive() - Days::new(1);
        // 09:00 to 12:00 at UTC+8.
        let (start, end) = (format!("{day}T01:00:00Z"), format!("{day}T04:00:00Z"));
        let stamp = Utc::now().format("%Y%m%d%H%M%S");
        out.push_str(&format!(
            "grpcurl -plaintext -d '{{\"request_id\":\"try-dep-{stamp}\",\"volunteer_id\":\"{v}\",\"organisation_id\":\"{o}\",\"activity_id\":\"try-river-patrol-{day}\",\"service_date\":\"{day}\",\"started_at\":\"{start}\",\"ended_at\":\"{end}\",\"category\":\"river-patrol\",\"hours\":\"3\",\"kind\":\"HOUR_KIND_CREDIT\",\"verifier_id\":\"staff-017\"}}' {a} timebank.v1.LedgerCommands/DepositHours\n\
             grpcurl -plaintext -d '{{\"request_id\":\"try-spend-{stamp}\",\"volunteer_id\":\"{v}\",\"purpose\":\"SPEND_PURPOSE_RECEIVED_SERVICE\",\"counterparty_id\":\"{o}\",\"hours\":\"1.5\",\"memo\":\"home visit\"}}' {a} timebank.v1.LedgerCommands/SpendHours\n\
             grpcurl -plaintext -d '{{\"request_id\":\"try-exchange-{stamp}\",\"volunteer_id\":\"{v}\",\"hours\":\"0.5\"}}' {a} timebank.v1.LedgerCommands/ExchangeHours\n\
             grpcurl -plaintext -d '{{\"request_id\":\"try-donate-{stamp}\",\"volunteer_id\":\"{v}\",\"project_id\":\"{p}\",\"hours\":\"0.5\"}}' {a} timebank.v1.LedgerCommands/DonateHours\n",
            v = s.volunteer,
            o = s.organisation,
            p = s.project,
        ));
        out.push_str(&format!(
            "\n(volunteer {} served most this demo year; merchant {}; docs/quickstart.md has more)\n",
            s.volunteer, s.merchant
        ));
    }
    out
}

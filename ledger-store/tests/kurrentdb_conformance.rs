//! The KurrentDB backend against the shared conformance suite of the log contract.
//!
//! Needs a server: `TIMEBANK_KURRENTDB_URL=kurrentdb://localhost:2113?tls=false cargo
//! test -p ledger-store --test kurrentdb_conformance`. The suite uses stream names
//! unique to the run, so any server (even one holding other data) will do. Without
//! the variable the test prints why it is skipped and passes: the server cannot be
//! installed from the package registries CI reaches.

use ledger_store::KurrentLog;

const URL_VAR: &str = "TIMEBANK_KURRENTDB_URL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrentdb_log_conforms() {
    let Ok(url) = std::env::var(URL_VAR) else {
        println!(
            "skipped: {URL_VAR} is not set (KurrentDB cannot be installed from the registries CI reaches)"
        );
        return;
    };
    ledger_core::log::conformance::run_all(|| {
        let log = KurrentLog::connect(&url).expect("connect to TIMEBANK_KURRENTDB_URL");
        async move { log }
    })
    .await;
}

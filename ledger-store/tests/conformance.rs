//! The embedded log against the shared conformance suite of the log contract.
use ledger_store::{EmbeddedConfig, EmbeddedLog};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_conforms() {
    let mut dirs = Vec::new();
    ledger_core::log::conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
        dirs.push(dir);
        async move { log }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_conforms_with_tiny_segments() {
    // Segments of 8 KiB make nearly every case roll over to new segments.
    let mut dirs = Vec::new();
    ledger_core::log::conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EmbeddedConfig {
            segment_bytes_max: 8 * 1024,
            ..EmbeddedConfig::default()
        };
        let log = EmbeddedLog::open(dir.path(), config).expect("open");
        dirs.push(dir);
        async move { log }
    })
    .await;
}

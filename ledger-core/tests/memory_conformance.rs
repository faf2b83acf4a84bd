//! The reference in-memory log passes the same suite as every backend.
use ledger_core::log::memory::MemoryLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_conforms() {
    ledger_core::log::conformance::run_all(|| async { MemoryLog::new() }).await;
}

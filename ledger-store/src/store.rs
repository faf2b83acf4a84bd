//! Choosing the event log from configuration: `--store` of `ledger-server serve` and
//! the `timebank-log` tools.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger_core::log::EventLog;

use crate::embedded::{EmbeddedConfig, EmbeddedLog, OpenError};
use crate::kurrentdb::{redact, ConnectError, KurrentLog};

/// URL schemes that select KurrentDB. The client parses the rest; these are the ones
/// it accepts (`kurrent`, `kdb` are its aliases).
pub const KURRENTDB_SCHEMES: &[&str] = &[
    "kurrentdb://",
    "kurrentdb+discover://",
    "esdb://",
    "esdb+discover://",
    "kurrent://",
    "kurrent+discover://",
    "kdb://",
    "kdb+discover://",
];

/// Sub-directory of the server's data directory that holds the embedded log.
pub const EMBEDDED_LOG_DIR: &str = "log";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unknown store {spec:?}: use \"embedded\" (the default) or a KurrentDB connection \
         string such as kurrentdb://host:2113?tls=true or kurrentdb+discover://host:2113"
    )]
    UnknownStore { spec: String },
    #[error("could not open the embedded log in {dir}: {source}")]
    Embedded { dir: PathBuf, source: OpenError },
    #[error(transparent)]
    Kurrent(#[from] ConnectError),
}

/// Where a log lives, parsed from a `--store` value. Its `Debug` form hides passwords,
/// so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded log in this directory.
    Embedded(PathBuf),
    /// A KurrentDB connection string, passed to the client unchanged.
    Kurrent(String),
}

impl StoreSpec {
    /// `""` or `"embedded"` → the embedded log in `data_dir/log`; a KurrentDB URL → the
    /// cluster. Anything else is refused rather than guessed at.
    pub fn parse(spec: &str, data_dir: &Path) -> Result<Self, StoreError> {
        let spec = spec.trim();
        if spec.is_empty() || spec == "embedded" {
            return Ok(Self::Embedded(data_dir.join(EMBEDDED_LOG_DIR)));
        }
        if is_kurrentdb_url(spec) {
            return Ok(Self::Kurrent(spec.to_owned()));
        }
        Err(StoreError::UnknownStore { spec: redact(spec) })
    }

    /// For tools: a KurrentDB URL, or else a directory holding an embedded log.
    pub fn parse_location(location: &str) -> Self {
        if is_kurrentdb_url(location) {
            Self::Kurrent(location.to_owned())
        } else {
            Self::Embedded(PathBuf::from(location))
        }
    }

    /// For logs and messages: never shows a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(dir) => format!("embedded log in {}", dir.display()),
            Self::Kurrent(url) => format!("KurrentDB at {}", redact(url)),
        }
    }

    /// Open the log. A KurrentDB log must be opened inside a tokio runtime.
    pub fn open(&self) -> Result<Store, StoreError> {
        match self {
            Self::Embedded(dir) => EmbeddedLog::open(dir, EmbeddedConfig::default())
                .map(Store::Embedded)
                .map_err(|source| StoreError::Embedded {
                    dir: dir.clone(),
                    source,
                }),
            Self::Kurrent(url) => Ok(Store::Kurrent(KurrentLog::connect(url)?)),
        }
    }
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded(dir) => f.debug_tuple("Embedded").field(dir).finish(),
            Self::Kurrent(url) => f.debug_tuple("Kurrent").field(&redact(url)).finish(),
        }
    }
}

fn is_kurrentdb_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    KURRENTDB_SCHEMES
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// An open event log of either kind.
#[derive(Clone)]
pub enum Store {
    Embedded(EmbeddedLog),
    Kurrent(KurrentLog),
}

impl Store {
    /// The log as the rest of the system uses it.
    pub fn log(&self) -> Arc<dyn EventLog> {
        match self {
            Self::Embedded(l) => Arc::new(l.clone()),
            Self::Kurrent(l) => Arc::new(l.clone()),
        }
    }

    /// Orderly shutdown: the embedded log finishes the appends already queued and
    /// releases its directory lock; the KurrentDB client needs nothing (acknowledged
    /// appends are on the cluster, and dropping the client closes its connection).
    pub fn close(&self) {
        match self {
            Self::Embedded(l) => l.close(),
            Self::Kurrent(_) => {}
        }
    }
}

/// Open the log named by `spec` (see [`StoreSpec::parse`]). Call [`Store::close`] at
/// shutdown.
pub fn open_store(spec: &str, data_dir: &Path) -> Result<Store, StoreError> {
    StoreSpec::parse(spec, data_dir)?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_select_the_backend() {
        let data = Path::new("/var/lib/timebank");
        for s in ["", "embedded", " embedded "] {
            assert_eq!(
                StoreSpec::parse(s, data).expect("embedded"),
                StoreSpec::Embedded(data.join("log"))
            );
        }
        for s in [
            "kurrentdb://localhost:2113?tls=false",
            "kurrentdb+discover://cluster.example:2113",
            "esdb://a:2113,b:2113,c:2113?tls=true",
            "ESDB+DISCOVER://cluster.example:2113",
        ] {
            assert_eq!(
                StoreSpec::parse(s, data).expect("kurrent"),
                StoreSpec::Kurrent(s.to_owned())
            );
        }
        let err = StoreSpec::parse("postgres://u:pw@db/x", data).expect_err("unknown");
        assert!(matches!(err, StoreError::UnknownStore { .. }));
        assert!(!err.to_string().contains("pw@"), "{err}");
    }

    #[test]
    fn tool_locations_are_urls_or_directories() {
        assert_eq!(
            StoreSpec::parse_location("/backup/log"),
            StoreSpec::Embedded(PathBuf::from("/backup/log"))
        );
        assert_eq!(
            StoreSpec::parse_location("kurrentdb://h:2113"),
            StoreSpec::Kurrent("kurrentdb://h:2113".into())
        );
        let secret = StoreSpec::Kurrent("kurrentdb://admin:changeit@h:2113".into());
        assert_eq!(
            secret.describe(),
            "KurrentDB at kurrentdb://admin:***@h:2113"
        );
        assert!(!format!("{secret:?}").contains("changeit"));
    }

    #[test]
    fn open_store_opens_and_closes_the_embedded_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store("embedded", dir.path()).expect("open");
        assert!(matches!(store, Store::Embedded(_)));
        let log = store.log();
        store.close();
        assert!(dir.path().join("log").is_dir());
        // The lock goes with the last handle: then the log opens again.
        drop((log, store));
        open_store("", dir.path()).expect("reopen").close();
    }
}

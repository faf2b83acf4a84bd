//! The partner services of `partners.proto`: consents and inquiries, banks, merchants'
//! redemptions and the audit trail. One file per service; authorisation rules are in
//! `crate::authz`, request conversion in `crate::convert`, statuses in `crate::status`.
//!
//! - `consents`: `timebank.v1.Consents` (platforms);
//! - `banks`: `timebank.v1.Banks`, and the served-report JSON kept in inquiries;
//! - `redemptions`: `timebank.v1.Redemptions` (tokens, holds, settlement) and the hold
//!   sweeper;
//! - `audit`: `timebank.v1.Audit` (log stream, verification, point-in-time replay).

pub mod audit;
pub mod banks;
pub mod consents;
pub mod redemptions;

use std::sync::Arc;

use ledger_core::app::{Clock, Handler};
use ledger_core::domain::account::AccountId;
use ledger_core::domain::events::LedgerEvent;
use ledger_core::domain::token::TokenKey;
use ledger_core::log::{EventLog, RecordedEvent};
use projections::{Projections, StarPolicies};
use tonic::Code;

use crate::service::LedgerService;
use crate::status::Described;

/// What the partner services run with.
#[derive(Clone, Debug)]
pub struct PartnerConfig {
    /// Signs and verifies redemption tokens. The binary keeps it in
    /// `DATA_DIR/redemption-token.key`; without one a random key is drawn at start
    /// (tokens then do not survive a restart, fine for tests).
    pub token_key: TokenKey,
}

/// The file in a data directory that holds the redemption token key (64 hex digits).
pub const TOKEN_KEY_FILE: &str = "redemption-token.key";

/// Why the token key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("cannot read or create the redemption token key {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold 64 hex digits; restore it from a backup, or delete it to draw a new key (outstanding tokens then stop working)")]
    Malformed { path: std::path::PathBuf },
}

impl PartnerConfig {
    /// Load `DATA_DIR/redemption-token.key`, or draw a key and create the file (owner
    /// read/write only). The key must survive restarts, or tokens a volunteer is
    /// holding stop working; it is a secret, like the data directory itself.
    pub fn load_or_create(data_dir: &std::path::Path) -> Result<Self, TokenKeyError> {
        let path = data_dir.join(TOKEN_KEY_FILE);
        let io = |source| TokenKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = ledger_core::domain::chain::from_hex32(text.trim())
                    .map_err(|_| TokenKeyError::Malformed { path: path.clone() })?;
                Ok(Self {
                    token_key: TokenKey::new(bytes),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let bytes: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                std::io::Write::write_all(&mut file, hex::encode(bytes).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
                Ok(Self {
                    token_key: TokenKey::new(bytes),
                })
            }
            Err(e) => Err(io(e)),
        }
    }
}

impl Default for PartnerConfig {
    fn default() -> Self {
        Self {
            token_key: TokenKey::new(rand::random()),
        }
    }
}

/// Everything the partner services share. Cheap to clone.
#[derive(Clone)]
pub struct Partners {
    pub(crate) commands: LedgerService,
    pub(crate) handler: Handler,
    pub(crate) projections: Projections,
    pub(crate) policies: Arc<StarPolicies>,
    pub(crate) config: PartnerConfig,
    /// Set once the server shuts down: long-lived answers (`StreamLog`) end, so a
    /// graceful shutdown does not wait on a client that follows the log forever.
    pub(crate) closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Open `StreamLog` calls per caller (`audit::StreamLogCalls`).
    pub(crate) stream_log_calls: audit::StreamLogCalls,
}

impl Partners {
    pub fn new(
        commands: LedgerService,
        handler: Handler,
        projections: Projections,
        policies: Arc<StarPolicies>,
        config: PartnerConfig,
    ) -> Self {
        Self {
            commands,
            handler,
            projections,
            policies,
            config,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            stream_log_calls: audit::StreamLogCalls::default(),
        }
    }

    /// End the long-lived answers (`StreamLog`) now: the server is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub(crate) fn log(&self) -> &Arc<dyn EventLog> {
        self.handler.log()
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        self.handler.clock()
    }

    /// The event at `version` of `account`'s stream (one a command just wrote or
    /// replayed), decoded.
    pub(crate) async fn event_at(
        &self,
        account: &AccountId,
        version: u64,
    ) -> Result<(RecordedEvent, LedgerEvent), Described> {
        let page = self
            .log()
            .read_stream(&account.stream(), version, 1)
            .await
            .map_err(|e| internal(Code::Unavailable, "LOG_UNAVAILABLE", e.to_string()))?;
        let recorded = page.into_iter().next().ok_or_else(|| {
            internal(
                Code::Internal,
                "INTERNAL",
                format!("event {version} of {account} was written but cannot be read back"),
            )
        })?;
        let event = LedgerEvent::decode(&recorded.event_type, &recorded.data)
            .map_err(|e| internal(Code::DataLoss, "LOG_CORRUPT", e.to_string()))?;
        Ok((recorded, event))
    }
}

/// An RPC's answer from a partner service's result: the one place its failures
/// become statuses (through `Described`, built in `crate::status`).
#[allow(clippy::result_large_err)] // tonic's Status is the error type of every RPC
pub(crate) fn respond<T>(r: Result<T, Described>) -> Result<tonic::Response<T>, tonic::Status> {
    r.map(tonic::Response::new).map_err(Described::into_status)
}

/// How a failed read of a whole account stream (`credit::read_account_stream`) reaches
/// a partner: as the query API reports it (`status.rs`), so that a stream too long to
/// read is `FAILED_PRECONDITION` and damage `DATA_LOSS`, and only an unavailable log
/// is `UNAVAILABLE`, which clients retry.
pub(crate) fn stream_read_failed(e: &projections::credit::CreditError) -> Described {
    crate::status::query_status_described(&crate::queries::QueryError::from(e))
}

pub(crate) fn internal(code: Code, reason: &'static str, message: String) -> Described {
    Described {
        code,
        reason,
        message,
        metadata: Default::default(),
    }
}

/// A page token ([`crate::convert::page_token`]) as a partner answer's refusal.
pub(crate) fn page_start(token: &str) -> Result<u64, Described> {
    crate::convert::page_token(token).map_err(|r| crate::status::describe_rejection(&r))
}

/// [`crate::convert::page_token_not_issued`] as a partner answer's refusal.
pub(crate) fn page_token_not_issued() -> Described {
    crate::status::describe_rejection(&crate::convert::page_token_not_issued())
}

/// `merchant`'s account index if the read models hold it as a registered merchant;
/// otherwise why not (`UNKNOWN_ACCOUNT`, or `NOT_A_MERCHANT` naming its kind). A
/// merchant's list or statement for any other id was an empty answer that a
/// reconciliation job could not tell from "no redemptions".
pub(crate) fn registered_merchant(
    m: &projections::ReadModels,
    merchant: &ledger_core::domain::account::AccountId,
) -> Result<u32, Described> {
    let refused = |e: crate::queries::QueryError| crate::status::query_status_described(&e);
    let i = m
        .account_index(merchant.as_str())
        .filter(|&i| m.row(i).kind != projections::account::Kind::Unregistered)
        .ok_or_else(|| {
            refused(crate::queries::QueryError::UnknownAccount(
                merchant.to_string(),
            ))
        })?;
    match m.row(i).kind {
        projections::account::Kind::Merchant => Ok(i),
        kind => Err(refused(crate::queries::QueryError::WrongKind {
            account: merchant.to_string(),
            is: kind.name(),
            wanted: crate::queries::Wanted::Merchant,
        })),
    }
}

/// Default and largest page of the partner list RPCs (as `ListTransactions`).
pub const PARTNER_PAGE_DEFAULT: u32 = 50;
pub const PARTNER_PAGE_MAX: u32 = 500;

pub(crate) fn page_size(asked: u32) -> usize {
    (match asked {
        0 => PARTNER_PAGE_DEFAULT,
        n => n.min(PARTNER_PAGE_MAX),
    }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::log::ReadError;
    use projections::credit::CreditError;

    /// A stream too long to read whole is not retryable (it was `UNAVAILABLE`, which
    /// clients retry by default), damage is `DATA_LOSS`, an unavailable log is
    /// `UNAVAILABLE`: for every partner call that reads a whole stream alike.
    #[test]
    fn a_whole_stream_read_fails_with_the_status_its_cause_calls_for() {
        let of = |e: CreditError| {
            let d = stream_read_failed(&e);
            (d.code, d.reason)
        };
        assert_eq!(
            of(CreditError::StreamTooLong),
            (Code::FailedPrecondition, "STREAM_TOO_LONG")
        );
        assert_eq!(
            of(CreditError::Read(ReadError::Corrupt("crc".into()))),
            (Code::DataLoss, "LOG_CORRUPT")
        );
        assert_eq!(
            of(CreditError::Read(ReadError::Unavailable("down".into()))),
            (Code::Unavailable, "LOG_UNAVAILABLE")
        );
    }
}

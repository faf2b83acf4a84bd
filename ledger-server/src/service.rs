//! The `timebank.v1.LedgerCommands` service: proto in, handler, proto out.

use std::sync::Arc;

use ledger_core::app::Handler;
use ledger_core::domain::commands::Command;
use ledger_core::domain::state::Outcome;
use ledger_core::domain::Rejection;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::authz::{self, Caller, RoleKind};
use crate::convert;
use crate::pb;
use crate::status::{describe, describe_rejection, Described};

/// Most commands in one `SubmitBatch`, by default (`[limits] batch_commands_max` of
/// the access file sets it; [`LedgerService::with_batch_commands_max`]). A bank's bulk file or a large event's check-outs
/// arrive in thousands; the batch runs its commands one after another, so 1,000 keeps
/// one call to a few seconds and its request well under gRPC's default 4 MiB message
/// limit (a command is a few hundred bytes). Bigger files are split by the client.
pub const BATCH_COMMANDS_MAX: usize = 1000;

/// Most commands executing at once. Each holds one account's folded state in memory;
/// 1,024 bounds that memory and is far above what two cores decide concurrently. At
/// shutdown the server takes every permit, which is how it waits for in-flight
/// commands to finish before the log is closed.
pub const INFLIGHT_COMMANDS_MAX: usize = 1024;

#[derive(Clone)]
pub struct LedgerService {
    handler: Handler,
    /// Accounts' registrations, for platforms' scope checks (`crate::authz`).
    registrations: Arc<authz::Registrations>,
    inflight: Arc<Semaphore>,
    batch_commands_max: usize,
}

impl LedgerService {
    pub fn new(handler: Handler) -> Self {
        Self {
            registrations: Arc::new(authz::Registrations::new(handler.log().clone())),
            handler,
            inflight: Arc::new(Semaphore::new(INFLIGHT_COMMANDS_MAX)),
            batch_commands_max: BATCH_COMMANDS_MAX,
        }
    }

    /// Refuse batches of more than `max` commands (`BATCH_TOO_LARGE`) instead of
    /// [`BATCH_COMMANDS_MAX`].
    pub fn with_batch_commands_max(mut self, max: usize) -> Self {
        self.batch_commands_max = max;
        self
    }

    /// Wait until no command is executing and refuse new ones (shutdown).
    pub async fn drain(&self) {
        // The count fits: INFLIGHT_COMMANDS_MAX is far below u32::MAX.
        if let Ok(all) = self
            .inflight
            .acquire_many(INFLIGHT_COMMANDS_MAX as u32)
            .await
        {
            all.forget();
        }
        self.inflight.close();
    }

    /// Execute one converted command. The handler runs in its own task, so a client
    /// that hangs up cannot cancel a command half way (between its transaction and a
    /// receipt); the in-flight permit travels with it.
    async fn execute(
        &self,
        caller: &Caller,
        command: Result<Command, Rejection>,
    ) -> Result<Outcome, Described> {
        let command = command.map_err(|r| {
            tracing::info!(reason = r.reason(), "command refused at the edge: {r}");
            describe_rejection(&r)
        })?;
        authz::require_command(&self.registrations, caller, &command).await?;
        self.execute_authorized(command).await
    }

    /// The registrations cache the scope checks share.
    pub(crate) fn registrations(&self) -> &authz::Registrations {
        &self.registrations
    }

    /// Execute a command the caller has been authorised for (partner services check
    /// their own rules first).
    pub(crate) async fn execute_authorized(&self, command: Command) -> Result<Outcome, Described> {
        let permit = self.inflight.clone().acquire_owned().await.map_err(|_| Described {
            code: Code::Unavailable,
            reason: "SHUTTING_DOWN",
            message: "the server is shutting down; retry with the same request id on another instance or later".into(),
            metadata: Default::default(),
        })?;
        let handler = self.handler.clone();
        // Every line logged while the command is handled (here, in the handler, in the
        // log) carries its request id.
        let span = tracing::info_span!(
            "command",
            request_id = %command.request_id(),
            command = command.name()
        );
        let task = tokio::spawn(
            async move {
                let name = command.name();
                let request_id = command.request_id().to_string();
                let result = handler.execute(&command).await;
                match &result {
                    Ok(o) => {
                        tracing::info!(command = name, %request_id, transaction = %o.transaction, position = %o.position, replayed = o.replayed, "command executed")
                    }
                    Err(e) => tracing::info!(command = name, %request_id, "command refused: {e}"),
                }
                // Release the log handle before the permit: once `drain` holds every
                // permit, no command task holds the log any more.
                drop(handler);
                drop(permit);
                result
            }
            .instrument(span),
        );
        match task.await {
            Ok(result) => result.map_err(|e| describe(&e)),
            Err(join) => {
                tracing::error!("command task failed: {join}");
                Err(Described {
                    code: Code::Internal,
                    reason: "INTERNAL",
                    message: "the command failed inside the server; nothing is known to be written. Retry with the same request id".into(),
                    metadata: Default::default(),
                })
            }
        }
    }

    /// Commands are for platforms (in their scope) and administrators.
    async fn rpc<T>(
        &self,
        request: Request<T>,
        convert: fn(T) -> Result<Command, Rejection>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let caller = authz::caller(&request)?;
        authz::require(
            &caller,
            &[RoleKind::Platform, RoleKind::Admin],
            "write to the ledger",
        )
        .map_err(Described::into_status)?;
        self.execute(&caller, convert(request.into_inner()))
            .await
            .map(|o| Response::new(convert::command_result(&o)))
            .map_err(Described::into_status)
    }
}

#[tonic::async_trait]
impl pb::ledger_commands_server::LedgerCommands for LedgerService {
    async fn register_account(
        &self,
        r: Request<pb::RegisterAccountRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::register_account).await
    }

    async fn close_account(
        &self,
        r: Request<pb::CloseAccountRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::close_account).await
    }

    async fn deposit_hours(
        &self,
        r: Request<pb::DepositHoursRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::deposit_hours).await
    }

    async fn spend_hours(
        &self,
        r: Request<pb::SpendHoursRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::spend_hours).await
    }

    async fn exchange_hours(
        &self,
        r: Request<pb::ExchangeHoursRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::exchange_hours).await
    }

    async fn transfer_hours(
        &self,
        r: Request<pb::TransferHoursRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::transfer_hours).await
    }

    async fn donate_hours(
        &self,
        r: Request<pb::DonateHoursRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::donate_hours).await
    }

    async fn reverse_transaction(
        &self,
        r: Request<pb::ReverseTransactionRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::reverse_transaction).await
    }

    async fn record_no_show(
        &self,
        r: Request<pb::RecordNoShowRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::record_no_show).await
    }

    async fn rate_service(
        &self,
        r: Request<pb::RateServiceRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.rpc(r, convert::rate_service).await
    }

    /// Commands run in order (a line may depend on an earlier one, e.g. register then
    /// deposit); a refused line is reported in its slot and the rest still run.
    async fn submit_batch(
        &self,
        r: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let caller = authz::caller(&r)?;
        authz::require(
            &caller,
            &[RoleKind::Platform, RoleKind::Admin],
            "write to the ledger",
        )
        .map_err(Described::into_status)?;
        let commands = r.into_inner().commands;
        if commands.is_empty() {
            return Err(Described {
                code: Code::InvalidArgument,
                reason: "BATCH_EMPTY",
                message: "the batch holds no commands; send at least one".into(),
                metadata: Default::default(),
            }
            .into_status());
        }
        let max = self.batch_commands_max;
        if commands.len() > max {
            return Err(Described {
                code: Code::InvalidArgument,
                reason: "BATCH_TOO_LARGE",
                message: format!(
                    "the batch holds {} commands; batch_commands_max is {max}: split it into several batches",
                    commands.len()
                ),
                metadata: [
                    ("commands".to_owned(), commands.len().to_string()),
                    ("max".to_owned(), max.to_string()),
                ]
                .into(),
            }
            .into_status());
        }
        let mut results = Vec::with_capacity(commands.len());
        for c in commands {
            let result = match self.execute(&caller, convert::batch_command(c)).await {
                Ok(o) => pb::batch_result::Result::Ok(convert::command_result(&o)),
                Err(d) => pb::batch_result::Result::Error(pb::CommandError {
                    code: d.code as i32,
                    message: d.message,
                    reason: d.reason.to_owned(),
                    metadata: d.metadata,
                }),
            };
            results.push(pb::BatchResult {
                result: Some(result),
            });
        }
        Ok(Response::new(pb::SubmitBatchResponse { results }))
    }
}

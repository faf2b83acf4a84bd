//! The `timebank.v1.LedgerCommands` service: proto in, handler, proto out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use foldhash::fast::RandomState;
use futures::{FutureExt, StreamExt};
use ledger_core::app::{CommandError, Handler};
use ledger_core::domain::account::AccountId;
use ledger_core::domain::commands::Command;
use ledger_core::domain::ids::RequestId;
use ledger_core::domain::state::Outcome;
use ledger_core::domain::Rejection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::authz::{self, Caller, Role, RoleKind};
use crate::convert;
use crate::pb;
use crate::status::{describe, describe_rejection, Described};

/// Most commands in one `SubmitBatch`, by default (`[limits] batch_commands_max` of
/// the access file sets it; [`LedgerService::with_batch_commands_max`]). A bank's bulk file or a large event's check-outs
/// arrive in thousands; lines on one account run one after another, so 1,000 keeps
/// one call to a few seconds and its request well under gRPC's default 4 MiB message
/// limit (a command is a few hundred bytes). Bigger files are split by the client.
pub const BATCH_COMMANDS_MAX: usize = 1000;

/// Most lines of one `SubmitBatch` executing at once. Lines on different accounts run
/// concurrently so that their durable appends share the log's group commits: run one
/// after another, a batch of 1,000 waits for 1,000 fsyncs in turn and is one caller.
/// 64 lines keeps a batch's burst to what a few group commits take, leaves room under
/// [`INFLIGHT_COMMANDS_MAX`] for 16 such batches at once (so one large batch cannot
/// take every permit from unary callers), and is well past the point where two cores
/// are busy deciding. Option not taken: no per-batch limit, which lets one batch of
/// 1,000 independent lines queue ahead of every other caller.
pub const BATCH_COMMANDS_INFLIGHT_MAX: usize = 64;

/// Most batches running at once, server-wide. A batch runs to its end even when its
/// client hangs up (`submit_batch`), so a client that sends batches and cancels them
/// would otherwise queue work no open HTTP/2 stream accounts for; a batch waits for a
/// slot before it starts, in its RPC, where a hang-up still cancels it. 64 batches of
/// [`BATCH_COMMANDS_INFLIGHT_MAX`] lines each are 4,096 lines, four times
/// [`INFLIGHT_COMMANDS_MAX`]: the commands' own permits stay the limit in normal use.
/// Option not taken: a slot per caller, fairer but another map to keep.
pub const BATCHES_INFLIGHT_MAX: usize = 64;

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
    /// Slots of [`BATCHES_INFLIGHT_MAX`].
    batches: Arc<Semaphore>,
    batch_commands_max: usize,
}

impl LedgerService {
    pub fn new(handler: Handler) -> Self {
        Self {
            registrations: Arc::new(authz::Registrations::new(handler.log().clone())),
            handler,
            inflight: Arc::new(Semaphore::new(INFLIGHT_COMMANDS_MAX)),
            batches: Arc::new(Semaphore::new(BATCHES_INFLIGHT_MAX)),
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
        // Batches not started yet are refused at once rather than start only to have
        // every line refused.
        self.batches.close();
    }

    /// Execute one converted command. The handler runs in its own task, so a client
    /// that hangs up cannot cancel a command half way (between its transaction and a
    /// receipt); the in-flight permit travels with it.
    async fn execute(
        &self,
        caller: &Caller,
        command: Result<Command, Rejection>,
    ) -> Result<Outcome, Described> {
        let command = self.admit(caller, command).await?;
        let outside = may_write_outside(caller, &command);
        let result = self.execute_authorized(command).await;
        self.as_seen_by(caller, outside, result).await
    }

    /// `result` as `caller` may see it. A platform may write some accounts outside its
    /// regions (a deposit or no-show through its own organisation, the correction of
    /// a transaction it could make), but the refusal of a rule there described the
    /// account's state: the transaction an interval overlaps (another platform's,
    /// which let a probe map another tenant's volunteer's service), the hours already
    /// recorded that day, the balance a reversal would overdraw. For such an account a
    /// refusal of a rule (`FAILED_PRECONDITION`) keeps its code and reason and leaves
    /// the details out; the account's own platform sees them in full.
    async fn as_seen_by(
        &self,
        caller: &Caller,
        outside: Option<AccountId>,
        result: Result<Outcome, Described>,
    ) -> Result<Outcome, Described> {
        let (Err(refused), Some(account)) = (&result, outside) else {
            return result;
        };
        let Role::Platform {
            regions,
            organisations,
        } = &caller.role
        else {
            return result;
        };
        if refused.code != Code::FailedPrecondition
            || authz::platform_covers_account(&self.registrations, regions, organisations, &account)
                .await
        {
            return result;
        }
        Err(Described {
            message: format!(
                "refused by the rule {}: {account} is outside your regions, so the details \
                 of its record are left out; its own platform sees them",
                refused.reason
            ),
            ..refused.clone()
        })
    }

    /// A converted command the caller may send, or why not: refused at the edge (bad
    /// input, logged by [`convert_logged`] where the request was converted) or out of
    /// the caller's scope.
    async fn admit(
        &self,
        caller: &Caller,
        command: Result<Command, Rejection>,
    ) -> Result<Command, Described> {
        let command = command.map_err(|r| describe_rejection(&r))?;
        authz::require_command(&self.registrations, &self.handler, caller, &command).await?;
        Ok(command)
    }

    /// [`Self::execute`] in the calling task: for the lines of a batch, whose whole
    /// run is already one task of its own (`submit_batch`), so a hang-up cannot cut a
    /// line half way either.
    async fn execute_here(
        &self,
        caller: &Caller,
        command: Result<Command, Rejection>,
    ) -> Result<Outcome, Described> {
        let command = self.admit(caller, command).await?;
        let outside = may_write_outside(caller, &command);
        let permit = self.permit().await?;
        let result = run_command(self.handler.clone(), command, permit)
            .await
            .map_err(|e| describe(&e));
        self.as_seen_by(caller, outside, result).await
    }

    /// One of the [`INFLIGHT_COMMANDS_MAX`] permits, or `UNAVAILABLE` once the server
    /// is draining.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, Described> {
        self.inflight.clone().acquire_owned().await.map_err(|_| {
            crate::status::shutting_down(
                "retry with the same request id on another instance or later",
            )
        })
    }

    /// The registrations cache the scope checks share.
    pub(crate) fn registrations(&self) -> &authz::Registrations {
        &self.registrations
    }

    /// The handler, whose account states the scope checks of corrections read.
    pub(crate) fn handler(&self) -> &Handler {
        &self.handler
    }

    /// Execute a command the caller has been authorised for (partner services check
    /// their own rules first).
    pub(crate) async fn execute_authorized(&self, command: Command) -> Result<Outcome, Described> {
        let permit = self.permit().await?;
        // Boxed: the handler's future is a few KiB, and a task moves its future (and
        // later its output, in a stage as large as the future) by value several times:
        // into the task cell, through each stage change, out to the join handle. A box
        // makes each move a pointer's worth for one allocation. Callgrind counted
        // ~2,000 instructions of `memcpy` per batched deposit in those moves.
        let task = tokio::spawn(Box::pin(run_command(self.handler.clone(), command, permit)));
        match task.await {
            Ok(result) => result.map_err(|e| describe(&e)),
            Err(join) => Err(task_failed(join)),
        }
    }

    /// Commands are for platforms (in their scope) and administrators.
    async fn rpc<T: convert::RawRequestId>(
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
        self.execute(&caller, convert_logged(request.into_inner(), convert))
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

    /// Lines run as if in order (a line may depend on an earlier one, e.g. register
    /// then deposit); a refused line is reported in its slot and the rest still run.
    /// Lines that touch no common account run concurrently, at most
    /// [`BATCH_COMMANDS_INFLIGHT_MAX`] at once, in waves; see [`batch_dependencies`]
    /// and [`batch_waves`].
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
        let lines: Vec<Result<Command, Rejection>> = commands
            .into_iter()
            .map(|c| convert_logged(c, convert::batch_command))
            .collect();
        // The whole batch runs in one task of its own, its lines in that task: a client
        // that hangs up cannot cut a line half way (the reason a unary command gets a
        // task, `execute`), and the batch's lines pay no task each. Option not taken:
        // a task per line, which cost a spawn, a join and their wake-ups per line
        // (docs/benchmarks.md, "Thirteenth session"). A hang-up therefore no longer
        // stops the lines not started yet; the client's retry with the same request
        // ids gets their results.
        let slot = self.batches.clone().acquire_owned().await.map_err(|_| {
            crate::status::shutting_down(
                "retry with the same request ids on another instance or later",
            )
            .into_status()
        })?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            let results = this.run_batch(&caller, lines).await;
            drop(slot);
            results
        });
        match task.await {
            Ok(results) => Ok(Response::new(pb::SubmitBatchResponse { results })),
            Err(join) => Err(task_failed(join).into_status()),
        }
    }
}

/// The account a command writes if `caller` is a platform and may send it for an
/// account outside its regions (`authz::require_command`), whose refusal may then need
/// its details left out (`as_seen_by`); None for every other caller and command (no
/// copy on their path).
fn may_write_outside(caller: &Caller, command: &Command) -> Option<AccountId> {
    if !matches!(caller.role, Role::Platform { .. }) {
        return None;
    }
    match command {
        Command::DepositHours(_)
        | Command::RecordNoShow(_)
        | Command::ReverseTransaction(_)
        | Command::RateService(_) => Some(command.target().clone()),
        _ => None,
    }
}

/// Handle one authorised command, holding its in-flight permit until it is done.
async fn run_command(
    handler: Handler,
    command: Command,
    permit: OwnedSemaphorePermit,
) -> Result<Outcome, CommandError> {
    // Every line logged while the command is handled (here, in the handler, in the
    // log) carries its request id.
    let span = tracing::info_span!(
        "command",
        request_id = %command.request_id(),
        command = command.name()
    );
    async move {
        let name = command.name();
        let result = handler.execute(&command).await;
        // The request id is borrowed, not copied: with INFO off (a loaded server's
        // usual level) these lines cost a level check and no allocation.
        let request_id = command.request_id();
        match &result {
            Ok(o) => {
                tracing::info!(command = name, %request_id, transaction = %o.transaction, position = %o.position, replayed = o.replayed, "command executed")
            }
            Err(e) => tracing::info!(command = name, %request_id, "command refused: {e}"),
        }
        // Release the log handle before the permit: once `drain` holds every permit,
        // no command holds the log any more. (A batch's task may still hold its
        // service's handle until its remaining lines are refused; holding a handle
        // writes nothing, and the log's `close` does not wait for handles.)
        drop(handler);
        drop(permit);
        result
    }
    .instrument(span)
    .await
}

/// A batch line whose command panicked: logged like a task that did.
fn line_panicked(panic: &(dyn std::any::Any + Send)) -> Described {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    tracing::error!("batch line panicked: {what}");
    command_failed()
}

/// A command's (or a batch's) task that panicked or was cancelled.
fn task_failed(join: tokio::task::JoinError) -> Described {
    tracing::error!("command task failed: {join}");
    command_failed()
}

/// What a client hears of a command that failed inside the server.
fn command_failed() -> Described {
    Described {
        code: Code::Internal,
        reason: "INTERNAL",
        message: "the command failed inside the server; nothing is known to be written. Retry with the same request id".into(),
        metadata: Default::default(),
    }
}

/// Convert a command request, and log a refusal at the edge with the request id the
/// client sent (checked or not: it is all there is to find the refusal by). The id
/// is copied before the conversion takes the request: into a `CompactString`, in
/// place up to 24 bytes, so the batch path's lines pay no allocation for it. Option
/// not taken: conversions that borrow their requests, which would need no copy at
/// all but change every conversion and its helpers' signatures (`convert.rs`).
fn convert_logged<T: convert::RawRequestId>(
    request: T,
    convert: fn(T) -> Result<Command, Rejection>,
) -> Result<Command, Rejection> {
    let raw = compact_str::CompactString::new(request.raw_request_id());
    convert(request).inspect_err(|r| {
        tracing::info!(
            request_id = %convert::logged_request_id(&raw),
            reason = r.reason(),
            "command refused at the edge: {r}"
        );
    })
}

impl LedgerService {
    /// Run a batch's lines as if in order, one result per line.
    async fn run_batch(
        &self,
        caller: &Caller,
        lines: Vec<Result<Command, Rejection>>,
    ) -> Vec<pb::BatchResult> {
        let deps = batch_dependencies(&lines.iter().map(line_access).collect::<Vec<_>>());
        let waves = batch_waves(&deps);
        let mut lines: Vec<Option<Result<Command, Rejection>>> =
            lines.into_iter().map(Some).collect();
        let mut results: Vec<Option<pb::BatchResult>> = vec![None; lines.len()];
        // A wave's lines depend only on earlier waves, so each wave runs as a whole
        // after the one before, its lines concurrently. Option not taken: one shared
        // future per line awaited by the lines that depend on it, which starts a line
        // the moment its own predecessors finish but cost ~8 % of the server's CPU in
        // wake-ups of those shared futures (docs/benchmarks.md, "End to end").
        for wave in waves {
            let runs = wave.into_iter().map(|i| {
                let line = lines[i].take().expect("each line is in exactly one wave");
                // A line that panics (a broken invariant: the handler asserts rather
                // than write a wrong event) ends as that line's INTERNAL, as it did in a
                // task of its own; the batch's other lines, in flight or to come, and
                // the results of earlier waves are not lost with it.
                //
                // The line's command runs boxed: its future is a few KiB (the handler's
                // is ~2 KiB), and every move of this block, from the iterator into
                // `buffer_unordered`'s task list, copied all of it, though until it
                // first runs the block holds only its line. Boxed on the first poll,
                // the moves copy the line (~700 instructions of `memcpy` per batched
                // deposit before; docs/benchmarks.md, "Seventeenth session").
                async move {
                    let run = Box::pin(
                        std::panic::AssertUnwindSafe(self.execute_here(caller, line))
                            .catch_unwind(),
                    );
                    let result = match run.await {
                        Ok(result) => result,
                        Err(panic) => Err(line_panicked(&*panic)),
                    };
                    (i, batch_result(result))
                }
            });
            let mut done =
                futures::stream::iter(runs).buffer_unordered(BATCH_COMMANDS_INFLIGHT_MAX);
            while let Some((i, result)) = done.next().await {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every line ran in its wave"))
            .collect()
    }
}

fn batch_result(result: Result<Outcome, Described>) -> pb::BatchResult {
    let result = match result {
        Ok(o) => pb::batch_result::Result::Ok(convert::command_result(&o)),
        Err(d) => pb::batch_result::Result::Error(pb::CommandError {
            code: d.code as i32,
            message: d.message,
            reason: d.reason.to_owned(),
            metadata: d.metadata,
        }),
    };
    pb::BatchResult {
        result: Some(result),
    }
}

/// What a batch line may read and write, for ordering it against the other lines.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Access<K> {
    /// State the line's decision reads but never changes.
    reads: Vec<K>,
    /// State the line may change (its stream, receipt receivers) or claim (its request
    /// id, so that two lines with one request id keep their order's outcome).
    writes: Vec<K>,
    /// The line waits for every earlier line and every later line waits for it.
    barrier: bool,
}

// By hand: the derive would require `K: Default`.
impl<K> Default for Access<K> {
    fn default() -> Self {
        Self {
            reads: Vec::new(),
            writes: Vec::new(),
            barrier: false,
        }
    }
}

/// What a line conflicts on: an account's state, or a request id. The request id
/// stands for the event id the line would append, which is derived from it alone
/// (`event_id_for_request`): equal ids, equal event ids. Option not taken: keying on
/// the event id itself, which hashed each line's request id a second time (the
/// handler derives it again), ~1,500 instructions per line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(AccountId),
    Request(RequestId),
}

/// A line's access; a line refused at the edge touches nothing.
fn line_access(line: &Result<Command, Rejection>) -> Access<Key> {
    let Ok(command) = line else {
        return Access::default();
    };
    let mut writes = vec![
        Key::Account(command.target().clone()),
        Key::Request(command.request_id().clone()),
    ];
    // Receipts credit these accounts' streams after the line's own append.
    match command {
        Command::TransferHours(c) => writes.push(Key::Account(c.to.clone())),
        Command::DonateHours(c) => writes.push(Key::Account(c.project.clone())),
        _ => {}
    }
    Access {
        reads: command
            .reference()
            .map(|id| Key::Account(id.clone()))
            .into_iter()
            .collect(),
        writes,
        // A reversal may credit, by receipt, whichever account the reversed transaction
        // debited, which is known only from the log: order it against everything.
        // Option not taken: reading the original transaction to find that account,
        // one more read per reversal for a command that is rare in bulk files.
        barrier: matches!(command, Command::ReverseTransaction(_)),
    }
}

/// For each line, the earlier lines it must wait for so that the batch has the outcome
/// of running its lines in order: the last earlier writer of anything it reads or
/// writes (read-after-write, write-after-write), every earlier reader since that
/// writer of anything it writes (write-after-read), and the last barrier. Lines with
/// nothing in common run concurrently; a decision only reads the states it names, so
/// their order cannot change either outcome.
fn batch_dependencies<K: Clone + Eq + Hash>(lines: &[Access<K>]) -> Vec<Vec<usize>> {
    // foldhash, not SipHash: a batch of 100 deposits hashes ~300 account ids here;
    // still seeded, as the ids come from the caller.
    // Sized for the usual line (one stream and one event id written, one account
    // read), so that a batch's maps do not regrow and rehash as they fill.
    let mut last_writer: HashMap<K, usize, RandomState> =
        HashMap::with_capacity_and_hasher(2 * lines.len(), RandomState::default());
    let mut readers: HashMap<K, Vec<usize>, RandomState> =
        HashMap::with_capacity_and_hasher(lines.len(), RandomState::default());
    let mut barrier: Option<usize> = None;
    // Lines since the last barrier: what the next barrier waits for.
    let mut since_barrier: Vec<usize> = Vec::new();
    let mut deps = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let mut wait: Vec<usize> = barrier.into_iter().collect();
        if line.barrier {
            wait.append(&mut since_barrier);
            last_writer.clear();
            readers.clear();
            barrier = Some(i);
        } else {
            for k in &line.reads {
                if line.writes.contains(k) {
                    continue;
                }
                wait.extend(last_writer.get(k));
            }
            for k in &line.writes {
                wait.extend(last_writer.get(k));
                wait.extend(readers.get(k).into_iter().flatten());
            }
            for k in &line.reads {
                if !line.writes.contains(k) {
                    readers.entry(k.clone()).or_default().push(i);
                }
            }
            for k in &line.writes {
                last_writer.insert(k.clone(), i);
                readers.remove(k);
            }
            if line.reads.is_empty() && line.writes.is_empty() {
                // Refused at the edge: depends on nothing, and nothing on it.
                deps.push(Vec::new());
                continue;
            }
            since_barrier.push(i);
        }
        wait.sort_unstable();
        wait.dedup();
        deps.push(wait);
    }
    deps
}

/// The lines grouped into waves, in order: a line's wave is one past the latest wave of
/// the lines it waits for ([`batch_dependencies`]), so running the waves one after
/// another, each wave's lines concurrently, respects every dependency.
fn batch_waves(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut wave_of: Vec<usize> = Vec::with_capacity(deps.len());
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, wait) in deps.iter().enumerate() {
        let wave = wait
            .iter()
            .map(|&d| {
                assert!(d < i, "a line waits only for earlier lines");
                wave_of[d] + 1
            })
            .max()
            .unwrap_or(0);
        wave_of.push(wave);
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(i);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `f` logs at INFO, as the text format writes it.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("not poisoned").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("the log is text")
    }

    /// Found by an operator's probe: a command refused at the edge (here for an amount
    /// over the per-entry maximum) was logged without its request id, unary or as a
    /// batch line, so the refusal could not be found by the id the client had. A raw
    /// id is logged as sent, but cut and with control characters escaped: it has not
    /// been checked, and a line break in it must not start a forged log line.
    #[test]
    fn a_refusal_at_the_edge_is_logged_with_the_request_id_sent() {
        let spend = |id: &str| pb::SpendHoursRequest {
            request_id: id.into(),
            volunteer_id: "v1".into(),
            purpose: pb::SpendPurpose::Other as i32,
            counterparty_id: "p".into(),
            hours: "100000".into(),
            memo: String::new(),
        };
        let log = logged(|| {
            assert!(convert_logged(spend("json-3"), convert::spend_hours).is_err());
        });
        assert!(log.contains("request_id=json-3"), "{log}");
        assert!(log.contains("AMOUNT_TOO_LARGE"), "{log}");
        let line = pb::Command {
            command: Some(pb::command::Command::SpendHours(spend("json-b3"))),
        };
        let log = logged(|| {
            assert!(convert_logged(line, convert::batch_command).is_err());
        });
        assert!(log.contains("request_id=json-b3"), "{log}");
        let forged = format!("a\nINFO forged {}", "x".repeat(500));
        let log = logged(|| {
            assert!(convert_logged(spend(&forged), convert::spend_hours).is_err());
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("request_id=a\\nINFO forged x"), "{log}");
        assert!(!log.contains(&"x".repeat(200)), "cut: {log}");
    }

    fn line(reads: &[&'static str], writes: &[&'static str]) -> Access<&'static str> {
        Access {
            reads: reads.to_vec(),
            writes: writes.to_vec(),
            barrier: false,
        }
    }

    fn barrier() -> Access<&'static str> {
        Access {
            barrier: true,
            ..Access::default()
        }
    }

    #[test]
    fn a_line_runs_in_the_wave_after_its_latest_dependency() {
        // 0 and 1 are independent; 2 waits for 0; 3 waits for 1 and 2; 4 for nothing.
        let deps = vec![vec![], vec![], vec![0], vec![1, 2], vec![]];
        assert_eq!(batch_waves(&deps), vec![vec![0, 1, 4], vec![2], vec![3]]);
        assert!(batch_waves(&[]).is_empty());
    }

    #[test]
    fn independent_lines_wait_for_nothing() {
        let lines = [
            line(&["org"], &["v1"]),
            line(&["org"], &["v2"]),
            line(&[], &["v3"]),
        ];
        let none: Vec<usize> = Vec::new();
        assert_eq!(
            batch_dependencies(&lines),
            vec![none.clone(), none.clone(), none]
        );
    }

    #[test]
    fn a_line_waits_for_the_last_writer_and_the_readers_since() {
        let lines = [
            line(&[], &["org"]),          // 0: register the organisation
            line(&["org"], &["v1"]),      // 1: deposit for v1 at org (reads org)
            line(&["org"], &["v2"]),      // 2: deposit for v2 at org
            line(&["v2"], &["v1", "v2"]), // 3: v1 transfers to v2 (receipt on v2)
            line(&["org"], &["v2"]),      // 4: v2 spends at org
            line(&[], &["org"]),          // 5: close org: after the reads 1, 2, 4
            line(&[], &[]),               // 6: refused at the edge
            line(&["v1"], &["v3"]),       // 7: reads v1, last written by 3
        ];
        assert_eq!(
            batch_dependencies(&lines),
            vec![
                vec![],
                vec![0],
                vec![0],
                vec![1, 2],
                vec![0, 3],
                vec![0, 1, 2, 4],
                vec![],
                vec![3],
            ]
        );
    }

    #[test]
    fn a_barrier_waits_for_every_earlier_line_and_every_later_line_for_it() {
        let lines = [
            line(&[], &["v1"]),
            line(&[], &["v2"]),
            barrier(),
            line(&[], &["v1"]),
            line(&[], &["v3"]),
            barrier(),
            line(&[], &["v4"]),
        ];
        assert_eq!(
            batch_dependencies(&lines),
            vec![
                vec![],
                vec![],
                vec![0, 1],
                vec![2],
                vec![2],
                vec![2, 3, 4],
                vec![5]
            ]
        );
    }
}

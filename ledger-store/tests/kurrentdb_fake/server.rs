//! An in-process stand-in for a KurrentDB node's `Streams` gRPC service, good enough
//! to drive the real `kurrentdb` client end to end: append with expected versions and
//! KurrentDB-style idempotency, stream and `$all` reads in both directions with the
//! event-type filter, and catch-up subscriptions. It exists because no KurrentDB
//! server can be installed where CI runs; it checks the backend's use of the client
//! and its retry, claim and resubscription logic, not KurrentDB itself (the real
//! server is checked by `kurrentdb_conformance.rs` when `TIMEBANK_KURRENTDB_URL` is
//! set).
//!
//! To exercise the backend's defensive paths, the stand-in is deliberately on the
//! hostile side of what the real server does: `$all` reads and subscriptions *include*
//! the event at their start position, system events are interleaved, several events
//! of one append share a commit position, and faults can be injected (a committed
//! append whose answer is lost, subscriptions dropped as at a leader change).

// tonic's Status is the error type of every gRPC handler; boxing it here would only
// add noise to a test stand-in.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, Notify};
use tonic::{Request, Response, Status, Streaming};

use super::proto::event_store::client::streams::{
    self as s, append_req, append_resp, read_req, read_resp, streams_server,
};
use super::proto::event_store::client::{self as c, uuid as cuuid};

#[derive(Clone)]
struct Ev {
    stream: Vec<u8>,
    revision: u64,
    id: uuid::Uuid,
    metadata: HashMap<String, String>,
    custom_metadata: Vec<u8>,
    data: Vec<u8>,
    commit: u64,
    prepare: u64,
}

impl Ev {
    fn pos(&self) -> (u64, u64) {
        (self.commit, self.prepare)
    }

    fn event_type(&self) -> &str {
        self.metadata.get("type").map_or("", |t| t.as_str())
    }

    fn to_read(&self) -> read_resp::ReadEvent {
        read_resp::ReadEvent {
            event: Some(read_resp::read_event::RecordedEvent {
                id: Some(uuid_to_proto(self.id)),
                stream_identifier: Some(c::StreamIdentifier {
                    stream_name: self.stream.clone(),
                }),
                stream_revision: self.revision,
                prepare_position: self.prepare,
                commit_position: self.commit,
                metadata: self.metadata.clone(),
                custom_metadata: self.custom_metadata.clone(),
                data: self.data.clone(),
            }),
            link: None,
            position: Some(read_resp::read_event::Position::CommitPosition(self.commit)),
        }
    }
}

#[derive(Default)]
struct State {
    log: Vec<Ev>,
    streams: HashMap<Vec<u8>, Vec<usize>>,
    next_commit: u64,
}

impl State {
    fn current(&self, stream: &[u8]) -> Option<u64> {
        self.streams.get(stream).map(|v| v.len() as u64 - 1)
    }

    fn write(
        &mut self,
        stream: &[u8],
        msgs: Vec<append_req::ProposedMessage>,
    ) -> (u64, (u64, u64)) {
        // One commit position per append, prepares 10 apart: as in KurrentDB, events
        // of one write can share a commit position and differ by prepare position.
        let commit = self.next_commit;
        self.next_commit += 1000;
        let mut last = (0, (0, 0));
        for (i, m) in msgs.into_iter().enumerate() {
            let revision = self.current(stream).map_or(0, |v| v + 1);
            let mut metadata = m.metadata;
            metadata.insert("created".into(), "638000000000000000".into());
            let ev = Ev {
                stream: stream.to_vec(),
                revision,
                id: m.id.map_or(uuid::Uuid::nil(), uuid_from_proto),
                metadata,
                custom_metadata: m.custom_metadata,
                data: m.data,
                commit,
                prepare: commit + 10 * i as u64,
            };
            last = (revision, ev.pos());
            self.streams
                .entry(stream.to_vec())
                .or_default()
                .push(self.log.len());
            self.log.push(ev);
        }
        last
    }

    /// KurrentDB's idempotency: the events at `from..` carry exactly these ids.
    fn matches_at(
        &self,
        stream: &[u8],
        from: u64,
        ids: &[uuid::Uuid],
    ) -> Option<(u64, (u64, u64))> {
        let idx = self.streams.get(stream)?;
        let mut last = None;
        for (k, id) in ids.iter().enumerate() {
            let ev = &self.log[*idx.get(usize::try_from(from).ok()? + k)?];
            if ev.id != *id {
                return None;
            }
            last = Some((ev.revision, ev.pos()));
        }
        last
    }
}

/// Faults the tests inject.
#[derive(Default)]
pub struct Faults {
    /// Commit the next append, then answer "unavailable" as if the leader died.
    pub lose_next_append_reply: AtomicBool,
    /// Bumped to end every open subscription with "unavailable".
    pub subscription_generation: AtomicU64,
    /// Appends received (to count round trips).
    pub appends: AtomicU64,
}

#[derive(Clone)]
pub struct FakeKurrent {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    pub faults: Arc<Faults>,
}

impl FakeKurrent {
    fn new() -> Self {
        let mut state = State {
            next_commit: 1000,
            ..State::default()
        };
        // System events are always there in a real database.
        let sys = |t: &str| append_req::ProposedMessage {
            id: Some(uuid_to_proto(uuid::Uuid::new_v4())),
            metadata: HashMap::from([
                ("type".to_owned(), t.to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]),
            custom_metadata: Vec::new(),
            data: b"{}".to_vec(),
        };
        state.write(b"$stats-127.0.0.1:2113", vec![sys("$statsCollected")]);
        state.write(b"$$$user-admin", vec![sys("$metadata")]);
        Self {
            state: Arc::new(Mutex::new(state)),
            notify: Arc::new(Notify::new()),
            faults: Arc::new(Faults::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A system event in the middle of the ledger's data, as the server writes them.
    pub fn write_system_event(&self) {
        let msg = append_req::ProposedMessage {
            id: Some(uuid_to_proto(uuid::Uuid::new_v4())),
            metadata: HashMap::from([
                ("type".to_owned(), "$statsCollected".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]),
            custom_metadata: Vec::new(),
            data: b"{}".to_vec(),
        };
        self.lock().write(b"$stats-127.0.0.1:2113", vec![msg]);
        self.notify.notify_waiters();
    }

    /// End every open subscription, as a leader change does.
    pub fn drop_subscriptions(&self) {
        self.faults
            .subscription_generation
            .fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// (stream, content-type) of every event, for checking what was stored.
    pub fn stored(&self) -> Vec<(String, String, String)> {
        self.lock()
            .log
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.stream).into_owned(),
                    e.event_type().to_owned(),
                    e.metadata.get("content-type").cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

fn uuid_to_proto(id: uuid::Uuid) -> c::Uuid {
    let n = id.as_u128();
    c::Uuid {
        value: Some(cuuid::Value::Structured(cuuid::Structured {
            most_significant_bits: (n >> 64) as i64,
            least_significant_bits: n as i64,
        })),
    }
}

fn uuid_from_proto(u: c::Uuid) -> uuid::Uuid {
    match u.value {
        Some(cuuid::Value::Structured(s)) => uuid::Uuid::from_u128(
            ((s.most_significant_bits as u64 as u128) << 64)
                | s.least_significant_bits as u64 as u128,
        ),
        Some(cuuid::Value::String(s)) => s.parse().unwrap_or_default(),
        None => uuid::Uuid::nil(),
    }
}

/// The event-type / stream filter of a read, as the client sends it.
#[derive(Clone)]
enum Filter {
    None,
    ExcludeSystemTypes,
    TypePrefixes(Vec<String>),
}

impl Filter {
    fn parse(f: Option<read_req::options::FilterOption>) -> Result<Self, Status> {
        use read_req::options::filter_options::Filter as F;
        use read_req::options::FilterOption;
        match f {
            None | Some(FilterOption::NoFilter(_)) => Ok(Self::None),
            Some(FilterOption::Filter(o)) => match o.filter {
                Some(F::EventType(e)) if e.regex == "^[^\\$].*" => Ok(Self::ExcludeSystemTypes),
                Some(F::EventType(e)) if e.regex.is_empty() => Ok(Self::TypePrefixes(e.prefix)),
                _ => Err(Status::unimplemented(
                    "the fake supports only the filters the backend uses",
                )),
            },
        }
    }

    fn keeps(&self, e: &Ev) -> bool {
        match self {
            Self::None => true,
            Self::ExcludeSystemTypes => !e.event_type().starts_with('$'),
            Self::TypePrefixes(p) => p.iter().any(|p| e.event_type().starts_with(p.as_str())),
        }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<s::ReadResp, Status>> + Send>>;

fn content(c: read_resp::Content) -> Result<s::ReadResp, Status> {
    Ok(s::ReadResp { content: Some(c) })
}

#[tonic::async_trait]
impl streams_server::Streams for FakeKurrent {
    type ReadStream = ReadStream;
    type BatchAppendStream = Pin<Box<dyn Stream<Item = Result<s::BatchAppendResp, Status>> + Send>>;

    async fn read(&self, request: Request<s::ReadReq>) -> Result<Response<ReadStream>, Status> {
        use read_req::options::{all_options::AllOption, stream_options::RevisionOption};
        use read_req::options::{CountOption, StreamOption};
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("no options"))?;
        let backwards = o.read_direction == 1;
        let filter = Filter::parse(o.filter_option)?;
        let (tx, rx) = mpsc::channel(64);
        let out: ReadStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|m| (m, rx))
        }));
        match (o.stream_option, o.count_option) {
            (Some(StreamOption::Stream(so)), Some(CountOption::Count(n))) => {
                let name = so
                    .stream_identifier
                    .map(|s| s.stream_name)
                    .unwrap_or_default();
                let picked: Option<Vec<read_resp::ReadEvent>> = {
                    let st = self.lock();
                    st.streams.get(&name).map(|idx| {
                        let evs: Vec<&Ev> = idx.iter().map(|i| &st.log[*i]).collect();
                        let last = evs.len() as u64 - 1;
                        let n = n as usize;
                        match (so.revision_option, backwards) {
                            (Some(RevisionOption::Start(_)) | None, false) => {
                                evs.iter().take(n).map(|e| e.to_read()).collect()
                            }
                            (Some(RevisionOption::Revision(r)), false) => evs
                                .iter()
                                .skip(r as usize)
                                .take(n)
                                .map(|e| e.to_read())
                                .collect(),
                            (Some(RevisionOption::End(_)) | None, true) => {
                                evs.iter().rev().take(n).map(|e| e.to_read()).collect()
                            }
                            (Some(RevisionOption::Revision(r)), true) => evs
                                .iter()
                                .rev()
                                .skip(last.saturating_sub(r) as usize)
                                .filter(|e| e.revision <= r)
                                .take(n)
                                .map(|e| e.to_read())
                                .collect(),
                            _ => Vec::new(),
                        }
                    })
                };
                let Some(picked) = picked else {
                    let _ = tx
                        .send(content(read_resp::Content::StreamNotFound(
                            read_resp::StreamNotFound {
                                stream_identifier: Some(c::StreamIdentifier { stream_name: name }),
                            },
                        )))
                        .await;
                    return Ok(Response::new(out));
                };
                // Sent from a task: the response stream is only read once this
                // handler has returned.
                tokio::spawn(async move {
                    for e in picked {
                        let _ = tx.send(content(read_resp::Content::Event(e))).await;
                    }
                });
            }
            (Some(StreamOption::All(ao)), Some(CountOption::Count(n))) => {
                let from = match ao.all_option {
                    Some(AllOption::Position(p)) => Some((p.commit_position, p.prepare_position)),
                    _ => None,
                };
                let picked: Vec<read_resp::ReadEvent> = {
                    let st = self.lock();
                    let it: Box<dyn Iterator<Item = &Ev>> = if backwards {
                        // Inclusive of the start position: harsher than the real server.
                        Box::new(
                            st.log
                                .iter()
                                .rev()
                                .filter(move |e| from.is_none_or(|f| e.pos() <= f)),
                        )
                    } else {
                        Box::new(
                            st.log
                                .iter()
                                .filter(move |e| from.is_none_or(|f| e.pos() >= f)),
                        )
                    };
                    it.filter(|e| filter.keeps(e))
                        .take(n as usize)
                        .map(|e| e.to_read())
                        .collect()
                };
                // Sent from a task: the response stream is only read once this
                // handler has returned.
                tokio::spawn(async move {
                    for e in picked {
                        let _ = tx.send(content(read_resp::Content::Event(e))).await;
                    }
                });
            }
            (Some(StreamOption::All(ao)), Some(CountOption::Subscription(_))) => {
                let from = match ao.all_option {
                    Some(AllOption::Position(p)) => Some((p.commit_position, p.prepare_position)),
                    Some(AllOption::End(_)) => Some((u64::MAX, u64::MAX)),
                    _ => None,
                };
                tokio::spawn(subscribe(self.clone(), from, filter, tx));
            }
            _ => {
                return Err(Status::unimplemented(
                    "the fake supports stream and $all reads and $all subscriptions",
                ))
            }
        }
        Ok(Response::new(out))
    }

    async fn append(
        &self,
        request: Request<Streaming<s::AppendReq>>,
    ) -> Result<Response<s::AppendResp>, Status> {
        use append_req::options::ExpectedStreamRevision as X;
        use append_resp::wrong_expected_version as w;
        self.faults.appends.fetch_add(1, Ordering::SeqCst);
        let mut incoming = request.into_inner();
        let mut options = None;
        let mut msgs = Vec::new();
        while let Some(m) = incoming.message().await? {
            match m.content {
                Some(append_req::Content::Options(o)) => options = Some(o),
                Some(append_req::Content::ProposedMessage(p)) => msgs.push(p),
                None => {}
            }
        }
        let o = options.ok_or_else(|| Status::invalid_argument("no options"))?;
        let stream = o
            .stream_identifier
            .map(|s| s.stream_name)
            .unwrap_or_default();
        let ids: Vec<uuid::Uuid> = msgs
            .iter()
            .map(|m| m.id.clone().map_or(uuid::Uuid::nil(), uuid_from_proto))
            .collect();
        let expected = o.expected_stream_revision.unwrap_or(X::Any(c::Empty {}));
        let result = {
            let mut st = self.lock();
            let current = st.current(&stream);
            let idempotent = match expected {
                X::Revision(v) if current != Some(v) => Some(st.matches_at(&stream, v + 1, &ids)),
                X::NoStream(_) if current.is_some() => Some(st.matches_at(&stream, 0, &ids)),
                X::StreamExists(_) if current.is_none() => Some(None),
                X::Any(_) => {
                    let first = ids.first().and_then(|id| {
                        st.streams
                            .get(&stream)?
                            .iter()
                            .map(|i| &st.log[*i])
                            .find(|e| e.id == *id)
                            .map(|e| e.revision)
                    });
                    first.map(|r| st.matches_at(&stream, r, &ids))
                }
                _ => None,
            };
            match idempotent {
                Some(Some((rev, pos))) => Ok((rev, pos)),
                Some(None) => Err(current),
                None => Ok(st.write(&stream, msgs)),
            }
        };
        self.notify.notify_waiters();
        let result = match result {
            Ok((rev, (commit, prepare))) => append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(
                    append_resp::success::CurrentRevisionOption::CurrentRevision(rev),
                ),
                position_option: Some(append_resp::success::PositionOption::Position(
                    append_resp::Position {
                        commit_position: commit,
                        prepare_position: prepare,
                    },
                )),
            }),
            Err(current) => {
                append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                    current_revision_option_20_6_0: None,
                    expected_revision_option_20_6_0: None,
                    current_revision_option: Some(match current {
                        Some(v) => w::CurrentRevisionOption::CurrentRevision(v),
                        None => w::CurrentRevisionOption::CurrentNoStream(c::Empty {}),
                    }),
                    expected_revision_option: Some(match expected {
                        X::Revision(v) => w::ExpectedRevisionOption::ExpectedRevision(v),
                        X::NoStream(_) => w::ExpectedRevisionOption::ExpectedNoStream(c::Empty {}),
                        X::Any(_) => w::ExpectedRevisionOption::ExpectedAny(c::Empty {}),
                        X::StreamExists(_) => {
                            w::ExpectedRevisionOption::ExpectedStreamExists(c::Empty {})
                        }
                    }),
                })
            }
        };
        if matches!(result, append_resp::Result::Success(_))
            && self
                .faults
                .lose_next_append_reply
                .swap(false, Ordering::SeqCst)
        {
            return Err(Status::unavailable("leader lost after commit (injected)"));
        }
        Ok(Response::new(s::AppendResp {
            result: Some(result),
        }))
    }

    async fn delete(&self, _: Request<s::DeleteReq>) -> Result<Response<s::DeleteResp>, Status> {
        Err(Status::unimplemented("the ledger never deletes"))
    }

    async fn tombstone(
        &self,
        _: Request<s::TombstoneReq>,
    ) -> Result<Response<s::TombstoneResp>, Status> {
        Err(Status::unimplemented("the ledger never deletes"))
    }

    async fn batch_append(
        &self,
        _: Request<Streaming<s::BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        Err(Status::unimplemented("not used by the backend"))
    }
}

/// A catch-up subscription: confirmation, every matching event from `from`
/// (inclusive, to make the client's de-duplication matter), then live events.
async fn subscribe(
    fake: FakeKurrent,
    from: Option<(u64, u64)>,
    filter: Filter,
    tx: mpsc::Sender<Result<s::ReadResp, Status>>,
) {
    let generation = fake.faults.subscription_generation.load(Ordering::SeqCst);
    let confirm = read_resp::Content::Confirmation(read_resp::SubscriptionConfirmation {
        subscription_id: uuid::Uuid::new_v4().to_string(),
    });
    if tx.send(content(confirm)).await.is_err() {
        return;
    }
    let mut next = {
        let st = fake.lock();
        st.log
            .iter()
            .position(|e| from.is_none_or(|f| e.pos() >= f))
            .unwrap_or(st.log.len())
    };
    loop {
        let notified = fake.notify.notified();
        let batch: Vec<read_resp::ReadEvent> = {
            let st = fake.lock();
            let b = st.log[next..]
                .iter()
                .filter(|e| filter.keeps(e))
                .map(|e| e.to_read())
                .collect();
            next = st.log.len();
            b
        };
        for e in batch {
            if fake.faults.subscription_generation.load(Ordering::SeqCst) != generation {
                break;
            }
            if tx
                .send(content(read_resp::Content::Event(e)))
                .await
                .is_err()
            {
                return;
            }
        }
        if fake.faults.subscription_generation.load(Ordering::SeqCst) != generation {
            let _ = tx
                .send(Err(Status::unavailable("leader changed (injected)")))
                .await;
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

/// An accepted connection that acknowledges every segment at once.
///
/// The `kurrentdb` client does not set `TCP_NODELAY`, so a request written in two
/// pieces waits for the server's delayed ACK (40 ms on Linux) before its second piece
/// goes out: every round trip would take ~44 ms and the suite would crawl. Turning on
/// `TCP_QUICKACK` before each read (the kernel clears it again by itself) removes the
/// wait. This is a property of the test set-up only; see docs/operations.md.
struct QuickAck(tokio::net::TcpStream);

impl QuickAck {
    fn quickack(&self) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl tonic::transport::server::Connected for QuickAck {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = self.get_mut();
        me.quickack();
        Pin::new(&mut me.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Serve the fake on a loopback port; returns the connection string.
pub async fn start() -> (FakeKurrent, String) {
    let fake = FakeKurrent::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let service = streams_server::StreamsServer::new(fake.clone());
    let incoming = futures::stream::unfold(listener, |l| async move {
        let accepted = l.accept().await.map(|(tcp, _)| {
            let _ = tcp.set_nodelay(true);
            QuickAck(tcp)
        });
        Some((accepted, l))
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .expect("fake KurrentDB serves");
    });
    (fake, format!("kurrentdb://{addr}?tls=false"))
}

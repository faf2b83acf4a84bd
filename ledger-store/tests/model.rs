//! Model test: random sequences of appends, retries and reads, with the log closed and
//! reopened between steps, run against the embedded log and against `MemoryLog` (the
//! model). Every answer must be the same: results, errors, events and positions.

use futures::executor::block_on;
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::{
    AppendError, AppendResult, EventId, EventLog, ExpectedVersion, NewEvent, Position, ReadFrom,
    RecordedEvent, StreamName,
};
use ledger_store::{EmbeddedConfig, EmbeddedLog};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    Current,
    CurrentPlus(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: u8,
        expect: Expect,
        sizes: Vec<u16>,
    },
    /// Resend the n-th earlier append exactly (an idempotent retry).
    Retry {
        nth: usize,
    },
    /// Resend the n-th earlier append with its first event's data changed.
    RetryChanged {
        nth: usize,
    },
    ReadStream {
        stream: u8,
        from: u64,
        max: usize,
    },
    ReadAll {
        after: Option<usize>,
        max: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        1 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        3 => Just(Expect::Current),
        1 => (1u64..3).prop_map(Expect::CurrentPlus),
    ];
    prop_oneof![
        6 => (0u8..4, expect, prop::collection::vec(0u16..600, 1..5))
            .prop_map(|(stream, expect, sizes)| Op::Append { stream, expect, sizes }),
        2 => any::<usize>().prop_map(|nth| Op::Retry { nth }),
        1 => any::<usize>().prop_map(|nth| Op::RetryChanged { nth }),
        2 => (0u8..4, 0u64..12, 1usize..6).prop_map(|(stream, from, max)| Op::ReadStream { stream, from, max }),
        2 => (prop::option::of(any::<usize>()), 1usize..20).prop_map(|(after, max)| Op::ReadAll { after, max }),
        1 => Just(Op::Reopen),
    ]
}

fn name(s: u8) -> StreamName {
    StreamName::new(format!("account-{s}")).expect("valid")
}

/// Errors compared by kind and the values callers act on.
fn outcome(r: Result<AppendResult, AppendError>) -> Result<AppendResult, String> {
    r.map_err(|e| match e {
        AppendError::WrongExpectedVersion { current, .. } => {
            format!("wrong version, current {current}")
        }
        AppendError::EventIdReused { id } => format!("reused {id}"),
        other => format!("{other}"),
    })
}

fn config() -> EmbeddedConfig {
    // 4 KiB segments: any generated append fits (at most 4 x 600 bytes of data), a few
    // appends fill one, so rollovers and reopens interleave.
    EmbeddedConfig {
        segment_bytes_max: 4096,
        ..EmbeddedConfig::default()
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EmbeddedLog::open(dir.path(), config()).expect("open");
    let model = MemoryLog::new();
    let mut sent: Vec<(StreamName, Vec<NewEvent>)> = Vec::new();
    let mut positions: Vec<Position> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append {
                stream,
                expect,
                sizes,
            } => {
                let s = name(stream);
                let current = block_on(model.read_stream(&s, 0, 4096))
                    .expect("model")
                    .len() as u64;
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::Current => ExpectedVersion::from_current(current.checked_sub(1)),
                    Expect::CurrentPlus(k) => ExpectedVersion::Exact(current + k),
                };
                let events: Vec<NewEvent> = sizes
                    .iter()
                    .map(|&n| NewEvent {
                        id: EventId::new_random(),
                        event_type: "Model.v1".into(),
                        data: vec![b'd'; n as usize],
                        metadata: format!("step {step}").into_bytes(),
                    })
                    .collect();
                let want = outcome(model.append_now(&s, expected, events.clone()));
                let got = outcome(log.append_blocking(&s, expected, events.clone()));
                assert_eq!(got, want, "step {step}: append");
                if let Ok(r) = &want {
                    positions.extend(&r.positions);
                }
                sent.push((s, events));
            }
            Op::Retry { nth } | Op::RetryChanged { nth } if !sent.is_empty() => {
                let (s, mut events) = sent[nth % sent.len()].clone();
                if matches!(op, Op::RetryChanged { .. }) {
                    events[0].data.push(b'!');
                }
                let want = outcome(model.append_now(&s, ExpectedVersion::Any, events.clone()));
                let got = outcome(log.append_blocking(&s, ExpectedVersion::Any, events));
                assert_eq!(got, want, "step {step}: retry");
                if let Ok(r) = &want {
                    for p in &r.positions {
                        if !positions.contains(p) {
                            positions.push(*p);
                        }
                    }
                }
            }
            Op::Retry { .. } | Op::RetryChanged { .. } => {}
            Op::ReadStream { stream, from, max } => {
                let s = name(stream);
                let want: Vec<RecordedEvent> =
                    block_on(model.read_stream(&s, from, max)).expect("model");
                let got = block_on(log.read_stream(&s, from, max)).expect("read_stream");
                assert_eq!(got, want, "step {step}: read_stream");
            }
            Op::ReadAll { after, max } => {
                let from = match after {
                    Some(k) if !positions.is_empty() => {
                        ReadFrom::After(positions[k % positions.len()])
                    }
                    _ => ReadFrom::Start,
                };
                let want = block_on(model.read_all(from, max)).expect("model");
                let got = block_on(log.read_all(from, max)).expect("read_all");
                assert_eq!(got, want, "step {step}: read_all");
            }
            Op::Reopen => {
                log.close();
                drop(log);
                log = EmbeddedLog::open(dir.path(), config()).expect("reopen");
                assert!(
                    log.recovery().torn_tail.is_none(),
                    "a clean close leaves no torn tail"
                );
            }
        }
        assert_eq!(
            block_on(log.head()).expect("head"),
            block_on(model.head()).expect("model head"),
            "step {step}: head"
        );
    }
    log.close();
    let report = ledger_store::verify(dir.path()).expect("the log verifies");
    assert_eq!(
        Some(report.events)
            .filter(|&n| n > 0)
            .map(|n| Position::from_sequence(n - 1)),
        report.head_position
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn embedded_log_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

//! Following `$all` across dropped connections and leader changes.
//!
//! A task holds one server subscription at a time, started from the last position it
//! delivered (or the caller's checkpoint). When the subscription drops for a reason
//! that can pass (connection lost, leader changed, server busy), it waits and
//! subscribes again from that position. Every event is compared with the last
//! delivered position before it is sent, so an event the server repeats after a
//! resubscription is never delivered twice, and since each new subscription starts
//! right after the last delivered event, none is skipped.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kurrentdb::{Client, StreamPosition, SubscribeToAllOptions, SubscriptionFilter};
use ledger_core::log::{EventStream, Position, ReadError, ReadFrom, RecordedEvent};
use tokio::sync::mpsc;

use super::convert;

/// Events buffered between the server and a slow consumer. The task waits when the
/// buffer is full (backpressure), and the server's subscription then falls behind and
/// catches up again by itself; 256 events smooth bursts without holding much memory.
pub const SUBSCRIPTION_BUFFER: usize = 256;

/// First pause before resubscribing: a leader change usually completes in about a
/// second.
pub const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Longest pause between resubscription attempts while the cluster is away, so a
/// projection resumes within seconds of the cluster coming back without hammering it.
pub const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The next backoff after `current`: doubled, capped.
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(RESUBSCRIBE_BACKOFF_MAX)
}

/// Whether an event at `position` is new to a consumer that last saw `last`.
pub fn is_new(position: Position, last: Option<Position>) -> bool {
    last.is_none_or(|l| position > l)
}

pub fn follow(
    client: Arc<Client>,
    runtime: &tokio::runtime::Handle,
    from: ReadFrom,
) -> EventStream {
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
    runtime.spawn(run(client, from, tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
}

async fn run(
    client: Arc<Client>,
    from: ReadFrom,
    tx: mpsc::Sender<Result<RecordedEvent, ReadError>>,
) {
    let mut last = match from {
        ReadFrom::Start => None,
        ReadFrom::After(p) => Some(p),
    };
    let mut backoff = RESUBSCRIBE_BACKOFF_MIN;
    loop {
        let start = last.map_or(StreamPosition::Start, |p| {
            StreamPosition::Position(convert::client_position(p))
        });
        let options = SubscribeToAllOptions::default()
            .position(start)
            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
        let mut sub = client.subscribe_to_all(&options).await;
        let error = loop {
            match sub.next().await {
                Ok(resolved) => {
                    backoff = RESUBSCRIBE_BACKOFF_MIN;
                    let Some(raw) = resolved.event.as_ref().or(resolved.link.as_ref()) else {
                        continue;
                    };
                    let wire = convert::wire_recorded(raw);
                    let position = convert::position(wire.position);
                    if !is_new(position, last) {
                        continue;
                    }
                    if !convert::is_ledger_event(&wire) {
                        // Claims and system events advance the resume point too: they
                        // are never delivered, so skipping them again is pointless.
                        last = Some(position);
                        continue;
                    }
                    let event = convert::recorded_event(wire);
                    let failed = event.is_err();
                    if tx.send(event).await.is_err() {
                        return; // the consumer is gone
                    }
                    if failed {
                        return; // a foreign event: the consumer decides what to do
                    }
                    last = Some(position);
                }
                Err(e) => break e,
            }
        };
        if !convert::is_transient(&error) {
            let _ = tx.send(Err(convert::read_error(error))).await;
            return;
        }
        tracing::warn!(error = %error, resume_after = ?last, "KurrentDB subscription dropped; resubscribing");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = next_backoff(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = RESUBSCRIBE_BACKOFF_MIN;
        let mut seen = vec![b];
        for _ in 0..10 {
            b = next_backoff(b);
            seen.push(b);
        }
        assert_eq!(seen[1], RESUBSCRIBE_BACKOFF_MIN * 2);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().expect("some"), RESUBSCRIBE_BACKOFF_MAX);
    }

    #[test]
    fn only_events_after_the_last_delivered_position_are_new() {
        let last = Position::new(100, 90);
        assert!(is_new(Position::new(0, 0), None));
        assert!(
            !is_new(Position::new(100, 90), Some(last)),
            "a repeat after resubscribing"
        );
        assert!(!is_new(Position::new(99, 99), Some(last)));
        assert!(is_new(Position::new(100, 91), Some(last)));
        assert!(is_new(Position::new(101, 0), Some(last)));
    }
}

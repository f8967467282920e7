//! A source's run under ATLEAST_ONCE and ATMOST_ONCE: publishing,
//! positions released in order, backpressure, and draining on shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_connectors::{ErrorKind, Position, SourceRecord};
use tokio_util::sync::CancellationToken;

use super::{status, until, values};
use crate::config::{Guarantee, SourceDef};
use crate::engine::TaskError;
use crate::engine::memory::{Memory, record};
use crate::engine::source_task::{self, Finished};
use crate::engine::status::ConnectorStatus;
use crate::engine::testkit::{OUTPUT, ScriptSource, Shared, SourceScript, source_def};

struct Case {
    broker: Memory,
    script: Shared<SourceScript>,
    def: SourceDef,
}

impl Case {
    /// A source of `batches` batches of `per` records each, the `i`th
    /// ending at checkpoint `i + 1`; it ends after them when `ends`.
    fn new(guarantee: Guarantee, batches: usize, per: usize, ends: bool) -> Self {
        let script = SourceScript::numbered(batches, per, ends);
        let def = source_def(guarantee, &script);
        Self {
            broker: Memory::default(),
            script,
            def,
        }
    }

    async fn run(
        &self,
        done: impl FnMut(&Memory) -> bool,
    ) -> (Result<Finished, TaskError>, Arc<ConnectorStatus>) {
        let status = status("source");
        let shutdown = CancellationToken::new();
        let mut source = ScriptSource(self.script.clone(), 0);
        let run = source_task::run(&self.def, &self.broker, &mut source, &status, &shutdown);
        let result = until(&self.broker, &shutdown, run, done).await;
        (result, status)
    }

    fn committed(&self) -> Vec<u64> {
        self.script.get().committed.iter().map(|p| p.0).collect()
    }
}

/// Whether `positions` only grow.
fn increasing(positions: &[u64]) -> bool {
    positions.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn records_are_published_in_order_and_their_positions_committed() {
    let case = Case::new(Guarantee::AtLeastOnce, 3, 2, true);
    let (result, status) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.broker.values(OUTPUT), values(0..6));
    let committed = case.committed();
    assert_eq!(committed.last(), Some(&3));
    assert!(increasing(&committed), "{committed:?}");
    assert_eq!(status.records_out.load(Ordering::Relaxed), 6);
}

#[tokio::test]
async fn a_position_waits_for_the_receipts_of_its_records() {
    let case = Case::new(Guarantee::AtLeastOnce, 1, 2, true);
    case.broker
        .faults(|f| f.hold_receipts = Some(OUTPUT.into()));
    let script = case.script.clone();
    let mut seen_held = false;
    let (result, _) = case
        .run(|b| {
            if !seen_held && b.stored(OUTPUT) == 2 {
                // Both sent, neither confirmed: nothing may be committed.
                assert!(script.get().committed.is_empty());
                seen_held = true;
                b.faults(|f| f.hold_receipts = None);
            }
            false
        })
        .await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert!(seen_held);
    assert_eq!(case.committed(), vec![1]);
}

#[tokio::test]
async fn at_least_once_a_failed_publish_fails_the_run_before_its_position() {
    let case = Case::new(Guarantee::AtLeastOnce, 2, 2, true);
    case.broker.faults(|f| f.publishes = 1);
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    assert!(case.committed().is_empty());
    // The next run resumes from the start, and publishes every record.
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    let published = case.broker.values(OUTPUT);
    assert_eq!(published[published.len() - 4..], values(0..4));
}

#[tokio::test]
async fn at_most_once_positions_commit_before_publishing_and_a_failure_is_dropped() {
    let case = Case::new(Guarantee::AtMostOnce, 2, 2, true);
    case.broker.faults(|f| f.publishes = 1);
    let (result, status) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.committed(), vec![1, 2]);
    assert_eq!(case.broker.values(OUTPUT), values(1..4));
    assert_eq!(status.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn the_source_is_not_read_while_its_sends_are_at_the_limit() {
    let mut case = Case::new(Guarantee::AtLeastOnce, 10, 1, true);
    case.def.producer.max_pending_messages = 3;
    case.broker
        .faults(|f| f.hold_receipts = Some(OUTPUT.into()));
    let script = case.script.clone();
    let (mut full_since, mut released) = (None, false);
    let (result, _) = case
        .run(|b| {
            if b.stored(OUTPUT) == 3 && full_since.is_none() {
                full_since = Some(tokio::time::Instant::now());
            }
            if let Some(at) = full_since
                && !released
                && at.elapsed() >= Duration::from_secs(1)
            {
                released = true;
                // A second later, still three: read no further.
                assert_eq!(b.stored(OUTPUT), 3);
                assert_eq!(script.get().reads, 3);
                b.faults(|f| f.hold_receipts = None);
            }
            false
        })
        .await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.broker.values(OUTPUT), values(0..10));
    assert_eq!(case.committed().last(), Some(&10));
}

#[tokio::test]
async fn shutdown_drains_the_sends_in_flight_and_commits_them() {
    let case = Case::new(Guarantee::AtLeastOnce, 5, 1, false);
    case.broker
        .faults(|f| f.hold_receipts = Some(OUTPUT.into()));
    let (result, _) = case
        .run(|b| {
            let sent = b.stored(OUTPUT) == 5;
            if sent {
                b.faults(|f| f.hold_receipts = None);
            }
            sent
        })
        .await;
    assert_eq!(result.expect("run"), Finished::Stopped);
    assert_eq!(case.committed().last(), Some(&5));
}

#[tokio::test]
async fn records_go_to_the_topic_they_name_in_the_connectors_namespace() {
    let case = Case::new(Guarantee::AtLeastOnce, 0, 0, true);
    case.script.get().push(
        vec![SourceRecord {
            topic: Some("orders".into()),
            ..record("o1", 1)
        }],
        Some(1),
    );
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    let orders = case.broker.visible("persistent://public/default/orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].producer, "public/default/source");
}

#[tokio::test]
async fn a_record_naming_a_topic_outside_the_namespace_is_refused() {
    let case = Case::new(Guarantee::AtLeastOnce, 0, 0, true);
    case.script.get().push(
        vec![SourceRecord {
            topic: Some("other/orders".into()),
            ..record("o1", 1)
        }],
        Some(1),
    );
    let (result, _) = case.run(|_| false).await;
    let Err(TaskError::Connector(e)) = result else {
        panic!("the run should fail: {result:?}");
    };
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains("holds a /"), "{e}");
    assert!(case.committed().is_empty());
}

#[tokio::test]
async fn a_record_naming_no_topic_needs_a_topic_name() {
    let mut case = Case::new(Guarantee::AtLeastOnce, 1, 1, true);
    case.def.topic = None;
    let (result, _) = case.run(|_| false).await;
    let Err(TaskError::Connector(e)) = result else {
        panic!("the run should fail: {result:?}");
    };
    assert!(e.to_string().contains("no topicName"), "{e}");
}

#[tokio::test]
async fn a_bare_checkpoint_is_committed_at_once() {
    let case = Case::new(Guarantee::AtLeastOnce, 0, 0, false);
    case.script.get().push(Vec::new(), Some(7));
    let script = case.script.clone();
    let (result, _) = case
        .run(move |_| script.get().committed == [Position(7)])
        .await;
    assert_eq!(result.expect("run"), Finished::Stopped);
    assert!(case.broker.visible(OUTPUT).is_empty());
}

/// The source contract: a read once begun is polled to its end, while the
/// receipts of the batch before it come in and its position is committed.
#[tokio::test]
async fn a_read_is_polled_to_its_end_while_receipts_come_in() {
    let case = Case::new(Guarantee::AtLeastOnce, 3, 2, true);
    let gate = Arc::new(tokio::sync::Notify::new());
    case.script.get().gate = Some((1, Arc::clone(&gate)));
    case.broker
        .faults(|f| f.hold_receipts = Some(OUTPUT.into()));
    let script = case.script.clone();
    let (mut released, mut opened) = (false, false);
    let (result, _) = case
        .run(|b| {
            // The second read waits at the gate; the first batch's
            // receipts come in meanwhile, and then its position is
            // committed, which opens the gate.
            if !released && script.get().at_gate {
                released = true;
                b.faults(|f| f.hold_receipts = None);
            }
            if !opened && script.get().committed.contains(&Position(1)) {
                opened = true;
                gate.notify_one();
            }
            false
        })
        .await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.broker.values(OUTPUT), values(0..6));
    assert_eq!(case.script.get().dropped_reads, 0);
}

#[tokio::test]
async fn records_whose_receipts_do_not_come_are_a_stall_and_their_receipts_end_it() {
    // GIVEN a source whose two records are sent and not confirmed
    let case = Case::new(Guarantee::AtLeastOnce, 1, 2, true);
    case.broker
        .faults(|f| f.hold_receipts = Some(OUTPUT.into()));
    let status = status("source");
    let shutdown = CancellationToken::new();
    let mut source = ScriptSource(case.script.clone(), 0);
    let run = source_task::run(&case.def, &case.broker, &mut source, &status, &shutdown);
    let watched = Arc::clone(&status);
    let mut seen_stalled = false;
    let result = until(&case.broker, &shutdown, run, |b| {
        let later = crate::engine::status::now_ms() + crate::engine::status::STALL_AFTER_MS;
        if !seen_stalled && b.stored(OUTPUT) == 2 {
            // THEN a minute on, the running source is stalled
            assert!(watched.stalled_for(later).is_some());
            seen_stalled = true;
            b.faults(|f| f.hold_receipts = None);
        }
        false
    })
    .await;
    // AND once the receipts come, it is not
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert!(seen_stalled);
    // (read as if it still ran: nothing is outstanding)
    status.set_state(crate::engine::status::State::Running);
    let later = crate::engine::status::now_ms() + crate::engine::status::STALL_AFTER_MS;
    assert_eq!(status.stalled_for(later), None);
}

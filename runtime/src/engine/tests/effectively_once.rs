//! A source under EFFECTIVELY_ONCE: fencing, transactions with their
//! markers, and recovery from every state a crash can leave.

use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::{ErrorKind, SourceRecord};
use tokio_util::sync::CancellationToken;

use super::{status, until, values};
use crate::config::{Guarantee, SourceDef};
use crate::engine::effectively_once::{self, Progress, offsets_topic};
use crate::engine::memory::{Memory, record};
use crate::engine::source_task::Finished;
use crate::engine::status::{ConnectorStatus, State};
use crate::engine::testkit::{OUTPUT, Shared, SourceScript, source_def};
use crate::engine::{TaskError, source_run};

struct Case {
    broker: Memory,
    script: Shared<SourceScript>,
    def: SourceDef,
}

impl Case {
    /// `batches` source transactions of `per` records, sequences 1, 2, …
    fn new(batches: usize, per: usize, ends: bool) -> Self {
        let script = SourceScript::numbered(batches, per, ends);
        let def = source_def(Guarantee::EffectivelyOnce, &script);
        Self {
            broker: Memory::default(),
            script,
            def,
        }
    }

    /// One run, as its supervisor makes it, stopped once `done` holds.
    async fn run(
        &self,
        done: impl FnMut(&Memory) -> bool,
    ) -> (Result<Finished, TaskError>, Arc<ConnectorStatus>) {
        let status = status("source");
        let shutdown = CancellationToken::new();
        let run = source_run(&self.def, &self.broker, &status, &shutdown);
        let result = until(&self.broker, &shutdown, run, done).await;
        (result, status)
    }

    /// One run, killed (dropped where it stands) once `done` holds.
    async fn crash_when(&self, done: impl FnMut(&Memory) -> bool) {
        let status = status("source");
        let shutdown = CancellationToken::new();
        tokio::select! {
            r = source_run(&self.def, &self.broker, &status, &shutdown) => {
                panic!("the run ended before the crash: {r:?}")
            }
            () = self.broker.until(done) => {}
        }
    }

    /// 4 source transactions of 3 records, and a run killed while its
    /// first transaction is open (its sends not yet answered).
    async fn crashed_with_a_transaction_open() -> Self {
        let case = Self::new(4, 3, false);
        case.broker
            .faults(|f| f.hold_receipts = Some(OUTPUT.into()));
        case.crash_when(|b| b.stored(OUTPUT) >= 3).await;
        assert!(case.broker.open_transactions() >= 1);
        case.broker.faults(|f| f.hold_receipts = None);
        case
    }

    fn published(&self) -> Vec<String> {
        self.broker.values(OUTPUT)
    }

    async fn recover(&self) -> Result<Progress, TaskError> {
        effectively_once::recover(&self.def, &self.broker).await
    }
}

#[tokio::test]
async fn each_record_is_published_once_in_transactions_with_their_markers() {
    let case = Case::new(4, 3, true);
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..12));
    assert_eq!(case.script.get().committed.last().map(|p| p.0), Some(4));
    assert_eq!(case.broker.open_transactions(), 0);
    let progress = case.recover().await.expect("recover");
    assert_eq!(progress.sequence.map(|s| s.to_string()), Some(sequence(12)));
    assert_eq!(progress.position.map(|p| p.0), Some(4));
    let (_, commits, _) = case.broker.counts();
    assert!(commits >= 1);
}

/// The text of sequence `n` as [`record`] makes it.
fn sequence(n: u64) -> String {
    sluice_connectors::Sequence::from_parts(n, 0).to_string()
}

#[tokio::test(start_paused = true)]
async fn a_second_instance_waits_as_a_standby_until_the_first_lets_go() {
    let case = Case::new(0, 0, true);
    let never = CancellationToken::new();
    let first = effectively_once::fence(&case.def, &case.broker, &status("a"), &never)
        .await
        .expect("fence")
        .expect("the first instance publishes");
    let second = status("b");
    let taking = effectively_once::fence(&case.def, &case.broker, &second, &never);
    tokio::pin!(taking);
    tokio::select! {
        _ = &mut taking => panic!("took over while the first instance holds the source"),
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    assert_eq!(second.state(), State::Standby);
    drop(first);
    let marker = taking.await.expect("fence");
    assert!(marker.is_some(), "the standby takes over");
    assert!(case.broker.held(&offsets_topic(&case.def)));
}

#[tokio::test(start_paused = true)]
async fn only_another_instances_producer_makes_a_standby() {
    // A producer refused for another reason (the broker down) is a failure
    // for the supervisor to show and retry, not a standby that reads ready.
    let case = Case::new(0, 0, true);
    case.broker.faults(|f| f.producers = 1);
    let never = CancellationToken::new();
    let instance = status("a");
    let fenced = effectively_once::fence(&case.def, &case.broker, &instance, &never).await;
    assert!(fenced.is_err_and(|e| e.to_string().contains("injected: create a producer failed")));
    assert_ne!(instance.state(), State::Standby);
    // A standby that takes over is starting until it runs.
    let first = effectively_once::fence(&case.def, &case.broker, &status("b"), &never)
        .await
        .expect("fence");
    let second = status("c");
    let taking = effectively_once::fence(&case.def, &case.broker, &second, &never);
    tokio::pin!(taking);
    tokio::select! {
        _ = &mut taking => panic!("took over while another instance holds the source"),
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    assert_eq!(second.state(), State::Standby);
    drop(first);
    assert!(taking.await.expect("fence").is_some());
    assert_eq!(second.state(), State::Starting);
}

#[tokio::test(start_paused = true)]
async fn a_standby_stops_on_shutdown() {
    let case = Case::new(0, 0, true);
    let never = CancellationToken::new();
    let _first = effectively_once::fence(&case.def, &case.broker, &status("a"), &never)
        .await
        .expect("fence");
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let second = effectively_once::fence(&case.def, &case.broker, &status("b"), &shutdown)
        .await
        .expect("fence");
    assert!(second.is_none());
}

#[tokio::test]
async fn with_nothing_published_recovery_finds_nothing() {
    let case = Case::new(0, 0, true);
    assert_eq!(case.recover().await.expect("recover"), Progress::default());
}

#[tokio::test]
async fn a_crash_with_a_transaction_open_leaves_nothing_visible_and_the_next_run_publishes_once() {
    let case = Case::crashed_with_a_transaction_open().await;
    assert!(
        case.published().is_empty(),
        "an open transaction shows nothing"
    );
    let (result, _) = case.run(|b| b.values(OUTPUT).len() >= 12).await;
    assert_eq!(result.expect("run"), Finished::Stopped);
    assert_eq!(case.published(), values(0..12));
    assert_eq!(case.broker.open_transactions(), 0);
}

#[tokio::test]
async fn a_crash_after_some_commits_resumes_exactly_where_they_ended() {
    for crash_at in [2, 5, 7, 10] {
        let case = Case::new(4, 3, false);
        case.crash_when(|b| b.stored(OUTPUT) >= crash_at).await;
        let (result, _) = case.run(|b| b.values(OUTPUT).len() >= 12).await;
        assert_eq!(
            result.expect("run"),
            Finished::Stopped,
            "crash at {crash_at}"
        );
        assert_eq!(case.published(), values(0..12), "crash at {crash_at}");
        assert_eq!(case.broker.open_transactions(), 0, "crash at {crash_at}");
    }
}

#[tokio::test]
async fn a_failed_commit_shows_nothing_and_the_next_run_publishes_once() {
    let case = Case::new(2, 2, true);
    case.broker.faults(|f| f.commits = 1);
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    assert!(case.published().is_empty());
    assert!(case.script.get().committed.is_empty());
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..4));
    assert_eq!(case.broker.open_transactions(), 0);
}

#[tokio::test]
async fn a_failed_send_aborts_its_transaction_and_the_next_run_publishes_once() {
    let case = Case::new(2, 2, true);
    case.broker.faults(|f| f.txn_publishes = 1);
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    assert!(case.published().is_empty());
    let (_, _, aborts) = case.broker.counts();
    assert!(aborts >= 1, "the failed transaction is aborted");
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..4));
    assert_eq!(case.broker.open_transactions(), 0);
}

#[tokio::test]
async fn records_without_a_sequence_are_refused() {
    let case = Case::new(0, 0, true);
    case.script.get().push(
        vec![SourceRecord {
            value: Some(b"x".to_vec()),
            ..SourceRecord::default()
        }],
        Some(1),
    );
    let (result, _) = case.run(|_| false).await;
    let Err(TaskError::Connector(e)) = result else {
        panic!("the run should fail: {result:?}");
    };
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(case.published().is_empty());
}

#[tokio::test]
async fn a_source_behind_the_last_marker_has_its_published_records_skipped() {
    let case = Case::new(3, 2, true);
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    // The source lost its position and reads everything again.
    case.script.get().committed.clear();
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..6));
    let told = case.script.get().context.clone();
    assert_eq!(
        told.and_then(|(published, _)| published)
            .map(|s| s.to_string()),
        Some(sequence(6))
    );
}

#[tokio::test]
async fn the_sources_state_commits_with_its_records_and_comes_back() {
    let case = Case::new(0, 0, true);
    {
        let mut s = case.script.get();
        s.push(vec![record("a", 1)], Some(1));
        s.batches[0].state = Some("chunk 1 of 3".into());
        s.push(vec![record("b", 2)], Some(2));
    }
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    let progress = case.recover().await.expect("recover");
    assert_eq!(progress.state.as_deref(), Some("chunk 1 of 3"));
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    let told = case.script.get().context.clone();
    assert_eq!(
        told.and_then(|(_, state)| state).as_deref(),
        Some("chunk 1 of 3")
    );
    assert_eq!(case.published(), vec!["a", "b"]);
}

#[tokio::test]
async fn a_message_that_is_not_a_marker_stops_recovery() {
    let case = Case::new(0, 0, true);
    case.broker.put(
        &offsets_topic(&case.def),
        "stranger",
        SourceRecord {
            value: Some(b"not json".to_vec()),
            ..SourceRecord::default()
        },
    );
    let Err(TaskError::Connector(e)) = case.recover().await else {
        panic!("recovery should refuse the topic");
    };
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(
        e.to_string().contains("not a sluice progress marker"),
        "{e}"
    );
}

#[tokio::test]
async fn shutdown_commits_what_reached_its_checkpoint() {
    let case = Case::new(3, 2, false);
    let (result, _) = case.run(|b| b.stored(OUTPUT) == 6).await;
    assert_eq!(result.expect("run"), Finished::Stopped);
    assert_eq!(case.published(), values(0..6));
    assert_eq!(case.broker.open_transactions(), 0);
    assert_eq!(case.script.get().committed.last().map(|p| p.0), Some(3));
}

#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_not_published_again() {
    let case = Case::new(3, 2, true);
    // The first transaction commits, and its answer never comes.
    case.broker.faults(|f| f.commits_unanswered = 1);
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    assert!(
        !case.published().is_empty(),
        "the transaction committed although the run did not hear so"
    );
    // The source never heard its position was durable, and reads it all
    // again; the marker that committed says which records to skip.
    assert!(case.script.get().committed.is_empty());
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..6));
    assert_eq!(case.broker.open_transactions(), 0);
}

#[tokio::test]
async fn a_read_is_polled_to_its_end_while_a_transaction_commits() {
    let case = Case::new(3, 2, true);
    let gate = Arc::new(tokio::sync::Notify::new());
    case.script.get().gate = Some((1, Arc::clone(&gate)));
    let script = case.script.clone();
    let mut opened = false;
    let (result, _) = case
        .run(|_| {
            // The second read waits at the gate until the first batch's
            // transaction has committed, and its position with it.
            if !opened && script.get().committed.iter().any(|p| p.0 == 1) {
                opened = true;
                gate.notify_one();
            }
            false
        })
        .await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..6));
    assert_eq!(case.script.get().dropped_reads, 0);
}

#[tokio::test]
async fn a_source_refuses_the_progress_another_source_of_its_name_published() {
    // GIVEN a source that published 6 records from database a, its markers
    // saying so
    let a = Case::new(2, 3, true);
    a.script.get().origin = Some("postgres database a, slot a".into());
    let (result, _) = a.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(a.published(), values(0..6));

    // WHEN another source of the same name, reading database b, starts on
    // the same cluster
    let b = SourceScript::numbered(2, 3, true);
    b.get().origin = Some("postgres database b, slot b".into());
    let other = Case {
        broker: a.broker.clone(),
        def: source_def(Guarantee::EffectivelyOnce, &b),
        script: b,
    };
    let (result, status) = other.run(|_| false).await;

    // THEN it refuses, naming both, before opening its source: none of its
    // records is skipped as published by the other
    let error = result.expect_err("the other source's progress was taken");
    assert!(
        matches!(&error, TaskError::Connector(e) if e.kind() == ErrorKind::Permanent),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("postgres database a, slot a")
            && text.contains("postgres database b, slot b"),
        "{text}"
    );
    assert_eq!(other.script.get().opened, 0);
    assert_ne!(status.state(), State::Running);
    assert_eq!(a.published(), values(0..6));
}

#[tokio::test]
async fn markers_without_an_origin_are_taken_and_the_next_ones_record_it() {
    // GIVEN markers written before origins were recorded
    let case = Case::new(1, 3, true);
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.recover().await.expect("recover").origin, None);

    // WHEN the source, which now names its origin, runs again
    case.script.get().origin = Some("postgres database a, slot a".into());
    case.script.get().push(vec![record("r3", 4)], Some(2));
    let (result, _) = case.run(|_| false).await;

    // THEN it resumed from them, and its markers record the origin
    assert_eq!(result.expect("run"), Finished::Exhausted);
    assert_eq!(case.published(), values(0..4));
    assert_eq!(
        case.recover().await.expect("recover").origin.as_deref(),
        Some("postgres database a, slot a")
    );
}

#[tokio::test]
async fn recovery_does_not_go_on_while_an_orphan_may_still_commit() {
    // GIVEN an instance that stopped with a transaction open, whose owner
    // may be alive (fenced out, not dead)
    let case = Case::crashed_with_a_transaction_open().await;

    // WHEN the next instance's abort of it goes unanswered
    case.broker.faults(|f| f.orphan_aborts = 1);
    let (result, _) = case.run(|_| false).await;

    // THEN that run fails before it publishes, and the next one, whose
    // abort is answered, publishes everything once
    let error = result.expect_err("recovery went on past an orphan that may commit");
    assert!(
        matches!(&error, TaskError::Connector(e) if e.kind() == ErrorKind::Retryable),
        "{error:?}"
    );
    assert!(case.published().is_empty());
    let (result, _) = case.run(|b| b.values(OUTPUT).len() >= 12).await;
    assert_eq!(result.expect("run"), Finished::Stopped);
    assert_eq!(case.published(), values(0..12));
}

//! A sink's run: batching, retries, isolating and dead-lettering rejected
//! records, acknowledgements, and what ends a run.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_connectors::{ErrorKind, SourceRecord};
use tokio_util::sync::CancellationToken;

use super::{status, until, values};
use crate::config::Guarantee;
use crate::engine::broker::{Broker, Consume};
use crate::engine::memory::Memory;
use crate::engine::sink_task::{self, Ended};
use crate::engine::status::ConnectorStatus;
use crate::engine::testkit::{DEAD, INPUT, ScriptSink, Shared, SinkScript, sink_def};
use crate::engine::{TaskError, consumer_options, sink_topics};
use crate::pulsar::Received;

/// A sink over an input topic holding records `r0`..`r{n-1}`.
struct Case {
    broker: Memory,
    script: Shared<SinkScript>,
    def: crate::config::SinkDef,
}

impl Case {
    fn new(guarantee: Guarantee, n: usize) -> Self {
        let broker = Memory::default();
        broker.create(INPUT);
        for v in values(0..n) {
            broker.put(INPUT, "producer", text(&v));
        }
        let script = Shared::<SinkScript>::default();
        script.get().max_records = 1000;
        let def = sink_def(guarantee, &script);
        Self {
            broker,
            script,
            def,
        }
    }

    /// One run of the sink, stopped once `done` holds.
    async fn run(
        &self,
        done: impl FnMut(&Memory) -> bool,
    ) -> (Result<Ended, TaskError>, Arc<ConnectorStatus>) {
        self.run_with(CancellationToken::new(), done).await
    }

    async fn run_with(
        &self,
        shutdown: CancellationToken,
        mut done: impl FnMut(&Memory) -> bool,
    ) -> (Result<Ended, TaskError>, Arc<ConnectorStatus>) {
        self.run_watching(shutdown, move |b, _| done(b)).await
    }

    /// [`Case::run_with`], `done` seeing the run's status too.
    async fn run_watching(
        &self,
        shutdown: CancellationToken,
        mut done: impl FnMut(&Memory, &ConnectorStatus) -> bool,
    ) -> (Result<Ended, TaskError>, Arc<ConnectorStatus>) {
        let status = status("sink");
        let watched = Arc::clone(&status);
        let topics = sink_topics(&self.def, &self.broker).await.expect("topics");
        let mut consumer = self
            .broker
            .consumer(&topics, &consumer_options(&self.def, 0))
            .await
            .expect("consumer");
        let mut sink = ScriptSink(self.script.clone());
        let run = sink_task::run(
            &self.def,
            &self.broker,
            &topics,
            &mut consumer,
            &mut sink,
            &status,
            &shutdown,
        );
        let result = until(&self.broker, &shutdown, run, |b| done(b, &watched)).await;
        (result, status)
    }

    /// Run until `n` records of the input are acknowledged.
    async fn run_to(&self, n: usize) -> (Result<Ended, TaskError>, Arc<ConnectorStatus>) {
        self.run(|b| b.acked(INPUT, "sub") >= n).await
    }

    fn written(&self) -> Vec<String> {
        self.script.get().written.clone()
    }

    fn writes(&self) -> Vec<usize> {
        self.script.get().writes.clone()
    }

    /// What a new consumer of the subscription is delivered now.
    async fn unacknowledged(&self) -> Vec<String> {
        let mut consumer = self
            .broker
            .consumer(&[INPUT.to_owned()], &consumer_options(&self.def, 0))
            .await
            .expect("consumer");
        let mut out = Vec::new();
        while let Some(r) = consumer.try_receive() {
            let r: Received<_> = r.expect("receive");
            out.push(String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into());
        }
        out
    }
}

fn text(v: &str) -> SourceRecord {
    SourceRecord {
        value: Some(v.as_bytes().to_vec()),
        ..SourceRecord::default()
    }
}

fn without(all: Vec<String>, gone: &[&str]) -> Vec<String> {
    all.into_iter()
        .filter(|v| !gone.contains(&v.as_str()))
        .collect()
}

#[tokio::test]
async fn every_record_is_written_in_order_in_batches_and_acknowledged() {
    let case = Case::new(Guarantee::AtLeastOnce, 250);
    case.script.get().max_records = 100;
    let (result, status) = case.run_to(250).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), values(0..250));
    assert_eq!(case.writes(), vec![100, 100, 50]);
    assert!(case.unacknowledged().await.is_empty());
    assert_eq!(status.records_in.load(Ordering::Relaxed), 250);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 250);
}

#[tokio::test]
async fn a_batch_holds_at_most_a_quarter_of_the_memory_limit() {
    let case = Case::new(Guarantee::AtLeastOnce, 0);
    for i in 0..40 {
        case.broker.put(INPUT, "p", text(&format!("{i:0>100}")));
    }
    case.broker.set_memory_limit(4000);
    let (result, _) = case.run_to(40).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    // 1000 bytes a batch: ten records of 100.
    assert_eq!(case.writes(), vec![10, 10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_until_the_batch_is_written_once() {
    let case = Case::new(Guarantee::AtLeastOnce, 10);
    case.script.get().retryable = 3;
    let (result, status) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), values(0..10));
    assert_eq!(case.writes(), vec![10, 10, 10, 10]);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 10);
    assert_eq!(status.dead_lettered.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_record_is_found_by_halves_retried_and_dead_lettered() {
    let case = Case::new(Guarantee::AtLeastOnce, 16);
    case.script.get().reject.insert("r5".into());
    let (result, status) = case.run_to(16).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), without(values(0..16), &["r5"]));
    // 16 fails; 0..8 fails; 0..4 passes; 4..8 fails; 4..6 fails; 4 passes;
    // 5 fails, and fails both retries; 6..8 and 8..16 pass.
    assert_eq!(case.writes(), vec![16, 8, 4, 4, 2, 1, 1, 1, 1, 2, 8]);
    let dead = case.broker.visible(DEAD);
    assert_eq!(dead.len(), 1);
    let letter = &dead[0].record;
    assert_eq!(letter.value.as_deref(), Some(&b"r5"[..]));
    let property = |name: &str| {
        letter
            .properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        property("sluice.error").as_deref(),
        Some("r5 violates a check")
    );
    assert_eq!(property("sluice.origin.topic").as_deref(), Some(INPUT));
    assert_eq!(
        property("sluice.origin.message_id").as_deref(),
        Some("0:5:-1:-1")
    );
    assert_eq!(property("sluice.origin.sink").as_deref(), Some("sink"));
    assert_eq!(status.records_out.load(Ordering::Relaxed), 15);
    assert_eq!(status.dead_lettered.load(Ordering::Relaxed), 1);
    assert!(case.unacknowledged().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_record_rejected_only_for_a_while_is_written_on_a_retry() {
    let case = Case::new(Guarantee::AtLeastOnce, 1);
    case.script.get().reject_times.insert("r0".into(), 2);
    let (result, status) = case.run_to(1).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), vec!["r0"]);
    assert_eq!(case.writes(), vec![1, 1, 1]);
    assert!(case.broker.visible(DEAD).is_empty());
    assert_eq!(status.dead_lettered.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_dead_letter_topic_a_rejected_record_stops_the_sink_unacknowledged() {
    let mut case = Case::new(Guarantee::AtLeastOnce, 5);
    case.def.dead_letter_topic = None;
    case.script.get().reject.insert("r2".into());
    let (result, _) = case.run(|_| false).await;
    let Err(TaskError::Connector(e)) = result else {
        panic!("the run should fail on the rejected record");
    };
    assert_eq!(e.kind(), ErrorKind::Permanent);
    // Its neighbours before it were written; nothing was acknowledged.
    assert_eq!(case.written(), vec!["r0", "r1"]);
    assert_eq!(case.unacknowledged().await, values(0..5));
}

#[tokio::test(start_paused = true)]
async fn refused_records_are_dead_lettered_and_the_others_not_written_again() {
    let case = Case::new(Guarantee::AtLeastOnce, 10);
    {
        let mut s = case.script.get();
        s.refuse = true;
        s.reject.insert("r2".into());
        s.reject.insert("r7".into());
    }
    let (result, status) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), without(values(0..10), &["r2", "r7"]));
    // The batch once, then each refused record twice alone.
    assert_eq!(case.writes(), vec![10, 1, 1, 1, 1]);
    assert_eq!(case.broker.values(DEAD), vec!["r2", "r7"]);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 8);
    assert_eq!(status.dead_lettered.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_configuration_error_stops_the_sink_and_dead_letters_nothing() {
    let case = Case::new(Guarantee::AtLeastOnce, 3);
    case.script.get().misconfigured = true;
    let (result, _) = case.run(|_| false).await;
    let Err(TaskError::Connector(e)) = result else {
        panic!("the run should fail");
    };
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert_eq!(case.writes(), vec![3]);
    assert!(case.broker.visible(DEAD).is_empty());
    assert_eq!(case.unacknowledged().await, values(0..3));
}

#[tokio::test]
async fn at_most_once_a_batch_is_acknowledged_first_and_a_failed_write_is_not_retried() {
    let case = Case::new(Guarantee::AtMostOnce, 10);
    case.script.get().retryable = 1;
    let (result, status) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert!(case.written().is_empty());
    assert_eq!(case.writes(), vec![10]);
    assert_eq!(status.dropped.load(Ordering::Relaxed), 10);
    assert!(case.unacknowledged().await.is_empty());
}

#[tokio::test]
async fn at_most_once_a_rejected_record_costs_only_itself() {
    let case = Case::new(Guarantee::AtMostOnce, 10);
    case.script.get().reject.insert("r3".into());
    let (result, status) = case.run(|b| b.acked(INPUT, "sub") >= 10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), without(values(0..10), &["r3"]));
    assert_eq!(case.writes(), [vec![10], vec![1; 10]].concat());
    assert_eq!(status.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 9);
    assert!(case.broker.visible(DEAD).is_empty());
}

#[tokio::test]
async fn at_most_once_refused_records_are_dropped_and_the_rest_counted() {
    let case = Case::new(Guarantee::AtMostOnce, 10);
    {
        let mut s = case.script.get();
        s.refuse = true;
        s.reject.insert("r3".into());
    }
    let (result, status) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), without(values(0..10), &["r3"]));
    assert_eq!(case.writes(), vec![10]);
    assert_eq!(status.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 9);
}

#[tokio::test]
async fn a_message_the_broker_delivers_again_while_it_is_held_is_written_once() {
    // GIVEN ten records, and a broker that delivers the first five again,
    // unacknowledged, before the sixth, as a Key_Shared broker may
    let case = Case::new(Guarantee::AtLeastOnce, 10);
    case.broker.faults(|f| f.redeliver_held_after = Some(5));
    let (result, status) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    // THEN each record is written once, in order, and the five deliveries
    // again are counted as passed over
    assert_eq!(case.written(), values(0..10));
    assert_eq!(status.skips.delivered_twice.load(Ordering::Relaxed), 5);
    assert!(case.unacknowledged().await.is_empty());
}

#[tokio::test]
async fn a_message_delivered_again_while_the_next_batch_is_read_ahead_is_written_once() {
    // GIVEN twelve records, batches of four read ahead while the one
    // before is written, and a broker that delivers the six held again
    // before the seventh
    let case = Case::new(Guarantee::AtLeastOnce, 12);
    {
        let mut s = case.script.get();
        s.max_records = 4;
        s.prepares = true;
    }
    case.broker.faults(|f| f.redeliver_held_after = Some(6));
    let (result, status) = case.run_to(12).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    // THEN each record is written once, in order
    assert_eq!(case.written(), values(0..12));
    assert_eq!(case.writes(), vec![4, 4, 4]);
    assert!(status.skips.delivered_twice.load(Ordering::Relaxed) > 0);
    assert!(case.unacknowledged().await.is_empty());
}

#[tokio::test]
async fn at_most_once_a_message_delivered_again_while_held_is_written_once() {
    let case = Case::new(Guarantee::AtMostOnce, 10);
    case.broker.faults(|f| f.redeliver_held_after = Some(5));
    let (result, status) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), values(0..10));
    assert_eq!(status.skips.delivered_twice.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn a_failed_acknowledgement_delivers_the_batch_again() {
    let case = Case::new(Guarantee::AtLeastOnce, 10);
    case.broker.faults(|f| f.acks = 1);
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    assert_eq!(case.written(), values(0..10));
    // The next run writes them again: at least once, exactly ten twice.
    let (result, _) = case.run_to(10).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), [values(0..10), values(0..10)].concat());
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_retries_leaves_the_batch_unacknowledged() {
    let case = Case::new(Guarantee::AtLeastOnce, 4);
    case.script.get().retryable = u32::MAX;
    let script = case.script.clone();
    let (result, _) = case.run(move |_| script.get().writes.len() >= 3).await;
    assert!(matches!(result, Err(TaskError::Connector(_))), "{result:?}");
    assert!(case.written().is_empty());
    assert_eq!(case.unacknowledged().await, values(0..4));
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_that_cannot_be_published_stops_the_sink_unacknowledged() {
    let case = Case::new(Guarantee::AtLeastOnce, 3);
    case.script.get().reject.insert("r1".into());
    case.broker.faults(|f| f.publishes = 1);
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    assert!(case.broker.visible(DEAD).is_empty());
    assert_eq!(case.unacknowledged().await, values(0..3));
}

#[tokio::test(start_paused = true)]
async fn a_topic_that_comes_to_match_the_pattern_is_read_from_its_start() {
    let mut case = Case::new(Guarantee::AtLeastOnce, 2);
    case.def.inputs.clear();
    case.def.topics_pattern = Some("persistent://public/default/in.*".into());
    let later = "persistent://public/default/in-later";
    let broker = case.broker.clone();
    let (result, _) = case
        .run(move |b| {
            if b.acked(INPUT, "sub") == 2 && b.stored(later) == 0 {
                broker.put(later, "p", text("late"));
            }
            b.acked(later, "sub") == 1
        })
        .await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), vec!["r0", "r1", "late"]);
}

#[tokio::test(start_paused = true)]
async fn a_topic_that_no_longer_matches_ends_the_run_to_subscribe_again() {
    let mut case = Case::new(Guarantee::AtLeastOnce, 1);
    case.def.inputs.clear();
    case.def.topics_pattern = Some("persistent://public/default/in.*".into());
    let broker = case.broker.clone();
    let (result, _) = case
        .run(move |b| {
            if b.acked(INPUT, "sub") == 1 {
                broker.delete(INPUT);
            }
            false
        })
        .await;
    assert_eq!(result.expect("run"), Ended::TopicsChanged);
}

#[tokio::test]
async fn a_client_that_received_its_limit_in_large_messages_is_recycled() {
    let case = Case::new(Guarantee::AtLeastOnce, 0);
    case.script.get().max_records = 1;
    for i in 0..5 {
        case.broker
            .put(INPUT, "p", text(&format!("{i}{}", "x".repeat(70_000))));
    }
    case.broker.set_memory_limit(200_000);
    let (result, _) = case.run(|_| false).await;
    assert_eq!(result.expect("run"), Ended::Recycle);
    // Three of 70,000 bytes pass the limit; they are written first.
    assert_eq!(case.writes(), vec![1, 1, 1]);
    assert_eq!(case.unacknowledged().await.len(), 2);
}

#[tokio::test]
async fn every_partition_of_a_partitioned_input_is_read() {
    let case = Case::new(Guarantee::AtLeastOnce, 0);
    case.broker.partition(INPUT, 3);
    for p in 0..3 {
        for i in 0..4 {
            case.broker.put(
                &format!("{INPUT}-partition-{p}"),
                "p",
                text(&format!("p{p}-{i}")),
            );
        }
    }
    let acked = |b: &Memory| {
        (0..3)
            .map(|p| b.acked(&format!("{INPUT}-partition-{p}"), "sub"))
            .sum::<usize>()
    };
    let (result, _) = case.run(move |b| acked(b) == 12).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    let mut written = case.written();
    written.sort();
    let mut expected: Vec<String> = (0..3)
        .flat_map(|p| (0..4).map(move |i| format!("p{p}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    // Each partition's order is kept.
    for p in 0..3 {
        let mine: Vec<String> = case
            .written()
            .into_iter()
            .filter(|v| v.starts_with(&format!("p{p}-")))
            .collect();
        assert_eq!(
            mine,
            (0..4).map(|i| format!("p{p}-{i}")).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn the_next_batch_is_prepared_while_this_one_is_written() {
    let case = Case::new(Guarantee::AtLeastOnce, 30);
    {
        let mut s = case.script.get();
        s.max_records = 10;
        s.prepares = true;
        // The first write returns only once the second batch is prepared:
        // without the overlap this run would get nowhere.
        s.first_waits_for_a_prepare = true;
    }
    let (result, status) = case.run_to(30).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), values(0..30));
    let s = case.script.get();
    assert_eq!(s.writes, vec![10, 10, 10]);
    // The first batch had nothing before it to overlap with.
    assert_eq!(s.prepared, vec![10, 10]);
    assert_eq!(s.prepared_writes, vec![10, 10]);
    assert_eq!(status.records_out.load(Ordering::Relaxed), 30);
}

#[tokio::test(start_paused = true)]
async fn a_prepared_batch_with_a_rejected_record_is_isolated_by_plain_writes() {
    let case = Case::new(Guarantee::AtLeastOnce, 20);
    {
        let mut s = case.script.get();
        s.max_records = 10;
        s.prepares = true;
        s.reject.insert("r13".into());
    }
    let (result, status) = case.run_to(20).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), without(values(0..20), &["r13"]));
    assert_eq!(case.broker.values(DEAD), vec!["r13"]);
    let s = case.script.get();
    // The second batch's prepared write fails; its halves are written as
    // plain batches: 10..15 fails, 10..12 passes, 12..15 fails, 12
    // passes, 13..15 fails, 13 fails and fails both retries, 14 passes,
    // 15..20 passes.
    assert_eq!(s.prepared_writes, vec![10]);
    assert_eq!(s.writes, vec![10, 10, 5, 2, 3, 1, 2, 1, 1, 1, 1, 5]);
    assert_eq!(status.dead_lettered.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_batch_read_ahead_is_not_acknowledged_when_the_run_stops() {
    let case = Case::new(Guarantee::AtLeastOnce, 20);
    let shutdown = CancellationToken::new();
    {
        let mut s = case.script.get();
        s.max_records = 10;
        s.prepares = true;
        // Shutdown comes while the first batch is written and the second
        // is made ready.
        s.first_waits_for_a_prepare = true;
        s.stop_on_prepare = Some(shutdown.clone());
    }
    let (result, _) = case.run_with(shutdown, |_| false).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), values(0..10));
    assert_eq!(case.unacknowledged().await, values(10..20));
}

#[tokio::test]
async fn at_most_once_prepares_nothing_ahead() {
    let case = Case::new(Guarantee::AtMostOnce, 20);
    {
        let mut s = case.script.get();
        s.max_records = 10;
        s.prepares = true;
    }
    let (result, _) = case.run_to(20).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert_eq!(case.written(), values(0..20));
    assert!(case.script.get().prepared.is_empty());
}

#[tokio::test]
async fn a_failure_reading_ahead_lets_the_batch_being_written_finish_first() {
    let case = Case::new(Guarantee::AtLeastOnce, 20);
    {
        let mut s = case.script.get();
        s.max_records = 10;
        s.prepares = true;
    }
    // The first batch is received whole; reading the second fails.
    case.broker.faults(|f| f.receive_after = Some(10));
    let (result, _) = case.run(|_| false).await;
    assert!(matches!(result, Err(TaskError::Pulsar(_))), "{result:?}");
    // The batch under way was written and acknowledged before the run
    // failed: none of it comes again.
    assert_eq!(case.written(), values(0..10));
    assert_eq!(case.unacknowledged().await, values(10..20));
}

#[tokio::test]
async fn what_was_gathered_ahead_short_of_a_batch_starts_the_next_one() {
    let case = Case::new(Guarantee::AtLeastOnce, 15);
    {
        let mut s = case.script.get();
        s.max_records = 10;
        s.prepares = true;
    }
    let (result, _) = case.run_to(15).await;
    assert_eq!(result.expect("run"), Ended::Shutdown);
    // Five were gathered while the first batch was written, too few to
    // prepare: they open the next batch, in order, nothing lost or twice.
    assert_eq!(case.written(), values(0..15));
    let s = case.script.get();
    assert_eq!(s.writes, vec![10, 5]);
    assert!(s.prepared.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_batch_retried_for_a_minute_is_a_stall_until_it_is_written() {
    // GIVEN a sink whose target fails every write for now
    let case = Case::new(Guarantee::AtLeastOnce, 4);
    case.script.get().retryable = u32::MAX;
    let script = case.script.clone();
    let mut seen_stalled = false;
    let (result, status) = case
        .run_watching(CancellationToken::new(), |b, status| {
            let later = crate::engine::status::now_ms() + crate::engine::status::STALL_AFTER_MS;
            if !seen_stalled && script.get().writes.len() >= 2 {
                // THEN, a minute on, the running sink is stalled
                assert!(status.stalled_for(later).is_some());
                seen_stalled = true;
                script.get().retryable = 0;
            }
            b.acked(INPUT, "sub") >= 4
        })
        .await;
    // AND once the batch is written, it is not
    assert_eq!(result.expect("run"), Ended::Shutdown);
    assert!(seen_stalled);
    assert_eq!(case.written(), values(0..4));
    status.set_state(crate::engine::status::State::Running);
    let later = crate::engine::status::now_ms() + crate::engine::status::STALL_AFTER_MS;
    assert_eq!(status.stalled_for(later), None);
}

//! Supervisors: restarts with backoff after any failure (a panic too),
//! what a status says meanwhile, shutdown, and a standby source taking over
//! from one that died.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{status, values};
use crate::config::Guarantee;
use crate::engine::memory::{Memory, record};
use crate::engine::status::{ConnectorStatus, State};
use crate::engine::testkit::{
    INPUT, OUTPUT, Shared, SinkScript, SourceScript, sink_def, source_def,
};
use crate::engine::{Backoff, Restarts, instances_of, run_on, supervise_sink, supervise_source};

/// A broker whose input holds `r0`..`r{n-1}`.
fn input(n: usize) -> Memory {
    let broker = Memory::default();
    for v in values(0..n) {
        broker.put(INPUT, "p", record(&v, 0));
    }
    broker
}

/// Supervise `def`'s sink until `done` holds of the broker and the
/// script, then shut down and wait for the supervisor to return.
async fn supervise(
    broker: &Memory,
    script: &Shared<SinkScript>,
    status: &Arc<ConnectorStatus>,
    done: impl FnMut(&Memory) -> bool,
) {
    let def = sink_def(Guarantee::AtLeastOnce, script);
    let shutdown = CancellationToken::new();
    let run = supervise_sink(def, 0, broker, Arc::clone(status), shutdown.clone());
    let stop = async {
        broker.until(done).await;
        shutdown.cancel();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = run => {}
        () = stop => unreachable!(),
    }
}

fn sink_script() -> Shared<SinkScript> {
    let script = Shared::<SinkScript>::default();
    script.get().max_records = 100;
    script
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_cannot_connect_is_restarted_with_backoff_until_it_can() {
    let broker = input(5);
    broker.faults(|f| f.connects = 2);
    let (script, status) = (sink_script(), status("sink"));
    supervise(&broker, &script, &status, |b| b.acked(INPUT, "sub") == 5).await;
    assert_eq!(status.restarts.load(Ordering::Relaxed), 2);
    assert!(
        status
            .last_error()
            .is_some_and(|e| e.contains("injected: connect failed"))
    );
    assert_eq!(script.get().written, values(0..5));
    assert_eq!(status.state(), State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_sink_is_restarted_and_its_status_says_why() {
    let broker = input(3);
    let (script, status) = (sink_script(), status("sink"));
    script.get().panic_on = Some("r1".into());
    let (seen, fix) = (Arc::clone(&status), script.clone());
    supervise(&broker, &script, &status, |b| {
        if seen.restarts.load(Ordering::Relaxed) >= 1 && fix.get().panic_on.is_some() {
            assert!(
                seen.last_error()
                    .is_some_and(|e| e.contains("panicked: the sink met r1")),
                "{:?}",
                seen.last_error()
            );
            assert_eq!(seen.state(), State::Restarting);
            fix.get().panic_on = None;
        }
        b.acked(INPUT, "sub") == 3
    })
    .await;
    assert!(status.restarts.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_misconfigured_sink_restarts_until_it_is_fixed_and_loses_nothing() {
    let broker = input(4);
    let (script, status) = (sink_script(), status("sink"));
    script.get().misconfigured = true;
    let seen = Arc::clone(&status);
    let fix = script.clone();
    supervise(&broker, &script, &status, move |b| {
        if seen.restarts.load(Ordering::Relaxed) == 3 {
            fix.get().misconfigured = false;
        }
        b.acked(INPUT, "sub") == 4
    })
    .await;
    assert_eq!(status.restarts.load(Ordering::Relaxed), 3);
    assert_eq!(script.get().written, values(0..4));
    assert_eq!(status.dead_lettered.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_a_sink_waiting_to_restart() {
    let broker = input(1);
    broker.faults(|f| f.connects = u32::MAX);
    let (script, status) = (sink_script(), status("sink"));
    let seen = Arc::clone(&status);
    supervise(&broker, &script, &status, move |_| {
        seen.restarts.load(Ordering::Relaxed) >= 4
    })
    .await;
    assert_eq!(status.state(), State::Stopped);
    assert!(script.get().writes.is_empty());
}

#[tokio::test]
async fn an_exhausted_source_stops_its_supervisor() {
    let broker = Memory::default();
    let script = Shared::<SourceScript>::default();
    script
        .get()
        .push(vec![record("a", 1), record("b", 2)], Some(1));
    script.get().ends = true;
    let status = status("source");
    let def = source_def(Guarantee::AtLeastOnce, &script);
    supervise_source(def, &broker, Arc::clone(&status), CancellationToken::new()).await;
    assert_eq!(status.state(), State::Stopped);
    assert_eq!(status.restarts.load(Ordering::Relaxed), 0);
    assert_eq!(broker.values(OUTPUT), vec!["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_source_that_cannot_open_is_retried() {
    let broker = Memory::default();
    let script = Shared::<SourceScript>::default();
    {
        let mut s = script.get();
        s.push(vec![record("a", 1)], Some(1));
        s.ends = true;
        s.fail_opens = 2;
    }
    let status = status("source");
    let def = source_def(Guarantee::AtLeastOnce, &script);
    supervise_source(def, &broker, Arc::clone(&status), CancellationToken::new()).await;
    assert_eq!(status.restarts.load(Ordering::Relaxed), 2);
    assert_eq!(broker.values(OUTPUT), vec!["a"]);
    assert_eq!(broker.counts().0, 3, "a new connection for each attempt");
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_from_a_source_that_died_and_publishes_exactly_once() {
    let broker = Arc::new(Memory::default());
    let script = SourceScript::numbered(6, 3, false);
    let def = source_def(Guarantee::EffectivelyOnce, &script);
    let instance = |name: &'static str, shutdown: CancellationToken| {
        let (broker, def, status) = (Arc::clone(&broker), def.clone(), status(name));
        let seen = Arc::clone(&status);
        let task = tokio::spawn(async move {
            supervise_source(def, &*broker, status, shutdown).await;
        });
        (task, seen)
    };
    let (active, active_status) = instance("a", CancellationToken::new());
    broker.until(|b| b.stored(OUTPUT) >= 1).await;
    let shutdown = CancellationToken::new();
    let (standby, standby_status) = instance("b", shutdown.clone());
    let waiting = Arc::clone(&standby_status);
    broker
        .until(move |_| waiting.state() == State::Standby)
        .await;
    assert_eq!(active_status.state(), State::Running);
    // Killed where it stands: nothing of it runs on.
    active.abort();
    assert!(active.await.is_err_and(|e| e.is_cancelled()));
    // More records come while the standby takes over.
    {
        let mut s = script.get();
        s.push(vec![record("late", 100)], Some(7));
    }
    broker
        .until(|b| b.values(OUTPUT).last().is_some_and(|v| v == "late"))
        .await;
    assert_eq!(standby_status.state(), State::Running);
    shutdown.cancel();
    standby.await.expect("the standby stops cleanly");
    let mut expected = values(0..18);
    expected.push("late".into());
    assert_eq!(broker.values(OUTPUT), expected);
    assert_eq!(broker.open_transactions(), 0);
}

#[test]
fn backoff_doubles_from_a_tenth_of_a_second_to_half_a_minute() {
    let mut backoff = Backoff::default();
    let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
    assert_eq!(delays[0], Duration::from_millis(100));
    assert_eq!(delays[1], Duration::from_millis(200));
    assert_eq!(delays[8], Duration::from_millis(25_600));
    assert_eq!(delays[9], Duration::from_secs(30));
    assert_eq!(delays[11], Duration::from_secs(30));
}

#[test]
fn the_same_failure_is_logged_once_and_counted_until_it_changes() {
    let status = ConnectorStatus::new("c", "sink");
    let mut restarts = Restarts::default();
    let now = std::time::Instant::now();
    let delays: Vec<Duration> = (0..3)
        .map(|_| restarts.failed(&status, now, &"the table is missing"))
        .collect();
    assert_eq!(
        delays,
        [100, 200, 400].map(Duration::from_millis).to_vec(),
        "backoff grows while the failures come quickly"
    );
    assert_eq!(restarts.unlogged, 2, "logged once, then counted");
    restarts.failed(&status, now, &"another error");
    assert_eq!(restarts.unlogged, 0, "a new error is logged at once");
    assert_eq!(status.restarts.load(Ordering::Relaxed), 4);
    assert_eq!(status.state(), State::Restarting);
    assert_eq!(status.last_error().as_deref(), Some("another error"));
}

#[test]
fn each_instance_is_built_with_its_own_status_name() {
    let (source, sink) = (Shared::<SourceScript>::default(), sink_script());
    let mut parallel = sink_def(Guarantee::AtLeastOnce, &sink);
    parallel.parallelism = 3;
    let single = sink_def(Guarantee::AtLeastOnce, &sink);
    let instances = instances_of(
        &[source_def(Guarantee::AtLeastOnce, &source)],
        &[parallel, single],
    );
    let names: Vec<(&str, &str)> = instances
        .iter()
        .map(|i| (i.status().name.as_str(), i.status().kind))
        .collect();
    assert_eq!(
        names,
        [
            ("source", "source"),
            ("sink-0", "sink"),
            ("sink-1", "sink"),
            ("sink-2", "sink"),
            ("sink", "sink"),
        ]
    );
}

#[tokio::test]
async fn a_pipeline_runs_its_source_through_the_broker_into_its_sink() {
    let broker = Arc::new(Memory::default());
    let (source, sink) = (SourceScript::numbered(5, 4, false), sink_script());
    let mut reader = sink_def(Guarantee::AtLeastOnce, &sink);
    reader.inputs = vec![OUTPUT.into()];
    let instances = instances_of(&[source_def(Guarantee::AtLeastOnce, &source)], &[reader]);
    let statuses: Vec<Arc<ConnectorStatus>> =
        instances.iter().map(|i| Arc::clone(i.status())).collect();
    let shutdown = CancellationToken::new();
    let run = run_on(Arc::clone(&broker), instances, shutdown.clone());
    super::until(&broker, &shutdown, run, |b| b.acked(OUTPUT, "sub") == 20).await;
    assert_eq!(sink.get().written, values(0..20));
    assert_eq!(source.get().committed.last().map(|p| p.0), Some(5));
    for s in &statuses {
        assert_eq!(s.state(), State::Stopped, "{}", s.name);
        assert_eq!(s.restarts.load(Ordering::Relaxed), 0, "{}", s.name);
    }
}

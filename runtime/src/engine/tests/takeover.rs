//! A standby's takeover from an active instance that hangs: it holds its
//! producers and connections, and does nothing (docs/decisions/0026).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{status, values};
use crate::config::{Guarantee, SourceDef};
use crate::engine::effectively_once::{
    self, BEAT_EVERY, TAKEOVER_AFTER, beats_topic, offsets_topic,
};
use crate::engine::memory::{Memory, record};
use crate::engine::source_run;
use crate::engine::status::State;
use crate::engine::testkit::{OUTPUT, Shared, SourceScript, source_def};

/// A source of 2 transactions of 3 records that then waits for more, and
/// a broker.
fn case() -> (Memory, Shared<SourceScript>, SourceDef) {
    let script = SourceScript::numbered(2, 3, false);
    let def = source_def(Guarantee::EffectivelyOnce, &script);
    (Memory::default(), script, def)
}

/// Poll `run` until `done` holds of the broker, then leave it unpolled,
/// as a process that stops where it stands (SIGSTOP, a stopped VM): it
/// keeps everything it holds.
async fn until_it_hangs<F: Future>(
    broker: &Memory,
    run: &mut std::pin::Pin<&mut F>,
    done: impl FnMut(&Memory) -> bool,
) {
    tokio::select! {
        _ = run.as_mut() => panic!("the run ended before it hung"),
        () = broker.until(done) => {}
    }
}

#[tokio::test(start_paused = true)]
async fn a_standby_fences_out_a_hung_active_instance_and_the_resumed_one_learns_it_lost() {
    // GIVEN an active instance that published 6 records and then hung,
    // holding its lease and its producers
    let (broker, script, def) = case();
    let (a, never) = (status("a"), CancellationToken::new());
    let hung = source_run(&def, &broker, &a, &never);
    tokio::pin!(hung);
    until_it_hangs(&broker, &mut hung, |b| b.values(OUTPUT).len() == 6).await;
    let hung_at = tokio::time::Instant::now();

    // WHEN a standby starts, and the source has 3 more records
    script.get().push(
        (6..9).map(|n| record(&format!("r{n}"), n + 1)).collect(),
        Some(3),
    );
    let b = status("b");
    let standby = source_run(&def, &broker, &b, &never);
    tokio::pin!(standby);
    tokio::select! {
        r = standby.as_mut() => panic!("the standby ended: {r:?}"),
        () = broker.until(|m| m.values(OUTPUT).len() == 9) => {}
        () = tokio::time::sleep(TAKEOVER_AFTER * 8) => panic!("no takeover in {:?}", TAKEOVER_AFTER * 8),
    }

    // THEN it took over once the active instance had been silent for
    // TAKEOVER_AFTER, told the source so, and published the rest once
    let waited = hung_at.elapsed();
    assert!(
        waited >= TAKEOVER_AFTER && waited < TAKEOVER_AFTER + Duration::from_secs(5),
        "took over after {waited:?}"
    );
    assert!(script.get().took_over, "the source was not told");
    assert_eq!(b.state(), State::Running);
    assert_eq!(broker.values(OUTPUT), values(0..9));

    // WHEN the hung instance resumes
    let resumed = tokio::time::timeout(BEAT_EVERY * 2, hung.as_mut()).await;

    // THEN its next beat fails, fenced out: its run ends, having published
    // nothing more, and it comes back as a standby
    let lost = resumed.expect("the resumed instance did not learn it lost");
    let error = lost.expect_err("the resumed instance ran on");
    assert!(error.to_string().contains("ProducerFenced"), "{error}");
    assert_eq!(broker.values(OUTPUT), values(0..9));
    let again = effectively_once::fence(&def, &broker, &a, &never);
    tokio::select! {
        _ = again => panic!("the old instance took the lease back"),
        r = standby.as_mut() => panic!("the new active instance ended: {r:?}"),
        () = tokio::time::sleep(TAKEOVER_AFTER * 2) => {}
    }
    assert_eq!(a.state(), State::Standby);
    assert_eq!(broker.values(OUTPUT), values(0..9));
}

#[tokio::test(start_paused = true)]
async fn a_standby_leaves_an_idle_active_instance_that_beats_alone() {
    // GIVEN an active instance that published everything and idles
    let (broker, _script, def) = case();
    let (a, never) = (status("a"), CancellationToken::new());
    let active = source_run(&def, &broker, &a, &never);
    tokio::pin!(active);
    let beats = beats_topic(&def);
    until_it_hangs(&broker, &mut active, |b| b.values(OUTPUT).len() == 6).await;

    // WHEN a standby waits beside it for four times TAKEOVER_AFTER
    let b = status("b");
    let standby = source_run(&def, &broker, &b, &never);
    let beaten = broker.stored(&beats);
    tokio::select! {
        r = active.as_mut() => panic!("the active instance ended: {r:?}"),
        r = standby => panic!("the standby ended: {r:?}"),
        () = tokio::time::sleep(TAKEOVER_AFTER * 4) => {}
    }

    // THEN it stays a standby, and the active instance beat all along
    assert_eq!(b.state(), State::Standby);
    let beat = broker.stored(&beats) - beaten;
    assert!(beat >= 11, "{beat} beats in a minute");
    assert_eq!(broker.values(OUTPUT), values(0..6));
}

#[tokio::test(start_paused = true)]
async fn of_two_standbys_one_takes_over_and_the_other_waits_for_it() {
    // GIVEN an active instance that hung, and two standbys
    let (broker, _script, def) = case();
    let never = CancellationToken::new();
    let a = status("a");
    let hung = source_run(&def, &broker, &a, &never);
    tokio::pin!(hung);
    until_it_hangs(&broker, &mut hung, |b| b.values(OUTPUT).len() == 6).await;
    let (b, c) = (status("b"), status("c"));
    let (run_b, run_c) = (
        source_run(&def, &broker, &b, &never),
        source_run(&def, &broker, &c, &never),
    );
    tokio::pin!(run_b, run_c);

    // WHEN both hear the same silence, for four times TAKEOVER_AFTER
    tokio::select! {
        r = run_b.as_mut() => panic!("b ended: {r:?}"),
        r = run_c.as_mut() => panic!("c ended: {r:?}"),
        () = tokio::time::sleep(TAKEOVER_AFTER * 4) => {}
    }

    // THEN one runs and the other is its standby: the hung instance was
    // fenced out once, and the second standby did not fence the first
    let mut states = [b.state(), c.state()];
    states.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(states, [State::Running, State::Standby]);
    assert_eq!(broker.fenced(&offsets_topic(&def)), 1);
    assert_eq!(broker.values(OUTPUT), values(0..6));
}

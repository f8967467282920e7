//! The active instance's beats, and a standby's ear for them.
//!
//! While an instance holds a source's lease (the exclusive producer on its
//! offsets topic) it publishes a beat every [`BEAT_EVERY`] on the source's
//! beats topic, from the moment it takes the lease: through recovery, the
//! source's opening and the run. A standby listens. An active instance
//! that has crashed lets go of the lease at once; one that hangs (a
//! stopped VM, a network partition) keeps its connections and the lease
//! until the broker's keep-alive gives up, about a minute. A standby that
//! hears no beat for [`TAKEOVER_AFTER`] fences it out instead
//! (docs/decisions/0026).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::SourceDef;
use crate::engine::TaskError;
use crate::engine::broker::{Broker, Publish, WatchTopic, fence_out};
use crate::pulsar::{Access, ProducerOptions};
use sluice_connectors::SourceRecord;

/// How often the active instance beats.
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a standby hears no beat before it fences the active instance
/// out: three beats missed.
pub(crate) const TAKEOVER_AFTER: Duration = Duration::from_secs(15);
/// Once silent that long, a standby listens this long more (and up to a
/// second at random on top) before it fences: another standby that has
/// just taken over beats at once, and is heard.
const CONFIRM: Duration = Duration::from_secs(2);
/// A wait that ends this much later than it should shows that the standby
/// itself was stopped (a paused VM, SIGSTOP): the beats it missed meanwhile
/// prove nothing, and silence is counted afresh.
const OVERRUN: Duration = Duration::from_secs(1);

/// The topic a source's active instance beats on. Nothing subscribes to
/// it durably, so the broker keeps none of it.
pub(crate) fn beats_topic(def: &SourceDef) -> String {
    format!(
        "persistent://{}/{}/sluice-beats.{}",
        def.tenant, def.namespace, def.name
    )
}

/// Beat until a beat fails: it returns only then, with the error. Called
/// by the lease holder only, which fences out any producer that holds the
/// beats topic (the instance it took the lease from, or a stranger's that
/// would keep standbys from hearing the silence). A beats producer that
/// cannot be made otherwise (the topic cannot be created, say) leaves the
/// source running without beats, said once: a standby cannot listen then
/// either, and waits for the broker to let go, as before beats.
pub(crate) async fn beat<B: Broker>(def: &SourceDef, client: &B) -> TaskError {
    let topic = beats_topic(def);
    let options = ProducerOptions::plain(Access::Exclusive);
    let producer = match client.producer(&topic, &options).await {
        Err(e) if e.is_held_elsewhere() => fence_out(client, &topic, &options).await,
        made => made,
    };
    let producer = match producer {
        Ok(p) => p,
        Err(e) => {
            warn!(connector = %def.name, topic = %topic, error = %e,
                "cannot beat: a standby cannot take over from this instance should it hang, only once the broker lets go of it");
            return std::future::pending().await;
        }
    };
    let mut ticks = tokio::time::interval(BEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let beat = SourceRecord {
            value: Some(Vec::new()),
            ..SourceRecord::default()
        };
        if let Err(e) = producer.send_in(beat, None).await {
            warn!(connector = %def.name, error = %e, "a beat failed: stopping this run");
            return e.into();
        }
    }
}

/// What a standby has heard of the active instance's beats.
pub(crate) struct Ear<W> {
    watch: Option<W>,
    /// When the watch began, or the last beat came.
    heard: Instant,
    /// A failure to listen was said.
    told: bool,
}

impl<W: WatchTopic> Ear<W> {
    /// Nothing heard, and not listening yet.
    pub(crate) fn new() -> Self {
        Self {
            watch: None,
            heard: Instant::now(),
            told: false,
        }
    }

    /// Listen from now, if not listening already. A watch that cannot be
    /// made leaves the standby waiting for the broker to let go, as
    /// before beats; said once.
    pub(crate) async fn listen<B: Broker<Watch = W>>(&mut self, def: &SourceDef, client: &B) {
        if self.watch.is_some() {
            return;
        }
        match client.watch(&beats_topic(def)).await {
            Ok(w) => {
                self.watch = Some(w);
                self.heard = Instant::now();
            }
            Err(e) if self.told => {
                debug!(connector = %def.name, error = %e, "cannot listen for the active instance's beats");
            }
            Err(e) => {
                self.told = true;
                warn!(connector = %def.name, error = %e,
                    "cannot listen for the active instance's beats: should it hang, this standby takes over only once the broker lets go of it");
            }
        }
    }

    /// Listen for `wait`, noting the beats heard.
    pub(crate) async fn wait(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while let Some(watch) = self.watch.as_mut() {
            tokio::select! {
                beat = watch.next() => match beat {
                    Ok(()) => self.heard = Instant::now(),
                    // Listened to again on the next try; silence is only
                    // counted while listening.
                    Err(e) => {
                        warn!(error = %e, "lost the watch on the active instance's beats; listening again");
                        self.watch = None;
                    }
                },
                () = tokio::time::sleep_until(until) => break,
            }
        }
        tokio::time::sleep_until(until).await;
        if Instant::now() > until + OVERRUN {
            // This standby was stopped itself: count silence from now.
            self.heard = Instant::now();
        }
    }

    /// True once the active instance has been listened to, and silent,
    /// for [`TAKEOVER_AFTER`], and stays silent for [`CONFIRM`] (and a
    /// random part of a second) more: long enough to hear a standby that
    /// has just taken over, or the beats that queued while this one was
    /// itself stopped.
    pub(crate) async fn silent(&mut self) -> bool {
        if !self.silent_now() {
            return false;
        }
        self.wait(CONFIRM + jitter()).await;
        self.silent_now()
    }

    fn silent_now(&self) -> bool {
        self.watch.is_some() && self.heard.elapsed() >= TAKEOVER_AFTER
    }

    /// Stop listening.
    pub(crate) async fn close(self) {
        if let Some(w) = self.watch {
            w.close().await;
        }
    }
}

/// Up to a second, at random: standbys that found the same silence do not
/// decide at the same moment.
fn jitter() -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(random % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Guarantee;
    use crate::engine::memory::Memory;
    use crate::engine::testkit::{SourceScript, source_def};

    #[tokio::test(start_paused = true)]
    async fn a_standby_stopped_itself_counts_silence_afresh() {
        // GIVEN a standby listening to a topic that gets no beat
        let broker = Memory::default();
        let def = source_def(
            Guarantee::EffectivelyOnce,
            &SourceScript::numbered(0, 0, false),
        );
        let mut ear = Ear::new();
        ear.listen(&def, &broker).await;

        // WHEN it is itself stopped in the middle of a wait for twice
        // TAKEOVER_AFTER, and runs again
        {
            let wait = ear.wait(Duration::from_secs(1));
            tokio::pin!(wait);
            assert!(futures_util::poll!(wait.as_mut()).is_pending());
            tokio::time::advance(TAKEOVER_AFTER * 2).await;
            wait.await;
        }

        // THEN the time it was stopped is not silence it heard
        assert!(!ear.silent_now());
        tokio::time::sleep(TAKEOVER_AFTER).await;
        assert!(ear.silent_now());
    }
}

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
use tracing::debug;

use crate::config::SourceDef;
use crate::engine::TaskError;
use crate::engine::broker::{Broker, Publish, WatchTopic};
use crate::pulsar::{Access, ProducerOptions};
use sluice_connectors::SourceRecord;

/// How often the active instance beats.
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a standby hears no beat before it fences the active instance
/// out: three beats missed.
pub(crate) const TAKEOVER_AFTER: Duration = Duration::from_secs(15);

/// The topic a source's active instance beats on. Nothing subscribes to
/// it durably, so the broker keeps none of it.
pub(crate) fn beats_topic(def: &SourceDef) -> String {
    format!(
        "persistent://{}/{}/sluice-beats.{}",
        def.tenant, def.namespace, def.name
    )
}

/// Beat until a beat fails: it returns only then, with the error. The
/// producer fences out any other (an instance that lost the lease and does
/// not know it yet), whose beats then fail.
pub(crate) async fn beat<B: Broker>(def: &SourceDef, client: &B) -> TaskError {
    let topic = beats_topic(def);
    let options = ProducerOptions {
        access: Access::Fencing,
        batching: None,
        compression: crate::config::Compression::None,
        name: None,
        schema: None,
    };
    let producer = match client.producer(&topic, &options).await {
        Ok(p) => p,
        Err(e) => return e.into(),
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
            debug!(connector = %def.name, error = %e, "a beat failed");
            return e.into();
        }
    }
}

/// What a standby has heard of the active instance's beats.
pub(crate) struct Ear<W> {
    watch: Option<W>,
    /// When the watch began, or the last beat came.
    heard: Instant,
}

impl<W: WatchTopic> Ear<W> {
    /// Nothing heard, and not listening yet.
    pub(crate) fn new() -> Self {
        Self {
            watch: None,
            heard: Instant::now(),
        }
    }

    /// Listen from now, if not listening already. A watch that cannot be
    /// made leaves the standby waiting for the broker to let go, as
    /// before beats.
    pub(crate) async fn listen<B: Broker<Watch = W>>(&mut self, def: &SourceDef, client: &B) {
        if self.watch.is_some() {
            return;
        }
        match client.watch(&beats_topic(def)).await {
            Ok(w) => {
                self.watch = Some(w);
                self.heard = Instant::now();
            }
            Err(e) => {
                debug!(connector = %def.name, error = %e, "cannot listen for the active instance's beats");
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
                    Err(_) => self.watch = None,
                },
                () = tokio::time::sleep_until(until) => return,
            }
        }
        tokio::time::sleep_until(until).await;
    }

    /// True once the active instance has been listened to, and silent,
    /// for [`TAKEOVER_AFTER`].
    pub(crate) fn silent(&self) -> bool {
        self.watch.is_some() && self.heard.elapsed() >= TAKEOVER_AFTER
    }

    /// Stop listening.
    pub(crate) async fn close(self) {
        if let Some(w) = self.watch {
            w.close().await;
        }
    }
}

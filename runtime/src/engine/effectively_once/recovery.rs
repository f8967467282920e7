//! Fencing and recovery: one instance of a source publishes at a time, and
//! it starts from the last committed marker, after aborting what a dead
//! instance left open.

use std::collections::HashSet;
use std::time::Duration;

use sluice_connectors::ConnectorError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::beats::{Ear, TAKEOVER_AFTER};
use super::progress::{Progress, committed};
use crate::config::SourceDef;
use crate::engine::TaskError;
use crate::engine::broker::{Broker, ReadBacklog, fence_out};
use crate::engine::status::{ConnectorStatus, State};
use crate::pulsar::{Access, OrphanEnd, ProducerOptions, Txn};

/// The subscription that keeps the last marker from retention.
const RECOVERY_SUBSCRIPTION: &str = "sluice-recovery";
/// How often a standby tries to take over.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// How long recovery looks for the marker of an orphan being committed:
/// tries, and the wait between (each read of the topic may also wait up
/// to a second for more).
const COMMITTING_TRIES: u32 = 4;
const COMMITTING_WAIT: Duration = Duration::from_millis(250);

/// The topic holding a source's progress markers.
pub(crate) fn offsets_topic(def: &SourceDef) -> String {
    format!(
        "persistent://{}/{}/sluice-offsets.{}",
        def.tenant, def.namespace, def.name
    )
}

/// The lease on a source: the exclusive producer on its offsets topic.
pub(crate) struct Lease<P> {
    /// The producer of its markers.
    pub(crate) marker: P,
    /// True when it was taken by fencing out an active instance that had
    /// stopped beating.
    pub(crate) fenced_out: bool,
}

/// Take the lease on the source, waiting as a standby while another
/// instance holds it: until that one lets go, or, heard silent for
/// [`TAKEOVER_AFTER`], is fenced out. `None` when shutdown came first.
pub(crate) async fn fence<B: Broker>(
    def: &SourceDef,
    client: &B,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
) -> Result<Option<Lease<B::Producer>>, TaskError> {
    let mut ear = Ear::new();
    let result = take_lease(def, client, status, shutdown, &mut ear).await;
    ear.close().await;
    result
}

async fn take_lease<B: Broker>(
    def: &SourceDef,
    client: &B,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
    ear: &mut Ear<B::Watch>,
) -> Result<Option<Lease<B::Producer>>, TaskError> {
    let topic = offsets_topic(def);
    let mut waiting = false;
    let options = ProducerOptions::plain(Access::Exclusive);
    loop {
        let fencing = tokio::select! {
            silent = ear.silent() => silent,
            () = shutdown.cancelled() => return Ok(None),
        };
        let made = if fencing {
            fence_out(client, &topic, &options).await
        } else {
            client.producer(&topic, &options).await
        };
        match made {
            Ok(marker) => {
                if fencing {
                    warn!(connector = %def.name, silent_s = TAKEOVER_AFTER.as_secs(),
                        "the active instance sent no beat: fenced it out, taking over");
                } else if waiting {
                    info!(connector = %def.name, "the other instance is gone; taking over");
                }
                if waiting {
                    // Recovering and opening the source, no longer waiting.
                    status.set_state(State::Starting);
                }
                return Ok(Some(Lease {
                    marker,
                    fenced_out: fencing,
                }));
            }
            // Only another instance's producer makes this one a standby; any
            // other failure (the broker down, a refused token) is the
            // supervisor's, shown as such.
            Err(e) if !e.is_held_elsewhere() => return Err(e.into()),
            Err(e) => {
                if !waiting {
                    info!(connector = %def.name, reason = %e, "another instance publishes for this source; waiting as a standby");
                    status.set_state(State::Standby);
                    waiting = true;
                } else {
                    debug!(connector = %def.name, reason = %e, "still a standby");
                }
                ear.listen(def, client).await;
                tokio::select! {
                    () = ear.wait(STANDBY_RETRY) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Refuse `progress` when another source wrote it: two sources of one
/// name (`tenant/namespace/name`) share an offsets topic, and resuming
/// one from the other's markers would skip its records as published.
/// Markers that record no origin, or a source that names none, pass.
pub(crate) fn same_origin(def: &SourceDef, progress: &Progress) -> Result<(), TaskError> {
    let (Some(recorded), Some(this)) = (&progress.origin, def.spec.origin()) else {
        return Ok(());
    };
    if *recorded == this {
        return Ok(());
    }
    Err(ConnectorError::permanent(format!(
        "{topic} holds the progress of another source ({recorded}), not of this one ({this}): \
         two sources are named {}/{}/{}. Give each source its own name; if this source replaces \
         the other one, delete {topic} so that it starts without the other's progress",
        def.tenant,
        def.namespace,
        def.name,
        topic = offsets_topic(def),
    ))
    .into())
}

/// The progress the last committed marker records, after aborting every
/// transaction an earlier instance left open.
///
/// The offsets topic holds, in order, each transaction's intent (outside
/// it) and its marker (inside it). A transaction's intent can follow the
/// previous transaction's marker before that one commits, so the last
/// message is not always a marker: the progress is the last marker's, and
/// every intent after it names a transaction that never committed. Such a
/// transaction, while open, hides what follows it; once aborted, the rest
/// is read.
pub(crate) async fn recover<B: Broker>(def: &SourceDef, client: &B) -> Result<Progress, TaskError> {
    let topic = offsets_topic(def);
    let mut backlog = client.backlog(&topic, RECOVERY_SUBSCRIPTION).await?;
    let result = recover_from(def, client, &topic, &mut backlog).await;
    backlog.close().await;
    result
}

async fn recover_from<B: Broker>(
    def: &SourceDef,
    client: &B,
    topic: &str,
    backlog: &mut B::Backlog,
) -> Result<Progress, TaskError> {
    let mut aborted = HashSet::new();
    loop {
        let messages = backlog
            .payloads()
            .into_iter()
            .map(Progress::from_json)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "a message on {topic} is not a sluice progress marker"
                ))
            })?;
        let (keep, progress, orphans) = committed(&messages);
        let orphans: Vec<&String> = orphans
            .into_iter()
            .filter(|id| !aborted.contains(*id))
            .collect();
        if orphans.is_empty() {
            backlog.release_before(keep).await?;
            if messages.is_empty() {
                info!(connector = %def.name, "no progress marker: nothing was published before");
            } else {
                info!(
                    connector = %def.name,
                    sequence = ?progress.sequence.map(|s| s.to_string()),
                    position = ?progress.position.map(|p| p.0),
                    "recovered the published progress"
                );
            }
            return Ok(progress);
        }
        let mut committing = Vec::new();
        for open in orphans {
            let txn = Txn::from_id_text(open).ok_or_else(|| {
                ConnectorError::permanent(format!("a transaction id on {topic} is malformed"))
            })?;
            // The instance that opened it may be alive (fenced out, not
            // dead): a transaction not known to have ended may still
            // commit, so recovery cannot go on without knowing.
            match client.abort_orphan(txn).await {
                Ok(OrphanEnd::Aborted) => {
                    info!(connector = %def.name, txn = %open, "aborted a transaction a previous instance left open");
                }
                Ok(OrphanEnd::Unknown) => {
                    debug!(connector = %def.name, txn = %open, "the previous instance's transaction is gone");
                }
                Ok(OrphanEnd::Committing) => committing.push(open.clone()),
                Err(e) => {
                    return Err(ConnectorError::retryable(format!(
                        "could not abort transaction {open}, which a previous instance left open and may still commit: {e}"
                    ))
                    .into());
                }
            }
            aborted.insert(open.clone());
        }
        // An orphan being committed shows its marker once it is: recovery
        // waits for it a little, and otherwise fails, to try again, rather
        // than go on from the marker before it and publish its records
        // twice.
        let mut tries = 0;
        loop {
            let marked: HashSet<String> = backlog
                .payloads()
                .into_iter()
                .filter_map(Progress::from_json)
                .filter_map(|m| m.txn)
                .collect();
            if committing.iter().all(|t| marked.contains(t)) {
                break;
            }
            tries += 1;
            if tries > COMMITTING_TRIES {
                return Err(ConnectorError::retryable(format!(
                    "a transaction a previous instance left is still being committed, its marker not on {topic} yet"
                ))
                .into());
            }
            tokio::time::sleep(COMMITTING_WAIT).await;
            backlog.read_more().await?;
        }
        // What the aborted transactions held back is visible now.
        backlog.read_more().await?;
    }
}

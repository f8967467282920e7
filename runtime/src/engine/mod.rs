//! The engine: one supervised task per connector instance, restarted with
//! backoff after a failure while the others keep running.

mod acks;
mod broker;
mod dead_letters;
mod effectively_once;
#[cfg(test)]
mod memory;
mod renewal;
mod sink_task;
mod source_task;
pub mod status;
mod supervise;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::{ConnectorError, Source};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use dead_letters::{
    ERROR_PROPERTY, ORIGIN_MESSAGE_ID_PROPERTY, ORIGIN_SINK_PROPERTY, ORIGIN_TOPIC_PROPERTY,
};
use status::ConnectorStatus;

use crate::config::{Guarantee, Pipeline, PulsarSettings, SinkDef, SourceDef};
use crate::pulsar::{self, ConsumerOptions, PulsarError};
use broker::{Broker, Dial};
#[cfg(test)]
use supervise::Restarts;
use supervise::{supervise_sink, supervise_source};

/// Messages buffered ahead of a sink, per input topic.
const RECEIVER_QUEUE: usize = 1000;

/// Why a connector run failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    #[error(transparent)]
    Pulsar(#[from] PulsarError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The run panicked: a bug. It is reported and restarted like any
    /// failure, rather than leave the connector's status stale.
    #[error("the connector panicked: {0}")]
    Panicked(String),
}

/// Run one attempt of a connector, turning a panic into
/// [`TaskError::Panicked`] with its message.
async fn guarded<T>(
    attempt: impl std::future::Future<Output = Result<T, TaskError>>,
) -> Result<T, TaskError> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(TaskError::Panicked(message))
        }
    }
}

/// Exponential backoff: 100 ms doubling to 30 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

/// First delay of a [`Backoff`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay of a [`Backoff`].
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run that lasted this long starts the restart backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }

    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// One connector instance the engine runs, and the status it reports:
/// built together, so that each run reports on its own status.
#[derive(Debug)]
pub struct Instance {
    status: Arc<ConnectorStatus>,
    work: Work,
}

#[derive(Debug)]
enum Work {
    Source(SourceDef),
    /// A sink, and which of its `parallelism` instances.
    Sink(SinkDef, u32),
}

impl Instance {
    /// What it reports.
    pub fn status(&self) -> &Arc<ConnectorStatus> {
        &self.status
    }
}

/// Every connector instance of a pipeline: each source, and each sink as
/// many times as its `parallelism`, named `<sink>-<i>` when more than one.
pub fn instances(pipeline: &Pipeline) -> Vec<Instance> {
    instances_of(&pipeline.sources, &pipeline.sinks)
}

fn instances_of(sources: &[SourceDef], sinks: &[SinkDef]) -> Vec<Instance> {
    let mut out: Vec<Instance> = sources
        .iter()
        .map(|s| Instance {
            status: Arc::new(ConnectorStatus::new(&s.name, "source")),
            work: Work::Source(s.clone()),
        })
        .collect();
    for sink in sinks {
        for i in 0..sink.parallelism {
            let name = if sink.parallelism == 1 {
                sink.name.clone()
            } else {
                format!("{}-{i}", sink.name)
            };
            out.push(Instance {
                status: Arc::new(ConnectorStatus::new(name, "sink")),
                work: Work::Sink(sink.clone(), i),
            });
        }
    }
    out
}

/// Run every instance until shutdown is requested and each has drained,
/// or until all of them have finished.
pub async fn run(settings: &PulsarSettings, instances: Vec<Instance>, shutdown: CancellationToken) {
    run_on(Arc::new(settings.clone()), instances, shutdown).await;
}

/// [`run`], on the broker `dial` connects to.
async fn run_on<D: Dial>(dial: Arc<D>, instances: Vec<Instance>, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for Instance { status, work } in instances {
        let (dial, token) = (Arc::clone(&dial), shutdown.clone());
        match work {
            Work::Source(def) => {
                tasks.spawn(async move { supervise_source(def, &*dial, status, token).await })
            }
            Work::Sink(def, i) => {
                tasks.spawn(async move { supervise_sink(def, i, &*dial, status, token).await })
            }
        };
    }
    while tasks.join_next().await.is_some() {}
}

/// One run of a source on `client`: under EFFECTIVELY_ONCE fenced,
/// recovered and transactional; otherwise published as it reads.
async fn source_run<B: Broker>(
    def: &SourceDef,
    client: &B,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<source_task::Finished, TaskError> {
    if def.guarantee == Guarantee::EffectivelyOnce {
        // Fence first: a standby must not touch the source either.
        let Some(lease) = effectively_once::fence(def, client, status, shutdown).await? else {
            return Ok(source_task::Finished::Stopped);
        };
        // The lease holder beats from now on. A failed beat (another
        // instance fenced this one out, or the broker is out of reach) stops
        // the run as a shutdown would, for a while, and fails it.
        let stop = shutdown.child_token();
        let work = effectively_once_run(def, client, lease, status, &stop);
        tokio::pin!(work);
        return tokio::select! {
            result = &mut work => result,
            lost = effectively_once::beat(def, client) => {
                stop.cancel();
                let _ = tokio::time::timeout(STOP_AFTER_LOST_BEAT, &mut work).await;
                Err(lost)
            }
        };
    }
    let context = source_context(def, status, None, None);
    let mut source = def.spec.open(&context).await?;
    let result = source_task::run(def, client, &mut source, status, shutdown).await;
    source.close().await;
    result
}

/// How long a run whose beat failed may take to stop as on shutdown
/// (abort or commit what is open, close the source) before it is dropped.
const STOP_AFTER_LOST_BEAT: Duration = Duration::from_secs(10);

/// An EFFECTIVELY_ONCE source's run once it holds the lease: recovered,
/// opened, and published in transactions.
async fn effectively_once_run<B: Broker>(
    def: &SourceDef,
    client: &B,
    lease: effectively_once::Lease<B::Producer>,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<source_task::Finished, TaskError> {
    let progress = tokio::select! {
        progress = effectively_once::recover(def, client) => progress?,
        () = shutdown.cancelled() => return Ok(source_task::Finished::Stopped),
    };
    effectively_once::same_origin(def, &progress)?;
    let mut context = source_context(def, status, progress.sequence, progress.state.clone());
    context.took_over = lease.fenced_out;
    let mut source = def.spec.open(&context).await?;
    let result =
        effectively_once::run(def, client, lease, progress, &mut source, status, shutdown).await;
    source.close().await;
    result
}

/// What a source is told when it opens.
fn source_context(
    def: &SourceDef,
    status: &ConnectorStatus,
    published: Option<sluice_connectors::Sequence>,
    state: Option<String>,
) -> sluice_connectors::SourceContext {
    sluice_connectors::SourceContext {
        name: format!("{}/{}/{}", def.tenant, def.namespace, def.name),
        guarantee: def.guarantee,
        published,
        state,
        took_over: false,
        snapshot: Arc::clone(&status.snapshot),
    }
}

/// The topics a sink reads now: its inputs, or the topics of its namespace
/// that `topicsPattern` matches, each partitioned topic as its partitions.
/// A pattern matches a partitioned topic by its name, as Pulsar's clients
/// match it, and then reads every partition.
pub(crate) async fn sink_topics<B: Broker>(
    def: &SinkDef,
    client: &B,
) -> Result<Vec<String>, PulsarError> {
    let named = match &def.topics_pattern {
        None => def.inputs.clone(),
        Some(pattern) => {
            let topics = client
                .topics_matching(&format!("{}/{}", def.tenant, def.namespace), pattern)
                .await?;
            if topics.is_empty() {
                debug!(connector = %def.name, pattern = %pattern, "no topic matches topicsPattern yet");
            }
            topics
                .iter()
                .map(|t| pulsar::partitioned_name(t).to_owned())
                .collect()
        }
    };
    client.partitions(&named).await
}

/// How instance `instance` of a sink subscribes.
fn consumer_options(def: &SinkDef, instance: u32) -> ConsumerOptions {
    ConsumerOptions {
        subscription: def.subscription.clone(),
        subscription_type: def.subscription_type,
        position: def.position,
        receiver_queue: RECEIVER_QUEUE,
        held_bytes: None,
        prefetch_bytes: None,
        nack_delay: def.nack_delay,
        ack_timeout: def.ack_timeout,
        consumer_name: Some(format!("{}-{instance}", def.name)),
        missing: def.missing_topics,
        started: Arc::default(),
    }
}

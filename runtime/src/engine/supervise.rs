//! One supervisor for every connector instance: connect, run, close; after
//! a failure, restart with backoff while the other instances keep running.
//! What differs between a source and a sink is one [`Attempt`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_connectors::Sink;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::broker::{Broker, Consume, Dial};
use super::status::{ConnectorStatus, State};
use super::{
    Backoff, HEALTHY_RUN, TaskError, guarded, renewal, sink_task, sink_topics, source_run,
};
use crate::config::{SinkDef, SourceDef};
use crate::pulsar::{self, ConsumerOptions};

/// A future of one attempt.
pub(super) type AttemptFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Next, TaskError>> + Send + 'a>>;

/// What an attempt came to.
#[derive(Debug)]
pub(super) enum Next {
    /// It stopped for good (shutdown, a source exhausted), as this says.
    Stop(String),
    /// Run again at once (a sink's topics changed, or it recycles).
    Again,
    /// Run again after this pause, with no failure counted (nothing for a
    /// sink to read yet).
    After(Duration),
}

/// One kind of connector, as its supervisor runs it.
pub(super) trait Attempt<B: Broker>: Send {
    /// How its client reads from the broker.
    const READING: pulsar::Reading;
    /// `source` or `sink`, for the log.
    const KIND: &'static str;

    /// One run on `client`, until `shutdown` or a failure.
    fn attempt<'a>(
        &'a mut self,
        client: &'a B,
        shutdown: &'a CancellationToken,
    ) -> AttemptFuture<'a>;
}

/// Run `attempt` on the broker `dial` connects to until shutdown, or until
/// it stops for good; restart it with backoff after each failure.
async fn supervise<D: Dial, A: Attempt<D::Broker>>(
    dial: &D,
    mut attempt: A,
    status: Arc<ConnectorStatus>,
    shutdown: CancellationToken,
) {
    let mut restarts = Restarts::default();
    loop {
        let started = Instant::now();
        status.set_state(State::Starting);
        let (mut run, mut held) = (None, None);
        let outcome = guarded(async {
            let client: &D::Broker = held.insert(dial.connect(A::READING).await?);
            let stop = &run
                .insert(renewal::Run::new(
                    &shutdown,
                    client.renew_at(),
                    &status.name,
                ))
                .stop;
            attempt.attempt(client, stop).await
        })
        .await;
        if let Some(client) = held.take() {
            client.close().await;
        }
        let delay = match outcome {
            // The client's credentials are renewed: a new client runs on.
            Ok(Next::Stop(_)) if run.as_ref().is_some_and(|r| r.renewing(&shutdown)) => continue,
            Ok(Next::Stop(what)) => {
                info!(connector = %status.name, kind = A::KIND, outcome = %what, "connector stopped");
                status.set_state(State::Stopped);
                return;
            }
            Ok(Next::Again) => continue,
            Ok(Next::After(delay)) => delay,
            Err(e) => restarts.failed(&status, started, &e),
        };
        if !pause(delay, &shutdown).await {
            status.set_state(State::Stopped);
            return;
        }
    }
}

/// Supervise a source.
pub(super) async fn supervise_source<D: Dial>(
    def: SourceDef,
    dial: &D,
    status: Arc<ConnectorStatus>,
    shutdown: CancellationToken,
) {
    let attempt = SourceAttempt {
        def,
        status: Arc::clone(&status),
    };
    supervise(dial, attempt, status, shutdown).await;
}

/// Supervise instance `instance` of a sink.
pub(super) async fn supervise_sink<D: Dial>(
    def: SinkDef,
    instance: u32,
    dial: &D,
    status: Arc<ConnectorStatus>,
    shutdown: CancellationToken,
) {
    let attempt = SinkAttempt {
        options: super::consumer_options(&def, instance),
        def,
        status: Arc::clone(&status),
    };
    supervise(dial, attempt, status, shutdown).await;
}

/// A source: fenced, recovered and transactional under EFFECTIVELY_ONCE,
/// published as it reads otherwise.
struct SourceAttempt {
    def: SourceDef,
    status: Arc<ConnectorStatus>,
}

impl<B: Broker> Attempt<B> for SourceAttempt {
    const READING: pulsar::Reading = pulsar::Reading::Direct;
    const KIND: &'static str = "source";

    fn attempt<'a>(
        &'a mut self,
        client: &'a B,
        shutdown: &'a CancellationToken,
    ) -> AttemptFuture<'a> {
        Box::pin(async move {
            let finished = source_run(&self.def, client, &self.status, shutdown).await?;
            Ok(Next::Stop(format!("{finished:?}")))
        })
    }
}

/// One instance of a sink, on its subscription.
struct SinkAttempt {
    def: SinkDef,
    options: ConsumerOptions,
    status: Arc<ConnectorStatus>,
}

impl<B: Broker> Attempt<B> for SinkAttempt {
    /// Through the relay that inflates compressed batches (decision 0019).
    const READING: pulsar::Reading = pulsar::Reading::Inflated;
    const KIND: &'static str = "sink";

    fn attempt<'a>(
        &'a mut self,
        client: &'a B,
        shutdown: &'a CancellationToken,
    ) -> AttemptFuture<'a> {
        Box::pin(async move {
            let (def, status) = (&self.def, &self.status);
            let topics = sink_topics(def, client).await?;
            if topics.is_empty() {
                // Nothing matches topicsPattern yet: look again later.
                return Ok(Next::After(sink_task::DISCOVERY_INTERVAL));
            }
            let context = sluice_connectors::SinkContext {
                name: format!("{}/{}/{}", def.tenant, def.namespace, def.name),
                guarantee: def.guarantee,
                skips: Arc::clone(&status.skips),
            };
            let mut sink = def.spec.open(&context).await?;
            let memory = sink_task::Memory::of(client.memory_limit(), topics.len());
            let options = ConsumerOptions {
                held_bytes: memory.held,
                prefetch_bytes: memory.prefetch,
                ..self.options.clone()
            };
            let mut consumer = client.consumer(&topics, &options).await?;
            let result = sink_task::run(
                def,
                client,
                &topics,
                &mut consumer,
                &mut sink,
                status,
                shutdown,
            )
            .await;
            consumer.close().await;
            sink.close().await;
            Ok(match result? {
                sink_task::Ended::Shutdown => Next::Stop("shutdown".to_owned()),
                sink_task::Ended::TopicsChanged | sink_task::Ended::Recycle => Next::Again,
            })
        })
    }
}

/// Wait out a restart delay; false when shutdown came first.
pub(super) async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// How often a connector that keeps failing with the same error says so
/// again in the log. `/readyz` and `/connectors/<name>` show it all along.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(600);

/// Restarts after a failure, and what the log says of them: an error is
/// logged when it first occurs, and the same error again only every
/// [`REPEAT_LOG_EVERY`], with the count of restarts in between, so that a
/// misconfiguration does not flood the log.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    backoff: Backoff,
    last: Option<(String, Instant)>,
    pub(super) unlogged: u64,
}

impl Restarts {
    pub(super) fn failed(
        &mut self,
        status: &ConnectorStatus,
        started: Instant,
        e: &dyn std::fmt::Display,
    ) -> Duration {
        if started.elapsed() > HEALTHY_RUN {
            self.backoff.reset();
            self.last = None;
        }
        let delay = self.backoff.next_delay();
        let text = e.to_string();
        status.set_error(&text);
        status.set_state(State::Restarting);
        status.count_restart();
        match &self.last {
            Some((last, at)) if *last == text && at.elapsed() < REPEAT_LOG_EVERY => {
                self.unlogged += 1;
            }
            Some((last, _)) if *last == text => {
                error!(connector = %status.name, error = %text, restart_in = ?delay,
                    restarts_since_last_logged = self.unlogged + 1, "connector still failing");
                self.last = Some((text, Instant::now()));
                self.unlogged = 0;
            }
            _ => {
                error!(connector = %status.name, error = %text, restart_in = ?delay, "connector failed");
                self.last = Some((text, Instant::now()));
                self.unlogged = 0;
            }
        }
        delay
    }
}

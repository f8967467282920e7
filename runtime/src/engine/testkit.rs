//! Connectors and definitions for the engine's unit tests: a sink and a
//! source that follow a script shared with the test, so that what they
//! were asked to do, and what they did, can be checked exactly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_connectors::{
    BatchPolicy, Commit, ConfigMap, ConfigReport, ConnectorError, Finding, Position, Prepare,
    Prepared, Sink, SinkConnector, SinkContext, SinkRecord, SinkSpec, Source, SourceBatch,
    SourceConnector, SourceContext, SourceRecord, SourceSpec, Written,
};

use crate::config::{
    Guarantee, MissingTopics, ProducerSettings, SinkDef, SourceDef, SubscriptionPosition,
    SubscriptionType,
};

/// What the test sink does and did.
#[derive(Debug, Default)]
pub(crate) struct SinkScript {
    /// Values committed, in order.
    pub(crate) written: Vec<String>,
    /// The size of each write asked for, in order.
    pub(crate) writes: Vec<usize>,
    /// Values the target rejects: a batch holding one fails whole.
    pub(crate) reject: HashSet<String>,
    /// Values rejected this many more times, then taken.
    pub(crate) reject_times: HashMap<String, u32>,
    /// Answer a rejection as refused records (the rest durable), as a sink
    /// without transactions does.
    pub(crate) refuse: bool,
    /// Writes to fail as retryable, from the next one.
    pub(crate) retryable: u32,
    /// Fail every write as a configuration error.
    pub(crate) misconfigured: bool,
    /// Panic on a write holding this value.
    pub(crate) panic_on: Option<String>,
    /// Records per write, at most.
    pub(crate) max_records: usize,
    /// Times opened.
    pub(crate) opened: u32,
    /// Offer a preparer, which makes a batch ready by noting its values.
    pub(crate) prepares: bool,
    /// The size of each batch prepared, in order.
    pub(crate) prepared: Vec<usize>,
    /// The size of each write of a prepared batch, in order.
    pub(crate) prepared_writes: Vec<usize>,
    /// Hold the first write until a batch has been prepared meanwhile.
    pub(crate) first_waits_for_a_prepare: bool,
    /// Told when a batch is prepared.
    pub(crate) on_prepare: Arc<tokio::sync::Notify>,
    /// Cancelled when a batch is prepared.
    pub(crate) stop_on_prepare: Option<tokio_util::sync::CancellationToken>,
}

/// A script shared by the test and the connectors it opens.
#[derive(Debug, Default)]
pub(crate) struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Shared<T> {
    pub(crate) fn get(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The test sink.
#[derive(Debug)]
pub(crate) struct ScriptSink(pub(crate) Shared<SinkScript>);

fn text(r: &SinkRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

/// Makes a batch ready by noting its values.
struct ScriptPreparer(Shared<SinkScript>);

impl Prepare for ScriptPreparer {
    fn prepare(&self, batch: &[SinkRecord]) -> Prepared {
        let values: Vec<String> = batch.iter().map(text).collect();
        let notify = {
            let mut s = self.0.get();
            s.prepared.push(batch.len());
            if let Some(stop) = &s.stop_on_prepare {
                stop.cancel();
            }
            Arc::clone(&s.on_prepare)
        };
        notify.notify_one();
        Prepared::new(values)
    }
}

impl Sink for ScriptSink {
    fn preparer(&self) -> Option<Arc<dyn Prepare>> {
        self.0
            .get()
            .prepares
            .then(|| Arc::new(ScriptPreparer(self.0.clone())) as Arc<dyn Prepare>)
    }

    async fn write_prepared(
        &mut self,
        batch: &[SinkRecord],
        prepared: Prepared,
    ) -> Result<Written, ConnectorError> {
        let values: Vec<String> = prepared.take().unwrap_or_default();
        assert_eq!(
            values,
            batch.iter().map(text).collect::<Vec<_>>(),
            "a prepared batch is the batch it was made from"
        );
        self.0.get().prepared_writes.push(batch.len());
        self.write(batch).await
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_records: self.0.get().max_records.max(1),
            max_wait: Duration::from_millis(5),
        }
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Written, ConnectorError> {
        let wait = {
            let mut s = self.0.get();
            let first = s.writes.is_empty() && s.first_waits_for_a_prepare;
            s.first_waits_for_a_prepare = false;
            first.then(|| Arc::clone(&s.on_prepare))
        };
        if let Some(prepared) = wait {
            prepared.notified().await;
        }
        let mut s = self.0.get();
        s.writes.push(batch.len());
        if let Some(p) = &s.panic_on
            && batch.iter().any(|r| text(r) == *p)
        {
            let p = p.clone();
            drop(s);
            panic!("the sink met {p}");
        }
        if s.misconfigured {
            return Err(ConnectorError::configuration("no such table"));
        }
        if s.retryable > 0 {
            s.retryable -= 1;
            return Err(ConnectorError::retryable("the target is restarting"));
        }
        let mut rejected = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let v = text(r);
            let times = s.reject_times.get_mut(&v);
            let once = match times {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            if once || s.reject.contains(&v) {
                rejected.push((
                    i,
                    ConnectorError::permanent(format!("{v} violates a check")),
                ));
            }
        }
        if rejected.is_empty() {
            s.written.extend(batch.iter().map(text));
            return Ok(Written::All);
        }
        if s.refuse {
            let refused: HashSet<usize> = rejected.iter().map(|(i, _)| *i).collect();
            let kept: Vec<String> = batch
                .iter()
                .enumerate()
                .filter(|(i, _)| !refused.contains(i))
                .map(|(_, r)| text(r))
                .collect();
            s.written.extend(kept);
            return Ok(Written::AllBut(rejected));
        }
        Err(rejected.swap_remove(0).1)
    }

    async fn close(&mut self) {}
}

impl SinkConnector for ScriptSink {
    const CLASS_NAMES: &'static [&'static str] = &["script-sink"];
    const KEYS: &'static [sluice_connectors::config::Key] = &[];
    type Config = Shared<SinkScript>;

    fn configure(_: &ConfigMap) -> (Option<Self::Config>, ConfigReport) {
        (None, ConfigReport::default())
    }

    async fn open(config: Self::Config, _: &SinkContext) -> Result<Self, ConnectorError> {
        config.get().opened += 1;
        Ok(Self(config))
    }

    async fn preflight(_: &Self::Config) -> Vec<Finding> {
        Vec::new()
    }
}

/// What the test source does and did. Like a real source, an opened one
/// resumes after the last position committed.
#[derive(Debug, Default)]
pub(crate) struct SourceScript {
    /// Every batch, in order.
    pub(crate) batches: Vec<SourceBatch>,
    /// When no batch is left: exhausted (`true`), or waiting forever.
    pub(crate) ends: bool,
    /// Positions committed, in order.
    pub(crate) committed: Vec<Position>,
    /// Calls of `read` that returned.
    pub(crate) reads: u32,
    /// Times opened.
    pub(crate) opened: u32,
    /// What the last opening was told: the sequence published and the
    /// state committed.
    pub(crate) context: Option<(Option<sluice_connectors::Sequence>, Option<String>)>,
    /// Fail opening this many more times.
    pub(crate) fail_opens: u32,
    /// The read of the batch at this index waits for the gate first.
    pub(crate) gate: Option<(usize, Arc<tokio::sync::Notify>)>,
    /// A read waits at the gate.
    pub(crate) at_gate: bool,
    /// Reads that began and were dropped before they returned.
    pub(crate) dropped_reads: u32,
    /// What the source says it reads.
    pub(crate) origin: Option<String>,
    /// Whether the last opening came after fencing out a silent instance.
    pub(crate) took_over: bool,
}

impl SourceScript {
    /// Add a batch of `records` ending at `checkpoint`.
    pub(crate) fn push(&mut self, records: Vec<SourceRecord>, checkpoint: Option<u64>) {
        self.batches.push(SourceBatch {
            records,
            checkpoint: checkpoint.map(Position),
            state: None,
        });
    }

    /// A script of `batches` batches of `per` records `r0`, `r1`, …, with
    /// sequences 1, 2, …; the `i`th batch ends at checkpoint `i + 1`. It
    /// ends after them when `ends`, or waits for more.
    pub(crate) fn numbered(batches: usize, per: usize, ends: bool) -> Shared<Self> {
        let script = Shared::<Self>::default();
        {
            let mut s = script.get();
            for b in 0..batches {
                let records = (0..per)
                    .map(|i| {
                        let n = b * per + i;
                        crate::engine::memory::record(&format!("r{n}"), n as u64 + 1)
                    })
                    .collect();
                s.push(records, Some(b as u64 + 1));
            }
            s.ends = ends;
        }
        script
    }

    /// Where a source opened now resumes: after the batch of the last
    /// position committed.
    fn resume(&self) -> usize {
        let Some(last) = self.committed.last() else {
            return 0;
        };
        self.batches
            .iter()
            .rposition(|b| b.checkpoint.is_some_and(|c| c <= *last))
            .map_or(0, |i| i + 1)
    }
}

/// The test source, and the next batch it reads.
#[derive(Debug)]
pub(crate) struct ScriptSource(pub(crate) Shared<SourceScript>, pub(crate) usize);

impl Source for ScriptSource {
    type Committer = ScriptCommitter;

    fn committer(&self) -> ScriptCommitter {
        ScriptCommitter(self.0.clone())
    }

    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        let unfinished = Unfinished(Some(self.0.clone()));
        let gate = {
            let s = self.0.get();
            s.gate.clone().filter(|(at, _)| *at == self.1)
        };
        if let Some((_, gate)) = gate {
            self.0.get().at_gate = true;
            gate.notified().await;
        }
        let next = {
            let mut s = self.0.get();
            match s.batches.get(self.1).cloned() {
                Some(b) => {
                    s.reads += 1;
                    self.1 += 1;
                    Some(Some(b))
                }
                None if s.ends => {
                    s.reads += 1;
                    Some(None)
                }
                None => None,
            }
        };
        match next {
            Some(b) => {
                unfinished.returned();
                Ok(b)
            }
            None => std::future::pending().await,
        }
    }

    async fn close(&mut self) {}
}

/// Counts a read dropped before it returned, when dropped itself.
struct Unfinished(Option<Shared<SourceScript>>);

impl Unfinished {
    fn returned(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(script) = &self.0 {
            script.get().dropped_reads += 1;
        }
    }
}

/// Records the positions committed, in order.
#[derive(Debug)]
pub(crate) struct ScriptCommitter(Shared<SourceScript>);

impl Commit for ScriptCommitter {
    async fn commit(&self, position: Position) -> Result<(), ConnectorError> {
        self.0.get().committed.push(position);
        Ok(())
    }
}

impl SourceConnector for ScriptSource {
    const CLASS_NAMES: &'static [&'static str] = &["script-source"];
    const NAMES_ITS_TOPICS: bool = true;
    const KEYS: &'static [sluice_connectors::config::Key] = &[];
    type Config = Shared<SourceScript>;

    fn configure(_: &ConfigMap) -> (Option<Self::Config>, ConfigReport) {
        (None, ConfigReport::default())
    }

    fn origin(config: &Self::Config) -> Option<String> {
        config.get().origin.clone()
    }

    async fn open(config: Self::Config, context: &SourceContext) -> Result<Self, ConnectorError> {
        let resume = {
            let mut s = config.get();
            if s.fail_opens > 0 {
                s.fail_opens -= 1;
                return Err(ConnectorError::retryable("the origin is down"));
            }
            s.opened += 1;
            s.context = Some((context.published, context.state.clone()));
            s.took_over = context.took_over;
            s.resume()
        };
        Ok(Self(config, resume))
    }

    async fn preflight(_: &Self::Config) -> Vec<Finding> {
        Vec::new()
    }
}

/// The input topic of [`sink_def`].
pub(crate) const INPUT: &str = "persistent://public/default/in";
/// The output topic of [`source_def`].
pub(crate) const OUTPUT: &str = "persistent://public/default/out";
/// The dead-letter topic of [`sink_def`].
pub(crate) const DEAD: &str = "persistent://public/default/dead";

/// A sink reading [`INPUT`] into `script`, dead-lettering to [`DEAD`].
pub(crate) fn sink_def(guarantee: Guarantee, script: &Shared<SinkScript>) -> SinkDef {
    SinkDef {
        name: "sink".into(),
        tenant: "public".into(),
        namespace: "default".into(),
        inputs: vec![INPUT.into()],
        topics_pattern: None,
        missing_topics: MissingTopics::Wait,
        subscription: "sub".into(),
        position: SubscriptionPosition::Earliest,
        subscription_type: SubscriptionType::Failover,
        guarantee,
        dead_letter_topic: Some(DEAD.into()),
        max_retries: 2,
        nack_delay: Duration::from_secs(1),
        ack_timeout: None,
        parallelism: 1,
        spec: SinkSpec::of::<ScriptSink>(script.clone()),
    }
}

/// A source publishing `script`'s records to [`OUTPUT`].
pub(crate) fn source_def(guarantee: Guarantee, script: &Shared<SourceScript>) -> SourceDef {
    SourceDef {
        name: "source".into(),
        tenant: "public".into(),
        namespace: "default".into(),
        topic: Some(OUTPUT.into()),
        guarantee,
        producer: ProducerSettings {
            max_pending_messages: 1000,
            compression: crate::config::Compression::None,
            batching: None,
        },
        publish_schema: false,
        spec: SourceSpec::of::<ScriptSource>(script.clone()),
    }
}

//! The registered connectors, behind one type each for the runtime: a
//! [`SourceSpec`] or [`SinkSpec`] is a validated configuration of any
//! connector, and an [`AnySource`] or [`AnySink`] an open one.
//!
//! The connector traits return futures of their own types, so the runtime
//! reaches them through object-safe twins here that box each future: one
//! allocation per batch, not per record.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use crate::api::{
    BatchPolicy, Commit, ConnectorError, Finding, Position, Prepare, Prepared, Sink, SinkConnector,
    SinkContext, SinkRecord, Source, SourceBatch, SourceConnector, SourceContext, Written,
};
use crate::config::{ConfigMap, ConfigReport, Key};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connector in the registry: `&Registered::<Datagen>::NEW`.
pub(crate) struct Registered<C>(PhantomData<fn() -> C>);

impl<C> Registered<C> {
    /// The entry for connector `C`.
    pub(crate) const NEW: Self = Self(PhantomData);
}

/// A source connector as the registry lists it.
pub trait SourceEntry: Sync {
    /// The `className` values that select it, its short name first.
    fn class_names(&self) -> &'static [&'static str];
    /// The built-in names of the Pulsar IO archives it stands in for.
    fn archives(&self) -> &'static [&'static str];
    /// True when it picks each record's topic itself.
    fn names_its_topics(&self) -> bool;
    /// The keys of its `configs`.
    fn keys(&self) -> &'static [Key];
    /// Read and validate `configs`. Pure: no I/O.
    fn configure(&self, configs: &ConfigMap) -> (Option<SourceSpec>, ConfigReport);
}

/// A sink connector as the registry lists it.
pub trait SinkEntry: Sync {
    /// The `className` values that select it, its short name first.
    fn class_names(&self) -> &'static [&'static str];
    /// The built-in names of the Pulsar IO archives it stands in for.
    fn archives(&self) -> &'static [&'static str];
    /// The keys of its `configs`.
    fn keys(&self) -> &'static [Key];
    /// Read and validate `configs`. Pure: no I/O.
    fn configure(&self, configs: &ConfigMap) -> (Option<SinkSpec>, ConfigReport);
}

impl<C: SourceConnector> SourceEntry for Registered<C> {
    fn class_names(&self) -> &'static [&'static str] {
        C::CLASS_NAMES
    }

    fn archives(&self) -> &'static [&'static str] {
        C::ARCHIVES
    }

    fn names_its_topics(&self) -> bool {
        C::NAMES_ITS_TOPICS
    }

    fn keys(&self) -> &'static [Key] {
        C::KEYS
    }

    fn configure(&self, configs: &ConfigMap) -> (Option<SourceSpec>, ConfigReport) {
        let (config, report) = C::configure(configs);
        let spec = config.map(|c| SourceSpec(Arc::new(Configured::<C, _>(c, PhantomData))));
        (spec, report)
    }
}

impl<C: SinkConnector> SinkEntry for Registered<C> {
    fn class_names(&self) -> &'static [&'static str] {
        C::CLASS_NAMES
    }

    fn archives(&self) -> &'static [&'static str] {
        C::ARCHIVES
    }

    fn keys(&self) -> &'static [Key] {
        C::KEYS
    }

    fn configure(&self, configs: &ConfigMap) -> (Option<SinkSpec>, ConfigReport) {
        let (config, report) = C::configure(configs);
        let spec = config.map(|c| SinkSpec(Arc::new(Configured::<C, _>(c, PhantomData))));
        (spec, report)
    }
}

/// The entry whose class names include `class_name`.
pub(crate) fn find<E: ?Sized>(
    entries: &'static [&'static E],
    names: impl Fn(&E) -> &'static [&'static str],
    class_name: &str,
) -> Option<&'static E> {
    entries
        .iter()
        .copied()
        .find(|e| names(e).contains(&class_name))
}

/// The built-in connector name an `archive` value refers to:
/// `builtin://<name>`, or a NAR file `pulsar-io-<name>-<version>.nar`.
pub(crate) fn archive_name(archive: &str) -> Option<&str> {
    if let Some(name) = archive.strip_prefix("builtin://") {
        return Some(name);
    }
    let file = archive.rsplit('/').next()?;
    file.strip_prefix("pulsar-io-")?.strip_suffix(".nar")
}

/// Whether the archive name `named` (`debezium-postgres-4.0.7`, or just
/// `debezium-postgres`) is the connector `name`, whatever its version.
pub(crate) fn archive_is(named: &str, name: &str) -> bool {
    named == name
        || named.strip_prefix(name).is_some_and(|rest| {
            rest.strip_prefix('-')
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit() || c == '@'))
        })
}

/// Every class name of `entries`, comma-separated, for error messages.
pub(crate) fn all_names<E: ?Sized>(
    entries: &'static [&'static E],
    names: impl Fn(&E) -> &'static [&'static str],
) -> String {
    entries
        .iter()
        .flat_map(|e| names(e).iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A connector's validated config, with the connector it is for.
struct Configured<C, K>(K, PhantomData<fn() -> C>);

impl<C, K: fmt::Debug> fmt::Debug for Configured<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

trait DynSourceSpec: fmt::Debug + Send + Sync {
    fn class_name(&self) -> &'static str;
    fn origin(&self) -> Option<String>;
    fn open<'a>(
        &'a self,
        context: &'a SourceContext,
    ) -> BoxFuture<'a, Result<AnySource, ConnectorError>>;
    fn preflight(&self) -> BoxFuture<'_, Vec<Finding>>;
}

impl<C: SourceConnector> DynSourceSpec for Configured<C, C::Config> {
    fn class_name(&self) -> &'static str {
        C::CLASS_NAMES[0]
    }

    fn origin(&self) -> Option<String> {
        C::origin(&self.0)
    }

    fn open<'a>(
        &'a self,
        context: &'a SourceContext,
    ) -> BoxFuture<'a, Result<AnySource, ConnectorError>> {
        Box::pin(async move {
            let source = C::open(self.0.clone(), context).await?;
            Ok(AnySource(Box::new(source)))
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Vec<Finding>> {
        Box::pin(C::preflight(&self.0))
    }
}

trait DynSinkSpec: fmt::Debug + Send + Sync {
    fn class_name(&self) -> &'static str;
    fn open<'a>(
        &'a self,
        context: &'a SinkContext,
    ) -> BoxFuture<'a, Result<AnySink, ConnectorError>>;
    fn preflight(&self) -> BoxFuture<'_, Vec<Finding>>;
}

impl<C: SinkConnector> DynSinkSpec for Configured<C, C::Config> {
    fn class_name(&self) -> &'static str {
        C::CLASS_NAMES[0]
    }

    fn open<'a>(
        &'a self,
        context: &'a SinkContext,
    ) -> BoxFuture<'a, Result<AnySink, ConnectorError>> {
        Box::pin(async move {
            let sink = C::open(self.0.clone(), context).await?;
            Ok(AnySink(Box::new(sink)))
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Vec<Finding>> {
        Box::pin(C::preflight(&self.0))
    }
}

/// A validated source configuration, of any registered connector.
#[derive(Debug, Clone)]
pub struct SourceSpec(Arc<dyn DynSourceSpec>);

impl SourceSpec {
    /// The connector's short class name.
    pub fn class_name(&self) -> &'static str {
        self.0.class_name()
    }

    /// A spec for connector `C`, configured with `config` directly: for
    /// tests of the runtime with connectors of their own.
    #[doc(hidden)]
    pub fn of<C: SourceConnector>(config: C::Config) -> Self {
        Self(Arc::new(Configured::<C, _>(config, PhantomData)))
    }

    /// What the source reads; see [`SourceConnector::origin`].
    pub fn origin(&self) -> Option<String> {
        self.0.origin()
    }

    /// Open the connector.
    pub async fn open(&self, context: &SourceContext) -> Result<AnySource, ConnectorError> {
        self.0.open(context).await
    }

    /// Findings about the source's system that would break a run, found
    /// without changing anything there.
    pub async fn preflight(&self) -> Vec<Finding> {
        self.0.preflight().await
    }
}

/// A validated sink configuration, of any registered connector.
#[derive(Debug, Clone)]
pub struct SinkSpec(Arc<dyn DynSinkSpec>);

impl SinkSpec {
    /// The connector's short class name.
    pub fn class_name(&self) -> &'static str {
        self.0.class_name()
    }

    /// A spec for connector `C`, configured with `config` directly: for
    /// tests of the runtime with connectors of their own.
    #[doc(hidden)]
    pub fn of<C: SinkConnector>(config: C::Config) -> Self {
        Self(Arc::new(Configured::<C, _>(config, PhantomData)))
    }

    /// Open the connector.
    pub async fn open(&self, context: &SinkContext) -> Result<AnySink, ConnectorError> {
        self.0.open(context).await
    }

    /// Findings about the sink's target that would break a run, found
    /// without changing anything there.
    pub async fn preflight(&self) -> Vec<Finding> {
        self.0.preflight().await
    }
}

trait DynSource: fmt::Debug + Send {
    fn committer(&self) -> AnyCommitter;
    fn read(&mut self) -> BoxFuture<'_, Result<Option<SourceBatch>, ConnectorError>>;
    fn close(&mut self) -> BoxFuture<'_, ()>;
}

impl<S: Source + fmt::Debug> DynSource for S {
    fn committer(&self) -> AnyCommitter {
        AnyCommitter(Arc::new(Source::committer(self)))
    }

    fn read(&mut self) -> BoxFuture<'_, Result<Option<SourceBatch>, ConnectorError>> {
        Box::pin(Source::read(self))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(Source::close(self))
    }
}

trait DynCommit: Send + Sync {
    fn commit(&self, position: Position) -> BoxFuture<'_, Result<(), ConnectorError>>;
}

impl<C: Commit> DynCommit for C {
    fn commit(&self, position: Position) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(Commit::commit(self, position))
    }
}

/// An open source connector.
#[derive(Debug)]
pub struct AnySource(Box<dyn DynSource>);

impl Source for AnySource {
    type Committer = AnyCommitter;

    fn committer(&self) -> AnyCommitter {
        self.0.committer()
    }

    fn read(&mut self) -> impl Future<Output = Result<Option<SourceBatch>, ConnectorError>> + Send {
        self.0.read()
    }

    fn close(&mut self) -> impl Future<Output = ()> + Send {
        self.0.close()
    }
}

/// The committer of an [`AnySource`].
#[derive(Clone)]
pub struct AnyCommitter(Arc<dyn DynCommit>);

impl Commit for AnyCommitter {
    fn commit(
        &self,
        position: Position,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        self.0.commit(position)
    }
}

trait DynSink: fmt::Debug + Send {
    fn batch_policy(&self) -> BatchPolicy;
    fn write<'a>(
        &'a mut self,
        batch: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Written, ConnectorError>>;
    fn preparer(&self) -> Option<Arc<dyn Prepare>>;
    fn write_prepared<'a>(
        &'a mut self,
        batch: &'a [SinkRecord],
        prepared: Prepared,
    ) -> BoxFuture<'a, Result<Written, ConnectorError>>;
    fn close(&mut self) -> BoxFuture<'_, ()>;
}

impl<S: Sink + fmt::Debug> DynSink for S {
    fn batch_policy(&self) -> BatchPolicy {
        Sink::batch_policy(self)
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Written, ConnectorError>> {
        Box::pin(Sink::write(self, batch))
    }

    fn preparer(&self) -> Option<Arc<dyn Prepare>> {
        Sink::preparer(self)
    }

    fn write_prepared<'a>(
        &'a mut self,
        batch: &'a [SinkRecord],
        prepared: Prepared,
    ) -> BoxFuture<'a, Result<Written, ConnectorError>> {
        Box::pin(Sink::write_prepared(self, batch, prepared))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(Sink::close(self))
    }
}

/// An open sink connector.
#[derive(Debug)]
pub struct AnySink(Box<dyn DynSink>);

impl Sink for AnySink {
    fn batch_policy(&self) -> BatchPolicy {
        self.0.batch_policy()
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Written, ConnectorError> {
        self.0.write(batch).await
    }

    fn preparer(&self) -> Option<Arc<dyn Prepare>> {
        self.0.preparer()
    }

    async fn write_prepared(
        &mut self,
        batch: &[SinkRecord],
        prepared: Prepared,
    ) -> Result<Written, ConnectorError> {
        self.0.write_prepared(batch, prepared).await
    }

    fn close(&mut self) -> impl Future<Output = ()> + Send {
        self.0.close()
    }
}

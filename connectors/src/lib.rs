//! The sluice connector API and the built-in connectors.
//!
//! A connector moves records between an external system and the runtime. It
//! never sees a Pulsar type: the runtime owns every interaction with the
//! broker. Which connectors exist is the explicit list in this file: a
//! `className` picks a [`SourceKind`] or [`SinkKind`], its `configs` are
//! validated purely into a [`SourceSpec`] or [`SinkSpec`], and a spec opens
//! a connector.

pub mod api;
pub mod config;
pub mod datagen;
pub mod db_sink;
pub mod debezium;
pub mod file_sink;
pub mod postgres_cdc;
mod time;

pub use api::{
    BatchPolicy, ConnectorError, ErrorKind, Finding, Guarantee, Position, Sequence, Severity, Sink,
    SinkContext, SinkRecord, Skips, Source, SourceBatch, SourceContext, SourceRecord,
};
pub use config::{ConfigIssue, ConfigMap, ConfigReport, ConfigValue, Secret};

use datagen::{Datagen, DatagenConfig};
use db_sink::{DbSink, DbSinkConfig};
use file_sink::{FileSink, FileSinkConfig};
use postgres_cdc::{PostgresCdc, PostgresCdcConfig};

/// The source connectors, by the `className` that selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `datagen`: deterministic generated records.
    Datagen,
    /// `postgres-cdc`: change data capture from Postgres.
    PostgresCdc,
}

impl SourceKind {
    /// Every accepted `className`, for error messages.
    pub const CLASS_NAMES: &'static str =
        "datagen, postgres-cdc, org.apache.pulsar.io.debezium.postgres.DebeziumPostgresSource";

    /// The connector a `className` names.
    pub fn from_class_name(name: &str) -> Option<Self> {
        match name {
            "datagen" => Some(Self::Datagen),
            "postgres-cdc" | "org.apache.pulsar.io.debezium.postgres.DebeziumPostgresSource" => {
                Some(Self::PostgresCdc)
            }
            _ => None,
        }
    }

    /// True when the connector picks each record's topic itself, so that
    /// `topicName` is optional.
    pub fn names_its_topics(self) -> bool {
        match self {
            Self::Datagen => false,
            Self::PostgresCdc => true,
        }
    }

    /// Validate `configs` for this connector. Pure: no I/O.
    pub fn validate(self, configs: &ConfigMap) -> (Option<SourceSpec>, ConfigReport) {
        match self {
            Self::Datagen => {
                let (c, report) = DatagenConfig::from_configs(configs);
                (c.map(SourceSpec::Datagen), report)
            }
            Self::PostgresCdc => {
                let (c, report) = PostgresCdcConfig::from_configs(configs);
                (c.map(|c| SourceSpec::PostgresCdc(Box::new(c))), report)
            }
        }
    }
}

/// A validated source configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// `datagen`.
    Datagen(DatagenConfig),
    /// `postgres-cdc`.
    PostgresCdc(Box<PostgresCdcConfig>),
}

impl SourceSpec {
    /// Open the connector.
    pub async fn open(&self, context: &SourceContext) -> Result<AnySource, ConnectorError> {
        match self {
            Self::Datagen(c) => Ok(AnySource::Datagen(Datagen::open(c.clone()).await?)),
            Self::PostgresCdc(c) => Ok(AnySource::PostgresCdc(Box::new(
                PostgresCdc::open_with((**c).clone(), context).await?,
            ))),
        }
    }

    /// Findings about the source's system that would break a run, found
    /// without changing anything there.
    pub async fn preflight(&self) -> Vec<Finding> {
        match self {
            Self::Datagen(c) => datagen::preflight(c).await,
            Self::PostgresCdc(c) => postgres_cdc::preflight(c).await,
        }
    }
}

/// An open source connector.
#[derive(Debug)]
pub enum AnySource {
    /// `datagen`.
    Datagen(Datagen),
    /// `postgres-cdc`.
    PostgresCdc(Box<PostgresCdc>),
}

impl Source for AnySource {
    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        match self {
            Self::Datagen(s) => s.read().await,
            Self::PostgresCdc(s) => s.read().await,
        }
    }

    async fn commit(&mut self, position: Position) -> Result<(), ConnectorError> {
        match self {
            Self::Datagen(s) => s.commit(position).await,
            Self::PostgresCdc(s) => s.commit(position).await,
        }
    }

    async fn close(&mut self) {
        match self {
            Self::Datagen(s) => s.close().await,
            Self::PostgresCdc(s) => s.close().await,
        }
    }
}

/// The sink connectors, by the `className` that selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `file`: JSON lines in a local file.
    File,
    /// `jdbc`: a database.
    Jdbc,
}

impl SinkKind {
    /// Every accepted `className`, for error messages.
    pub const CLASS_NAMES: &'static str = "file, jdbc, org.apache.pulsar.io.jdbc.PostgresJdbcAutoSchemaSink, \
         org.apache.pulsar.io.jdbc.MariadbJdbcAutoSchemaSink, org.apache.pulsar.io.jdbc.SqliteJdbcAutoSchemaSink";

    /// The connector a `className` names.
    pub fn from_class_name(name: &str) -> Option<Self> {
        match name {
            "file" => Some(Self::File),
            "jdbc"
            | "org.apache.pulsar.io.jdbc.PostgresJdbcAutoSchemaSink"
            | "org.apache.pulsar.io.jdbc.MariadbJdbcAutoSchemaSink"
            | "org.apache.pulsar.io.jdbc.SqliteJdbcAutoSchemaSink" => Some(Self::Jdbc),
            _ => None,
        }
    }

    /// Validate `configs` for this connector. Pure: no I/O.
    pub fn validate(self, configs: &ConfigMap) -> (Option<SinkSpec>, ConfigReport) {
        match self {
            Self::File => {
                let (c, report) = FileSinkConfig::from_configs(configs);
                (c.map(SinkSpec::File), report)
            }
            Self::Jdbc => {
                let (c, report) = DbSinkConfig::from_configs(configs);
                (c.map(|c| SinkSpec::Jdbc(Box::new(c))), report)
            }
        }
    }
}

/// A validated sink configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    /// `file`.
    File(FileSinkConfig),
    /// `jdbc`.
    Jdbc(Box<DbSinkConfig>),
}

impl SinkSpec {
    /// Open the connector. The file sink has no transactions to keep a
    /// watermark in: under EFFECTIVELY_ONCE it writes at least once.
    pub async fn open(&self, context: &SinkContext) -> Result<AnySink, ConnectorError> {
        match self {
            Self::File(c) => Ok(AnySink::File(FileSink::open(c.clone()).await?)),
            Self::Jdbc(c) => Ok(AnySink::Jdbc(Box::new(
                DbSink::open_with((**c).clone(), context).await?,
            ))),
        }
    }

    /// Findings about the sink's target that would break a run, found
    /// without changing anything there.
    pub async fn preflight(&self) -> Vec<Finding> {
        match self {
            Self::File(c) => file_sink::preflight(c).await,
            Self::Jdbc(c) => db_sink::preflight(c).await,
        }
    }
}

/// An open sink connector.
#[derive(Debug)]
pub enum AnySink {
    /// `file`.
    File(FileSink),
    /// `jdbc`.
    Jdbc(Box<DbSink>),
}

impl Sink for AnySink {
    fn batch_policy(&self) -> BatchPolicy {
        match self {
            Self::File(s) => s.batch_policy(),
            Self::Jdbc(s) => s.batch_policy(),
        }
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), ConnectorError> {
        match self {
            Self::File(s) => s.write(batch).await,
            Self::Jdbc(s) => s.write(batch).await,
        }
    }

    async fn close(&mut self) {
        match self {
            Self::File(s) => s.close().await,
            Self::Jdbc(s) => s.close().await,
        }
    }
}

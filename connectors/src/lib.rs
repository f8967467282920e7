//! The sluice connector API and the built-in connectors.
//!
//! A connector moves records between an external system and the runtime. It
//! never sees a Pulsar type: the runtime owns every interaction with the
//! broker. A connector is one type that implements [`SourceConnector`] or
//! [`SinkConnector`], and the lists below are every connector there is: a
//! `className` picks one, its `configs` are validated purely into a
//! [`SourceSpec`] or [`SinkSpec`], and a spec opens it.

pub mod api;
pub mod config;
pub mod datagen;
pub mod db_sink;
pub mod debezium;
pub mod file_sink;
#[doc(hidden)]
pub mod fuzzing;
pub mod http_sink;
pub mod http_source;
#[cfg(test)]
mod key_docs;
mod message_id;
pub mod postgres_cdc;
mod registry;
pub mod secret_files;
pub mod signature;
pub mod state_file;
pub mod time;
pub mod tls;

pub use api::{
    BatchPolicy, Commit, ConnectorError, ErrorKind, Finding, Guarantee, Origin, Position, Prepare,
    Prepared, RecordSchema, Sequence, Severity, Sink, SinkConnector, SinkContext, SinkRecord,
    Skips, SnapshotBoard, SnapshotReport, Source, SourceBatch, SourceConnector, SourceContext,
    SourceRecord, TableCopy, Written,
};
pub use config::{ConfigIssue, ConfigMap, ConfigReport, ConfigValue, Secret};

/// Make ring the process's TLS provider, for the clients that take the
/// process's default (the database driver's, for one): without one, such a
/// client panics when it first builds a TLS configuration. Call once, at
/// start; later calls change nothing.
pub fn install_tls_provider() {
    tls::install_default_provider();
}
pub use registry::{
    AnyCommitter, AnySink, AnySource, SinkEntry, SinkSpec, SourceEntry, SourceSpec,
};

use registry::Registered;

/// Every source connector.
static SOURCES: &[&dyn SourceEntry] = &[
    &Registered::<datagen::Datagen>::NEW,
    &Registered::<postgres_cdc::PostgresCdc>::NEW,
    &Registered::<http_source::HttpSource>::NEW,
];

/// Every sink connector.
static SINKS: &[&dyn SinkEntry] = &[
    &Registered::<file_sink::FileSink>::NEW,
    &Registered::<db_sink::DbSink>::NEW,
    &Registered::<http_sink::HttpSink>::NEW,
];

/// The source connector a `className` names.
pub fn source(class_name: &str) -> Option<&'static dyn SourceEntry> {
    registry::find(SOURCES, SourceEntry::class_names, class_name)
}

/// The sink connector a `className` names.
pub fn sink(class_name: &str) -> Option<&'static dyn SinkEntry> {
    registry::find(SINKS, SinkEntry::class_names, class_name)
}

/// The source connector an `archive` (`builtin://debezium-postgres`,
/// `connectors/pulsar-io-debezium-postgres-4.0.7.nar`) stands for, when a
/// file gives no `className`.
pub fn source_for_archive(archive: &str) -> Option<&'static dyn SourceEntry> {
    let named = registry::archive_name(archive)?;
    SOURCES
        .iter()
        .copied()
        .find(|e| e.archives().iter().any(|a| registry::archive_is(named, a)))
}

/// The sink connector an `archive` stands for; see [`source_for_archive`].
pub fn sink_for_archive(archive: &str) -> Option<&'static dyn SinkEntry> {
    let named = registry::archive_name(archive)?;
    SINKS
        .iter()
        .copied()
        .find(|e| e.archives().iter().any(|a| registry::archive_is(named, a)))
}

/// Every source `className`, for error messages.
pub fn source_class_names() -> String {
    registry::all_names(SOURCES, SourceEntry::class_names)
}

/// Every sink `className`, for error messages.
pub fn sink_class_names() -> String {
    registry::all_names(SINKS, SinkEntry::class_names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_name_picks_one_connector() {
        // A source and a sink may share a name; two sources or two sinks not.
        for names in [source_class_names(), sink_class_names()] {
            let mut seen = std::collections::HashSet::new();
            for name in names.split(", ") {
                assert!(seen.insert(name), "{name} is registered twice");
            }
        }
        assert_eq!(
            source("datagen").map(|e| e.class_names()[0]),
            Some("datagen")
        );
        assert_eq!(
            source("org.apache.pulsar.io.debezium.postgres.DebeziumPostgresSource")
                .map(|e| e.class_names()[0]),
            Some("postgres-cdc")
        );
        assert_eq!(
            sink("org.apache.pulsar.io.jdbc.SqliteJdbcAutoSchemaSink").map(|e| e.class_names()[0]),
            Some("jdbc")
        );
        assert!(source("jdbc").is_none() && sink("datagen").is_none());
    }

    #[test]
    fn an_archive_names_its_connector_whatever_its_version() {
        let class = |e: Option<&'static dyn SourceEntry>| e.map(|e| e.class_names()[0]);
        for archive in [
            "builtin://debezium-postgres",
            "connectors/pulsar-io-debezium-postgres-@pulsar:version@.nar",
            "/opt/pulsar/connectors/pulsar-io-debezium-postgres-4.0.7.nar",
        ] {
            assert_eq!(
                class(source_for_archive(archive)),
                Some("postgres-cdc"),
                "{archive}"
            );
        }
        assert_eq!(class(source_for_archive("builtin://debezium-mysql")), None);
        assert_eq!(
            class(source_for_archive("pulsar-io-debezium-postgresql-1.nar")),
            None
        );
        let sink_class = |a: &str| sink_for_archive(a).map(|e| e.class_names()[0]);
        assert_eq!(sink_class("pulsar-io-jdbc-sqlite-4.0.7.nar"), Some("jdbc"));
        assert_eq!(sink_class("builtin://http"), Some("http"));
        assert_eq!(class(source_for_archive("builtin://netty")), Some("http"));
    }
}

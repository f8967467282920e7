//! Settings of the Postgres CDC source: the keys of Pulsar's Debezium
//! Postgres source, validated without I/O.

use std::time::Duration;

use super::tls::{SslMode, TlsSettings};
use super::transforms::{self, Transforms};
use crate::config::{ConfigMap, ConfigReader, ConfigReport, Key, Kind, Secret, Unset};

/// `database.sslmode` unless set: TLS when the server offers it, as libpq
/// and Debezium default.
pub(crate) const DEFAULT_SSL_MODE: SslMode = SslMode::Prefer;

/// `database.port` unless set.
pub(crate) const DEFAULT_PORT: u16 = 5432;
/// `slot.name` unless set.
pub(crate) const DEFAULT_SLOT: &str = "sluice";
/// `publication.name` unless set.
pub(crate) const DEFAULT_PUBLICATION: &str = "sluice";
/// `snapshot.fetch.size` unless set: rows read per chunk of the snapshot.
pub(crate) const DEFAULT_FETCH_SIZE: u64 = 10_240;
/// `max.batch.size` unless set: records handed to the runtime per read.
pub(crate) const DEFAULT_MAX_BATCH: u64 = 2048;
/// `max.queue.size.in.bytes` unless set: bytes of records made ahead of the
/// runtime, at most.
pub(crate) const DEFAULT_QUEUE_BYTES: u64 = 16 * 1024 * 1024;
/// Batches made ahead of the runtime, at most, besides the one being made
/// and the one the runtime holds: the queue's bytes are shared among them.
pub(crate) const READ_AHEAD: usize = 2;
/// WAL messages the replication connection reads ahead of decoding, at most.
pub(crate) const REPLICATION_READ_AHEAD: usize = 16;
/// `status.update.interval.ms` unless set.
pub(crate) const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Why the Debezium connector's and Pulsar wrapper's own keys mean nothing
/// here.
const WRITES_ITS_OWN: &str = "sluice writes JSON Debezium envelopes to Pulsar itself";

/// The keys the Postgres CDC source takes.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("database.hostname", Kind::Text, Unset::Required, "the server"),
    Key::new("database.port", Kind::Integer, Unset::Int(DEFAULT_PORT as u64), "the server's port"),
    Key::new("database.user", Kind::Text, Unset::Required, "the user, which needs the REPLICATION attribute"),
    Key::new("database.password", Kind::Secret, Unset::Nothing, "the user's password"),
    Key::new("database.dbname", Kind::Text, Unset::Required, "the database"),
    Key::new("database.sslmode", Kind::Text, Unset::Text("prefer"), "`disable`, `prefer` (TLS when the server offers it, unverified), `require` (TLS, unverified; with `database.sslrootcert`, as `verify-ca`), `verify-ca` (the certificate chains to `database.sslrootcert`), `verify-full` (and names `database.hostname`)"),
    Key::new("database.sslrootcert", Kind::Text, Unset::Nothing, "the CA certificates (PEM) to verify the server with; required by `verify-ca` and `verify-full`"),
    Key::new("database.sslcert", Kind::Text, Unset::Nothing, "a client certificate (PEM), with `database.sslkey`, for servers that ask for one"),
    Key::new("database.sslkey", Kind::Text, Unset::Nothing, "the client certificate's key (PEM)"),
    Key::new("topic.prefix", Kind::Text, Unset::Said("required (or `database.server.name`)"), "topics are `<topic.prefix>.<schema>.<table>`"),
    Key::new("database.server.name", Kind::Text, Unset::Nothing, "Debezium 1.x's name of `topic.prefix`, used when `topic.prefix` is unset"),
    Key::new("table.include.list", Kind::List, Unset::Said("all tables"), "comma-separated regexes over `schema.table`"),
    Key::new("table.exclude.list", Kind::List, Unset::Nothing, "comma-separated regexes over `schema.table`"),
    Key::new("schema.include.list", Kind::List, Unset::Said("all schemas"), "comma-separated regexes over the schema name"),
    Key::new("schema.exclude.list", Kind::List, Unset::Nothing, "comma-separated regexes over the schema name"),
    Key::old_name("table.whitelist", "table.include.list"),
    Key::old_name("table.blacklist", "table.exclude.list"),
    Key::old_name("schema.whitelist", "schema.include.list"),
    Key::old_name("schema.blacklist", "schema.exclude.list"),
    Key::new("slot.name", Kind::Text, Unset::Text(DEFAULT_SLOT), "the replication slot: lower-case letters, digits and `_`, at most 63"),
    Key::new("slot.adopt", Kind::Flag, Unset::Flag(false), "take over an existing slot that another client made (Pulsar's Debezium source, when moving from it: docs/migration.md): stream from its confirmed position without a snapshot, and own it from then on. Without it, sluice refuses a slot it did not create"),
    Key::new("slot.drop.on.stop", Kind::Flag, Unset::Flag(false), "must be `false`: sluice never drops a slot on stop"),
    Key::new("publication.name", Kind::Text, Unset::Text(DEFAULT_PUBLICATION), "the publication: lower-case letters, digits and `_`, at most 63"),
    Key::new("publication.autocreate.mode", Kind::Text, Unset::Text("filtered"), "`filtered` (the selected tables that have a replica identity) or `disabled` (it must exist); `all_tables` is refused (below)"),
    Key::new("plugin.name", Kind::Text, Unset::Text("pgoutput"), "must be `pgoutput`"),
    Key::new("snapshot.mode", Kind::Text, Unset::Text("initial"), "`initial`, `when_needed`, `never`, `initial_only`, `always` (below); Debezium 1.x's `exported` is taken as `initial`, and `no_data` as `never`"),
    Key::new("snapshot.fetch.size", Kind::Integer, Unset::Int(DEFAULT_FETCH_SIZE), "rows per snapshot chunk, at most (fewer when rows are wide: see \"Memory\")"),
    Key::new("max.batch.size", Kind::Integer, Unset::Int(DEFAULT_MAX_BATCH), "records per batch handed to the runtime"),
    Key::new("max.queue.size.in.bytes", Kind::Integer, Unset::Int(DEFAULT_QUEUE_BYTES), "bytes of records made ahead of the runtime, at most (see \"Memory\")"),
    Key::new("heartbeat.interval.ms", Kind::Integer, Unset::Said("off"), "emit `pg_logical_emit_message` this often, so that an idle database lets the slot advance"),
    Key::new("status.update.interval.ms", Kind::Integer, Unset::Int(DEFAULT_STATUS_INTERVAL.as_millis() as u64), "how often the confirmed position is reported"),
    Key::new("signal.data.collection", Kind::Text, Unset::Nothing, "a signal table (`schema.table`, `public` when no schema is given), as Debezium's: a row inserted into it asks for a snapshot of some tables, or stops one (below)"),
    Key::new("signal.enabled.channels", Kind::List, Unset::Text("source"), "only `source` (the signal table) is read; other channels are warned about"),
    Key::new("json-with-envelope", Kind::Flag, Unset::Flag(false), "must be `false`: sluice publishes the Debezium payload, not Kafka Connect's schema-and-payload envelope"),
    Key::new("decimal.handling.mode", Kind::Text, Unset::Text("string"), "must be `string`: numeric values are exact strings"),
    Key::new("time.precision.mode", Kind::Text, Unset::Text("adaptive"), "must be `adaptive` or `adaptive_time_microseconds`: times are in microseconds"),
    Key::new("transforms", Kind::List, Unset::Nothing, "Debezium's `unwrap` and logical-table router, configured as Kafka Connect configures them (below, \"Transforms\")").nested(),
    Key::ignored("key.converter", WRITES_ITS_OWN),
    Key::ignored("value.converter", WRITES_ITS_OWN),
    Key::ignored("key.converter.schemas.enable", WRITES_ITS_OWN),
    Key::ignored("value.converter.schemas.enable", WRITES_ITS_OWN),
    Key::ignored("pulsar.service.url", WRITES_ITS_OWN),
    Key::ignored("offset.storage.topic", WRITES_ITS_OWN),
    Key::ignored("offset.storage", WRITES_ITS_OWN),
    Key::ignored("database.history", WRITES_ITS_OWN),
    Key::ignored("database.history.pulsar.topic", WRITES_ITS_OWN),
    Key::ignored("database.history.pulsar.service.url", WRITES_ITS_OWN),
    Key::ignored("database.history.pulsar.reader.config", WRITES_ITS_OWN),
    Key::ignored("offset.storage.reader.config", WRITES_ITS_OWN),
    Key::ignored("task.class", WRITES_ITS_OWN),
    Key::ignored("schema.history.internal", WRITES_ITS_OWN),
    Key::ignored("schema.history.internal.pulsar.topic", WRITES_ITS_OWN),
    Key::ignored("schema.history.internal.pulsar.service.url", WRITES_ITS_OWN),
    Key::ignored("tombstones.on.delete", WRITES_ITS_OWN),
    Key::ignored("include.schema.changes", WRITES_ITS_OWN),
    Key::ignored("provide.transaction.metadata", WRITES_ITS_OWN),
    Key::ignored("database.tcpKeepAlive", WRITES_ITS_OWN),
    Key::ignored("connector.class", WRITES_ITS_OWN),
    Key::ignored("tasks.max", WRITES_ITS_OWN),
];

/// `snapshot.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Snapshot when the slot is new, then stream.
    Initial,
    /// Never snapshot; stream from the slot.
    Never,
    /// Snapshot, then stop, without a slot.
    InitialOnly,
    /// Snapshot on every start (with a new slot), then stream.
    Always,
    /// As `Initial`, and take a new snapshot when the slot sluice streamed
    /// from is gone or invalidated, rather than stop at the gap.
    WhenNeeded,
}

/// `publication.autocreate.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationMode {
    /// Create the publication for the included tables when it is missing.
    Filtered,
    /// Never create it; it must exist.
    Disabled,
}

/// Validated Postgres CDC settings.
#[derive(Clone, PartialEq)]
pub struct PostgresCdcConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User, which needs the REPLICATION attribute.
    pub user: String,
    /// Password, if the server asks for one.
    pub password: Option<Secret>,
    /// The database.
    pub dbname: String,
    /// Topics are `<prefix>.<schema>.<table>`.
    pub topic_prefix: String,
    /// `schema.table` patterns to include; empty includes all.
    pub include: Vec<String>,
    /// `schema.table` patterns to exclude.
    pub exclude: Vec<String>,
    /// Schema patterns to include (empty: every schema).
    pub schema_include: Vec<String>,
    /// Schema patterns to exclude.
    pub schema_exclude: Vec<String>,
    /// The replication slot.
    pub slot: String,
    /// Take over an existing slot that another client created (Pulsar's
    /// Java Debezium source, when moving from it): stream from its
    /// confirmed position, without a snapshot, and own it from then on.
    pub adopt_slot: bool,
    /// The publication.
    pub publication: String,
    /// Whether and how to create the publication.
    pub publication_mode: PublicationMode,
    /// When to snapshot.
    pub snapshot_mode: SnapshotMode,
    /// Rows per snapshot chunk.
    pub fetch_size: u64,
    /// `signal.data.collection`: the table (`schema.table`) whose inserted
    /// rows ask for a snapshot of some tables, or stop one, as Debezium's
    /// signaling table does.
    pub signal_table: Option<String>,
    /// Records per read.
    pub max_batch: usize,
    /// Bytes of records made ahead of the runtime, at most
    /// (`max.queue.size.in.bytes`); a single larger record still passes.
    pub queue_bytes: u64,
    /// Emit a heartbeat message this often, so that an idle database lets
    /// the slot advance; `None` never.
    pub heartbeat: Option<Duration>,
    /// How often the confirmed position is reported to the server.
    pub status_interval: Duration,
    /// TLS on every connection the source opens.
    pub tls: TlsSettings,
    /// Debezium's transforms on every event that leaves the source.
    pub transforms: Transforms,
}

impl std::fmt::Debug for PostgresCdcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCdcConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("dbname", &self.dbname)
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .field("snapshot_mode", &self.snapshot_mode)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Slot and publication names go into replication commands: keep them to
/// what Postgres accepts for a slot name.
fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `database.sslmode` and its certificate files. The files are read when
/// the source connects, not here.
fn tls_settings(r: &ConfigReader<'_>) -> TlsSettings {
    let mode = match r.string("database.sslmode") {
        None => DEFAULT_SSL_MODE,
        Some(text) => SslMode::parse(&text).unwrap_or_else(|| {
            r.error(
                "database.sslmode",
                format!(
                    "\"{text}\" is not one of disable, prefer, require, verify-ca, verify-full"
                ),
            );
            DEFAULT_SSL_MODE
        }),
    };
    let root_cert = r.string("database.sslrootcert").map(Into::into);
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
        r.error(
            "database.sslrootcert",
            "is required with verify-ca and verify-full: the CA certificate (PEM) that signed the server's certificate",
        );
    }
    let client_cert = r
        .pair("database.sslcert", "database.sslkey")
        .map(|(cert, key)| (cert.into(), key.into()));
    if mode == SslMode::Disable && (root_cert.is_some() || client_cert.is_some()) {
        r.error(
            "database.sslmode",
            "is disable, but certificate files are set: choose require, verify-ca or verify-full",
        );
    }
    TlsSettings {
        mode,
        root_cert,
        client_cert,
    }
}

impl PostgresCdcConfig {
    /// Bytes at which a batch is cut: the queue's bytes shared among the
    /// batches made ahead, the one being made and the one the runtime holds.
    pub(crate) fn batch_bytes(&self) -> u64 {
        (self.queue_bytes / (READ_AHEAD as u64 + 2)).max(1)
    }

    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs, KEYS, "the postgres-cdc source");
        let host = r.required_string("database.hostname");
        let port = u16::try_from(r.int("database.port")).unwrap_or_else(|_| {
            r.error("database.port", "must be a port number");
            DEFAULT_PORT
        });
        let user = r.required_string("database.user");
        let password = r.secret("database.password");
        let dbname = r.required_string("database.dbname");
        let tls = tls_settings(&r);
        let server_name = r.string("database.server.name");
        let topic_prefix = r.string("topic.prefix").or(server_name);
        if topic_prefix.is_none() {
            r.error("topic.prefix", "is required (or database.server.name)");
        }
        let include = patterns(&r, "table.include.list");
        let exclude = patterns(&r, "table.exclude.list");
        let schema_include = patterns(&r, "schema.include.list");
        let schema_exclude = patterns(&r, "schema.exclude.list");
        let slot = identifier(&r, "slot.name");
        let adopt_slot = r.flag("slot.adopt");
        let signal_table = signal_table(&r);
        let publication = identifier(&r, "publication.name");
        let publication_mode = publication_mode(&r);
        let snapshot_mode = snapshot_mode(&r);
        refuse_unsupported(&r);
        let fetch_size = r.int("snapshot.fetch.size").max(1);
        let max_batch = r.int("max.batch.size").max(1) as usize;
        let queue_bytes = r.int("max.queue.size.in.bytes").max(1);
        let heartbeat = r
            .u64("heartbeat.interval.ms")
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let status_interval = r
            .u64("status.update.interval.ms")
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_STATUS_INTERVAL, Duration::from_millis);
        let transforms = transforms::from_configs(&r);
        let report = r.finish();
        let config = match (host, user, dbname, topic_prefix) {
            (Some(host), Some(user), Some(dbname), Some(topic_prefix))
                if report.errors.is_empty() =>
            {
                Some(Self {
                    host,
                    port,
                    user,
                    password,
                    dbname,
                    topic_prefix,
                    include,
                    exclude,
                    schema_include,
                    schema_exclude,
                    slot,
                    adopt_slot,
                    publication,
                    publication_mode,
                    snapshot_mode,
                    fetch_size,
                    signal_table,
                    max_batch,
                    queue_bytes,
                    heartbeat,
                    status_interval,
                    tls,
                    transforms,
                })
            }
            _ => None,
        };
        (config, report)
    }
}

/// A list of `schema.table` (or schema) patterns, each a regex that must
/// compile. Debezium 1.x's `whitelist` and `blacklist` names are the
/// lists' old names in the key table.
fn patterns(r: &ConfigReader<'_>, key: &str) -> Vec<String> {
    let patterns = r.string_list(key).unwrap_or_default();
    for p in &patterns {
        if let Err(e) = regex_lite::Regex::new(&format!("^(?:{p})$")) {
            r.error(key, format!("\"{p}\" is not a regular expression: {e}"));
        }
    }
    patterns
}

/// A slot or publication name.
fn identifier(r: &ConfigReader<'_>, key: &str) -> String {
    let name = r.text(key);
    if !valid_identifier(&name) {
        r.error(
            key,
            "must be lower-case letters, digits and '_', at most 63",
        );
    }
    name
}

/// `signal.data.collection`, with `public` as its schema when it names
/// none; `signal.enabled.channels` must take it.
fn signal_table(r: &ConfigReader<'_>) -> Option<String> {
    let table = r.string("signal.data.collection").map(|t| {
        if t.contains('.') {
            t
        } else {
            format!("public.{t}")
        }
    });
    if let Some(channels) = r.string_list("signal.enabled.channels") {
        if !channels.iter().any(|c| c == "source") && table.is_some() {
            r.error(
                "signal.enabled.channels",
                "does not name source, yet signal.data.collection is set: sluice reads signals from the table only",
            );
        }
        for other in channels.iter().filter(|c| *c != "source") {
            r.warn(
                "signal.enabled.channels",
                format!("{other} is not a channel sluice reads signals from; only source (the signal table) is"),
            );
        }
    }
    table
}

/// `publication.autocreate.mode`.
fn publication_mode(r: &ConfigReader<'_>) -> PublicationMode {
    match r.string("publication.autocreate.mode").as_deref() {
        None | Some("filtered") => PublicationMode::Filtered,
        Some("all_tables") => {
            r.error(
                "publication.autocreate.mode",
                "all_tables is refused: in a FOR ALL TABLES publication, a table without a primary key \
                 (one created later included) makes Postgres refuse the application's UPDATE and DELETE on it. \
                 Use filtered (the default), or create the publication yourself and set disabled",
            );
            PublicationMode::Filtered
        }
        Some("disabled") => PublicationMode::Disabled,
        Some(other) => {
            r.error(
                "publication.autocreate.mode",
                format!("\"{other}\" is not one of filtered, disabled"),
            );
            PublicationMode::Filtered
        }
    }
}

/// `snapshot.mode`.
fn snapshot_mode(r: &ConfigReader<'_>) -> SnapshotMode {
    // Debezium 1.x's `exported` takes the initial snapshot from the slot's
    // exported snapshot, as `initial` does here; 2.x's `no_data` is `never`.
    r.one_of(
        "snapshot.mode",
        &[
            ("initial", SnapshotMode::Initial),
            ("when_needed", SnapshotMode::WhenNeeded),
            ("never", SnapshotMode::Never),
            ("initial_only", SnapshotMode::InitialOnly),
            ("always", SnapshotMode::Always),
            ("exported", SnapshotMode::Initial),
            ("no_data", SnapshotMode::Never),
        ],
    )
}

/// Keys of Pulsar's Debezium source taken only at the one value sluice
/// works with.
fn refuse_unsupported(r: &ConfigReader<'_>) {
    if let Some(plugin) = r.string("plugin.name")
        && plugin != "pgoutput"
    {
        r.error(
            "plugin.name",
            format!("\"{plugin}\" is not supported: sluice decodes pgoutput"),
        );
    }
    // Pulsar's Debezium source wraps each value in Kafka Connect's
    // schema-and-payload envelope when this is true; sluice publishes
    // the payload only (its schema goes to the registry).
    if r.bool("json-with-envelope") == Some(true) {
        r.error(
            "json-with-envelope",
            "true is not supported: sluice publishes the Debezium payload without Kafka Connect's schema envelope",
        );
    }
    if r.bool("slot.drop.on.stop") == Some(true) {
        r.error(
            "slot.drop.on.stop",
            "true is not supported: sluice never drops a slot on stop",
        );
    }
    for key in ["decimal.handling.mode"] {
        if let Some(v) = r.string(key)
            && v != "string"
        {
            r.error(
                key,
                format!("\"{v}\" is not supported: numeric values are exact strings"),
            );
        }
    }
    if let Some(v) = r.string("time.precision.mode")
        && !v.starts_with("adaptive")
    {
        r.error(
            "time.precision.mode",
            format!("\"{v}\" is not supported: times are in microseconds"),
        );
    }
}

#[cfg(test)]
mod tests;

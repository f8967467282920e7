//! Settings of the database sink: the keys of Pulsar's JDBC sink, plus a
//! URL form sluice connects with.

use std::time::Duration;

use super::sql::Dialect;
use crate::config::{ConfigMap, ConfigReader, ConfigReport, Key, Kind, Secret, Unset};

mod url;

use url::*;

/// `batchSize` unless set (Pulsar's JDBC sink default).
pub(crate) const DEFAULT_BATCH_SIZE: u64 = 200;
/// `timeoutMs` unless set (Pulsar's JDBC sink default).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the JDBC sink's switches mean nothing here.
const ALWAYS_ONE_TRANSACTION: &str =
    "sluice always writes a batch in one transaction with set-based statements";

/// The keys the database sink takes.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("jdbcUrl", Kind::Secret, Unset::Required, "Postgres: `postgres://host:port/db` or `jdbc:postgresql://host:port/db?user=..&password=..`; MySQL/MariaDB: `mysql://`, `mariadb://`, `jdbc:mysql://`, `jdbc:mariadb://`; SQLite: `sqlite:path/to/file.db` or `jdbc:sqlite:path` (the file is created if missing). Its TLS and other parameters are below"),
    Key::new("userName", Kind::Text, Unset::Said("from the URL"), "the user"),
    Key::new("password", Kind::Secret, Unset::Said("from the URL"), "the user's password"),
    Key::new("tableName", Kind::Text, Unset::Said("the topic's own table name"), "the table of every topic `topicToTable` does not map"),
    Key::new("topicToTable", Kind::List, Unset::Nothing, "`topic:table` pairs, comma-separated or a list, split at the last colon; a topic is its full name as `pulsar-admin` prints it (`persistent://public/default/orders:orders_copy`) or its last segment (`retail.public.orders:orders_copy`), and a partitioned topic's entry maps each of its partitions"),
    Key::new("tablesFromEnvelope", Kind::List, Unset::Nothing, "opt-in: route envelopes by `source.table`, to these tables only"),
    Key::new("key", Kind::List, Unset::Said("the target's primary key"), "comma-separated key columns"),
    Key::new("nonKey", Kind::List, Unset::Said("all columns"), "the only non-key columns to write"),
    Key::new("inputFormat", Kind::Text, Unset::Text("ROW"), "`ROW`, `ROW_WITH_ACTION` or `DEBEZIUM`: what the input topics carry (above)"),
    Key::new("insertMode", Kind::Text, Unset::Text("INSERT"), "`INSERT`, `UPSERT`, `UPDATE`, for plain JSON rows; under `ROW_WITH_ACTION` a row's `ACTION` property overrides it"),
    Key::new("nullValueAction", Kind::Text, Unset::Text("FAIL"), "`FAIL` or `DELETE` (by the record's JSON key) for a null value"),
    Key::new("batchSize", Kind::Integer, Unset::Int(DEFAULT_BATCH_SIZE), "records per transaction"),
    Key::new("timeoutMs", Kind::Integer, Unset::Int(DEFAULT_TIMEOUT.as_millis() as u64), "a partial batch is written after this long"),
    Key::new("allowTruncate", Kind::Flag, Unset::Flag(false), "whether a Debezium `t` empties the target table; otherwise it is skipped"),
    Key::new("autoCreateTable", Kind::Flag, Unset::Flag(false), "create a missing table from the first record (below)"),
    Key::new("autoAddColumns", Kind::Flag, Unset::Flag(false), "add a column a record carries and the table lacks"),
    Key::ignored("useTransactions", ALWAYS_ONE_TRANSACTION),
    Key::ignored("useJdbcBatch", ALWAYS_ONE_TRANSACTION),
    Key::ignored("excludeNonDeclaredFields", ALWAYS_ONE_TRANSACTION),
];

/// Databases and schemas that hold a server's own tables: never a target.
const SYSTEM_DATABASES: [&str; 5] = [
    "pg_catalog",
    "information_schema",
    "mysql",
    "performance_schema",
    "sys",
];

/// Why `name` can never be a target table, if it cannot: sluice's own
/// watermark tables, SQLite's internal tables, and qualified names (every
/// table is in the connection's default schema or database). Compared
/// without case and trailing spaces, as MySQL's collations may.
pub(crate) fn forbidden_table(name: &str) -> Option<String> {
    let lower = name.trim_end().to_ascii_lowercase();
    if lower == super::watermark::TABLE || lower == super::watermark::SEQUENCES {
        Some(format!("{name} is sluice's own watermark table"))
    } else if lower.starts_with("sqlite_") {
        Some(format!("{name} is a SQLite internal table name"))
    } else if name.contains('.') {
        Some(format!(
            "{name} names a schema: tables are written in the default schema (Postgres) or database (MySQL) \
             of the connection, which jdbcUrl chooses"
        ))
    } else if name.trim().is_empty() {
        Some("a table name is empty".to_owned())
    } else {
        None
    }
}

/// `inputFormat`: what the sink's input topics carry, and so what a record
/// may ask for. The configuration says it, never the record (decision 0015).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Plain JSON rows, written as `insertMode` says, whatever their fields
    /// are named. A record never deletes.
    Row,
    /// Plain JSON rows, each written as its `ACTION` property says
    /// (`INSERT`, `UPDATE`, `UPSERT`, `DELETE`), as Pulsar's JDBC sink
    /// takes it; `insertMode` when it has none.
    RowWithAction,
    /// Debezium change events: each is applied as its `op` says, deletes
    /// included.
    Debezium,
}

/// `insertMode`, for records that are plain JSON rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    /// Insert; an existing key is an error.
    Insert,
    /// Insert, or update the row with the same key.
    Upsert,
    /// Update the row with the same key.
    Update,
}

/// `nullValueAction`: what a record with a null value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullValueAction {
    /// Reject it.
    Fail,
    /// Delete the row with the record's key.
    Delete,
}

/// Validated database sink settings.
#[derive(Clone, PartialEq)]
pub struct DbSinkConfig {
    /// The kind of database.
    pub dialect: Dialect,
    /// `postgres://host:port/db`, `mysql://host:port/db` or `sqlite:path`,
    /// with the user and password set apart.
    pub url: String,
    /// The user.
    pub user: Option<String>,
    /// The password.
    pub password: Option<Secret>,
    /// The target table of every topic `topic_tables` does not map.
    pub table: Option<String>,
    /// Topic (full or short name) to table, ahead of `table`.
    pub topic_tables: Vec<(String, String)>,
    /// Opt-in routing by content: a Debezium envelope whose `source.table`
    /// is one of these goes to that table. Empty: the topic decides.
    pub tables_from_envelope: Vec<String>,
    /// Key columns, when the target's primary key is not the one to use.
    pub key: Vec<String>,
    /// The only non-key columns to write, when set.
    pub non_key: Vec<String>,
    /// What the input carries.
    pub input_format: InputFormat,
    /// How plain JSON rows are written.
    pub insert_mode: InsertMode,
    /// What a null value does.
    pub null_value_action: NullValueAction,
    /// Records per transaction, at most.
    pub batch_size: u64,
    /// How long a partial batch waits.
    pub timeout: Duration,
    /// Whether a Debezium truncate empties the target table.
    pub allow_truncate: bool,
    /// Whether a missing table is created from the first record.
    pub auto_create_table: bool,
    /// Whether a column that appears later is added to the table.
    pub auto_add_columns: bool,
}

impl std::fmt::Debug for DbSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSinkConfig")
            .field("url", &redact(&self.url))
            .field("user", &self.user)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// A parsed `jdbcUrl`: the dialect, the URL sluice connects with, and the
/// user and password it carried.
type ParsedUrl = (Dialect, String, Option<String>, Option<Secret>);

/// A topic name without its partition suffix
/// (`persistent://t/n/orders-partition-3` gives `persistent://t/n/orders`).
fn without_partition(topic: &str) -> &str {
    topic
        .rsplit_once("-partition-")
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(topic, |(b, _)| b)
}

/// A topic's short name (its last path segment) and that name without a
/// partition suffix (`retail.public.orders-partition-3` gives
/// `retail.public.orders`).
fn short_names(topic: &str) -> (&str, &str) {
    let short = topic.rsplit('/').next().unwrap_or(topic);
    (short, without_partition(short))
}

/// A topic's own table name: the last dot-separated segment of its short
/// name, partition suffix removed (`persistent://t/n/retail.public.orders`
/// and `retail.public.orders-partition-3` give `orders`).
pub(crate) fn topic_table(topic: &str) -> &str {
    let (_, base) = short_names(topic);
    base.rsplit('.').next().unwrap_or(base)
}

impl DbSinkConfig {
    /// The warning for a client key file (`sslkey`, `ssl-key`) that others
    /// than its owner may read.
    pub(crate) fn client_key_too_open(&self) -> Option<String> {
        let query = self.url.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| matches!(*k, "sslkey" | "ssl-key"))
            .find_map(|(_, path)| {
                crate::secret_files::too_open("the client key", std::path::Path::new(path))
            })
    }

    /// The table a topic's records go to: its `topicToTable` entry (by full
    /// name or last path segment, of the topic or of the partitioned topic
    /// it is a partition of), else `tableName`, else the topic's own table
    /// name ([`topic_table`]). The configuration decides, never the record.
    pub(crate) fn table_for_topic(&self, topic: &str) -> String {
        let (short, base) = short_names(topic);
        let full_base = without_partition(topic);
        self.topic_tables
            .iter()
            .find(|(t, _)| t == topic || t == full_base || t == short || t == base)
            .map(|(_, table)| table.clone())
            .or_else(|| self.table.clone())
            .unwrap_or_else(|| topic_table(topic).to_owned())
    }

    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs, KEYS, "the jdbc sink");
        let parsed = r.secret("jdbcUrl").map(|u| parse_url(u.expose()));
        let (url, url_user, url_password) = match parsed {
            None => {
                r.error("jdbcUrl", "is required");
                (None, None, None)
            }
            Some(Err(msg)) => {
                r.error("jdbcUrl", msg);
                (None, None, None)
            }
            Some(Ok((d, u, user, pw))) => (Some((d, u)), user, pw),
        };
        let user = r.string("userName").or(url_user);
        let password = r.secret("password").or(url_password);
        let table = r.string("tableName");
        let key = r.string_list("key").unwrap_or_default();
        let non_key = r.string_list("nonKey").unwrap_or_default();
        let insert_mode = r.one_of(
            "insertMode",
            &[
                ("INSERT", InsertMode::Insert),
                ("UPSERT", InsertMode::Upsert),
                ("UPDATE", InsertMode::Update),
            ],
        );
        let input_format = r.one_of(
            "inputFormat",
            &[
                ("ROW", InputFormat::Row),
                ("ROW_WITH_ACTION", InputFormat::RowWithAction),
                ("DEBEZIUM", InputFormat::Debezium),
            ],
        );
        let null_value_action = r.one_of(
            "nullValueAction",
            &[
                ("FAIL", NullValueAction::Fail),
                ("DELETE", NullValueAction::Delete),
            ],
        );
        let batch_size = r.int("batchSize").max(1);
        let timeout = Duration::from_millis(r.int("timeoutMs"));
        let tables_from_envelope = r.string_list("tablesFromEnvelope").unwrap_or_default();
        let allow_truncate = r.flag("allowTruncate");
        let auto_create_table = r.flag("autoCreateTable");
        let auto_add_columns = r.flag("autoAddColumns");
        let topic_tables = topic_tables(&r);
        check_targets(
            &r,
            url.as_ref(),
            table.as_ref(),
            &topic_tables,
            &tables_from_envelope,
        );
        let report = r.finish();
        let config = match url {
            Some((dialect, url)) if report.errors.is_empty() => Some(Self {
                dialect,
                url,
                user,
                password,
                table,
                key,
                non_key,
                input_format,
                insert_mode,
                null_value_action,
                batch_size,
                timeout,
                allow_truncate,
                auto_create_table,
                auto_add_columns,
                topic_tables,
                tables_from_envelope,
            }),
            _ => None,
        };
        (config, report)
    }
}

/// `topicToTable`: `topic:table` pairs, split at the last colon.
fn topic_tables(r: &ConfigReader<'_>) -> Vec<(String, String)> {
    let mut topic_tables = Vec::new();
    for pair in r.string_list("topicToTable").unwrap_or_default() {
        // At the last colon: a full topic name has one of its own
        // (`persistent://public/default/orders:orders_copy`).
        match pair.rsplit_once(':') {
            Some((topic, table)) if !topic.trim().is_empty() && !table.trim().is_empty() => {
                topic_tables.push((topic.trim().to_owned(), table.trim().to_owned()));
            }
            _ => r.error("topicToTable", format!("\"{pair}\" is not topic:table")),
        }
    }
    topic_tables
}

/// Every table the configuration names, and the database of a MySQL URL,
/// must be one sluice may write to.
fn check_targets(
    r: &ConfigReader<'_>,
    url: Option<&(Dialect, String)>,
    table: Option<&String>,
    topic_tables: &[(String, String)],
    tables_from_envelope: &[String],
) {
    for (key, name) in table
        .into_iter()
        .map(|t| ("tableName", t))
        .chain(topic_tables.iter().map(|(_, t)| ("topicToTable", t)))
        .chain(
            tables_from_envelope
                .iter()
                .map(|t| ("tablesFromEnvelope", t)),
        )
    {
        if let Some(why) = forbidden_table(name) {
            r.error(key, format!("cannot be a target: {why}"));
        }
    }
    if let Some((dialect, url)) = url
        && *dialect == Dialect::MySql
        && let Some(db) = url
            .rsplit('/')
            .next()
            .map(|d| d.split('?').next().unwrap_or(d))
        && SYSTEM_DATABASES.contains(&db.to_ascii_lowercase().as_str())
    {
        r.error(
            "jdbcUrl",
            format!("names the system database {db}: sluice writes only to application databases"),
        );
    }
}

#[cfg(test)]
mod tests;

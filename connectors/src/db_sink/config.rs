//! Settings of the database sink: the keys of Pulsar's JDBC sink, plus a
//! URL form sluice connects with.

use std::time::Duration;

use crate::config::{ConfigMap, ConfigReader, ConfigReport, Secret};

/// `batchSize` unless set (Pulsar's JDBC sink default).
pub(crate) const DEFAULT_BATCH_SIZE: u64 = 200;
/// `timeoutMs` unless set (Pulsar's JDBC sink default).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

const KNOWN: &str = "jdbcUrl, userName, password, tableName, key, nonKey, insertMode, nullValueAction, \
    batchSize, timeoutMs, allowTruncate";

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
    /// `postgres://host:port/db`, with the user and password set apart.
    pub url: String,
    /// The user.
    pub user: Option<String>,
    /// The password.
    pub password: Option<Secret>,
    /// The target table, when records do not name theirs.
    pub table: Option<String>,
    /// Key columns, when the target's primary key is not the one to use.
    pub key: Vec<String>,
    /// The only non-key columns to write, when set.
    pub non_key: Vec<String>,
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

/// A URL with any password in it replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `jdbc:postgresql://host:port/db?user=u&password=p` or `postgres://...` as
/// a `postgres://` URL and the user and password it carries.
fn parse_url(raw: &str) -> Result<(String, Option<String>, Option<Secret>), String> {
    let rest = raw
        .strip_prefix("jdbc:postgresql://")
        .or_else(|| raw.strip_prefix("postgresql://"))
        .or_else(|| raw.strip_prefix("postgres://"))
        .ok_or_else(|| {
            if raw.starts_with("jdbc:mysql") || raw.starts_with("mysql") || raw.contains("sqlite") {
                "MySQL/MariaDB and SQLite targets are not supported yet: only Postgres".to_owned()
            } else {
                format!("\"{}\" is not a Postgres URL (postgres://host:port/db or jdbc:postgresql://...)", redact(raw))
            }
        })?;
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut user, mut password) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("user", v)) => user = Some(v.to_owned()),
            Some(("password", v)) => password = Some(Secret::new(v)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        format!("postgres://{base}")
    } else {
        format!("postgres://{base}?{}", kept.join("&"))
    };
    Ok((url, user, password))
}

impl DbSinkConfig {
    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs);
        r.ignore(
            &[
                "useTransactions",
                "useJdbcBatch",
                "excludeNonDeclaredFields",
            ],
            "sluice always writes a batch in one transaction with set-based statements",
        );
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
            Some(Ok((u, user, pw))) => (Some(u), user, pw),
        };
        let user = r.string("userName").or(url_user);
        let password = r.secret("password").or(url_password);
        let table = r.string("tableName");
        let key = r.string_list("key").unwrap_or_default();
        let non_key = r.string_list("nonKey").unwrap_or_default();
        let insert_mode = match r.string("insertMode").as_deref() {
            None | Some("INSERT") => InsertMode::Insert,
            Some("UPSERT") => InsertMode::Upsert,
            Some("UPDATE") => InsertMode::Update,
            Some(other) => {
                r.error(
                    "insertMode",
                    format!("\"{other}\" is not one of INSERT, UPSERT, UPDATE"),
                );
                InsertMode::Insert
            }
        };
        let null_value_action = match r.string("nullValueAction").as_deref() {
            None | Some("FAIL") => NullValueAction::Fail,
            Some("DELETE") => NullValueAction::Delete,
            Some(other) => {
                r.error(
                    "nullValueAction",
                    format!("\"{other}\" is not one of FAIL, DELETE"),
                );
                NullValueAction::Fail
            }
        };
        let batch_size = r.u64_or("batchSize", DEFAULT_BATCH_SIZE).max(1);
        let timeout = r
            .u64("timeoutMs")
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let allow_truncate = r.bool("allowTruncate").unwrap_or(false);
        let report = r.finish(KNOWN);
        let config = match url {
            Some(url) if report.errors.is_empty() => Some(Self {
                url,
                user,
                password,
                table,
                key,
                non_key,
                insert_mode,
                null_value_action,
                batch_size,
                timeout,
                allow_truncate,
            }),
            _ => None,
        };
        (config, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigValue;

    fn configs(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
            .collect()
    }

    #[test]
    fn jdbc_urls_become_postgres_urls_and_credentials() {
        let (c, report) = DbSinkConfig::from_configs(&configs(&[(
            "jdbcUrl",
            "jdbc:postgresql://db:5432/warehouse?user=w&password=secret&sslmode=disable",
        )]));
        assert!(report.errors.is_empty(), "{report:?}");
        let c = c.unwrap();
        assert_eq!(c.url, "postgres://db:5432/warehouse?sslmode=disable");
        assert_eq!(c.user.as_deref(), Some("w"));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("secret"));
        assert_eq!(
            (c.insert_mode, c.null_value_action, c.batch_size),
            (InsertMode::Insert, NullValueAction::Fail, 200)
        );
    }

    #[test]
    fn a_password_in_the_url_never_prints() {
        let (c, _) =
            DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "postgres://u:hunter2@db/w")]));
        assert!(!format!("{c:?}").contains("hunter2"));
        let (_, report) =
            DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "oracle://u:hunter2@db/w")]));
        assert!(!format!("{report:?}").contains("hunter2"), "{report:?}");
    }

    #[test]
    fn other_targets_and_bad_modes_are_named() {
        let (_, report) = DbSinkConfig::from_configs(&configs(&[
            ("jdbcUrl", "mysql://db/x"),
            ("insertMode", "MERGE"),
        ]));
        let keys: Vec<&str> = report.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["jdbcUrl", "insertMode"]);
    }
}

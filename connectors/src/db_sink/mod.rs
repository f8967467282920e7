//! `jdbc`: the database sink. It takes the keys of Pulsar's JDBC sink and
//! understands Debezium envelopes as well as plain JSON rows.
//!
//! A batch is one database transaction made of set-based statements:
//! consecutive changes of one kind to one table become one multi-row
//! statement. Changes to the same key keep their order. Values are bound as
//! text and cast to the column's type, which is read from the catalog.
//!
//! Targets: Postgres today. MySQL/MariaDB and SQLite share the SQL generation
//! in [`sql`] and come next.

mod changes;
mod config;
pub mod sql;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

pub use config::{DbSinkConfig, InsertMode, NullValueAction};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres, Row, Transaction};

use self::changes::{Change, Kind};
use self::sql::{Dialect, TableName};
use self::values::Target;
use crate::api::{BatchPolicy, ConnectorError, Finding, Sink, SinkRecord};

/// Bound values per statement, at most (Postgres allows 65,535).
const MAX_PARAMETERS: usize = 30_000;

/// A target table as the catalog describes it.
#[derive(Debug)]
struct TableInfo {
    /// Column name to its type, as `format_type` spells it.
    types: HashMap<String, String>,
    targets: HashMap<String, Target>,
    /// The key columns: `key` from the config, or the primary key.
    key: Vec<String>,
}

/// The database sink.
pub struct DbSink {
    config: DbSinkConfig,
    pool: PgPool,
    tables: HashMap<String, Arc<TableInfo>>,
}

impl std::fmt::Debug for DbSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Classify a database error: a lost connection or a server going away is
/// worth retrying; a refused statement or value is not.
fn db_error(context: &str, e: sqlx::Error) -> ConnectorError {
    let retryable = match &e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57")
                || c.starts_with("53")
                || c == "40001"
                || c == "40P01"
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        _ => false,
    };
    // The database's message, never the values: they may hold row data.
    let message = match &e {
        sqlx::Error::Database(db) => format!("{context}: {}", db.message()),
        other => format!("{context}: {other}"),
    };
    if retryable {
        ConnectorError::retryable(message)
    } else {
        ConnectorError::permanent(message)
    }
}

fn connect_options(config: &DbSinkConfig) -> Result<PgConnectOptions, ConnectorError> {
    let mut options: PgConnectOptions = config
        .url
        .parse()
        .map_err(|e: sqlx::Error| ConnectorError::permanent(format!("jdbcUrl: {e}")))?;
    if let Some(user) = &config.user {
        options = options.username(user);
    }
    if let Some(password) = &config.password {
        options = options.password(password.expose());
    }
    Ok(options.application_name("sluice"))
}

impl DbSink {
    /// Connect to the target.
    pub async fn open(config: DbSinkConfig) -> Result<Self, ConnectorError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(connect_options(&config)?)
            .await
            .map_err(|e| db_error("connect to the target", e))?;
        Ok(Self {
            config,
            pool,
            tables: HashMap::new(),
        })
    }

    /// The catalog's view of a table, read once and kept.
    async fn table(&mut self, name: &str) -> Result<Arc<TableInfo>, ConnectorError> {
        if let Some(t) = self.tables.get(name) {
            return Ok(Arc::clone(t));
        }
        let qualified = Dialect::Postgres.table(&TableName {
            schema: None,
            table: name.to_owned(),
        });
        let columns = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(&qualified)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error(&format!("read the columns of {name}"), e))?;
        if columns.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "the target has no table {name}"
            )));
        }
        let types: HashMap<String, String> = columns
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect();
        let key = if self.config.key.is_empty() {
            sqlx::query(
                "SELECT a.attname::text FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
            )
            .bind(&qualified)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error(&format!("read the primary key of {name}"), e))?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
        } else {
            self.config.key.clone()
        };
        if key.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "table {name} has no primary key: add one, or set `key`"
            )));
        }
        let targets = types
            .iter()
            .map(|(c, t)| (c.clone(), Target::of(t)))
            .collect();
        let info = Arc::new(TableInfo {
            types,
            targets,
            key,
        });
        self.tables.insert(name.to_owned(), Arc::clone(&info));
        Ok(info)
    }

    /// Run one group of changes of the same kind on the same table and columns.
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        table: &str,
        info: &TableInfo,
        kind: Kind,
        columns: &[String],
        rows: &[&Change],
    ) -> Result<(), ConnectorError> {
        let name = TableName {
            schema: None,
            table: table.to_owned(),
        };
        let d = Dialect::Postgres;
        for column in columns {
            if !info.types.contains_key(column) {
                return Err(ConnectorError::permanent(format!(
                    "table {table} has no column {column}"
                )));
            }
        }
        let types: Vec<String> = columns.iter().map(|c| info.types[c].clone()).collect();
        let per_row = columns.len().max(1);
        for chunk in rows.chunks((MAX_PARAMETERS / per_row).max(1)) {
            let statement = match kind {
                Kind::Truncate => d.truncate(&name),
                Kind::Upsert => d.upsert(&name, columns, Some(&types), &info.key, chunk.len()),
                Kind::Insert => d.insert(&name, columns, Some(&types), chunk.len()),
                Kind::Delete => d.delete(&name, columns, Some(&types), chunk.len()),
                Kind::Update => {
                    let set: Vec<String> = columns
                        .iter()
                        .filter(|c| !info.key.contains(c))
                        .cloned()
                        .collect();
                    let mut all = set.clone();
                    all.extend(info.key.iter().cloned());
                    let all_types: Vec<String> =
                        all.iter().map(|c| info.types[c].clone()).collect();
                    for change in chunk {
                        // Identifiers are quoted and every value is bound (see `sql`).
                        let statement = d.update(&name, &set, &info.key, Some(&all_types));
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(statement));
                        for c in &all {
                            q = q.bind(change.text(c, &info.targets));
                        }
                        let done = tx
                            .execute(q)
                            .await
                            .map_err(|e| db_error(&format!("update {table}"), e))?;
                        if done.rows_affected() == 0 {
                            return Err(ConnectorError::permanent(format!(
                                "no row of {table} has this key to update"
                            )));
                        }
                    }
                    continue;
                }
            };
            // Identifiers are quoted and every value is bound (see `sql`).
            let mut q = sqlx::query(sqlx::AssertSqlSafe(statement));
            if kind != Kind::Truncate {
                for change in chunk {
                    for c in columns {
                        q = q.bind(change.text(c, &info.targets));
                    }
                }
            }
            tx.execute(q)
                .await
                .map_err(|e| db_error(&format!("write {table}"), e))?;
        }
        Ok(())
    }
}

impl Sink for DbSink {
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_records: self.config.batch_size as usize,
            max_wait: self.config.timeout,
        }
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), ConnectorError> {
        let mut all = Vec::with_capacity(batch.len());
        for record in batch {
            all.extend(changes::from_record(record, &self.config)?);
        }
        let mut infos = HashMap::new();
        for change in &all {
            if !infos.contains_key(&change.table) {
                let info = self.table(&change.table).await?;
                infos.insert(change.table.clone(), info);
            }
        }
        let resolved: Vec<Change> = all
            .into_iter()
            .map(|c| {
                let info = &infos[&c.table];
                c.resolve(&info.key, &self.config.non_key)
            })
            .collect::<Result<_, _>>()?;
        let mut tx = self.pool.begin().await.map_err(|e| db_error("begin", e))?;
        for group in changes::groups(&resolved) {
            let info = &infos[&group.table];
            self.apply(
                &mut tx,
                &group.table,
                info,
                group.kind,
                &group.columns,
                &group.rows,
            )
            .await?;
        }
        tx.commit().await.map_err(|e| db_error("commit", e))
    }

    async fn close(&mut self) {
        self.pool.close().await;
    }
}

/// Preflight: the target answers and the named table exists with a key.
pub async fn preflight(config: &DbSinkConfig) -> Vec<Finding> {
    let mut sink = match DbSink::open(config.clone()).await {
        Ok(s) => s,
        Err(e) => return vec![Finding::error(format!("cannot connect to the target: {e}"))],
    };
    let mut out = Vec::new();
    if let Some(table) = config.table.clone()
        && let Err(e) = sink.table(&table).await
    {
        out.push(Finding::error(e.to_string()));
    }
    sink.close().await;
    out
}

impl changes::Change {
    /// The bound text of one column of this change.
    fn text(&self, column: &str, targets: &HashMap<String, Target>) -> Option<String> {
        let value = self.values.get(column).unwrap_or(&Value::Null);
        let target = targets.get(column).cloned().unwrap_or(Target::Plain);
        values::text(&target, value)
    }
}

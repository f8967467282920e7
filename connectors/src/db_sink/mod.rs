//! `jdbc`: the database sink, for Postgres, MySQL/MariaDB and SQLite. It
//! takes the keys of Pulsar's JDBC sink and understands Debezium envelopes
//! as well as plain JSON rows.
//!
//! A batch is one database transaction made of set-based statements:
//! consecutive changes of one kind to one table become one multi-row
//! statement. Changes to the same key keep their order. Values are bound,
//! converted for the column's type, which is read from the catalog.

mod catalog;
mod changes;
mod check;
mod config;
mod connect;
pub(crate) mod encodings;
mod errors;
mod limit;
pub mod sql;
mod tables;
mod text;
pub(crate) mod values;
mod watermark;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

pub use config::{DbSinkConfig, InsertMode, NullValueAction};
use serde_json::Value;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

use self::changes::{Change, Kind};
use self::sql::{Dialect, TableName};
use self::values::{Param, Target};
use crate::api::{
    BatchPolicy, ConnectorError, Finding, Guarantee, Sink, SinkConnector, SinkContext, SinkRecord,
    Written,
};
use crate::config::{ConfigMap, ConfigReport};
use check::check_target;
use connect::{connect, db_error};
use limit::{MAX_PARAMETERS, StatementLimit};

/// A target table as the catalog describes it.
#[derive(Debug)]
struct TableInfo {
    /// Column name to its type, as the catalog spells it.
    types: HashMap<String, String>,
    targets: HashMap<String, Target>,
    /// The key columns: `key` from the config, or the primary key.
    key: Vec<String>,
}

/// The database sink.
pub struct DbSink {
    config: DbSinkConfig,
    dialect: Dialect,
    pool: AnyPool,
    tables: HashMap<String, Arc<TableInfo>>,
    /// The schema every table is written in (Postgres), so that no name
    /// resolves elsewhere through the search path.
    schema: Option<String>,
    /// Under EFFECTIVELY_ONCE, what was applied.
    watermarks: Option<watermark::Watermarks>,
    /// How much one statement may carry.
    limit: StatementLimit,
    /// What was passed over, for the runtime.
    skips: Arc<crate::api::Skips>,
    /// When the log last summed up the skips, and the counts then.
    summarised: (std::time::Instant, (u64, u64)),
    /// Decodes records into changes, here or ahead on another thread.
    preparer: Arc<Preparer>,
}

/// Decodes records into changes without the connection, so that the
/// runtime can decode the next batch while this one is written (see
/// [`Sink::preparer`]).
#[derive(Debug)]
struct Preparer {
    config: DbSinkConfig,
    /// What the value schemas seen say to decode.
    encodings: std::sync::Mutex<encodings::Cache>,
}

/// What the preparer made of each record of a batch, in order: its
/// changes, or the error to give if the record is written.
type Decoded = Vec<Result<Vec<Change>, ConnectorError>>;

impl Preparer {
    fn decode(&self, record: &SinkRecord) -> Result<Vec<Change>, ConnectorError> {
        let encodings = record.value_schema.as_ref().map(|s| {
            self.encodings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .of(s)
        });
        changes::from_record(record, &self.config, encodings.as_deref())
    }
}

impl crate::api::Prepare for Preparer {
    fn prepare(&self, batch: &[SinkRecord]) -> crate::api::Prepared {
        let decoded: Decoded = batch.iter().map(|r| self.decode(r)).collect();
        crate::api::Prepared::new(decoded)
    }
}

impl std::fmt::Debug for DbSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SinkConnector for DbSink {
    const CLASS_NAMES: &'static [&'static str] = &[
        "jdbc",
        "org.apache.pulsar.io.jdbc.PostgresJdbcAutoSchemaSink",
        "org.apache.pulsar.io.jdbc.MariadbJdbcAutoSchemaSink",
        "org.apache.pulsar.io.jdbc.SqliteJdbcAutoSchemaSink",
    ];
    const ARCHIVES: &'static [&'static str] = &["jdbc-postgres", "jdbc-mariadb", "jdbc-sqlite"];
    const KEYS: &'static [crate::config::Key] = config::KEYS;
    type Config = DbSinkConfig;

    fn configure(configs: &ConfigMap) -> (Option<DbSinkConfig>, ConfigReport) {
        DbSinkConfig::from_configs(configs)
    }

    /// Connect to the target; under EFFECTIVELY_ONCE, create the watermark
    /// table if needed and read the sink's marks.
    async fn open(config: DbSinkConfig, context: &SinkContext) -> Result<Self, ConnectorError> {
        if let Some(w) = config.client_key_too_open() {
            tracing::warn!("{w}");
        }
        let pool = connect(&config).await?;
        let schema = catalog::default_schema(&pool, config.dialect)
            .await
            .map_err(ConnectorError::permanent)?;
        let watermarks = if context.guarantee == Guarantee::EffectivelyOnce {
            Some(
                watermark::Watermarks::load(&pool, config.dialect, &context.name)
                    .await
                    .map_err(|e| db_error(&format!("read {}", watermark::TABLE), e))?,
            )
        } else {
            None
        };
        let limit = StatementLimit::of(&pool, config.dialect).await?;
        let preparer = Arc::new(Preparer {
            config: config.clone(),
            encodings: std::sync::Mutex::default(),
        });
        Ok(Self {
            limit,
            dialect: config.dialect,
            config,
            pool,
            tables: HashMap::new(),
            schema,
            watermarks,
            skips: Arc::clone(&context.skips),
            summarised: (std::time::Instant::now(), (0, 0)),
            preparer,
        })
    }

    async fn preflight(config: &DbSinkConfig) -> Vec<Finding> {
        let mut found = check_target(config).await;
        found.extend(config.client_key_too_open().map(Finding::warning));
        found
    }
}

impl DbSink {
    /// Run one group of changes of the same kind on the same table and columns.
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        table: &str,
        info: &TableInfo,
        kind: Kind,
        columns: &[String],
        rows: &[&Change],
    ) -> Result<(), ConnectorError> {
        let name = self.table_name(table);
        let d = self.dialect;
        let types: Vec<String> = columns.iter().map(|c| info.types[c].clone()).collect();
        let per_row = columns.len().max(1);
        for chunk in changes::statements(rows, MAX_PARAMETERS / per_row, self.limit.bytes) {
            self.limit.check(table, chunk)?;
            if d == Dialect::Postgres && matches!(kind, Kind::Upsert | Kind::Insert) {
                // One text array per column (see `Dialect::insert_columns`).
                let key = (kind == Kind::Upsert).then_some(info.key.as_slice());
                let statement = Dialect::insert_columns(&name, columns, &types, key);
                // Identifiers are quoted and every value is bound (see `sql`).
                let mut q = sqlx::query(&statement);
                for c in columns {
                    let target = info.targets.get(c).unwrap_or(&Target::Plain);
                    let texts = chunk
                        .iter()
                        .map(|change| values::text(target, change.value(c)));
                    q = q.bind(values::text_array(texts));
                }
                tx.execute(q)
                    .await
                    .map_err(|e| db_error(&format!("write {table}"), e))?;
                continue;
            }
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
                        let mut q = sqlx::query(&statement);
                        for c in &all {
                            q = bind(q, change.param(d, c, &info.targets));
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
            let mut q = sqlx::query(&statement);
            if kind != Kind::Truncate {
                for change in chunk {
                    for c in columns {
                        q = bind(q, change.param(d, c, &info.targets));
                    }
                }
            }
            tx.execute(q)
                .await
                .map_err(|e| db_error(&format!("write {table}"), e))?;
        }
        Ok(())
    }

    /// Write `all`, with what the preparer made of it ahead, if anything.
    async fn write_batch(
        &mut self,
        all: &[SinkRecord],
        prepared: Option<Decoded>,
    ) -> Result<(), ConnectorError> {
        let started = std::time::Instant::now();
        let mut tally = Tally::default();
        let kept = self.to_apply(all, &mut tally);
        if kept.is_empty() {
            self.count(tally);
            return Ok(());
        }
        let batch: Vec<&SinkRecord> = kept.iter().map(|&i| &all[i]).collect();
        let (resolved, infos) = self.changes(all, &kept, &batch, prepared).await?;
        let read_us = started.elapsed().as_micros() as u64;
        let mut tx = self.pool.begin().await.map_err(|e| db_error("begin", e))?;
        // The marks as stored now, not as this process last wrote them:
        // another process of the sink may have moved them.
        let refreshed = match self.watermarks.as_mut() {
            Some(w) => {
                let mut topics: Vec<&str> = batch.iter().map(|r| r.topic.as_str()).collect();
                topics.sort_unstable();
                topics.dedup();
                w.refresh(&mut tx, self.dialect, &topics)
                    .await
                    .map_err(|e| db_error(&format!("read {}", watermark::TABLE), e))?
            }
            None => false,
        };
        // Only marks another process moved can take records out again.
        let (resolved, batch) = match self.watermarks.as_ref().filter(|_| refreshed) {
            Some(w) => {
                let verdicts = w.verdicts(all);
                let still: Vec<bool> = kept
                    .iter()
                    .map(|&i| verdicts[i] == watermark::Verdict::Apply)
                    .collect();
                for (&i, _) in kept.iter().zip(&still).filter(|(_, s)| !**s) {
                    match verdicts[i] {
                        watermark::Verdict::Republished => tally.republished += 1,
                        _ => tally.redelivered += 1,
                    }
                }
                let resolved: Vec<Change> =
                    resolved.into_iter().filter(|c| still[c.record]).collect();
                let batch: Vec<&SinkRecord> = batch
                    .into_iter()
                    .zip(&still)
                    .filter(|(_, s)| **s)
                    .map(|(r, _)| r)
                    .collect();
                (resolved, batch)
            }
            None => (resolved, batch),
        };
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
        let moved = self.watermarks.as_ref().map(|w| w.after(&batch));
        if let (Some(w), Some(moved)) = (&self.watermarks, &moved) {
            for (statement, values) in w.statements(self.dialect, moved) {
                // Identifiers are quoted and every value is bound (see `sql`).
                let mut q = sqlx::query(&statement);
                for value in values {
                    q = q.bind(value);
                }
                tx.execute(q)
                    .await
                    .map_err(|e| db_error(&format!("update {}", watermark::TABLE), e))?;
            }
        }
        tx.commit().await.map_err(|e| db_error("commit", e))?;
        if let (Some(w), Some(moved)) = (&mut self.watermarks, moved) {
            w.committed(moved);
        }
        debug!(
            rows = resolved.len(),
            read_us,
            total_us = started.elapsed().as_micros() as u64,
            "batch written"
        );
        self.count(tally);
        Ok(())
    }

    /// The records of `all` to apply, by their place in it: what was
    /// applied before is passed over here, at the write, never ahead of it.
    fn to_apply(&self, all: &[SinkRecord], tally: &mut Tally) -> Vec<usize> {
        match &self.watermarks {
            Some(w) => w
                .verdicts(all)
                .into_iter()
                .enumerate()
                .filter(|(_, verdict)| match verdict {
                    watermark::Verdict::Apply => true,
                    watermark::Verdict::Redelivered => {
                        tally.redelivered += 1;
                        false
                    }
                    watermark::Verdict::Republished => {
                        tally.republished += 1;
                        false
                    }
                })
                .map(|(i, _)| i)
                .collect(),
            None => (0..all.len()).collect(),
        }
    }

    /// The changes of the records `kept` (decoded ahead when `prepared`
    /// has them), numbered by their place in `batch`, resolved against
    /// their tables, whose columns are made sure of.
    async fn changes(
        &mut self,
        all: &[SinkRecord],
        kept: &[usize],
        batch: &[&SinkRecord],
        prepared: Option<Decoded>,
    ) -> Result<(Vec<Change>, HashMap<String, Arc<TableInfo>>), ConnectorError> {
        let mut decoded: Vec<Option<Result<Vec<Change>, ConnectorError>>> = match prepared {
            Some(d) if d.len() == all.len() => d.into_iter().map(Some).collect(),
            _ => std::iter::repeat_with(|| None).take(all.len()).collect(),
        };
        let mut all_changes = Vec::with_capacity(batch.len());
        for (index, &at) in kept.iter().enumerate() {
            let changes = match decoded[at].take() {
                Some(changes) => changes?,
                None => self.preparer.decode(&all[at])?,
            };
            for mut change in changes {
                change.record = index;
                all_changes.push(change);
            }
        }
        let all = all_changes;
        let mut infos: HashMap<String, Arc<TableInfo>> = HashMap::new();
        for change in &all {
            if !infos.contains_key(&change.table) {
                let info = self.table_for(change, batch[change.record]).await?;
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
        let tables: HashSet<String> = infos.keys().cloned().collect();
        for table in tables {
            let of_table: Vec<&Change> = resolved.iter().filter(|c| c.table == table).collect();
            let info = self.ensure_columns(&table, &of_table).await?;
            infos.insert(table, info);
        }
        Ok((resolved, infos))
    }

    async fn write_decoded(
        &mut self,
        batch: &[SinkRecord],
        prepared: Option<Decoded>,
    ) -> Result<(), ConnectorError> {
        let result = self.write_batch(batch, prepared).await;
        if result.is_err() {
            // A table may have changed under the batch: the next attempt
            // reads the catalog afresh.
            self.tables.clear();
        }
        result
    }

    /// Count what a committed batch passed over, and sum it up in the log
    /// at most every [`SKIP_SUMMARY_EVERY`].
    fn count(&mut self, tally: Tally) {
        use std::sync::atomic::Ordering::Relaxed;
        let skips = &self.skips;
        skips.redelivered.fetch_add(tally.redelivered, Relaxed);
        skips.republished.fetch_add(tally.republished, Relaxed);
        let now = (
            skips.redelivered.load(Relaxed),
            skips.republished.load(Relaxed),
        );
        if now != self.summarised.1 && self.summarised.0.elapsed() >= SKIP_SUMMARY_EVERY {
            info!(
                redelivered = now.0,
                republished = now.1,
                "records skipped as applied before, so far"
            );
            self.summarised = (std::time::Instant::now(), now);
        }
    }
}

/// How often, at most, the log sums up skipped records.
const SKIP_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What one batch passed over.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    redelivered: u64,
    republished: u64,
}

/// Bind one value.
fn bind<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    param: Param,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    match param {
        Param::Text(text) => q.bind(text),
        Param::Bytes(bytes) => q.bind(bytes),
    }
}

impl Sink for DbSink {
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_records: self.config.batch_size as usize,
            max_wait: self.config.timeout,
        }
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Written, ConnectorError> {
        self.write_decoded(batch, None).await.map(|()| Written::All)
    }

    fn preparer(&self) -> Option<Arc<dyn crate::api::Prepare>> {
        Some(Arc::clone(&self.preparer) as Arc<dyn crate::api::Prepare>)
    }

    async fn write_prepared(
        &mut self,
        batch: &[SinkRecord],
        prepared: crate::api::Prepared,
    ) -> Result<Written, ConnectorError> {
        self.write_decoded(batch, prepared.take::<Decoded>())
            .await
            .map(|()| Written::All)
    }

    async fn close(&mut self) {
        self.pool.close().await;
    }
}

impl changes::Change {
    /// The value to bind for one column of this change.
    fn param(&self, dialect: Dialect, column: &str, targets: &HashMap<String, Target>) -> Param {
        let target = targets.get(column).unwrap_or(&Target::Plain);
        values::param(dialect, target, self.value(column))
    }

    /// The value of `column`, JSON null when the change has none.
    fn value(&self, column: &str) -> &Value {
        self.values.get(column).unwrap_or(&Value::Null)
    }
}

//! What the source reads from the Postgres catalog: the tables it captures,
//! their keys and column types, and the state of its slot and publication.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;
use tracing::{error, warn};

use std::sync::Arc;

use super::config::PostgresCdcConfig;
use super::schema::{self, ColumnType};
use super::types::{CatalogType, Kind, Types};
use crate::api::{ConnectorError, RecordSchema};

/// A captured table, as the source needs it to build events.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
    /// Column names, in table order.
    pub(crate) columns: Vec<String>,
    /// How each column's text converts.
    pub(crate) kinds: Vec<Kind>,
    /// Indices of the key columns: the primary key, or every column when
    /// the table has none.
    pub(crate) key: Vec<usize>,
    /// Whether `key` is a primary key or replica identity index (ordered,
    /// unique), rather than every column.
    pub(crate) keyed: bool,
    /// The schema of the table's events, shared by all its records.
    pub(crate) event_schema: Arc<RecordSchema>,
    /// Column indices in the order an event's row object writes them (by
    /// name, as serde_json's map orders keys); see [`Table::ordered`].
    pub(crate) by_name: Vec<usize>,
    /// Key column indices in the order the key object writes them.
    pub(crate) key_by_name: Vec<usize>,
}

impl Table {
    /// The table with [`Table::by_name`] and [`Table::key_by_name`] set
    /// from its columns and key.
    pub(crate) fn ordered(mut self) -> Self {
        let columns = &self.columns;
        let by_name = |indices: &mut Vec<usize>| {
            indices.sort_by(|&a, &b| columns[a].cmp(&columns[b]));
        };
        let mut order: Vec<usize> = (0..columns.len()).collect();
        by_name(&mut order);
        let mut key_order = self.key.clone();
        by_name(&mut key_order);
        self.by_name = order;
        self.key_by_name = key_order;
        self
    }

    /// `<prefix>.<schema>.<table>`.
    pub(crate) fn topic(&self, prefix: &str) -> String {
        topic_of(prefix, &self.schema, &self.name)
    }
}

/// `<prefix>.<schema>.<table>`, with any `/` in the names as `_`: a topic
/// of the source's namespace, whatever a table is called (a `/` would
/// name another tenant and namespace).
pub(crate) fn topic_of(prefix: &str, schema: &str, name: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        schema.replace('/', "_"),
        name.replace('/', "_")
    )
}

pub(crate) fn pg_error(context: &str, e: tokio_postgres::Error) -> ConnectorError {
    // A closed connection or a server going down can be retried; a refused
    // statement (SQLSTATE other than connection/shutdown classes) cannot.
    let retryable = match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57")
                || c.starts_with("53")
                || c == "40001"
                || c == "40P01"
        }
    };
    let message = match e.as_db_error() {
        Some(db) => format!("{context}: {}", db.message()),
        None => {
            // The cause of a TLS or I/O failure sits in the source chain.
            let mut text = format!("{context}: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    };
    let err = if retryable {
        ConnectorError::retryable(message)
    } else {
        ConnectorError::permanent(message)
    };
    err.with_source(e)
}

/// Array and domain types, for [`Types`].
pub(crate) async fn load_types(sql: &Client) -> Result<Types, ConnectorError> {
    let rows = sql
        .query(
            "SELECT oid, typelem, typbasetype FROM pg_catalog.pg_type \
             WHERE (typelem <> 0 AND typcategory = 'A') OR typbasetype <> 0",
            &[],
        )
        .await
        .map_err(|e| pg_error("read pg_type", e))?;
    Ok(Types::new(rows.iter().map(|r| CatalogType {
        oid: r.get::<_, u32>(0),
        element: r.get::<_, u32>(1),
        base: r.get::<_, u32>(2),
    })))
}

/// Whether `schema.table` passes the table and schema include and exclude
/// lists (regexes matched against the whole name, as Debezium does). The
/// signal table never is: its rows are requests, never published.
pub(crate) fn selected(config: &PostgresCdcConfig, qualified: &str) -> bool {
    if config.signal_table.as_deref() == Some(qualified) {
        return false;
    }
    let matches = |patterns: &[String], name: &str| {
        patterns.iter().any(|p| {
            regex_lite::Regex::new(&format!("^(?:{p})$"))
                .map(|re| re.is_match(name))
                .unwrap_or(false)
        })
    };
    let schema = qualified.split('.').next().unwrap_or(qualified);
    (config.include.is_empty() || matches(&config.include, qualified))
        && !matches(&config.exclude, qualified)
        && (config.schema_include.is_empty() || matches(&config.schema_include, schema))
        && !matches(&config.schema_exclude, schema)
}

/// Whether the stream decodes `qualified`'s changes: a selected table, or
/// the signal table (whose rows are read as requests, not published).
pub(crate) fn streamed(config: &PostgresCdcConfig, qualified: &str) -> bool {
    config.signal_table.as_deref() == Some(qualified) || selected(config, qualified)
}

/// The user tables the config selects, by OID.
pub(crate) async fn selected_tables(
    sql: &Client,
    config: &PostgresCdcConfig,
) -> Result<Vec<(u32, String, String)>, ConnectorError> {
    let rows = sql
        .query(
            "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             ORDER BY n.nspname, c.relname",
            &[],
        )
        .await
        .map_err(|e| pg_error("list tables", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, u32>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
            )
        })
        .filter(|(_, schema, name)| selected(config, &format!("{schema}.{name}")))
        .collect())
}

/// A table as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct Description {
    /// Column names and type OIDs, in table order.
    pub(crate) columns: Vec<(String, u32)>,
    /// The columns declared NOT NULL.
    pub(crate) required: HashSet<String>,
    /// The key columns: the primary key, or else the replica identity
    /// index; empty when there is neither.
    pub(crate) key: Vec<String>,
    /// Whether Postgres can log the old row of an UPDATE or DELETE on the
    /// table (on every leaf partition of a partitioned one). A published
    /// table that cannot makes the application's own UPDATE and DELETE fail.
    pub(crate) has_identity: bool,
}

/// Columns, key and replica identity of a table.
pub(crate) async fn describe(sql: &Client, oid: u32) -> Result<Description, ConnectorError> {
    let rows = sql
        .query(
            "SELECT attname, atttypid, attnotnull FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("read columns", e))?;
    let columns = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, u32>(1)))
        .collect();
    let required = rows
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| r.get::<_, String>(0))
        .collect();
    // The primary key first; a table without one may name a unique index
    // as its replica identity.
    let key = sql
        .query(
            "SELECT a.attname FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND i.indexrelid = ( \
               SELECT x.indexrelid FROM pg_catalog.pg_index x WHERE x.indrelid = $1 \
                 AND (x.indisprimary OR x.indisreplident) ORDER BY x.indisprimary DESC LIMIT 1) \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("read the primary key", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    // What Postgres checks before it lets an UPDATE or DELETE through on a
    // table that a publication publishes, leaf by leaf: REPLICA IDENTITY
    // FULL, an identity index, or the default with a primary key.
    let has_identity = sql
        .query_one(
            "WITH leaves AS ( \
               SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass) WHERE isleaf \
               UNION ALL SELECT $1::oid::regclass \
                 WHERE (SELECT relkind FROM pg_catalog.pg_class WHERE oid = $1::oid) <> 'p') \
             SELECT coalesce(bool_and(CASE c.relreplident \
               WHEN 'f' THEN true \
               WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) \
               WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
               ELSE false END), true) \
             FROM leaves l JOIN pg_catalog.pg_class c ON c.oid = l.relid",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("read the replica identity", e))?
        .get::<_, bool>(0);
    Ok(Description {
        columns,
        required,
        key,
        has_identity,
    })
}

/// The table a relation's changes belong to: itself, or the root of the
/// partition tree it is a partition of. `None` when it no longer exists.
pub(crate) async fn root_of(
    sql: &Client,
    oid: u32,
) -> Result<Option<(u32, String, String)>, ConnectorError> {
    let row = sql
        .query_opt(
            "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = coalesce(pg_catalog.pg_partition_root($1::oid::regclass)::oid, $1::oid)",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("read the partition root", e))?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// The remedy for a table without a replica identity.
pub(crate) fn identity_remedy(schema: &str, name: &str) -> String {
    let table = format!("{}.{}", quote_ident(schema), quote_ident(name));
    format!(
        "ALTER TABLE {table} ADD PRIMARY KEY (...), or ALTER TABLE {table} REPLICA IDENTITY FULL \
         (or REPLICA IDENTITY USING INDEX on a unique index of NOT NULL columns)"
    )
}

/// Build a [`Table`] from its columns (names and type OIDs), and the key
/// and NOT NULL columns of its catalog description.
pub(crate) fn table(
    prefix: &str,
    (schema, name): (&str, &str),
    columns: &[(String, u32)],
    described: &Description,
    types: &Types,
) -> Table {
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let mut key: Vec<usize> = described
        .key
        .iter()
        .filter_map(|k| names.iter().position(|n| n == k))
        .collect();
    let keyed = !key.is_empty();
    if !keyed {
        key = (0..names.len()).collect();
    }
    let kinds: Vec<Kind> = columns.iter().map(|(_, oid)| types.kind(*oid)).collect();
    let typed: Vec<ColumnType<'_>> = columns
        .iter()
        .zip(&kinds)
        .map(|((n, oid), kind)| ColumnType {
            name: n,
            oid: *oid,
            kind,
            optional: !described.required.contains(n),
        })
        .collect();
    let topic = topic_of(prefix, schema, name);
    if schema.contains('/') || name.contains('/') {
        warn!(table = %format!("{schema}.{name}"), topic = %topic,
            "a topic name holds no /: the table's events go to this topic");
    }
    let event_schema = schema::build(&topic, &typed, &key);
    Table {
        schema: schema.to_owned(),
        name: name.to_owned(),
        kinds,
        columns: names,
        key,
        keyed,
        event_schema,
        by_name: Vec::new(),
        key_by_name: Vec::new(),
    }
    .ordered()
}

/// `X/Y` as a number.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A number as `X/Y`.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Quote an identifier for SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal for SQL.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The tables by OID, described for events: the selected tables that have
/// a replica identity. A table without one is left out, and said so: were
/// it published, Postgres would refuse the application's UPDATE and DELETE
/// on it.
pub(crate) async fn load_tables(
    sql: &Client,
    config: &PostgresCdcConfig,
    types: &Types,
) -> Result<HashMap<u32, Table>, ConnectorError> {
    let mut out = HashMap::new();
    for (oid, schema, name) in selected_tables(sql, config).await? {
        let d = describe(sql, oid).await?;
        if !d.has_identity {
            let remedy = identity_remedy(&schema, &name);
            let qualified = format!("{schema}.{name}");
            if config.include.is_empty() {
                warn!(table = %qualified, remedy = %remedy,
                    "table has no primary key or replica identity: not captured, so that the application's UPDATE and DELETE on it keep working");
            } else {
                error!(table = %qualified, remedy = %remedy,
                    "table.include.list selects a table without a primary key or replica identity: not captured, so that the application's UPDATE and DELETE on it keep working");
            }
            continue;
        }
        let t = table(
            &config.topic_prefix,
            (&schema, &name),
            &d.columns,
            &d,
            types,
        );
        out.insert(oid, t);
    }
    Ok(out)
}

/// The tables whose changes a publication carries, as the OIDs of their
/// partition roots; `None` when the publication does not exist.
pub(crate) async fn published_roots(
    sql: &Client,
    publication: &str,
) -> Result<Option<HashSet<u32>>, ConnectorError> {
    let exists = sql
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("read pg_publication", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = sql
        .query(
            "SELECT DISTINCT coalesce(pg_catalog.pg_partition_root(c.oid)::oid, c.oid) \
             FROM pg_catalog.pg_publication_tables pt \
             JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname \
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
             WHERE pt.pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("read pg_publication_tables", e))?;
    Ok(Some(rows.iter().map(|r| r.get::<_, u32>(0)).collect()))
}

/// The rows of a simple query's answer.
pub(crate) fn rows(
    messages: Vec<tokio_postgres::SimpleQueryMessage>,
) -> Vec<tokio_postgres::SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The bytes of text the values of `rows` hold: what a read of them cost.
pub(crate) fn text_bytes(rows: &[tokio_postgres::SimpleQueryRow]) -> u64 {
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|c| r.get(c).map_or(0, str::len) as u64)
                .sum::<u64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_through_text() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn a_table_without_a_primary_key_keys_on_every_column() {
        let cols = vec![("a".to_owned(), 23), ("b".to_owned(), 25)];
        let mut described = Description {
            columns: cols.clone(),
            required: HashSet::new(),
            key: Vec::new(),
            has_identity: true,
        };
        let t = table("p", ("public", "t"), &cols, &described, &Types::default());
        assert_eq!(t.key, [0, 1]);
        described.key = vec!["b".to_owned()];
        let t = table("p", ("public", "t"), &cols, &described, &Types::default());
        assert_eq!(t.key, [1]);
    }
}

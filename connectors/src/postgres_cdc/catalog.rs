//! What the source reads from the Postgres catalog: the tables it captures,
//! their keys and column types, and the state of its slot and publication.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::config::PostgresCdcConfig;
use super::types::{CatalogType, Kind, Types};
use crate::api::ConnectorError;

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
}

impl Table {
    /// `<prefix>.<schema>.<table>`.
    pub(crate) fn topic(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{}", self.schema, self.name)
    }
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
        None => format!("{context}: {e}"),
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

/// Whether `schema.table` passes the include and exclude lists (regexes
/// matched against the whole name, as Debezium does).
pub(crate) fn selected(config: &PostgresCdcConfig, qualified: &str) -> bool {
    let matches = |patterns: &[String]| {
        patterns.iter().any(|p| {
            regex_lite::Regex::new(&format!("^(?:{p})$"))
                .map(|re| re.is_match(qualified))
                .unwrap_or(false)
        })
    };
    (config.include.is_empty() || matches(&config.include)) && !matches(&config.exclude)
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

/// Columns (name, type OID) and primary-key column names of a table.
pub(crate) async fn describe(
    sql: &Client,
    oid: u32,
) -> Result<(Vec<(String, u32)>, Vec<String>), ConnectorError> {
    let columns = sql
        .query(
            "SELECT attname, atttypid FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("read columns", e))?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, u32>(1)))
        .collect();
    let key = sql
        .query(
            "SELECT a.attname FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("read the primary key", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok((columns, key))
}

/// Build a [`Table`] from its columns and primary key.
pub(crate) fn table(
    schema: &str,
    name: &str,
    columns: &[(String, u32)],
    primary_key: &[String],
    types: &Types,
) -> Table {
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let mut key: Vec<usize> = primary_key
        .iter()
        .filter_map(|k| names.iter().position(|n| n == k))
        .collect();
    if key.is_empty() {
        key = (0..names.len()).collect();
    }
    Table {
        schema: schema.to_owned(),
        name: name.to_owned(),
        kinds: columns.iter().map(|(_, oid)| types.kind(*oid)).collect(),
        columns: names,
        key,
    }
}

/// The slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub(crate) struct SlotState {
    pub(crate) confirmed_flush: Option<u64>,
    pub(crate) active_pid: Option<i32>,
    pub(crate) plugin: Option<String>,
    pub(crate) database: Option<String>,
}

pub(crate) async fn slot(sql: &Client, name: &str) -> Result<Option<SlotState>, ConnectorError> {
    let row = sql
        .query_opt(
            "SELECT confirmed_flush_lsn::text, active_pid, plugin::text, database::text \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| pg_error("read pg_replication_slots", e))?;
    Ok(row.map(|r| SlotState {
        confirmed_flush: r.get::<_, Option<String>>(0).and_then(|s| parse_lsn(&s)),
        active_pid: r.get(1),
        plugin: r.get(2),
        database: r.get(3),
    }))
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

/// The comment by which the source records, on its publication, that the
/// snapshot taken with a slot is complete.
pub(crate) fn snapshot_marker(slot: &str) -> String {
    format!("sluice: snapshot complete for slot {slot}")
}

/// Whether the publication's comment records a complete snapshot for `slot`.
pub(crate) async fn snapshot_complete(
    sql: &Client,
    publication: &str,
    slot: &str,
) -> Result<bool, ConnectorError> {
    let row = sql
        .query_opt(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("read the publication comment", e))?;
    let comment: Option<String> = row.and_then(|r| r.get(0));
    Ok(comment.is_some_and(|c| c.lines().any(|l| l == snapshot_marker(slot))))
}

/// Tables in a publication, as `schema.table`.
pub(crate) async fn publication_tables(
    sql: &Client,
    publication: &str,
) -> Result<Option<Vec<String>>, ConnectorError> {
    let exists = sql
        .query_opt(
            "SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("read pg_publication", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = sql
        .query(
            "SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("read pg_publication_tables", e))?;
    Ok(Some(
        rows.iter()
            .map(|r| format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect(),
    ))
}

/// The tables by OID, described for events.
pub(crate) async fn load_tables(
    sql: &Client,
    config: &PostgresCdcConfig,
    types: &Types,
) -> Result<HashMap<u32, Table>, ConnectorError> {
    let mut out = HashMap::new();
    for (oid, schema, name) in selected_tables(sql, config).await? {
        let (columns, pk) = describe(sql, oid).await?;
        out.insert(oid, table(&schema, &name, &columns, &pk, types));
    }
    Ok(out)
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
        let t = table("public", "t", &cols, &[], &Types::default());
        assert_eq!(t.key, [0, 1]);
        let t = table("public", "t", &cols, &["b".to_owned()], &Types::default());
        assert_eq!(t.key, [1]);
    }
}

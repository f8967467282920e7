//! The SQL of a chunk: what a table holds, where its keys (or pages)
//! end, what one chunk reads, and the read itself.

use tokio_postgres::{Client, SimpleQueryRow};

use super::super::catalog::{Table, parse_lsn, pg_error, quote_ident, quote_literal, rows};
use super::progress::{Seen, TableProgress};
use crate::api::ConnectorError;

/// A row's values as text.
pub(super) fn texts(row: &SimpleQueryRow) -> Vec<Option<String>> {
    (0..row.len())
        .map(|i| row.get(i).map(str::to_owned))
        .collect()
}

/// A list of values as SQL literals: `'a', NULL`.
pub(super) fn literals(values: &[Option<String>]) -> String {
    values
        .iter()
        .map(|v| {
            v.as_deref()
                .map_or_else(|| "NULL".to_owned(), quote_literal)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one chunk reads: its query, how many rows a keyed one asked for,
/// and, for a key-less one, where the table stands after it and whether
/// that is its end.
pub(super) struct Plan {
    pub(super) select: String,
    pub(super) asked: u64,
    pub(super) next: Option<(Vec<Option<String>>, bool)>,
}

/// The rows a table (its leaf partitions) holds by its statistics; `None`
/// before it was ever analyzed.
pub(super) async fn estimated_rows(
    sql: &Client,
    qualified: &str,
) -> Result<Option<u64>, ConnectorError> {
    let answer = sql
        .simple_query(&format!(
            "SELECT (sum(c.reltuples) FILTER (WHERE c.reltuples >= 0))::bigint::text FROM pg_class c \
             WHERE (c.oid = {t}::regclass AND c.relkind <> 'p') \
             OR c.oid IN (SELECT relid FROM pg_partition_tree({t}::regclass) WHERE isleaf)",
            t = quote_literal(qualified)
        ))
        .await
        .map_err(|e| pg_error(&format!("read the row estimate of {qualified}"), e))?;
    Ok(rows(answer)
        .first()
        .and_then(|r| r.get(0))
        .and_then(|n| n.parse().ok()))
}

/// A key (or page position) as text: `(1, 'a')`.
pub(super) fn key_text(values: &[Option<String>]) -> String {
    format!("({})", literals(values))
}

/// A keyed table's largest key, as text; `None` when it is empty.
pub(super) async fn largest_key(
    sql: &Client,
    table: &Table,
    qualified: &str,
) -> Result<Option<Vec<Option<String>>>, ConnectorError> {
    let keys: Vec<String> = table
        .key
        .iter()
        .map(|&i| quote_ident(&table.columns[i]))
        .collect();
    let order: Vec<String> = keys.iter().map(|k| format!("{k} DESC")).collect();
    let answer = sql
        .simple_query(&format!(
            "SELECT {} FROM {qualified} ORDER BY {} LIMIT 1",
            keys.join(", "),
            order.join(", ")
        ))
        .await
        .map_err(|e| pg_error(&format!("read the largest key of {qualified}"), e))?;
    Ok(rows(answer).first().map(texts))
}

/// The next rows of a keyed table, in key order, up to its upper bound.
pub(super) fn keyed_chunk(
    table: &Table,
    qualified: &str,
    progress: &TableProgress,
    asked: u64,
    columns: &str,
) -> Plan {
    let keys: Vec<String> = table
        .key
        .iter()
        .map(|&i| quote_ident(&table.columns[i]))
        .collect();
    let keys = keys.join(", ");
    let lower = match &progress.after {
        Some(after) => format!("({keys}) > ({}) AND ", literals(after)),
        None => String::new(),
    };
    let upper = progress.upper.clone().unwrap_or_default();
    Plan {
        select: format!(
            "SELECT {columns} FROM {qualified} WHERE {lower}({keys}) <= ({}) ORDER BY {keys} LIMIT {asked}",
            literals(&upper)
        ),
        asked,
        next: None,
    }
}

/// The physical relations of a key-less table, with their size in pages
/// when its copy begins: itself, or its leaf partitions. `None` when they
/// hold no page.
pub(super) async fn relations(
    sql: &Client,
    qualified: &str,
) -> Result<Option<Vec<Option<String>>>, ConnectorError> {
    let answer = sql
        .simple_query(&format!(
            "SELECT format('%I.%I', n.nspname, c.relname), \
             (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE (c.oid = {t}::regclass AND c.relkind <> 'p') \
             OR c.oid IN (SELECT relid FROM pg_partition_tree({t}::regclass) WHERE isleaf) \
             ORDER BY 1",
            t = quote_literal(qualified)
        ))
        .await
        .map_err(|e| pg_error(&format!("read the size of {qualified}"), e))?;
    let mut out = Vec::new();
    let mut pages = 0u64;
    for r in rows(answer) {
        let n: u64 = r.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        pages += n;
        out.push(r.get(0).map(|name| format!("{n} {name}")));
    }
    Ok((pages > 0).then_some(out))
}

/// The next pages of a key-less table: of its current relation (`after` is
/// `[relation, page]`), from its page count at the start.
pub(super) fn keyless_chunk(progress: &TableProgress, pages: u64, columns: &str) -> Option<Plan> {
    let relations = progress.upper.clone().unwrap_or_default();
    let at = |i: usize| -> u64 {
        progress
            .after
            .as_ref()
            .and_then(|a| a.get(i).cloned().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (mut relation, mut from) = (at(0) as usize, at(1));
    loop {
        let Some(Some(entry)) = relations.get(relation) else {
            return None;
        };
        let (size, name) = entry.split_once(' ').unwrap_or(("0", entry));
        let size: u64 = size.parse().unwrap_or(0);
        if from >= size {
            relation += 1;
            from = 0;
            continue;
        }
        let to = from.saturating_add(pages);
        let last = to >= size && relation + 1 >= relations.len();
        let next = if to >= size {
            vec![Some((relation + 1).to_string()), Some("0".to_owned())]
        } else {
            vec![Some(relation.to_string()), Some(to.to_string())]
        };
        return Some(Plan {
            select: format!(
                "SELECT {columns} FROM ONLY {name} WHERE ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid"
            ),
            asked: 0,
            next: Some((next, last)),
        });
    }
}

/// Read one chunk (`select`) in a short REPEATABLE READ transaction of its
/// own, with the snapshot it saw and the WAL position at that moment.
pub(super) async fn read_chunk(
    sql: &Client,
    select: &str,
    qualified: &str,
) -> Result<(Seen, u64, Vec<SimpleQueryRow>), ConnectorError> {
    let answer = sql
        .simple_query(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text; \
                 {}; COMMIT",
            select
        ))
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let _ = sql.batch_execute("ROLLBACK").await;
            return Err(pg_error(&format!("read a chunk of {qualified}"), e));
        }
    };
    let mut all = rows(answer).into_iter();
    let point = all
        .next()
        .ok_or_else(|| ConnectorError::retryable("a chunk's read returned no snapshot"))?;
    let seen = point
        .get(0)
        .and_then(Seen::parse)
        .ok_or_else(|| ConnectorError::permanent("cannot read pg_current_snapshot()"))?;
    let wal = point
        .get(1)
        .and_then(parse_lsn)
        .ok_or_else(|| ConnectorError::permanent("cannot read the WAL position"))?;
    Ok((seen, wal, all.collect()))
}

//! What a target's catalog says about a table: its columns and their
//! types, its primary key, and what the connected user may do to it.

use sqlx::{AnyPool, Row};

use super::sql::{Dialect, TableName};
use super::text;

/// A table as its catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description {
    /// Column names and types, in table order.
    pub(crate) columns: Vec<(String, String)>,
    /// The primary key's columns, in key order; empty without one.
    pub(crate) primary_key: Vec<String>,
}

/// Describe `name`; `None` when it does not exist. A Postgres name is
/// looked up in its schema only, so that a name of the system catalog
/// cannot resolve there through the search path.
pub(crate) async fn describe(
    pool: &AnyPool,
    dialect: Dialect,
    name: &TableName,
) -> Result<Option<Description>, sqlx::Error> {
    let table = &name.table;
    let (columns, key): (Vec<(String, String)>, Vec<String>) = match dialect {
        Dialect::Postgres => {
            let qualified = dialect.table(name);
            // The type without its modifier: values are cast to it, and an
            // explicit cast to `varchar(5)` would cut a longer value short
            // where storing it into the column refuses it.
            let columns = sqlx::query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL) \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
            )
            .bind(&qualified)
            .fetch_all(pool)
            .await?;
            let key = sqlx::query(
                "SELECT a.attname::text FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
            )
            .bind(&qualified)
            .fetch_all(pool)
            .await?;
            (pairs(&columns)?, firsts(&key)?)
        }
        Dialect::MySql => {
            let columns = sqlx::query(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) \
                 FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            )
            .bind(table)
            .fetch_all(pool)
            .await?;
            let key = sqlx::query(
                "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY ORDINAL_POSITION",
            )
            .bind(table)
            .fetch_all(pool)
            .await?;
            (pairs(&columns)?, firsts(&key)?)
        }
        Dialect::Sqlite => {
            let columns = sqlx::query("SELECT name, type FROM pragma_table_info(?) ORDER BY cid")
                .bind(table)
                .fetch_all(pool)
                .await?;
            let key = sqlx::query("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk")
                .bind(table)
                .fetch_all(pool)
                .await?;
            (pairs(&columns)?, firsts(&key)?)
        }
    };
    if columns.is_empty() {
        return Ok(None);
    }
    Ok(Some(Description {
        columns,
        primary_key: key,
    }))
}

/// Schemas that hold Postgres's own tables: never the sink's.
const SYSTEM_SCHEMAS: [&str; 3] = ["pg_catalog", "information_schema", "pg_toast"];

/// The schema unqualified names resolve to for writing (Postgres's
/// `current_schema()`); `None` on the other engines, whose connection names
/// the database. A connection without one, or with a system schema, is
/// refused.
pub(crate) async fn default_schema(
    pool: &AnyPool,
    dialect: Dialect,
) -> Result<Option<String>, String> {
    if dialect != Dialect::Postgres {
        return Ok(None);
    }
    let schema: Option<String> = sqlx::query("SELECT current_schema()::text")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("read the default schema: {e}"))?
        .get(0);
    match schema {
        None => Err(
            "the connection has no default schema (search_path names no schema that exists): \
             set search_path for the sink's user"
                .to_owned(),
        ),
        Some(s) if SYSTEM_SCHEMAS.contains(&s.as_str()) || s.starts_with("pg_") => Err(format!(
            "the connection's default schema is the system schema {s}: sluice writes only to application schemas"
        )),
        Some(s) => Ok(Some(s)),
    }
}

/// What the user may write beyond `targets` (tables of the default schema
/// or database): a warning's text, or `None` when it may write nothing
/// else. Superusers may write anywhere.
pub(crate) async fn wider_rights(
    pool: &AnyPool,
    dialect: Dialect,
    targets: &[String],
) -> Result<Option<String>, sqlx::Error> {
    match dialect {
        Dialect::Sqlite => Ok(None),
        Dialect::Postgres => {
            let superuser: bool = sqlx::query(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            )
            .fetch_one(pool)
            .await?
            .get(0);
            if superuser {
                return Ok(Some(
                    "the sink's user is a superuser, so it could write anywhere: give it a role \
                     that may write only its target tables"
                        .to_owned(),
                ));
            }
            let rows = sqlx::query(
                "SELECT (n.nspname || '.' || c.relname)::text, c.relname::text FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE') \
                     OR has_table_privilege(c.oid, 'DELETE')) \
                   AND NOT (n.nspname = current_schema() AND c.relname = ANY(string_to_array($1, chr(31)))) \
                 ORDER BY 1",
            )
            .bind(others_list(targets))
            .fetch_all(pool)
            .await?;
            let others = firsts(&rows)?;
            Ok((!others.is_empty()).then(|| wider(&others)))
        }
        Dialect::MySql => {
            let grants = firsts(
                &sqlx::query(
                    "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.USER_PRIVILEGES \
                     WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                     SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''') \
                     AND PRIVILEGE_TYPE IN ('INSERT', 'UPDATE', 'DELETE', 'SUPER')",
                )
                .fetch_all(pool)
                .await?,
            )?;
            if !grants.is_empty() {
                return Ok(Some(format!(
                    "the sink's user holds {} on every database (*.*), so it could write anywhere: \
                     grant it only its target tables",
                    grants.join(", ")
                )));
            }
            Ok(None)
        }
    }
}

/// The names sluice may write, joined for `string_to_array`: the targets
/// and its watermark table.
fn others_list(targets: &[String]) -> String {
    let mut names: Vec<&str> = targets.iter().map(String::as_str).collect();
    names.push(super::watermark::TABLE);
    names.join("\u{1f}")
}

fn wider(others: &[String]) -> String {
    let shown: Vec<&str> = others.iter().take(5).map(String::as_str).collect();
    let more = others.len().saturating_sub(shown.len());
    format!(
        "the sink's user may write tables it does not target: {}{}; grant it only its target tables",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn pairs(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(String, String)>, sqlx::Error> {
    rows.iter()
        .map(|r| Ok((text::required(r, 0)?, text::required(r, 1)?)))
        .collect()
}

fn firsts(rows: &[sqlx::any::AnyRow]) -> Result<Vec<String>, sqlx::Error> {
    rows.iter().map(|r| text::required(r, 0)).collect()
}

/// The privileges among `wanted` (`INSERT`, `UPDATE`, `DELETE`, ...) that
/// the connected user lacks on `table`. SQLite has no privileges.
pub(crate) async fn missing_privileges(
    pool: &AnyPool,
    dialect: Dialect,
    name: &TableName,
    wanted: &[&'static str],
) -> Result<Vec<&'static str>, sqlx::Error> {
    let table = &name.table;
    let mut missing = Vec::new();
    match dialect {
        Dialect::Sqlite => {}
        Dialect::Postgres => {
            let qualified = dialect.table(name);
            for privilege in wanted {
                let granted: bool =
                    sqlx::query("SELECT has_table_privilege(to_regclass($1)::oid, $2)")
                        .bind(&qualified)
                        .bind(*privilege)
                        .fetch_one(pool)
                        .await?
                        .get(0);
                if !granted {
                    missing.push(*privilege);
                }
            }
        }
        Dialect::MySql => {
            // Grants on everything, on this database, and on this table.
            let grantee = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                           SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
            let statement = format!(
                "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.USER_PRIVILEGES \
                 WHERE GRANTEE = {grantee} \
                 UNION SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.SCHEMA_PRIVILEGES \
                 WHERE GRANTEE = {grantee} AND TABLE_SCHEMA = DATABASE() \
                 UNION SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.TABLE_PRIVILEGES \
                 WHERE GRANTEE = {grantee} AND TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
            );
            let granted = firsts(&sqlx::query(&statement).bind(table).fetch_all(pool).await?)?;
            missing.extend(
                wanted
                    .iter()
                    .filter(|w| !granted.iter().any(|g| g.eq_ignore_ascii_case(w))),
            );
        }
    }
    Ok(missing)
}

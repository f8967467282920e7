//! What a target's catalog says about a table: its columns and their
//! types, its primary key, and what the connected user may do to it.

use sqlx::{AnyPool, Row};

use super::sql::{Dialect, TableName};

/// A table as its catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description {
    /// Column names and types, in table order.
    pub(crate) columns: Vec<(String, String)>,
    /// The primary key's columns, in key order; empty without one.
    pub(crate) primary_key: Vec<String>,
}

/// Describe `table`; `None` when it does not exist.
pub(crate) async fn describe(
    pool: &AnyPool,
    dialect: Dialect,
    table: &str,
) -> Result<Option<Description>, sqlx::Error> {
    let (columns, key): (Vec<(String, String)>, Vec<String>) = match dialect {
        Dialect::Postgres => {
            let qualified = dialect.table(&TableName {
                schema: None,
                table: table.to_owned(),
            });
            let columns = sqlx::query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
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
            (pairs(&columns), firsts(&key))
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
            (pairs(&columns), firsts(&key))
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
            (pairs(&columns), firsts(&key))
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

fn pairs(rows: &[sqlx::any::AnyRow]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}

fn firsts(rows: &[sqlx::any::AnyRow]) -> Vec<String> {
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

/// The privileges among `wanted` (`INSERT`, `UPDATE`, `DELETE`, ...) that
/// the connected user lacks on `table`. SQLite has no privileges.
pub(crate) async fn missing_privileges(
    pool: &AnyPool,
    dialect: Dialect,
    table: &str,
    wanted: &[&'static str],
) -> Result<Vec<&'static str>, sqlx::Error> {
    let mut missing = Vec::new();
    match dialect {
        Dialect::Sqlite => {}
        Dialect::Postgres => {
            let qualified = dialect.table(&TableName {
                schema: None,
                table: table.to_owned(),
            });
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
            let granted = firsts(
                &sqlx::query(sqlx::AssertSqlSafe(statement))
                    .bind(table)
                    .fetch_all(pool)
                    .await?,
            );
            missing.extend(
                wanted
                    .iter()
                    .filter(|w| !granted.iter().any(|g| g.eq_ignore_ascii_case(w))),
            );
        }
    }
    Ok(missing)
}

//! SQL text for the database sink: quoted identifiers and set-based
//! statements with numbered or positional placeholders, per dialect.
//!
//! Identifiers are always quoted and values are never put into the text:
//! every value is a bound parameter. A table or column name that comes from a
//! message therefore cannot change what a statement does.

/// The SQL dialect of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `"name"`, `$1`, `ON CONFLICT (..) DO UPDATE`.
    Postgres,
    /// MySQL and MariaDB: `` `name` ``, `?`, `ON DUPLICATE KEY UPDATE`.
    MySql,
    /// SQLite: `"name"`, `?`, `ON CONFLICT (..) DO UPDATE`.
    Sqlite,
}

/// A qualified table name: an optional schema and a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The schema (Postgres) or database (MySQL); `None` for the default.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

impl Dialect {
    /// Quote an identifier so that any text is taken as a name.
    pub fn quote(self, name: &str) -> String {
        match self {
            Self::Postgres | Self::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
            Self::MySql => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// The quoted, qualified name of a table.
    pub fn table(self, name: &TableName) -> String {
        match &name.schema {
            Some(schema) if self != Self::Sqlite => {
                format!("{}.{}", self.quote(schema), self.quote(&name.table))
            }
            _ => self.quote(&name.table),
        }
    }

    /// The placeholder for the `n`-th bound value, counting from 1, cast to
    /// the column's type where one is given (Postgres): values are bound as
    /// text and the database parses them.
    fn placeholder(self, n: usize, column_type: Option<&str>) -> String {
        match (self, column_type) {
            (Self::Postgres, Some(t)) => format!("CAST(${n} AS {t})"),
            (Self::Postgres, None) => format!("${n}"),
            (Self::MySql | Self::Sqlite, _) => "?".to_owned(),
        }
    }

    /// Placeholders for `rows` rows of `columns` values, as `(..), (..)`,
    /// numbered from `first`.
    fn rows(self, first: usize, rows: usize, columns: usize, types: Option<&[String]>) -> String {
        let mut n = first;
        (0..rows)
            .map(|_| {
                let values: Vec<String> = (0..columns)
                    .map(|c| {
                        n += 1;
                        self.placeholder(n, types.and_then(|t| t.get(c)).map(String::as_str))
                    })
                    .collect();
                format!("({})", values.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `INSERT` of `rows` rows; values bind row by row, column by column.
    /// `types`, when given, are the columns' types.
    pub fn insert(
        self,
        table: &TableName,
        columns: &[String],
        types: Option<&[String]>,
        rows: usize,
    ) -> String {
        let cols: Vec<String> = columns.iter().map(|c| self.quote(c)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table(table),
            cols.join(", "),
            self.rows(0, rows, columns.len(), types)
        )
    }

    /// Postgres: `INSERT` of any number of rows from one text array per
    /// column (`UNNEST`), each element cast to its column's type. The text
    /// does not depend on the number of rows, so the server parses and
    /// plans it once per connection, and a batch binds one value per
    /// column instead of one per cell. With `key`, rows whose key exists
    /// have their other columns updated (nothing when there is none).
    pub fn insert_columns(
        table: &TableName,
        columns: &[String],
        types: &[String],
        key: Option<&[String]>,
    ) -> String {
        let d = Self::Postgres;
        let cols: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let select: Vec<String> = cols
            .iter()
            .zip(types)
            .map(|(c, t)| format!("CAST(u.{c} AS {t})"))
            .collect();
        let arrays: Vec<String> = (1..=columns.len())
            .map(|n| format!("CAST(${n} AS text[])"))
            .collect();
        let insert = format!(
            "INSERT INTO {} ({cols}) SELECT {} FROM UNNEST({}) AS u({cols})",
            d.table(table),
            select.join(", "),
            arrays.join(", "),
            cols = cols.join(", "),
        );
        let Some(key) = key else {
            return insert;
        };
        let conflict: Vec<String> = key.iter().map(|k| d.quote(k)).collect();
        let set: Vec<String> = columns
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| format!("{q} = excluded.{q}", q = d.quote(c)))
            .collect();
        if set.is_empty() {
            format!("{insert} ON CONFLICT ({}) DO NOTHING", conflict.join(", "))
        } else {
            format!(
                "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                conflict.join(", "),
                set.join(", ")
            )
        }
    }

    /// An insert that updates the non-key columns of rows whose key exists.
    /// With no non-key column, existing rows are left as they are.
    pub fn upsert(
        self,
        table: &TableName,
        columns: &[String],
        types: Option<&[String]>,
        key: &[String],
        rows: usize,
    ) -> String {
        let insert = self.insert(table, columns, types, rows);
        let rest: Vec<&String> = columns.iter().filter(|c| !key.contains(c)).collect();
        match self {
            Self::Postgres | Self::Sqlite => {
                let conflict: Vec<String> = key.iter().map(|k| self.quote(k)).collect();
                if rest.is_empty() {
                    format!("{insert} ON CONFLICT ({}) DO NOTHING", conflict.join(", "))
                } else {
                    let set: Vec<String> = rest
                        .iter()
                        .map(|c| format!("{q} = excluded.{q}", q = self.quote(c)))
                        .collect();
                    format!(
                        "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                        conflict.join(", "),
                        set.join(", ")
                    )
                }
            }
            Self::MySql => {
                // Assigning a key column to itself makes the no-op update explicit.
                let targets: Vec<&String> = if rest.is_empty() {
                    key.iter().collect()
                } else {
                    rest
                };
                let set: Vec<String> = targets
                    .iter()
                    .map(|c| format!("{q} = VALUES({q})", q = self.quote(c)))
                    .collect();
                format!("{insert} ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
        }
    }

    /// `UPDATE` of one row's `columns`, found by its key; values bind
    /// `columns` first, then `key`, and so do `types`.
    pub fn update(
        self,
        table: &TableName,
        columns: &[String],
        key: &[String],
        types: Option<&[String]>,
    ) -> String {
        let ty = |i: usize| types.and_then(|t| t.get(i)).map(String::as_str);
        let set: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = {}", self.quote(c), self.placeholder(i + 1, ty(i))))
            .collect();
        let filter: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let n = columns.len() + i;
                format!("{} = {}", self.quote(k), self.placeholder(n + 1, ty(n)))
            })
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {}",
            self.table(table),
            set.join(", "),
            filter.join(" AND ")
        )
    }

    /// `DELETE` of `rows` rows by key; values bind row by row. `types`, when
    /// given, are the key columns' types.
    pub fn delete(
        self,
        table: &TableName,
        key: &[String],
        types: Option<&[String]>,
        rows: usize,
    ) -> String {
        let cols: Vec<String> = key.iter().map(|k| self.quote(k)).collect();
        if key.len() == 1 {
            let ty = types.and_then(|t| t.first()).map(String::as_str);
            let values: Vec<String> = (1..=rows).map(|n| self.placeholder(n, ty)).collect();
            format!(
                "DELETE FROM {} WHERE {} IN ({})",
                self.table(table),
                cols[0],
                values.join(", ")
            )
        } else {
            format!(
                "DELETE FROM {} WHERE ({}) IN ({})",
                self.table(table),
                cols.join(", "),
                self.rows(0, rows, key.len(), types)
            )
        }
    }

    /// Empty a table, inside the batch's transaction: MySQL's `TRUNCATE`
    /// would commit it, so MySQL and SQLite delete every row.
    pub fn truncate(self, table: &TableName) -> String {
        match self {
            Self::Sqlite | Self::MySql => format!("DELETE FROM {}", self.table(table)),
            Self::Postgres => format!("TRUNCATE TABLE {}", self.table(table)),
        }
    }

    /// The column type for a JSON value, when a table or column is created
    /// from a record: the record carries values, not their declared types.
    pub fn column_type(self, value: &serde_json::Value, is_key: bool) -> &'static str {
        use serde_json::Value;
        match (self, value) {
            (Self::Postgres, Value::Bool(_)) => "boolean",
            (Self::Postgres, Value::Number(n)) if n.is_f64() => "double precision",
            (Self::Postgres, Value::Number(_)) => "bigint",
            (Self::Postgres, Value::Object(_) | Value::Array(_)) => "jsonb",
            (Self::Postgres, _) => "text",
            (Self::MySql, Value::Bool(_)) => "BOOLEAN",
            (Self::MySql, Value::Number(n)) if n.is_f64() => "DOUBLE",
            (Self::MySql, Value::Number(_)) => "BIGINT",
            (Self::MySql, Value::Object(_) | Value::Array(_)) => "JSON",
            // MySQL indexes text only up to a length.
            (Self::MySql, _) if is_key => "VARCHAR(255)",
            (Self::MySql, _) => "LONGTEXT",
            (Self::Sqlite, Value::Bool(_)) => "BOOLEAN",
            (Self::Sqlite, Value::Number(n)) if n.is_f64() => "REAL",
            (Self::Sqlite, Value::Number(_)) => "INTEGER",
            (Self::Sqlite, Value::Object(_) | Value::Array(_)) => "JSON",
            (Self::Sqlite, _) => "TEXT",
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` with `columns` (name, type) and a
    /// primary key.
    pub fn create_table(
        self,
        table: &TableName,
        columns: &[(String, &str)],
        key: &[String],
    ) -> String {
        let cols: Vec<String> = columns
            .iter()
            .map(|(name, ty)| {
                let not_null = if key.contains(name) { " NOT NULL" } else { "" };
                format!("{} {ty}{not_null}", self.quote(name))
            })
            .collect();
        let key: Vec<String> = key.iter().map(|k| self.quote(k)).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.table(table),
            cols.join(", "),
            key.join(", ")
        )
    }

    /// `ALTER TABLE .. ADD COLUMN`.
    pub fn add_column(self, table: &TableName, column: &str, column_type: &str) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {} {column_type}",
            self.table(table),
            self.quote(column)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableName {
        TableName {
            schema: Some("public".into()),
            table: name.into(),
        }
    }

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn postgres_upserts_many_rows_with_numbered_parameters() {
        let sql = Dialect::Postgres.upsert(
            &t("orders"),
            &cols(&["id", "status"]),
            None,
            &cols(&["id"]),
            2,
        );
        assert_eq!(
            sql,
            "INSERT INTO \"public\".\"orders\" (\"id\", \"status\") VALUES ($1, $2), ($3, $4) \
             ON CONFLICT (\"id\") DO UPDATE SET \"status\" = excluded.\"status\""
        );
    }

    #[test]
    fn mysql_upserts_with_on_duplicate_key() {
        let sql = Dialect::MySql.upsert(
            &t("orders"),
            &cols(&["id", "status"]),
            None,
            &cols(&["id"]),
            1,
        );
        assert_eq!(
            sql,
            "INSERT INTO `public`.`orders` (`id`, `status`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `status` = VALUES(`status`)"
        );
        let key_only = Dialect::MySql.upsert(&t("k"), &cols(&["id"]), None, &cols(&["id"]), 1);
        assert!(
            key_only.ends_with("ON DUPLICATE KEY UPDATE `id` = VALUES(`id`)"),
            "{key_only}"
        );
    }

    #[test]
    fn tables_and_columns_are_created_from_values() {
        use serde_json::json;
        let columns = [
            (
                "id".to_owned(),
                Dialect::MySql.column_type(&json!("a"), true),
            ),
            (
                "n".to_owned(),
                Dialect::MySql.column_type(&json!(1.5), false),
            ),
        ];
        assert_eq!(
            Dialect::MySql.create_table(&t("x"), &columns, &cols(&["id"])),
            "CREATE TABLE IF NOT EXISTS `public`.`x` (`id` VARCHAR(255) NOT NULL, `n` DOUBLE, PRIMARY KEY (`id`))"
        );
        assert_eq!(
            Dialect::Postgres.add_column(
                &t("x"),
                "d",
                Dialect::Postgres.column_type(&json!({}), false)
            ),
            "ALTER TABLE \"public\".\"x\" ADD COLUMN \"d\" jsonb"
        );
        assert_eq!(Dialect::MySql.truncate(&t("x")), "DELETE FROM `public`.`x`");
    }

    #[test]
    fn sqlite_ignores_schemas_and_truncates_with_delete() {
        assert_eq!(Dialect::Sqlite.truncate(&t("x")), "DELETE FROM \"x\"");
        assert_eq!(
            Dialect::Sqlite.upsert(&t("x"), &cols(&["id"]), None, &cols(&["id"]), 1),
            "INSERT INTO \"x\" (\"id\") VALUES (?) ON CONFLICT (\"id\") DO NOTHING"
        );
    }

    #[test]
    fn deletes_by_single_and_composite_keys() {
        assert_eq!(
            Dialect::Postgres.delete(&t("t"), &cols(&["id"]), None, 3),
            "DELETE FROM \"public\".\"t\" WHERE \"id\" IN ($1, $2, $3)"
        );
        assert_eq!(
            Dialect::Postgres.delete(&t("t"), &cols(&["a", "b"]), None, 2),
            "DELETE FROM \"public\".\"t\" WHERE (\"a\", \"b\") IN (($1, $2), ($3, $4))"
        );
    }

    #[test]
    fn updates_bind_values_then_key() {
        assert_eq!(
            Dialect::Postgres.update(&t("t"), &cols(&["v", "w"]), &cols(&["id"]), None),
            "UPDATE \"public\".\"t\" SET \"v\" = $1, \"w\" = $2 WHERE \"id\" = $3"
        );
    }

    #[test]
    fn postgres_casts_bound_text_to_column_types() {
        let types = vec!["integer".to_owned(), "timestamp with time zone".to_owned()];
        assert_eq!(
            Dialect::Postgres.upsert(
                &t("t"),
                &cols(&["id", "at"]),
                Some(&types),
                &cols(&["id"]),
                1
            ),
            "INSERT INTO \"public\".\"t\" (\"id\", \"at\") VALUES (CAST($1 AS integer), CAST($2 AS timestamp with time zone)) \
             ON CONFLICT (\"id\") DO UPDATE SET \"at\" = excluded.\"at\""
        );
        assert_eq!(
            Dialect::Postgres.delete(&t("t"), &cols(&["id"]), Some(&types[..1]), 2),
            "DELETE FROM \"public\".\"t\" WHERE \"id\" IN (CAST($1 AS integer), CAST($2 AS integer))"
        );
    }

    #[test]
    fn hostile_names_stay_names() {
        let names = [
            "a\"; DROP TABLE t; --",
            "select",
            "naïve ☃",
            "back`tick",
            "it's",
        ];
        for name in names {
            for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
                let quoted = dialect.quote(name);
                let (open, close) = (
                    quoted.chars().next().unwrap(),
                    quoted.chars().last().unwrap(),
                );
                assert_eq!(open, close);
                // Inside the quotes, every quote character is doubled: the name cannot end the identifier.
                let inner = &quoted[open.len_utf8()..quoted.len() - close.len_utf8()];
                assert_eq!(
                    inner.replace(&format!("{open}{open}"), ""),
                    name.replace(open, ""),
                    "{dialect:?} {name}"
                );
                let sql = dialect.insert(
                    &TableName {
                        schema: None,
                        table: name.into(),
                    },
                    &[name.to_owned()],
                    None,
                    1,
                );
                assert_eq!(sql.matches(&quoted).count(), 2, "{sql}");
            }
        }
    }

    #[test]
    fn postgres_column_arrays_do_not_depend_on_the_row_count() {
        let t = TableName {
            schema: Some("public".into()),
            table: "t".into(),
        };
        let cols = ["id".to_owned(), "v".to_owned()];
        let types = ["integer".to_owned(), "text".to_owned()];
        assert_eq!(
            Dialect::insert_columns(&t, &cols, &types, Some(&["id".to_owned()])),
            "INSERT INTO \"public\".\"t\" (\"id\", \"v\") SELECT CAST(u.\"id\" AS integer), CAST(u.\"v\" AS text) \
             FROM UNNEST(CAST($1 AS text[]), CAST($2 AS text[])) AS u(\"id\", \"v\") \
             ON CONFLICT (\"id\") DO UPDATE SET \"v\" = excluded.\"v\""
        );
        assert!(
            Dialect::insert_columns(&t, &cols[..1], &types[..1], Some(&cols[..1]))
                .ends_with("ON CONFLICT (\"id\") DO NOTHING")
        );
        assert!(!Dialect::insert_columns(&t, &cols, &types, None).contains("ON CONFLICT"));
    }
}

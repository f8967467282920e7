//! The target tables as the sink knows them: read from the catalog,
//! created and widened when the configuration allows it.

use super::*;

impl DbSink {
    pub(super) fn table_name(&self, table: &str) -> TableName {
        TableName {
            schema: self.schema.clone(),
            table: table.to_owned(),
        }
    }

    /// The catalog's view of a table, read once and kept; `None` when the
    /// table does not exist.
    pub(super) async fn table(
        &mut self,
        name: &str,
    ) -> Result<Option<Arc<TableInfo>>, ConnectorError> {
        if let Some(t) = self.tables.get(name) {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(description) = catalog::describe(&self.pool, self.dialect, &self.table_name(name))
            .await
            .map_err(|e| db_error(&format!("read the catalog entry of {name}"), e))?
        else {
            return Ok(None);
        };
        let key = if self.config.key.is_empty() {
            description.primary_key
        } else {
            self.config.key.clone()
        };
        if key.is_empty() {
            return Err(ConnectorError::configuration(format!(
                "table {name} has no primary key: add one, or set `key`"
            )));
        }
        let targets = description
            .columns
            .iter()
            .map(|(c, t)| (c.clone(), Target::of(self.dialect, t)))
            .collect();
        let info = Arc::new(TableInfo {
            types: description.columns.into_iter().collect(),
            targets,
            key,
        });
        self.tables.insert(name.to_owned(), Arc::clone(&info));
        Ok(Some(info))
    }

    /// The table a change goes to, created from the change when it is
    /// missing and `autoCreateTable` is on.
    pub(super) async fn table_for(
        &mut self,
        change: &Change,
        record: &SinkRecord,
    ) -> Result<Arc<TableInfo>, ConnectorError> {
        if let Some(info) = self.table(&change.table).await? {
            return Ok(info);
        }
        if !self.config.auto_create_table {
            return Err(ConnectorError::configuration(format!(
                "the target has no table {}: create it, or set autoCreateTable",
                change.table
            )));
        }
        let key = if self.config.key.is_empty() {
            record
                .key
                .as_deref()
                .and_then(|k| serde_json::from_str::<Value>(k).ok())
                .and_then(|k| k.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default()
        } else {
            self.config.key.clone()
        };
        if key.is_empty() || key.iter().any(|k| !change.values.contains_key(k)) {
            return Err(ConnectorError::permanent(format!(
                "autoCreateTable cannot tell the key of {}: set `key`, or send records keyed by a JSON object of key columns",
                change.table
            )));
        }
        let columns: Vec<(String, &str)> = change
            .values
            .iter()
            .map(|(c, v)| (c.clone(), self.dialect.column_type(v, key.contains(c))))
            .collect();
        let statement = self
            .dialect
            .create_table(&self.table_name(&change.table), &columns, &key);
        // Identifiers are quoted (see `sql`).
        self.pool
            .execute(statement.as_str())
            .await
            .map_err(|e| db_error(&format!("create table {}", change.table), e))?;
        tracing::info!(table = %change.table, "created the target table");
        self.table(&change.table).await?.ok_or_else(|| {
            ConnectorError::permanent(format!("table {} vanished once created", change.table))
        })
    }

    /// Make sure every column a change names exists: re-read the catalog
    /// once, since the table may have changed, then add the columns when
    /// `autoAddColumns` is on.
    pub(super) async fn ensure_columns(
        &mut self,
        table: &str,
        changes: &[&Change],
    ) -> Result<Arc<TableInfo>, ConnectorError> {
        let missing = |info: &TableInfo| {
            let mut out: Vec<(String, Value)> = Vec::new();
            for change in changes {
                for (column, value) in &change.values {
                    if !info.types.contains_key(column) && !out.iter().any(|(c, _)| c == column) {
                        out.push((column.clone(), value.clone()));
                    }
                }
            }
            out
        };
        let cached = self.tables.get(table).cloned();
        if let Some(info) = &cached
            && missing(info).is_empty()
        {
            return Ok(Arc::clone(info));
        }
        self.tables.remove(table);
        let fresh = self.table(table).await?.ok_or_else(|| {
            ConnectorError::configuration(format!(
                "the target has no table {table}: create it, or set autoCreateTable"
            ))
        })?;
        let absent = missing(&fresh);
        if absent.is_empty() {
            return Ok(fresh);
        }
        if !self.config.auto_add_columns {
            let names: Vec<&str> = absent.iter().map(|(c, _)| c.as_str()).collect();
            return Err(ConnectorError::permanent(format!(
                "table {table} has no column {}; add it, or set autoAddColumns",
                names.join(", ")
            )));
        }
        for (column, value) in &absent {
            let statement = self.dialect.add_column(
                &self.table_name(table),
                column,
                self.dialect.column_type(value, false),
            );
            // Identifiers are quoted (see `sql`).
            self.pool
                .execute(statement.as_str())
                .await
                .map_err(|e| db_error(&format!("add column {column} to {table}"), e))?;
            tracing::info!(%table, %column, "added a column to the target table");
        }
        self.tables.remove(table);
        self.table(table).await?.ok_or_else(|| {
            ConnectorError::configuration(format!(
                "the target has no table {table}: create it, or set autoCreateTable"
            ))
        })
    }
}

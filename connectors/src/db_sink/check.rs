//! `sluice check` on the target: what would break a run, found without
//! changing anything.

use super::*;

/// Preflight: the target answers, and each table the config names exists,
/// has a key, and may be written by the connected user.
pub(super) async fn check_target(config: &DbSinkConfig) -> Vec<Finding> {
    let mut sink = match DbSink::open(config.clone(), &SinkContext::default()).await {
        Ok(s) => s,
        Err(e) => return vec![Finding::error(format!("cannot connect to the target: {e}"))],
    };
    let mut out = Vec::new();
    let mut named: Vec<String> = config.table.iter().cloned().collect();
    named.extend(config.topic_tables.iter().map(|(_, t)| t.clone()));
    named.dedup();
    let mut wanted = vec!["INSERT", "UPDATE", "DELETE"];
    if config.allow_truncate && config.dialect == Dialect::Postgres {
        wanted.push("TRUNCATE");
    }
    for table in named {
        match sink.table(&table).await {
            Ok(Some(_)) => {}
            Ok(None) if config.auto_create_table => {
                out.push(Finding::warning(format!(
                    "table {table} does not exist yet: autoCreateTable will create it from the first record"
                )));
                continue;
            }
            Ok(None) => {
                out.push(Finding::error(format!("the target has no table {table}")));
                continue;
            }
            Err(e) => {
                out.push(Finding::error(e.to_string()));
                continue;
            }
        }
        match catalog::missing_privileges(
            &sink.pool,
            sink.dialect,
            &sink.table_name(&table),
            &wanted,
        )
        .await
        {
            Ok(missing) if missing.is_empty() => {}
            Ok(missing) => out.push(Finding::error(format!(
                "the user may not {} table {table}",
                missing.join(", ")
            ))),
            Err(e) => out.push(Finding::warning(format!(
                "could not read the privileges on {table}: {e}"
            ))),
        }
    }
    let mut targets: Vec<String> = config.table.iter().cloned().collect();
    targets.extend(config.topic_tables.iter().map(|(_, t)| t.clone()));
    targets.extend(config.tables_from_envelope.iter().cloned());
    match catalog::wider_rights(&sink.pool, sink.dialect, &targets).await {
        Ok(Some(warning)) => out.push(Finding::warning(warning)),
        Ok(None) => {}
        Err(e) => out.push(Finding::warning(format!(
            "could not read what else the user may write: {e}"
        ))),
    }
    sink.close().await;
    out
}

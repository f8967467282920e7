//! A sink pipeline as the sink tests write it: `jdbc` sink sections over
//! a topic, and the targets' URLs and quoting.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use crate::{PULSAR_URL, pg};

/// A SQLite file, created when missing.
pub async fn sqlite(path: &Path) -> anyhow::Result<SqlitePool> {
    Ok(SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await?)
}

/// A `jdbc` sink named `sink` over `topic` into `url`, with extra sink
/// fields and extra `configs` lines.
pub fn sink_section(sink: &str, topic: &str, url: &str, extra_sink: &str, configs: &str) -> String {
    format!(
        "  - name: {sink}\n    className: jdbc\n    inputs: [\"{topic}\"]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   retainOrdering: true\n{extra_sink}    configs:\n      jdbcUrl: '{url}'\n\
         \x20     batchSize: 50\n      timeoutMs: 20\n{configs}"
    )
}

/// A pipeline file of sink sections.
pub fn sinks_config(port: u16, sections: &[String]) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\nsinks:\n{}",
        sections.concat()
    )
}

/// The URL of a database of the stack's Postgres, credentials included.
pub fn pg_url(db: &str) -> String {
    format!("postgres://postgres:{}@127.0.0.1:5432/{db}", pg::PASSWORD)
}

/// Quote an identifier the way each engine's manual says, independently of
/// sluice's own quoting.
pub fn quoted(name: &str, mysql: bool) -> String {
    if mysql {
        format!("`{}`", name.replace('`', "``"))
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

//! Connecting to the target, and what its errors say.

use super::*;

/// Classify a database error: a lost connection or a server going away is
/// worth retrying; a refused statement or value is not.
pub(super) fn db_error(context: &str, e: sqlx::Error) -> ConnectorError {
    let retryable = match &e {
        // By each engine's own codes: a SQLSTATE is not a SQLite code.
        sqlx::Error::Database(db) => errors::retryable(db.as_ref()),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        _ => false,
    };
    // The code, table and column, never the database's message: it may
    // quote row values. The message stays in the source chain, which a
    // dead letter carries and the log does not.
    let message = match &e {
        sqlx::Error::Database(db) => format!("{context}: {}", errors::describe(db.as_ref())),
        other => format!("{context}: {other}"),
    };
    let configuration =
        matches!(&e, sqlx::Error::Database(db) if errors::configuration(db.as_ref()));
    let err = if retryable {
        ConnectorError::retryable(message)
    } else if configuration {
        ConnectorError::configuration(message)
    } else {
        ConnectorError::permanent(message)
    };
    err.with_source(e)
}

/// A pool to the target. MySQL sessions run in UTC and in strict mode, so
/// that a value the column cannot hold is refused, not truncated.
pub(super) async fn connect(config: &DbSinkConfig) -> Result<AnyPool, ConnectorError> {
    sqlx::any::install_default_drivers();
    let invalid = |e: &dyn std::fmt::Display| ConnectorError::permanent(format!("jdbcUrl: {e}"));
    let mut options: AnyConnectOptions = config.url.parse().map_err(|e| invalid(&e))?;
    let url = &mut options.database_url;
    if let Some(user) = &config.user {
        url.set_username(user)
            .map_err(|()| invalid(&"cannot carry a user name"))?;
    }
    if let Some(password) = &config.password {
        url.set_password(Some(password.expose()))
            .map_err(|()| invalid(&"cannot carry a password"))?;
    }
    if config.dialect == Dialect::Postgres
        && !url.query_pairs().any(|(k, _)| k == "application_name")
    {
        url.query_pairs_mut()
            .append_pair("application_name", "sluice");
    }
    let dialect = config.dialect;
    AnyPoolOptions::new()
        // SQLite takes one writer at a time.
        .max_connections(if dialect == Dialect::Sqlite { 1 } else { 2 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::MySql {
                    conn.execute("SET time_zone = '+00:00'").await?;
                    conn.execute(
                        "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| db_error("connect to the target", e))
}

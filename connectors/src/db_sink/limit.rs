//! How much one statement may carry: the server's limits on bound
//! parameters and on a statement's bytes.

use super::*;

/// Bound values per statement, at most (SQLite allows 32,766, Postgres and
/// MySQL 65,535).
pub(super) const MAX_PARAMETERS: usize = 30_000;

/// Bytes of values per statement, at most, where the engine sets no lower
/// limit: Postgres and SQLite take up to about 1 GB, which a batch should
/// not hold in one statement.
pub(super) const MAX_STATEMENT_BYTES: usize = 64 << 20;

/// How many bytes of values one statement may carry.
#[derive(Debug, Clone, Copy)]
pub(super) struct StatementLimit {
    pub(super) bytes: usize,
    /// Where the limit comes from, when the target refuses anything over
    /// it (MySQL's `max_allowed_packet`); `None` when it is sluice's own.
    setting: Option<&'static str>,
}

impl StatementLimit {
    /// The limit of the target behind `pool`: for MySQL/MariaDB its
    /// `max_allowed_packet`, less room for the statement and the protocol.
    pub(super) async fn of(pool: &AnyPool, dialect: Dialect) -> Result<Self, ConnectorError> {
        if dialect != Dialect::MySql {
            return Ok(Self {
                bytes: MAX_STATEMENT_BYTES,
                setting: None,
            });
        }
        let packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(pool)
            .await
            .map_err(|e| db_error("read max_allowed_packet", e))?;
        let packet = usize::try_from(packet).unwrap_or(0);
        Ok(Self {
            bytes: packet - packet / 16,
            setting: Some("max_allowed_packet"),
        })
    }

    /// Refuse a single row the target would refuse for its size, before
    /// sending it: MySQL drops the connection on an oversized packet, which
    /// would look like an outage and be retried forever.
    pub(super) fn check(&self, table: &str, rows: &[&Change]) -> Result<(), ConnectorError> {
        let Some(setting) = self.setting else {
            return Ok(());
        };
        match rows {
            [one] if changes::weight(one) > self.bytes => Err(ConnectorError::permanent(format!(
                "a row of about {} bytes for {table} is over what the target takes in one statement ({} bytes, from its {setting})",
                changes::weight(one),
                self.bytes
            ))),
            _ => Ok(()),
        }
    }
}

//! The source's two connections to Postgres: SQL, and replication.

use super::*;

pub(super) async fn connect_sql(
    config: &PostgresCdcConfig,
) -> Result<(Client, tokio::task::JoinHandle<()>), ConnectorError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.dbname)
        .options(SESSION_OPTIONS)
        .application_name("sluice");
    if let Some(p) = &config.password {
        pg.password(p.expose());
    }
    pg.ssl_mode(config.tls.postgres_mode());
    let (client, connection) = pg.connect(config.tls.connector()?).await.map_err(|e| {
        let hint = tls_hint(&e);
        let err = pg_error(
            &format!(
                "connect to Postgres at {}:{} (sslmode {})",
                config.host, config.port, config.tls.mode
            ),
            e,
        );
        // A refused certificate is the setup's to fix, not a passing failure.
        match hint {
            Some(hint) => ConnectorError::configuration(format!("{err} ({hint})")),
            None => err,
        }
    })?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    Ok((client, task))
}

/// What to do about a certificate the source refused, found by the TLS
/// error's type in the cause chain.
pub(super) fn tls_hint(e: &tokio_postgres::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error as Tls};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        // An I/O error hands out the error it wraps only through `get_ref`.
        let tls = c.downcast_ref::<Tls>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Tls>())
        });
        match tls {
            Some(Tls::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                return Some(
                    "database.sslrootcert does not hold the CA that signed the server's certificate",
                );
            }
            Some(Tls::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                return Some(
                    "database.hostname must be a name the server's certificate holds; verify-ca skips the name check",
                );
            }
            _ => cause = c.source(),
        }
    }
    None
}

/// How long the server's walsender may have sent data that this source
/// did not acknowledge at the TCP level, before the server's kernel closes
/// the connection. A source whose host hangs or is cut off never answers;
/// its walsender, blocked on a full send buffer, then heeds neither
/// `wal_sender_timeout` nor the standby's `pg_terminate_backend`, and
/// would hold the slot until TCP gives up, after about 15 minutes.
pub(super) const SERVER_TCP_USER_TIMEOUT_MS: u32 = 20_000;

/// The replication connection's session settings: those of every
/// connection, and [`SERVER_TCP_USER_TIMEOUT_MS`].
fn replication_options() -> String {
    format!("{SESSION_OPTIONS} -c tcp_user_timeout={SERVER_TCP_USER_TIMEOUT_MS}")
}

pub(super) fn replication_config(
    config: &PostgresCdcConfig,
    ack: Option<u64>,
) -> ReplicationConfig {
    let password = config
        .password
        .as_ref()
        .map(|p| p.expose().to_owned())
        .unwrap_or_default();
    let mut cfg = ReplicationConfig::new(
        config.host.clone(),
        config.user.clone(),
        password,
        config.dbname.clone(),
        config.slot.clone(),
        config.publication.clone(),
    )
    .with_port(config.port)
    .with_options(replication_options())
    .with_application_name("sluice")
    .with_status_interval(config.status_interval)
    .with_buffer_size(REPLICATION_READ_AHEAD)
    .with_tls(config.tls.replication(&config.host));
    if let Some(lsn) = ack {
        cfg = cfg.with_ack_lsn(Lsn::from_u64(lsn));
    }
    cfg
}

pub(super) fn repl_error(context: &str, e: pgwire_replication::PgWireError) -> ConnectorError {
    ConnectorError::retryable(format!("{context}: {e}")).with_source(e)
}

/// The text of one column of a replication command's result.
pub(super) fn column(rows: &[pgwire_replication::QueryRow], i: usize) -> Option<String> {
    rows.first()?
        .get(i)?
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

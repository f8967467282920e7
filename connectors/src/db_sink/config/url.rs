//! `jdbcUrl`: the database, the driver's parameters sluice takes (TLS
//! among them), and the URL as logs may show it.

use super::*;

/// A URL with any password in it replaced by `***`: in the user part
/// (`user:password@`) and in the query (`?password=`, `&password=`, and any
/// key that contains `password`, in any case).
pub(super) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &base[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Which driver's meaning a `jdbcUrl`'s parameters have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    /// pgjdbc, or libpq's URL form.
    Postgres,
    /// MySQL Connector/J, or a `mysql://` URL.
    MySql,
    /// MariaDB Connector/J, or a `mariadb://` URL.
    MariaDb,
}

/// The query parameters sluice takes, by driver; any other is refused by
/// name (its value never shown): the database's client would ignore it, or
/// log its value.
pub(super) const PG_PARAMETERS: &str = "user, password, ssl, sslmode, sslrootcert, sslcert, sslkey, \
    application_name (ApplicationName), statement-cache-capacity";

pub(super) const MYSQL_PARAMETERS: &str = "user, password, sslMode (ssl-mode), serverSslCert (ssl-ca), \
    ssl-cert, ssl-key, and Connector/J's useSSL, requireSSL, verifyServerCertificate \
    (MariaDB's useSsl, trustServerCertificate, disableSslHostnameVerification), charset, \
    collation, socket, statement-cache-capacity";

/// A `true` or `false` parameter.
pub(super) fn flag(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("the parameter {key} is neither true nor false")),
    }
}

/// A `jdbcUrl`'s query as the parameters sluice connects with, each
/// meaning what it means to the driver the URL names, never less TLS than
/// it asks for.
pub(super) fn parameters(driver: Driver, pairs: &[(&str, &str)]) -> Result<Vec<String>, String> {
    match driver {
        Driver::Postgres => pg_parameters(pairs),
        Driver::MySql | Driver::MariaDb => mysql_parameters(driver, pairs),
    }
}

pub(super) fn pg_parameters(pairs: &[(&str, &str)]) -> Result<Vec<String>, String> {
    const PG_MODES: [&str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];
    let mut kept = Vec::new();
    let mut ssl = None;
    let mut mode = None;
    for (key, value) in pairs {
        match *key {
            "sslmode" if PG_MODES.contains(value) => mode = Some((*value).to_owned()),
            "sslmode" => {
                return Err(format!(
                    "sslmode \"{value}\" is not one of {}",
                    PG_MODES.join(", ")
                ));
            }
            // pgjdbc: ssl=true verifies the chain and the host name unless
            // sslmode says otherwise.
            "ssl" => ssl = Some(flag(key, value)?),
            "sslrootcert"
            | "sslcert"
            | "sslkey"
            | "application_name"
            | "statement-cache-capacity" => kept.push(format!("{key}={value}")),
            "ApplicationName" => kept.push(format!("application_name={value}")),
            "sslpassword" | "sslfactory" | "sslhostnameverifier" | "sslpasswordcallback" => {
                return Err(format!(
                    "the parameter {key} is pgjdbc's and sluice does not take it: \
                     use sslmode, sslrootcert, sslcert and an unencrypted sslkey"
                ));
            }
            other => {
                return Err(format!(
                    "the parameter {other} is not one sluice takes for Postgres ({PG_PARAMETERS})"
                ));
            }
        }
    }
    let mode = mode.or_else(|| {
        ssl.map(|on| {
            if on {
                "verify-full".to_owned()
            } else {
                "disable".to_owned()
            }
        })
    });
    // libpq: with a root certificate given, require checks the chain as
    // verify-ca does (sqlx's require would not).
    let rooted = kept.iter().any(|p| p.starts_with("sslrootcert="));
    let mode = mode.map(|m| {
        if m == "require" && rooted {
            "verify-ca".to_owned()
        } else {
            m
        }
    });
    if let Some(mode) = mode {
        kept.insert(0, format!("sslmode={mode}"));
    }
    Ok(kept)
}

pub(super) fn mysql_parameters(
    driver: Driver,
    pairs: &[(&str, &str)],
) -> Result<Vec<String>, String> {
    let mut kept = Vec::new();
    let mut mode = None;
    // Connector/J's older switches, and MariaDB's.
    let (mut use_ssl, mut require, mut verify, mut trust, mut no_host) =
        (None, None, None, None, None);
    for (key, value) in pairs {
        match (driver, *key) {
            (_, "sslMode" | "ssl-mode" | "ssl_mode") => {
                mode = Some(
                    match value.to_ascii_lowercase().replace('_', "-").as_str() {
                        "disable" | "disabled" => "DISABLED",
                        "preferred" | "prefer" => "PREFERRED",
                        "trust" | "required" | "require" => "REQUIRED",
                        "verify-ca" => "VERIFY_CA",
                        "verify-full" | "verify-identity" => "VERIFY_IDENTITY",
                        _ => {
                            return Err(format!(
                                "{key} \"{value}\" is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY \
                             (or the MariaDB driver's disable, trust, verify-ca, verify-full)"
                            ));
                        }
                    },
                );
            }
            (_, "serverSslCert" | "ssl-ca" | "sslca") => kept.push(format!("ssl-ca={value}")),
            (_, "ssl-cert" | "sslcert") => kept.push(format!("ssl-cert={value}")),
            (_, "ssl-key" | "sslkey") => kept.push(format!("ssl-key={value}")),
            (_, "charset" | "collation" | "socket" | "statement-cache-capacity") => {
                kept.push(format!("{key}={value}"));
            }
            (Driver::MySql, "useSSL") | (Driver::MariaDb, "useSsl" | "useSSL") => {
                use_ssl = Some(flag(key, value)?);
            }
            (Driver::MySql, "requireSSL") => require = Some(flag(key, value)?),
            (Driver::MySql, "verifyServerCertificate") => verify = Some(flag(key, value)?),
            (Driver::MariaDb, "trustServerCertificate") => trust = Some(flag(key, value)?),
            (Driver::MariaDb, "disableSslHostnameVerification") => {
                no_host = Some(flag(key, value)?);
            }
            (_, other) => {
                return Err(format!(
                    "the parameter {other} is not one sluice takes for MySQL/MariaDB ({MYSQL_PARAMETERS})"
                ));
            }
        }
    }
    let older = [use_ssl, require, verify, trust, no_host]
        .iter()
        .any(Option::is_some);
    if older && mode.is_some() {
        return Err(
            "give sslMode, or the driver's older useSSL, requireSSL, verifyServerCertificate \
             (useSsl, trustServerCertificate), not both"
                .to_owned(),
        );
    }
    let older_mode = match driver {
        // Connector/J 8 reads the older switches so.
        Driver::MySql if verify == Some(true) => Some("VERIFY_CA"),
        Driver::MySql if require == Some(true) && use_ssl == Some(false) => {
            return Err("requireSSL=true contradicts useSSL=false".to_owned());
        }
        Driver::MySql if require == Some(true) => Some("REQUIRED"),
        Driver::MySql if use_ssl == Some(false) => Some("DISABLED"),
        Driver::MySql => older.then_some("PREFERRED"),
        // MariaDB Connector/J: useSsl verifies the chain and the host name
        // unless told to trust or to skip the host name.
        Driver::MariaDb if use_ssl == Some(true) && trust == Some(true) => Some("REQUIRED"),
        Driver::MariaDb if use_ssl == Some(true) && no_host == Some(true) => Some("VERIFY_CA"),
        Driver::MariaDb if use_ssl == Some(true) => Some("VERIFY_IDENTITY"),
        Driver::MariaDb if use_ssl == Some(false) => Some("DISABLED"),
        Driver::MariaDb if older => {
            return Err(
                "trustServerCertificate and disableSslHostnameVerification need useSsl=true"
                    .to_owned(),
            );
        }
        _ => None,
    };
    if let Some(mode) = mode.or(older_mode) {
        kept.insert(0, format!("ssl-mode={mode}"));
    }
    Ok(kept)
}

/// `jdbc:postgresql://host:port/db?user=u&password=p`, `postgres://...`,
/// `jdbc:mysql://...`, `jdbc:mariadb://...`, `mysql://...`, `jdbc:sqlite:path`
/// or `sqlite:path`, as the URL sluice connects with.
pub(super) fn parse_url(raw: &str) -> Result<ParsedUrl, String> {
    const SCHEMES: [(&str, Dialect, Driver); 9] = [
        ("jdbc:postgresql://", Dialect::Postgres, Driver::Postgres),
        ("postgresql://", Dialect::Postgres, Driver::Postgres),
        ("postgres://", Dialect::Postgres, Driver::Postgres),
        ("jdbc:mysql://", Dialect::MySql, Driver::MySql),
        ("jdbc:mariadb://", Dialect::MySql, Driver::MariaDb),
        ("mysql://", Dialect::MySql, Driver::MySql),
        ("mariadb://", Dialect::MySql, Driver::MariaDb),
        ("jdbc:sqlite:", Dialect::Sqlite, Driver::Postgres),
        ("sqlite:", Dialect::Sqlite, Driver::Postgres),
    ];
    let (rest, dialect, driver) = SCHEMES
        .iter()
        .find_map(|(scheme, d, v)| raw.strip_prefix(scheme).map(|rest| (rest, *d, *v)))
        .ok_or_else(|| {
            format!(
                "\"{}\" is not a Postgres, MySQL/MariaDB or SQLite URL \
                 (postgres://host:port/db, mysql://host:port/db, sqlite:path, or their jdbc: forms)",
                redact(raw)
            )
        })?;
    if dialect == Dialect::Sqlite {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if path.is_empty() {
            return Err("names no SQLite file (sqlite:path/to/file.db)".to_owned());
        }
        // `mode=rwc` creates the file when it does not exist.
        return Ok((dialect, format!("sqlite:{path}?mode=rwc"), None, None));
    }
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut user, mut password) = (None, None);
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("user", v)) => user = Some(v.to_owned()),
            Some(("password", v)) => password = Some(Secret::new(v)),
            Some((k, v)) => pairs.push((k, v)),
            None => pairs.push((pair, "")),
        }
    }
    let kept = parameters(driver, &pairs)?;
    let scheme = if dialect == Dialect::MySql {
        "mysql"
    } else {
        "postgres"
    };
    let url = if kept.is_empty() {
        format!("{scheme}://{base}")
    } else {
        format!("{scheme}://{base}?{}", kept.join("&"))
    };
    Ok((dialect, url, user, password))
}

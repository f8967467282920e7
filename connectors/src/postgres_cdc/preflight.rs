//! `sluice check` for the Postgres CDC source: everything that would stop
//! it or harm the database it reads, each with what to do about it, found
//! before `run` meets it. It only reads.

use tokio_postgres::Client;

use super::catalog::{self, pg_error, quote_ident};
use super::config::{PostgresCdcConfig, PublicationMode, SnapshotMode};
use super::connect::connect_sql;
use super::slot;
use crate::api::{ConnectorError, Finding};

/// Preflight: what would stop this source, and what to do about it.
pub(super) async fn preflight(config: &PostgresCdcConfig) -> Vec<Finding> {
    let (sql, task) = match connect_sql(config).await {
        Ok(c) => c,
        Err(e) => return vec![Finding::error(format!("cannot connect to Postgres: {e}"))],
    };
    let findings = match checks(&sql, config).await {
        Ok(f) => f,
        Err(e) => vec![Finding::error(format!("preflight query failed: {e}"))],
    };
    task.abort();
    findings
}

async fn checks(sql: &Client, config: &PostgresCdcConfig) -> Result<Vec<Finding>, ConnectorError> {
    let mut out = Vec::new();
    server(sql, config, &mut out).await?;
    let tables = selection(sql, config, &mut out).await?;
    let published = catalog::published_roots(sql, &config.publication).await?;
    identities(sql, config, &tables, published.as_ref(), &mut out).await?;
    privileges(sql, config, &tables, published.is_some(), &mut out).await?;
    if config.snapshot_mode != SnapshotMode::InitialOnly {
        slot_plan(sql, config, &mut out).await?;
    }
    Ok(out)
}

/// The server's `wal_level`, and the user's REPLICATION attribute.
async fn server(
    sql: &Client,
    config: &PostgresCdcConfig,
    out: &mut Vec<Finding>,
) -> Result<(), ConnectorError> {
    let wal_level: String = sql
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| pg_error("SHOW wal_level", e))?
        .get(0);
    if wal_level != "logical" {
        out.push(Finding::error(format!(
            "wal_level is {wal_level}, logical replication needs logical: set wal_level = 'logical' in postgresql.conf and restart Postgres"
        )));
    }
    let can_replicate: bool = sql
        .query_one("SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user", &[])
        .await
        .map_err(|e| pg_error("read pg_roles", e))?
        .get(0);
    if !can_replicate {
        out.push(Finding::error(format!(
            "user {} lacks the REPLICATION attribute: ALTER ROLE {} REPLICATION",
            config.user,
            quote_ident(&config.user)
        )));
    }
    Ok(())
}

/// The tables selected; each `table.include.list` entry must match one.
async fn selection(
    sql: &Client,
    config: &PostgresCdcConfig,
    out: &mut Vec<Finding>,
) -> Result<Vec<(u32, String, String)>, ConnectorError> {
    let tables = catalog::selected_tables(sql, config).await?;
    if tables.is_empty() {
        out.push(Finding::error(
            "no table is selected: check table.include.list and table.exclude.list",
        ));
    }
    for pattern in &config.include {
        let re = regex_lite::Regex::new(&format!("^(?:{pattern})$")).ok();
        if !tables.iter().any(|(_, s, n)| {
            re.as_ref()
                .is_some_and(|re| re.is_match(&format!("{s}.{n}")))
        }) {
            out.push(Finding::error(format!(
                "table.include.list entry {pattern} matches no table"
            )));
        }
    }
    Ok(tables)
}

/// Each selected table needs a replica identity and, when the publication
/// exists, to be in it; a published table without one breaks the
/// application's writes now.
async fn identities(
    sql: &Client,
    config: &PostgresCdcConfig,
    tables: &[(u32, String, String)],
    published: Option<&std::collections::HashSet<u32>>,
    out: &mut Vec<Finding>,
) -> Result<(), ConnectorError> {
    for (oid, schema, name) in tables {
        if !catalog::describe(sql, *oid).await?.has_identity {
            let text = format!(
                "table {schema}.{name} has no primary key or replica identity, so sluice does not capture it \
                 (were it published, Postgres would refuse the application's UPDATE and DELETE on it): {}",
                catalog::identity_remedy(schema, name)
            );
            // Asked for by name, its absence is an error; picked up by
            // capturing every table, a warning.
            out.push(if config.include.is_empty() {
                Finding::warning(text)
            } else {
                Finding::error(text)
            });
        } else if let Some(published) = published
            && !published.contains(oid)
        {
            out.push(Finding::error(format!(
                "publication {} does not publish table {schema}.{name}, so its changes would never be streamed: \
                 ALTER PUBLICATION {} ADD TABLE {}.{}",
                config.publication,
                quote_ident(&config.publication),
                quote_ident(schema),
                quote_ident(name)
            )));
        }
    }
    if let Some(published) = published {
        for oid in published {
            if catalog::describe(sql, *oid).await?.has_identity {
                continue;
            }
            let Some((_, schema, name)) = catalog::root_of(sql, *oid).await? else {
                continue;
            };
            out.push(Finding::error(format!(
                "publication {} publishes table {schema}.{name}, which has no primary key or replica identity: \
                 Postgres refuses the application's UPDATE and DELETE on it now. {}, or ALTER PUBLICATION {} DROP TABLE {}.{}",
                config.publication,
                catalog::identity_remedy(&schema, &name),
                quote_ident(&config.publication),
                quote_ident(&schema),
                quote_ident(&name)
            )));
        }
    }
    Ok(())
}

/// The decision start-up would take about the slot.
async fn slot_plan(
    sql: &Client,
    config: &PostgresCdcConfig,
    out: &mut Vec<Finding>,
) -> Result<(), ConnectorError> {
    let existing = slot::slot(sql, &config.slot).await?;
    let markers = slot::markers(sql, &config.publication, &config.slot).await?;
    match slot::plan(config, existing.as_ref(), markers) {
        Err(e) => out.push(Finding::error(e.to_string())),
        Ok(slot::Decision { gap: Some(gap), .. }) => out.push(Finding::warning(format!(
            "{gap}: snapshot.mode takes a new snapshot at start; rows deleted in the gap are not deleted downstream"
        ))),
        Ok(slot::Decision {
            plan: slot::Plan::Adopt,
            ..
        }) => out.push(Finding::warning(format!(
            "replication slot {} was made by another client: slot.adopt takes it over at start and streams from its confirmed position, without a snapshot; stop that client first",
            config.slot
        ))),
        Ok(_) => {}
    }
    Ok(())
}

/// What the user must be allowed: read the selected tables (the snapshot
/// does), create the publication when it is missing (the CREATE privilege
/// on the database and ownership of each table), and own the publication
/// (the source records its slot and snapshot in its comment).
async fn privileges(
    sql: &Client,
    config: &PostgresCdcConfig,
    tables: &[(u32, String, String)],
    publication_exists: bool,
    out: &mut Vec<Finding>,
) -> Result<(), ConnectorError> {
    let user = quote_ident(&config.user);
    let publication = &config.publication;
    for (oid, schema, name) in tables {
        let row = sql
            .query_one(
                "SELECT has_table_privilege($1::oid, 'SELECT'), \
                 pg_has_role(c.relowner, 'USAGE'), pg_get_userbyid(c.relowner)::text \
                 FROM pg_catalog.pg_class c WHERE c.oid = $1::oid",
                &[oid],
            )
            .await
            .map_err(|e| pg_error("read table privileges", e))?;
        let (select, owner, owner_name): (bool, bool, String) =
            (row.get(0), row.get(1), row.get(2));
        let table = format!("{}.{}", quote_ident(schema), quote_ident(name));
        if !select {
            out.push(Finding::error(format!(
                "user {} cannot SELECT from table {schema}.{name}, which the snapshot reads: GRANT SELECT ON {table} TO {user}",
                config.user
            )));
        }
        if !publication_exists && config.publication_mode == PublicationMode::Filtered && !owner {
            out.push(Finding::error(format!(
                "publication {publication} does not exist and user {} cannot create it for table {schema}.{name}, \
                 which {owner_name} owns: have the owner create it (CREATE PUBLICATION {} FOR TABLE ... \
                 WITH (publish_via_partition_root = true)) and transfer it (ALTER PUBLICATION ... OWNER TO {user})",
                config.user,
                quote_ident(publication)
            )));
        }
    }
    if publication_exists {
        let owns: bool = sql
            .query_one(
                "SELECT pg_has_role(pubowner, 'USAGE') FROM pg_catalog.pg_publication WHERE pubname = $1",
                &[publication],
            )
            .await
            .map_err(|e| pg_error("read the publication's owner", e))?
            .get(0);
        if !owns {
            out.push(Finding::error(format!(
                "user {} does not own publication {publication}, where the source records its slot and snapshot: \
                 ALTER PUBLICATION {} OWNER TO {user}",
                config.user,
                quote_ident(publication)
            )));
        }
    } else if config.publication_mode == PublicationMode::Filtered {
        let create: bool = sql
            .query_one(
                "SELECT has_database_privilege(current_database(), 'CREATE')",
                &[],
            )
            .await
            .map_err(|e| pg_error("read database privileges", e))?
            .get(0);
        if !create {
            out.push(Finding::error(format!(
                "publication {publication} does not exist and user {} lacks the CREATE privilege on database {} to create it: \
                 GRANT CREATE ON DATABASE {} TO {user}",
                config.user,
                config.dbname,
                quote_ident(&config.dbname)
            )));
        }
    }
    Ok(())
}

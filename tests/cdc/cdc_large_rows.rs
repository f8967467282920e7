//! A row larger than the broker's message limit (5 MB by default) travels
//! Postgres → Pulsar → Postgres in chunks, between ordinary rows, under
//! ATLEAST_ONCE and EFFECTIVELY_ONCE.

use std::time::Duration;

use anyhow::Context;
use sluice_tests::{PULSAR_URL, Sluice, free_port, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// A 20 MiB text value that compresses poorly.
const BIG: &str =
    "(SELECT string_agg(md5(g::text || $1::text), '') FROM generate_series(1, 655360) g)";

/// (id, length, md5) of every row, in key order.
async fn digest(db: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, i32, String)>> {
    Ok(db
        .query(
            "SELECT id, length(body), md5(body) FROM docs ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// How many rows have key `id`.
async fn count(db: &tokio_postgres::Client, id: i32) -> anyhow::Result<i64> {
    Ok(db
        .query_one("SELECT count(*) FROM docs WHERE id = $1", &[&id])
        .await?
        .get(0))
}

async fn a_row_over_the_message_limit_replicates(guarantee: &str) -> anyhow::Result<()> {
    // GIVEN a pipeline from a source table to a target table under `guarantee`
    let name = unique("cdc-big").replace('-', "_");
    let namespace = sluice_tests::admin::create_namespace(&name)?;
    sluice_tests::admin::enable_deduplication(&namespace)?;
    let (tenant, ns) = namespace.split_once('/').context("namespace")?;
    let source = pg::create_database(&format!("{name}_src")).await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    for db in [&source, &target] {
        db.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)")
            .await?;
    }
    source
        .batch_execute("INSERT INTO docs VALUES (0, 'seed')")
        .await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: cdc\n    className: postgres-cdc\n\
         \x20   processingGuarantees: {guarantee}\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}_src\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         sinks:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: copy\n    className: jdbc\n\
         \x20   inputs: [{name}.public.docs]\n    sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n\
         \x20   processingGuarantees: {guarantee}\n    configs:\n\
         \x20     jdbcUrl: postgres://127.0.0.1:5432/{name}_dst\n      userName: postgres\n      password: {pw}\n\
         \x20     tableName: docs\n      inputFormat: DEBEZIUM\n      batchSize: 100\n      timeoutMs: 50\n",
        pw = pg::PASSWORD
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for("the seed row in the target", LONG, || async {
        Ok((count(&target, 0).await? == 1).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;

    // WHEN a 20 MiB row is written between ordinary rows, then updated
    source
        .execute("INSERT INTO docs VALUES (1, 'before')", &[])
        .await?;
    source
        .execute(&format!("INSERT INTO docs VALUES (2, {BIG})"), &[&"a"])
        .await?;
    source
        .execute("INSERT INTO docs VALUES (3, 'after')", &[])
        .await?;
    source
        .execute(
            &format!("UPDATE docs SET body = {BIG} WHERE id = 2"),
            &[&"b"],
        )
        .await?;
    source
        .execute("INSERT INTO docs VALUES (4, 'sentinel')", &[])
        .await?;
    wait_for("the sentinel in the target", LONG, || async {
        Ok((count(&target, 4).await? == 1).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN the target equals the source, the big row included
    let (from, to) = (digest(&source).await?, digest(&target).await?);
    assert_eq!(from, to);
    assert_eq!(from.len(), 5);
    assert_eq!(from[2].1, 20 * 1024 * 1024);
    sluice.interrupt().await?;
    let _ = source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await;
    Ok(())
}

#[tokio::test]
async fn a_row_over_the_message_limit_replicates_at_least_once() -> anyhow::Result<()> {
    a_row_over_the_message_limit_replicates("ATLEAST_ONCE").await
}

#[tokio::test]
async fn a_row_over_the_message_limit_replicates_effectively_once() -> anyhow::Result<()> {
    a_row_over_the_message_limit_replicates("EFFECTIVELY_ONCE").await
}

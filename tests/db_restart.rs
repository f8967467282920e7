//! The database sink while its target restarts: a stream of upserts flows
//! from the real broker into Postgres and into MariaDB, each target is
//! restarted in the middle, and the final table is exact.
//!
//! These tests restart shared services: they live in their own test binary,
//! which `cargo test` runs alone.

use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::{PULSAR_URL, Sluice, free_port, mariadb, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(180);
const KEYS: i64 = 2_000;
const ROUNDS: i64 = 4;

/// The target under test: how to reach it and how to count its rows.
enum Target {
    /// The database's name: each look connects afresh, since a restart
    /// breaks open connections.
    Postgres(String),
    Maria(sqlx::mysql::MySqlPool),
}

impl Target {
    /// (rows, rows at the last round), or `None` while the database is down.
    async fn counts(&self) -> Option<(i64, i64)> {
        let sql = format!("SELECT count(*), count(CASE WHEN n = {ROUNDS} THEN 1 END) FROM items");
        match self {
            Self::Postgres(name) => {
                let db = pg::connect(name).await.ok()?;
                db.query_one(sql.as_str(), &[])
                    .await
                    .ok()
                    .map(|r| (r.get(0), r.get(1)))
            }
            Self::Maria(db) => sqlx::query_as(&sql).fetch_one(db).await.ok(),
        }
    }

    /// Every row as (id, v, n), in key order.
    async fn rows(&self) -> anyhow::Result<Vec<(i64, String, i64)>> {
        let sql = "SELECT CAST(id AS SIGNED), v, CAST(n AS SIGNED) FROM items ORDER BY id";
        Ok(match self {
            Self::Postgres(name) => pg::connect(name)
                .await?
                .query(&sql.replace("SIGNED", "bigint"), &[])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            Self::Maria(db) => sqlx::query(sql)
                .fetch_all(db)
                .await?
                .iter()
                .map(|r| {
                    let v = mariadb::text(r, 1).unwrap_or_default();
                    (sqlx::Row::get(r, 0), v, sqlx::Row::get(r, 2))
                })
                .collect(),
        })
    }
}

/// Publish `ROUNDS` rounds of upserts to every key, paced at about 1,000
/// messages a second so that the stream is still flowing when the target
/// restarts.
async fn publish_rounds(topic: String) -> anyhow::Result<()> {
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let producer = client.producer(&topic).create().await?;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for round in 1..=ROUNDS {
        for slice in (1..=KEYS).collect::<Vec<_>>().chunks(100) {
            pace.tick().await;
            let mut receipts = Vec::with_capacity(slice.len());
            for id in slice {
                let value = format!("{{\"id\":{id},\"v\":\"{id}-{round}\",\"n\":{round}}}");
                let msg = magnetar::OutgoingMessage::with_payload(value.into_bytes())
                    .key(format!("{{\"id\":{id}}}"));
                receipts.push(producer.send(msg.into()).await?);
            }
        }
    }
    producer.close().await?;
    Ok(())
}

async fn target_restarts_mid_stream(service: &str) -> anyhow::Result<()> {
    // GIVEN a target table and a sink upserting a paced stream into it
    let name = unique(&format!("jdbc-restart-{service}")).replace('-', "_");
    let schema = "CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL, n int NOT NULL)";
    let (target, url) = if service == "postgres" {
        let db = pg::create_database(&name).await?;
        db.batch_execute(schema).await?;
        let url = format!("postgres://postgres:{}@127.0.0.1:5432/{name}", pg::PASSWORD);
        (Target::Postgres(name.clone()), url)
    } else {
        let db = mariadb::create_database(&name).await?;
        sqlx::raw_sql(schema).execute(&db).await?;
        (Target::Maria(db), mariadb::url(&name))
    };
    let topic = sluice_tests::topic(&name);
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - name: target\n    className: jdbc\n    inputs: [\"{topic}\"]\n\
         \x20   sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n    configs:\n\
         \x20     jdbcUrl: '{url}'\n      tableName: items\n      insertMode: UPSERT\n\
         \x20     batchSize: 200\n      timeoutMs: 50\n"
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    let publisher = tokio::spawn(publish_rounds(topic));

    // WHEN the target restarts while rows are flowing in
    wait_for("the first rows", LONG, || {
        let target = &target;
        async move { Ok(target.counts().await.filter(|(n, _)| *n > 0)) }
    })
    .await
    .with_context(|| sluice.log())?;
    let restart = tokio::task::spawn_blocking({
        let service = service.to_owned();
        move || sluice_tests::restart_service(&service)
    });
    restart.await??;
    ensure!(
        !publisher.is_finished(),
        "the stream ended before the restart was over: nothing was in flight"
    );
    publisher.await??;

    // THEN every key ends at its last round, with nothing lost
    wait_for("every key at the last round", LONG, || {
        let target = &target;
        async move { Ok(target.counts().await.filter(|(_, last)| *last == KEYS)) }
    })
    .await
    .with_context(|| sluice.log())?;
    let expected: Vec<(i64, String, i64)> = (1..=KEYS)
        .map(|id| (id, format!("{id}-{ROUNDS}"), ROUNDS))
        .collect();
    assert_eq!(target.rows().await?, expected);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_postgres_target_restarting_mid_stream_ends_exact() -> anyhow::Result<()> {
    target_restarts_mid_stream("postgres").await
}

#[tokio::test]
async fn a_mariadb_target_restarting_mid_stream_ends_exact() -> anyhow::Result<()> {
    target_restarts_mid_stream("mariadb").await
}

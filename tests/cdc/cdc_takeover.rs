//! An EFFECTIVELY_ONCE CDC source whose active process hangs (SIGSTOP, as
//! a stopped VM): it keeps its broker connections and its walsender holds
//! the slot. The standby, hearing no beat, fences it out of the broker,
//! ends its walsender and streams on; the hung one, resumed, finds itself
//! fenced and waits as a standby (docs/decisions/0026).

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use sluice_tests::cdc::LONG;
use sluice_tests::{PULSAR_URL, Sluice, free_port, pg, temp_dir, unique, wait_for};

/// An EFFECTIVELY_ONCE CDC source named `name` over database `name`.
fn source(name: &str, port: u16) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: {name}\n    className: postgres-cdc\n    processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n",
        pw = pg::PASSWORD
    )
}

async fn insert(db: &tokio_postgres::Client, from: i32, to: i32) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO items SELECT g, 'v' || g FROM generate_series($1::int, $2::int) g",
        &[&from, &to],
    )
    .await?;
    Ok(())
}

/// The state `sluice` says its source `name` is in.
fn state(sluice: &Sluice, name: &str) -> Option<String> {
    let body = sluice.get(&format!("/connectors/{name}"))?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["state"].as_str().map(str::to_owned)
}

async fn until_state(sluice: &Sluice, name: &str, wanted: &str) -> anyhow::Result<()> {
    wait_for(&format!("{name} to be {wanted}"), LONG, || async {
        Ok((state(sluice, name).as_deref() == Some(wanted)).then_some(()))
    })
    .await
    .with_context(|| sluice.log())
}

/// Each row id in an insert (`op` c or r) on the topic, with how often it
/// is there.
async fn inserted(topic: &str) -> anyhow::Result<BTreeMap<i64, usize>> {
    let mut ids = BTreeMap::new();
    for (payload, _) in sluice_tests::read_topic(topic).await? {
        let doc: serde_json::Value = serde_json::from_slice(&payload)?;
        let op = doc["op"].as_str().unwrap_or_default();
        ensure!(op == "c" || op == "r", "an unexpected change: {doc}");
        let id = doc["after"]["id"].as_i64().context("a row without id")?;
        *ids.entry(id).or_default() += 1;
    }
    Ok(ids)
}

#[tokio::test]
async fn a_standby_takes_over_from_a_hung_active_process_and_the_resumed_one_stands_by()
-> anyhow::Result<()> {
    // GIVEN a table of 100 rows and two processes of one EFFECTIVELY_ONCE
    // source: a streams, b waits as its standby
    let name = unique("cdc-hung").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
        .await?;
    insert(&db, 1, 100).await?;
    let topic = format!("persistent://public/default/{name}.public.items");
    let (dir_a, dir_b) = (
        temp_dir(&format!("{name}-a"))?,
        temp_dir(&format!("{name}-b"))?,
    );
    let (port_a, port_b) = (free_port()?, free_port()?);
    let a = Sluice::start(&dir_a, &source(&name, port_a), port_a)?;
    until_state(&a, &name, "running").await?;
    let b = Sluice::start(&dir_b, &source(&name, port_b), port_b)?;
    until_state(&b, &name, "standby").await?;
    insert(&db, 101, 200).await?;
    wait_for("200 rows on the topic", LONG, || async {
        Ok((inserted(&topic).await?.len() == 200).then_some(()))
    })
    .await
    .with_context(|| a.log())?;

    // WHEN a hangs, holding its connections, and 100 more rows come
    a.signal("STOP")?;
    insert(&db, 201, 300).await?;

    // THEN b fences a out, frees the slot from a's walsender, and streams
    // them: every row is on the topic once
    until_state(&b, &name, "running").await?;
    wait_for("300 rows on the topic", LONG, || async {
        Ok((inserted(&topic).await?.len() == 300).then_some(()))
    })
    .await
    .with_context(|| b.log())?;
    for said in ["fenced it out, taking over", "ending the walsender"] {
        ensure!(
            b.log().contains(said),
            "b did not say {said:?}:\n{}",
            b.log()
        );
    }

    // WHEN a resumes, and 100 more rows come
    a.signal("CONT")?;
    until_state(&a, &name, "standby").await?;
    insert(&db, 301, 400).await?;

    // THEN a waits as a standby, b streams them, and no row is on the
    // topic twice; a stops cleanly when asked
    wait_for("400 rows on the topic", LONG, || async {
        Ok((inserted(&topic).await?.len() == 400).then_some(()))
    })
    .await
    .with_context(|| b.log())?;
    let ids = inserted(&topic).await?;
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(twice, Vec::<(&i64, &usize)>::new());
    assert_eq!(
        ids.keys().copied().collect::<Vec<_>>(),
        (1..=400).collect::<Vec<i64>>()
    );
    let a_log = a.log();
    ensure!(a.interrupt().await?.success(), "{a_log}");
    let b_log = b.log();
    ensure!(b.interrupt().await?.success(), "{b_log}");
    db.execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await?;
    Ok(())
}

//! Replication slots on a shared server: sluice never takes over or drops a
//! slot it did not create, and a slot it streamed from that has gone is a
//! gap it reports rather than hides.

use anyhow::{Context, ensure};
use serde_json::json;
use sluice_tests::cdc::{Cdc, LONG, cdc, drop_slot, replay, wait_for_event, wait_for_slot};
use sluice_tests::{Sluice, file_events, pg, unique, wait_for};

/// Wait until sluice's log holds `text`.
async fn wait_for_log(sluice: &Sluice, text: &str) -> anyhow::Result<()> {
    wait_for(text, LONG, || async {
        Ok(sluice.log().contains(text).then_some(()))
    })
    .await
    .with_context(|| sluice.log())
}

/// Wait until the snapshot taken with the slot is recorded as complete.
async fn wait_for_snapshot_record(db: &tokio_postgres::Client, p: &Cdc) -> anyhow::Result<()> {
    wait_for("the snapshot's record", LONG, || async {
        let row = db
            .query_one(
                "SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1",
                &[&p.prefix],
            )
            .await?;
        let comment: String = row.get(0);
        Ok(comment.contains("snapshot complete").then_some(()))
    })
    .await
}

async fn slot_exists(db: &tokio_postgres::Client, slot: &str) -> anyhow::Result<bool> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
        .is_some())
}

#[tokio::test]
async fn another_clients_slot_is_refused_and_left_alone() -> anyhow::Result<()> {
    // GIVEN an idle pgoutput slot of the configured name that another client made
    let name = unique("cdc-foreign").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    db.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&p.prefix],
    )
    .await?;
    let before = pg::confirmed_flush(&db, &p.prefix).await?;

    // WHEN sluice runs on it
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_log(&sluice, "sluice did not create it").await?;

    // THEN the source stays down, says why on /connectors, and the slot is
    // untouched
    let status = sluice.get("/connectors/cdc").unwrap_or_default();
    ensure!(
        status.contains("sluice did not create it"),
        "status: {status}"
    );
    let (code, ready) = sluice.get_status("/readyz").unwrap_or_default();
    assert_eq!(code, 503, "{ready}");
    ensure!(
        ready.contains("cdc: restarting: replication slot")
            && ready.contains("sluice did not create it"),
        "/readyz: {ready}"
    );
    // AND, failing again and again, it logs the error once, not each time
    wait_for("four restarts", LONG, || async {
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/cdc").unwrap_or_default())
                .unwrap_or_default();
        Ok((status["restarts"].as_u64().unwrap_or(0) >= 4).then_some(()))
    })
    .await?;
    assert_eq!(
        sluice.log().matches("sluice did not create it").count(),
        1,
        "{}",
        sluice.log()
    );
    ensure!(
        file_events(&p.out)?.is_empty(),
        "events were published from another client's slot"
    );
    sluice.interrupt().await?;
    assert_eq!(pg::confirmed_flush(&db, &p.prefix).await?, before);

    // AND check names it, as it does a slot of another output plugin
    let path = p.dir.join("check.yaml");
    std::fs::write(&path, &p.config)?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(1), "{text}");
    ensure!(
        text.contains(&format!(
            "replication slot {} exists but sluice did not create it",
            p.prefix
        )),
        "{text}"
    );
    let other = format!("{}_td", p.prefix);
    db.execute(
        "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
        &[&other],
    )
    .await?;
    std::fs::write(
        &path,
        p.config.replace(
            &format!("slot.name: {}", p.prefix),
            &format!("slot.name: {other}"),
        ),
    )?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(1), "{text}");
    ensure!(
        text.contains(&format!(
            "replication slot {other} exists for plugin test_decoding"
        )),
        "{text}"
    );
    ensure!(slot_exists(&db, &p.prefix).await? && slot_exists(&db, &other).await?);
    drop_slot(&db, &p.prefix).await;
    drop_slot(&db, &other).await;
    Ok(())
}

#[tokio::test]
async fn a_dropped_slot_stops_the_source_until_a_new_snapshot_is_asked_for() -> anyhow::Result<()> {
    // GIVEN a source that took its snapshot and streamed, then stopped
    let name = unique("cdc-gap").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');")
        .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;
    wait_for_snapshot_record(&db, &p).await?;
    wait_for_event(&p.out, "the end of the snapshot", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await?;
    sluice.interrupt().await?;
    let published = file_events(&p.out)?.len();
    assert_eq!(published, 3);

    // WHEN an operator drops its slot and the application changes rows meanwhile
    db.execute("SELECT pg_drop_replication_slot($1)", &[&p.prefix])
        .await?;
    db.batch_execute("DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (4, 'd');")
        .await?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;

    // THEN the source stops at the gap, names it and the remedy, and
    // publishes nothing
    wait_for_log(&sluice, "no longer exists").await?;
    let log = sluice.log();
    ensure!(log.contains("snapshot.mode: when_needed"), "{log}");
    let status = sluice.get("/connectors/cdc").unwrap_or_default();
    ensure!(status.contains("no longer exists"), "status: {status}");
    sluice.interrupt().await?;
    assert_eq!(file_events(&p.out)?.len(), published);
    ensure!(!slot_exists(&db, &p.prefix).await?, "a slot was created");
    let path = p.dir.join("check.yaml");
    std::fs::write(&path, &p.config)?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(1), "{text}");
    ensure!(text.contains("no longer exists (dropped?)"), "{text}");

    // WHEN it starts with snapshot.mode when_needed
    let when_needed = p.config.replace(
        &format!("publication.name: {}\n", p.prefix),
        &format!(
            "publication.name: {}\n      snapshot.mode: when_needed\n",
            p.prefix
        ),
    );
    let sluice = Sluice::start(&p.dir, &when_needed, p.port)?;

    // THEN it takes a new snapshot and streams on; the row deleted in the
    // gap is the one change downstream does not see
    wait_for_event(&p.out, "row 4 in a new snapshot", |e| {
        e.key == json!({"id": 4}) && e.op() == "r"
    })
    .await
    .with_context(|| sluice.log())?;
    db.batch_execute("INSERT INTO t VALUES (5, 'e')").await?;
    let events = wait_for_event(&p.out, "row 5 streamed", |e| {
        e.key == json!({"id": 5}) && e.op() == "c"
    })
    .await
    .with_context(|| sluice.log())?;
    let model = replay(&events, ".public.t");
    let keys: Vec<String> = model.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "{\"id\":1}",
            "{\"id\":2}",
            "{\"id\":3}",
            "{\"id\":4}",
            "{\"id\":5}"
        ]
    );
    ensure!(
        sluice
            .log()
            .contains("rows deleted in it are not deleted downstream"),
        "{}",
        sluice.log()
    );
    sluice.interrupt().await?;
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn another_clients_slot_is_adopted_when_told_and_streams_on_without_a_snapshot()
-> anyhow::Result<()> {
    // GIVEN the slot and FOR ALL TABLES publication another client made (as
    // Pulsar's Debezium source makes them), which published the table's
    // rows and stopped; then changes made while no one streams
    let name = unique("cdc-adopt").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'old' FROM generate_series(1, 100) g;",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let (slot, publication) = (format!("{}_legacy", p.prefix), format!("{}_pub", p.prefix));
    db.batch_execute(&format!("CREATE PUBLICATION {publication} FOR ALL TABLES"))
        .await?;
    db.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&slot],
    )
    .await?;
    db.batch_execute(
        "UPDATE t SET v = 'changed' WHERE id <= 10;
         DELETE FROM t WHERE id > 90;
         INSERT INTO t SELECT g, 'new' FROM generate_series(101, 110) g;",
    )
    .await?;

    // WHEN sluice starts on them with slot.adopt, while the application
    // goes on writing
    let config = p
        .config
        .replace(
            &format!("slot.name: {}\n", p.prefix),
            &format!("slot.name: {slot}\n      slot.adopt: true\n"),
        )
        .replace(
            &format!("publication.name: {}\n", p.prefix),
            &format!(
                "publication.name: {publication}\n      publication.autocreate.mode: disabled\n"
            ),
        );
    let sluice = Sluice::start(&p.dir, &config, p.port)?;
    for id in 111..=160 {
        db.execute("INSERT INTO t VALUES ($1, 'during')", &[&id])
            .await?;
    }
    db.batch_execute("INSERT INTO t VALUES (-1, 'sentinel')")
        .await?;
    let events = wait_for_event(&p.out, "the sentinel", |e| e.key == json!({"id": -1}))
        .await
        .with_context(|| sluice.log())?;

    // THEN every change since the slot's position is published once, and
    // nothing was snapshotted
    let count = |op: &str| events.iter().filter(|e| e.op() == op).count();
    assert_eq!(
        (count("r"), count("u"), count("d"), count("c")),
        (0, 10, 10, 61),
        "{}",
        sluice.log()
    );
    ensure!(sluice.log().contains("adopted a replication slot"));
    let model = replay(&events, ".public.t");
    for id in 1..=10 {
        assert_eq!(
            model[&json!({"id": id}).to_string()],
            json!({"id": id, "v": "changed"})
        );
    }

    // AND, restarted, it streams on from the slot it now owns, as its own
    ensure!(sluice.interrupt().await?.success());
    let again = Sluice::start(&p.dir, &config, p.port)?;
    db.batch_execute("INSERT INTO t VALUES (-2, 'after the restart')")
        .await?;
    let events = wait_for_event(&p.out, "the second sentinel", |e| {
        e.key == json!({"id": -2})
    })
    .await
    .with_context(|| again.log())?;
    assert_eq!(events.iter().filter(|e| e.op() == "r").count(), 0);
    // (the log holds both runs)
    assert_eq!(
        again.log().matches("adopted a replication slot").count(),
        1,
        "{}",
        again.log()
    );
    ensure!(again.interrupt().await?.success());
    drop_slot(&db, &slot).await;
    Ok(())
}

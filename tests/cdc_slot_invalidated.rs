//! A slot that the server invalidates (`max_slot_wal_keep_size`) is a gap
//! the source reports. This test lowers `max_slot_wal_keep_size` on the
//! whole server for a moment, which would invalidate other tests' idle
//! slots too: it lives in a test binary of its own, which cargo runs alone.

use anyhow::{Context, ensure};
use serde_json::json;
use sluice_tests::cdc::{LONG, cdc, drop_slot, wait_for_event, wait_for_slot};
use sluice_tests::{Sluice, file_events, pg, unique, wait_for};

/// Make the server invalidate `slot` (which must be idle): keep at most
/// 1 MB of WAL for slots, write and switch past a few WAL segments, and
/// checkpoint until the slot is lost. The setting is reset whatever happens.
async fn invalidate(db: &tokio_postgres::Client, slot: &str) -> anyhow::Result<()> {
    // ALTER SYSTEM runs outside a transaction: one statement at a time.
    for statement in [
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
        "SELECT pg_reload_conf()",
        "CREATE TABLE wal_filler (a int)",
    ] {
        db.batch_execute(statement).await?;
    }
    let result = wait_for("the slot to be invalidated", LONG, || async {
        for statement in [
            "INSERT INTO wal_filler SELECT generate_series(1, 1000)",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        ] {
            db.batch_execute(statement).await?;
        }
        let lost: bool = db
            .query_one(
                "SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .get(0);
        Ok(lost.then_some(()))
    })
    .await;
    for statement in [
        "ALTER SYSTEM RESET max_slot_wal_keep_size",
        "SELECT pg_reload_conf()",
        "DROP TABLE wal_filler",
    ] {
        db.batch_execute(statement).await?;
    }
    result
}

#[tokio::test]
async fn an_invalidated_slot_stops_the_source_until_a_new_snapshot_is_asked_for()
-> anyhow::Result<()> {
    // GIVEN a source that took its snapshot and stopped
    let name = unique("cdc-lost").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;
    wait_for_event(&p.out, "the end of the snapshot", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await
    .with_context(|| sluice.log())?;
    // The snapshot's record is written once it is durable; a streamed row
    // after it proves the source got that far.
    db.batch_execute("INSERT INTO t VALUES (3)").await?;
    wait_for_event(&p.out, "row 3", |e| e.key == json!({"id": 3}))
        .await
        .with_context(|| sluice.log())?;
    sluice.interrupt().await?;

    // WHEN the server removes WAL the idle slot needs
    db.batch_execute("INSERT INTO t VALUES (4)").await?;
    invalidate(&db, &p.prefix).await?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;

    // THEN the source stops at the gap and says what happened and what to do
    wait_for("the gap in the log", LONG, || async {
        Ok(sluice.log().contains("was invalidated").then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    let log = sluice.log();
    ensure!(
        log.contains("max_slot_wal_keep_size") && log.contains("snapshot.mode: when_needed"),
        "{log}"
    );
    sluice.interrupt().await?;
    ensure!(
        !file_events(&p.out)?
            .iter()
            .any(|e| e.key == json!({"id": 4})),
        "row 4 was published from a lost slot"
    );
    let path = p.dir.join("check.yaml");
    std::fs::write(&path, &p.config)?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(1), "{text}");
    ensure!(
        text.contains(&format!("replication slot {} was invalidated", p.prefix)),
        "{text}"
    );

    // WHEN it starts with snapshot.mode when_needed
    let when_needed = p.config.replace(
        &format!("publication.name: {}\n", p.prefix),
        &format!(
            "publication.name: {}\n      snapshot.mode: when_needed\n",
            p.prefix
        ),
    );
    let sluice = Sluice::start(&p.dir, &when_needed, p.port)?;

    // THEN it replaces its lost slot, takes a new snapshot and streams on
    wait_for_event(&p.out, "row 4 in the new snapshot", |e| {
        e.key == json!({"id": 4}) && e.op() == "r"
    })
    .await
    .with_context(|| sluice.log())?;
    db.batch_execute("INSERT INTO t VALUES (5)").await?;
    wait_for_event(&p.out, "row 5 streamed", |e| {
        e.key == json!({"id": 5}) && e.op() == "c"
    })
    .await
    .with_context(|| sluice.log())?;
    sluice.interrupt().await?;
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

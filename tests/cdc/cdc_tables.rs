//! The CDC source against the tables production databases hold: tables
//! without a primary key, which it must not break, and partitioned tables,
//! whose changes arrive on the parent's topic.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sluice_tests::cdc::{
    LONG, cdc, drop_slot, replay, snapshot_done, wait_for_event, wait_for_slot,
};
use sluice_tests::{Sluice, pg, unique};

/// The rows of a table as the replayed model holds them: key JSON → row.
async fn table_rows(
    db: &tokio_postgres::Client,
    query: &str,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let rows = db.query(query, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: i32 = r.get(0);
            let v: Option<String> = r.get(1);
            (json!({ "id": id }).to_string(), json!({ "id": id, "v": v }))
        })
        .collect())
}

/// GIVEN a database with `orders` (a primary key), `audit` (no key, default
/// replica identity) and `ledger` (no key, REPLICA IDENTITY FULL)
/// WHEN sluice captures it, selecting the tables as `include` says
/// THEN the application's UPDATE and DELETE on `audit` keep working, `audit`
/// is left out with the remedy in the log and in `check`, and `orders` and
/// `ledger` are captured, `ledger` keyed by all its columns.
async fn keyless_tables_are_left_out(include: &str) -> anyhow::Result<()> {
    let name = unique("cdc-keyless").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, v text);
         CREATE TABLE audit (a int, b text);
         CREATE TABLE ledger (a int, b text);
         ALTER TABLE ledger REPLICA IDENTITY FULL;
         INSERT INTO audit VALUES (1, 'one'), (2, 'two');
         INSERT INTO ledger VALUES (1, 'one');",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", include)?;
    let check_path = p.dir.join("check.yaml");
    std::fs::write(&check_path, &p.config)?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;

    // WHEN the application changes every table while sluice runs
    db.batch_execute(
        "UPDATE audit SET b = 'uno' WHERE a = 1;
         DELETE FROM audit WHERE a = 2;
         INSERT INTO orders VALUES (1, 'first');
         UPDATE ledger SET b = 'eins' WHERE a = 1;
         INSERT INTO orders VALUES (2, 'sentinel');",
    )
    .await
    .context("the application's statements must keep working")?;
    wait_for_event(&p.out, "the sentinel order", |e| {
        e.value["after"]["v"] == "sentinel"
    })
    .await
    .with_context(|| sluice.log())?;
    // The snapshot runs alongside: wait until the ledger's topic replays
    // to its one row as it is now.
    let events = sluice_tests::wait_for("the ledger's topic to replay to its row", LONG, || {
        let events = sluice_tests::file_events(&p.out);
        async move {
            let events = events?;
            let ledger = replay(&events, ".public.ledger");
            let now = json!({"a": 1, "b": "eins"});
            Ok((ledger.len() == 1 && ledger.values().all(|v| *v == now)).then_some(events))
        }
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN nothing of `audit` is published, `ledger` is keyed by all its columns
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    ensure!(
        !topics.iter().any(|t| t.ends_with(".public.audit")),
        "audit was published: {topics:?}"
    );
    let ledger: Vec<(&str, &Value)> = events
        .iter()
        .filter(|e| e.topic.ends_with(".public.ledger"))
        .map(|e| (e.op(), &e.key))
        .collect();
    // Keyed by every column, an update is a new key: a delete and a create.
    // The snapshot's row comes before them, or is left out as the stream's
    // is newer, or comes after them with the new row (decision 0017).
    let (old, new) = (json!({"a": 1, "b": "one"}), json!({"a": 1, "b": "eins"}));
    ensure!(
        [
            vec![("r", &old), ("d", &old), ("c", &new)],
            vec![("d", &old), ("c", &new)],
            vec![("d", &old), ("c", &new), ("r", &new)],
        ]
        .contains(&ledger),
        "ledger events: {ledger:?}"
    );
    // `orders` has its two inserts; the snapshot alongside may have read
    // the rows after them, and repeats them as `r` (decision 0017).
    let orders: Vec<(&str, &Value)> = events
        .iter()
        .filter(|e| e.topic.ends_with(".public.orders"))
        .map(|e| (e.op(), &e.value["after"]))
        .collect();
    let (first, sentinel) = (
        json!({"id": 1, "v": "first"}),
        json!({"id": 2, "v": "sentinel"}),
    );
    ensure!(
        orders.iter().filter(|(op, _)| *op == "c").count() == 2
            && orders
                .iter()
                .all(|(op, row)| ["c", "r"].contains(op) && (**row == first || **row == sentinel)),
        "orders events: {orders:?}"
    );
    let log = sluice.log();
    ensure!(
        log.contains("public.audit") && log.contains("REPLICA IDENTITY FULL"),
        "the log does not name audit and the remedy:\n{log}"
    );
    let published: Vec<String> = db
        .query(
            "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
            &[&p.prefix],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(published, ["ledger", "orders"]);

    // AND, once sluice has stopped, check names the table and the remedy
    sluice.interrupt().await?;
    let (code, text) = sluice_tests::sluice_check(&check_path)?;
    ensure!(
        text.contains("table public.audit has no primary key or replica identity")
            && text.contains("ALTER TABLE \"public\".\"audit\" REPLICA IDENTITY FULL"),
        "check output:\n{text}"
    );
    let explicit = !include.is_empty();
    assert_eq!(code, Some(i32::from(explicit)), "{text}");

    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn a_keyless_table_in_the_include_list_is_left_out_and_keeps_its_updates()
-> anyhow::Result<()> {
    keyless_tables_are_left_out(
        "      table.include.list: public.orders,public.audit,public.ledger\n",
    )
    .await
}

#[tokio::test]
async fn a_keyless_table_is_left_out_when_every_table_is_captured() -> anyhow::Result<()> {
    keyless_tables_are_left_out("").await
}

#[tokio::test]
async fn a_publication_that_breaks_the_application_is_reported() -> anyhow::Result<()> {
    // GIVEN a publication, made by hand, that holds a table without a key
    let name = unique("cdc-badpub").replace('-', "_");
    let db = pg::create_database(&name).await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    db.batch_execute(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE audit (a int); CREATE TABLE extra (id int PRIMARY KEY);
         CREATE PUBLICATION {} FOR TABLE orders, audit;",
        p.prefix
    ))
    .await?;
    let path = p.dir.join("check.yaml");
    std::fs::write(&path, &p.config)?;

    // WHEN sluice check runs
    let (code, text) = sluice_tests::sluice_check(&path)?;

    // THEN it says the application is broken now, and that `extra` would
    // never be streamed
    assert_eq!(code, Some(1), "{text}");
    for expected in [
        format!(
            "publication {} publishes table public.audit, which has no primary key or replica identity",
            p.prefix
        ),
        format!(
            "publication {} does not publish table public.extra",
            p.prefix
        ),
    ] {
        ensure!(text.contains(&expected), "missing `{expected}` in:\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn all_tables_publications_are_refused_at_validate() -> anyhow::Result<()> {
    // GIVEN a source asking for a FOR ALL TABLES publication
    let p = cdc(
        "cdc-alltables",
        "ATLEAST_ONCE",
        "      publication.autocreate.mode: all_tables\n",
    )?;
    let path = p.dir.join("pipeline.yaml");
    std::fs::write(&path, &p.config)?;

    // WHEN it is validated
    let out = std::process::Command::new(sluice_tests::sluice_binary()?)
        .args(["validate", "--config"])
        .arg(&path)
        .output()?;

    // THEN it is refused with the reason
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    ensure!(
        text.contains("publication.autocreate.mode") && text.contains("all_tables is refused"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn partition_changes_arrive_on_the_parent_topic_after_the_snapshot() -> anyhow::Result<()> {
    // GIVEN a table partitioned by range, with rows in two partitions
    let name = unique("cdc-parts").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
         CREATE TABLE m_low PARTITION OF m FOR VALUES FROM (0) TO (1000);
         CREATE TABLE m_high PARTITION OF m FOR VALUES FROM (1000) TO (2000);
         INSERT INTO m SELECT g, 'snap ' || g FROM generate_series(1, 1990, 10) g;",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_event(&p.out, "the end of the snapshot", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await
    .with_context(|| sluice.log())?;

    // WHEN the application inserts, updates and deletes in both partitions,
    // moves a row between them, and adds partitions while sluice streams
    db.batch_execute(
        "INSERT INTO m VALUES (5, 'new low'), (1005, 'new high');
         UPDATE m SET v = 'updated' WHERE id IN (11, 1011);
         DELETE FROM m WHERE id IN (21, 1021);
         UPDATE m SET id = 1500, v = 'moved' WHERE id = 31;
         CREATE TABLE m_more PARTITION OF m FOR VALUES FROM (2000) TO (3000);
         INSERT INTO m VALUES (2001, 'in a new partition');
         CREATE TABLE m_attached (id int NOT NULL, v text);
         ALTER TABLE m ATTACH PARTITION m_attached FOR VALUES FROM (3000) TO (4000);
         INSERT INTO m VALUES (3001, 'in an attached partition');
         UPDATE m SET v = 'updated again' WHERE id = 2001;
         CREATE TABLE m_neg PARTITION OF m FOR VALUES FROM (-100) TO (0);
         INSERT INTO m VALUES (-1, 'sentinel');",
    )
    .await?;
    let events = wait_for_event(&p.out, "the sentinel row", |e| e.key == json!({"id": -1}))
        .await
        .with_context(|| sluice.log())?;

    // THEN every event is on the parent's topic, and replaying them gives
    // exactly the table
    let topics: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.topic.as_str()).collect();
    ensure!(
        topics.len() == 1 && topics.iter().all(|t| t.ends_with(".public.m")),
        "topics: {topics:?}"
    );
    let moved: Vec<(&str, &Value)> = events
        .iter()
        .filter(|e| e.key == json!({"id": 31}) || e.key == json!({"id": 1500}))
        .map(|e| (e.op(), &e.key))
        .collect();
    ensure!(
        moved
            == [
                ("r", &json!({"id": 31})),
                ("d", &json!({"id": 31})),
                ("c", &json!({"id": 1500}))
            ],
        "the moved row: {moved:?}"
    );
    let model = replay(&events, ".public.m");
    let table = table_rows(&db, "SELECT id, v FROM m ORDER BY id").await?;
    ensure!(
        model == table,
        "the replayed topic differs from the table: {} against {} rows",
        model.len(),
        table.len()
    );

    sluice.interrupt().await?;
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn partition_changes_across_the_snapshot_handoff_are_not_lost() -> anyhow::Result<()> {
    // GIVEN a partitioned table written to while the snapshot is read
    let name = unique("cdc-parts-busy").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
         CREATE TABLE m0 PARTITION OF m FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE m1 PARTITION OF m FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         INSERT INTO m SELECT g, 'snap' FROM generate_series(1, 5000) g;",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "      snapshot.fetch.size: 100\n")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;

    // WHEN rows change in both partitions across the snapshot-to-stream handoff
    for i in 0..200 {
        db.batch_execute(&format!(
            "UPDATE m SET v = 'w{i}' WHERE id = {a}; DELETE FROM m WHERE id = {b}; INSERT INTO m VALUES ({c}, 'n');",
            a = i * 7 % 5000 + 1,
            b = i * 13 % 5000 + 1,
            c = 10_000 + i
        ))
        .await?;
    }
    db.batch_execute("INSERT INTO m VALUES (-1, 'sentinel')")
        .await?;
    wait_for_event(&p.out, "the sentinel row", |e| e.key == json!({"id": -1}))
        .await
        .with_context(|| sluice.log())?;
    let events = snapshot_done(&p.out, &sluice).await?;

    // THEN no change is lost at the handoff
    let model = replay(&events, ".public.m");
    let table = table_rows(&db, "SELECT id, v FROM m ORDER BY id").await?;
    ensure!(
        model == table,
        "the replayed topic differs from the table: {} against {} rows",
        model.len(),
        table.len()
    );
    let other: Vec<&str> = events
        .iter()
        .map(|e| e.topic.as_str())
        .filter(|t| !t.ends_with(".public.m"))
        .collect();
    ensure!(other.is_empty(), "events on partition topics: {other:?}");

    sluice.interrupt().await?;
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

//! The Postgres CDC source against real Postgres and the real broker, run as
//! users run it: `sluice run` with the source and a file sink that writes
//! every event out as JSON lines.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sluice_tests::cdc::{LONG, cdc, drop_slot, replay, wait_for_event, wait_for_slot};
use sluice_tests::{Event, PULSAR_URL, Sluice, file_events, java_lines, pg, unique, wait_for};

#[tokio::test]
async fn snapshot_then_stream_under_concurrent_writes_ends_equal_to_the_table() -> anyhow::Result<()>
{
    // GIVEN a table of 20,000 rows, snapshotted 200 rows at a time
    let name = unique("cdc-interleave").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL, note text);
         INSERT INTO items SELECT g, 0, 'row ' || g FROM generate_series(1, 20000) g;",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "      snapshot.fetch.size: 200\n")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;

    // WHEN a writer updates, deletes and inserts rows while the snapshot is
    // read and after it, until the stream has carried some of its changes
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_db = pg::connect(&name).await?;
    let writer_stop = stop.clone();
    let writer = tokio::spawn(async move {
        let mut i = 0u32;
        while !writer_stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5000 {
            writer_db
                .batch_execute(&format!(
                    "BEGIN; UPDATE items SET n = n + 1 WHERE id = {id}; \
                     DELETE FROM items WHERE id = {gone}; \
                     INSERT INTO items VALUES ({new}, {i}, 'new'); COMMIT;",
                    id = (i * 7) % 20000 + 1,
                    gone = (i * 13) % 20000 + 1,
                    new = 100_000 + i
                ))
                .await?;
            i += 1;
        }
        anyhow::Ok(i)
    });
    wait_for_event(&p.out, "the end of the snapshot", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await
    .with_context(|| sluice.log())?;
    wait_for("streamed changes", LONG, || {
        let out = p.out.clone();
        async move {
            Ok((file_events(&out)?.iter().filter(|e| e.op() == "c").count() >= 50).then_some(()))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await??;
    db.batch_execute("INSERT INTO items VALUES (-1, 0, 'sentinel')")
        .await?;
    let events = wait_for_event(&p.out, "the sentinel row", |e| e.key == json!({"id": -1}))
        .await
        .with_context(|| sluice.log())?;
    println!("{writes} writer transactions, {} events", events.len());

    // THEN no row was read twice by the snapshot (a redelivered copy of the
    // same event, same sequence, is at-least-once delivery, not a second read)
    let mut reads: HashMap<String, std::collections::BTreeSet<u128>> = HashMap::new();
    for e in events.iter().filter(|e| e.op() == "r") {
        reads
            .entry(e.key.to_string())
            .or_default()
            .insert(e.seq.context("no seq")?);
    }
    let twice: Vec<&String> = reads
        .iter()
        .filter(|(_, seqs)| seqs.len() > 1)
        .map(|(k, _)| k)
        .collect();
    ensure!(
        twice.is_empty(),
        "rows read twice by the snapshot: {twice:?}"
    );
    ensure!(
        reads.len() >= 2700,
        "the snapshot read only {} rows",
        reads.len()
    );

    // AND replaying every event in order gives exactly the table
    let model = replay(&events, ".public.items");
    let rows = db
        .query("SELECT id, n, note FROM items ORDER BY id", &[])
        .await?;
    let table: BTreeMap<String, Value> = rows
        .iter()
        .map(|r| {
            let id: i32 = r.get(0);
            (
                json!({"id": id}).to_string(),
                json!({"id": id, "n": r.get::<_, i32>(1), "note": r.get::<_, Option<String>>(2)}),
            )
        })
        .collect();
    let missing: Vec<&String> = table
        .keys()
        .filter(|k| !model.contains_key(*k))
        .take(5)
        .collect();
    let history: Vec<String> = missing
        .iter()
        .flat_map(|k| {
            events
                .iter()
                .filter(move |e| &&e.key.to_string() == k)
                .map(move |e| format!("{k} {} {:?}", e.op(), e.seq))
        })
        .collect();
    assert_eq!(
        model.len(),
        table.len(),
        "row count; missing e.g. {missing:?}: {history:?} in {}",
        p.out.display()
    );
    assert_eq!(model, table);
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn changes_arrive_in_commit_order_with_debezium_fields() -> anyhow::Result<()> {
    // GIVEN an empty table captured without a snapshot
    let name = unique("cdc-ops").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "      snapshot.mode: never\n")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;

    // WHEN one insert commits, then a transaction updates, inserts and deletes,
    // then a key changes
    db.batch_execute("INSERT INTO t VALUES (1, 'a')").await?;
    db.batch_execute("BEGIN; UPDATE t SET v = 'b' WHERE id = 1; INSERT INTO t VALUES (2, 'x'); DELETE FROM t WHERE id = 1; COMMIT;")
        .await?;
    db.batch_execute("UPDATE t SET id = 3 WHERE id = 2").await?;
    let events = wait_for_event(&p.out, "the key change", |e| e.key == json!({"id": 3}))
        .await
        .with_context(|| sluice.log())?;

    // THEN the events are, in order:
    let summary: Vec<(String, Value, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e.op().to_owned(),
                e.key.clone(),
                e.value["before"].clone(),
                e.value["after"].clone(),
            )
        })
        .collect();
    let row = |id: i32, v: &str| json!({"id": id, "v": v});
    let key_only = |id: i32| json!({"id": id, "v": null});
    assert_eq!(
        summary,
        [
            ("c".into(), json!({"id": 1}), Value::Null, row(1, "a")),
            ("u".into(), json!({"id": 1}), Value::Null, row(1, "b")),
            ("c".into(), json!({"id": 2}), Value::Null, row(2, "x")),
            ("d".into(), json!({"id": 1}), key_only(1), Value::Null),
            ("d".into(), json!({"id": 2}), key_only(2), Value::Null),
            ("c".into(), json!({"id": 3}), Value::Null, row(3, "x")),
        ]
    );
    // AND each carries its source, sequences rise, and a transaction shares its id
    for e in &events {
        let s = &e.value["source"];
        assert_eq!(
            (
                s["connector"].as_str(),
                s["db"].as_str(),
                s["schema"].as_str(),
                s["table"].as_str()
            ),
            (
                Some("postgresql"),
                Some(name.as_str()),
                Some("public"),
                Some("t")
            )
        );
        assert_eq!(s["snapshot"], "false");
        assert_eq!(
            e.topic,
            format!("persistent://public/default/{}.public.t", p.prefix)
        );
    }
    let seqs: Vec<u128> = events
        .iter()
        .map(|e| e.seq.context("no seq"))
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequences do not rise: {seqs:?}"
    );
    let tx = |i: usize| events[i].value["source"]["txId"].clone();
    assert_eq!((tx(1), tx(2)), (tx(3), tx(3)));
    assert_ne!(tx(0), tx(1));
    // AND with no snapshot, what the slot holds back is shown all the same
    let metrics = sluice.get("/metrics").unwrap_or_default();
    for metric in [
        "sluice_slot_wal_retained_bytes{connector=\"cdc\",kind=\"source\"} ",
        "sluice_slot_wal_status{connector=\"cdc\",kind=\"source\",status=\"reserved\"} 1",
    ] {
        ensure!(
            metrics.lines().any(|l| l.starts_with(metric)),
            "{metric} not in:\n{metrics}"
        );
    }
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn toast_replica_identity_full_added_columns_and_truncate() -> anyhow::Result<()> {
    // GIVEN a table with a large TOASTed value and one with REPLICA IDENTITY FULL
    let name = unique("cdc-edges").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, doc text, n int);
         ALTER TABLE big ALTER COLUMN doc SET STORAGE EXTERNAL;
         CREATE TABLE full_ri (id int PRIMARY KEY, v text);
         ALTER TABLE full_ri REPLICA IDENTITY FULL;
         INSERT INTO full_ri VALUES (1, 'old');",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_event(&p.out, "the snapshot of full_ri", |e| e.op() == "r")
        .await
        .with_context(|| sluice.log())?;

    // WHEN the large value stays while another column changes, the FULL
    // table updates, a column is added, and the table is truncated
    db.batch_execute("INSERT INTO big VALUES (1, repeat('x', 100000), 0)")
        .await?;
    db.batch_execute("UPDATE big SET n = 1 WHERE id = 1")
        .await?;
    db.batch_execute("UPDATE full_ri SET v = 'new' WHERE id = 1")
        .await?;
    db.batch_execute(
        "ALTER TABLE big ADD COLUMN extra text; INSERT INTO big VALUES (2, 'short', 2, 'added')",
    )
    .await?;
    db.batch_execute("TRUNCATE big").await?;
    let events = wait_for_event(&p.out, "the truncate", |e| e.op() == "t")
        .await
        .with_context(|| sluice.log())?;

    let big: Vec<&Event> = events
        .iter()
        .filter(|e| e.topic.ends_with(".public.big"))
        .collect();
    let ops: Vec<&str> = big.iter().map(|e| e.op()).collect();
    assert_eq!(ops, ["c", "u", "c", "t"]);
    // THEN the unchanged TOAST value is marked unavailable, never null
    assert_eq!(
        big[0].value["after"]["doc"].as_str().map(str::len),
        Some(100_000)
    );
    assert_eq!(big[1].value["after"]["doc"], "__debezium_unavailable_value");
    assert_eq!(big[1].value["after"]["n"], 1);
    // AND the added column appears from the next change on
    assert_eq!(
        big[2].value["after"],
        json!({"id": 2, "doc": "short", "n": 2, "extra": "added"})
    );
    // AND the truncate has neither before nor after
    assert_eq!(
        (&big[3].value["before"], &big[3].value["after"]),
        (&Value::Null, &Value::Null)
    );
    // AND the FULL table's update carries the whole old row
    let full = events
        .iter()
        .find(|e| e.topic.ends_with(".public.full_ri") && e.op() == "u")
        .context("no update of full_ri")?;
    assert_eq!(full.value["before"], json!({"id": 1, "v": "old"}));
    assert_eq!(full.value["after"], json!({"id": 1, "v": "new"}));
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn each_listed_type_converts_as_debezium_does() -> anyhow::Result<()> {
    // GIVEN a row with every listed type
    let name = unique("cdc-types").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE t (id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric(12,3), f4 real, f8 double precision,
           b boolean, tx text, vc varchar(10), ch char(3), by bytea, d date, tm time, ts timestamp, tz timestamptz,
           iv interval, u uuid, j json, jb jsonb, arr int[], tarr text[], m mood);
         INSERT INTO t VALUES (1, -2, 9007199254740993, 1234.500, 1.5, 2.25, true, 'héllo', 'vc', 'ab', '\\x00ff',
           '2024-02-29', '13:45:30.5', '2024-01-15 13:45:30.123456', '2024-01-15 13:45:30+02', '1 day 2 hours',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2]}', '{\"b\": null}', '{1,NULL,3}', '{\"x y\",z}', 'happy');",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    // WHEN it is snapshotted and then inserted again as a change
    wait_for_event(&p.out, "the snapshot", |e| e.op() == "r")
        .await
        .with_context(|| sluice.log())?;
    db.batch_execute("INSERT INTO t SELECT 2, i2, i8, num, f4, f8, b, tx, vc, ch, by, d, tm, ts, tz, iv, u, j, jb, arr, tarr, m FROM t").await?;
    let events = wait_for_event(&p.out, "the insert", |e| e.op() == "c")
        .await
        .with_context(|| sluice.log())?;

    // THEN both carry the same Debezium JSON values
    let expected = json!({
        "i2": -2, "i8": 9_007_199_254_740_993i64, "num": "1234.500", "f4": 1.5, "f8": 2.25, "b": true,
        "tx": "héllo", "vc": "vc", "ch": "ab ", "by": "AP8=", "d": 19782, "tm": 49_530_500_000i64,
        "ts": 1_705_326_330_123_456i64, "tz": "2024-01-15T11:45:30Z", "iv": 93_600_000_000i64,
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": "{\"a\": [1, 2]}", "jb": "{\"b\": null}",
        "arr": [1, null, 3], "tarr": ["x y", "z"], "m": "happy"
    });
    for (op, id) in [("r", 1), ("c", 2)] {
        let e = events
            .iter()
            .find(|e| e.op() == op)
            .context("missing event")?;
        let mut after = e.value["after"].clone();
        assert_eq!(after["id"], id);
        after
            .as_object_mut()
            .context("after is not an object")?
            .remove("id");
        assert_eq!(after, expected, "op {op}");
    }
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn an_idle_database_lets_the_slot_advance_while_others_write() -> anyhow::Result<()> {
    // GIVEN a captured database that nobody writes to, with a heartbeat
    let name = unique("cdc-idle").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await?;
    let p = cdc(
        &name,
        "ATLEAST_ONCE",
        "      heartbeat.interval.ms: 200\n      snapshot.mode: never\n",
    )?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    let slot = p.prefix.clone();
    let start = wait_for_slot(&db, &slot, &sluice).await?;

    // WHEN another database writes several megabytes of WAL
    let other_name = unique("cdc-busy").replace('-', "_");
    let other = pg::create_database(&other_name).await?;
    other
        .batch_execute("CREATE TABLE w (id int, pad text); INSERT INTO w SELECT g, repeat('w', 200) FROM generate_series(1, 20000) g;")
        .await?;
    let written_to = pg::current_wal(&other).await?;
    ensure!(
        written_to > start + 4_000_000,
        "the writes made too little WAL"
    );

    // THEN the slot's confirmed position catches up past those writes
    wait_for("the slot to pass the other database's writes", LONG, || {
        let (db, slot) = (&db, slot.clone());
        async move {
            Ok(pg::confirmed_flush(db, &slot)
                .await?
                .filter(|at| *at >= written_to))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    let _ = other;
    Ok(())
}

#[tokio::test]
async fn a_kill_9_mid_stream_resumes_from_the_slot_without_loss() -> anyhow::Result<()> {
    // GIVEN an ATLEAST_ONCE capture of a table that receives a stream of inserts
    let name = unique("cdc-restart").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await?;
    let p = cdc(
        &name,
        "ATLEAST_ONCE",
        "      snapshot.mode: never\n      status.update.interval.ms: 200\n",
    )?;
    let first = Sluice::start(&p.dir, &p.config, p.port)?;
    let slot_start = wait_for_slot(&db, &p.prefix, &first).await?;
    let writer_db = pg::connect(&name).await?;
    let writer = tokio::spawn(async move {
        for i in 0..2000 {
            writer_db
                .batch_execute(&format!("INSERT INTO t VALUES ({i}, 'v{i}')"))
                .await?;
        }
        anyhow::Ok(())
    });

    // WHEN sluice is killed with SIGKILL while the inserts stream, and started again
    wait_for("some inserts in the file", LONG, || {
        let out = p.out.clone();
        async move { Ok((file_events(&out)?.len() >= 300).then_some(())) }
    })
    .await
    .with_context(|| first.log())?;
    let confirmed = wait_for("the slot to advance", LONG, || {
        let (db, slot) = (&db, p.prefix.clone());
        async move {
            Ok(pg::confirmed_flush(db, &slot)
                .await?
                .filter(|at| *at > slot_start))
        }
    })
    .await
    .with_context(|| first.log())?;
    first.kill9()?;
    let second = Sluice::start(&p.dir, &p.config, p.port)?;
    writer.await??;
    db.batch_execute("INSERT INTO t VALUES (-1, 'sentinel')")
        .await?;
    let events = wait_for_event(&p.out, "the sentinel", |e| e.key == json!({"id": -1}))
        .await
        .with_context(|| second.log())?;

    // THEN every insert is in the file, in order the first time it appears
    let ids: Vec<i64> = events.iter().filter_map(|e| e.key["id"].as_i64()).collect();
    let distinct: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    let expected: std::collections::BTreeSet<i64> = (-1..2000).collect();
    let lost = expected.difference(&distinct).count();
    println!(
        "restart: {} events, {lost} lost, {} duplicated",
        ids.len(),
        ids.len() - distinct.len()
    );
    assert_eq!(lost, 0, "inserts lost across the restart");
    // AND the restart resumed from the slot's confirmed position, not from the start
    ensure!(
        ids.len() - distinct.len() < 2000,
        "everything was streamed again"
    );
    let slot_now = pg::confirmed_flush(&db, &p.prefix)
        .await?
        .context("the slot is gone")?;
    ensure!(slot_now >= confirmed, "the slot moved backwards");
    ensure!(second.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn the_java_client_reads_valid_envelopes_from_the_topic() -> anyhow::Result<()> {
    // GIVEN a captured row, published by sluice
    let name = unique("cdc-reader").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one');",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_event(&p.out, "the snapshot", |e| e.op() == "r")
        .await
        .with_context(|| sluice.log())?;
    db.batch_execute("UPDATE t SET v = 'uno' WHERE id = 1")
        .await?;
    wait_for_event(&p.out, "the update", |e| e.op() == "u")
        .await
        .with_context(|| sluice.log())?;

    // WHEN Apache Pulsar's Java client reads the topic from the start
    let topic = format!("persistent://public/default/{}.public.t", p.prefix);
    let messages = java_lines("ReadTopic.java", &[PULSAR_URL, &topic])?;

    // THEN it sees the snapshot read and the update, as Debezium envelopes with sluice's properties
    assert_eq!(messages.len(), 2, "{messages:?}");
    let envelope = |i: usize| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(
            messages[i]["value"].as_str().context("no value")?,
        )?)
    };
    let (read, update) = (envelope(0)?, envelope(1)?);
    assert_eq!(
        (read["op"].as_str(), update["op"].as_str()),
        (Some("r"), Some("u"))
    );
    assert_eq!(update["after"], json!({"id": 1, "v": "uno"}));
    assert_eq!(update["source"]["connector"], "postgresql");
    assert_eq!(messages[1]["key"], "{\"id\":1}");
    for m in &messages {
        ensure!(
            m["properties"]["sluice.seq"]
                .as_str()
                .is_some_and(|s| s.parse::<u128>().is_ok()),
            "{m}"
        );
        ensure!(
            m["properties"]["sluice.lsn"]
                .as_str()
                .is_some_and(|s| s.contains('/')),
            "{m}"
        );
    }
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn initial_only_snapshots_without_a_slot_then_stops() -> anyhow::Result<()> {
    // GIVEN a table and snapshot.mode initial_only
    let name = unique("cdc-initonly").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500);",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "      snapshot.mode: initial_only\n")?;

    // WHEN sluice runs
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for("the source to stop", LONG, || {
        let status = sluice.get("/connectors/cdc");
        async move {
            Ok(status
                .filter(|s| s.contains("\"state\":\"stopped\""))
                .map(|_| ()))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    let events = wait_for_event(&p.out, "the last row", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN every row was read, and no slot holds WAL afterwards
    let ids: std::collections::BTreeSet<i64> =
        events.iter().filter_map(|e| e.key["id"].as_i64()).collect();
    assert_eq!(ids, (1..=500).collect());
    assert_eq!(
        pg::confirmed_flush(&db, &p.prefix).await?,
        None,
        "initial_only left a slot"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn always_takes_a_new_snapshot_on_every_start() -> anyhow::Result<()> {
    // GIVEN snapshot.mode always, and a first run that snapshotted 10 rows
    let name = unique("cdc-always").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
    )
    .await?;
    let p = cdc(&name, "ATLEAST_ONCE", "      snapshot.mode: always\n")?;
    let first = Sluice::start(&p.dir, &p.config, p.port)?;
    let before = wait_for_event(&p.out, "the first snapshot", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await
    .with_context(|| first.log())?;
    ensure!(first.interrupt().await?.success());
    let slot_before = pg::confirmed_flush(&db, &p.prefix).await?;

    // WHEN rows change while it is stopped and it starts again
    db.batch_execute("DELETE FROM t WHERE id <= 5; INSERT INTO t VALUES (11);")
        .await?;
    let second = Sluice::start(&p.dir, &p.config, p.port)?;
    let events = wait_for_event(&p.out, "the second snapshot's last row", |e| {
        e.value["source"]["snapshot"] == "last" && e.key == json!({"id": 11})
    })
    .await
    .with_context(|| second.log())?;

    // THEN the second snapshot reads the table as it is now, on the same
    // slot, whose stream carried the deletes
    let second_run = &events[before.len()..];
    let second_ids: Vec<i64> = second_run
        .iter()
        .filter(|e| e.op() == "r")
        .filter_map(|e| e.key["id"].as_i64())
        .collect();
    assert_eq!(second_ids, [6, 7, 8, 9, 10, 11]);
    let deleted: Vec<i64> = second_run
        .iter()
        .filter(|e| e.op() == "d")
        .filter_map(|e| e.key["id"].as_i64())
        .collect();
    assert_eq!(deleted, [1, 2, 3, 4, 5]);
    ensure!(slot_before.is_some(), "the slot was kept");
    ensure!(second.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn check_reports_what_would_break_the_source() -> anyhow::Result<()> {
    // GIVEN a table without a primary key and a user without REPLICATION
    let name = unique("cdc-check").replace('-', "_");
    let db = pg::create_database(&name).await?;
    let user = format!("plain_{name}");
    db.batch_execute(&format!(
        "CREATE TABLE nokey (a int); CREATE TABLE ok (id int PRIMARY KEY);
         CREATE ROLE {user} LOGIN PASSWORD 'pw'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user};
         CREATE TABLE secret (id int PRIMARY KEY);"
    ))
    .await?;
    let p = cdc(
        &name,
        "ATLEAST_ONCE",
        "      table.include.list: public.ok,public.nokey,public.secret,public.missing\n",
    )?;
    let config = p
        .config
        .replace("database.user: postgres", &format!("database.user: {user}"))
        .replace(
            &format!("database.password: {}", pg::PASSWORD),
            "database.password: pw",
        );
    let path = p.dir.join("check.yaml");
    std::fs::write(&path, config)?;

    // WHEN sluice check runs
    let (code, text) = sluice_tests::sluice_check(&path)?;

    // THEN it names each problem and what to do, and fails
    assert_eq!(code, Some(1), "{text}");
    for expected in [
        format!("user {user} lacks the REPLICATION attribute: ALTER ROLE"),
        "table public.nokey has no primary key".to_owned(),
        "table.include.list entry public.missing matches no table".to_owned(),
        format!(
            "user {user} cannot SELECT from table public.secret, which the snapshot reads: GRANT SELECT"
        ),
        format!(
            "publication {name} does not exist and user {user} lacks the CREATE privilege on database {name}"
        ),
        format!(
            "publication {name} does not exist and user {user} cannot create it for table public.ok, which postgres owns"
        ),
    ] {
        ensure!(text.contains(&expected), "missing `{expected}` in:\n{text}");
    }
    ensure!(
        !text.contains("wal_level"),
        "wal_level is logical on the stack:\n{text}"
    );
    db.batch_execute(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {user}; DROP ROLE {user};"
    ))
    .await?;
    Ok(())
}

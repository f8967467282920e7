//! Sinks over partitioned topics, as Pulsar's clients read them: every
//! partition, partitions added while the sink runs, by `inputs` and by
//! `topicsPattern`, mapped by `topicToTable`, under each guarantee; and an
//! input topic that does not exist is never created by the subscription.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::sink::pg_url;
use sluice_tests::{PULSAR_URL, Sluice, admin, free_port, pg, temp_dir, topic, unique, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// Create `persistent://public/default/<name>` with `partitions` partitions,
/// or raise its count to it.
fn partition(name: &str, partitions: u32, create: bool) -> anyhow::Result<()> {
    let path = format!("/admin/v2/persistent/public/default/{name}/partitions");
    if create {
        admin::put(&path, Some(&partitions.to_string()))
    } else {
        admin::post(&path, &partitions.to_string())
    }
}

/// Keyed rows `{"id": i, "v": "<v><i>"}` for each id, each published to the
/// partition `i % partitions` of `base`, in batches.
async fn publish_rows(
    base: &str,
    partitions: u32,
    ids: impl Iterator<Item = u32>,
    v: &str,
) -> anyhow::Result<()> {
    let mut by_partition: BTreeMap<u32, Vec<(String, Option<String>)>> = BTreeMap::new();
    for i in ids {
        by_partition.entry(i % partitions).or_default().push((
            format!("{{\"id\":{i}}}"),
            Some(format!("{{\"id\":{i},\"v\":\"{v}{i}\"}}")),
        ));
    }
    for (p, rows) in by_partition {
        sluice_tests::publish_batched(&format!("{base}-partition-{p}"), &rows).await?;
    }
    Ok(())
}

async fn rows(db: &tokio_postgres::Client, table: &str) -> anyhow::Result<BTreeMap<i32, String>> {
    Ok(db
        .query(&format!("SELECT id, v FROM {table}"), &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A topic's names in the namespace's topic list.
fn listed(name: &str) -> anyhow::Result<Vec<String>> {
    let list: Vec<String> =
        serde_json::from_str(&admin::get("/admin/v2/persistent/public/default")?)?;
    let full = topic(name);
    Ok(list
        .into_iter()
        .filter(|t| t == &full || t.starts_with(&format!("{full}-partition-")))
        .collect())
}

#[tokio::test]
async fn sinks_read_every_partition_and_partitions_added_while_they_run() -> anyhow::Result<()> {
    // GIVEN a topic of 4 partitions holding 400 keyed rows, and sinks over
    // it by `inputs` under each guarantee, and by `topicsPattern` mapped by
    // the topic's full name in `topicToTable`
    let name = unique("parted").replace('-', "_");
    let base = topic(&name);
    partition(&name, 4, true)?;
    publish_rows(&base, 4, 0..400, "a").await?;
    let db = pg::create_database(&name).await?;
    let sinks = [
        ("atmost", "ATMOST_ONCE", false),
        ("atleast", "ATLEAST_ONCE", false),
        ("once", "EFFECTIVELY_ONCE", false),
        ("pattern", "EFFECTIVELY_ONCE", true),
    ];
    let mut config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{{port}}\nsinks:\n"
    );
    for (sink, guarantee, pattern) in sinks {
        db.batch_execute(&format!(
            "CREATE TABLE items_{sink} (id int PRIMARY KEY, v text NOT NULL)"
        ))
        .await?;
        let (inputs, table) = if pattern {
            (
                format!("    topicsPattern: \"persistent://public/default/{name}\"\n"),
                format!("      topicToTable: '{base}:items_{sink}'\n"),
            )
        } else {
            (
                format!("    inputs: [{name}]\n"),
                format!("      tableName: items_{sink}\n"),
            )
        };
        config.push_str(&format!(
            "  - name: {sink}\n    className: jdbc\n{inputs}    sourceSubscriptionPosition: Earliest\n\
             \x20   processingGuarantees: {guarantee}\n    configs:\n      jdbcUrl: '{}'\n{table}\
             \x20     insertMode: UPSERT\n      batchSize: 50\n      timeoutMs: 20\n",
            pg_url(&name)
        ));
    }
    let port = free_port()?;
    let dir = temp_dir(&name)?;
    let sluice = Sluice::start(&dir, &config.replace("{port}", &port.to_string()), port)?;

    // WHEN the sinks have applied the 400 rows, the topic grows to 6
    // partitions, and 200 rows are published across all six
    let mut expected: BTreeMap<i32, String> = (0..400).map(|i| (i, format!("a{i}"))).collect();
    for (sink, ..) in sinks {
        wait_for(&format!("400 rows in items_{sink}"), LONG, || async {
            Ok((rows(&db, &format!("items_{sink}")).await?.len() == 400).then_some(()))
        })
        .await
        .with_context(|| sluice.log())?;
    }
    partition(&name, 6, false)?;
    publish_rows(&base, 6, 300..500, "b").await?;
    expected.extend((300..500).map(|i| (i, format!("b{i}"))));

    // THEN every sink's table equals the rows published, row by row
    for (sink, ..) in sinks {
        let got = wait_for(&format!("the new rows in items_{sink}"), LONG, || async {
            let got = rows(&db, &format!("items_{sink}")).await?;
            Ok((got == expected).then_some(got))
        })
        .await
        .with_context(|| {
            format!(
                "items_{sink} differs; log:\n{}",
                sluice
                    .log()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        assert_eq!(got.len(), 500, "{sink}");
    }
    // AND the effectively-once sinks keep a watermark per partition
    for sink in ["once", "pattern"] {
        let partitions: Vec<i32> = db
            .query(
                "SELECT \"partition\" FROM sluice_offsets WHERE sink = $1 ORDER BY 1",
                &[&format!("public/default/{sink}")],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(partitions, [0, 1, 2, 3, 4, 5], "{sink}");
    }
    // AND no topic of the base name was created beside the partitions
    let names = listed(&name)?;
    ensure!(
        !names.contains(&base),
        "a topic shadows the partitions: {names:?}"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_missing_input_is_waited_for_or_refused_and_never_created() -> anyhow::Result<()> {
    // GIVEN a topic with rows, and a topic that does not exist yet
    let name = unique("missing").replace('-', "_");
    let (present, absent) = (format!("{name}_present"), format!("{name}_later"));
    sluice_tests::publish(
        &topic(&present),
        &[("{\"id\":1}", Some("{\"id\":1,\"v\":\"p\"}"))],
    )
    .await?;
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE waits (id int PRIMARY KEY, v text); CREATE TABLE fails (id int PRIMARY KEY, v text)",
    )
    .await?;

    // WHEN one sink over both waits for missing topics (the default, at
    // the subscription's default position, Latest), and another fails
    let port = free_port()?;
    let mut config =
        format!("pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\nsinks:\n");
    for (sink, missing) in [("waits", ""), ("fails", "    missingTopics: FAIL\n")] {
        let position = if sink == "fails" {
            "    sourceSubscriptionPosition: Earliest\n"
        } else {
            ""
        };
        config.push_str(&format!(
            "  - name: {sink}\n    className: jdbc\n    inputs: [{present}, {absent}]\n{missing}{position}\
             \x20   configs:\n      jdbcUrl: '{}'\n      tableName: {sink}\n      insertMode: UPSERT\n\
             \x20     batchSize: 10\n      timeoutMs: 20\n",
            pg_url(&name)
        ));
    }
    let dir = temp_dir(&name)?;
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN the failing sink says which topic is missing, and reads nothing
    wait_for("the failing sink to name the topic", LONG, || async {
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/fails").unwrap_or_default())
                .unwrap_or_default();
        let error = status["last_error"].as_str().unwrap_or_default().to_owned();
        Ok((error.contains(&absent) && error.contains("does not exist")).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    // AND the waiting sink warns, naming it, and reads the other input
    wait_for("the waiting sink to warn and run", LONG, || async {
        let log = sluice.log();
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/waits").unwrap_or_default())
                .unwrap_or_default();
        Ok((log.contains("an input topic does not exist")
            && log.contains(&absent)
            && status["state"] == "running")
            .then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    sluice_tests::publish(
        &topic(&present),
        &[("{\"id\":2}", Some("{\"id\":2,\"v\":\"p\"}"))],
    )
    .await?;
    wait_for("row 2 in waits", LONG, || async {
        Ok(rows(&db, "waits").await?.contains_key(&2).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    // AND neither created the missing topic
    assert_eq!(listed(&absent)?, Vec::<String>::new());

    // WHEN the missing topic is created, partitioned, and written before
    // any sink subscribed to it
    partition(&absent, 2, true)?;
    publish_rows(&topic(&absent), 2, 10..14, "late").await?;

    // THEN both sinks read it from its start, every row
    for sink in ["waits", "fails"] {
        wait_for(&format!("the late rows in {sink}"), LONG, || async {
            let got = rows(&db, sink).await?;
            Ok((10..14)
                .all(|i| got.get(&i) == Some(&format!("late{i}")))
                .then_some(()))
        })
        .await
        .with_context(|| sluice.log())?;
    }
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn two_processes_share_a_partitioned_topic_and_a_death_moves_partitions_exactly_once()
-> anyhow::Result<()> {
    // GIVEN 20,000 keyed rows on a topic of 4 partitions, and a target
    // whose trigger counts every row the sink applies
    let name = unique("shared_parts").replace('-', "_");
    let base = topic(&name);
    partition(&name, 4, true)?;
    let count = 20_000;
    publish_rows(&base, 4, 0..count, "a").await?;
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
         CREATE TABLE applied (id int NOT NULL);
         CREATE FUNCTION count_applied() RETURNS trigger AS $$
           BEGIN INSERT INTO applied VALUES (NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER count_applied AFTER INSERT OR UPDATE ON items
           FOR EACH ROW EXECUTE FUNCTION count_applied();",
    )
    .await?;
    let config = |port: u16| {
        format!(
            "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\nsinks:\n\
             \x20 - name: shared\n    className: jdbc\n    inputs: [{name}]\n    sourceSubscriptionPosition: Earliest\n\
             \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n      jdbcUrl: '{}'\n\
             \x20     tableName: items\n      insertMode: UPSERT\n      batchSize: 50\n      timeoutMs: 20\n",
            pg_url(&name)
        )
    };
    // WHEN two processes of the sink share its subscription, each taking
    // some of the partitions, and one dies (as kill -9 would) just after
    // its fifth batch commits, before the broker hears of it
    let (port_a, port_b) = (free_port()?, free_port()?);
    let (dir_a, dir_b) = (
        temp_dir(&format!("{name}_a"))?,
        temp_dir(&format!("{name}_b"))?,
    );
    let b = Sluice::start(&dir_b, &config(port_b), port_b)?;
    let a = Sluice::start_with(
        &dir_a,
        &config(port_a),
        port_a,
        &[("SLUICE_FAILPOINT", "sink-written@5")],
    )?;
    let status = a.exit_status().await?;
    let log = std::fs::read_to_string(dir_a.join("sluice.log"))?;
    ensure!(
        !status.success() && log.contains("failpoint sink-written reached"),
        "the first process did not die after its fifth batch:\n{log}"
    );
    let applied_before: i64 = db
        .query_one("SELECT count(*) FROM applied", &[])
        .await?
        .get(0);
    let by_b = b
        .get("/connectors/shared")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["records_out"].as_u64())
        .unwrap_or(0);
    ensure!(
        by_b > 0 && applied_before < i64::from(count),
        "the processes did not share the rows before the death \
         ({applied_before} applied, {by_b} by the second)"
    );

    // THEN the other process takes its partitions, and every row is
    // applied exactly once: the batch that committed unacknowledged comes
    // again, and the watermark passes over it
    let expected: BTreeMap<i32, String> = (0..count as i32).map(|i| (i, format!("a{i}"))).collect();
    wait_for("every row in items", LONG, || async {
        Ok((rows(&db, "items").await? == expected).then_some(()))
    })
    .await
    .with_context(|| b.log())?;
    let (total, distinct): (i64, i64) = {
        let r = db
            .query_one("SELECT count(*), count(DISTINCT id) FROM applied", &[])
            .await?;
        (r.get(0), r.get(1))
    };
    println!(
        "two processes, one dead after {applied_before} rows: {total} applications of {distinct} rows"
    );
    assert_eq!((total, distinct), (i64::from(count), i64::from(count)));
    ensure!(b.interrupt().await?.success());
    Ok(())
}

//! Two processes of one sink on a Key_Shared subscription
//! (`retainKeyOrdering`): each key's versions are applied in order, once
//! each, with the keys spread over both.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::sink::pg_url;
use sluice_tests::{PULSAR_URL, Sluice, admin, free_port, pg, temp_dir, topic, unique, wait_for};

const LONG: Duration = Duration::from_secs(180);
const KEYS: u32 = 40;
const VERSIONS: u32 = 150;

/// How many consumers the topic's subscriptions hold.
fn consumers(name: &str) -> anyhow::Result<usize> {
    let stats: serde_json::Value = serde_json::from_str(&admin::get(&format!(
        "/admin/v2/persistent/public/default/{name}/stats"
    ))?)?;
    Ok(stats["subscriptions"].as_object().map_or(0, |subs| {
        subs.values()
            .map(|s| s["consumers"].as_array().map_or(0, Vec::len))
            .sum()
    }))
}

/// A target table `items (id, v)` whose trigger logs every row applied to
/// it, in order, in `applied`.
async fn logging_target(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
         CREATE TABLE applied (seq bigserial, id int NOT NULL, v int NOT NULL);
         CREATE FUNCTION log_applied() RETURNS trigger AS $$
           BEGIN INSERT INTO applied (id, v) VALUES (NEW.id, NEW.v); RETURN NEW; END $$
           LANGUAGE plpgsql;
         CREATE TRIGGER log_applied AFTER INSERT OR UPDATE ON items
           FOR EACH ROW EXECUTE FUNCTION log_applied();",
    )
    .await?;
    Ok(())
}

/// A count from the sink `keyed`'s status, at a JSON pointer.
fn count(sluice: &Sluice, pointer: &str) -> u64 {
    sluice
        .get("/connectors/keyed")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.pointer(pointer).and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

/// Per key, the versions applied, in the order the target saw them.
async fn applied(db: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<i32, Vec<i32>>> {
    let mut by_key: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for row in db
        .query("SELECT id, v FROM applied ORDER BY seq", &[])
        .await?
    {
        by_key.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(by_key)
}

async fn key_order_over_two_processes(batching: &str) -> anyhow::Result<()> {
    // GIVEN a target whose trigger logs every row the sink applies, and
    // two processes of one ATLEAST_ONCE sink with
    // `retainKeyOrdering`, both subscribed
    let name = unique(&format!("keyshared_{batching}")).replace('-', "_");
    let db = pg::create_database(&name).await?;
    logging_target(&db).await?;
    admin::put(&format!("/admin/v2/persistent/public/default/{name}"), None)?;
    let config = |port: u16| {
        format!(
            "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\nsinks:\n\
             \x20 - name: keyed\n    className: jdbc\n    inputs: [{name}]\n    sourceSubscriptionPosition: Earliest\n\
             \x20   processingGuarantees: ATLEAST_ONCE\n    retainKeyOrdering: true\n    configs:\n      jdbcUrl: '{}'\n\
             \x20     tableName: items\n      insertMode: UPSERT\n      batchSize: 50\n      timeoutMs: 20\n",
            pg_url(&name)
        )
    };
    let (port_a, port_b) = (free_port()?, free_port()?);
    let (dir_a, dir_b) = (
        temp_dir(&format!("{name}_a"))?,
        temp_dir(&format!("{name}_b"))?,
    );
    let a = Sluice::start(&dir_a, &config(port_a), port_a)?;
    let b = Sluice::start(&dir_b, &config(port_b), port_b)?;
    wait_for("both processes subscribed", LONG, || async {
        Ok((consumers(&name)? == 2).then_some(()))
    })
    .await?;

    // WHEN a producer batching as `batching` publishes successive versions
    // of each key
    let sent = sluice_tests::python_lines(
        "publish_versions.py",
        &[
            PULSAR_URL,
            &topic(&name),
            &KEYS.to_string(),
            &VERSIONS.to_string(),
            batching,
        ],
    )?;
    ensure!(
        sent == [serde_json::json!({"sent": KEYS * VERSIONS})],
        "{sent:?}"
    );

    let out = |s: &Sluice| count(s, "/records_out");
    if batching == "default" {
        // THEN, of batches that mix keys, which the broker hands to one
        // process by their first key, a sink says what the producer must
        // change, once
        wait_for("every message applied", LONG, || async {
            Ok((out(&a) + out(&b) >= u64::from(KEYS * VERSIONS)).then_some(()))
        })
        .await?;
        let said = [a.log(), b.log()]
            .iter()
            .map(|log| log.matches("batches of several keys").count())
            .sum::<usize>();
        ensure!(said >= 1, "no process said so:\n{}\n{}", a.log(), b.log());
        ensure!(a.interrupt().await?.success() && b.interrupt().await?.success());
        return Ok(());
    }

    // THEN every key ends at its last version, both processes applied some,
    // and each key's versions were applied once each, in order
    let last = VERSIONS as i32 - 1;
    wait_for("every key at its last version", LONG, || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM items WHERE v = $1", &[&last])
            .await?
            .get(0);
        Ok((n == i64::from(KEYS)).then_some(()))
    })
    .await
    .with_context(|| format!("{}\n{}", a.log(), b.log()))?;
    let (by_a, by_b) = (out(&a), out(&b));
    let mut back = Vec::new();
    let mut total = 0;
    for (id, seen) in &applied(&db).await? {
        total += seen.len();
        for pair in seen.windows(2) {
            if pair[1] <= pair[0] {
                back.push(format!("key {id}: {} after {}", pair[1], pair[0]));
            }
        }
    }
    let twice = count(&a, "/skipped/delivered_twice") + count(&b, "/skipped/delivered_twice");
    println!(
        "{batching}: {total} applications of {} messages, {by_a} by one process and {by_b} by \
         the other; {twice} delivered again and passed over",
        KEYS * VERSIONS
    );
    ensure!(
        back.is_empty(),
        "key order broken: {:?}\n{}\n{}",
        &back[..back.len().min(10)],
        a.log(),
        b.log()
    );
    assert_eq!(total, (KEYS * VERSIONS) as usize, "applications");
    ensure!(by_a > 0 && by_b > 0, "keys not spread: {by_a} and {by_b}");
    ensure!(a.interrupt().await?.success() && b.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn key_shared_keeps_key_order_with_key_based_batches() -> anyhow::Result<()> {
    key_order_over_two_processes("key_based").await
}

#[tokio::test]
async fn key_shared_sinks_say_when_batches_mix_keys() -> anyhow::Result<()> {
    key_order_over_two_processes("default").await
}

#[tokio::test]
async fn key_shared_keeps_key_order_without_batches() -> anyhow::Result<()> {
    key_order_over_two_processes("none").await
}

#[tokio::test]
async fn a_cdc_source_batching_by_key_feeds_two_key_shared_sinks_in_key_order() -> anyhow::Result<()>
{
    // GIVEN a table of 40 rows, a CDC source whose producer batches by key
    // (`batchBuilder: KEY_BASED`), and two processes of an ATLEAST_ONCE
    // sink with `retainKeyOrdering` over its topic, into a target whose
    // trigger logs every row applied
    let name = unique("keyshared_cdc").replace('-', "_");
    let source = pg::create_database(&format!("{name}_src")).await?;
    source
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO items SELECT g, 0 FROM generate_series(0, 39) g;",
        )
        .await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    logging_target(&target).await?;
    let topic_name = format!("{name}.public.items");
    let port = free_port()?;
    let source_config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: {name}\n    className: postgres-cdc\n\
         \x20   producerConfig:\n      batchBuilder: KEY_BASED\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}_src\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n",
        pw = pg::PASSWORD
    );
    let sink_config = |port: u16| {
        format!(
            "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\nsinks:\n\
             \x20 - name: keyed\n    className: jdbc\n    inputs: [{topic_name}]\n    sourceSubscriptionPosition: Earliest\n\
             \x20   processingGuarantees: ATLEAST_ONCE\n    retainKeyOrdering: true\n    configs:\n      jdbcUrl: '{}'\n\
             \x20     tableName: items\n      inputFormat: DEBEZIUM\n      batchSize: 50\n      timeoutMs: 20\n",
            pg_url(&format!("{name}_dst"))
        )
    };
    admin::put(
        &format!("/admin/v2/persistent/public/default/{topic_name}"),
        None,
    )?;
    let (port_a, port_b) = (free_port()?, free_port()?);
    let a = Sluice::start(
        &temp_dir(&format!("{name}_a"))?,
        &sink_config(port_a),
        port_a,
    )?;
    let b = Sluice::start(
        &temp_dir(&format!("{name}_b"))?,
        &sink_config(port_b),
        port_b,
    )?;
    wait_for("both sink processes subscribed", LONG, || async {
        Ok((consumers(&topic_name)? == 2).then_some(()))
    })
    .await?;
    let cdc = Sluice::start(&temp_dir(&name)?, &source_config, port)?;
    wait_for("the snapshot in the target", LONG, || async {
        let n: i64 = target
            .query_one("SELECT count(*) FROM items", &[])
            .await?
            .get(0);
        Ok((n == 40).then_some(()))
    })
    .await
    .with_context(|| cdc.log())?;

    // WHEN each row is updated 50 times, a round of all 40 per transaction
    for _ in 0..50 {
        source.batch_execute("UPDATE items SET v = v + 1").await?;
    }

    // THEN both processes apply some keys, and each key's 51 versions are
    // applied once each, in order
    wait_for("every key at its last version", LONG, || async {
        let n: i64 = target
            .query_one("SELECT count(*) FROM items WHERE v = 50", &[])
            .await?
            .get(0);
        Ok((n == 40).then_some(()))
    })
    .await
    .with_context(|| format!("{}\n{}\n{}", cdc.log(), a.log(), b.log()))?;
    let mut back = Vec::new();
    let mut total = 0;
    for (id, seen) in &applied(&target).await? {
        total += seen.len();
        if seen.windows(2).any(|p| p[1] <= p[0]) {
            back.push(format!("key {id}: {seen:?}"));
        }
    }
    let (by_a, by_b) = (count(&a, "/records_out"), count(&b, "/records_out"));
    println!("cdc by key: {total} applications, {by_a} by one process and {by_b} by the other");
    ensure!(
        back.is_empty(),
        "key order broken: {:?}",
        &back[..back.len().min(3)]
    );
    assert_eq!(total, 40 * 51, "applications");
    ensure!(by_a > 0 && by_b > 0, "keys not spread: {by_a} and {by_b}");
    for s in [cdc, a, b] {
        ensure!(s.interrupt().await?.success());
    }
    source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await?;
    Ok(())
}

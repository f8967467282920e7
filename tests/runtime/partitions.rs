//! Network partitions: a sluice process runs a Postgres → Pulsar →
//! Postgres pipeline under EFFECTIVELY_ONCE in a network namespace of its
//! own, and is cut off from the broker, from Postgres, or from both, while
//! rows stream, then healed. The target must equal the source row by row,
//! every row applied once. One short partition of each kind runs always;
//! the long ones, past the broker's keep-alive and Postgres's
//! `wal_sender_timeout`, with `SLUICE_SLOW_PARTITIONS=1`. And an
//! EFFECTIVELY_ONCE source's active process, cut off from everything, is
//! replaced by its standby, and comes back as one.

use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::cdc::{each_row_once, inserted};
use sluice_tests::netns::{self, Cut, Netns};
use sluice_tests::{PULSAR_URL, Sluice, free_port, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(300);

/// The pipeline, as the namespace reaches the services.
fn pipeline(name: &str, port: u16, listen: &str) -> String {
    format!(
        "pulsar:\n  serviceUrl: {url}\nhttp:\n  listen: {listen}:{port}\n\
         sources:\n  - name: {name}\n    className: postgres-cdc\n    processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     database.hostname: {host}\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}_src\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         sinks:\n  - name: {name}_copy\n    className: jdbc\n\
         \x20   inputs: [{name}.public.items]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     jdbcUrl: postgres://{host}:5432/{name}_dst\n      userName: postgres\n      password: {pw}\n\
         \x20     tableName: items\n      inputFormat: DEBEZIUM\n      batchSize: 100\n      timeoutMs: 50\n",
        url = netns::PULSAR_URL,
        host = netns::HOST,
        pw = pg::PASSWORD
    )
}

async fn rows(db: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, String)>> {
    Ok(db
        .query("SELECT id, v FROM items ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Insert into the source in transactions of 50 rows, `batches` of them,
/// one every 20 ms. Inserts only: each row is applied once, where a sink
/// may fold an insert and an update of one row in a batch into one write.
async fn write(db: &tokio_postgres::Client, first: i32, batches: i32) -> anyhow::Result<()> {
    for b in 0..batches {
        let from = first + b * 50;
        db.execute(
            "INSERT INTO items SELECT g, 'v' || g FROM generate_series($1::int, $2::int) g",
            &[&from, &(from + 49)],
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Cut the pipeline off from `what` for `held` while rows stream, heal it,
/// and check the target.
async fn partitioned(what: Cut, held: Duration) -> anyhow::Result<()> {
    // GIVEN a pipeline in its own namespace, streaming a table whose target
    // counts every row applied
    let name = unique(&format!("part-{what:?}").to_lowercase()).replace('-', "_");
    let source = pg::create_database(&format!("{name}_src")).await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    for db in [&source, &target] {
        db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
            .await?;
    }
    target
        .batch_execute(
            "CREATE TABLE applied (id int NOT NULL);
             CREATE FUNCTION count_applied() RETURNS trigger AS $$
               BEGIN INSERT INTO applied VALUES (NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER count_applied AFTER INSERT OR UPDATE ON items
               FOR EACH ROW EXECUTE FUNCTION count_applied();",
        )
        .await?;
    let ns = Netns::new()?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = ns.start(&dir, &pipeline(&name, port, &ns.address()), port)?;
    write(&source, 1, 10).await?;
    wait_for("the first rows in the target", LONG, || async {
        Ok((rows(&target).await?.len() == 500).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;

    // WHEN it is cut off while rows stream, for `held`, and healed
    let streaming = write(&source, 501, 40);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ns.cut(what)?;
        let cut_off = reachable(&ns).await?;
        tokio::time::sleep(held).await;
        let still = reachable(&ns).await?;
        ns.heal()?;
        anyhow::Ok(([cut_off, still], reachable(&ns).await?))
    };
    let (wrote, cut) = tokio::join!(streaming, cut);
    wrote?;
    // The cut held, from its start to its end, and healed.
    let (cut_off, healed) = cut?;
    let expected = match what {
        Cut::Broker => (false, true),
        Cut::Postgres => (true, false),
        Cut::All => (false, false),
    };
    ensure!(
        cut_off == [expected; 2],
        "while cut off from {what:?}, broker and Postgres reachable (at its start, at its end): {cut_off:?}"
    );
    ensure!(
        healed == (true, true),
        "after healing, broker and Postgres reachable: {healed:?}"
    );
    write(&source, 2501, 10).await?;

    // THEN the target equals the source row by row, and each of the 3,000
    // rows was applied once
    let expected = rows(&source).await?;
    wait_for("the target to equal the source", LONG, || async {
        Ok((rows(&target).await? == expected).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    let counts = target
        .query_one("SELECT count(*), count(DISTINCT id) FROM applied", &[])
        .await?;
    let (applied, distinct): (i64, i64) = (counts.get(0), counts.get(1));
    ensure!(
        (applied, distinct) == (3_000, 3_000),
        "{applied} applications of {distinct} rows (3,000 written) after a partition from {what:?}:\n{}",
        sluice.log()
    );
    let log = sluice.log();
    ensure!(sluice.interrupt().await?.success(), "{log}");
    source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await?;
    Ok(())
}

/// Whether the broker's namespace listener and Postgres are reachable
/// from inside `ns`.
async fn reachable(ns: &Netns) -> anyhow::Result<(bool, bool)> {
    Ok((ns.reaches(6652).await?, ns.reaches(5432).await?))
}

/// Whether the long partitions run.
fn slow() -> bool {
    std::env::var("SLUICE_SLOW_PARTITIONS").is_ok_and(|v| v == "1")
}

#[tokio::test]
async fn a_pipeline_cut_off_from_everything_for_ten_seconds_loses_and_repeats_nothing()
-> anyhow::Result<()> {
    partitioned(Cut::All, Duration::from_secs(10)).await
}

#[tokio::test]
async fn long_partitions_from_the_broker_postgres_and_both_lose_and_repeat_nothing()
-> anyhow::Result<()> {
    if !slow() {
        println!(
            "skipped: set SLUICE_SLOW_PARTITIONS=1 to run the long partitions (about 6 minutes)"
        );
        return Ok(());
    }
    for what in [Cut::Broker, Cut::Postgres, Cut::All] {
        partitioned(what, Duration::from_secs(90)).await?;
    }
    Ok(())
}

/// An EFFECTIVELY_ONCE CDC source named `name`, reaching the services at
/// `host` and the broker at `url`, its API on `listen`.
fn source(name: &str, url: &str, host: &str, listen: &str, port: u16) -> String {
    format!(
        "pulsar:\n  serviceUrl: {url}\nhttp:\n  listen: {listen}:{port}\n\
         sources:\n  - name: {name}\n    className: postgres-cdc\n    processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     database.hostname: {host}\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n",
        pw = pg::PASSWORD
    )
}

#[tokio::test]
async fn an_active_source_cut_off_is_replaced_by_its_standby_and_comes_back_a_standby()
-> anyhow::Result<()> {
    // GIVEN an EFFECTIVELY_ONCE source streaming from a process in its own
    // namespace (a), its standby on this machine (b), and 500 rows on the
    // topic
    let name = unique("part-active").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
        .await?;
    let topic = format!("persistent://public/default/{name}.public.items");
    let ns = Netns::new()?;
    let (dir_a, dir_b) = (
        temp_dir(&format!("{name}-a"))?,
        temp_dir(&format!("{name}-b"))?,
    );
    let (port_a, port_b) = (free_port()?, free_port()?);
    let a = ns.start(
        &dir_a,
        &source(&name, netns::PULSAR_URL, netns::HOST, &ns.address(), port_a),
        port_a,
    )?;
    a.until_state(&name, "running", LONG).await?;
    let b = Sluice::start(
        &dir_b,
        &source(&name, PULSAR_URL, "127.0.0.1", "127.0.0.1", port_b),
        port_b,
    )?;
    b.until_state(&name, "standby", LONG).await?;
    write(&db, 1, 10).await?;
    wait_for("500 rows on the topic", LONG, || async {
        Ok((inserted(&topic).await?.len() == 500).then_some(()))
    })
    .await
    .with_context(|| a.log())?;

    // WHEN a is cut off from everything while rows stream, with its
    // connections open on both ends
    let streaming = write(&db, 501, 40);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ns.cut(Cut::All)
    };
    let (wrote, cut) = tokio::join!(streaming, cut);
    wrote?;
    cut?;

    // THEN b takes over, ends a's walsender (whose peer cannot answer, so
    // that only its own 60 s timeout would end it otherwise), and streams
    // every row
    b.until_state(&name, "running", LONG).await?;
    wait_for("2,500 rows on the topic", LONG, || async {
        Ok((inserted(&topic).await?.len() == 2_500).then_some(()))
    })
    .await
    .with_context(|| b.log())?;
    let from_a: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE client_addr = $1::text::inet",
            &[&ns.address()],
        )
        .await?
        .get(0);
    ensure!(from_a == 0, "a's walsender is still there:\n{}", b.log());
    for said in ["fenced it out, taking over", "ending the walsender"] {
        ensure!(
            b.log().contains(said),
            "b did not say {said:?}:\n{}",
            b.log()
        );
    }

    // WHEN a is healed, and 500 more rows come
    ns.heal()?;
    a.until_state(&name, "standby", LONG).await?;
    write(&db, 2501, 10).await?;

    // THEN a stands by, b streams them, and every row is on the topic
    // once; both stop cleanly
    each_row_once(&topic, 3_000, &b).await?;
    let a_log = a.log();
    ensure!(a.interrupt().await?.success(), "{a_log}");
    let b_log = b.log();
    ensure!(b.interrupt().await?.success(), "{b_log}");
    db.execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await?;
    Ok(())
}

//! An EFFECTIVELY_ONCE CDC source whose active process hangs (SIGSTOP, as
//! a stopped VM): it keeps its broker connections and its walsender holds
//! the slot. The standby, hearing no beat, fences it out of the broker,
//! ends its walsender and streams on; the hung one, resumed, finds itself
//! fenced and waits as a standby (docs/decisions/0026).

use anyhow::{Context, ensure};
use sluice_tests::cdc::{LONG, each_row_once, inserted};
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
    a.until_state(&name, "running", LONG).await?;
    let b = Sluice::start(&dir_b, &source(&name, port_b), port_b)?;
    b.until_state(&name, "standby", LONG).await?;
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
    b.until_state(&name, "running", LONG).await?;
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
    a.until_state(&name, "standby", LONG).await?;
    insert(&db, 301, 400).await?;

    // THEN a waits as a standby, b streams them, and no row is on the
    // topic twice; a stops cleanly when asked
    each_row_once(&topic, 400, &b).await?;
    let a_log = a.log();
    ensure!(a.interrupt().await?.success(), "{a_log}");
    let b_log = b.log();
    ensure!(b.interrupt().await?.success(), "{b_log}");
    db.execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await?;
    Ok(())
}

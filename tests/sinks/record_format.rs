//! What a record may ask of a database is the sink's configuration, never
//! the record's shape (decision 0015): a client of the HTTP source that
//! posts a body shaped like a Debezium delete, into a plain-row sink, on
//! Postgres, MariaDB and SQLite, deletes nothing.

use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::sink::{pg_url, sqlite};
use sluice_tests::{
    DEADLINE, PULSAR_URL, Sluice, free_port, mariadb, message_parts, pg, reader, temp_dir, topic,
    unique, wait_for,
};

const LONG: Duration = Duration::from_secs(120);

/// POST `body` to sluice's http source; the status answered.
fn post(port: u16, body: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    agent
        .post(format!("http://127.0.0.1:{port}/orders"))
        .header("Content-Type", "application/json")
        .send(body)
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test]
async fn a_posted_delete_shaped_row_deletes_nothing_on_any_engine() -> anyhow::Result<()> {
    // GIVEN order 1 in an orders table on each engine, and sluice's http
    // source (no credentials, as in the retail demo) feeding a plain-row
    // sink per engine, one per insert mode, each with a dead-letter topic
    let name = unique("row-format").replace('-', "_");
    let schema = "CREATE TABLE orders (id INT PRIMARY KEY, v VARCHAR(20));
                  INSERT INTO orders VALUES (1, 'kept');";
    let pg_db = pg::create_database(&name).await?;
    pg_db.batch_execute(schema).await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql(schema).execute(&maria).await?;
    let dir = temp_dir(&name)?;
    let lite_path = dir.join("orders.db");
    let lite = sqlite(&lite_path).await?;
    sqlx::raw_sql(schema).execute(&lite).await?;
    let input = topic(&name);
    let (port, api_port) = (free_port()?, free_port()?);
    let mut config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: orders-api\n    className: http\n    topicName: {input}\n\
         \x20   configs:\n      port: {api_port}\n      keyField: id\nsinks:\n"
    );
    let mut dead_letters = Vec::new();
    for (sink, url, mode) in [
        ("pg", pg_url(&name), "INSERT"),
        ("maria", mariadb::url(&name), "UPSERT"),
        ("lite", format!("sqlite:{}", lite_path.display()), "UPDATE"),
    ] {
        let dlq = topic(&format!("{name}-{sink}-dlq"));
        dead_letters.push((sink, reader(&dlq).await?));
        config.push_str(&format!(
            "  - name: {sink}\n    className: jdbc\n    inputs: [{input}]\n\
             \x20   sourceSubscriptionPosition: Earliest\n    deadLetterTopic: {dlq}\n\
             \x20   maxMessageRetries: 0\n    configs:\n      jdbcUrl: '{url}'\n\
             \x20     tableName: orders\n      insertMode: {mode}\n      batchSize: 10\n\
             \x20     timeoutMs: 20\n"
        ));
    }
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for("the http source to listen", DEADLINE, || async {
        Ok((post(api_port, "") == 400).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;

    // WHEN a stranger posts a body shaped like a Debezium delete of order 1,
    // then an order of its own
    let attack = r#"{"op":"d","source":{},"before":{"id":1}}"#;
    assert_eq!(post(api_port, attack), 200);
    assert_eq!(post(api_port, r#"{"id": 2, "v": "second"}"#), 200);

    // THEN each sink dead-letters the body as a row its table cannot take,
    // exactly once; the update-only sink also order 2, which has no row to
    // update
    for (sink, reader) in &mut dead_letters {
        let mut expected = vec![(attack, "")];
        if *sink == "lite" {
            expected.push((
                r#"{"id": 2, "v": "second"}"#,
                "no row of orders has this key to update",
            ));
        }
        for (body, reason) in expected {
            let msg = reader
                .receive_with_timeout(LONG)
                .await?
                .with_context(|| format!("{sink}: a dead letter is missing"))
                .with_context(|| sluice.log())?;
            let (payload, props) = message_parts(&msg);
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&payload)?,
                serde_json::from_str::<serde_json::Value>(body)?,
                "{sink}"
            );
            let error = props
                .iter()
                .find(|(k, _)| k == "sluice.error")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            ensure!(!error.is_empty(), "{sink}: the dead letter has no reason");
            ensure!(error.contains(reason), "{sink}: {error}");
        }
        ensure!(
            reader
                .receive_with_timeout(Duration::from_millis(500))
                .await?
                .is_none(),
            "{sink}: more dead letters than expected"
        );
    }
    // AND order 1 is intact everywhere, and order 2 inserted or upserted
    let pg_rows: Vec<(i32, String)> = wait_for("order 2 in postgres", LONG, || async {
        let rows: Vec<(i32, String)> = pg_db
            .query("SELECT id, v FROM orders ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok((rows.len() == 2).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    let two = vec![(1, "kept".to_owned()), (2, "second".to_owned())];
    assert_eq!(pg_rows, two);
    let maria_rows: Vec<(i32, String)> = wait_for("order 2 in mariadb", LONG, || async {
        let rows: Vec<(i32, Vec<u8>)> = sqlx::query_as("SELECT id, v FROM orders ORDER BY id")
            .fetch_all(&maria)
            .await?;
        let rows: Vec<(i32, String)> = rows
            .into_iter()
            .map(|(id, v)| (id, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        Ok((rows.len() == 2).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(maria_rows, two);
    let lite_rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, v FROM orders ORDER BY id")
        .fetch_all(&lite)
        .await?;
    assert_eq!(lite_rows, [(1, "kept".to_owned())]);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

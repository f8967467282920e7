//! The database sink's trust boundary, on Postgres, MariaDB and SQLite: the
//! configuration chooses the table, never the message. A hostile producer
//! on an input topic cannot write, delete or truncate elsewhere, and no
//! mapping can reach sluice's watermark table or a system catalog.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::json;
use sluice_tests::sink::{pg_url, sink_section, sinks_config, sqlite};
use sluice_tests::{PULSAR_URL, Sluice, free_port, mariadb, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// A Debezium envelope of `op` on `table`.
fn envelope(op: &str, table: &str, before: serde_json::Value, after: serde_json::Value) -> String {
    json!({
        "op": op, "before": before, "after": after, "ts_ms": 0,
        "source": {"connector": "postgresql", "schema": "public", "table": table}
    })
    .to_string()
}

#[tokio::test]
async fn an_envelope_naming_another_table_is_dead_lettered_on_every_engine() -> anyhow::Result<()> {
    // GIVEN, on each engine, `orders` and a `victim` table with one row, and
    // a sink over the orders topic that may truncate
    let name = unique("jdbc-boundary").replace('-', "_");
    let schema = "CREATE TABLE orders (id INT PRIMARY KEY, v VARCHAR(20));
                  CREATE TABLE victim (id INT PRIMARY KEY); INSERT INTO victim VALUES (1);";
    let pg_db = pg::create_database(&name).await?;
    pg_db.batch_execute(schema).await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql(schema).execute(&maria).await?;
    let dir = temp_dir(&name)?;
    let lite_path = dir.join("boundary.db");
    let lite = sqlite(&lite_path).await?;
    sqlx::raw_sql(schema).execute(&lite).await?;

    // WHEN a producer on the orders topic sends, between two orders,
    // envelopes that name `victim`: a delete, a truncate and an upsert
    let topic = sluice_tests::topic(&format!("{name}.public.orders"));
    let k = |id: i64| json!({ "id": id }).to_string();
    sluice_tests::publish(
        &topic,
        &[
            (
                k(1),
                Some(envelope(
                    "c",
                    "orders",
                    json!(null),
                    json!({"id": 1, "v": "first"}),
                )),
            ),
            (
                k(1),
                Some(envelope("d", "victim", json!({"id": 1}), json!(null))),
            ),
            (
                k(0),
                Some(envelope("t", "victim", json!(null), json!(null))),
            ),
            (
                k(7),
                Some(envelope("c", "victim", json!(null), json!({"id": 7}))),
            ),
            (
                k(2),
                Some(envelope(
                    "c",
                    "orders",
                    json!(null),
                    json!({"id": 2, "v": "last"}),
                )),
            ),
        ],
    )
    .await?;
    let mut sections = Vec::new();
    let mut dead_letters = Vec::new();
    let lite_url = format!("sqlite:{}", lite_path.display());
    for (sink, url) in [
        ("pg", pg_url(&name)),
        ("maria", mariadb::url(&name)),
        ("lite", lite_url),
    ] {
        let dlq = sluice_tests::topic(&format!("{name}-{sink}-dlq"));
        dead_letters.push(sluice_tests::reader(&dlq).await?);
        sections.push(sink_section(
            sink,
            &topic,
            &url,
            &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n"),
            "      allowTruncate: true\n      inputFormat: DEBEZIUM\n",
        ));
    }
    let port = free_port()?;
    let sluice = Sluice::start(&dir, &sinks_config(port, &sections), port)?;

    // THEN each engine holds both orders and an intact victim
    let pg_orders = wait_for("both orders in postgres", LONG, || async {
        let n: i64 = pg_db
            .query_one("SELECT count(*) FROM orders", &[])
            .await?
            .get(0);
        Ok((n == 2).then_some(n))
    })
    .await
    .with_context(|| sluice.log())?;
    let maria_orders = wait_for("both orders in mariadb", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&maria)
            .await?;
        Ok((n == 2).then_some(n))
    })
    .await
    .with_context(|| sluice.log())?;
    let lite_orders = wait_for("both orders in sqlite", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&lite)
            .await?;
        Ok((n == 2).then_some(n))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!((pg_orders, maria_orders, lite_orders), (2, 2, 2));
    let victims: Vec<i32> = pg_db
        .query("SELECT id FROM victim ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let maria_victims: Vec<i32> = sqlx::query_scalar("SELECT id FROM victim ORDER BY id")
        .fetch_all(&maria)
        .await?;
    let lite_victims: Vec<i32> = sqlx::query_scalar("SELECT id FROM victim ORDER BY id")
        .fetch_all(&lite)
        .await?;
    assert_eq!(
        (victims, maria_victims, lite_victims),
        (vec![1], vec![1], vec![1])
    );

    // AND each sink dead-lettered exactly the three envelopes, with the reason
    for reader in &mut dead_letters {
        for expected_key in [k(1), k(0), k(7)] {
            let msg = reader
                .receive_with_timeout(LONG)
                .await?
                .context("a dead letter is missing")
                .with_context(|| sluice.log())?;
            let (_, props) = sluice_tests::message_parts(&msg);
            let error = props
                .iter()
                .find(|(k, _)| k == "sluice.error")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            ensure!(
                error.contains("names table victim, but its topic maps to table orders"),
                "dead letter for {expected_key}: {error}"
            );
        }
        ensure!(
            reader
                .receive_with_timeout(Duration::from_millis(500))
                .await?
                .is_none(),
            "more than three dead letters"
        );
    }
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn no_mapping_reaches_the_watermark_or_a_system_table() -> anyhow::Result<()> {
    // GIVEN mappings into sluice's watermark table, SQLite's catalog, a
    // schema, and MariaDB's system database
    let dir = temp_dir("jdbc-forbidden")?;
    let topic = sluice_tests::topic("forbidden");
    let config = sinks_config(
        free_port()?,
        &[
            sink_section(
                "a",
                &topic,
                &pg_url("x"),
                "",
                "      tableName: sluice_offsets\n",
            ),
            sink_section(
                "b",
                &topic,
                "sqlite:x.db",
                "",
                "      topicToTable: 'forbidden:sqlite_master'\n",
            ),
            sink_section(
                "c",
                &topic,
                &pg_url("x"),
                "",
                "      tableName: pg_catalog.pg_authid\n",
            ),
            sink_section("d", &topic, "mysql://u:p@127.0.0.1:3306/mysql", "", ""),
            sink_section(
                "e",
                &topic,
                &pg_url("x"),
                "",
                "      tableName: 'Sluice_Sequences '\n",
            ),
        ],
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, config)?;

    // WHEN it is validated
    let out = std::process::Command::new(sluice_tests::sluice_binary()?)
        .args(["validate", "--config"])
        .arg(&path)
        .output()?;

    // THEN each is refused, by name
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for expected in [
        "sluice_offsets is sluice's own watermark table",
        "sqlite_master is a SQLite internal table name",
        "pg_catalog.pg_authid names a schema",
        "names the system database mysql",
        "Sluice_Sequences  is sluice's own watermark table",
    ] {
        ensure!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn a_topic_named_after_a_watermark_table_is_dead_lettered() -> anyhow::Result<()> {
    // GIVEN an EFFECTIVELY_ONCE sink reading every topic under a prefix,
    // each into the table its name ends with, and a stranger who created
    // topics under that prefix named after sluice's watermark tables, one
    // with a row that would mark the real topic as applied up to the end
    // of time
    let name = unique("jdbc-pattern").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await?;
    let items = sluice_tests::topic(&format!("{name}.public.items"));
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let reader = sluice_tests::reader(&dlq).await?;
    let sink = "public/default/pattern";
    let forged = json!({
        "sink": sink, "topic": items, "partition": -1,
        "message_id": "9223372036854775807:0:-1:0"
    })
    .to_string();
    for table in ["sluice_offsets", "SLUICE_SEQUENCES"] {
        sluice_tests::publish(
            &sluice_tests::topic(&format!("{name}.x.{table}")),
            &[("{}", Some(forged.as_str()))],
        )
        .await?;
    }
    sluice_tests::publish(&items, &[("{\"id\":1}", Some("{\"id\":1,\"v\":\"a\"}"))]).await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - name: pattern\n    className: jdbc\n    topicsPattern: \"persistent://public/default/{name}\\\\..*\"\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    sourceSubscriptionPosition: Earliest\n\
         \x20   deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n    configs:\n\
         \x20     jdbcUrl: '{url}'\n      insertMode: UPSERT\n      batchSize: 10\n      timeoutMs: 20\n",
        url = pg_url(&name)
    );

    // WHEN the sink applies the topics, is restarted, and the real topic
    // gets another row
    let sluice = Sluice::start(&dir, &config, port)?;
    let mut dead = Vec::new();
    for _ in 0..2 {
        let msg = reader
            .receive_with_timeout(LONG)
            .await?
            .context("fewer dead letters than expected")
            .with_context(|| sluice.log())?;
        let (_, props) = sluice_tests::message_parts(&msg);
        let error = props
            .into_iter()
            .find(|(k, _)| k == "sluice.error")
            .map(|(_, v)| v)
            .unwrap_or_default();
        dead.push(error);
    }
    wait_for("row 1", LONG, || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM items", &[])
            .await?
            .get(0);
        Ok((n == 1).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(sluice.interrupt().await?.success());
    let sluice = Sluice::start(&dir, &config, port)?;
    sluice_tests::publish(&items, &[("{\"id\":2}", Some("{\"id\":2,\"v\":\"b\"}"))]).await?;

    // THEN both forged records are dead-lettered for the table they named,
    // the watermark holds only what the sink applied, and the real rows land
    assert_eq!(dead.len(), 2);
    for table in ["SLUICE_SEQUENCES", "sluice_offsets"] {
        let why = format!("{table} is sluice's own watermark table");
        ensure!(dead.iter().any(|e| e.contains(&why)), "{dead:?}");
    }
    let ids = wait_for("row 2", LONG, || async {
        let ids: Vec<i32> = db
            .query("SELECT id FROM items ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((ids.len() == 2).then_some(ids))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(ids, [1, 2]);
    let forged_marks: i64 = db
        .query_one(
            "SELECT count(*) FROM sluice_offsets WHERE message_id LIKE '9223372036854775807:%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(forged_marks, 0);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_catalog_name_does_not_resolve_into_pg_catalog() -> anyhow::Result<()> {
    // GIVEN a Postgres target with no table named pg_authid, and a mapping to it
    let name = unique("jdbc-catalog").replace('-', "_");
    pg::create_database(&name).await?;
    let dir = temp_dir(&name)?;
    let topic = sluice_tests::topic(&name);
    let path = dir.join("check.yaml");
    std::fs::write(
        &path,
        sinks_config(
            free_port()?,
            &[sink_section(
                "pg",
                &topic,
                &pg_url(&name),
                "",
                "      tableName: pg_authid\n",
            )],
        ),
    )?;

    // WHEN sluice check runs
    let (code, text) = sluice_tests::sluice_check(&path)?;

    // THEN the name is looked up in the default schema only, and the
    // superuser account is called out
    assert_eq!(code, Some(1), "{text}");
    ensure!(text.contains("the target has no table pg_authid"), "{text}");
    ensure!(text.contains("the sink's user is a superuser"), "{text}");
    Ok(())
}

#[tokio::test]
async fn check_warns_about_an_account_that_can_write_elsewhere() -> anyhow::Result<()> {
    // GIVEN a Postgres user that may write its target and another table,
    // and the stack's MariaDB user, which holds every privilege on *.*
    let name = unique("jdbc-wide").replace('-', "_");
    let user = format!("wide_{name}");
    let db = pg::create_database(&name).await?;
    db.batch_execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY); CREATE TABLE payroll (id int PRIMARY KEY);
         CREATE ROLE {user} LOGIN PASSWORD 'pw';
         GRANT SELECT, INSERT, UPDATE, DELETE ON items, payroll TO {user};"
    ))
    .await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql("CREATE TABLE items (id INT PRIMARY KEY)")
        .execute(&maria)
        .await?;
    let dir = temp_dir(&name)?;
    let topic = sluice_tests::topic(&name);
    let path = dir.join("check.yaml");
    std::fs::write(
        &path,
        sinks_config(
            free_port()?,
            &[
                sink_section(
                    "pg",
                    &topic,
                    &format!("postgres://{user}:pw@127.0.0.1:5432/{name}"),
                    "",
                    "      tableName: items\n",
                ),
                sink_section(
                    "maria",
                    &topic,
                    &mariadb::url(&name),
                    "",
                    "      tableName: items\n",
                ),
            ],
        ),
    )?;

    // WHEN sluice check runs
    let (_, text) = sluice_tests::sluice_check(&path)?;

    // THEN it names the table the Postgres user could write, and the
    // MariaDB user's global grants
    ensure!(
        text.contains("the sink's user may write tables it does not target: public.payroll;"),
        "{text}"
    );
    ensure!(text.contains("on every database (*.*)"), "{text}");
    db.batch_execute(&format!(
        "REVOKE ALL ON items, payroll FROM {user}; DROP ROLE {user};"
    ))
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_refused_value_stays_out_of_the_log_and_the_status() -> anyhow::Result<()> {
    // GIVEN a Postgres target whose `qty` is an integer, and a record that
    // carries a secret where the integer should be
    let name = unique("jdbc-values").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, qty int)")
        .await?;
    let secret = "s3cret-card-4111";
    let topic = sluice_tests::topic(&name);
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let reader = sluice_tests::reader(&dlq).await?;
    sluice_tests::publish(
        &topic,
        &[
            (
                json!({"id": 1}).to_string(),
                Some(json!({"id": 1, "qty": secret}).to_string()),
            ),
            (
                json!({"id": 2}).to_string(),
                Some(json!({"id": 2, "qty": 5}).to_string()),
            ),
        ],
    )
    .await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "pg",
                &topic,
                &pg_url(&name),
                &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n"),
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // WHEN the target refuses it
    let msg = reader
        .receive_with_timeout(LONG)
        .await?
        .context("no dead letter")
        .with_context(|| sluice.log())?;
    wait_for("row 2", LONG, || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM items WHERE id = 2", &[])
            .await?
            .get(0);
        Ok((n == 1).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN the log and the status name the SQLSTATE, never the value; the
    // dead letter keeps the database's whole message
    let (_, props) = sluice_tests::message_parts(&msg);
    let error = props
        .iter()
        .find(|(k, _)| k == "sluice.error")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    ensure!(
        error.contains("SQLSTATE 22P02") && error.contains(secret),
        "{error}"
    );
    let status = sluice.get("/connectors/pg").unwrap_or_default();
    let log = sluice.log();
    ensure!(log.contains("SQLSTATE 22P02"), "{log}");
    ensure!(!log.contains(secret), "the value is in the log:\n{log}");
    ensure!(
        !status.contains(secret),
        "the value is in the status: {status}"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_nul_byte_is_dead_lettered_and_the_records_behind_it_land() -> anyhow::Result<()> {
    // GIVEN Postgres and MariaDB targets, and a text value holding a NUL
    // byte (which Postgres cannot store) between two good records
    let name = unique("jdbc-nul").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await?;
    let topic = sluice_tests::topic(&name);
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let reader = sluice_tests::reader(&dlq).await?;
    sluice_tests::publish(
        &topic,
        &[
            (
                json!({"id": 1}).to_string(),
                Some(json!({"id": 1, "v": "a"}).to_string()),
            ),
            (
                json!({"id": 2}).to_string(),
                Some(json!({"id": 2, "v": "nul\u{0}here"}).to_string()),
            ),
            (
                json!({"id": 3}).to_string(),
                Some(json!({"id": 3, "v": "c"}).to_string()),
            ),
        ],
    )
    .await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "pg",
                &topic,
                &pg_url(&name),
                &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 1\n"),
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // WHEN the sink applies them
    let msg = reader
        .receive_with_timeout(LONG)
        .await?
        .context("no dead letter")
        .with_context(|| sluice.log())?;

    // THEN the NUL record alone is dead-lettered, and rows 1 and 3 land
    let (payload, _) = sluice_tests::message_parts(&msg);
    ensure!(
        String::from_utf8_lossy(&payload).contains("\"id\":2"),
        "dead letter: {}",
        String::from_utf8_lossy(&payload)
    );
    let ids = wait_for("rows 1 and 3", LONG, || async {
        let ids: Vec<i32> = db
            .query("SELECT id FROM items ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((ids.len() == 2).then_some(ids))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(ids, [1, 3]);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_producers_sequence_cannot_make_the_watermark_skip_anothers_records() -> anyhow::Result<()>
{
    // GIVEN an EFFECTIVELY_ONCE sink over a topic where a source publishes
    // rows with sequences, and an impostor, named as sluice named its
    // sources (`sluice-...`), slips in a row claiming the largest sequence
    let name = unique("jdbc-poison").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await?;
    let topic = sluice_tests::topic(&name);
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let source = client
        .producer(&topic)
        .name(format!("sluice-{name}-source"))
        .create()
        .await?;
    let impostor = client
        .producer(&topic)
        .name(format!("sluice-{name}-x"))
        .create()
        .await?;
    let send = |producer: &magnetar::runtime_tokio::Producer, id: i32, v: &str, seq: u128| {
        let msg = magnetar::OutgoingMessage::with_payload(
            json!({"id": id, "v": v}).to_string().into_bytes(),
        )
        .key(json!({"id": id}).to_string())
        .property("sluice.seq", seq.to_string());
        producer.send(msg.into())
    };
    send(&source, 1, "a", 10).await?;
    send(&source, 2, "b", 20).await?;
    send(&source, 3, "c", 30).await?;
    send(&impostor, 4, "impostor", u128::MAX).await?;
    send(&source, 5, "e", 40).await?;
    // The source publishes row 3 again, as after a restart.
    send(&source, 3, "republished", 30).await?;
    send(&source, 6, "f", 50).await?;
    // The impostor's own stream is held to its own mark.
    send(&impostor, 7, "impostor again", 1).await?;
    send(&source, 8, "h", 60).await?;
    source.close().await?;
    impostor.close().await?;

    // WHEN the sink applies the topic
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "pg",
                &topic,
                &pg_url(&name),
                "    processingGuarantees: EFFECTIVELY_ONCE\n",
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // THEN every row of the source lands, and the impostor's first; the
    // republished row and the impostor's lower sequence are skipped as
    // republished, and counted
    let rows = wait_for("row 8", LONG, || async {
        let rows: Vec<(i32, String)> = db
            .query("SELECT id, v FROM items ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(rows.iter().any(|r| r.0 == 8).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    let expected: Vec<(i32, String)> = [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "impostor"),
        (5, "e"),
        (6, "f"),
        (8, "h"),
    ]
    .iter()
    .map(|(i, v)| (*i, (*v).to_owned()))
    .collect();
    assert_eq!(rows, expected);
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/pg").unwrap_or_default())?;
    assert_eq!(status["skipped"]["republished"], 2, "{status}");
    assert_eq!(status["skipped"]["redelivered"], 0, "{status}");
    let metrics = sluice.get("/metrics").unwrap_or_default();
    ensure!(
        metrics.contains("reason=\"republished\"} 2"),
        "metrics:\n{metrics}"
    );
    // AND the marks are kept per producer in the target
    let marks: Vec<(String, String)> = db
        .query(
            "SELECT producer, sequence FROM sluice_sequences ORDER BY producer",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        marks,
        [
            (format!("sluice-{name}-source"), "60".to_owned()),
            (format!("sluice-{name}-x"), u128::MAX.to_string()),
        ]
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn on_mariadb_a_look_alike_producer_name_keeps_a_mark_of_its_own() -> anyhow::Result<()> {
    // GIVEN a MariaDB target whose tables compare text without case (and,
    // like every PAD SPACE collation, without trailing spaces), holding the
    // watermark table as an earlier sluice made it (names as text), and a
    // topic where a source publishes rows with sequences
    let name = unique("jdbc-lookalike").replace('-', "_");
    let db = mariadb::create_database(&name).await?;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci; \
         CREATE TABLE items (id int PRIMARY KEY, v text); \
         CREATE TABLE sluice_offsets (sink VARCHAR(255) NOT NULL, topic VARCHAR(255) NOT NULL, \
           `partition` INTEGER NOT NULL, sequence VARCHAR(255), message_id VARCHAR(255), \
           PRIMARY KEY (sink, topic, `partition`))"
    ))
    .execute(&db)
    .await?;
    let topic = sluice_tests::topic(&name);
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let producer = |producer: String| client.producer(&topic).name(producer).create();
    let send = |producer: &magnetar::runtime_tokio::Producer, id: i32, seq: u128| {
        let msg = magnetar::OutgoingMessage::with_payload(
            json!({"id": id, "v": format!("v{id}")})
                .to_string()
                .into_bytes(),
        )
        .key(json!({"id": id}).to_string())
        .property("sluice.seq", seq.to_string());
        producer.send(msg.into())
    };
    let source = producer(format!("src-{name}")).await?;
    send(&source, 1, 10).await?;
    send(&source, 2, 20).await?;
    source.close().await?;
    // AND an impostor whose name differs only in case and a trailing space
    // claims the largest sequence
    let impostor = producer(format!("SRC-{name} ")).await?;
    send(&impostor, 3, u128::MAX).await?;
    impostor.close().await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = sinks_config(
        port,
        &[sink_section(
            "maria",
            &topic,
            &mariadb::url(&name),
            "    processingGuarantees: EFFECTIVELY_ONCE\n",
            "      tableName: items\n      insertMode: UPSERT\n",
        )],
    );
    let rows = || async {
        let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM items ORDER BY id")
            .fetch_all(&db)
            .await?;
        anyhow::Ok(ids)
    };
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for("row 3", LONG, || async {
        Ok(rows().await?.contains(&3).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(sluice.interrupt().await?.success());

    // WHEN the sink starts again (reading its marks from the target) and
    // the source publishes its next row
    let sluice = Sluice::start(&dir, &config, port)?;
    let source = producer(format!("src-{name}")).await?;
    send(&source, 4, 30).await?;
    source.close().await?;

    // THEN the row lands: the impostor's mark is its own row
    let ids = wait_for("row 4", LONG, || async {
        let ids = rows().await?;
        Ok(ids.contains(&4).then_some(ids))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(ids, [1, 2, 3, 4]);
    let marks: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT producer, sequence FROM sluice_sequences ORDER BY producer")
            .fetch_all(&db)
            .await?;
    assert_eq!(
        marks,
        [
            (format!("SRC-{name} ").into_bytes(), u128::MAX.to_string()),
            (format!("src-{name}").into_bytes(), "30".to_owned()),
        ]
    );
    // AND the table made as text holds its names as bytes now
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sluice_offsets' \
         AND COLUMN_NAME IN ('sink', 'topic') ORDER BY COLUMN_NAME",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(
        types,
        [
            ("sink".to_owned(), "varbinary".to_owned()),
            ("topic".to_owned(), "varbinary".to_owned())
        ]
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_missing_privilege_or_table_stops_the_sink_without_dead_letters() -> anyhow::Result<()> {
    // GIVEN a Postgres user that may only read `items`, a SQLite file
    // without the table, and three records for each
    let name = unique("jdbc-setup").replace('-', "_");
    let user = format!("ro_{name}");
    let db = pg::create_database(&name).await?;
    db.batch_execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE ROLE {user} LOGIN PASSWORD 'pw'; GRANT SELECT ON items TO {user};"
    ))
    .await?;
    let dir = temp_dir(&name)?;
    let lite_path = dir.join("setup.db");
    let lite = sqlite(&lite_path).await?;
    let topic = sluice_tests::topic(&name);
    let records: Vec<(String, Option<String>)> = (1..=3)
        .map(|id| {
            (
                json!({ "id": id }).to_string(),
                Some(json!({ "id": id, "v": "x" }).to_string()),
            )
        })
        .collect();
    sluice_tests::publish(&topic, &records).await?;
    let mut dead_letters = Vec::new();
    let mut sections = Vec::new();
    for (sink, url) in [
        ("pg", format!("postgres://{user}:pw@127.0.0.1:5432/{name}")),
        ("lite", format!("sqlite:{}", lite_path.display())),
    ] {
        let dlq = sluice_tests::topic(&format!("{name}-{sink}-dlq"));
        dead_letters.push(sluice_tests::reader(&dlq).await?);
        sections.push(sink_section(
            sink,
            &topic,
            &url,
            &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n"),
            "      tableName: items\n      insertMode: UPSERT\n",
        ));
    }
    let port = free_port()?;

    // WHEN the sinks run
    let sluice = Sluice::start(&dir, &sinks_config(port, &sections), port)?;

    // THEN both stop and say why on /readyz, and dead-letter nothing
    let ready = wait_for("both sinks not ready, with the reason", LONG, || async {
        let (code, body) = sluice.get_status("/readyz").unwrap_or_default();
        Ok((code == 503
            && body.contains("SQLSTATE 42501 (insufficient privilege)")
            && body.contains("the target has no table items: create it"))
        .then_some(body))
    })
    .await
    .with_context(|| sluice.log())?;
    // Between attempts the sink shows restarting, then starting again.
    ensure!(
        ready.contains("pg: restarting") || ready.contains("pg: starting"),
        "{ready}"
    );

    // WHEN the operator fixes both
    db.batch_execute(&format!("GRANT INSERT, UPDATE ON items TO {user}"))
        .await?;
    sqlx::raw_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
        .execute(&lite)
        .await?;

    // THEN every record lands in both, and none was dead-lettered
    wait_for("the rows in postgres", LONG, || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM items", &[])
            .await?
            .get(0);
        Ok((n == 3).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    wait_for("the rows in sqlite", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&lite)
            .await?;
        Ok((n == 3).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    for reader in &dead_letters {
        ensure!(
            reader
                .receive_with_timeout(Duration::from_millis(500))
                .await?
                .is_none(),
            "a record was dead-lettered"
        );
    }
    ensure!(sluice.interrupt().await?.success());
    db.batch_execute(&format!(
        "REVOKE ALL ON items FROM {user}; DROP ROLE {user};"
    ))
    .await?;
    Ok(())
}

#[tokio::test]
async fn at_most_once_a_refused_record_loses_itself_not_its_batch() -> anyhow::Result<()> {
    // GIVEN an ATMOST_ONCE sink, and a record the target refuses (text in
    // an integer column) between two good ones, all on the topic before
    // the sink starts, so that they arrive in one batch
    let name = unique("jdbc-amo").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, qty int)")
        .await?;
    let topic = sluice_tests::topic(&name);
    sluice_tests::publish(
        &topic,
        &[
            (
                json!({"id": 1}).to_string(),
                Some(json!({"id": 1, "qty": 1}).to_string()),
            ),
            (
                json!({"id": 2}).to_string(),
                Some(json!({"id": 2, "qty": "many"}).to_string()),
            ),
            (
                json!({"id": 3}).to_string(),
                Some(json!({"id": 3, "qty": 3}).to_string()),
            ),
        ],
    )
    .await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "pg",
                &topic,
                &pg_url(&name),
                "    processingGuarantees: ATMOST_ONCE\n",
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // WHEN the sink applies the batch
    let status = wait_for("the refused record counted", LONG, || async {
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/pg").unwrap_or_default())
                .unwrap_or_default();
        Ok((status["dropped"].as_u64().unwrap_or(0) > 0).then_some(status))
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN only the refused record is lost
    assert_eq!(status["dropped"], 1, "{status}");
    let ids: Vec<i32> = db
        .query("SELECT id FROM items ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1, 3]);
    ensure!(
        sluice
            .log()
            .contains("the target refused records; at most once, they are dropped"),
        "the three records did not arrive as one batch:\n{}",
        sluice.log()
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

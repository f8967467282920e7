//! The database sink against real Postgres and the real broker: Postgres
//! changes captured by the CDC source and applied to another Postgres
//! database by the `jdbc` sink, run as users run it.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sluice_tests::{PULSAR_URL, Sluice, file_events, free_port, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(120);

const SCHEMA: &str =
    "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2),
    created timestamptz, due date, at_time time, local_ts timestamp, wait interval, tags text[],
    meta jsonb, payload bytea, uid uuid, note text);";

/// Every row of `orders`, as text, in key order. An interval travels as a
/// duration in microseconds (as in Debezium), so `1 day 2 hours` arrives as
/// `26:00:00`: equal as intervals, compared in justified form.
async fn rows(db: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    Ok(db
        .query(
            "SELECT row_to_json(o)::text FROM (SELECT id, status, total, created, due, at_time, local_ts, \
             justify_hours(wait) AS wait, tags, meta, payload, uid, note FROM orders ORDER BY id) o",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

#[tokio::test]
async fn cdc_into_postgres_ends_with_equal_tables() -> anyhow::Result<()> {
    // GIVEN a source and a target database with the same table, and a
    // pipeline from one to the other through Pulsar
    let name = unique("jdbc-pg").replace('-', "_");
    let source = pg::create_database(&format!("{name}_src")).await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    source.batch_execute(SCHEMA).await?;
    target.batch_execute(SCHEMA).await?;
    source
        .batch_execute(
            "ALTER TABLE orders ALTER COLUMN note SET STORAGE EXTERNAL; ALTER TABLE orders REPLICA IDENTITY FULL;
             INSERT INTO orders SELECT g, 'new', g * 1.25, '2024-01-15 10:00:00+02', '2024-02-29', '13:45:30.5',
               '2024-01-15 13:45:30.123456', '1 day 2 hours', ARRAY['a', 'b \"q\"'], '{\"x\": [1, null]}',
               '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', repeat('n', 5000)
             FROM generate_series(1, 300) g;",
        )
        .await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: cdc\n    className: postgres-cdc\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}_src\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         sinks:\n  - name: warehouse\n    className: jdbc\n    topicsPattern: \"persistent://public/default/{name}\\\\..*\"\n\
         \x20   sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n    configs:\n\
         \x20     jdbcUrl: postgres://127.0.0.1:5432/{name}_dst\n      userName: postgres\n      password: {pw}\n\
         \x20     inputFormat: DEBEZIUM\n      batchSize: 100\n      timeoutMs: 50\n",
        pw = pg::PASSWORD
    );
    let sluice = Sluice::start(&dir, &config, port)?;

    // WHEN rows are updated (leaving the TOASTed note unchanged), deleted,
    // re-keyed and inserted while it runs
    wait_for("the snapshot in the target", LONG, || {
        let target = &target;
        async move {
            let n: i64 = target
                .query_one("SELECT count(*) FROM orders", &[])
                .await?
                .get(0);
            Ok((n == 300).then_some(()))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    source
        .batch_execute(
            "UPDATE orders SET status = 'paid', total = total + 1 WHERE id % 3 = 0;
             DELETE FROM orders WHERE id % 10 = 0;
             UPDATE orders SET id = id + 1000 WHERE id BETWEEN 1 AND 5;
             BEGIN; INSERT INTO orders (id, status) VALUES (5000, 'x'); UPDATE orders SET status = 'y' WHERE id = 5000; COMMIT;
             INSERT INTO orders (id, status, note) VALUES (-1, 'sentinel', 'end');",
        )
        .await?;
    wait_for("the sentinel in the target", LONG, || {
        let target = &target;
        async move {
            let n: i64 = target
                .query_one("SELECT count(*) FROM orders WHERE id = -1", &[])
                .await?
                .get(0);
            Ok((n == 1).then_some(()))
        }
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN the target table equals the source table, row by row, every type included
    let (from, to) = (rows(&source).await?, rows(&target).await?);
    assert_eq!(from.len(), to.len(), "row count");
    for (a, b) in from.iter().zip(&to) {
        assert_eq!(a, b);
    }
    ensure!(sluice.interrupt().await?.success());
    let _ = source
        .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", &[&name])
        .await;
    Ok(())
}

/// A sink-only pipeline: the `jdbc` sink on `topic` into `db`, with extra sink configs.
fn sink_config(port: u16, topic: &str, db: &str, extra_sink: &str, extra_configs: &str) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - name: target\n    className: jdbc\n    inputs: [{topic}]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   retainOrdering: true\n{extra_sink}    configs:\n      jdbcUrl: postgres://127.0.0.1:5432/{db}\n\
         \x20     userName: postgres\n      password: {pw}\n      batchSize: 50\n      timeoutMs: 20\n{extra_configs}",
        pw = pg::PASSWORD
    )
}

async fn table(db: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, String)>> {
    Ok(db
        .query("SELECT id, v FROM items ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Wait until `items` holds the row with `id`.
async fn wait_for_row(db: &tokio_postgres::Client, id: i32) -> anyhow::Result<()> {
    wait_for("the last row", LONG, || async move {
        Ok(table(db).await?.iter().any(|(i, _)| *i == id).then_some(()))
    })
    .await
}

#[tokio::test]
async fn plain_json_rows_follow_insert_mode_and_null_value_action() -> anyhow::Result<()> {
    // GIVEN a target table and plain JSON rows: two inserts, an update of the
    // first by upsert, and a null value for the second
    let name = unique("jdbc-plain").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
        .await?;
    let topic = sluice_tests::topic(&name);
    sluice_tests::publish(
        &topic,
        &[
            ("{\"id\":1}", Some("{\"id\":1,\"v\":\"a\"}")),
            ("{\"id\":2}", Some("{\"id\":2,\"v\":\"b\"}")),
            ("{\"id\":1}", Some("{\"id\":1,\"v\":\"c\"}")),
            ("{\"id\":2}", None),
            ("{\"id\":3}", Some("{\"id\":3,\"v\":\"end\"}")),
        ],
    )
    .await?;

    // WHEN the sink runs with UPSERT and DELETE
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = sink_config(
        port,
        &topic,
        &name,
        "",
        "      tableName: items\n      insertMode: UPSERT\n      nullValueAction: DELETE\n",
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for_row(&db, 3).await.with_context(|| sluice.log())?;

    // THEN the table holds the upserted row and not the deleted one
    assert_eq!(
        table(&db).await?,
        [(1, "c".to_owned()), (3, "end".to_owned())]
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn debezium_events_encoded_as_pulsars_debezium_source_sends_them_apply() -> anyhow::Result<()>
{
    // GIVEN change events published by Apache Pulsar's Java client the way
    // Pulsar's Debezium source publishes them: KEY_VALUE in SEPARATED mode,
    // the JSON key base64-encoded as the message key, the envelope alone as
    // the payload
    let name = unique("jdbc-kv").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
        .await?;
    let topic = sluice_tests::topic(&name);
    let event = |op: &str, id: i32, before: Value, after: Value| {
        let envelope = json!({"before": before, "after": after, "op": op, "ts_ms": 1,
            "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": "items"}});
        format!("{}\t{envelope}\n", json!({"id": id}))
    };
    let lines = [
        event("c", 1, Value::Null, json!({"id": 1, "v": "a"})),
        event("c", 2, Value::Null, json!({"id": 2, "v": "b"})),
        event("u", 1, Value::Null, json!({"id": 1, "v": "c"})),
        event("d", 2, json!({"id": 2, "v": "b"}), Value::Null),
        event("c", 3, Value::Null, json!({"id": 3, "v": "end"})),
    ]
    .concat();
    let sent =
        sluice_tests::java_lines_with_input("PublishKeyValue.java", &[PULSAR_URL, &topic], &lines)?;
    assert_eq!(sent, [json!({"sent": 5})]);

    // WHEN the jdbc sink applies the topic
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let out = dir.join("events.jsonl");
    let config = format!(
        "{}  - name: copy\n    className: file\n    inputs: [{topic}]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   configs:\n      path: {}\n      batchSize: 10\n      timeoutMs: 20\n",
        sink_config(
            port,
            &topic,
            &name,
            "",
            "      tableName: items\n      inputFormat: DEBEZIUM\n",
        ),
        out.display()
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for_row(&db, 3).await.with_context(|| sluice.log())?;

    // THEN the table is the events' outcome, and sinks see the keys as the JSON they are
    assert_eq!(
        table(&db).await?,
        [(1, "c".to_owned()), (3, "end".to_owned())]
    );
    let events = wait_for("the copies", LONG, || {
        let out = &out;
        async move { Ok(Some(file_events(out)?).filter(|e| e.len() == 5)) }
    })
    .await
    .with_context(|| sluice.log())?;
    let keys: Vec<&Value> = events.iter().map(|e| &e.key).collect();
    assert_eq!(
        keys,
        [
            &json!({"id": 1}),
            &json!({"id": 2}),
            &json!({"id": 1}),
            &json!({"id": 2}),
            &json!({"id": 3})
        ]
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn values_that_only_the_registered_schema_explains_are_decoded_by_it() -> anyhow::Result<()> {
    // GIVEN change events as Pulsar's Debezium source publishes them under
    // Debezium's defaults, with the KEY_VALUE schema it registers: numerics
    // as base64 unscaled bytes (`precise`; the scale is in the schema, or in
    // the value for a numeric without one) and timestamp(3) and time(3) in
    // milliseconds (`adaptive`)
    let name = unique("jdbc-schema").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, price numeric(10,2) NOT NULL, ratio numeric, \
         placed timestamp(3) NOT NULL, at time(3), note text)",
    )
    .await?;
    let topic = sluice_tests::topic(&name);
    let decimal = json!({"type": "bytes", "scale": 2, "precision": 10, "connect.version": 1,
        "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"},
        "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"});
    let variable = json!({"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
        "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
        "connect.version": 1, "connect.name": "io.debezium.data.VariableScaleDecimal"});
    let millis =
        |avro: &str, name: &str| json!({"type": avro, "connect.version": 1, "connect.name": name});
    let row = json!({"type": "record", "name": "Value", "namespace": "app.public.orders", "fields": [
        {"name": "id", "type": "int"},
        {"name": "price", "type": decimal},
        {"name": "ratio", "type": ["null", variable], "default": null},
        {"name": "placed", "type": millis("long", "io.debezium.time.Timestamp")},
        {"name": "at", "type": ["null", millis("int", "io.debezium.time.Time")], "default": null},
        {"name": "note", "type": ["null", "string"], "default": null}],
        "connect.name": "app.public.orders.Value"});
    let envelope = json!({"type": "record", "name": "Envelope", "namespace": "app.public.orders", "fields": [
        {"name": "before", "type": ["null", row], "default": null},
        {"name": "after", "type": ["null", "Value"], "default": null},
        {"name": "source", "type": {"type": "record", "name": "Source",
            "namespace": "io.debezium.connector.postgresql", "fields": [
                {"name": "connector", "type": "string"}, {"name": "schema", "type": "string"},
                {"name": "table", "type": "string"}]}},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": null}],
        "connect.name": "app.public.orders.Envelope"});
    let key = json!({"type": "record", "name": "Key", "namespace": "app.public.orders",
        "fields": [{"name": "id", "type": "int"}], "connect.name": "app.public.orders.Key"});
    let event = |op: &str, id: i32, before: Value, after: Value| {
        let value = json!({"before": before, "after": after, "op": op, "ts_ms": 1,
            "source": {"connector": "postgresql", "schema": "public", "table": "orders"}});
        (json!({"id": id}).to_string(), value.to_string())
    };
    let events = [
        // 12.50, 12.345, 2023-11-14 22:13:20.123, 01:02:03.004
        event(
            "c",
            1,
            Value::Null,
            json!({"id": 1, "price": "BOI=",
            "ratio": {"scale": 3, "value": "MDk="}, "placed": 1_700_000_000_123_i64, "at": 3_723_004, "note": "a"}),
        ),
        // -12.50
        event(
            "c",
            2,
            Value::Null,
            json!({"id": 2, "price": "+x4=", "ratio": null,
            "placed": 0, "at": null, "note": null}),
        ),
        // 1000.01, 7, .999, midnight
        event(
            "u",
            1,
            Value::Null,
            json!({"id": 1, "price": "AYah",
            "ratio": {"scale": 0, "value": "Bw=="}, "placed": 1_700_000_000_999_i64, "at": 0, "note": "b"}),
        ),
        event(
            "d",
            2,
            json!({"id": 2, "price": "+x4=", "ratio": null, "placed": 0, "at": null, "note": null}),
            Value::Null,
        ),
        // 0.00, 12:34:56.789
        event(
            "c",
            3,
            Value::Null,
            json!({"id": 3, "price": "AA==", "ratio": null,
            "placed": 86_400_000, "at": 45_296_789, "note": null}),
        ),
    ];
    sluice_tests::publish_under_key_value_schema(&topic, &key, &envelope, &events).await?;

    // WHEN the jdbc sink applies the topic
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = sink_config(
        port,
        &topic,
        &name,
        "",
        "      tableName: orders\n      inputFormat: DEBEZIUM\n",
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    let rows = || async {
        anyhow::Ok(
            db.query(
                "SELECT id, price::text, ratio::text, placed::text, at::text, note FROM orders ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                (0..6)
                    .map(|i| match i {
                        0 => Some(r.get::<_, i32>(0).to_string()),
                        i => r.get::<_, Option<String>>(i),
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>())
    };
    wait_for("the last order", LONG, || async {
        Ok(rows()
            .await?
            .iter()
            .any(|r| r[0].as_deref() == Some("3"))
            .then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN every value is the one the source held
    let text = |v: &[Option<&str>]| v.iter().map(|s| s.map(str::to_owned)).collect::<Vec<_>>();
    assert_eq!(
        rows().await?,
        [
            text(&[
                Some("1"),
                Some("1000.01"),
                Some("7"),
                Some("2023-11-14 22:13:20.999"),
                Some("00:00:00"),
                Some("b")
            ]),
            text(&[
                Some("3"),
                Some("0.00"),
                None,
                Some("1970-01-02 00:00:00"),
                Some("12:34:56.789"),
                None
            ]),
        ]
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_row_the_target_rejects_is_dead_lettered_and_its_neighbours_commit() -> anyhow::Result<()>
{
    // GIVEN a target that refuses the value 'bad', and five rows of which one is bad
    let name = unique("jdbc-poison").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL CHECK (v <> 'bad'))")
        .await?;
    let topic = sluice_tests::topic(&name);
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let dlq_reader = client
        .consumer(&dlq)
        .subscription("audit")
        .initial_position(magnetar::proto::pb::command_subscribe::InitialPosition::Earliest)
        .subscribe()
        .await?;
    let rows: Vec<(String, String)> = (1..=5)
        .map(|i| {
            let v = if i == 3 { "bad" } else { "ok" };
            (
                format!("{{\"id\":{i}}}"),
                format!("{{\"id\":{i},\"v\":\"{v}\"}}"),
            )
        })
        .collect();
    let messages: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    sluice_tests::publish(&topic, &messages).await?;

    // WHEN the sink writes them with a dead-letter topic
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = sink_config(
        port,
        &topic,
        &name,
        &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 1\n"),
        "      tableName: items\n",
    );
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN the four good rows commit and the bad one is dead-lettered with the error
    let msg = dlq_reader
        .receive_with_timeout(LONG)
        .await?
        .context("nothing on the dead-letter topic")
        .with_context(|| sluice.log())?;
    assert!(msg.payload.ends_with(b"{\"id\":3,\"v\":\"bad\"}"));
    // The rows behind the bad one are written once it is dead-lettered.
    let ids: Vec<i32> = wait_for("the rows behind the bad one", LONG, || {
        let db = &db;
        async move {
            let ids: Vec<i32> = table(db).await?.iter().map(|(id, _)| *id).collect();
            Ok((ids.len() >= 4).then_some(ids))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(ids, [1, 2, 4, 5]);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_sink_that_dies_mid_entry_gets_the_rest_of_that_entry_again() -> anyhow::Result<()> {
    // GIVEN 100 rows published as one batch: one entry of the topic
    let name = unique("jdbc-mid-entry").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
        .await?;
    let topic = sluice_tests::topic(&name);
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let producer = client
        .producer(&topic)
        .batching(100, 1 << 20)
        .batching_max_publish_delay(Duration::from_secs(1))
        .create()
        .await?;
    let sends: Vec<_> = (1..=100)
        .map(|i| {
            let row = json!({"id": i, "v": format!("row {i}")}).to_string();
            producer.send(magnetar::OutgoingMessage::with_payload(row.into_bytes()).into())
        })
        .collect();
    for send in sends {
        send.await?;
    }
    // AND a last row in an entry of its own
    let last = json!({"id": 101, "v": "row 101"}).to_string();
    producer
        .send(magnetar::OutgoingMessage::with_payload(last.into_bytes()).into())
        .await?;
    producer.close().await?;

    // WHEN a sink of batches of 50, in order (Failover), writes the first
    // half of the entry and dies before its second batch
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = sink_config(
        port,
        &topic,
        &name,
        "",
        "      tableName: items\n      insertMode: UPSERT\n",
    );
    let sluice = Sluice::start_with(&dir, &config, port, &[("SLUICE_FAILPOINT", "sink-batch@2")])?;
    let status = sluice.exit_status().await?;
    let log = std::fs::read_to_string(dir.join("sluice.log"))?;
    ensure!(
        !status.success() && log.contains("failpoint sink-batch reached"),
        "sluice did not die at its second batch:\n{log}"
    );
    let first = table(&db).await?.len();

    // THEN, run again, it gets the entry's other half: its acknowledgement
    // covered the rows written, not the entry they came in
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for_row(&db, 101).await.with_context(|| sluice.log())?;
    let expected: Vec<(i32, String)> = (1..=101).map(|i| (i, format!("row {i}"))).collect();
    assert_eq!(first, 50, "the first run wrote one batch");
    assert_eq!(table(&db).await?, expected);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

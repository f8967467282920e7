//! Debezium's transforms on the CDC source, as Pulsar users configure them
//! for Pulsar's Debezium source: `unwrap` (ExtractNewRecordState) turns
//! each change into the row it leaves, and the logical-table router
//! (ByLogicalTableRouter) sends the shards of a table to one topic. The
//! topics are read back by Apache Pulsar's Java client through their
//! registered schema, and applied by sluice's row sink.

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sluice_tests::cdc::{LONG, drop_slot, effectively_once_turn};
use sluice_tests::{
    PULSAR_URL, Sluice, admin, free_port, java_lines, pg, temp_dir, unique, wait_for,
};

/// A source with `transforms` and a jdbc sink of plain rows from its topics
/// into `target`.
fn pipeline(name: &str, guarantee: &str, transforms: &str, target: &str, port: u16) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: cdc\n    className: postgres-cdc\n    processingGuarantees: {guarantee}\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         {transforms}\
         sinks:\n  - name: rows\n    className: jdbc\n    inputs: [persistent://public/default/{name}.public.orders]\n\
         \x20   sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n    configs:\n\
         \x20     jdbcUrl: postgres://127.0.0.1:5432/{target}\n      userName: postgres\n      password: {pw}\n\
         \x20     tableName: orders\n      insertMode: UPSERT\n      nullValueAction: DELETE\n      batchSize: 100\n      timeoutMs: 20\n",
        pw = pg::PASSWORD
    )
}

async fn orders(db: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    Ok(db
        .query(
            "SELECT row_to_json(o)::text FROM (SELECT * FROM orders ORDER BY id) o",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[tokio::test]
async fn unwrapped_rows_with_null_deletes_rebuild_the_table_through_a_row_sink()
-> anyhow::Result<()> {
    // GIVEN a table of 200 rows, captured under EFFECTIVELY_ONCE with
    // `unwrap` keeping deletes as null values, and sluice's jdbc sink
    // applying the topic as plain rows (upsert; a null value deletes)
    let _turn = effectively_once_turn().await?;
    let name = unique("cdc-unwrap").replace('-', "_");
    let source = pg::create_database(&name).await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    let table = "CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int, price numeric(10,2));";
    source.batch_execute(table).await?;
    target.batch_execute(table).await?;
    source
        .batch_execute("INSERT INTO orders SELECT g, 'item ' || g, g % 7, g * 1.5 FROM generate_series(1, 200) g;")
        .await?;
    let transforms = "      transforms: unwrap\n\
                      \x20     transforms.unwrap.type: io.debezium.transforms.ExtractNewRecordState\n\
                      \x20     transforms.unwrap.drop.tombstones: \"false\"\n\
                      \x20     transforms.unwrap.delete.handling.mode: none\n\
                      \x20     transforms.unwrap.add.headers: op,source.ts_ms\n";
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = pipeline(
        &name,
        "EFFECTIVELY_ONCE",
        transforms,
        &format!("{name}_dst"),
        port,
    );
    let sluice = Sluice::start(&dir, &config, port)?;

    // WHEN rows are updated, deleted and inserted while it runs, and a
    // truncate of another table goes by
    wait_for("the snapshot in the target", LONG, || {
        let target = &target;
        async move {
            let n: i64 = target
                .query_one("SELECT count(*) FROM orders", &[])
                .await?
                .get(0);
            Ok((n == 200).then_some(()))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    source
        .batch_execute(
            "CREATE TABLE scratch (id int PRIMARY KEY); INSERT INTO scratch VALUES (1);
             UPDATE orders SET qty = qty + 10, price = price * 2 WHERE id % 3 = 0;
             DELETE FROM orders WHERE id % 10 = 0;
             BEGIN; INSERT INTO orders VALUES (500, 'late', 1, 9.99); TRUNCATE scratch; UPDATE orders SET item = 'later' WHERE id = 500; COMMIT;
             DELETE FROM orders WHERE id = 1;
             INSERT INTO orders VALUES (-1, 'sentinel', 0, 0);",
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

    // THEN the target equals the source, row by row
    let (from, to) = (orders(&source).await?, orders(&target).await?);
    assert_eq!(from.len(), 200 - 20 - 1 + 2, "source rows");
    assert_eq!(from, to);

    // AND Apache Pulsar's Java client reads the topic through its schema:
    // rows (no envelope), deletes as null values, the op in a property
    let topic = format!("persistent://public/default/{name}.public.orders");
    let read = java_lines("ReadBySchema.java", &[PULSAR_URL, &topic, "rows"])?;
    let ops = |op: &str| {
        read.iter()
            .filter(|m| m["properties"]["__op"] == op)
            .count()
    };
    assert_eq!(
        (ops("r"), ops("u"), ops("c"), ops("d"), read.len()),
        (200, 66 + 1, 2, 20 + 1, 200 + 67 + 2 + 21),
        "{read:#?}"
    );
    for m in &read {
        let deleted = m["properties"]["__op"] == "d";
        ensure!(m["value"].is_null() == deleted, "{m}");
        ensure!(
            m["properties"]["__source_ts_ms"]
                .as_str()
                .is_some_and(|t| t.parse::<u64>().is_ok()),
            "{m}"
        );
    }
    let late = read
        .iter()
        .rfind(|m| m["key"] == json!({"id": 500}))
        .context("row 500")?;
    assert_eq!(
        late["value"],
        json!({"id": 500, "item": "later", "qty": 1, "price": "9.99"})
    );
    let registered: Value = serde_json::from_str(&admin::get(&format!(
        "/admin/v2/schemas/public/default/{name}.public.orders/schema"
    ))?)?;
    let data: Value = serde_json::from_str(registered["data"].as_str().context("schema data")?)?;
    let value = &data["value"];
    let fields: Vec<&str> = value["fields"]
        .as_array()
        .context("fields")?
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        (value["name"].as_str(), fields),
        (Some("Value"), vec!["id", "item", "qty", "price"])
    );

    ensure!(sluice.interrupt().await?.success());
    drop_slot(&source, &name).await;
    Ok(())
}

#[tokio::test]
async fn the_router_merges_shards_into_one_topic_with_keys_that_name_their_table()
-> anyhow::Result<()> {
    // GIVEN two shards of `customers` holding the same id, and a third
    // table, captured with Debezium's documented routing of shards to one
    // topic, and `unwrap` rewriting deletes, under EFFECTIVELY_ONCE
    let _turn = effectively_once_turn().await?;
    let name = unique("cdc-route").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE customers_shard1 (id int PRIMARY KEY, email text NOT NULL);
         CREATE TABLE customers_shard2 (id int PRIMARY KEY, email text NOT NULL);
         CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int, price numeric(10,2));
         INSERT INTO customers_shard1 VALUES (1, 'anne@one');
         INSERT INTO customers_shard2 VALUES (1, 'bob@two');
         INSERT INTO orders VALUES (7, 'kettle', 1, 20.00);",
    )
    .await?;
    let transforms = "      transforms: Reroute,unwrap\n\
                      \x20     transforms.Reroute.type: io.debezium.transforms.ByLogicalTableRouter\n\
                      \x20     transforms.Reroute.topic.regex: (.*)customers_shard(.*)\n\
                      \x20     transforms.Reroute.topic.replacement: $1customers_all_shards\n\
                      \x20     transforms.unwrap.type: io.debezium.transforms.ExtractNewRecordState\n\
                      \x20     transforms.unwrap.delete.handling.mode: rewrite\n\
                      \x20     transforms.unwrap.add.fields: op,table\n";
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    // The sink is not the subject here; it reads the untouched orders topic.
    let target = pg::create_database(&format!("{name}_dst")).await?;
    target
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int, price numeric(10,2), __op text, __table text, __deleted text);")
        .await?;
    let config = pipeline(
        &name,
        "EFFECTIVELY_ONCE",
        transforms,
        &format!("{name}_dst"),
        port,
    );
    let sluice = Sluice::start(&dir, &config, port)?;

    // WHEN a shard's row changes and another's is deleted
    let topic = format!("persistent://public/default/{name}.public.customers_all_shards");
    let events = |n: usize| {
        let topic = topic.clone();
        async move {
            let read =
                java_lines("ReadBySchema.java", &[PULSAR_URL, &topic, "rows"]).unwrap_or_default();
            Ok((read.len() >= n).then_some(read))
        }
    };
    wait_for("the shards' snapshot", LONG, || events(2))
        .await
        .with_context(|| sluice.log())?;
    db.batch_execute(
        "UPDATE customers_shard1 SET email = 'anne@new' WHERE id = 1;
         DELETE FROM customers_shard2 WHERE id = 1;",
    )
    .await?;
    let read = wait_for("the shards' changes", LONG, || events(4))
        .await
        .with_context(|| sluice.log())?;

    // THEN one topic holds both shards' rows, each key naming its table,
    // and the delete as the row it removed (its key, under the default
    // replica identity), marked deleted
    let key = |shard: u8| json!({"id": 1, "__dbz__physicalTableIdentifier": format!("{name}.public.customers_shard{shard}")});
    let row = |email: Option<&str>, op: &str, shard: u8, deleted: &str| json!({"id": 1, "email": email, "__op": op, "__table": format!("customers_shard{shard}"), "__deleted": deleted});
    let mut seen: Vec<(Value, Value)> = read
        .iter()
        .map(|m| (m["key"].clone(), m["value"].clone()))
        .collect();
    seen.sort_by_key(|(k, v)| {
        (
            k.to_string(),
            v["__op"].as_str().map(|o| o == "r").unwrap_or(false),
        )
    });
    let mut expected = vec![
        (key(1), row(Some("anne@new"), "u", 1, "false")),
        (key(1), row(Some("anne@one"), "r", 1, "false")),
        (key(2), row(None, "d", 2, "true")),
        (key(2), row(Some("bob@two"), "r", 2, "false")),
    ];
    expected.sort_by_key(|(k, v)| {
        (
            k.to_string(),
            v["__op"].as_str().map(|o| o == "r").unwrap_or(false),
        )
    });
    assert_eq!(seen, expected, "{read:#?}");

    // AND the topic's schema is named after it, its key with the table's field
    let registered: Value = serde_json::from_str(&admin::get(&format!(
        "/admin/v2/schemas/public/default/{name}.public.customers_all_shards/schema"
    ))?)?;
    let data: Value = serde_json::from_str(registered["data"].as_str().context("schema data")?)?;
    let names = |side: &str| -> Vec<String> {
        data[side]["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        data["key"]["namespace"],
        format!("{name}.public.customers_all_shards")
    );
    assert_eq!(names("key"), ["id", "__dbz__physicalTableIdentifier"]);
    assert_eq!(
        names("value"),
        ["id", "email", "__op", "__table", "__deleted"]
    );

    // AND a table the pattern does not match keeps its topic, unwrapped
    wait_for("the order in the target", LONG, || {
        let target = &target;
        async move {
            let rows: Vec<String> = target
                .query("SELECT row_to_json(o)::text FROM orders o", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok((!rows.is_empty()).then_some(rows))
        }
    })
    .await
    .map(|rows| {
        assert_eq!(
            rows,
            [r#"{"id":7,"item":"kettle","qty":1,"price":20.00,"__op":"r","__table":"orders","__deleted":"false"}"#]
        )
    })
    .with_context(|| sluice.log())?;

    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &name).await;
    Ok(())
}

#[tokio::test]
async fn a_table_named_with_slashes_cannot_route_events_out_of_the_sources_namespace()
-> anyhow::Result<()> {
    // GIVEN a source in namespace public/<ns> that routes each table to its
    // bare name, and a table whose name spells another namespace's topic
    let name = unique("cdc-slash").replace('-', "_");
    let ns = admin::create_namespace(&name)?;
    let db = pg::create_database(&name).await?;
    let stolen = format!("public/default/{name}_stolen");
    db.batch_execute(&format!(
        "CREATE TABLE \"{stolen}\" (id int PRIMARY KEY, secret text); INSERT INTO \"{stolen}\" VALUES (1, 'x');"
    ))
    .await?;
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: cdc\n    className: postgres-cdc\n    namespace: {name}\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         \x20     transforms: bare\n      transforms.bare.type: io.debezium.transforms.ByLogicalTableRouter\n\
         \x20     transforms.bare.topic.regex: {name}\\.public\\.(.*)\n      transforms.bare.topic.replacement: $1\n\
         \x20     transforms.bare.key.enforce.uniqueness: \"false\"\n",
        pw = pg::PASSWORD
    );
    let sluice = Sluice::start(&temp_dir(&name)?, &config, port)?;

    // WHEN the source copies the table
    let kept = format!("persistent://{ns}/public_default_{name}_stolen");
    let read = wait_for("the row in the source's namespace", LONG, || {
        let kept = kept.clone();
        async move {
            let read = java_lines("ReadTopic.java", &[PULSAR_URL, &kept]).unwrap_or_default();
            Ok((!read.is_empty()).then_some(read))
        }
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN its events stay in the source's namespace, under a name without
    // the slashes, and the other namespace's topic was never made
    assert_eq!(read.len(), 1, "{read:?}");
    let envelope: Value = serde_json::from_str(read[0]["value"].as_str().context("value")?)?;
    assert_eq!(envelope["after"], json!({"id": 1, "secret": "x"}));
    let elsewhere = admin::get(&format!(
        "/admin/v2/persistent/public/default/{name}_stolen/stats"
    ));
    ensure!(
        elsewhere.is_err(),
        "the other namespace has the topic: {elsewhere:?}"
    );
    ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &name).await;
    Ok(())
}

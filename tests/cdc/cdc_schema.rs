//! The CDC source's topics carry a schema, as Pulsar's Debezium source's
//! do: Pulsar's schema registry holds a `KEY_VALUE` schema of the key and
//! the envelope, schema-aware Java consumers read through it, and it
//! evolves when the table does. `schemaType: BYTES` publishes plain bytes.

use anyhow::Context;
use serde_json::{Value, json};
use sluice_tests::cdc::{cdc, drop_slot, effectively_once_turn, wait_for_event};
use sluice_tests::{PULSAR_URL, Sluice, admin, java_lines, pg, unique};

const ORDERS: &str = "CREATE TABLE orders (id int PRIMARY KEY, note text, total numeric(10,2) NOT NULL, \
                      made timestamp, meta jsonb);
    INSERT INTO orders VALUES (1, 'first', 12.5, '2026-01-02 03:04:05.000006', '{\"a\": [1, null]}'),
                              (2, NULL, 0, NULL, NULL);";

fn schema_path(prefix: &str) -> String {
    format!("/admin/v2/schemas/public/default/{prefix}.public.orders/schema")
}

#[tokio::test]
async fn java_consumers_read_change_events_through_the_registered_schema() -> anyhow::Result<()> {
    // GIVEN a table captured by sluice: two rows snapshotted, one updated
    let name = unique("cdc-schema").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(ORDERS).await?;
    let p = cdc(&name, "ATLEAST_ONCE", "")?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_event(&p.out, "the snapshot", |e| e.key == json!({"id": 2}))
        .await
        .with_context(|| sluice.log())?;
    db.batch_execute("UPDATE orders SET note = 'changed' WHERE id = 1")
        .await?;
    wait_for_event(&p.out, "the update", |e| e.op() == "u")
        .await
        .with_context(|| sluice.log())?;

    // THEN the broker holds a KEY_VALUE schema for the topic, JSON key and value, SEPARATED
    let registered: Value = serde_json::from_str(&admin::get(&schema_path(&p.prefix))?)?;
    assert_eq!(registered["type"], "KEY_VALUE", "{registered}");
    assert_eq!(registered["properties"]["kv.encoding.type"], "SEPARATED");
    assert_eq!(registered["properties"]["key.schema.type"], "JSON");
    assert_eq!(registered["properties"]["value.schema.type"], "JSON");

    // WHEN a typed Java consumer reads the topic with its own classes
    let topic = format!("persistent://public/default/{}.public.orders", p.prefix);
    let typed = java_lines("ReadBySchema.java", &[PULSAR_URL, &topic, "typed"])?;

    // THEN it decodes every event, column by column
    let first = json!({"id": 1, "note": "first", "total": "12.50", "made": 1_767_323_045_000_006_i64,
                       "meta": "{\"a\": [1, null]}"});
    let second = json!({"id": 2, "note": null, "total": "0.00", "made": null, "meta": null});
    let mut changed = first.clone();
    changed["note"] = json!("changed");
    assert_eq!(
        typed,
        [
            json!({"key": 1, "op": "r", "before": null, "after": first, "table": "orders"}),
            json!({"key": 2, "op": "r", "before": null, "after": second, "table": "orders"}),
            json!({"key": 1, "op": "u", "before": null, "after": changed, "table": "orders"}),
        ]
    );

    // WHEN the table gains a column and a row uses it
    db.batch_execute(
        "ALTER TABLE orders ADD COLUMN region text; \
         INSERT INTO orders (id, total, region) VALUES (3, 1, 'north');",
    )
    .await?;
    wait_for_event(&p.out, "the insert after the change", |e| {
        e.key == json!({"id": 3})
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN the registry holds a second version, and a generic consumer
    // reads each event through the version it was written with
    let registered: Value = serde_json::from_str(&admin::get(&schema_path(&p.prefix))?)?;
    assert_eq!(registered["version"], 1, "{registered}");
    let auto = java_lines("ReadBySchema.java", &[PULSAR_URL, &topic, "auto"])?;
    let summary: Vec<(Value, Value, Value)> = auto
        .iter()
        .map(|m| {
            (
                m["key"]["id"].clone(),
                m["op"].clone(),
                m["after"]["region"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!(1), json!("r"), Value::Null),
            (json!(2), json!("r"), Value::Null),
            (json!(1), json!("u"), Value::Null),
            (json!(3), json!("c"), json!("north")),
        ],
        "{auto:#?}"
    );
    assert!(auto.iter().all(|m| m["type"] == "KEY_VALUE"), "{auto:#?}");
    let versions: Vec<&Value> = auto.iter().map(|m| &m["version"]).collect();
    assert_eq!(versions, [&json!(0), &json!(0), &json!(0), &json!(1)]);

    anyhow::ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn schema_type_bytes_publishes_plain_bytes() -> anyhow::Result<()> {
    // GIVEN a captured table, with the source set to schemaType BYTES
    let name = unique("cdc-bytes").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(ORDERS).await?;
    let mut p = cdc(&name, "ATLEAST_ONCE", "")?;
    p.config = p.config.replacen(
        "    className: postgres-cdc\n",
        "    className: postgres-cdc\n    schemaType: BYTES\n",
        1,
    );
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_event(&p.out, "the snapshot", |e| e.key == json!({"id": 2}))
        .await
        .with_context(|| sluice.log())?;

    // THEN the topic has no schema, and the events are as with one
    let answer = admin::get(&schema_path(&p.prefix));
    let refused = answer.as_ref().err().map(|e| e.to_string());
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("HTTP 404")),
        "{answer:?}"
    );
    anyhow::ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn effectively_once_with_a_schema_publishes_through_a_small_send_window() -> anyhow::Result<()>
{
    // GIVEN a table of 500 rows, captured EFFECTIVELY_ONCE with its schema,
    // at most 5 sends in flight and batches of up to 100 records, so that
    // transactions, batches and the send window all cut across each other
    let _turn = effectively_once_turn().await?;
    let name = unique("cdc-schema-eo").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g;",
    )
    .await?;
    let mut p = cdc(&name, "EFFECTIVELY_ONCE", "")?;
    p.config = p.config.replacen(
        "    processingGuarantees: EFFECTIVELY_ONCE\n",
        "    processingGuarantees: EFFECTIVELY_ONCE\n    producerConfig:\n      maxPendingMessages: 5\n\
         \x20     batchingConfig:\n        batchingMaxMessages: 100\n        batchingMaxPublishDelayMs: 50\n",
        1,
    );
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;

    // WHEN a change follows the snapshot
    wait_for_event(&p.out, "the snapshot's last row", |e| {
        e.key == json!({"id": 500})
    })
    .await
    .with_context(|| sluice.log())?;
    db.batch_execute("UPDATE t SET v = 'changed' WHERE id = 1")
        .await?;
    let events = wait_for_event(&p.out, "the update", |e| e.op() == "u")
        .await
        .with_context(|| sluice.log())?;

    // THEN every row is on the topic exactly once, then the update
    let reads: std::collections::BTreeSet<i64> = events
        .iter()
        .filter(|e| e.op() == "r")
        .filter_map(|e| e.key["id"].as_i64())
        .collect();
    assert_eq!(reads, (1..=500).collect());
    assert_eq!(events.len(), 501, "duplicates on the topic");
    anyhow::ensure!(sluice.interrupt().await?.success());
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

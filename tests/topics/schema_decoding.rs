//! Decoding by the registered schema, against a hostile producer: values
//! past Postgres's limits are dead-lettered by column without exhausting
//! memory, and made-up schema versions cannot keep the real one unread.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sluice_tests::sink::pg_url;
use sluice_tests::{PULSAR_URL, Sluice, free_port, message_parts, pg, reader, temp_dir, unique};

const LONG: Duration = Duration::from_secs(120);

/// The Debezium key and envelope schemas of a table `orders (id, ratio)`,
/// `ratio` a numeric without a fixed scale, as Debezium's precise mode
/// writes it.
fn schemas() -> (Value, Value) {
    let variable = json!({"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
        "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
        "connect.version": 1, "connect.name": "io.debezium.data.VariableScaleDecimal"});
    let row = json!({"type": "record", "name": "Value", "namespace": "app.public.orders", "fields": [
        {"name": "id", "type": "int"},
        {"name": "ratio", "type": ["null", variable], "default": null}]});
    let envelope = json!({"type": "record", "name": "Envelope", "namespace": "app.public.orders", "fields": [
        {"name": "before", "type": ["null", row], "default": null},
        {"name": "after", "type": ["null", "Value"], "default": null},
        {"name": "op", "type": "string"}]});
    let key = json!({"type": "record", "name": "Key", "namespace": "app.public.orders",
        "fields": [{"name": "id", "type": "int"}]});
    (key, envelope)
}

/// A create event of order `id` with `ratio`.
fn create(id: i32, ratio: Value) -> (String, String) {
    (
        json!({"id": id}).to_string(),
        json!({"op": "c", "before": null, "after": {"id": id, "ratio": ratio}}).to_string(),
    )
}

fn config(port: u16, name: &str, dlq: &str) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\n  webServiceUrl: http://127.0.0.1:8080\n\
         http:\n  listen: 127.0.0.1:{port}\nsinks:\n  - name: orders\n    className: jdbc\n\
         \x20   inputs: [{name}]\n    sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n\
         \x20   deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n    configs:\n\
         \x20     jdbcUrl: '{}'\n      tableName: orders\n      inputFormat: DEBEZIUM\n\
         \x20     batchSize: 10\n      timeoutMs: 20\n",
        pg_url(name)
    )
}

async fn ratios(db: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, Option<String>)>> {
    Ok(db
        .query("SELECT id, ratio::text FROM orders ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

#[tokio::test]
async fn a_decimal_scale_past_postgres_limit_is_dead_lettered_by_column_in_bounded_memory()
-> anyhow::Result<()> {
    // GIVEN a topic under the envelope schema, where between two orders a
    // producer sends a decimal whose scale is the largest a u32 holds (an
    // 8 GB string of zeros, were it honoured)
    let name = unique("decimal-bounds").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, ratio numeric)")
        .await?;
    let topic = sluice_tests::topic(&name);
    let (key, envelope) = schemas();
    let version = sluice_tests::register_key_value_schema(&topic, &key, &envelope)?;
    let stamped = |(k, v): (String, String)| (k, v, version);
    sluice_tests::publish_stamped(
        &topic,
        &[
            stamped(create(1, json!({"scale": 2, "value": "BOI="}))),
            stamped(create(
                2,
                json!({"scale": 4_294_967_295_u64, "value": "AQ=="}),
            )),
            stamped(create(3, json!({"scale": 16_383, "value": "AQ=="}))),
        ],
    )
    .await?;
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let dead_letters = reader(&dlq).await?;

    // WHEN the sink applies it
    let port = free_port()?;
    let dir = temp_dir(&name)?;
    let sluice = Sluice::start(&dir, &config(port, &name, &dlq), port)?;

    // THEN the hostile order is dead-lettered, naming the column and the limit
    let msg = dead_letters
        .receive_with_timeout(LONG)
        .await?
        .context("no dead letter")
        .with_context(|| sluice.log())?;
    let (_, props) = message_parts(&msg);
    let error = props
        .iter()
        .find(|(k, _)| k == "sluice.error")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    ensure!(
        error.contains("column `ratio`") && error.contains("16383"),
        "{error}"
    );
    // AND the orders around it land, the one at the limit exactly
    let rows = sluice_tests::wait_for("order 3", LONG, || async {
        let rows = ratios(&db).await?;
        Ok((rows.len() == 2).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    let at_limit = format!("0.{}1", "0".repeat(16_382));
    assert_eq!(rows, [(1, Some("12.50".to_owned())), (3, Some(at_limit))]);
    // AND the process never held more than a small multiple of its base
    let peak = sluice.peak_rss().context("no peak RSS")?;
    ensure!(peak < 128 << 20, "peak RSS {peak} bytes");
    ensure!(
        dead_letters
            .receive_with_timeout(Duration::from_millis(500))
            .await?
            .is_none(),
        "more than one dead letter"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn made_up_schema_versions_cannot_keep_the_real_one_unread() -> anyhow::Result<()> {
    // GIVEN a topic where a producer first stamps 300 records with schema
    // versions that do not exist, then the real producer publishes under
    // the registered version
    let name = unique("bogus-versions").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, ratio numeric)")
        .await?;
    let topic = sluice_tests::topic(&name);
    let (key, envelope) = schemas();
    let version = sluice_tests::register_key_value_schema(&topic, &key, &envelope)?;
    let bogus: Vec<(String, String, i64)> = (0..300)
        .map(|i| {
            let (k, v) = create(1000 + i, json!(null));
            (k, v, 10_000 + i64::from(i))
        })
        .collect();
    sluice_tests::publish_stamped(&topic, &bogus).await?;
    let (k, v) = create(1, json!({"scale": 3, "value": "MDk="}));
    sluice_tests::publish_stamped(&topic, &[(k, v, version)]).await?;

    // WHEN the sink applies the topic
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let port = free_port()?;
    let dir = temp_dir(&name)?;
    let sluice = Sluice::start(&dir, &config(port, &name, &dlq), port)?;

    // THEN the real record is decoded by its schema: 12.345, not base64
    let rows = sluice_tests::wait_for("order 1", LONG, || async {
        let rows = ratios(&db).await?;
        Ok(rows.iter().any(|(id, _)| *id == 1).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(rows.len(), 301, "every record applied");
    assert_eq!(rows[0], (1, Some("12.345".to_owned())));
    // AND the made-up versions were warned about a few times, not 300
    let warnings = sluice
        .log()
        .matches("cannot read the schema a record was written with")
        .count();
    ensure!((1..=3).contains(&warnings), "{warnings} warnings");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

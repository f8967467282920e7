//! Topics written by other Pulsar clients with compression on: every codec
//! the protocol has, batched and not, mixed on one topic, read to the last
//! record by the jdbc and HTTP sinks under each guarantee (decision 0019).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::sink::{sink_section, sinks_config, sqlite};
use sluice_tests::webhook::Webhook;
use sluice_tests::{Sluice, free_port, temp_dir, topic, unique, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// Rows each producer writes.
const ROWS: usize = 300;

/// Every codec, batched (a batch compressed whole) and not, and a batched
/// uncompressed segment, one producer after the other on one topic.
const SEGMENTS: [&str; 9] = [
    "LZ4:batched",
    "ZLIB:batched",
    "ZSTD:batched",
    "SNAPPY:batched",
    "NONE:batched",
    "LZ4:single",
    "ZLIB:single",
    "ZSTD:single",
    "SNAPPY:single",
];

/// What the Java publisher wrote: each row's `v` by id.
fn written() -> BTreeMap<i64, String> {
    let mut rows = BTreeMap::new();
    let mut id = 0;
    for segment in SEGMENTS {
        for _ in 0..ROWS {
            id += 1;
            rows.insert(
                id,
                format!("{segment} row {id} of a segment that compresses well, compresses well"),
            );
        }
    }
    rows
}

/// A SQLite file with the `items` table, created.
async fn items(path: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    let db = sqlite(path).await?;
    sqlx::raw_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&db)
        .await?;
    Ok(db)
}

/// sluice running one jdbc sink, named `jdbc`, from `input` into a new
/// SQLite `items` table.
async fn jdbc_sink(name: &str, input: &str) -> anyhow::Result<(sqlx::SqlitePool, Sluice)> {
    let dir = temp_dir(name)?;
    let path = dir.join("target.db");
    let db = items(&path).await?;
    let section = sink_section(
        "jdbc",
        input,
        &format!("sqlite://{}", path.display()),
        "",
        "      tableName: items\n",
    );
    let port = free_port()?;
    let sluice = Sluice::start(&dir, &sinks_config(port, &[section]), port)?;
    Ok((db, sluice))
}

/// `(id, v)` of every row of `items`.
async fn table(db: &sqlx::SqlitePool) -> anyhow::Result<BTreeMap<i64, String>> {
    Ok(
        sqlx::query_as::<_, (i64, String)>("SELECT id, v FROM items")
            .fetch_all(db)
            .await?
            .into_iter()
            .collect(),
    )
}

#[tokio::test]
async fn every_codec_batched_or_not_from_the_java_client_is_read_to_the_last_record_by_each_sink_and_guarantee()
-> anyhow::Result<()> {
    read_by_each_sink_and_guarantee("java", |input| {
        let rows = ROWS.to_string();
        let mut args = vec![sluice_tests::PULSAR_URL, input, &rows];
        args.extend(SEGMENTS);
        sluice_tests::java_lines("PublishCompressed.java", &args)
    })
    .await
}

#[tokio::test]
async fn every_codec_batched_or_not_from_the_python_client_is_read_to_the_last_record_by_each_sink_and_guarantee()
-> anyhow::Result<()> {
    read_by_each_sink_and_guarantee("python", |input| {
        let rows = ROWS.to_string();
        let mut args = vec![sluice_tests::PULSAR_URL, input, &rows];
        args.extend(SEGMENTS);
        sluice_tests::python_lines("publish_compressed.py", &args)
    })
    .await
}

/// A topic written by `publish` (each of [`SEGMENTS`], [`ROWS`] rows each)
/// is read to the last record by a jdbc and an HTTP sink, each under
/// ATLEAST_ONCE and EFFECTIVELY_ONCE.
async fn read_by_each_sink_and_guarantee(
    client: &str,
    publish: impl FnOnce(&str) -> anyhow::Result<Vec<serde_json::Value>>,
) -> anyhow::Result<()> {
    // GIVEN a topic that one of Apache Pulsar's clients wrote with each
    // codec, batched and not
    let name = unique(&format!("codecs-{client}"));
    let input = topic(&name);
    let sent = publish(&input)?;
    ensure!(sent.len() == SEGMENTS.len(), "{sent:?}");

    // WHEN a jdbc sink and an HTTP sink read it, each under ATLEAST_ONCE
    // and EFFECTIVELY_ONCE
    let dir = temp_dir(&name)?;
    let hook = Webhook::start().await?;
    let mut sections = Vec::new();
    let mut dbs = Vec::new();
    for guarantee in ["ATLEAST_ONCE", "EFFECTIVELY_ONCE"] {
        let path = dir.join(format!("{guarantee}.db"));
        dbs.push((guarantee, items(&path).await?));
        sections.push(sink_section(
            &format!("jdbc-{guarantee}"),
            &input,
            &format!("sqlite://{}", path.display()),
            &format!("    processingGuarantees: {guarantee}\n"),
            "      tableName: items\n",
        ));
        sections.push(format!(
            "  - name: http-{guarantee}\n    className: http\n    inputs: [\"{input}\"]\n\
             \x20   sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n\
             \x20   processingGuarantees: {guarantee}\n    configs:\n      url: {}\n\
             \x20     batchSize: 100\n      timeoutMs: 20\n",
            hook.url(&format!("/{guarantee}"))
        ));
    }
    let port = free_port()?;
    let sluice = Sluice::start(&dir, &sinks_config(port, &sections), port)?;

    // THEN every table ends equal to what was written, row by row
    let want = written();
    for (guarantee, db) in &dbs {
        wait_for(&format!("every row under {guarantee}"), LONG, || async {
            Ok((table(db).await?.len() == want.len()).then_some(()))
        })
        .await
        .with_context(|| sluice.log())?;
        assert_eq!(table(db).await?, want, "{guarantee}");
    }
    // and the receiver got each record once per guarantee
    for guarantee in ["ATLEAST_ONCE", "EFFECTIVELY_ONCE"] {
        let path = format!("/{guarantee}");
        let posted = || -> anyhow::Result<BTreeMap<i64, String>> {
            let mut got = BTreeMap::new();
            for hit in hook.hits().iter().filter(|h| h.path == path) {
                let value: serde_json::Value = serde_json::from_slice(&hit.body)?;
                let id = value["id"].as_i64().context("an id")?;
                let v = value["v"].as_str().context("a v")?.to_owned();
                ensure!(got.insert(id, v).is_none(), "{id} posted twice to {path}");
            }
            Ok(got)
        };
        wait_for(
            &format!("every record posted under {guarantee}"),
            LONG,
            || async { Ok((posted()?.len() == want.len()).then_some(())) },
        )
        .await
        .with_context(|| sluice.log())?;
        assert_eq!(posted()?, want, "{guarantee}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors").context("status")?)?;
    ensure!(
        !status.to_string().contains("cannot read"),
        "a sink reported an unreadable entry: {status}"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_batch_inflating_past_a_frame_stops_the_sink_with_the_reason_and_loses_nothing()
-> anyhow::Result<()> {
    // GIVEN a topic with a batch that inflates to 6 MiB, between two
    // ordinary ones
    let name = unique("large-batch");
    let input = topic(&name);
    let sent = sluice_tests::java_lines(
        "PublishCompressed.java",
        &[
            sluice_tests::PULSAR_URL,
            &input,
            "300",
            "LZ4:batched",
            "LZ4:large",
            "LZ4:batched",
        ],
    )?;
    ensure!(sent.len() == 3, "{sent:?}");

    // WHEN a sink reads it
    let (db, sluice) = jdbc_sink(&name, &input).await?;

    // THEN it stops at the batch saying why, rather than waiting forever
    let error = wait_for("the sink to report the batch", LONG, || async {
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/jdbc").unwrap_or_default())
                .unwrap_or_default();
        Ok(status["last_error"]
            .as_str()
            .filter(|e| e.contains("is a batch of 6 messages"))
            .map(str::to_owned))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(
        error.contains("compressed with LZ4")
            && error.contains("more than the 5242880 bytes")
            && error.contains("pulsar-admin topics skip"),
        "{error}"
    );
    ensure!(sluice.interrupt().await?.success());
    // having applied every row before the batch and none of it (the
    // client goes on to the entries after it meanwhile)
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items ORDER BY id")
        .fetch_all(&db)
        .await?;
    assert_eq!(
        ids.iter()
            .filter(|id| **id <= 306)
            .copied()
            .collect::<Vec<_>>(),
        (1..=300).collect::<Vec<_>>()
    );
    ensure!(ids.iter().all(|id| *id <= 606), "{ids:?}");
    // and the batch is still on the subscription
    let backlog = sluice_tests::backlog(&input, "public/default/jdbc")?;
    ensure!(backlog.is_some_and(|n| n >= 1), "backlog {backlog:?}");
    Ok(())
}

/// The text of a chunked row, as the Java publisher makes it.
fn chunked_text(segment: &str, id: i64) -> String {
    fn base36(mut n: u64) -> String {
        let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut out = Vec::new();
        loop {
            out.push(digits[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).unwrap_or_default()
    }
    let mut text = format!("{segment} row {id}");
    let mut n = 0u64;
    while text.len() < 10_000_000 {
        text.push_str(&base36((n * 7919) % 1_000_003));
        text.push(',');
        n += 1;
    }
    text
}

#[tokio::test]
async fn values_the_java_client_sent_in_interleaved_chunks_arrive_whole() -> anyhow::Result<()> {
    // GIVEN 10 MB rows that two Java producers sent at once in chunks of
    // 1 MiB, uncompressed, and compressed with LZ4 and with ZLIB
    let name = unique("chunked");
    let input = topic(&name);
    let segments = ["NONE:chunked", "LZ4:chunked", "ZLIB:chunked"];
    let mut args = vec![sluice_tests::PULSAR_URL, &input, "2"];
    args.extend(segments);
    let sent = sluice_tests::java_lines("PublishCompressed.java", &args)?;
    ensure!(sent.len() == segments.len(), "{sent:?}");

    // WHEN a jdbc sink reads them
    let (db, sluice) = jdbc_sink(&name, &input).await?;

    // THEN each row arrives whole
    wait_for("12 rows", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&db)
            .await?;
        Ok((n == 12).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(sluice.interrupt().await?.success());
    let got = table(&db).await?;
    let mut id = 0;
    for segment in segments {
        for _ in 0..4 {
            id += 1;
            let want = chunked_text(segment, id);
            let v = got.get(&id).with_context(|| format!("row {id}"))?;
            ensure!(
                v.len() == want.len() && *v == want,
                "row {id} differs ({} bytes)",
                v.len()
            );
        }
    }
    Ok(())
}

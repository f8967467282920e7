//! The database sink's failure handling by error class, on Postgres,
//! MariaDB and SQLite: a record the target refuses is dead-lettered with
//! the engine's code and its neighbours land; a transient failure is
//! retried, visibly, until it passes; a statement never outgrows what the
//! target takes in bytes.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::json;
use sluice_tests::sink::{pg_url, sink_section, sinks_config, sqlite};
use sluice_tests::{Sluice, free_port, mariadb, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// A plain JSON row on `items`: key `{"id"}`, value `{"id","v"}`.
fn row(id: i64, v: serde_json::Value) -> (String, Option<String>) {
    (
        json!({"id": id}).to_string(),
        Some(json!({"id": id, "v": v}).to_string()),
    )
}

/// One engine under test: its URL, and how to read `items`.
enum Target {
    Postgres(tokio_postgres::Client, String),
    MariaDb(sqlx::MySqlPool, String),
    Sqlite(sqlx::SqlitePool, String),
}

impl Target {
    fn url(&self) -> &str {
        match self {
            Self::Postgres(_, u) | Self::MariaDb(_, u) | Self::Sqlite(_, u) => u,
        }
    }

    /// `(id, length of v)` of every row of `items`, by id.
    async fn rows(&self) -> anyhow::Result<Vec<(i64, i64)>> {
        const Q: &str = "SELECT id, length(v) FROM items ORDER BY id";
        Ok(match self {
            Self::Postgres(db, _) => db
                .query(
                    "SELECT id::bigint, length(v)::bigint FROM items ORDER BY id",
                    &[],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            Self::MariaDb(db, _) => {
                sqlx::query_as::<_, (i64, i64)>(
                    "SELECT CAST(id AS SIGNED), CAST(length(v) AS SIGNED) FROM items ORDER BY id",
                )
                .fetch_all(db)
                .await?
            }
            Self::Sqlite(db, _) => sqlx::query_as::<_, (i64, i64)>(Q).fetch_all(db).await?,
        })
    }
}

/// A target with an empty `items` table made by `ddl` for each engine.
async fn target(
    engine: &str,
    name: &str,
    dir: &std::path::Path,
    ddl: &str,
) -> anyhow::Result<Target> {
    Ok(match engine {
        "postgres" => {
            let db = pg::create_database(name).await?;
            db.batch_execute(ddl).await?;
            Target::Postgres(db, pg_url(name))
        }
        "mariadb" => {
            let db = mariadb::create_database(name).await?;
            sqlx::raw_sql(ddl).execute(&db).await?;
            Target::MariaDb(db, mariadb::url(name))
        }
        _ => {
            let path = dir.join("target.db");
            let db = sqlite(&path).await?;
            sqlx::raw_sql(ddl).execute(&db).await?;
            Target::Sqlite(db, format!("sqlite://{}", path.display()))
        }
    })
}

/// Each dead letter on `reader`'s topic: the record's id and its error.
async fn dead_letters(
    reader: &magnetar::runtime_tokio::Consumer,
    count: usize,
    sluice: &Sluice,
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    while out.len() < count {
        let msg = reader
            .receive_with_timeout(LONG)
            .await?
            .context("fewer dead letters than expected")
            .with_context(|| sluice.log())?;
        let (payload, props) = sluice_tests::message_parts(&msg);
        let value: serde_json::Value = serde_json::from_slice(&payload)?;
        let error = props
            .into_iter()
            .find(|(k, _)| k == "sluice.error")
            .map(|(_, v)| v)
            .unwrap_or_default();
        out.push((value["id"].as_i64().unwrap_or(-1), error));
    }
    out.sort();
    Ok(out)
}

/// Under each guarantee, [`record_errors_under`].
async fn record_errors(engine: &str, ddl: &str, codes: [&str; 2]) -> anyhow::Result<()> {
    for guarantee in ["ATLEAST_ONCE", "EFFECTIVELY_ONCE"] {
        record_errors_under(guarantee, engine, ddl, codes)
            .await
            .with_context(|| format!("under {guarantee}"))?;
    }
    Ok(())
}

/// A record the target refuses for its value (a data exception) and one it
/// refuses for a constraint are dead-lettered with the engine's code; the
/// records around them land, and so do records published afterwards. The
/// records after a refused one in the same batch are written before it is
/// tried again: under EFFECTIVELY_ONCE their marks must not make it look
/// applied.
async fn record_errors_under(
    guarantee: &str,
    engine: &str,
    ddl: &str,
    codes: [&str; 2],
) -> anyhow::Result<()> {
    // GIVEN a target whose `v` holds at most 5 characters and no null, and
    // five records of which the 2nd is too long and the 4th null
    let name = unique(&format!("jdbc-err-{engine}")).replace('-', "_");
    let dir = temp_dir(&name)?;
    let target = target(engine, &name, &dir, ddl).await?;
    let topic = sluice_tests::topic(&name);
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let reader = sluice_tests::reader(&dlq).await?;
    sluice_tests::publish(
        &topic,
        &[
            row(1, json!("a")),
            row(2, json!("far too long")),
            row(3, json!("c")),
            row(4, serde_json::Value::Null),
            row(5, json!("e")),
        ],
    )
    .await?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "target",
                &topic,
                target.url(),
                &format!(
                    "    processingGuarantees: {guarantee}\n    deadLetterTopic: {dlq}\n    maxMessageRetries: 1\n"
                ),
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // WHEN the sink applies them, and then one more record
    let dead = dead_letters(&reader, 2, &sluice).await?;
    sluice_tests::publish(&topic, &[row(6, json!("f"))]).await?;

    // THEN the two refused records are dead-lettered with the engine's code
    // for each, and the other four rows land
    ensure!(
        dead.len() == 2 && dead[0].0 == 2 && dead[1].0 == 4,
        "dead letters: {dead:?}"
    );
    for ((_, error), code) in dead.iter().zip(codes) {
        ensure!(
            error.contains(code),
            "{code} not in the dead letter's error: {error}"
        );
    }
    let rows = wait_for("rows 1, 3, 5 and 6", LONG, || async {
        let rows = target.rows().await?;
        Ok((rows.len() == 4).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(rows, [(1, 1), (3, 1), (5, 1), (6, 1)]);
    let status = sluice.get("/connectors/target").context("no status")?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(status["dead_lettered"], 2, "{status}");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn postgres_data_and_integrity_errors_are_dead_lettered_with_their_sqlstate()
-> anyhow::Result<()> {
    record_errors(
        "postgres",
        "CREATE TABLE items (id int PRIMARY KEY, v varchar(5) NOT NULL)",
        ["SQLSTATE 22001", "SQLSTATE 23502"],
    )
    .await
}

#[tokio::test]
async fn mariadb_data_and_integrity_errors_are_dead_lettered_with_their_number()
-> anyhow::Result<()> {
    record_errors(
        "mariadb",
        "CREATE TABLE items (id int PRIMARY KEY, v varchar(5) NOT NULL)",
        ["MySQL error 1406", "MySQL error 1048"],
    )
    .await
}

#[tokio::test]
async fn sqlite_check_and_not_null_errors_are_dead_lettered_with_their_code() -> anyhow::Result<()>
{
    // SQLite does not enforce varchar lengths; a CHECK does.
    record_errors(
        "sqlite",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL CHECK (length(v) <= 5))",
        ["SQLite result code 275", "SQLite result code 1299"],
    )
    .await
}

#[tokio::test]
async fn a_busy_sqlite_file_is_retried_until_it_is_free() -> anyhow::Result<()> {
    // GIVEN a SQLite target that another process holds a write lock on
    let name = unique("jdbc-busy").replace('-', "_");
    let dir = temp_dir(&name)?;
    let target = target(
        "sqlite",
        &name,
        &dir,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)",
    )
    .await?;
    let Target::Sqlite(pool, url) = &target else {
        unreachable!()
    };
    let mut lock = pool.acquire().await?;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *lock).await?;
    let topic = sluice_tests::topic(&name);
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    sluice_tests::publish(&topic, &[row(1, json!("a")), row(2, json!("b"))]).await?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "target",
                &topic,
                url,
                &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n"),
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // WHEN the sink finds the file busy, and the lock is then released
    let error = wait_for("the busy file to show", LONG, || async {
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/target").unwrap_or_default())
                .unwrap_or_default();
        Ok(status["last_error"]
            .as_str()
            .filter(|e| e.contains("busy"))
            .map(str::to_owned))
    })
    .await
    .with_context(|| sluice.log())?;
    sqlx::raw_sql("ROLLBACK").execute(&mut *lock).await?;
    drop(lock);

    // THEN the retries show, both rows land, and nothing is dead-lettered
    ensure!(error.contains("SQLite result code 5"), "{error}");
    let rows = wait_for("both rows", LONG, || async {
        let rows = target.rows().await?;
        Ok((rows.len() == 2).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(rows, [(1, 1), (2, 1)]);
    ensure!(
        sluice.log().contains("write failed; retrying"),
        "{}",
        sluice.log()
    );
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/target").context("no status")?)?;
    assert_eq!(status["dead_lettered"], 0, "{status}");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

/// Rows of `size` bytes of text, as plain JSON rows.
fn wide_rows(ids: std::ops::RangeInclusive<i64>, size: usize) -> Vec<(String, Option<String>)> {
    ids.map(|id| row(id, json!("x".repeat(size)))).collect()
}

/// Four rows of 4.8 MB, published before the sink starts so that they come
/// in one batch, land on `engine`; with `oversized`, a row over the
/// target's limit between them is dead-lettered with the reason.
async fn wide_batch(
    engine: &str,
    ddl: &str,
    oversized: Option<(usize, &str)>,
) -> anyhow::Result<()> {
    // GIVEN a target and four 4.8 MB rows (19.2 MB: more than MariaDB's
    // max_allowed_packet of 16 MiB in one statement), then a small one
    let name = unique(&format!("jdbc-wide-{engine}")).replace('-', "_");
    let dir = temp_dir(&name)?;
    let target = target(engine, &name, &dir, ddl).await?;
    let topic = sluice_tests::topic(&name);
    let dlq = sluice_tests::topic(&format!("{name}-dlq"));
    let reader = sluice_tests::reader(&dlq).await?;
    let mut records = wide_rows(1..=4, 4_800_000);
    if let Some((size, _)) = oversized {
        records.extend(wide_rows(5..=5, size));
    }
    records.push(row(6, json!("small")));
    sluice_tests::publish(&topic, &records).await?;
    let port = free_port()?;
    let sluice = Sluice::start(
        &dir,
        &sinks_config(
            port,
            &[sink_section(
                "target",
                &topic,
                target.url(),
                &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n"),
                "      tableName: items\n      insertMode: UPSERT\n",
            )],
        ),
        port,
    )?;

    // WHEN the sink applies them
    let rows = wait_for("rows 1-4 and 6", LONG, || async {
        let rows = target.rows().await?;
        Ok((rows.len() == 5).then_some(rows))
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN every row lands whole, and only the oversized one is
    // dead-lettered, with the reason
    assert_eq!(
        rows,
        [
            (1, 4_800_000),
            (2, 4_800_000),
            (3, 4_800_000),
            (4, 4_800_000),
            (6, 5)
        ]
    );
    if let Some((_, reason)) = oversized {
        let dead = dead_letters(&reader, 1, &sluice).await?;
        ensure!(dead[0].0 == 5, "dead letters: {dead:?}");
        ensure!(dead[0].1.contains(reason), "{}", dead[0].1);
    }
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/target").context("no status")?)?;
    assert_eq!(
        status["dead_lettered"],
        u64::from(oversized.is_some()),
        "{status}"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn mariadb_statements_fit_max_allowed_packet() -> anyhow::Result<()> {
    wide_batch(
        "mariadb",
        "CREATE TABLE items (id int PRIMARY KEY, v longtext)",
        Some((17_000_000, "max_allowed_packet")),
    )
    .await
}

#[tokio::test]
async fn postgres_takes_a_batch_of_wide_rows() -> anyhow::Result<()> {
    wide_batch(
        "postgres",
        "CREATE TABLE items (id int PRIMARY KEY, v text)",
        None,
    )
    .await
}

#[tokio::test]
async fn sqlite_takes_a_batch_of_wide_rows() -> anyhow::Result<()> {
    wide_batch(
        "sqlite",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)",
        None,
    )
    .await
}

//! The database sink on each target: Postgres changes captured by the CDC
//! source and applied to MariaDB and SQLite; hostile names on all three
//! engines; the plain-row modes; tables and columns created on demand; and
//! `sluice check` on missing privileges. Real databases and the real broker.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sluice_tests::sink::{pg_url, quoted, sink_section, sinks_config, sqlite};
use sluice_tests::{PULSAR_URL, Sluice, free_port, mariadb, pg, temp_dir, unique, wait_for};
use sqlx::Row;
use sqlx::mysql::MySqlPool;
use sqlx::sqlite::SqlitePool;

const LONG: Duration = Duration::from_secs(120);

/// A row as canonical text, column by column, to compare across engines.
type Rows = Vec<Vec<Option<String>>>;

/// `2024-01-15T08:01:00.25Z` and `2024-01-15 08:01:00.250000` both as the
/// latter.
fn canonical_timestamp(text: &str) -> String {
    let t = text.replace('T', " ");
    let t = t.trim_end_matches('Z');
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    format!("{whole}.{fraction:0<6}")
}

/// Timestamps and JSON documents in canonical form; other columns as read.
fn canonical(mut rows: Rows, timestamp: usize, json: usize) -> Rows {
    for row in &mut rows {
        if let Some(t) = row[timestamp].take() {
            row[timestamp] = Some(canonical_timestamp(&t));
        }
        if let Some(j) = row[json].take() {
            row[json] = Some(serde_json::from_str::<Value>(&j).map_or(j, |v| v.to_string()));
        }
    }
    rows
}

const SOURCE_SCHEMA: &str = "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL,
    total numeric(10,2), created timestamptz, due date, flag boolean, payload bytea, meta jsonb, note text);
    ALTER TABLE orders ALTER COLUMN note SET STORAGE EXTERNAL;";

const MARIADB_SCHEMA: &str = "CREATE TABLE orders (id INT PRIMARY KEY, status VARCHAR(32) NOT NULL,
    total DECIMAL(10,2), created DATETIME(6), due DATE, flag BOOLEAN, payload VARBINARY(16), meta JSON,
    note LONGTEXT)";

const SQLITE_SCHEMA: &str = "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL,
    total TEXT, created TIMESTAMP, due DATE, flag BOOLEAN, payload BLOB, meta JSON, note TEXT)";

async fn source_rows(db: &tokio_postgres::Client) -> anyhow::Result<Rows> {
    let rows = db
        .query(
            "SELECT id::text, status, total::text, to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
             due::text, flag::text, encode(payload, 'hex'), meta::text, note FROM orders ORDER BY orders.id",
            &[],
        )
        .await?;
    Ok(canonical(
        rows.iter()
            .map(|r| (0..9).map(|i| r.get::<_, Option<String>>(i)).collect())
            .collect(),
        3,
        7,
    ))
}

async fn mariadb_rows(db: &MySqlPool) -> anyhow::Result<Rows> {
    let rows = sqlx::query(
        "SELECT CAST(id AS CHAR), status, CAST(total AS CHAR), DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s.%f'),
         CAST(due AS CHAR), CASE WHEN flag IS NULL THEN NULL WHEN flag THEN 'true' ELSE 'false' END,
         LOWER(HEX(payload)), CAST(meta AS CHAR), note FROM orders ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    Ok(canonical(
        rows.iter().map(|r| mariadb::texts(r, 9)).collect(),
        3,
        7,
    ))
}

async fn sqlite_rows(db: &SqlitePool) -> anyhow::Result<Rows> {
    let rows = sqlx::query(
        "SELECT CAST(id AS TEXT), status, total, created, due,
         CASE WHEN flag IS NULL THEN NULL WHEN flag THEN 'true' ELSE 'false' END,
         CASE WHEN payload IS NULL THEN NULL ELSE lower(hex(payload)) END, meta, note
         FROM orders ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    Ok(canonical(
        rows.iter()
            .map(|r| (0..9).map(|i| r.get::<Option<String>, _>(i)).collect())
            .collect(),
        3,
        7,
    ))
}

fn assert_rows_equal(target: &str, expected: &Rows, actual: &Rows) {
    assert_eq!(expected.len(), actual.len(), "{target}: row count");
    for (e, a) in expected.iter().zip(actual) {
        assert_eq!(e, a, "{target}");
    }
}

#[tokio::test]
async fn cdc_into_mariadb_and_sqlite_ends_with_equal_tables() -> anyhow::Result<()> {
    // GIVEN a Postgres source, a MariaDB and a SQLite target with matching
    // tables, and one pipeline feeding both through Pulsar
    let name = unique("jdbc-xdb").replace('-', "_");
    let source = pg::create_database(&name).await?;
    source.batch_execute(SOURCE_SCHEMA).await?;
    source
        .batch_execute(
            "INSERT INTO orders SELECT g, 'new', g * 1.25,
               '2024-01-15 10:00:00.25+02'::timestamptz + g * interval '1 minute', DATE '2024-02-29' + g,
               g % 2 = 0, decode(lpad(to_hex(g), 4, '0'), 'hex'),
               jsonb_build_object('n', g, 'tags', jsonb_build_array('a', null)),
               CASE WHEN g BETWEEN 100 AND 150 THEN repeat('n', 5000) ELSE 'short ' || g END
             FROM generate_series(1, 200) g;",
        )
        .await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql(MARIADB_SCHEMA).execute(&maria).await?;
    let dir = temp_dir(&name)?;
    let sqlite_path = dir.join("archive.db");
    let lite = sqlite(&sqlite_path).await?;
    sqlx::raw_sql(SQLITE_SCHEMA).execute(&lite).await?;
    let port = free_port()?;
    let sink = |sink: &str, url: &str| {
        format!(
            "  - name: {sink}\n    className: jdbc\n    topicsPattern: \"persistent://public/default/{name}\\\\..*\"\n\
             \x20   sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n    configs:\n\
             \x20     jdbcUrl: {url}\n      inputFormat: DEBEZIUM\n      batchSize: 100\n      timeoutMs: 50\n"
        )
    };
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: cdc\n    className: postgres-cdc\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         sinks:\n{}{}",
        sink(
            "shipping",
            &format!("jdbc:mysql://127.0.0.1:3306/{name}?user=sluice&password=sluice")
        ),
        sink("archive", &format!("jdbc:sqlite:{}", sqlite_path.display())),
        pw = pg::PASSWORD
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    let count_in_both = |n: i64, filter: &'static str| {
        let (maria, lite) = (&maria, &lite);
        async move {
            let sql = format!("SELECT count(*) FROM orders WHERE {filter}");
            let a: i64 = sqlx::query_scalar(&sql).fetch_one(maria).await?;
            let b: i64 = sqlx::query_scalar(&sql).fetch_one(lite).await?;
            Ok((a == n && b == n).then_some(()))
        }
    };
    wait_for("the snapshot in both targets", LONG, || {
        count_in_both(200, "1 = 1")
    })
    .await
    .with_context(|| sluice.log())?;

    // WHEN rows are updated (leaving the TOASTed note unchanged), deleted,
    // re-keyed, nulled and inserted
    source
        .batch_execute(
            "UPDATE orders SET status = 'paid', total = total + 1, flag = NOT flag WHERE id % 3 = 0;
             DELETE FROM orders WHERE id % 10 = 0;
             UPDATE orders SET id = id + 1000 WHERE id BETWEEN 1 AND 5;
             UPDATE orders SET meta = NULL, payload = NULL, created = NULL, flag = NULL WHERE id = 7;
             INSERT INTO orders (id, status, note) VALUES (-1, 'sentinel', 'end');",
        )
        .await?;
    wait_for("the sentinel in both targets", LONG, || {
        count_in_both(1, "id = -1")
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN both targets equal the source, row by row
    let expected = source_rows(&source).await?;
    assert_eq!(expected.len(), 200 - 20 + 1);
    assert_rows_equal("mariadb", &expected, &mariadb_rows(&maria).await?);
    assert_rows_equal("sqlite", &expected, &sqlite_rows(&lite).await?);
    ensure!(sluice.interrupt().await?.success());
    let _ = source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await;
    Ok(())
}

/// A sink section: the `jdbc` sink `sink` on `topic`, with extra sink lines
/// and extra `configs` lines.
#[tokio::test]
async fn hostile_table_and_column_names_stay_names_on_every_engine() -> anyhow::Result<()> {
    // GIVEN, on each engine, a table and columns named with quotes,
    // semicolons, comments, unicode and reserved words, next to a table
    // `victim` that an injection would drop
    let name = unique("jdbc-hostile").replace('-', "_");
    let table = "Ordér \"items\"; DROP TABLE victim; --";
    let key = "key\"); --";
    let columns = ["select", "it's", "naïve ☃", "back`tick"];
    let create = |mysql: bool| {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("{} VARCHAR(40)", quoted(c, mysql)))
            .collect();
        format!(
            "CREATE TABLE {} ({} INT PRIMARY KEY, {}); CREATE TABLE victim (id INT PRIMARY KEY); INSERT INTO victim VALUES (1);",
            quoted(table, mysql),
            quoted(key, mysql),
            cols.join(", ")
        )
    };
    let pg_db = pg::create_database(&name).await?;
    pg_db.batch_execute(&create(false)).await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql(&create(true)).execute(&maria).await?;
    let dir = temp_dir(&name)?;
    let lite = sqlite(&dir.join("hostile.db")).await?;
    sqlx::raw_sql(&create(false)).execute(&lite).await?;

    // WHEN rows naming those columns are upserted into that table, one is
    // updated and one deleted by a null value
    let topic = sluice_tests::topic(&name);
    let row = |id: i64, v: &str| {
        let mut object = serde_json::Map::new();
        object.insert(key.to_owned(), json!(id));
        for c in columns {
            object.insert(c.to_owned(), json!(format!("{v} {c}")));
        }
        (
            json!({ key: id }).to_string(),
            Some(Value::Object(object).to_string()),
        )
    };
    sluice_tests::publish(
        &topic,
        &[
            row(1, "a"),
            row(2, "b"),
            row(1, "c"),
            (json!({ key: 2 }).to_string(), None),
            row(3, "end"),
        ],
    )
    .await?;
    let configs = format!(
        "      tableName: '{table}'\n      insertMode: UPSERT\n      nullValueAction: DELETE\n"
    );
    let port = free_port()?;
    let sqlite_url = format!("sqlite:{}", dir.join("hostile.db").display());
    let config = sinks_config(
        port,
        &[
            sink_section("pg", &topic, &pg_url(&name), "", &configs),
            sink_section("maria", &topic, &mariadb::url(&name), "", &configs),
            sink_section("lite", &topic, &sqlite_url, "", &configs),
        ],
    );
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN every engine holds exactly rows 1 (updated) and 3, and `victim` is intact
    let select = |mysql: bool| {
        let cols: Vec<String> = columns.iter().map(|c| quoted(c, mysql)).collect();
        format!(
            "SELECT CAST({k} AS CHAR(10)), {} FROM {} ORDER BY {k}",
            cols.join(", "),
            quoted(table, mysql),
            k = quoted(key, mysql)
        )
    };
    let expected: Rows = [(1, "c"), (3, "end")]
        .iter()
        .map(|(id, v)| {
            let mut r = vec![Some(id.to_string())];
            r.extend(columns.iter().map(|c| Some(format!("{v} {c}"))));
            r
        })
        .collect();
    let done = |rows: &Rows| rows.last().is_some_and(|r| r[0].as_deref() == Some("3"));
    let pg_select = select(false).replace("CHAR(10)", "text");
    let pg_rows = wait_for("the rows in postgres", LONG, || {
        let (db, sql) = (&pg_db, &pg_select);
        async move {
            let rows: Rows = db
                .query(sql.as_str(), &[])
                .await?
                .iter()
                .map(|r| (0..5).map(|i| r.get::<_, Option<String>>(i)).collect())
                .collect();
            Ok(done(&rows).then_some(rows))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(pg_rows, expected, "postgres");
    let maria_rows = wait_for("the rows in mariadb", LONG, || {
        let (db, sql) = (&maria, select(true));
        async move {
            let rows: Rows = sqlx::query(&sql)
                .fetch_all(db)
                .await?
                .iter()
                .map(|r| mariadb::texts(r, 5))
                .collect();
            Ok(done(&rows).then_some(rows))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(maria_rows, expected, "mariadb");
    let sqlite_select = select(false).replace("CHAR(10)", "TEXT");
    let lite_rows = wait_for("the rows in sqlite", LONG, || {
        let (db, sql) = (&lite, sqlite_select.clone());
        async move {
            let rows: Rows = sqlx::query(&sql)
                .fetch_all(db)
                .await?
                .iter()
                .map(|r| (0..5).map(|i| r.get::<Option<String>, _>(i)).collect())
                .collect();
            Ok(done(&rows).then_some(rows))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(lite_rows, expected, "sqlite");
    let victims: i64 = pg_db
        .query_one("SELECT count(*) FROM victim", &[])
        .await?
        .get(0);
    let maria_victims: i64 = sqlx::query_scalar("SELECT count(*) FROM victim")
        .fetch_one(&maria)
        .await?;
    let lite_victims: i64 = sqlx::query_scalar("SELECT count(*) FROM victim")
        .fetch_one(&lite)
        .await?;
    assert_eq!((victims, maria_victims, lite_victims), (1, 1, 1));
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

async fn pg_items(db: &tokio_postgres::Client, table: &str) -> anyhow::Result<Vec<(i32, String)>> {
    Ok(db
        .query(&format!("SELECT id, v FROM {table} ORDER BY id"), &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

fn item(id: i32, v: &str) -> (String, Option<String>) {
    (
        format!("{{\"id\":{id}}}"),
        Some(format!("{{\"id\":{id},\"v\":\"{v}\"}}")),
    )
}

#[tokio::test]
async fn insert_update_and_fail_modes_dead_letter_what_they_refuse() -> anyhow::Result<()> {
    // GIVEN three tables, one per mode, and a dead-letter topic per sink
    let name = unique("jdbc-modes").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(
        "CREATE TABLE ins (id int PRIMARY KEY, v text NOT NULL);
         CREATE TABLE upd (id int PRIMARY KEY, v text NOT NULL);
         CREATE TABLE fail (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO upd VALUES (1, 'old'), (2, 'old');",
    )
    .await?;
    let mut sections = Vec::new();
    let mut dead_letters = Vec::new();
    for (mode, messages) in [
        // INSERT: a second insert of key 1 is refused
        (
            "ins",
            vec![item(1, "a"), item(2, "b"), item(1, "dup"), item(3, "end")],
        ),
        // UPDATE: key 9 has no row to update
        ("upd", vec![item(1, "new"), item(9, "none"), item(2, "end")]),
        // FAIL: a null value is refused
        (
            "fail",
            vec![
                item(1, "a"),
                ("{\"id\":1}".to_owned(), None),
                item(2, "end"),
            ],
        ),
    ] {
        let topic = sluice_tests::topic(&format!("{name}-{mode}"));
        let dlq = sluice_tests::topic(&format!("{name}-{mode}-dlq"));
        dead_letters.push(sluice_tests::reader(&dlq).await?);
        sluice_tests::publish(&topic, &messages).await?;
        let insert_mode = match mode {
            "ins" => "INSERT",
            "upd" => "UPDATE",
            _ => "UPSERT",
        };
        sections.push(sink_section(
            mode,
            &topic,
            &pg_url(&name),
            &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 1\n"),
            &format!(
                "      tableName: {mode}\n      insertMode: {insert_mode}\n      nullValueAction: FAIL\n"
            ),
        ));
    }

    // WHEN the three sinks run
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = Sluice::start(&dir, &sinks_config(port, &sections), port)?;

    // THEN each refused record is dead-lettered, and the others are applied
    let mut refused = Vec::new();
    for reader in &mut dead_letters {
        let msg = reader
            .receive_with_timeout(LONG)
            .await?
            .context("nothing on a dead-letter topic")
            .with_context(|| sluice.log())?;
        refused.push(String::from_utf8_lossy(&msg.payload).into_owned());
    }
    assert!(
        refused[0].ends_with("{\"id\":1,\"v\":\"dup\"}"),
        "{refused:?}"
    );
    assert!(
        refused[1].ends_with("{\"id\":9,\"v\":\"none\"}"),
        "{refused:?}"
    );
    assert_eq!(refused[2], "", "the null value");
    for (table, expected) in [
        ("ins", vec![(1, "a"), (2, "b"), (3, "end")]),
        ("upd", vec![(1, "new"), (2, "end")]),
        ("fail", vec![(1, "a"), (2, "end")]),
    ] {
        let expected: Vec<(i32, String)> = expected
            .iter()
            .map(|(i, v)| (*i, (*v).to_owned()))
            .collect();
        let rows = wait_for(&format!("the last row of {table}"), LONG, || {
            let db = &db;
            async move {
                let rows = pg_items(db, table).await?;
                Ok(rows.last().is_some_and(|r| r.1 == "end").then_some(rows))
            }
        })
        .await
        .with_context(|| sluice.log())?;
        assert_eq!(rows, expected, "{table}");
    }
    for reader in &mut dead_letters {
        ensure!(
            reader
                .receive_with_timeout(Duration::from_millis(500))
                .await?
                .is_none(),
            "one dead letter per sink"
        );
    }
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn missing_tables_and_columns_are_created_when_asked() -> anyhow::Result<()> {
    // GIVEN empty MariaDB and SQLite databases, and rows whose later ones
    // carry columns the first did not
    let name = unique("jdbc-auto").replace('-', "_");
    let maria = mariadb::create_database(&name).await?;
    let dir = temp_dir(&name)?;
    let sqlite_path = dir.join("auto.db");
    let topic = sluice_tests::topic(&name);
    sluice_tests::publish(
        &topic,
        &[
            (
                "{\"sku\":\"a-1\"}".to_owned(),
                Some("{\"sku\":\"a-1\",\"name\":\"anvil\"}".to_owned()),
            ),
            (
                "{\"sku\":\"b-2\"}".to_owned(),
                Some(
                    "{\"sku\":\"b-2\",\"name\":\"bolt\",\"qty\":7,\"price\":1.5,\"tags\":[\"x\"]}"
                        .to_owned(),
                ),
            ),
        ],
    )
    .await?;

    // WHEN the sinks run with autoCreateTable and autoAddColumns
    let configs = "      tableName: stock\n      insertMode: UPSERT\n      autoCreateTable: true\n      autoAddColumns: true\n";
    let port = free_port()?;
    let config = sinks_config(
        port,
        &[
            sink_section("maria", &topic, &mariadb::url(&name), "", configs),
            sink_section(
                "lite",
                &topic,
                &format!("sqlite:{}", sqlite_path.display()),
                "",
                configs,
            ),
        ],
    );
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN both have the table, with every column, and both rows
    let query = "SELECT sku, name, CAST(qty AS CHAR), CAST(price AS CHAR), CAST(tags AS CHAR) FROM stock ORDER BY sku";
    let expected: Rows = vec![
        vec![Some("a-1".into()), Some("anvil".into()), None, None, None],
        vec![
            Some("b-2".into()),
            Some("bolt".into()),
            Some("7".into()),
            Some("1.5".into()),
            Some("[\"x\"]".into()),
        ],
    ];
    let maria_rows = wait_for("both rows in mariadb", LONG, || {
        let db = &maria;
        async move {
            let Ok(rows) = sqlx::query(query).fetch_all(db).await else {
                return Ok(None);
            };
            let rows: Rows = rows.iter().map(|r| mariadb::texts(r, 5)).collect();
            Ok((rows.len() == 2).then_some(rows))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(maria_rows, expected, "mariadb");
    let lite = sqlite(&sqlite_path).await?;
    let lite_query = query.replace("AS CHAR", "AS TEXT");
    let lite_rows = wait_for("both rows in sqlite", LONG, || {
        let (db, sql) = (&lite, lite_query.clone());
        async move {
            let Ok(rows) = sqlx::query(&sql).fetch_all(db).await else {
                return Ok(None);
            };
            let rows: Rows = rows
                .iter()
                .map(|r| (0..5).map(|i| r.get::<Option<String>, _>(i)).collect())
                .collect();
            Ok((rows.len() == 2).then_some(rows))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(lite_rows, expected, "sqlite");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn check_names_missing_tables_and_privileges() -> anyhow::Result<()> {
    // GIVEN Postgres and MariaDB users that may only read and insert into
    // `items`, and a mapping to a table that does not exist
    let name = unique("jdbc-check").replace('-', "_");
    let user = format!("ro_{name}");
    let db = pg::create_database(&name).await?;
    db.batch_execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE ROLE {user} LOGIN PASSWORD 'pw'; GRANT SELECT, INSERT ON items TO {user};"
    ))
    .await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id INT PRIMARY KEY, v TEXT);
         CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw';
         GRANT SELECT, INSERT ON `{name}`.* TO '{user}'@'127.0.0.1';"
    ))
    .execute(&maria)
    .await?;
    let topic = sluice_tests::topic(&name);
    let configs = format!("      tableName: items\n      topicToTable: '{name}-other:missing'\n");
    let dir = temp_dir(&name)?;
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
                    &configs,
                ),
                sink_section(
                    "maria",
                    &topic,
                    &format!("mysql://{user}:pw@127.0.0.1:3306/{name}"),
                    "",
                    &configs,
                ),
            ],
        ),
    )?;

    // WHEN sluice check runs
    let (code, text) = sluice_tests::sluice_check(&path)?;

    // THEN it names, for both targets, the missing table and privileges, and fails
    assert_eq!(code, Some(1), "{text}");
    for expected in [
        "the user may not UPDATE, DELETE table items",
        "the target has no table missing",
    ] {
        ensure!(
            text.matches(expected).count() == 2,
            "`{expected}` not reported for both targets in:\n{text}"
        );
    }
    db.batch_execute(&format!(
        "REVOKE ALL ON items FROM {user}; DROP ROLE {user};"
    ))
    .await?;
    sqlx::raw_sql(&format!("DROP USER '{user}'@'127.0.0.1'"))
        .execute(&maria)
        .await?;
    Ok(())
}

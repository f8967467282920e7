//! TLS between the database sink and its targets: Postgres with
//! `sslmode=verify-full` and MariaDB with `ssl-mode=VERIFY_IDENTITY`, against
//! the stack's CA, and a wrong CA refused with a clear error.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::json;
use sluice_tests::sink::{sink_section, sinks_config};
use sluice_tests::{Sluice, free_port, mariadb, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// The target URLs over TLS to `localhost`, verified against `ca`: Postgres
/// as the superuser, MariaDB as `user`, which may only log in over TLS.
fn urls(name: &str, user: &str, ca: &Path) -> (String, String) {
    (
        format!(
            "jdbc:postgresql://localhost:5432/{name}?user=postgres&password={}&sslmode=verify-full&sslrootcert={}",
            pg::PASSWORD,
            ca.display()
        ),
        format!(
            "jdbc:mariadb://localhost:3306/{name}?user={user}&password=pw&sslMode=verify-full&serverSslCert={}",
            ca.display()
        ),
    )
}

#[tokio::test]
async fn rows_reach_both_targets_over_verified_tls_and_a_wrong_ca_is_refused() -> anyhow::Result<()>
{
    // GIVEN a Postgres and a MariaDB target, the MariaDB user required to
    // use TLS, and sinks that verify the servers' certificates
    let name = unique("jdbc-tls").replace('-', "_");
    let user = format!("tls_{name}");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id INT PRIMARY KEY, v TEXT);
         CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL;
         GRANT SELECT, INSERT, UPDATE, DELETE ON `{name}`.* TO '{user}'@'127.0.0.1';"
    ))
    .execute(&maria)
    .await?;
    let topic = sluice_tests::topic(&name);
    sluice_tests::publish(
        &topic,
        &[
            (
                json!({"id": 1}).to_string(),
                Some(json!({"id": 1, "v": "a"}).to_string()),
            ),
            (
                json!({"id": 2}).to_string(),
                Some(json!({"id": 2, "v": "b"}).to_string()),
            ),
        ],
    )
    .await?;
    let configs = "      tableName: items\n      insertMode: UPSERT\n";
    let dir = temp_dir(&name)?;
    let (pg_url, maria_url) = urls(&name, &user, &pg::ca());
    let port = free_port()?;
    let config = sinks_config(
        port,
        &[
            sink_section("pg", &topic, &pg_url, "", configs),
            sink_section("maria", &topic, &maria_url, "", configs),
        ],
    );
    let path = dir.join("check.yaml");
    std::fs::write(&path, &config)?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(0), "{text}");

    // WHEN the sinks run
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN both targets hold the rows, Postgres's connection encrypted
    wait_for("the rows in postgres", LONG, || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM items", &[])
            .await?
            .get(0);
        Ok((n == 2).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    wait_for("the rows in mariadb", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&maria)
            .await?;
        Ok((n == 2).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    let encrypted: Vec<bool> = db
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'sluice'",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    ensure!(
        !encrypted.is_empty() && encrypted.iter().all(|e| *e),
        "the sink's Postgres connections: {encrypted:?}"
    );
    ensure!(sluice.interrupt().await?.success());

    // AND with a CA that did not sign the servers' certificates, check and
    // run both refuse, naming the reason
    let wrong = sluice_tests::other_ca(&dir)?;
    let (pg_url, maria_url) = urls(&name, &user, &wrong);
    let port = free_port()?;
    let config = sinks_config(
        port,
        &[
            sink_section("pg", &topic, &pg_url, "", configs),
            sink_section("maria", &topic, &maria_url, "", configs),
        ],
    );
    std::fs::write(&path, &config)?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(1), "{text}");
    ensure!(
        text.matches("UnknownIssuer").count() == 2,
        "both targets should name the unknown issuer:\n{text}"
    );
    ensure!(
        !text.contains("password=pw"),
        "a password is in check's output:\n{text}"
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for("both sinks refusing", LONG, || async {
        let pg = sluice.get("/connectors/pg").unwrap_or_default();
        let maria = sluice.get("/connectors/maria").unwrap_or_default();
        Ok((pg.contains("UnknownIssuer") && maria.contains("UnknownIssuer")).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(
        !sluice.log().contains("password=pw"),
        "a password is in the log"
    );
    ensure!(sluice.interrupt().await?.success());
    sqlx::raw_sql(&format!("DROP USER '{user}'@'127.0.0.1'"))
        .execute(&maria)
        .await?;
    Ok(())
}

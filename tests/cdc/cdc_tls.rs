//! TLS between the CDC source and Postgres: `database.sslmode` with the
//! stack's CA, on the SQL connection and the replication connection alike.

use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::json;
use sluice_tests::cdc::{Cdc, cdc, drop_slot, wait_for_event, wait_for_slot};
use sluice_tests::{Sluice, pg, unique};

/// A CDC pipeline over `db` that connects to `host` with these TLS keys.
fn cdc_tls(db: &str, host: &str, tls: &str) -> anyhow::Result<Cdc> {
    let mut p = cdc(db, "ATLEAST_ONCE", tls)?;
    p.config = p.config.replace(
        "database.hostname: 127.0.0.1",
        &format!("database.hostname: {host}"),
    );
    Ok(p)
}

fn verify_full(ca: &Path) -> String {
    format!(
        "      database.sslmode: verify-full\n      database.sslrootcert: {}\n",
        ca.display()
    )
}

#[tokio::test]
async fn verify_full_encrypts_every_connection_of_the_source() -> anyhow::Result<()> {
    // GIVEN a source that connects to localhost with verify-full and the stack's CA
    let name = unique("cdc-tls").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await?;
    let p = cdc_tls(&name, "localhost", &verify_full(&pg::ca()))?;
    let path = p.dir.join("check.yaml");
    std::fs::write(&path, &p.config)?;
    let (code, text) = sluice_tests::sluice_check(&path)?;
    assert_eq!(code, Some(0), "{text}");

    // WHEN it snapshots and streams
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;
    db.batch_execute("INSERT INTO t VALUES (2)").await?;
    wait_for_event(&p.out, "row 2", |e| e.key == json!({"id": 2}))
        .await
        .with_context(|| sluice.log())?;

    // THEN both of its connections to the database are encrypted
    let rows = db
        .query(
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'sluice' ORDER BY 1",
            &[&name],
        )
        .await?;
    let connections: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        connections,
        [
            ("client backend".to_owned(), true),
            ("walsender".to_owned(), true)
        ]
    );
    sluice.interrupt().await?;
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_ca_or_host_name_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let name = unique("cdc-tls-bad").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await?;
    let probe = cdc(&name, "ATLEAST_ONCE", "")?;
    let wrong_ca = sluice_tests::other_ca(&probe.dir)?;

    for (case, host, ca, expected, remedy) in [
        (
            "an unknown CA",
            "localhost",
            wrong_ca.as_path(),
            "UnknownIssuer",
            "database.sslrootcert does not hold the CA",
        ),
        // The stack's certificate names localhost only.
        (
            "a wrong host name",
            "127.0.0.1",
            pg::ca().as_path(),
            "not valid for name",
            "database.hostname must be a name the server's certificate holds",
        ),
    ] {
        // GIVEN a source with verify-full and `case`
        let p = cdc_tls(&name, host, &verify_full(ca))?;

        // WHEN check and run connect
        let path = p.dir.join("check.yaml");
        std::fs::write(&path, &p.config)?;
        let (code, text) = sluice_tests::sluice_check(&path)?;
        let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
        sluice_tests::wait_for(case, sluice_tests::DEADLINE, || async {
            Ok(sluice.log().contains(expected).then_some(()))
        })
        .await
        .with_context(|| sluice.log())?;
        let status = sluice.get("/connectors/cdc").unwrap_or_default();
        sluice.interrupt().await?;

        // THEN both refuse, naming the connection and the reason
        assert_eq!(code, Some(1), "{case}: {text}");
        let connection = format!("connect to Postgres at {host}:5432 (sslmode verify-full)");
        ensure!(
            text.contains(&connection) && text.contains(expected) && text.contains(remedy),
            "{case}: check said:\n{text}"
        );
        ensure!(
            status.contains(expected),
            "{case}: /connectors/cdc said: {status}"
        );
        ensure!(
            db.query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&p.prefix]
            )
            .await?
            .is_none(),
            "{case}: a slot was created"
        );
    }
    Ok(())
}

#[tokio::test]
async fn verify_full_without_a_root_certificate_is_refused_at_validate() -> anyhow::Result<()> {
    // GIVEN verify-full with no CA file
    let p = cdc(
        "cdc-tls-noca",
        "ATLEAST_ONCE",
        "      database.sslmode: verify-full\n",
    )?;
    let path = p.dir.join("pipeline.yaml");
    std::fs::write(&path, &p.config)?;

    // WHEN it is validated
    let out = std::process::Command::new(sluice_tests::sluice_binary()?)
        .args(["validate", "--config"])
        .arg(&path)
        .output()?;

    // THEN the missing key is named
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    ensure!(text.contains("database.sslrootcert"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_client_certificate_authenticates_both_connections() -> anyhow::Result<()> {
    // GIVEN the role sluice_cert, which the stack's Postgres authenticates by
    // client certificate only, owning the captured table
    let name = unique("cdc-tls-cert").replace('-', "_");
    let db = pg::create_database(&name).await?;
    db.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE sluice_cert LOGIN REPLICATION; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT CREATE ON DATABASE \"{name}\" TO sluice_cert;
         CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);
         ALTER TABLE t OWNER TO sluice_cert;"
    ))
    .await?;
    let tls = sluice_tests::stack_dir().join("tls");
    let mut p = cdc_tls(
        &name,
        "localhost",
        &format!(
            "{}      database.sslcert: {}\n      database.sslkey: {}\n",
            verify_full(&pg::ca()),
            tls.join("client.pem").display(),
            tls.join("client.key").display()
        ),
    )?;
    p.config = p
        .config
        .replace("database.user: postgres", "database.user: sluice_cert")
        .replace(&format!("      database.password: {}\n", pg::PASSWORD), "");

    // WHEN the source snapshots and streams with no password
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_for_slot(&db, &p.prefix, &sluice).await?;
    db.batch_execute("INSERT INTO t VALUES (2)").await?;
    wait_for_event(&p.out, "row 2", |e| e.key == json!({"id": 2}))
        .await
        .with_context(|| sluice.log())?;

    // THEN both connections were authenticated by the certificate
    let rows = db
        .query(
            "SELECT a.backend_type, s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.usename = 'sluice_cert' ORDER BY 1",
            &[&name],
        )
        .await?;
    let connections: Vec<(String, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let dn = Some("/CN=sluice_cert".to_owned());
    assert_eq!(
        connections,
        [
            ("client backend".to_owned(), dn.clone()),
            ("walsender".to_owned(), dn)
        ]
    );
    sluice.interrupt().await?;
    drop_slot(&db, &p.prefix).await;
    Ok(())
}

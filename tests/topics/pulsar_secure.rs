//! sluice against a secured cluster: the stack's second broker
//! (`scripts/stack up pulsar-secure`) serves TLS only, with a certificate
//! from a private CA, and checks tokens and permissions. The `sluice` and
//! `sluice-oauth` roles may only produce and consume on `public/secured`
//! (and consume the transaction coordinator's assignment topic).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::secure::{self, NAMESPACE};
use sluice_tests::{Sluice, free_port, pg, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// The `pulsar:` section for the secured broker with `auth` lines.
fn pulsar_section(url: &str, ca: &Path, auth: &str) -> String {
    format!(
        "pulsar:\n  serviceUrl: {url}\n  webServiceUrl: {}\n  tlsTrustCertsFilePath: {}\n{auth}",
        secure::ADMIN_URL,
        ca.display()
    )
}

/// A Postgres → Pulsar → Postgres pipeline on the secured namespace under
/// EFFECTIVELY_ONCE.
fn pipeline(name: &str, port: u16, pulsar: &str) -> String {
    let (tenant, ns) = NAMESPACE.split_once('/').unwrap_or_default();
    format!(
        "{pulsar}http:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: {name}\n    className: postgres-cdc\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}_src\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         sinks:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: copy\n    className: jdbc\n\
         \x20   inputs: [{name}.public.items]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     jdbcUrl: postgres://127.0.0.1:5432/{name}_dst\n      userName: postgres\n      password: {pw}\n\
         \x20     tableName: items\n      inputFormat: DEBEZIUM\n      batchSize: 100\n      timeoutMs: 50\n",
        pw = pg::PASSWORD
    )
}

/// Every row of `items`, in key order.
async fn rows(db: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, String)>> {
    Ok(db
        .query("SELECT id, v FROM items ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

async fn insert(db: &tokio_postgres::Client, from: i32, to: i32) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO items SELECT g, 'v' || g FROM generate_series($1::int, $2::int) g",
        &[&from, &to],
    )
    .await?;
    Ok(())
}

/// Wait until the target holds exactly the source's rows.
async fn converged(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    sluice: &Sluice,
) -> anyhow::Result<()> {
    let expected = rows(source).await?;
    wait_for("the target to equal the source", LONG, || async {
        Ok((rows(target).await? == expected).then_some(()))
    })
    .await
    .with_context(|| sluice.log())
}

/// The pipeline with `auth`: rows written before the start, while it
/// runs, and while it is killed all land exactly once, after a restart
/// that recovers through the transaction coordinator. `during` runs while
/// the pipeline streams.
async fn secured_pipeline(
    case: &str,
    auth: &str,
    during: impl AsyncFnOnce(&tokio_postgres::Client, &Sluice) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    // GIVEN a source table with rows, an empty target, and a pipeline that
    // authenticates as a role with produce and consume on its namespace
    let name = unique(&format!("sec-{case}")).replace('-', "_");
    let source = pg::create_database(&format!("{name}_src")).await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    for db in [&source, &target] {
        db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
            .await?;
    }
    insert(&source, 1, 100).await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let config = pipeline(&name, port, &pulsar_section(secure::URL, &pg::ca(), auth));
    let path = dir.join("check.yaml");
    std::fs::write(&path, &config)?;
    let (code, check) = sluice_tests::sluice_check(&path)?;
    ensure!(code == Some(0), "check failed:\n{check}");

    // WHEN it runs, is killed with rows pending, and starts again
    let sluice = Sluice::start(&dir, &config, port)?;
    converged(&source, &target, &sluice).await?;
    during(&source, &sluice).await?;
    insert(&source, 101, 200).await?;
    sluice.kill9()?;
    insert(&source, 201, 300).await?;
    let sluice = Sluice::start(&dir, &config, port)?;
    source
        .execute("UPDATE items SET v = v || '!' WHERE id % 7 = 0", &[])
        .await?;

    // THEN the target equals the source row for row
    converged(&source, &target, &sluice).await?;
    ensure!(rows(&target).await?.len() >= 300);
    let log = sluice.log();
    ensure!(sluice.interrupt().await?.success(), "{log}");
    let _ = source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await;
    Ok(format!("{check}\n{log}"))
}

#[tokio::test]
async fn effectively_once_with_a_token_file() -> anyhow::Result<()> {
    let token = secure::auth_file("sluice.jwt");
    let output = secured_pipeline(
        "token",
        &format!(
            "  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationToken\n  authParams: file://{}\n",
            token.display()
        ),
        async |_, _| Ok(()),
    )
    .await?;
    let secret = std::fs::read_to_string(&token)?;
    ensure!(
        !output.contains(secret.trim()),
        "the token appears in the output"
    );
    // The role may not read namespace policies: check says so, and goes on.
    ensure!(
        output.contains("may not read it"),
        "check did not explain the unknown deduplication setting:\n{output}"
    );
    Ok(())
}

#[tokio::test]
async fn effectively_once_with_oauth2_refreshing_its_token() -> anyhow::Result<()> {
    let credentials = secure::auth_file("oauth2-credentials.json");
    let before = secure::issued()?["sluice-app"].as_u64().unwrap_or(0);
    let output = secured_pipeline(
        "oauth2",
        &format!(
            "  authPlugin: org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2\n  \
             authParams: '{{\"issuerUrl\": \"{}\", \"privateKey\": \"file://{}\", \"audience\": \"urn:sluice-test\"}}'\n",
            secure::ISSUER_URL,
            credentials.display()
        ),
        // The issuer's tokens live 20 s and the broker re-checks them every
        // 5 s. Each connector fetches a new token at 15 s and moves to a
        // new connection with it at 16 s: stream until both have done so
        // twice (after `check`'s token and one each at start), with no
        // error and no restart.
        async |db, sluice| {
            let mut next = 1000;
            wait_for("two token renewals per connector", LONG, || {
                next += 10;
                let from = next;
                async move {
                    insert(db, from, from + 9).await?;
                    let renewals = sluice.log().matches("token expires soon").count();
                    Ok((renewals >= 4).then_some(()))
                }
            })
            .await
            .with_context(|| sluice.log())?;
            let status: serde_json::Value =
                serde_json::from_str(&sluice.get("/connectors").context("no status")?)?;
            for c in status.as_array().context("connectors")? {
                ensure!(c["restarts"] == 0 && c["errors"] == 0, "{c}");
            }
            Ok(())
        },
    )
    .await?;
    // The first token, one per connector, and a new one per connector at
    // each renewal: every connection presented a token from the issuer.
    let issued = secure::issued()?["sluice-app"].as_u64().unwrap_or(0);
    ensure!(
        issued >= before + 7,
        "{issued} tokens issued, from {before}"
    );
    let secret = std::fs::read_to_string(&credentials)?;
    let client_secret: serde_json::Value = serde_json::from_str(&secret)?;
    let client_secret = client_secret["client_secret"].as_str().unwrap_or("none");
    ensure!(
        !output.contains(client_secret),
        "the client secret appears in the output"
    );
    Ok(())
}

#[tokio::test]
async fn effectively_once_with_a_client_certificate() -> anyhow::Result<()> {
    let (cert, key) = secure::client_certificate();
    let output = secured_pipeline(
        "mtls",
        &secure::certificate_auth(&cert, &key),
        async |_, _| Ok(()),
    )
    .await?;
    // The admin API knew the role by its certificate: it answered 403 (no
    // tenant admin), not 401 (anonymous).
    ensure!(
        output.contains("answered 403"),
        "check did not present the certificate to the admin API:\n{output}"
    );
    let key = std::fs::read_to_string(&key)?;
    let key_body = key.lines().nth(1).unwrap_or("none");
    ensure!(
        !output.contains(key_body),
        "the private key appears in the output"
    );
    Ok(())
}

/// `sluice check`, then `sluice run`, with `pulsar`: both fail, and say
/// `expected` about the connection.
async fn refused(case: &str, pulsar: &str, expected: &str, secret: &str) -> anyhow::Result<()> {
    let name = unique(&format!("sec-bad-{case}")).replace('-', "_");
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let topic = format!("persistent://{NAMESPACE}/{name}");
    let config = format!(
        "{pulsar}http:\n  listen: 127.0.0.1:{port}\nsinks:\n  - tenant: public\n    namespace: secured\n    name: out\n\
         \x20   className: file\n    inputs: [\"{topic}\"]\n    configs:\n      path: {}\n",
        dir.join("out.jsonl").display()
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, &config)?;
    let (code, check) = sluice_tests::sluice_check(&path)?;
    ensure!(code == Some(1), "{case}: check passed:\n{check}");
    ensure!(
        check.contains(expected),
        "{case}: check does not say {expected:?}:\n{check}"
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    let body = wait_for("the sink to show why it does not run", LONG, || async {
        let (code, body) = sluice.get_status("/readyz").unwrap_or_default();
        Ok((code == 503 && body.contains(expected)).then_some(body))
    })
    .await
    .with_context(|| sluice.log())?;
    for text in [&check, &body, &sluice.log()] {
        ensure!(
            !secret.is_empty() && !text.contains(secret),
            "{case}: a secret is shown"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_token_whose_exp_is_past_any_time_is_refused_not_a_panic() -> anyhow::Result<()> {
    // GIVEN a token the broker's key signed, expiring at 5e18 seconds
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let far = secure::mint(
        "sluice",
        Some(5_000_000_000_000_000_000 - now),
        "secret.key",
    )?;
    // THEN check and run both say what is wrong with it, and the process
    // keeps serving its status
    refused(
        "far-exp",
        &pulsar_section(secure::URL, &pg::ca(), &format!("  authToken: {far}\n")),
        "exp claim",
        &far,
    )
    .await
}

#[tokio::test]
async fn bad_credentials_and_bad_tls_fail_clearly_at_check_and_at_run() -> anyhow::Result<()> {
    let dir = temp_dir("sec-bad")?;
    let other_ca = sluice_tests::other_ca(&dir)?;
    let wrong = secure::mint("sluice", None, "other.key")?;
    let expired = secure::mint("sluice", Some(-60), "secret.key")?;
    let good = std::fs::read_to_string(secure::auth_file("sluice.jwt"))?;
    let good = good.trim();
    let token = |t: &str| format!("  authToken: {t}\n");
    refused(
        "wrong-token",
        &pulsar_section(secure::URL, &pg::ca(), &token(&wrong)),
        "connect to pulsar+ssl://localhost:6651",
        &wrong,
    )
    .await?;
    refused(
        "expired-token",
        &pulsar_section(secure::URL, &pg::ca(), &token(&expired)),
        "connect to pulsar+ssl://localhost:6651",
        &expired,
    )
    .await?;
    refused(
        "unknown-ca",
        &pulsar_section(secure::URL, &other_ca, &token(good)),
        "connect to pulsar+ssl://localhost:6651",
        good,
    )
    .await?;
    refused(
        "wrong-host",
        &pulsar_section("pulsar+ssl://127.0.0.1:6651", &pg::ca(), &token(good)),
        "connect to pulsar+ssl://127.0.0.1:6651",
        good,
    )
    .await?;
    // A client certificate the broker's CA did not sign, and a key that
    // is not the certificate's.
    let (cert, _) = secure::client_certificate();
    let other_key = dir.join("other-ca.key");
    let secret = std::fs::read_to_string(&other_key)?;
    let secret = secret.lines().nth(1).unwrap_or_default();
    refused(
        "unknown-client-ca",
        &pulsar_section(
            secure::URL,
            &pg::ca(),
            &secure::certificate_auth(&other_ca, &other_key),
        ),
        "the broker refused the TLS handshake",
        secret,
    )
    .await?;
    refused(
        "mismatched-key",
        &pulsar_section(
            secure::URL,
            &pg::ca(),
            &secure::certificate_auth(&cert, &other_key),
        ),
        "does not go with tlsCertFile",
        secret,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn localrun_takes_the_auth_and_tls_flags_of_pulsar_admin() -> anyhow::Result<()> {
    // GIVEN three messages on a topic of the secured namespace, and a sink
    // file as `pulsar-admin sinks localrun` takes it
    let name = unique("sec-localrun").replace('-', "_");
    let dir = temp_dir(&name)?;
    let topic = format!("persistent://{NAMESPACE}/{name}");
    let token = secure::auth_file("sluice.jwt");
    let client = magnetar::PulsarClient::builder()
        .service_url(secure::URL)
        .tls_trust_certs_pem(std::fs::read(pg::ca())?)
        .auth(std::sync::Arc::new(
            magnetar::proto::auth::TokenAuth::from_string(std::fs::read_to_string(&token)?.trim()),
        ))
        .build()
        .await?;
    let producer = client.producer(topic.clone()).create().await?;
    for i in 0..3 {
        let msg = magnetar::OutgoingMessage::with_payload(format!("{{\"n\":{i}}}").into_bytes());
        producer.send(msg.into()).await?;
    }
    producer.close().await?;
    let out = dir.join("out.jsonl");
    let file = dir.join("sink.yaml");
    std::fs::write(
        &file,
        format!(
            "tenant: public\nnamespace: secured\nname: out\nclassName: file\ninputs: [\"{topic}\"]\n\
             sourceSubscriptionPosition: Earliest\nconfigs:\n  path: {}\n",
            out.display()
        ),
    )?;

    // WHEN localrun runs it with the flags of pulsar-admin
    let mut child = std::process::Command::new(sluice_tests::sluice_binary()?)
        .arg("localrun")
        .arg("--sink-config-file")
        .arg(&file)
        .args(["--broker-service-url", secure::URL, "--use-tls", "true"])
        .args([
            "--client-auth-plugin",
            "org.apache.pulsar.client.impl.auth.AuthenticationToken",
        ])
        .arg("--client-auth-params")
        .arg(format!("file://{}", token.display()))
        .arg("--tls-trust-cert-path")
        .arg(pg::ca())
        .stderr(std::fs::File::create(dir.join("sluice.log"))?)
        .spawn()?;

    // THEN the three messages reach the file
    let seen = wait_for("three lines in the file", LONG, || async {
        let n = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count();
        Ok((n == 3).then_some(n))
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    seen.with_context(|| std::fs::read_to_string(dir.join("sluice.log")).unwrap_or_default())?;
    Ok(())
}

#[tokio::test]
async fn at_least_once_needs_only_produce_for_a_source_and_consume_for_a_sink() -> anyhow::Result<()>
{
    least_permissions("ATLEAST_ONCE", "sluice-produce").await
}

#[tokio::test]
async fn an_effectively_once_sink_needs_only_consume() -> anyhow::Result<()> {
    // The source needs produce, consume and the coordinator's topic.
    least_permissions("EFFECTIVELY_ONCE", "sluice").await
}

/// A pipeline split in two processes under `guarantee`: the source runs
/// as `source_role`, the sink as a role that may only consume.
async fn least_permissions(guarantee: &str, source_role: &str) -> anyhow::Result<()> {
    // GIVEN a source that runs as `source_role`, and a sink, in another
    // process, as a role that may only consume
    let name = unique("sec-least").replace('-', "_");
    let source = pg::create_database(&format!("{name}_src")).await?;
    let target = pg::create_database(&format!("{name}_dst")).await?;
    for db in [&source, &target] {
        db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
            .await?;
    }
    insert(&source, 1, 50).await?;
    let (tenant, ns) = NAMESPACE.split_once('/').context("namespace")?;
    let pw = pg::PASSWORD;
    let section = |role: &str| -> anyhow::Result<String> {
        let token = secure::mint(role, None, "secret.key")?;
        Ok(pulsar_section(
            secure::URL,
            &pg::ca(),
            &format!("  authToken: {token}\n"),
        ))
    };
    let dir = temp_dir(&name)?;
    let (source_port, sink_port) = (free_port()?, free_port()?);
    let source_config = format!(
        "{}http:\n  listen: 127.0.0.1:{source_port}\n\
         sources:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: {name}\n    className: postgres-cdc\n\
         \x20   processingGuarantees: {guarantee}\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}_src\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n",
        section(source_role)?
    );
    let sink_config = format!(
        "{}http:\n  listen: 127.0.0.1:{sink_port}\n\
         sinks:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: copy\n    className: jdbc\n\
         \x20   inputs: [{name}.public.items]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   processingGuarantees: {guarantee}\n    configs:\n\
         \x20     jdbcUrl: postgres://127.0.0.1:5432/{name}_dst\n      userName: postgres\n      password: {pw}\n\
         \x20     tableName: items\n      inputFormat: DEBEZIUM\n      batchSize: 100\n      timeoutMs: 50\n",
        section("sluice-consume")?
    );
    let source_dir = dir.join("source");
    let sink_dir = dir.join("sink");
    std::fs::create_dir_all(&source_dir)?;
    std::fs::create_dir_all(&sink_dir)?;

    // WHEN both run and the source table changes
    let producer = Sluice::start(&source_dir, &source_config, source_port)?;
    let consumer = Sluice::start(&sink_dir, &sink_config, sink_port)?;
    insert(&source, 51, 100).await?;
    source
        .execute("UPDATE items SET v = v || '!' WHERE id % 3 = 0", &[])
        .await?;

    // THEN the target equals the source
    let expected = rows(&source).await?;
    wait_for("the target to equal the source", LONG, || async {
        Ok((rows(&target).await? == expected).then_some(()))
    })
    .await
    .with_context(|| format!("{}\n{}", producer.log(), consumer.log()))?;
    ensure!(producer.interrupt().await?.success());
    ensure!(consumer.interrupt().await?.success());
    let _ = source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await;
    Ok(())
}

//! EFFECTIVELY_ONCE on the source side, against the real broker: records
//! reach their topic exactly once across kill -9s, and two instances of one
//! source publish one at a time, the standby taking over when the active
//! one dies. An independent reader audits the topic.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use magnetar::{OutgoingMessage, PulsarClient};
use sluice_tests::{PULSAR_URL, Sluice, free_port, temp_dir, unique, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// A datagen source named `name`, publishing `count` records to `topic`
/// under EFFECTIVELY_ONCE.
fn source_config(name: &str, topic: &str, port: u16, state: &Path, count: u64) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: {name}\n    className: datagen\n    topicName: {topic}\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n      count: {count}\n\
         \x20     ratePerSecond: 4000\n      batchSize: 50\n      stateFile: {}\n",
        state.display()
    )
}

fn generated(state: &Path) -> u64 {
    std::fs::read_to_string(state)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Every `sluice.seq` on `topic` with how often it appears: read from the
/// start by a new subscription, up to a marker published after the source
/// finished, so that nothing visible is missed.
async fn audit(topic: &str) -> anyhow::Result<BTreeMap<u64, usize>> {
    audit_full(&sluice_tests::topic(topic)).await
}

/// [`audit`] of a topic by its full name.
async fn audit_full(full: &str) -> anyhow::Result<BTreeMap<u64, usize>> {
    let mut seen = BTreeMap::new();
    for (_, props) in sluice_tests::read_topic(full).await? {
        let seq = props
            .iter()
            .find(|(k, _)| k == "sluice.seq")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .context("a message without sluice.seq")?;
        *seen.entry(seq).or_default() += 1;
    }
    Ok(seen)
}

/// Start the source once more and wait until it has published all
/// `count` records.
async fn run_to_the_end(
    dir: &Path,
    config: &str,
    port: u16,
    state: &Path,
    count: u64,
) -> anyhow::Result<Sluice> {
    let sluice = Sluice::start(dir, config, port)?;
    wait_for("every record published", LONG, || async {
        Ok((generated(state) == count).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    Ok(sluice)
}

/// (lost, duplicated) among `0..count`.
fn losses_and_duplicates(seen: &BTreeMap<u64, usize>, count: u64) -> (u64, usize) {
    let lost = (0..count).filter(|s| !seen.contains_key(s)).count() as u64;
    let duplicated = seen.values().map(|n| n - 1).sum();
    (lost, duplicated)
}

#[tokio::test]
async fn a_source_restarted_on_a_deduplicating_namespace_loses_nothing() -> anyhow::Result<()> {
    // GIVEN a namespace whose broker deduplicates by producer name, and a
    // source that keeps its producer's name across restarts, under each
    // guarantee that publishes every record
    let ns = sluice_tests::admin::create_namespace(&unique("eo-dedup"))?;
    sluice_tests::admin::enable_deduplication(&ns)?;
    let (tenant, namespace) = ns.split_once('/').context("namespace")?;
    for guarantee in ["ATLEAST_ONCE", "EFFECTIVELY_ONCE"] {
        let name = unique("dedup-restart");
        let count = 3_000;
        let dir = temp_dir(&name)?;
        let state = dir.join("gen.state");
        let port = free_port()?;
        let config = source_config(&name, &name, port, &state, count)
            .replace(
                "  - name:",
                &format!("  - tenant: {tenant}\n    namespace: {namespace}\n    name:"),
            )
            .replace("EFFECTIVELY_ONCE", guarantee);

        // WHEN it stops once a third is published, and starts again
        let sluice = Sluice::start(&dir, &config, port)?;
        wait_for("a third published", LONG, || {
            let state = state.clone();
            async move { Ok((generated(&state) >= count / 3).then_some(())) }
        })
        .await
        .with_context(|| sluice.log())?;
        ensure!(sluice.interrupt().await?.success());
        let sluice = run_to_the_end(&dir, &config, port, &state, count).await?;

        // THEN the broker kept every record published after the restart:
        // the producer went on from the sequence id the broker had for its
        // name, and none was dropped as a duplicate
        let seen = audit_full(&format!("persistent://{ns}/{name}")).await?;
        let (lost, _) = losses_and_duplicates(&seen, count);
        assert_eq!(lost, 0, "{guarantee}");
        if guarantee == "EFFECTIVELY_ONCE" {
            assert_eq!(losses_and_duplicates(&seen, count), (0, 0));
        }
        ensure!(sluice.exit_status().await?.success());
    }
    Ok(())
}

#[tokio::test]
async fn a_stranger_publishing_under_a_sources_name_is_named_not_waited_on() -> anyhow::Result<()> {
    // GIVEN a deduplicating namespace where, before the source first runs,
    // a stranger published one message under the source's producer name
    // with the largest sequence id the broker takes
    let ns = sluice_tests::admin::create_namespace(&unique("eo-squat"))?;
    sluice_tests::admin::enable_deduplication(&ns)?;
    let (tenant, namespace) = ns.split_once('/').context("namespace")?;
    let name = unique("squatted");
    let topic = format!("persistent://{ns}/{name}");
    let client = PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let squatter = client
        .producer(&topic)
        .name(format!("{ns}/{name}"))
        .initial_sequence_id(i64::MAX as u64)
        .create()
        .await?;
    squatter
        .send(OutgoingMessage::with_payload(b"squat".to_vec()).into())
        .await?;
    squatter.close().await?;

    // WHEN the source starts
    let dir = temp_dir(&name)?;
    let state = dir.join("gen.state");
    let port = free_port()?;
    let config = source_config(&name, &name, port, &state, 10)
        .replace(
            "  - name:",
            &format!("  - tenant: {tenant}\n    namespace: {namespace}\n    name:"),
        )
        .replace("EFFECTIVELY_ONCE", "ATLEAST_ONCE");
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN it says why it cannot publish, instead of waiting forever for
    // the broker to take records it drops as duplicates
    let error = wait_for("the source's error", LONG, || async {
        let status: serde_json::Value = serde_json::from_str(
            &sluice
                .get(&format!("/connectors/{name}"))
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        Ok(status["last_error"].as_str().map(str::to_owned))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(
        error.contains("another client published under this source's name"),
        "{error}"
    );
    assert_eq!(generated(&state), 0);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn each_record_reaches_the_topic_once_across_kill_9s() -> anyhow::Result<()> {
    // GIVEN an EFFECTIVELY_ONCE source of 20,000 records
    let name = unique("eo-kill");
    let count = 20_000;
    let dir = temp_dir(&name)?;
    let state = dir.join("gen.state");
    let port = free_port()?;
    let config = source_config(&name, &name, port, &state, count);

    // WHEN it is killed with SIGKILL three times on the way and started again
    for quarter in 1..=3u64 {
        let sluice = Sluice::start(&dir, &config, port)?;
        wait_for(&format!("{quarter} quarters published"), LONG, || {
            let state = state.clone();
            async move { Ok((generated(&state) >= quarter * count / 4).then_some(())) }
        })
        .await
        .with_context(|| sluice.log())?;
        sluice.kill9()?;
    }
    let sluice = run_to_the_end(&dir, &config, port, &state, count).await?;

    // THEN an independent reader finds every record once: none lost, none twice
    let seen = audit(&name).await?;
    let (lost, duplicated) = losses_and_duplicates(&seen, count);
    println!(
        "effectively once across 3 kills: {count} records, {lost} lost, {duplicated} duplicated"
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(seen.keys().last(), Some(&(count - 1)));
    ensure!(
        sluice
            .log()
            .contains("skipped records that were already published")
            || sluice.log().contains("recovered the published progress"),
        "the restart did not recover:\n{}",
        sluice.log()
    );
    // With its only connector finished, sluice exits by itself.
    ensure!(sluice.exit_status().await?.success());
    Ok(())
}

#[tokio::test]
async fn kills_while_a_commit_overlaps_the_next_transaction_lose_and_duplicate_nothing()
-> anyhow::Result<()> {
    // GIVEN an EFFECTIVELY_ONCE source of 20,000 records, whose next
    // transaction fills while the previous one commits
    let name = unique("eo-overlap");
    let count = 20_000;
    let dir = temp_dir(&name)?;
    let state = dir.join("gen.state");
    let port = free_port()?;
    let config = source_config(&name, &name, port, &state, count);

    // WHEN it dies at a send of the next transaction while the previous one
    // commits, then just after the previous one committed (the source not
    // yet told), each time with records of the next one in flight
    for point in [
        "eo-send-during-commit@3",
        "eo-committed-while-next-fills@3",
        "eo-send-during-commit@40",
        "eo-committed-while-next-fills@40",
    ] {
        let sluice = Sluice::start_with(&dir, &config, port, &[("SLUICE_FAILPOINT", point)])?;
        let status = sluice.exit_status().await?;
        let log = std::fs::read_to_string(dir.join("sluice.log"))?;
        ensure!(!status.success(), "{point}: sluice did not die:\n{log}");
        let name = point.split('@').next().unwrap_or_default();
        ensure!(
            log.contains(&format!("failpoint {name} reached")),
            "{point}: sluice died elsewhere:\n{log}"
        );
    }
    ensure!(
        generated(&state) < count,
        "the source finished before the last failpoint"
    );
    let sluice = run_to_the_end(&dir, &config, port, &state, count).await?;

    // THEN an independent reader finds every record once
    let seen = audit(&name).await?;
    let (lost, duplicated) = losses_and_duplicates(&seen, count);
    println!(
        "effectively once across 4 deaths during overlapping commits: {count} records, {lost} lost, {duplicated} duplicated"
    );
    assert_eq!((lost, duplicated), (0, 0));
    ensure!(
        sluice
            .log()
            .contains("aborted a transaction a previous instance left open"),
        "no orphan was aborted:\n{}",
        sluice.log()
    );
    ensure!(sluice.exit_status().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_second_instance_waits_as_a_standby_and_takes_over() -> anyhow::Result<()> {
    // GIVEN two instances of the same EFFECTIVELY_ONCE source, started one
    // after the other, each with its own state file
    let name = unique("eo-standby");
    let count = 20_000;
    let (dir_a, dir_b) = (
        temp_dir(&format!("{name}-a"))?,
        temp_dir(&format!("{name}-b"))?,
    );
    let (state_a, state_b) = (dir_a.join("gen.state"), dir_b.join("gen.state"));
    let (port_a, port_b) = (free_port()?, free_port()?);
    let a = Sluice::start(
        &dir_a,
        &source_config(&name, &name, port_a, &state_a, count),
        port_a,
    )?;
    wait_for("the first instance to publish", LONG, || {
        let state = state_a.clone();
        async move { Ok((generated(&state) > 0).then_some(())) }
    })
    .await
    .with_context(|| a.log())?;
    let b = Sluice::start(
        &dir_b,
        &source_config(&name, &name, port_b, &state_b, count),
        port_b,
    )?;

    // THEN the second one is a standby that publishes nothing
    wait_for("the second instance to be a standby", LONG, || {
        let status = b.get(&format!("/connectors/{name}"));
        async move {
            Ok(status
                .filter(|s| s.contains("\"state\":\"standby\""))
                .map(|_| ()))
        }
    })
    .await
    .with_context(|| b.log())?;
    ensure!(generated(&state_b) == 0, "the standby published");
    // AND it is ready, as a standby: a deployment of an active instance and
    // its standbys is whole
    let (code, ready) = b.get_status("/readyz").unwrap_or_default();
    assert_eq!(
        (code, ready.as_str()),
        (200, format!("ready\n{name}: standby\n").as_str())
    );
    let metrics = b.get("/metrics").unwrap_or_default();
    ensure!(
        metrics.contains(&format!(
            "sluice_connector_standby{{connector=\"{name}\",kind=\"source\"}} 1"
        )),
        "{metrics}"
    );
    // AND `sluice status` over both processes shows which one publishes
    let shown = std::process::Command::new(sluice_tests::sluice_binary()?)
        .args(["status", "--url", &format!("http://127.0.0.1:{port_a}")])
        .args(["--url", &format!("http://127.0.0.1:{port_b}")])
        .output()?;
    let text = String::from_utf8_lossy(&shown.stdout);
    ensure!(shown.status.success(), "{text}");
    for line in [
        format!("http://127.0.0.1:{port_a}\n  {name} (source): running, "),
        format!("http://127.0.0.1:{port_b}\n  {name} (source): standby, 0 in, 0 out\n"),
    ] {
        ensure!(text.contains(&line), "{line} not in:\n{text}");
    }

    // WHEN the active one is killed half way
    wait_for("half the records", LONG, || {
        let state = state_a.clone();
        async move { Ok((generated(&state) >= count / 2).then_some(())) }
    })
    .await
    .with_context(|| a.log())?;
    a.kill9()?;

    // THEN the standby takes over and finishes, and every record is on the
    // topic exactly once
    wait_for("the standby to finish", LONG, || {
        let state = state_b.clone();
        async move { Ok((generated(&state) == count).then_some(())) }
    })
    .await
    .with_context(|| b.log())?;
    let seen = audit(&name).await?;
    let (lost, duplicated) = losses_and_duplicates(&seen, count);
    println!("standby takeover: {count} records, {lost} lost, {duplicated} duplicated");
    assert_eq!((lost, duplicated), (0, 0));
    ensure!(b.log().contains("taking over"), "{}", b.log());
    ensure!(b.exit_status().await?.success());
    Ok(())
}

/// Publish plain rows `(sequence, id, v)` with `sluice.seq` set.
async fn publish_sequenced(topic: &str, rows: &[(u64, i64, &str)]) -> anyhow::Result<()> {
    let client = PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    // One name across calls, as a sluice source keeps across restarts: its
    // sequences are held to its own.
    let producer = client
        .producer(sluice_tests::topic(topic))
        .name(format!("sluice-{topic}-test"))
        .create()
        .await?;
    for (seq, id, v) in rows {
        let msg =
            OutgoingMessage::with_payload(format!("{{\"id\":{id},\"v\":\"{v}\"}}").into_bytes())
                .key(format!("{{\"id\":{id}}}"))
                .property("sluice.seq", seq.to_string());
        producer.send(msg.into()).await?;
    }
    producer.close().await?;
    Ok(())
}

type Read = Box<
    dyn Fn() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<(Vec<String>, i64)>>>,
    >,
>;

/// One target of the watermark test: its URL, and a look at it: the rows
/// as `id=v`, and how many applications the audit trigger recorded.
struct AuditedTarget {
    url: String,
    read: Read,
}

async fn audited_targets(
    name: &str,
    dir: &Path,
) -> anyhow::Result<Vec<(&'static str, AuditedTarget)>> {
    use sqlx::Row;
    let mut out = Vec::new();
    let db = sluice_tests::pg::create_database(name).await?;
    db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
         CREATE TABLE applied (id int, v text);
         CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO applied VALUES (NEW.id, NEW.v); RETURN NEW; END $$;
         CREATE TRIGGER audit AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION audit();",
    )
    .await?;
    let pg_name = name.to_owned();
    out.push((
        "postgres",
        AuditedTarget {
            url: format!(
                "postgres://postgres:{}@127.0.0.1:5432/{name}",
                sluice_tests::pg::PASSWORD
            ),
            read: Box::new(move || {
                let name = pg_name.clone();
                Box::pin(async move {
                    let db = sluice_tests::pg::connect(&name).await?;
                    let rows = db
                        .query("SELECT id::text || '=' || v FROM items ORDER BY id", &[])
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    let n: i64 = db
                        .query_one("SELECT count(*) FROM applied", &[])
                        .await?
                        .get(0);
                    Ok((rows, n))
                })
            }),
        },
    ));
    let maria = sluice_tests::mariadb::create_database(name).await?;
    for statement in [
        "CREATE TABLE items (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)",
        "CREATE TABLE applied (id INT, v VARCHAR(40))",
        "CREATE TRIGGER audit_insert AFTER INSERT ON items FOR EACH ROW INSERT INTO applied VALUES (NEW.id, NEW.v)",
        "CREATE TRIGGER audit_update AFTER UPDATE ON items FOR EACH ROW INSERT INTO applied VALUES (NEW.id, NEW.v)",
    ] {
        sqlx::raw_sql(statement).execute(&maria).await?;
    }
    out.push((
        "mariadb",
        AuditedTarget {
            url: sluice_tests::mariadb::url(name),
            read: Box::new(move || {
                let db = maria.clone();
                Box::pin(async move {
                    let rows = sqlx::query("SELECT CONCAT(id, '=', v) FROM items ORDER BY id")
                        .fetch_all(&db)
                        .await?
                        .iter()
                        .map(|r| sluice_tests::mariadb::text(r, 0).unwrap_or_default())
                        .collect();
                    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
                        .fetch_one(&db)
                        .await?;
                    Ok((rows, n))
                })
            }),
        },
    ));
    let path = dir.join("target.db");
    let lite = sqlx::sqlite::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await?;
    sqlx::raw_sql(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
         CREATE TABLE applied (id INTEGER, v TEXT);
         CREATE TRIGGER audit_insert AFTER INSERT ON items BEGIN INSERT INTO applied VALUES (NEW.id, NEW.v); END;
         CREATE TRIGGER audit_update AFTER UPDATE ON items BEGIN INSERT INTO applied VALUES (NEW.id, NEW.v); END;",
    )
    .execute(&lite)
    .await?;
    out.push((
        "sqlite",
        AuditedTarget {
            url: format!("sqlite:{}", path.display()),
            read: Box::new(move || {
                let db = lite.clone();
                Box::pin(async move {
                    let rows = sqlx::query("SELECT id || '=' || v FROM items ORDER BY id")
                        .fetch_all(&db)
                        .await?
                        .iter()
                        .map(|r| r.get::<String, _>(0))
                        .collect();
                    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
                        .fetch_one(&db)
                        .await?;
                    Ok((rows, n))
                })
            }),
        },
    ));
    Ok(out)
}

fn sinks_config(
    port: u16,
    topic: &str,
    subscription: &str,
    targets: &[(&str, AuditedTarget)],
) -> String {
    let mut config =
        format!("pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\nsinks:\n");
    for (name, target) in targets {
        config.push_str(&format!(
            "  - name: {name}\n    className: jdbc\n    inputs: [{topic}]\n    sourceSubscriptionName: {subscription}-{name}\n\
             \x20   sourceSubscriptionPosition: Earliest\n    processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
             \x20     jdbcUrl: '{}'\n      tableName: items\n      insertMode: UPSERT\n      batchSize: 2\n      timeoutMs: 20\n",
            target.url
        ));
    }
    config
}

#[tokio::test]
async fn the_watermark_skips_duplicates_and_redeliveries_on_every_target() -> anyhow::Result<()> {
    // GIVEN, on each engine, a table whose every insert and update an audit
    // trigger records, and a topic holding a duplicate and an older resend
    let name = unique("eo-watermark").replace('-', "_");
    let dir = temp_dir(&name)?;
    let targets = audited_targets(&name, &dir).await?;
    publish_sequenced(
        &name,
        &[
            (1, 1, "s1"),
            (2, 2, "s2"),
            (2, 2, "s2"),
            (3, 1, "s3"),
            (1, 1, "s1"),
            (4, 3, "s4"),
        ],
    )
    .await?;
    let expected_rows = vec!["1=s3".to_owned(), "2=s2".to_owned(), "3=s4".to_owned()];

    // WHEN EFFECTIVELY_ONCE sinks apply the topic
    let port = free_port()?;
    let sluice = Sluice::start(&dir, &sinks_config(port, &name, "first", &targets), port)?;
    for (engine, target) in &targets {
        let rows = wait_for(&format!("the last row in {engine}"), LONG, || async {
            let (rows, _) = (target.read)().await?;
            Ok(rows.iter().any(|r| r == "3=s4").then_some(rows))
        })
        .await
        .with_context(|| sluice.log())?;

        // THEN each change was applied once: 4 applications for 6 messages
        assert_eq!(rows, expected_rows, "{engine}");
        assert_eq!((target.read)().await?.1, 4, "{engine}: applications");
    }
    sluice.kill9()?;

    // WHEN new subscriptions deliver the whole topic again
    let sluice = Sluice::start(&dir, &sinks_config(port, &name, "second", &targets), port)?;
    for (engine, _) in &targets {
        wait_for(
            &format!("the {engine} sink to drain the topic again"),
            LONG,
            || {
                let backlog =
                    sluice_tests::backlog(&sluice_tests::topic(&name), &format!("second-{engine}"));
                async move { Ok((backlog? == Some(0)).then_some(())) }
            },
        )
        .await
        .with_context(|| sluice.log())?;
    }

    // THEN nothing is applied again
    for (engine, target) in &targets {
        let (rows, applications) = (target.read)().await?;
        assert_eq!(rows, expected_rows, "{engine}");
        assert_eq!(applications, 4, "{engine}: applications after the replay");
    }
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn check_warns_when_the_namespace_does_not_deduplicate() -> anyhow::Result<()> {
    // GIVEN an EFFECTIVELY_ONCE source in a namespace without deduplication,
    // and one in a namespace with it
    let plain = sluice_tests::admin::create_namespace(&unique("eo-nodedup"))?;
    let dedup = sluice_tests::admin::create_namespace(&unique("eo-dedup"))?;
    sluice_tests::admin::enable_deduplication(&dedup)?;
    let dir = temp_dir(&unique("eo-check"))?;
    let source = |name: &str, namespace: &str| {
        let (tenant, ns) = namespace.split_once('/').unwrap_or_default();
        format!(
            "  - tenant: {tenant}\n    namespace: {ns}\n    name: {name}\n    className: datagen\n\
             \x20   topicName: out\n    processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n      count: 1\n"
        )
    };
    let path = dir.join("check.yaml");
    std::fs::write(
        &path,
        format!(
            "pulsar:\n  serviceUrl: {PULSAR_URL}\n  webServiceUrl: {}\nsources:\n{}{}",
            sluice_tests::PULSAR_ADMIN_URL,
            source("without", &plain),
            source("with", &dedup)
        ),
    )?;

    // WHEN sluice check runs
    let (code, text) = sluice_tests::sluice_check(&path)?;

    // THEN transactions pass, and only the namespace without deduplication
    // gets a warning that says how to turn it on
    assert_eq!(code, Some(0), "{text}");
    ensure!(
        text.contains(&format!("warn  without: deduplication is off for {plain}"))
            && text.contains(&format!(
                "pulsar-admin namespaces set-deduplication {plain} --enable"
            )),
        "{text}"
    );
    ensure!(!text.contains("with:"), "{text}");
    Ok(())
}

//! The fault-injection harness: a Postgres → Pulsar → MariaDB pipeline runs
//! under each guarantee while a workload writes to the source and sluice is
//! killed with SIGKILL at random moments: during the snapshot, inside a
//! large transaction, and along the way. The long variant also restarts the
//! broker, the source Postgres and the target MariaDB once each.
//!
//! At the end it audits three things independently of sluice:
//! - the changes made, from an audit trigger on the source;
//! - the changes on the topics, read by a reader of its own;
//! - the changes applied, from an audit trigger on the target;
//!
//! and compares source and target row by row. A change is identified by its
//! table, key, kind (write or delete) and the row's `version`, which every
//! change sets from a sequence.
//!
//! ```sh
//! cargo test -p sluice-tests --test faults -- --nocapture             # short: CI
//! FAULTS=long cargo test -p sluice-tests --test faults -- --nocapture # long
//! FAULTS_GUARANTEES=ATMOST_ONCE ...                                    # one guarantee
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use magnetar::proto::pb::command_subscribe::InitialPosition;
use magnetar::{OutgoingMessage, PulsarClient};
use serde_json::Value;
use sluice_tests::{
    PULSAR_URL, Sluice, admin, free_port, mariadb, pg, restart_service, temp_dir, unique, wait_for,
};
use sqlx::Row;

const LONG: Duration = Duration::from_secs(300);

/// How hard a run is.
#[derive(Debug, Clone, Copy)]
struct Plan {
    initial_orders: i64,
    workload: Duration,
    txns_per_second: u64,
    kills: usize,
    big_txn_rows: i64,
    restarts: bool,
}

impl Plan {
    fn from_env() -> Self {
        if std::env::var("FAULTS").as_deref() == Ok("long") {
            Self {
                initial_orders: 100_000,
                workload: Duration::from_secs(180),
                txns_per_second: 200,
                kills: 12,
                big_txn_rows: 200_000,
                restarts: true,
            }
        } else {
            Self {
                initial_orders: 20_000,
                workload: Duration::from_secs(20),
                txns_per_second: 100,
                kills: 3,
                big_txn_rows: 20_000,
                restarts: false,
            }
        }
    }
}

/// A change: table, key, kind, version.
type Change = (String, i64, &'static str, i64);

/// A small deterministic generator, seeded per run (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const SOURCE_SCHEMA: &str = "
    CREATE SEQUENCE versions;
    CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, version bigint NOT NULL);
    CREATE TABLE orders (id int PRIMARY KEY, account_id int NOT NULL, status text NOT NULL, version bigint NOT NULL);
    ALTER TABLE accounts REPLICA IDENTITY FULL;
    ALTER TABLE orders REPLICA IDENTITY FULL;
    CREATE TABLE changes (n bigserial PRIMARY KEY, tbl text NOT NULL, id int NOT NULL, version bigint NOT NULL, kind text NOT NULL);
    CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        INSERT INTO changes (tbl, id, version, kind) VALUES (TG_TABLE_NAME, OLD.id, OLD.version, 'delete');
      ELSE
        INSERT INTO changes (tbl, id, version, kind) VALUES (TG_TABLE_NAME, NEW.id, NEW.version, 'write');
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER log_change AFTER INSERT OR UPDATE OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION log_change();
    CREATE TRIGGER log_change AFTER INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION log_change();";

const TARGET_SCHEMA: [&str; 9] = [
    "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL, version BIGINT NOT NULL)",
    "CREATE TABLE orders (id INT PRIMARY KEY, account_id INT NOT NULL, status VARCHAR(16) NOT NULL, version BIGINT NOT NULL)",
    "CREATE TABLE applied (tbl VARCHAR(16) NOT NULL, id INT NOT NULL, version BIGINT NOT NULL, kind VARCHAR(8) NOT NULL)",
    "CREATE TRIGGER accounts_w AFTER INSERT ON accounts FOR EACH ROW INSERT INTO applied VALUES ('accounts', NEW.id, NEW.version, 'write')",
    "CREATE TRIGGER accounts_u AFTER UPDATE ON accounts FOR EACH ROW INSERT INTO applied VALUES ('accounts', NEW.id, NEW.version, 'write')",
    "CREATE TRIGGER accounts_d AFTER DELETE ON accounts FOR EACH ROW INSERT INTO applied VALUES ('accounts', OLD.id, OLD.version, 'delete')",
    "CREATE TRIGGER orders_w AFTER INSERT ON orders FOR EACH ROW INSERT INTO applied VALUES ('orders', NEW.id, NEW.version, 'write')",
    "CREATE TRIGGER orders_u AFTER UPDATE ON orders FOR EACH ROW INSERT INTO applied VALUES ('orders', NEW.id, NEW.version, 'write')",
    "CREATE TRIGGER orders_d AFTER DELETE ON orders FOR EACH ROW INSERT INTO applied VALUES ('orders', OLD.id, OLD.version, 'delete')",
];

fn kind(k: &str) -> &'static str {
    if k == "delete" { "delete" } else { "write" }
}

/// The workload: single-table updates and deletes, and two-table
/// transactions, at a steady rate until `stop`. It reconnects when the
/// source restarts.
async fn workload(db: String, stop: Arc<AtomicBool>, rate: u64, first_id: i64, seed: u64) -> u64 {
    let mut rng = Lcg(seed);
    let mut client: Option<tokio_postgres::Client> = None;
    let mut next_id = first_id;
    let mut done = 0;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if client.is_none() {
            client = pg::connect(&db).await.ok();
        }
        let Some(c) = &client else { continue };
        let account = 1 + rng.below(1000);
        let order = 1 + rng.below(next_id as u64);
        let sql = match rng.below(4) {
            0 => {
                next_id += 1;
                format!(
                    "BEGIN; INSERT INTO orders VALUES ({next_id}, {account}, 'new', nextval('versions'));
                     UPDATE accounts SET balance = balance + 1, version = nextval('versions') WHERE id = {account}; COMMIT;"
                )
            }
            1 => format!(
                "UPDATE orders SET status = 'paid', version = nextval('versions') WHERE id = {order}"
            ),
            2 => format!("DELETE FROM orders WHERE id = {order}"),
            _ => format!(
                "UPDATE accounts SET balance = balance - 1, version = nextval('versions') WHERE id = {account}"
            ),
        };
        match c.batch_execute(&sql).await {
            Ok(()) => done += 1,
            Err(_) => client = None,
        }
    }
    done
}

/// Every change on the topics, with how often it appears, read up to a
/// marker published after the run.
async fn topic_changes(namespace: &str, prefix: &str) -> anyhow::Result<BTreeMap<Change, usize>> {
    let client = PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let mut seen = BTreeMap::new();
    for table in ["accounts", "orders"] {
        let topic = format!("persistent://{namespace}/{prefix}.public.{table}");
        let consumer = client
            .consumer(&topic)
            .subscription(unique("audit"))
            .initial_position(InitialPosition::Earliest)
            .subscribe()
            .await?;
        let marker = unique("end-of-audit");
        let producer = client.producer(&topic).create().await?;
        producer
            .send(OutgoingMessage::with_payload(marker.clone().into_bytes()).into())
            .await?;
        producer.close().await?;
        loop {
            let msg = consumer
                .receive_with_timeout(LONG)
                .await?
                .context("the audit marker never arrived")?;
            let (payload, _) = sluice_tests::message_parts(&msg);
            if payload.as_ref() == marker.as_bytes() {
                break;
            }
            let envelope: Value = serde_json::from_slice(&payload)?;
            let (row, k) = match envelope["op"].as_str() {
                Some("d") => (&envelope["before"], "delete"),
                Some("c" | "r" | "u") => (&envelope["after"], "write"),
                _ => continue,
            };
            let change = (
                table.to_owned(),
                row["id"].as_i64().context("no id")?,
                k,
                row["version"].as_i64().context("no version")?,
            );
            *seen.entry(change).or_default() += 1;
        }
        consumer.close().await?;
    }
    Ok(seen)
}

/// One guarantee's line of the result table.
#[derive(Debug, Default)]
struct Outcome {
    /// Under EFFECTIVELY_ONCE: target rows differing from the source after
    /// a new sink rebuilt a new target from the topics' history.
    replay_differing: Option<usize>,
    made: usize,
    delivered: usize,
    lost: usize,
    duplicated_on_topic: usize,
    applied_twice: usize,
    rows_differing: usize,
}

async fn source_rows(db: &tokio_postgres::Client) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for r in db
        .query(
            "SELECT 'a:' || id || ':' || balance || ':' || version FROM accounts
             UNION ALL SELECT 'o:' || id || ':' || account_id || ':' || status || ':' || version FROM orders",
            &[],
        )
        .await?
    {
        out.insert(r.get::<_, String>(0));
    }
    Ok(out)
}

async fn target_rows(db: &sqlx::MySqlPool) -> anyhow::Result<BTreeSet<String>> {
    sqlx::query(
        "SELECT CONCAT('a:', id, ':', balance, ':', version) FROM accounts
         UNION ALL SELECT CONCAT('o:', id, ':', account_id, ':', status, ':', version) FROM orders",
    )
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| sluice_tests::mariadb::text(r, 0).context("a target row with a NULL column"))
    .collect::<anyhow::Result<_>>()
}

async fn run(guarantee: &str, plan: Plan) -> anyhow::Result<Outcome> {
    let name = unique(&format!("faults-{}", guarantee.to_lowercase())).replace('-', "_");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut rng = Lcg(seed);
    println!("{guarantee}: run {name}, seed {seed}, {plan:?}");
    let namespace = admin::create_namespace(&name)?;
    admin::enable_deduplication(&namespace)?;
    // Keep the history, for the replay at the end.
    admin::post(
        &format!("/admin/v2/namespaces/{namespace}/retention"),
        r#"{"retentionTimeInMinutes": -1, "retentionSizeInMB": -1}"#,
    )?;
    let source = pg::create_database(&name).await?;
    source.batch_execute(SOURCE_SCHEMA).await?;
    source
        .batch_execute(&format!(
            "INSERT INTO accounts SELECT g, 0, nextval('versions') FROM generate_series(1, 1000) g;
             INSERT INTO orders SELECT g, 1 + g % 1000, 'new', nextval('versions') FROM generate_series(1, {}) g;",
            plan.initial_orders
        ))
        .await?;
    let target = mariadb::create_database(&name).await?;
    for statement in TARGET_SCHEMA {
        sqlx::raw_sql(statement).execute(&target).await?;
    }
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let (tenant, ns) = namespace.split_once('/').context("namespace")?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: cdc\n    className: postgres-cdc\n\
         \x20   processingGuarantees: {guarantee}\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.user: postgres\n      database.password: {pw}\n\
         \x20     database.dbname: {name}\n      topic.prefix: {name}\n      slot.name: {name}\n      publication.name: {name}\n\
         \x20     table.include.list: public.accounts,public.orders\n      status.update.interval.ms: 500\n\
         sinks:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: target\n    className: jdbc\n\
         \x20   inputs: [{name}.public.accounts, {name}.public.orders]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   processingGuarantees: {guarantee}\n    retainOrdering: true\n    configs:\n\
         \x20     jdbcUrl: '{url}'\n      inputFormat: DEBEZIUM\n      batchSize: 500\n      timeoutMs: 50\n",
        pw = pg::PASSWORD,
        url = mariadb::url(&name),
    );

    // The snapshot, killed once while it runs.
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for("the snapshot to start", LONG, || {
        let (source, name) = (&source, &name);
        async move {
            Ok(pg::confirmed_flush(source, name)
                .await
                .ok()
                .flatten()
                .map(|_| ()))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    sluice.kill9()?;
    let mut sluice = Sluice::start(&dir, &config, port)?;
    let snapshot = source_rows(&source).await?;
    if guarantee == "ATMOST_ONCE" {
        // An interrupted snapshot is not taken again under ATMOST_ONCE: the
        // rows it did not publish are lost. Wait for what it did publish.
        wait_for("the source to stream and the sink to drain", LONG, || {
            let status = sluice.get("/connectors/cdc");
            let backlogs: Vec<_> = ["accounts", "orders"]
                .iter()
                .map(|t| {
                    sluice_tests::backlog(
                        &format!("persistent://{namespace}/{name}.public.{t}"),
                        &format!("{namespace}/target"),
                    )
                })
                .collect();
            async move {
                let running = status.is_some_and(|s| s.contains("\"state\":\"running\""));
                let drained = backlogs
                    .into_iter()
                    .all(|b| matches!(b, Ok(None | Some(0))));
                Ok((running && drained).then_some(()))
            }
        })
        .await
        .with_context(|| sluice.log())?;
    } else {
        wait_for("the snapshot in the target", LONG, || {
            let target = &target;
            async move {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
                    .fetch_one(target)
                    .await?;
                Ok((n >= plan.initial_orders).then_some(()))
            }
        })
        .await
        .with_context(|| sluice.log())?;
    }
    let expected_before: Vec<Change> = source
        .query(
            "SELECT 'accounts', id::bigint, version FROM accounts UNION ALL SELECT 'orders', id::bigint, version FROM orders",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get(1), "write", r.get(2)))
        .collect();
    let mark: i64 = source
        .query_one("SELECT coalesce(max(n), 0) FROM changes", &[])
        .await?
        .get(0);
    drop(snapshot);

    // The workload, with kills at random moments, a large transaction
    // killed while it streams, and (long) service restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(workload(
        name.clone(),
        Arc::clone(&stop),
        plan.txns_per_second,
        plan.initial_orders + 1,
        seed,
    ));
    let started = tokio::time::Instant::now();
    let mut moments: Vec<Duration> = (0..plan.kills)
        .map(|_| plan.workload.mul_f64(rng.below(1000) as f64 / 1000.0))
        .collect();
    moments.sort();
    let mut restarts = if plan.restarts {
        vec![
            (plan.workload / 4, "pulsar"),
            (plan.workload / 2, "postgres"),
            (plan.workload * 3 / 4, "mariadb"),
        ]
    } else {
        Vec::new()
    };
    if guarantee == "ATMOST_ONCE" {
        // Postgres 15 keeps a logical slot's confirmed position in memory
        // until its restart_lsn or catalog_xmin moves (17 saves it at
        // shutdown), so a restart rewinds the slot and replays: no consumer
        // can be at most once across it. docs/guarantees.md says so.
        restarts.retain(|(_, service)| *service != "postgres");
    }
    let big_at = plan.workload / 3;
    let mut big_done = false;
    let mut restarts = restarts.into_iter().peekable();
    let mut kills = 0;
    for moment in moments {
        while let Some((at, service)) = restarts.next_if(|(at, _)| *at <= moment) {
            tokio::time::sleep_until(started + at).await;
            println!("{guarantee}: restarting {service}");
            tokio::task::spawn_blocking(move || restart_service(service)).await??;
        }
        if !big_done && moment >= big_at {
            big_done = true;
            let first = 10_000_000;
            // A connection of its own: the source may have restarted.
            pg::connect(&name)
                .await?
                .batch_execute(&format!(
                    "INSERT INTO orders SELECT g, 1 + g % 1000, 'bulk', nextval('versions')
                     FROM generate_series({first}, {}) g",
                    first + plan.big_txn_rows - 1
                ))
                .await?;
            // Let sluice get into the transaction's stream, then kill it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            sluice.kill9()?;
            kills += 1;
            sluice = Sluice::start(&dir, &config, port)?;
        }
        tokio::time::sleep_until(started + moment).await;
        sluice.kill9()?;
        kills += 1;
        sluice = Sluice::start(&dir, &config, port)?;
    }
    for (at, service) in restarts {
        tokio::time::sleep_until(started + at).await;
        println!("{guarantee}: restarting {service}");
        tokio::task::spawn_blocking(move || restart_service(service)).await??;
    }
    tokio::time::sleep_until(started + plan.workload).await;
    stop.store(true, Ordering::Relaxed);
    let txns = load.await?;
    println!("{guarantee}: {txns} workload transactions, {kills} kills after the snapshot's");

    // Drain: the slot has confirmed everything, the sink has nothing left.
    let source = pg::connect(&name).await?;
    let end = pg::current_wal(&source).await?;
    wait_for("the slot to confirm the end of the workload", LONG, || {
        let (source, name) = (&source, &name);
        async move {
            Ok(pg::confirmed_flush(source, name)
                .await?
                .filter(|f| *f >= end)
                .map(|_| ()))
        }
    })
    .await
    .with_context(|| sluice.log())?;
    for table in ["accounts", "orders"] {
        let topic = format!("persistent://{namespace}/{name}.public.{table}");
        let subscription = format!("{namespace}/target");
        wait_for(&format!("the sink to drain {table}"), LONG, || {
            let backlog = sluice_tests::backlog(&topic, &subscription);
            async move { Ok((backlog? == Some(0)).then_some(())) }
        })
        .await
        .with_context(|| sluice.log())?;
    }
    anyhow::ensure!(
        sluice.interrupt().await?.success(),
        "sluice did not stop cleanly"
    );

    // Audit.
    let mut expected: BTreeSet<Change> = expected_before.into_iter().collect();
    for r in source
        .query(
            "SELECT tbl, id::bigint, kind, version FROM changes WHERE n > $1",
            &[&mark],
        )
        .await?
    {
        expected.insert((r.get(0), r.get(1), kind(r.get(2)), r.get(3)));
    }
    // The replay reads the topics before the audit marks their end.
    let replay_differing = if guarantee == "EFFECTIVELY_ONCE" {
        Some(replay(&namespace, &name, &dir, &source_rows(&source).await?).await?)
    } else {
        None
    };
    let on_topic = topic_changes(&namespace, &name).await?;
    let mut applied: BTreeMap<Change, usize> = BTreeMap::new();
    for r in sqlx::query("SELECT tbl, CAST(id AS SIGNED), kind, version FROM applied")
        .fetch_all(&target)
        .await?
    {
        let k = sluice_tests::mariadb::text(&r, 2).context("an applied row without its kind")?;
        let table =
            sluice_tests::mariadb::text(&r, 0).context("an applied row without its table")?;
        *applied
            .entry((table, r.get(1), kind(&k), r.get(3)))
            .or_default() += 1;
    }
    let delivered = expected
        .iter()
        .filter(|c| on_topic.contains_key(*c))
        .count();
    let lost: Vec<&Change> = expected
        .iter()
        .filter(|c| !on_topic.contains_key(*c))
        .collect();
    if !lost.is_empty() {
        println!(
            "{guarantee}: {} changes not on the topic, the first: {:?}",
            lost.len(),
            &lost[..lost.len().min(8)]
        );
    }
    let twice: Vec<(&Change, &usize)> = on_topic.iter().filter(|(_, n)| **n > 1).take(8).collect();
    if !twice.is_empty() {
        println!("{guarantee}: changes on the topic more than once, the first: {twice:?}");
    }
    let (from, to) = (source_rows(&source).await?, target_rows(&target).await?);
    let differing: Vec<&String> = from.symmetric_difference(&to).take(8).collect();
    if !differing.is_empty() {
        println!("{guarantee}: rows differing, the first: {differing:?}");
    }
    let outcome = Outcome {
        replay_differing,
        made: expected.len(),
        delivered,
        lost: expected.len() - delivered,
        duplicated_on_topic: on_topic.values().map(|n| n - 1).sum(),
        applied_twice: applied.values().map(|n| n - 1).sum(),
        rows_differing: from.symmetric_difference(&to).count(),
    };
    let _ = source
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await;
    Ok(outcome)
}

/// Event sourcing: a new sink, subscribing from the earliest message,
/// rebuilds a new target from the retained topics. The number of rows that
/// then differ from the source.
async fn replay(
    namespace: &str,
    name: &str,
    dir: &std::path::Path,
    source_rows: &BTreeSet<String>,
) -> anyhow::Result<usize> {
    let db = format!("{name}_replay");
    let target = mariadb::create_database(&db).await?;
    for statement in &TARGET_SCHEMA[..2] {
        sqlx::raw_sql(statement).execute(&target).await?;
    }
    let (tenant, ns) = namespace.split_once('/').context("namespace")?;
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - tenant: {tenant}\n    namespace: {ns}\n    name: replay\n    className: jdbc\n\
         \x20   inputs: [{name}.public.accounts, {name}.public.orders]\n    sourceSubscriptionPosition: Earliest\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n\
         \x20     jdbcUrl: '{url}'\n      inputFormat: DEBEZIUM\n      batchSize: 1000\n      timeoutMs: 50\n",
        url = mariadb::url(&db),
    );
    let replay_dir = dir.join("replay");
    std::fs::create_dir_all(&replay_dir)?;
    let sluice = Sluice::start(&replay_dir, &config, port)?;
    for table in ["accounts", "orders"] {
        let topic = format!("persistent://{namespace}/{name}.public.{table}");
        let subscription = format!("{namespace}/replay");
        wait_for(&format!("the replay of {table}"), LONG, || {
            let backlog = sluice_tests::backlog(&topic, &subscription);
            async move { Ok((backlog? == Some(0)).then_some(())) }
        })
        .await
        .with_context(|| sluice.log())?;
    }
    anyhow::ensure!(
        sluice.interrupt().await?.success(),
        "the replaying sink did not stop cleanly"
    );
    let rebuilt = target_rows(&target).await?;
    Ok(source_rows.symmetric_difference(&rebuilt).count())
}

#[tokio::test]
async fn every_guarantee_holds_under_faults() -> anyhow::Result<()> {
    let plan = Plan::from_env();
    let mut table = vec![
        "| guarantee | changes made | delivered | lost | duplicated on the topic | applied twice | target rows differing |".to_owned(),
        "|---|---|---|---|---|---|---|".to_owned(),
    ];
    let mut failures = Vec::new();
    // FAULTS_GUARANTEES=ATMOST_ONCE,... runs only those.
    let only = std::env::var("FAULTS_GUARANTEES").unwrap_or_default();
    for guarantee in ["EFFECTIVELY_ONCE", "ATLEAST_ONCE", "ATMOST_ONCE"]
        .into_iter()
        .filter(|g| only.is_empty() || only.split(',').any(|o| o == *g))
    {
        let o = run(guarantee, plan).await?;
        table.push(format!(
            "| {guarantee} | {} | {} | {} | {} | {} | {} |",
            o.made, o.delivered, o.lost, o.duplicated_on_topic, o.applied_twice, o.rows_differing
        ));
        println!("{}", table.last().map_or("", String::as_str));
        let holds = match guarantee {
            "EFFECTIVELY_ONCE" => {
                println!(
                    "EFFECTIVELY_ONCE replay: a new sink rebuilt a new target from the topics; {} rows differ from the source",
                    o.replay_differing.map_or("?".to_owned(), |n| n.to_string())
                );
                o.lost == 0
                    && o.duplicated_on_topic == 0
                    && o.applied_twice == 0
                    && o.rows_differing == 0
                    && o.replay_differing == Some(0)
            }
            "ATLEAST_ONCE" => o.lost == 0 && o.rows_differing == 0,
            // At most once may lose what was in flight at each kill, not
            // the run: a run that delivers nothing, or little, is broken
            // too (4 kills lost 3% in a run of 43,506 changes).
            _ => {
                o.duplicated_on_topic == 0
                    && o.applied_twice == 0
                    && o.delivered > 0
                    && o.delivered * 2 >= o.made
            }
        };
        if !holds {
            failures.push(guarantee);
        }
    }
    println!("\n{}\n", table.join("\n"));
    anyhow::ensure!(
        failures.is_empty(),
        "broken: {failures:?}\n{}",
        table.join("\n")
    );
    Ok(())
}

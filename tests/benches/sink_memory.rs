//! Benchmark of the sink's memory bound: a backlog of large messages on
//! several topics is applied to Postgres by one `jdbc` sink, once per
//! `pulsar.memoryLimitBytes`, and each run reports sluice's peak RSS
//! against the bound docs/configuration.md states for that limit.
//!
//! Run: `scripts/bench-sink-memory` (builds the release binary, starts the
//! stack). Optional: `BENCH_TOPICS`, `BENCH_MESSAGES` (per topic),
//! `BENCH_MESSAGE_BYTES`, `BENCH_LIMITS` (comma-separated MiB; 0 means no
//! limit), `BENCH_SINK=file` (the file sink instead of Postgres).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_tests::sink::pg_url;
use sluice_tests::{PULSAR_URL, Sluice, free_port, pg, temp_dir, unique};

const MIB: f64 = 1024.0 * 1024.0;

/// Publish `messages` rows of `bytes` bytes to each topic, ids apart.
async fn publish(topics: &[String], messages: usize, bytes: usize) -> anyhow::Result<()> {
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let filler = "x".repeat(bytes);
    for (t, topic) in topics.iter().enumerate() {
        let producer = client
            .producer(topic.clone())
            .chunking(true)
            .create()
            .await?;
        for n in 0..messages {
            let id = t * 1_000_000 + n;
            let value = format!("{{\"id\":{id},\"v\":\"{filler}\"}}");
            let msg = magnetar::OutgoingMessage::with_payload(value.into_bytes())
                .key(format!("{{\"id\":{id}}}"));
            producer.send(msg.into()).await?;
        }
        producer.close().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let topic_count = sluice_tests::env_or("BENCH_TOPICS", 2);
    let messages = sluice_tests::env_or("BENCH_MESSAGES", 100);
    let bytes = sluice_tests::env_or("BENCH_MESSAGE_BYTES", 4 << 20);
    let limits: Vec<u64> = std::env::var("BENCH_LIMITS")
        .unwrap_or_else(|_| "16,64,0".into())
        .split(',')
        .map(|m| m.trim().parse::<u64>().map(|m| m << 20))
        .collect::<Result<_, _>>()
        .context("BENCH_LIMITS: comma-separated MiB")?;
    let rows = topic_count * messages;
    // `BENCH_SINK=file`: the file sink instead, to tell the runtime's share
    // from the database sink's.
    let file_sink = std::env::var("BENCH_SINK").is_ok_and(|s| s == "file");

    let name = unique("bench_sink_memory").replace('-', "_");
    let db = pg::create_database(&name).await?;
    let topics: Vec<String> = (0..topic_count)
        .map(|t| sluice_tests::topic(&format!("{name}.t{t}")))
        .collect();
    eprintln!(
        "publishing {topic_count} topics × {messages} messages of {:.1} MiB...",
        bytes as f64 / MIB
    );
    publish(&topics, messages, bytes).await?;

    println!("\n| memoryLimitBytes | payload bound | peak RSS | RSS / bound | seconds | MiB/s |");
    println!("|---|---|---|---|---|---|");
    for (run, limit) in limits.iter().enumerate() {
        db.batch_execute(
            "DROP TABLE IF EXISTS items; CREATE TABLE items (id bigint PRIMARY KEY, v text)",
        )
        .await?;
        let dir = temp_dir(&format!("{name}-{run}"))?;
        let port = free_port()?;
        let inputs = topics
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let out = dir.join("out.jsonl");
        let configs = if file_sink {
            format!("      path: {}\n", out.display())
        } else {
            format!(
                "      jdbcUrl: '{}'\n      tableName: items\n      insertMode: UPSERT\n",
                pg_url(&name)
            )
        };
        let config = format!(
            "pulsar:\n  serviceUrl: {PULSAR_URL}\n  memoryLimitBytes: {limit}\nhttp:\n  listen: 127.0.0.1:{port}\n\
             sinks:\n  - name: bench\n    className: {}\n    inputs: [{inputs}]\n\
             \x20   sourceSubscriptionName: run{run}\n    sourceSubscriptionPosition: Earliest\n\
             \x20   configs:\n{configs}",
            if file_sink { "file" } else { "jdbc" }
        );
        let sluice = Sluice::start(&dir, &config, port)?;
        let started = Instant::now();
        let mut peak = 0u64;
        loop {
            peak = peak.max(sluice.peak_rss().unwrap_or(0));
            let n = if file_sink {
                std::fs::read(&out).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
            } else {
                let n: i64 = db
                    .query_one("SELECT count(*) FROM items", &[])
                    .await?
                    .get(0);
                usize::try_from(n).unwrap_or(0)
            };
            if n == rows {
                break;
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("{n} of {rows} rows after 15 minutes:\n{}", sluice.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        peak = peak.max(sluice.peak_rss().unwrap_or(0));
        drop(sluice);
        let total = (rows * bytes) as f64 / MIB;
        let peak_mib = peak as f64 / MIB;
        if *limit == 0 {
            println!(
                "| 0 (no limit) | none | {peak_mib:.0} MiB | | {seconds:.1} | {:.0} |",
                total / seconds
            );
        } else {
            // docs/configuration.md: payload under the limit plus the
            // prefetch, a quarter of it or one 5 MiB message per topic.
            let prefetch = (*limit as f64 / 4.0).max((topic_count * (5 << 20)) as f64);
            let bound = (*limit as f64 + prefetch) / MIB;
            println!(
                "| {} MiB | {bound:.0} MiB | {peak_mib:.0} MiB | {:.2} | {seconds:.1} | {:.0} |",
                limit >> 20,
                peak_mib / bound,
                total / seconds
            );
        }
    }
    println!(
        "\n{topic_count} topics × {messages} messages of {:.1} MiB ({:.0} MiB of payload), one jdbc sink into Postgres",
        bytes as f64 / MIB,
        (rows * bytes) as f64 / MIB
    );
    let admin = pg::connect("postgres").await?;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

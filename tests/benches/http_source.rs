//! Benchmark of the `http` source: clients POST records and wait for each
//! answer, which comes once the records are durable in Pulsar. In the same
//! run, the same records are published directly with a Pulsar client, the
//! same number of sends in flight, each awaited until the broker has it.
//! Prints requests/s and records/s for both, the ratio, and sluice's peak
//! RSS; checks that the topic holds every record once; appends a JSON line
//! to the workspace's target/bench/http-source.jsonl.
//!
//! Run: `scripts/bench-http-source` (builds the release binary, starts the
//! broker). Optional: `BENCH_REQUESTS` (default 20000), `BENCH_RECORDS`
//! (records per request, a JSON array when over 1; default 1),
//! `BENCH_CLIENTS` (connections, default 16), `BENCH_GUARANTEE`
//! (default ATLEAST_ONCE), `BENCH_BATCHING=off` (the source's producer
//! without batching, whose linger otherwise adds up to 10 ms to each answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sluice_tests::{PULSAR_URL, Sluice, free_port, reader, temp_dir, topic, unique, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The body of request `n`: one JSON object, or an array of `records`.
fn body(n: usize, records: usize) -> String {
    let one = |i: usize| {
        format!(
            "{{\"id\":{i},\"sku\":\"sku-{}\",\"qty\":{}}}",
            i % 500,
            i % 7
        )
    };
    if records == 1 {
        one(n)
    } else {
        let items: Vec<String> = (0..records).map(|r| one(n * records + r)).collect();
        format!("[{}]", items.join(","))
    }
}

/// One keep-alive HTTP/1.1 connection: POST, then read the answer.
struct Connection {
    reader: BufReader<tokio::net::TcpStream>,
}

impl Connection {
    async fn open(port: u16) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    async fn post(&mut self, body: &str) -> anyhow::Result<u16> {
        let request = format!(
            "POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes()).await?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).await?;
        let status: u16 = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status in {status_line:?}"))?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut rest = vec![0; length];
        self.reader.read_exact(&mut rest).await?;
        Ok(status)
    }
}

/// Run `clients` loops that each take the next request number until
/// `requests` are done; seconds taken.
async fn drive<F, Fut>(clients: usize, requests: usize, make: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Box<dyn FnMut(usize) -> BoxedSend + Send>>>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut send = make().await?;
        let next = Arc::clone(&next);
        loops.push(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return anyhow::Ok(());
                }
                send(n).await?;
            }
        });
    }
    let started = Instant::now();
    for result in futures_util::future::join_all(loops).await {
        result?;
    }
    Ok(started.elapsed().as_secs_f64())
}

type BoxedSend = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests = sluice_tests::env_or("BENCH_REQUESTS", 20_000);
    let per_request = sluice_tests::env_or("BENCH_RECORDS", 1).max(1);
    let clients = sluice_tests::env_or("BENCH_CLIENTS", 16).max(1);
    let guarantee = std::env::var("BENCH_GUARANTEE").unwrap_or_else(|_| "ATLEAST_ONCE".into());
    let batching = std::env::var("BENCH_BATCHING").map_or(true, |b| b != "off");
    let records = requests * per_request;
    let name = unique("bench-http");

    // Directly with a Pulsar client: the same records, `clients` sends in
    // flight, each awaited.
    let direct_topic = topic(&format!("{name}-direct"));
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let producer = Arc::new(client.producer(direct_topic.clone()).create().await?);
    eprintln!("publishing {records} records directly ({clients} in flight)...");
    let direct_s = drive(clients, requests, || {
        let producer = Arc::clone(&producer);
        async move {
            let send: Box<dyn FnMut(usize) -> BoxedSend + Send> = Box::new(move |n| {
                let producer = Arc::clone(&producer);
                Box::pin(async move {
                    for r in 0..per_request {
                        let value = body(n * per_request + r, 1);
                        let msg = magnetar::OutgoingMessage::with_payload(value.into_bytes());
                        producer.send(msg.into()).await?;
                    }
                    Ok(())
                })
            });
            Ok(send)
        }
    })
    .await?;

    // Through sluice's http source.
    let http_topic = topic(&format!("{name}-http"));
    let dir = temp_dir(&name)?;
    let (port, source_port) = (free_port()?, free_port()?);
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: api\n    className: http\n    topicName: {http_topic}\n\
         \x20   processingGuarantees: {guarantee}\n{}    configs:\n      port: {source_port}\n\
         \x20     maxPendingRequests: {}\n      stateDir: {}\n",
        if batching {
            ""
        } else {
            "    producerConfig:\n      batchingConfig:\n        enabled: false\n"
        },
        clients * 4,
        state.display()
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for(
        "the http source to listen",
        Duration::from_secs(60),
        || async move { Ok(Connection::open(source_port).await.ok().map(|_| ())) },
    )
    .await
    .with_context(|| sluice.log())?;
    eprintln!("posting {requests} requests of {per_request} record(s) ({clients} connections)...");
    let http_s = drive(clients, requests, || async move {
        let conn = Arc::new(tokio::sync::Mutex::new(
            Connection::open(source_port).await?,
        ));
        let send: Box<dyn FnMut(usize) -> BoxedSend + Send> = Box::new(move |n| {
            let conn = Arc::clone(&conn);
            Box::pin(async move {
                let status = conn.lock().await.post(&body(n, per_request)).await?;
                if status != 200 {
                    bail!("request {n} answered {status}");
                }
                Ok(())
            })
        });
        Ok(send)
    })
    .await
    .with_context(|| sluice.log())?;
    let rss_mib = sluice.peak_rss().unwrap_or(0) / (1 << 20);

    // Every record is on the topic once.
    let consumer = reader(&http_topic).await?;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < records {
        let msg = consumer
            .receive_with_timeout(Duration::from_secs(30))
            .await?
            .with_context(|| format!("{} of {records} records on the topic", seen.len()))?;
        let (payload, _) = sluice_tests::message_parts(&msg);
        if !seen.insert(payload.to_vec()) {
            bail!("a record is on the topic twice");
        }
    }
    ensure!(
        sluice.interrupt().await?.success(),
        "sluice did not stop cleanly"
    );

    let rate = |n: usize, s: f64| n as f64 / s;
    println!(
        "\n| {requests} requests × {per_request} record(s), {clients} clients, {guarantee}, batching {} | seconds | requests/s | records/s |",
        if batching { "on" } else { "off" }
    );
    println!("|---|---|---|---|");
    println!(
        "| Pulsar client, each send awaited | {direct_s:.1} | {:.0} | {:.0} |",
        rate(requests, direct_s),
        rate(records, direct_s)
    );
    println!(
        "| sluice http source, each request answered when durable | {http_s:.1} | {:.0} | {:.0} |",
        rate(requests, http_s),
        rate(records, http_s)
    );
    println!("| ratio http / direct | | {:.2} | |", direct_s / http_s);
    println!("sluice's peak RSS: {rss_mib} MiB; the topic holds every record once");
    // The workspace's target folder, whatever folder cargo runs the bench in.
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    let line = serde_json::json!({
        "requests": requests, "records_per_request": per_request, "clients": clients,
        "guarantee": guarantee, "batching": batching, "direct_records_per_s": rate(records, direct_s).round(),
        "http_requests_per_s": rate(requests, http_s).round(),
        "http_records_per_s": rate(records, http_s).round(),
        "ratio": ((direct_s / http_s) * 100.0).round() / 100.0, "peak_rss_mib": rss_mib,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("http-source.jsonl"))?;
    std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())?;
    Ok(())
}

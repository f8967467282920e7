//! sluice's Pulsar client paths against Apache Pulsar's Java client, in one
//! run: N small messages published on one topic by one producer, then
//! consumed from the earliest by one consumer, first by the Java client
//! (tests/java/ClientBench.java), then through sluice's own producer (a
//! source's, batching as a source does, 1,000 sends in flight as Java's
//! `maxPendingMessages`) and consumer (a sink's, through the relay of
//! decision 0019, acknowledging every 1,000 as a sink's batch does). The
//! two take turns over ROUNDS rounds; prints each round and the medians'
//! ratios.
//!
//! `scripts/bench-client [N]` (`BENCH_MESSAGES`, `BENCH_BYTES`, `BENCH_ROUNDS`;
//! `BENCH_RELAY=0` consumes without the relay, as no sink does, to measure
//! what it costs; `BENCH_JAVA=0` runs sluice alone, to profile it)

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use sluice_connectors::SourceRecord;
use sluice_runtime::config::{
    Batching, Compression, MissingTopics, PulsarSettings, SubscriptionPosition, SubscriptionType,
};
use sluice_runtime::pulsar::{self, Access, ConsumerOptions, ProducerOptions, Reading};
use sluice_tests::{PULSAR_URL, topic, unique};

#[derive(Debug, Clone, Copy)]
struct Rates {
    publish: f64,
    consume: f64,
}

fn settings() -> PulsarSettings {
    PulsarSettings {
        service_url: PULSAR_URL.to_owned(),
        web_service_url: Some("http://127.0.0.1:8080".to_owned()),
        auth: Default::default(),
        tls_trust_certs_file_path: None,
        tls_allow_insecure_connection: false,
        tls_hostname_verification: true,
        memory_limit_bytes: 64 << 20,
        send_credentials_over_plain_http: false,
    }
}

async fn sluice_round(topic: &str, n: usize, bytes: usize) -> anyhow::Result<Rates> {
    let client = pulsar::connect(&settings(), Reading::Direct).await?;
    let producer = client
        .producer(
            topic,
            &ProducerOptions {
                access: Access::Shared,
                batching: Some(Batching {
                    max_messages: 1000,
                    max_bytes: 128 << 10,
                    max_delay: Duration::from_millis(10),
                    by_key: false,
                }),
                compression: Compression::None,
                name: None,
                schema: None,
            },
        )
        .await?;
    let payload = vec![b'x'; bytes];
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= 1000
            && let Some(sent) = in_flight.next().await
        {
            sent?;
        }
        in_flight.push(producer.send(SourceRecord {
            value: Some(payload.clone()),
            ..SourceRecord::default()
        }));
    }
    while let Some(sent) = in_flight.next().await {
        sent?;
    }
    let publish = n as f64 / start.elapsed().as_secs_f64();
    producer.close().await;
    client.close().await;

    let reading = if std::env::var("BENCH_RELAY").as_deref() == Ok("0") {
        Reading::Direct
    } else {
        Reading::Inflated
    };
    let client = pulsar::connect(&settings(), reading).await?;
    let options = ConsumerOptions {
        subscription: "bench".to_owned(),
        subscription_type: SubscriptionType::Failover,
        position: SubscriptionPosition::Earliest,
        receiver_queue: 1000,
        held_bytes: None,
        prefetch_bytes: None,
        nack_delay: Duration::from_secs(1),
        ack_timeout: None,
        consumer_name: None,
        missing: MissingTopics::Fail,
        started: Arc::default(),
    };
    let mut consumer = client.consumer(&[topic.to_owned()], &options).await?;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(1000);
    for _ in 0..n {
        handles.push(consumer.receive().await?.handle);
        if handles.len() == 1000 {
            consumer.ack(&handles).await?;
            handles.clear();
        }
    }
    consumer.ack(&handles).await?;
    let consume = n as f64 / start.elapsed().as_secs_f64();
    consumer.close().await;
    client.close().await;
    Ok(Rates { publish, consume })
}

fn java_round(topic: &str, n: usize, bytes: usize) -> anyhow::Result<Rates> {
    let lines = sluice_tests::java_lines(
        "ClientBench.java",
        &[PULSAR_URL, topic, &n.to_string(), &bytes.to_string()],
    )?;
    let line = lines.last().ok_or_else(|| anyhow::anyhow!("no result"))?;
    Ok(Rates {
        publish: line["publish_per_s"].as_f64().unwrap_or(0.0),
        consume: line["consume_per_s"].as_f64().unwrap_or(0.0),
    })
}

fn delete(topic: &str) {
    let path = topic.replacen("persistent://", "/admin/v2/persistent/", 1) + "?force=true";
    let _ = sluice_tests::admin::delete(&path);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = sluice_tests::env_or("BENCH_MESSAGES", 1_000_000);
    let bytes = sluice_tests::env_or("BENCH_BYTES", 100);
    let rounds = sluice_tests::env_or("BENCH_ROUNDS", 3);
    let (mut java, mut sluice) = (Vec::new(), Vec::new());
    println!("| round | client | publish msg/s | consume msg/s |");
    println!("|---|---|---|---|");
    // BENCH_JAVA=0 runs sluice alone, to profile it.
    let with_java = std::env::var("BENCH_JAVA").as_deref() != Ok("0");
    for round in 1..=rounds {
        if with_java {
            let t = topic(&unique("bench-client-java"));
            let r = java_round(&t, n, bytes)?;
            delete(&t);
            println!("| {round} | Java | {:.0} | {:.0} |", r.publish, r.consume);
            java.push(r);
        }
        let t = topic(&unique("bench-client-sluice"));
        let r = sluice_round(&t, n, bytes).await?;
        delete(&t);
        println!("| {round} | sluice | {:.0} | {:.0} |", r.publish, r.consume);
        sluice.push(r);
    }
    if java.is_empty() {
        return Ok(());
    }
    let med = |v: &[Rates], f: fn(&Rates) -> f64| median(v.iter().map(f).collect());
    let (jp, jc) = (med(&java, |r| r.publish), med(&java, |r| r.consume));
    let (sp, sc) = (med(&sluice, |r| r.publish), med(&sluice, |r| r.consume));
    println!(
        "\n{n} messages of {bytes} bytes, medians of {rounds} rounds: Java {jp:.0}/{jc:.0} msg/s, \
         sluice {sp:.0}/{sc:.0}; sluice / Java: publish {:.2}, consume {:.2}",
        sp / jp,
        sc / jc
    );
    Ok(())
}

//! Benchmark for the Pulsar client decision: publish and consume 200,000
//! messages of 200 bytes with batching, with magnetar-driver and with the
//! pulsar crate, against the local broker, in the same run.
//!
//! Run: `scripts/stack up pulsar && cargo bench -p sluice-tests --bench pulsar_clients`
//! Optional: `BENCH_MESSAGES=N BENCH_ROUNDS=R`.
//!
//! The clients take turns, round after round, so that a noisy neighbour on
//! the machine slows both alike. The report is the median of the rounds and
//! the ratio of the two medians.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::{OutgoingMessage, PulsarClient};
use sluice_tests::{PULSAR_URL, topic, unique};

const PAYLOAD_BYTES: usize = 200;
const BATCH_MESSAGES: usize = 1000;
const BATCH_BYTES: usize = 128 * 1024;
const BATCH_DELAY: Duration = Duration::from_millis(10);
/// Sends awaiting their receipt at any time, as the runtime bounds them.
const IN_FLIGHT: usize = 5000;

fn in_flight() -> usize {
    sluice_tests::env_or("BENCH_IN_FLIGHT", IN_FLIGHT)
}

/// Messages per second for publishing (until the last receipt) and consuming.
#[derive(Debug, Clone, Copy)]
struct Rates {
    publish: f64,
    consume: f64,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn magnetar_round(n: usize) -> anyhow::Result<Rates> {
    let client = PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let topic = topic(&unique("bench-magnetar"));
    let consumer = client
        .consumer(&topic)
        .subscription("bench")
        .subscription_type(SubType::Exclusive)
        .initial_position(InitialPosition::Earliest)
        .receiver_queue_size(5000)
        .subscribe()
        .await?;
    let producer = client
        .producer(&topic)
        .batching(BATCH_MESSAGES, BATCH_BYTES)
        .batching_max_publish_delay(BATCH_DELAY)
        .create()
        .await?;
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD_BYTES]);

    let start = Instant::now();
    let window = in_flight();
    let mut in_flight = std::collections::VecDeque::with_capacity(window);
    for _ in 0..n {
        if in_flight.len() == window
            && let Some(oldest) = in_flight.pop_front()
        {
            oldest.await?;
        }
        in_flight.push_back(producer.send(OutgoingMessage::with_payload(payload.clone()).into()));
    }
    for send in in_flight {
        send.await?;
    }
    let publish = rate(n, start.elapsed());

    let start = Instant::now();
    let mut ids = Vec::with_capacity(BATCH_MESSAGES);
    for _ in 0..n {
        let msg = consumer.receive().await?;
        ids.push(msg.message_id);
        if ids.len() == BATCH_MESSAGES {
            consumer.ack_batch(std::mem::take(&mut ids)).await?;
        }
    }
    if !ids.is_empty() {
        consumer.ack_batch(ids).await?;
    }
    let consume = rate(n, start.elapsed());
    producer.close().await?;
    consumer.close().await?;
    Ok(Rates { publish, consume })
}

async fn pulsar_rs_round(n: usize) -> anyhow::Result<Rates> {
    use pulsar::consumer::InitialPosition;
    use pulsar::{ConsumerOptions, ProducerOptions, Pulsar, SubType, TokioExecutor};

    let client: Pulsar<TokioExecutor> = Pulsar::builder(PULSAR_URL, TokioExecutor).build().await?;
    let topic = topic(&unique("bench-pulsar-rs"));
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription("bench")
        .with_subscription_type(SubType::Exclusive)
        .with_batch_size(5000)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await?;
    let mut producer = client
        .producer()
        .with_topic(&topic)
        .with_options(ProducerOptions {
            batch_size: Some(BATCH_MESSAGES as u32),
            batch_byte_size: Some(BATCH_BYTES),
            batch_timeout: Some(BATCH_DELAY),
            block_queue_if_full: true,
            ..ProducerOptions::default()
        })
        .build()
        .await?;
    let payload = vec![b'x'; PAYLOAD_BYTES];

    let start = Instant::now();
    let window = in_flight();
    let mut in_flight = std::collections::VecDeque::with_capacity(window);
    for _ in 0..n {
        if in_flight.len() == window
            && let Some(oldest) = in_flight.pop_front()
        {
            oldest.await?;
        }
        in_flight.push_back(producer.send_non_blocking(payload.clone()).await?);
    }
    for receipt in in_flight {
        receipt.await?;
    }
    let publish = rate(n, start.elapsed());

    let start = Instant::now();
    for _ in 0..n {
        let msg = consumer
            .try_next()
            .await?
            .context("consumer stream ended")?;
        consumer.ack(&msg).await?;
    }
    let consume = rate(n, start.elapsed());
    producer.close().await?;
    Ok(Rates { publish, consume })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let n = sluice_tests::env_or("BENCH_MESSAGES", 200_000);
    let rounds = sluice_tests::env_or("BENCH_ROUNDS", 3);
    println!(
        "pulsar client benchmark: {n} messages x {PAYLOAD_BYTES} B, batches of {BATCH_MESSAGES}, \
         {} in flight, {rounds} rounds",
        in_flight()
    );

    // One warm-up round each: topic creation, JIT on the broker side.
    magnetar_round(n / 10).await.context("magnetar warm-up")?;
    pulsar_rs_round(n / 10).await.context("pulsar-rs warm-up")?;

    let mut magnetar = Vec::new();
    let mut pulsar_rs = Vec::new();
    for round in 0..rounds {
        let m = magnetar_round(n).await.context("magnetar round")?;
        let p = pulsar_rs_round(n).await.context("pulsar-rs round")?;
        println!(
            "round {}: magnetar publish {:.0}/s consume {:.0}/s | pulsar-rs publish {:.0}/s consume {:.0}/s",
            round + 1,
            m.publish,
            m.consume,
            p.publish,
            p.consume
        );
        magnetar.push(m);
        pulsar_rs.push(p);
    }

    let med = |v: &[Rates], f: fn(&Rates) -> f64| median(v.iter().map(f).collect());
    let (mp, mc) = (med(&magnetar, |r| r.publish), med(&magnetar, |r| r.consume));
    let (pp, pc) = (
        med(&pulsar_rs, |r| r.publish),
        med(&pulsar_rs, |r| r.consume),
    );
    println!();
    println!("| client | publish msg/s (median) | consume msg/s (median) |");
    println!("|---|---|---|");
    println!("| magnetar-driver 1.7.4 | {mp:.0} | {mc:.0} |");
    println!("| pulsar 6.9.1 | {pp:.0} | {pc:.0} |");
    println!(
        "| ratio magnetar / pulsar | {:.2} | {:.2} |",
        mp / pp,
        mc / pc
    );
    Ok(())
}

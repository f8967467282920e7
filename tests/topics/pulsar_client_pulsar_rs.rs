//! Client spike, the `pulsar` crate (pulsar-rs): what this client does
//! against the real broker for each thing the guarantee design needs. The
//! findings are in `docs/decisions/0001-pulsar-client.md`; these tests keep
//! them true. The crate has no transaction API, so the transaction case has no
//! test here: there is nothing to call.

use std::time::Duration;

use anyhow::{Context, ensure};
use futures_util::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{
    Consumer, ConsumerOptions, Producer, ProducerOptions, Pulsar, SubType, TokioExecutor,
};
use sluice_tests::{DEADLINE, PULSAR_URL, admin, topic, unique};

/// How long a standby must stay waiting while the active producer is open.
const STANDBY_WINDOW: Duration = Duration::from_secs(2);
/// Producer access modes, as the crate takes them (an `i32` of the wire enum).
const EXCLUSIVE: i32 = 1;
const WAIT_FOR_EXCLUSIVE: i32 = 2;

type Client = Pulsar<TokioExecutor>;

async fn connect() -> anyhow::Result<Client> {
    Pulsar::builder(PULSAR_URL, TokioExecutor)
        .build()
        .await
        .context("connect to the broker")
}

async fn subscribe(
    client: &Client,
    topic: &str,
    sub: &str,
) -> anyhow::Result<Consumer<Vec<u8>, TokioExecutor>> {
    client
        .consumer()
        .with_topic(topic)
        .with_subscription(sub)
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .with_context(|| format!("subscribe {sub} on {topic}"))
}

async fn producer(
    client: &Client,
    topic: &str,
    name: Option<&str>,
    access_mode: Option<i32>,
) -> Result<Producer<TokioExecutor>, pulsar::Error> {
    let mut builder = client
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions {
            access_mode,
            // Without it a burst of sends beyond the outbound queue fails with SlowDown.
            block_queue_if_full: true,
            ..ProducerOptions::default()
        });
    if let Some(name) = name {
        builder = builder.with_name(name);
    }
    builder.build().await
}

/// Receive one message as text and ack it.
async fn receive_text(consumer: &mut Consumer<Vec<u8>, TokioExecutor>) -> anyhow::Result<String> {
    let msg = tokio::time::timeout(DEADLINE, consumer.try_next())
        .await
        .context("no message within the deadline")??
        .context("the consumer stream ended")?;
    consumer.ack(&msg).await?;
    Ok(String::from_utf8_lossy(&msg.payload.data).into_owned())
}

async fn receive_texts(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(receive_text(consumer).await?);
    }
    Ok(out)
}

async fn send_texts(producer: &mut Producer<TokioExecutor>, texts: &[&str]) -> anyhow::Result<()> {
    let mut receipts = Vec::with_capacity(texts.len());
    for t in texts {
        receipts.push(producer.send_non_blocking(t.to_string()).await?);
    }
    for r in receipts {
        r.await?;
    }
    Ok(())
}

/// Publish a marker from a fresh producer and return what came before it.
async fn payloads_before_marker(
    client: &Client,
    topic: &str,
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> anyhow::Result<Vec<String>> {
    let marker = unique("marker");
    let mut p = producer(client, topic, None, None).await?;
    send_texts(&mut p, &[marker.as_str()]).await?;
    p.close().await?;
    let mut before = Vec::new();
    loop {
        let payload = receive_text(consumer).await?;
        if payload == marker {
            return Ok(before);
        }
        before.push(payload);
    }
}

#[tokio::test]
async fn round_trip_keeps_order_keys_properties_and_event_time() -> anyhow::Result<()> {
    // GIVEN a fresh topic with a subscription and a producer
    let client = connect().await?;
    let topic = topic(&unique("rs-roundtrip"));
    let mut consumer = subscribe(&client, &topic, "spike").await?;
    let mut producer = producer(&client, &topic, None, None).await?;

    // WHEN 500 keyed messages with properties are published
    let mut receipts = Vec::new();
    for i in 0..500u64 {
        receipts.push(
            producer
                .create_message()
                .with_content(format!("payload-{i}"))
                .with_key(format!("{{\"id\":{i}}}"))
                .with_property("sluice.seq", i.to_string())
                .event_time(1_700_000_000_000 + i)
                .send_non_blocking()
                .await?,
        );
    }
    for r in receipts {
        r.await?;
    }

    // THEN they come back in order with every field intact
    for i in 0..500u64 {
        let msg = tokio::time::timeout(DEADLINE, consumer.try_next())
            .await??
            .context("stream ended")?;
        let meta = msg.metadata();
        assert_eq!(
            String::from_utf8_lossy(&msg.payload.data),
            format!("payload-{i}")
        );
        assert_eq!(
            meta.partition_key.as_deref(),
            Some(format!("{{\"id\":{i}}}").as_str())
        );
        let seq = meta.properties.iter().find(|kv| kv.key == "sluice.seq");
        assert_eq!(
            seq.map(|kv| kv.value.as_str()),
            Some(i.to_string().as_str())
        );
        assert_eq!(meta.event_time, Some(1_700_000_000_000 + i));
        consumer.ack(&msg).await?;
    }
    Ok(())
}

#[tokio::test]
async fn exclusive_producer_refuses_a_second_until_the_first_closes() -> anyhow::Result<()> {
    // GIVEN an exclusive producer on a topic
    let client = connect().await?;
    let topic = topic(&unique("rs-exclusive"));
    let mut first = producer(&client, &topic, None, Some(EXCLUSIVE)).await?;
    send_texts(&mut first, &["from-first"]).await?;

    // WHEN a second exclusive producer tries to attach
    let second = producer(&client, &topic, None, Some(EXCLUSIVE)).await;

    // THEN the broker refuses it
    ensure!(second.is_err(), "a second exclusive producer was accepted");

    // AND once the first closes, a new exclusive producer attaches and writes
    first.close().await?;
    let mut third = producer(&client, &topic, None, Some(EXCLUSIVE)).await?;
    send_texts(&mut third, &["from-third"]).await?;
    let mut consumer = subscribe(&client, &topic, "spike").await?;
    assert_eq!(
        receive_texts(&mut consumer, 2).await?,
        ["from-first", "from-third"]
    );
    Ok(())
}

#[tokio::test]
async fn wait_for_exclusive_producer_waits_then_takes_over() -> anyhow::Result<()> {
    // GIVEN an exclusive producer that has written one message
    let client = connect().await?;
    let topic = topic(&unique("rs-wait-exclusive"));
    let mut first = producer(&client, &topic, None, Some(EXCLUSIVE)).await?;
    send_texts(&mut first, &["from-active"]).await?;

    // WHEN a standby asks for WaitForExclusive access
    let standby_client = connect().await?;
    let standby_topic = topic.clone();
    let mut standby = tokio::spawn(async move {
        let mut p = producer(
            &standby_client,
            &standby_topic,
            None,
            Some(WAIT_FOR_EXCLUSIVE),
        )
        .await?;
        send_texts(&mut p, &["from-standby"]).await?;
        anyhow::Ok(p)
    });

    // THEN it does not attach while the first is active, and the first keeps writing
    let early = tokio::time::timeout(STANDBY_WINDOW, &mut standby).await;
    ensure!(
        early.is_err(),
        "standby attached while the active producer was open"
    );
    send_texts(&mut first, &["still-active"]).await?;

    // AND when the first closes, the standby takes over and writes
    first.close().await?;
    let mut standby = tokio::time::timeout(DEADLINE, standby)
        .await
        .context("standby never took over")???;
    let mut consumer = subscribe(&client, &topic, "spike").await?;
    assert_eq!(
        receive_texts(&mut consumer, 3).await?,
        ["from-active", "still-active", "from-standby"]
    );
    standby.close().await?;
    Ok(())
}

#[tokio::test]
async fn restarted_named_producer_on_a_dedup_namespace() -> anyhow::Result<()> {
    // GIVEN a namespace with broker deduplication and a named producer that wrote m0..m9
    let ns = admin::create_namespace(&unique("rs-dedup"))?;
    admin::enable_deduplication(&ns)?;
    let client = connect().await?;
    let topic = format!("persistent://{ns}/events");
    let mut consumer = subscribe(&client, &topic, "spike").await?;
    let first_batch = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"];
    let mut p = producer(&client, &topic, Some("spike-writer"), None).await?;
    send_texts(&mut p, &first_batch).await?;
    p.close().await?;

    // WHEN it restarts under the same name and writes m10..m19
    let mut restarted = producer(&client, &topic, Some("spike-writer"), None).await?;
    send_texts(
        &mut restarted,
        &[
            "m10", "m11", "m12", "m13", "m14", "m15", "m16", "m17", "m18", "m19",
        ],
    )
    .await?;
    restarted.close().await?;

    // THEN the client restarted its sequence ids at 0, so the broker dropped
    // every new message as a duplicate, and there is no way to set a sequence id
    let visible = payloads_before_marker(&client, &topic, &mut consumer).await?;
    assert_eq!(
        visible, first_batch,
        "messages m10..m19 should have been dropped as duplicates"
    );
    Ok(())
}

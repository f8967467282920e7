//! Client spike, magnetar-driver: what this client does against the real
//! broker for each thing the guarantee design needs. The findings are in
//! `docs/decisions/0001-pulsar-client.md`; these tests keep them true.

use std::time::Duration;

use anyhow::{Context, ensure};
use magnetar::proto::pb::ProducerAccessMode;
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::runtime_tokio::{Consumer, Producer};
use magnetar::{OutgoingMessage, PulsarClient};
use sluice_tests::{DEADLINE, PULSAR_URL, admin, topic, unique};

async fn connect() -> anyhow::Result<PulsarClient> {
    PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await
        .context("connect to the broker")
}

async fn subscribe(client: &PulsarClient, topic: &str, sub: &str) -> anyhow::Result<Consumer> {
    client
        .consumer(topic)
        .subscription(sub)
        .subscription_type(SubType::Exclusive)
        .initial_position(InitialPosition::Earliest)
        .subscribe()
        .await
        .with_context(|| format!("subscribe {sub} on {topic}"))
}

async fn receive(consumer: &Consumer) -> anyhow::Result<magnetar::proto::IncomingMessage> {
    consumer
        .receive_with_timeout(DEADLINE)
        .await?
        .with_context(|| format!("no message on {} within {DEADLINE:?}", consumer.topic()))
}

/// How long a standby must stay waiting while the active producer is open.
const STANDBY_WINDOW: Duration = Duration::from_secs(2);

/// The message key. A batched message carries it in its single-message
/// metadata, an unbatched one in the message metadata.
fn key(msg: &magnetar::proto::IncomingMessage) -> Option<&str> {
    match &msg.single_metadata {
        Some(single) => single.partition_key.as_deref(),
        None => msg.metadata.partition_key.as_deref(),
    }
}

fn property<'m>(msg: &'m magnetar::proto::IncomingMessage, name: &str) -> Option<&'m str> {
    let props = match &msg.single_metadata {
        Some(single) => &single.properties,
        None => &msg.metadata.properties,
    };
    props
        .iter()
        .find(|kv| kv.key == name)
        .map(|kv| kv.value.as_str())
}

fn event_time(msg: &magnetar::proto::IncomingMessage) -> Option<u64> {
    match &msg.single_metadata {
        Some(single) => single.event_time,
        None => msg.metadata.event_time,
    }
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

/// Receive `n` messages and return their payloads as text, acking each.
async fn receive_texts(consumer: &Consumer, n: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let msg = receive(consumer).await?;
        out.push(text(&msg.payload));
        consumer.ack(msg.message_id).await?;
    }
    Ok(out)
}

/// Publish a marker without a transaction and return the payloads that came
/// before it: a deterministic way to show that nothing else is visible.
async fn payloads_before_marker(
    client: &PulsarClient,
    topic: &str,
    consumer: &Consumer,
) -> anyhow::Result<Vec<String>> {
    let marker = unique("marker");
    let producer = client.producer(topic).create().await?;
    producer
        .send(OutgoingMessage::with_payload(marker.clone().into_bytes()).into())
        .await?;
    producer.close().await?;
    let mut before = Vec::new();
    loop {
        let msg = receive(consumer).await?;
        consumer.ack(msg.message_id).await?;
        let payload = text(&msg.payload);
        if payload == marker {
            return Ok(before);
        }
        before.push(payload);
    }
}

async fn send_texts(producer: &Producer, texts: &[String]) -> anyhow::Result<()> {
    let sends: Vec<_> = texts
        .iter()
        .map(|t| producer.send(OutgoingMessage::with_payload(t.clone().into_bytes()).into()))
        .collect();
    for send in sends {
        send.await?;
    }
    Ok(())
}

#[tokio::test]
async fn round_trip_keeps_order_keys_properties_and_event_time() -> anyhow::Result<()> {
    // GIVEN a fresh topic with a subscription and a batching producer
    let client = connect().await?;
    let topic = topic(&unique("mg-roundtrip"));
    let consumer = subscribe(&client, &topic, "spike").await?;
    let producer = client
        .producer(&topic)
        .batching(100, 128 * 1024)
        .batching_max_publish_delay(Duration::from_millis(5))
        .create()
        .await?;

    // WHEN 500 keyed messages with properties are published
    let sends: Vec<_> = (0..500u64)
        .map(|i| {
            producer.send(
                OutgoingMessage::with_payload(format!("payload-{i}").into_bytes())
                    .key(format!("{{\"id\":{i}}}"))
                    .property("sluice.seq", i.to_string())
                    .event_time_ms(1_700_000_000_000 + i)
                    .into(),
            )
        })
        .collect();
    for send in sends {
        send.await?;
    }

    // THEN they come back in order with every field intact
    for i in 0..500u64 {
        let msg = receive(&consumer).await?;
        assert_eq!(text(&msg.payload), format!("payload-{i}"));
        assert_eq!(key(&msg), Some(format!("{{\"id\":{i}}}").as_str()));
        assert_eq!(property(&msg, "sluice.seq"), Some(i.to_string().as_str()));
        assert_eq!(event_time(&msg), Some(1_700_000_000_000 + i));
        consumer.ack(msg.message_id).await?;
    }
    producer.close().await?;
    Ok(())
}

#[tokio::test]
async fn exclusive_producer_refuses_a_second_until_the_first_closes() -> anyhow::Result<()> {
    // GIVEN an exclusive producer on a topic
    let client = connect().await?;
    let topic = topic(&unique("mg-exclusive"));
    let first = client
        .producer(&topic)
        .access_mode(ProducerAccessMode::Exclusive)
        .create()
        .await?;
    first
        .send(OutgoingMessage::with_payload(b"from-first".as_slice()).into())
        .await?;

    // WHEN a second exclusive producer tries to attach
    let second = client
        .producer(&topic)
        .access_mode(ProducerAccessMode::Exclusive)
        .create()
        .await;

    // THEN the broker refuses it
    let err = second
        .err()
        .context("a second exclusive producer was accepted")?;
    let msg = err.to_string();
    ensure!(
        msg.contains("Fenced") || msg.contains("Busy") || msg.contains("exclusive"),
        "unexpected error: {msg}"
    );

    // AND once the first closes, a new exclusive producer attaches and writes
    first.close().await?;
    let third = client
        .producer(&topic)
        .access_mode(ProducerAccessMode::Exclusive)
        .create()
        .await?;
    third
        .send(OutgoingMessage::with_payload(b"from-third".as_slice()).into())
        .await?;
    let consumer = subscribe(&client, &topic, "spike").await?;
    assert_eq!(
        receive_texts(&consumer, 2).await?,
        ["from-first", "from-third"]
    );
    Ok(())
}

#[tokio::test]
async fn wait_for_exclusive_is_not_honoured_a_standby_is_refused_instead() -> anyhow::Result<()> {
    // GIVEN an exclusive producer that has written one message
    let client = connect().await?;
    let topic = topic(&unique("mg-wait-exclusive"));
    let first = client
        .producer(&topic)
        .access_mode(ProducerAccessMode::Exclusive)
        .create()
        .await?;
    first
        .send(OutgoingMessage::with_payload(b"from-active".as_slice()).into())
        .await?;

    // WHEN a standby asks for WaitForExclusive access and publishes
    let standby_client = connect().await?;
    let standby = standby_client
        .producer(&topic)
        .access_mode(ProducerAccessMode::WaitForExclusive)
        .create()
        .await;

    // THEN magnetar does not wait: it takes the broker's "not ready yet" answer
    // for a ready producer, and its first publish makes the broker close the
    // connection ("the producer is not ready")
    let publish = match standby {
        Ok(p) => p
            .send(OutgoingMessage::with_payload(b"from-standby".as_slice()).into())
            .await
            .err()
            .map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    ensure!(
        publish.is_some(),
        "the WaitForExclusive standby published while the active producer was open"
    );

    // AND the active producer is unaffected
    first
        .send(OutgoingMessage::with_payload(b"still-active".as_slice()).into())
        .await?;

    // AND a standby that retries Exclusive access takes over once the first closes
    let retry_client = connect().await?;
    let retry_topic = topic.clone();
    let mut takeover = tokio::spawn(async move {
        loop {
            match retry_client
                .producer(&retry_topic)
                .access_mode(ProducerAccessMode::Exclusive)
                .create()
                .await
            {
                Ok(p) => {
                    p.send(OutgoingMessage::with_payload(b"from-standby".as_slice()).into())
                        .await?;
                    return anyhow::Ok(p);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    let early = tokio::time::timeout(STANDBY_WINDOW, &mut takeover).await;
    ensure!(
        early.is_err(),
        "standby attached while the active producer was open"
    );
    first.close().await?;
    let standby = tokio::time::timeout(DEADLINE, takeover)
        .await
        .context("standby never took over")???;
    let consumer = subscribe(&client, &topic, "spike").await?;
    assert_eq!(
        receive_texts(&consumer, 3).await?,
        ["from-active", "still-active", "from-standby"]
    );
    standby.close().await?;
    Ok(())
}

#[tokio::test]
async fn restarted_named_producer_on_a_dedup_namespace() -> anyhow::Result<()> {
    // GIVEN a namespace with broker deduplication and a named producer that wrote 0..10
    let ns = admin::create_namespace(&unique("mg-dedup"))?;
    admin::enable_deduplication(&ns)?;
    let client = connect().await?;
    let topic = format!("persistent://{ns}/events");
    let consumer = subscribe(&client, &topic, "spike").await?;
    let first_batch: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let producer = client
        .producer(&topic)
        .name("spike-writer")
        .create()
        .await?;
    send_texts(&producer, &first_batch).await?;
    assert_eq!(producer.last_sequence_id_published(), 9);
    producer.close().await?;

    // WHEN it restarts under the same name without an initial sequence id and writes 10..20
    let restarted = client
        .producer(&topic)
        .name("spike-writer")
        .create()
        .await?;
    let broker_last = restarted.last_sequence_id_published();
    let second_batch: Vec<String> = (10..20).map(|i| format!("m{i}")).collect();
    send_texts(&restarted, &second_batch).await?;
    restarted.close().await?;

    // THEN the broker reported the last sequence id, yet the client restarted at 0:
    // the first 10 new messages carry sequence ids 0..9 and are silently dropped
    assert_eq!(broker_last, 9);
    let visible = payloads_before_marker(&client, &topic, &consumer).await?;
    assert_eq!(
        visible, first_batch,
        "messages m10..m19 should have been dropped as duplicates"
    );

    // WHEN it restarts with initial_sequence_id = last + 1 and resends two old ids then new ones
    let resumed = client
        .producer(&topic)
        .name("spike-writer")
        .initial_sequence_id(8)
        .create()
        .await?;
    let resent: Vec<String> = ["dup-8", "dup-9", "m20", "m21"].map(String::from).to_vec();
    send_texts(&resumed, &resent).await?;
    resumed.close().await?;

    // THEN sequence ids 8 and 9 are dropped as duplicates and 10, 11 land:
    // dedup works, but only for sequence ids the producer counts itself
    let visible = payloads_before_marker(&client, &topic, &consumer).await?;
    assert_eq!(visible, ["m20", "m21"]);
    Ok(())
}

/// Open a transaction and register what it touches. magnetar does not
/// register produced topics or acked subscriptions itself: without this the
/// coordinator never tells those topics that the transaction ended, and their
/// readers stall until it times out.
async fn begin(
    client: &PulsarClient,
    produces_to: &[&str],
    acks_on: (&str, &str),
) -> anyhow::Result<magnetar::Transaction> {
    let txn = client.new_transaction(Duration::from_secs(60)).await?;
    for topic in produces_to {
        client
            .register_partition_to_transaction(txn, *topic)
            .await?;
    }
    client
        .register_subscription_to_transaction(txn, acks_on.0, acks_on.1)
        .await?;
    Ok(txn)
}

#[tokio::test]
async fn transaction_over_two_topics_and_an_ack_is_atomic() -> anyhow::Result<()> {
    // GIVEN an input message waiting on a subscription, and two output topics
    let client = connect().await?;
    let input = topic(&unique("mg-txn-in"));
    let out_a = topic(&unique("mg-txn-a"));
    let out_b = topic(&unique("mg-txn-b"));
    let in_consumer = subscribe(&client, &input, "worker").await?;
    let a_reader = subscribe(&client, &out_a, "audit").await?;
    let b_reader = subscribe(&client, &out_b, "audit").await?;
    let input_producer = client.producer(&input).create().await?;
    input_producer
        .send(OutgoingMessage::with_payload(b"order-1".as_slice()).into())
        .await?;
    let producer_a = client.producer(&out_a).create().await?;
    let producer_b = client.producer(&out_b).create().await?;

    // WHEN it is consumed, both outputs are published and the input acked in a
    // transaction that is then aborted
    let msg = receive(&in_consumer).await?;
    assert_eq!(text(&msg.payload), "order-1");
    let txn = begin(&client, &[&out_a, &out_b], (&input, "worker")).await?;
    producer_a
        .send(
            OutgoingMessage::with_payload(b"a-aborted".as_slice())
                .txn(txn.id())
                .into(),
        )
        .await?;
    producer_b
        .send(
            OutgoingMessage::with_payload(b"b-aborted".as_slice())
                .txn(txn.id())
                .into(),
        )
        .await?;
    in_consumer.ack_with_txn(msg.message_id, txn.id()).await?;
    client.abort_transaction(txn).await?;

    // THEN nothing of it is visible and the input is still unacknowledged
    assert!(
        payloads_before_marker(&client, &out_a, &a_reader)
            .await?
            .is_empty()
    );
    assert!(
        payloads_before_marker(&client, &out_b, &b_reader)
            .await?
            .is_empty()
    );
    in_consumer.redeliver_unacked();
    let again = receive(&in_consumer).await?;
    assert_eq!(text(&again.payload), "order-1");

    // WHEN the same work is done in a transaction that commits
    let txn = begin(&client, &[&out_a, &out_b], (&input, "worker")).await?;
    producer_a
        .send(
            OutgoingMessage::with_payload(b"a-committed".as_slice())
                .txn(txn.id())
                .into(),
        )
        .await?;
    producer_b
        .send(
            OutgoingMessage::with_payload(b"b-committed".as_slice())
                .txn(txn.id())
                .into(),
        )
        .await?;
    in_consumer.ack_with_txn(again.message_id, txn.id()).await?;
    client.commit_transaction(txn).await?;

    // THEN all of it is visible, and the input is acknowledged: a new
    // consumer on the subscription sees only what is published after
    assert_eq!(
        payloads_before_marker(&client, &out_a, &a_reader).await?,
        ["a-committed"]
    );
    assert_eq!(
        payloads_before_marker(&client, &out_b, &b_reader).await?,
        ["b-committed"]
    );
    in_consumer.close().await?;
    let in_consumer = subscribe(&client, &input, "worker").await?;
    assert!(
        payloads_before_marker(&client, &input, &in_consumer)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_of_one_reaches_the_consumer_unopened() -> anyhow::Result<()> {
    // GIVEN a batching producer that publishes a single message
    let client = connect().await?;
    let topic = topic(&unique("mg-batch-of-one"));
    let consumer = subscribe(&client, &topic, "spike").await?;
    let producer = client
        .producer(&topic)
        .batching(100, 128 * 1024)
        .batching_max_publish_delay(Duration::from_millis(5))
        .create()
        .await?;
    producer
        .send(
            OutgoingMessage::with_payload(b"{\"a\":1}".as_slice())
                .key("k")
                .into(),
        )
        .await?;

    // WHEN it is received
    let msg = receive(&consumer).await?;

    // THEN magnetar did not unpack the batch container: the payload still
    // starts with the single-message metadata, and there is none on the side
    assert_eq!(msg.metadata.num_messages_in_batch, Some(1));
    assert!(msg.single_metadata.is_none());
    assert_ne!(&msg.payload[..], b"{\"a\":1}");
    assert!(msg.payload.ends_with(b"{\"a\":1}"));
    Ok(())
}

#[tokio::test]
async fn a_message_that_does_not_fit_the_open_batch_overtakes_it() -> anyhow::Result<()> {
    // GIVEN a producer whose batches hold at most 1,000 bytes, with 600 bytes open
    let client = connect().await?;
    let topic = topic(&unique("mg-batch-overtake"));
    let consumer = subscribe(&client, &topic, "spike").await?;
    let producer = client
        .producer(&topic)
        .batching(100, 1000)
        .batching_max_publish_delay(Duration::from_millis(200))
        .create()
        .await?;
    let first = producer.send(OutgoingMessage::with_payload(vec![b'1'; 600]).into());

    // WHEN a 600-byte message does not fit
    let second = producer.send(OutgoingMessage::with_payload(vec![b'2'; 600]).into());
    first.await?;
    second.await?;

    // THEN magnetar sends it on its own at once, ahead of the open batch
    // (which, holding one message, also arrives unopened)
    let a = receive(&consumer).await?;
    let b = receive(&consumer).await?;
    assert_eq!(&a.payload[..], &[b'2'; 600][..]);
    assert!(b.payload.ends_with(&[b'1'; 600]));
    Ok(())
}

//! EFFECTIVELY_ONCE on the source side, against the real broker: records
//! reach their topic exactly once across kill -9s, and two instances of one
//! source publish one at a time, the standby taking over when the active
//! one dies. An independent reader audits the topic.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use magnetar::proto::pb::command_subscribe::InitialPosition;
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
    let client = PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let full = sluice_tests::topic(topic);
    let consumer = client
        .consumer(&full)
        .subscription(unique("audit"))
        .initial_position(InitialPosition::Earliest)
        .subscribe()
        .await?;
    let marker = unique("end-of-audit");
    let producer = client.producer(&full).create().await?;
    producer
        .send(OutgoingMessage::with_payload(marker.clone().into_bytes()).into())
        .await?;
    producer.close().await?;
    let mut seen = BTreeMap::new();
    loop {
        let msg = consumer
            .receive_with_timeout(LONG)
            .await?
            .context("the audit marker never arrived")?;
        if msg.payload.as_ref() == marker.as_bytes() {
            return Ok(seen);
        }
        let props = match &msg.single_metadata {
            Some(single) => &single.properties,
            None => &msg.metadata.properties,
        };
        let seq = props
            .iter()
            .find(|kv| kv.key == "sluice.seq")
            .and_then(|kv| kv.value.parse::<u64>().ok())
            .context("a message without sluice.seq")?;
        *seen.entry(seq).or_default() += 1;
    }
}

/// (lost, duplicated) among `0..count`.
fn losses_and_duplicates(seen: &BTreeMap<u64, usize>, count: u64) -> (u64, usize) {
    let lost = (0..count).filter(|s| !seen.contains_key(s)).count() as u64;
    let duplicated = seen.values().map(|n| n - 1).sum();
    (lost, duplicated)
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
    let sluice = Sluice::start(&dir, &config, port)?;
    wait_for("every record published", LONG, || {
        let state = state.clone();
        async move { Ok((generated(&state) == count).then_some(())) }
    })
    .await
    .with_context(|| sluice.log())?;

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

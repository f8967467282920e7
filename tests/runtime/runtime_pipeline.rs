//! The runtime end to end, without databases: datagen → Pulsar → file sink,
//! against the real broker, with the `sluice` binary run as users run it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::{OutgoingMessage, PulsarClient};
use sluice_tests::{
    DEADLINE, PULSAR_URL, Sluice, backlog, file_sequences, free_port, temp_dir, topic, unique,
    wait_for,
};

/// Long enough for 20,000 records at 5,000/s, a kill and a restart.
const LONG: Duration = Duration::from_secs(120);

struct Pipeline {
    dir: PathBuf,
    topic: String,
    out: PathBuf,
    port: u16,
    config: String,
}

/// A datagen → file pipeline in a fresh folder, on a fresh topic.
fn pipeline(name: &str, guarantee: &str, count: u64, rate: u64) -> anyhow::Result<Pipeline> {
    pipeline_with(name, guarantee, count, rate, 64)
}

/// [`pipeline`], with values of `payload_bytes` padding.
fn pipeline_with(
    name: &str,
    guarantee: &str,
    count: u64,
    rate: u64,
    payload_bytes: u64,
) -> anyhow::Result<Pipeline> {
    let dir = temp_dir(name)?;
    let topic = unique(name);
    let out = dir.join("out.jsonl");
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: gen\n    className: datagen\n    topicName: {topic}\n    processingGuarantees: {guarantee}\n\
         \x20   configs:\n      count: {count}\n      ratePerSecond: {rate}\n      batchSize: 50\n      payloadBytes: {payload_bytes}\n      stateFile: {state}\n\
         sinks:\n  - name: out\n    className: file\n    inputs: [{topic}]\n    sourceSubscriptionName: out\n\
         \x20   sourceSubscriptionPosition: Earliest\n    processingGuarantees: {guarantee}\n    retainOrdering: true\n\
         \x20   configs:\n      path: {out}\n      batchSize: 200\n      timeoutMs: 50\n",
        state = dir.join("gen.state").display(),
        out = out.display(),
    );
    Ok(Pipeline {
        dir,
        topic,
        out,
        port,
        config,
    })
}

async fn wait_for_lines(out: &Path, n: usize) -> anyhow::Result<()> {
    wait_for(&format!("{n} lines in {}", out.display()), LONG, || {
        let out = out.to_owned();
        async move { Ok((file_sequences(&out)?.len() >= n).then_some(())) }
    })
    .await
}

/// Wait until the source has generated everything and the sink's
/// subscription has nothing left to deliver.
async fn wait_until_drained(sluice: &Sluice, topic: &str, count: u64) -> anyhow::Result<()> {
    let state = sluice.dir.join("gen.state");
    let full = topic.to_owned();
    wait_for("the source to finish and the sink to drain", LONG, || {
        let state = state.clone();
        let full = sluice_tests::topic(&full);
        async move {
            let generated = std::fs::read_to_string(&state)
                .unwrap_or_default()
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
            let left = backlog(&full, "out")?;
            Ok((generated == count && left == Some(0)).then_some(()))
        }
    })
    .await
}

/// How many records a running sluice's source has read.
fn generated_by(sluice: &Sluice) -> anyhow::Result<u64> {
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/gen").context("no status")?)?;
    status["records_in"].as_u64().context("no records_in")
}

fn distinct(seqs: &[u64]) -> BTreeSet<u64> {
    seqs.iter().copied().collect()
}

#[tokio::test]
async fn at_least_once_loses_nothing_across_a_kill_9() -> anyhow::Result<()> {
    // GIVEN an ATLEAST_ONCE pipeline generating 20,000 records
    let count = 20_000;
    let p = pipeline("rt-alo", "ATLEAST_ONCE", count, 5000)?;
    let first = Sluice::start(&p.dir, &p.config, p.port)?;

    // WHEN sluice is killed with SIGKILL a quarter of the way, then started again
    wait_for_lines(&p.out, 5000)
        .await
        .with_context(|| first.log())?;
    first.kill9()?;
    let second = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_until_drained(&second, &p.topic, count)
        .await
        .with_context(|| second.log())?;
    let resumed = generated_by(&second)?;
    let exit = second.interrupt().await?;

    // THEN the restart resumed from the committed position rather than from 0
    ensure!(
        resumed < count,
        "the restarted source generated all {count} records again"
    );

    // AND every record is in the file, none outside the range, and sluice stopped cleanly
    let seqs = file_sequences(&p.out)?;
    let seen = distinct(&seqs);
    let expected: BTreeSet<u64> = (0..count).collect();
    let lost = expected.difference(&seen).count();
    let duplicates = seqs.len() - seen.len();
    println!(
        "at least once: {} lines, {lost} lost, {duplicates} duplicated",
        seqs.len()
    );
    assert_eq!(lost, 0, "records lost");
    assert_eq!(seen, expected);
    ensure!(exit.success(), "sluice exited with {exit} after SIGINT");
    Ok(())
}

#[tokio::test]
async fn at_most_once_duplicates_nothing_across_a_kill_9() -> anyhow::Result<()> {
    // GIVEN an ATMOST_ONCE pipeline generating 20,000 records
    let count = 20_000;
    let p = pipeline("rt-amo", "ATMOST_ONCE", count, 5000)?;
    let first = Sluice::start(&p.dir, &p.config, p.port)?;

    // WHEN sluice is killed with SIGKILL a quarter of the way, then started again
    wait_for_lines(&p.out, 5000)
        .await
        .with_context(|| first.log())?;
    first.kill9()?;
    let second = Sluice::start(&p.dir, &p.config, p.port)?;
    wait_until_drained(&second, &p.topic, count)
        .await
        .with_context(|| second.log())?;
    let exit = second.interrupt().await?;

    // THEN no record is in the file twice, and none outside the range
    let seqs = file_sequences(&p.out)?;
    let seen = distinct(&seqs);
    let duplicates = seqs.len() - seen.len();
    println!(
        "at most once: {} lines, {} lost, {duplicates} duplicated",
        seqs.len(),
        count as usize - seen.len()
    );
    assert_eq!(duplicates, 0, "records written twice");
    ensure!(
        seen.iter().all(|s| *s < count),
        "a sequence outside 0..{count}"
    );
    ensure!(
        seen.len() >= 5000,
        "the records written before the kill are gone"
    );
    ensure!(exit.success(), "sluice exited with {exit} after SIGINT");
    Ok(())
}

#[tokio::test]
async fn metrics_and_connector_status_count_what_was_moved() -> anyhow::Result<()> {
    // GIVEN a pipeline that moves 3,000 records
    let count = 3000;
    let p = pipeline("rt-metrics", "ATLEAST_ONCE", count, 0)?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;

    // WHEN everything is delivered
    wait_until_drained(&sluice, &p.topic, count)
        .await
        .with_context(|| sluice.log())?;
    wait_for_lines(&p.out, count as usize).await?;

    // THEN the counters say so
    let metrics = sluice.get("/metrics").context("no /metrics")?;
    for line in [
        "sluice_records_in_total{connector=\"gen\",kind=\"source\"} 3000",
        "sluice_records_out_total{connector=\"gen\",kind=\"source\"} 3000",
        "sluice_records_in_total{connector=\"out\",kind=\"sink\"} 3000",
        "sluice_records_out_total{connector=\"out\",kind=\"sink\"} 3000",
        "sluice_dead_lettered_total{connector=\"out\",kind=\"sink\"} 0",
    ] {
        ensure!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in\n{metrics}"
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/out").context("no status")?)?;
    assert_eq!(status["state"], "running");
    assert_eq!(status["records_out"], 3000);
    assert_eq!(sluice.get("/healthz").as_deref(), Some("ok\n"));
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_the_pipeline_goes_on() -> anyhow::Result<()> {
    // GIVEN a file sink with a dead-letter topic, and a reader on that topic
    let dir = temp_dir("rt-poison")?;
    let input = topic(&unique("rt-poison"));
    let dlq = topic(&unique("rt-poison-dlq"));
    let out = dir.join("out.jsonl");
    let port = free_port()?;
    let client = PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let dlq_reader = client
        .consumer(&dlq)
        .subscription("audit")
        .subscription_type(SubType::Exclusive)
        .initial_position(InitialPosition::Earliest)
        .subscribe()
        .await?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - name: out\n    className: file\n    inputs: [{input}]\n    sourceSubscriptionName: out\n\
         \x20   sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n    deadLetterTopic: {dlq}\n\
         \x20   maxMessageRetries: 2\n    configs:\n      path: {}\n      batchSize: 100\n      timeoutMs: 50\n",
        out.display()
    );

    // WHEN five good records, one that is not JSON, and five more are published
    let producer = client.producer(&input).create().await?;
    for i in 0..11 {
        let payload = if i == 5 {
            b"not json".to_vec()
        } else {
            format!("{{\"n\":{i}}}").into_bytes()
        };
        producer
            .send(
                OutgoingMessage::with_payload(payload)
                    .key(format!("k{i}"))
                    .property("sluice.seq", i.to_string())
                    .into(),
            )
            .await?;
    }
    let sluice = Sluice::start(&dir, &config, port)?;

    // THEN the ten good records are written in order
    wait_for_lines(&out, 10)
        .await
        .with_context(|| sluice.log())?;
    assert_eq!(file_sequences(&out)?, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]);

    // AND the poison record is on the dead-letter topic with the error and its origin
    let msg = dlq_reader
        .receive_with_timeout(DEADLINE)
        .await?
        .context("nothing on the dead-letter topic")?;
    assert_eq!(&msg.payload[..], b"not json");
    let props: Vec<(String, String)> = msg
        .single_metadata
        .as_ref()
        .map_or(&msg.metadata.properties, |s| &s.properties)
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let prop = |k: &str| {
        props
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    ensure!(
        prop("sluice.error").is_some_and(|e| e.contains("not JSON")),
        "error property: {props:?}"
    );
    assert_eq!(prop("sluice.origin.topic"), Some(input.as_str()));
    assert_eq!(prop("sluice.origin.sink"), Some("out"));
    assert_eq!(prop("sluice.seq"), Some("5"));

    // AND the subscription is drained and the counters show one dead letter
    wait_for("the input backlog to drain", DEADLINE, || {
        let input = input.clone();
        async move { Ok((backlog(&input, "out")? == Some(0)).then_some(())) }
    })
    .await?;
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/out").context("no status")?)?;
    assert_eq!(status["dead_lettered"], 1);
    assert_eq!(status["records_out"], 10);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_failing_sink_restarts_with_backoff_while_the_others_keep_running() -> anyhow::Result<()>
{
    // GIVEN one source and two sinks, one of which writes into a folder that does not exist yet
    let count = 2000;
    let p = pipeline("rt-restart", "ATLEAST_ONCE", count, 0)?;
    let missing = p.dir.join("later");
    let late_out = missing.join("late.jsonl");
    let config = format!(
        "{}  - name: late\n    className: file\n    inputs: [{}]\n    sourceSubscriptionName: late\n\
         \x20   sourceSubscriptionPosition: Earliest\n    configs:\n      path: {}\n",
        p.config,
        p.topic,
        late_out.display()
    );
    let sluice = Sluice::start(&p.dir, &config, p.port)?;

    // WHEN the healthy sink has everything
    wait_until_drained(&sluice, &p.topic, count)
        .await
        .with_context(|| sluice.log())?;
    wait_for_lines(&p.out, count as usize).await?;

    // THEN the failing sink is restarting with its error (between attempts:
    // each attempt is briefly `starting`), and the healthy one ran on
    let late: serde_json::Value =
        wait_for("the failing sink between attempts", DEADLINE, || async {
            let late: serde_json::Value =
                serde_json::from_str(&sluice.get("/connectors/late").unwrap_or_default())
                    .unwrap_or_default();
            Ok((late["state"] == "restarting").then_some(late))
        })
        .await
        .with_context(|| sluice.log())?;
    ensure!(
        late["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("late.jsonl")),
        "{late}"
    );
    ensure!(late["restarts"].as_u64().is_some_and(|r| r >= 1), "{late}");
    ensure!(
        sluice.get("/readyz").is_none(),
        "/readyz answered 200 with a connector down"
    );

    // AND once the folder exists, it recovers and catches up
    std::fs::create_dir_all(&missing)?;
    wait_for_lines(&late_out, count as usize)
        .await
        .with_context(|| sluice.log())?;
    assert_eq!(distinct(&file_sequences(&late_out)?), (0..count).collect());
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn records_keep_their_order_when_batches_fill_by_bytes() -> anyhow::Result<()> {
    // GIVEN records large enough that producer batches fill by bytes, not by count
    let count = 20_000;
    let p = pipeline_with("rt-order", "ATLEAST_ONCE", count, 0, 300)?;
    let sluice = Sluice::start(&p.dir, &p.config, p.port)?;

    // WHEN they all reach the file
    wait_until_drained(&sluice, &p.topic, count)
        .await
        .with_context(|| sluice.log())?;
    wait_for_lines(&p.out, count as usize).await?;

    // THEN the file holds them in the order they were generated
    let seqs = file_sequences(&p.out)?;
    let out_of_order = seqs.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(out_of_order, 0, "records out of order");
    assert_eq!(seqs, (0..count).collect::<Vec<_>>());
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn parallelism_runs_that_many_consumers_on_the_subscription() -> anyhow::Result<()> {
    // GIVEN a sink with parallelism 2 on a Shared subscription, both of
    // its consumers subscribed
    let count = 5000;
    let p = pipeline("rt-parallel", "ATLEAST_ONCE", count, 5000)?;
    let full = topic(&p.topic);
    let path = full.replacen("persistent://", "/admin/v2/persistent/", 1);
    sluice_tests::admin::put(&path, None)?;
    let sources = p.config.find("sources:").context("no sources")?;
    let sinks = p.config.find("sinks:").context("no sinks")?;
    let sink_only = format!("{}{}", &p.config[..sources], &p.config[sinks..])
        .replace("    retainOrdering: true\n", "    parallelism: 2\n");
    ensure!(
        sink_only.contains("parallelism: 2"),
        "the pipeline template changed"
    );
    let sinks_run = Sluice::start(&p.dir, &sink_only, p.port)?;
    wait_for("two consumers on the subscription", LONG, || async {
        let stats: serde_json::Value =
            serde_json::from_str(&sluice_tests::admin::get(&format!("{path}/stats"))?)?;
        Ok((stats["subscriptions"]["out"]["consumers"]
            .as_array()
            .map(Vec::len)
            == Some(2))
        .then_some(()))
    })
    .await
    .with_context(|| sinks_run.log())?;

    // WHEN the source makes its records
    let source_port = free_port()?;
    let source_only = p.config[..sinks].replace(
        &format!("127.0.0.1:{}", p.port),
        &format!("127.0.0.1:{source_port}"),
    );
    let _source = Sluice::start(&p.dir, &source_only, source_port)?;
    let sluice = sinks_run;
    // WHEN every record is delivered
    wait_until_drained(&sluice, &p.topic, count)
        .await
        .with_context(|| sluice.log())?;
    wait_for_lines(&p.out, count as usize).await?;

    // THEN two consumers shared the work and nothing is missing
    let mut moved = 0;
    for instance in ["out-0", "out-1"] {
        let status: serde_json::Value = serde_json::from_str(
            &sluice
                .get(&format!("/connectors/{instance}"))
                .context("no status")?,
        )?;
        let out = status["records_out"].as_u64().context("no records_out")?;
        ensure!(out > 0, "{instance} moved nothing: {status}");
        moved += out;
    }
    ensure!(moved >= count, "the consumers moved {moved} of {count}");
    assert_eq!(distinct(&file_sequences(&p.out)?), (0..count).collect());
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn batches_published_with_each_codec_are_read_by_the_java_client_and_by_sluices_sink()
-> anyhow::Result<()> {
    for codec in ["LZ4", "ZLIB", "ZSTD", "SNAPPY"] {
        // GIVEN a source publishing 500 records compressed with the codec,
        // in batches
        let p = pipeline(
            &format!("{}-batches", codec.to_lowercase()),
            "ATLEAST_ONCE",
            500,
            5000,
        )?;
        let sinkless = p.config[..p.config.find("sinks:").context("no sinks")?].replacen(
            "    processingGuarantees: ATLEAST_ONCE\n",
            &format!(
                "    processingGuarantees: ATLEAST_ONCE\n    producerConfig:\n      compressionType: {codec}\n"
            ),
            1,
        );
        let sluice = Sluice::start(&p.dir, &sinkless, p.port)?;
        let full = topic(&p.topic);
        wait_for("500 records on the topic", LONG, || async {
            let stats = sluice_tests::admin::get(&format!(
                "/admin/v2/persistent/{}/stats",
                full.trim_start_matches("persistent://")
            ))
            .unwrap_or_default();
            let stats: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
            Ok((stats["msgInCounter"].as_u64() == Some(500)).then_some(()))
        })
        .await
        .with_context(|| sluice.log())?;
        ensure!(sluice.interrupt().await?.success());
        let internal: serde_json::Value =
            serde_json::from_str(&sluice_tests::admin::get(&format!(
                "/admin/v2/persistent/{}/internalStats",
                full.trim_start_matches("persistent://")
            ))?)?;
        let entries = internal["numberOfEntries"].as_u64();
        ensure!(entries.is_some_and(|n| n < 500), "not batched: {internal}");

        // WHEN Apache Pulsar's Java client reads the topic
        let messages = sluice_tests::java_lines("ReadTopic.java", &[PULSAR_URL, &full])?;

        // THEN it decodes every record (a batch compressed record by record,
        // as magnetar builds them, would be unreadable to it)
        let seqs: BTreeSet<u64> = messages
            .iter()
            .filter_map(|m| m["properties"]["sluice.seq"].as_str()?.parse().ok())
            .collect();
        assert_eq!(seqs.len(), 500, "{codec}: {} messages", messages.len());

        // WHEN sluice's own sink reads it
        let sources = p.config.find("sources:").context("no sources")?;
        let sinks = p.config.find("sinks:").context("no sinks")?;
        let sink_only = format!("{}{}", &p.config[..sources], &p.config[sinks..]);
        let sluice = Sluice::start(&p.dir, &sink_only, p.port)?;

        // THEN it writes every record once, and leaves no backlog
        wait_for_lines(&p.out, 500)
            .await
            .with_context(|| sluice.log())?;
        wait_for("the backlog to clear", LONG, || async {
            Ok((backlog(&full, "out")? == Some(0)).then_some(()))
        })
        .await
        .with_context(|| sluice.log())?;
        ensure!(sluice.interrupt().await?.success());
        assert_eq!(
            file_sequences(&p.out)?,
            (0..500).collect::<Vec<_>>(),
            "{codec}"
        );
    }
    Ok(())
}

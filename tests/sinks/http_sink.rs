//! The `http` sink against a real HTTP receiver on loopback and the real
//! broker: headers, signatures, every class of answer, retries and
//! `Retry-After`, per-key order under concurrency, and a kill -9 mid-stream.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, ensure};
use hmac::{Hmac, Mac};
use magnetar::OutgoingMessage;
use sha2::Sha256;
use sluice_tests::webhook::{Hit, Webhook};
use sluice_tests::{
    DEADLINE, PULSAR_URL, Sluice, backlog, free_port, reader, temp_dir, topic, unique, wait_for,
};

/// A pipeline of one `http` sink over `input`, with extra sink fields and
/// extra `configs` lines.
fn config(port: u16, input: &str, url: &str, extra_sink: &str, configs: &str) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - name: hook\n    className: org.apache.pulsar.io.http.HttpSink\n    inputs: [{input}]\n\
         \x20   sourceSubscriptionName: hook\n    sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n\
         {extra_sink}    configs:\n      url: {url}\n      batchSize: 20\n      timeoutMs: 20\n\
         \x20     retryBackoffMs: 20\n{configs}"
    )
}

/// Publish `(key, value)` records with a property each; the message ids.
async fn publish(topic: &str, records: &[(String, String)]) -> anyhow::Result<()> {
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let producer = client.producer(topic).create().await?;
    for (key, value) in records {
        let msg = OutgoingMessage::with_payload(value.as_bytes().to_vec())
            .key(key)
            .property("origin", "test");
        producer.send(msg.into()).await?;
    }
    producer.close().await?;
    Ok(())
}

/// The requests answered 2xx, by idempotency key.
fn delivered(hook: &Webhook, ok: impl Fn(&Hit) -> bool) -> BTreeMap<String, Vec<Hit>> {
    let mut out: BTreeMap<String, Vec<Hit>> = BTreeMap::new();
    for hit in hook.hits().into_iter().filter(|h| ok(h)) {
        let key = hit.header("idempotency-key").unwrap_or_default().to_owned();
        out.entry(key).or_default().push(hit);
    }
    out
}

async fn drained(input: &str) -> anyhow::Result<()> {
    wait_for("the input backlog to drain", DEADLINE, || {
        let input = input.to_owned();
        async move { Ok((backlog(&input, "hook")? == Some(0)).then_some(())) }
    })
    .await
}

/// The HMAC-SHA256 signature check a receiver does, written from the
/// documented scheme rather than from sluice's code: `v2` over the time,
/// method, path, content type, idempotency key and body, each but the body
/// followed by a newline.
fn signature_holds(
    secret: &str,
    header: &str,
    path: &str,
    (content_type, idempotency_key): (&str, &str),
    body: &[u8],
) -> bool {
    let parts: HashMap<&str, &str> = header
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    let (Some(t), Some(v2)) = (parts.get("t"), parts.get("v2")) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}\nPOST\n{path}\n{content_type}\n{idempotency_key}\n").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == *v2
}

#[tokio::test]
async fn every_record_is_posted_once_with_pulsars_headers_a_stable_key_and_a_signature()
-> anyhow::Result<()> {
    // GIVEN a receiver, and 30 records over three keys
    let hook = Webhook::start().await?;
    let input = topic(&unique("http-basic"));
    let records: Vec<(String, String)> = (0..30)
        .map(|i| (format!("k{}", i % 3), format!("{{\"n\":{i}}}")))
        .collect();
    publish(&input, &records).await?;
    let secret = "a-long-shared-secret-for-hmac";
    let dir = temp_dir("http-basic")?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/orders?src=sluice"),
        "",
        &format!("      headers:\n        X-Api-Key: k-123\n      signatureSecret: {secret}\n"),
    );

    // WHEN the sink runs until the topic is drained
    let sluice = Sluice::start(&dir, &cfg, port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN each record was POSTed exactly once, in order per key
    let hits = hook.hits();
    assert_eq!(hits.len(), 30, "{}", sluice.log());
    let by_key = delivered(&hook, |_| true);
    assert_eq!(by_key.len(), 30, "thirty distinct idempotency keys");
    for k in 0..3 {
        let bodies: Vec<String> = hits
            .iter()
            .filter(|h| h.header("PulsarKey") == Some(&format!("k{k}")))
            .map(Hit::text)
            .collect();
        let expected: Vec<String> = records
            .iter()
            .filter(|(key, _)| *key == format!("k{k}"))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(bodies, expected);
    }
    // AND each carries Pulsar's headers, the configured one and a signature
    for hit in &hits {
        assert_eq!(hit.path, "/orders?src=sluice");
        assert_eq!(hit.header("PulsarTopic"), Some(input.as_str()));
        assert_eq!(hit.header("content-type"), Some("application/json"));
        assert_eq!(hit.header("x-api-key"), Some("k-123"));
        assert_eq!(hit.header("PulsarProperties-origin"), Some("test"));
        let id = hit.header("PulsarMessageId").context("no message id")?;
        assert_eq!(
            hit.header("idempotency-key"),
            Some(format!("{input}/id/{id}").as_str())
        );
        ensure!(hit.header("PulsarPublishTime").is_some());
        let signature = hit.header("sluice-signature").context("no signature")?;
        ensure!(
            signature_holds(
                secret,
                signature,
                "/orders?src=sluice",
                ("application/json", &format!("{input}/id/{id}")),
                &hit.body
            ),
            "signature {signature} does not verify"
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/hook").context("no status")?)?;
    assert_eq!(status["records_out"], 30);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn each_answer_class_decides_its_records_fate() -> anyhow::Result<()> {
    // GIVEN a receiver that refuses "poison" with 422, answers "flaky" 503
    // with Retry-After: 1 the first time, and takes everything else
    let hook = Webhook::start().await?;
    hook.script(|hit| {
        let body = hit.text();
        if body.contains("poison") {
            (422, Vec::new(), "sku is required".to_owned())
        } else if body.contains("flaky") && hit.seen_before == 0 {
            (
                503,
                vec![("retry-after", "1".to_owned())],
                "busy".to_owned(),
            )
        } else {
            (200, Vec::new(), "ok".to_owned())
        }
    });
    let input = topic(&unique("http-classes"));
    let dlq = topic(&unique("http-classes-dlq"));
    let records: Vec<(String, String)> = ["ok-1", "poison", "flaky", "ok-2", "ok-3"]
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("k{i}"), format!("{{\"name\":\"{name}\"}}")))
        .collect();
    publish(&input, &records).await?;
    let dead_letters = reader(&dlq).await?;
    let dir = temp_dir("http-classes")?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/hook"),
        &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 1\n"),
        "",
    );

    // WHEN the sink runs until the topic is drained
    let sluice = Sluice::start(&dir, &cfg, port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN the poison record was tried twice (once, then maxMessageRetries
    // once more) and went to the dead-letter topic with the answer
    let hits = hook.hits();
    let tries = |name: &str| hits.iter().filter(|h| h.text().contains(name)).count();
    assert_eq!(tries("poison"), 2);
    let msg = dead_letters
        .receive_with_timeout(DEADLINE)
        .await?
        .context("nothing on the dead-letter topic")?;
    let (payload, props) = sluice_tests::message_parts(&msg);
    assert_eq!(&payload[..], br#"{"name":"poison"}"#);
    let error = props
        .iter()
        .find(|(k, _)| k == "sluice.error")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    ensure!(
        error.contains("422") && error.contains("sku is required"),
        "error property: {error}"
    );
    // AND the flaky record was retried after the Retry-After the receiver asked for
    let flaky: Vec<&Hit> = hits.iter().filter(|h| h.text().contains("flaky")).collect();
    assert_eq!(flaky.len(), 2);
    let gap = flaky[1].at - flaky[0].at;
    ensure!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    // AND every other record went once
    for name in ["ok-1", "ok-2", "ok-3"] {
        assert_eq!(tries(name), 1, "{name}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/hook").context("no status")?)?;
    assert_eq!(status["dead_lettered"], 1);
    assert_eq!(status["records_out"], 4);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_refuses_the_credentials_stops_the_sink_and_dead_letters_nothing()
-> anyhow::Result<()> {
    // GIVEN a receiver that answers 401 to everything
    let hook = Webhook::start().await?;
    hook.script(|_| (401, Vec::new(), "bad token".to_owned()));
    let input = topic(&unique("http-401"));
    let dlq = topic(&unique("http-401-dlq"));
    let records: Vec<(String, String)> = (0..10)
        .map(|i| (format!("k{i}"), format!("{{\"n\":{i}}}")))
        .collect();
    publish(&input, &records).await?;
    let dir = temp_dir("http-401")?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/hook"),
        &format!("    deadLetterTopic: {dlq}\n"),
        "",
    );
    let sluice = Sluice::start(&dir, &cfg, port)?;

    // WHEN the sink has met the refusal
    let status = wait_for("the sink to report the 401", DEADLINE, || {
        let status = sluice.get("/connectors/hook");
        async move {
            Ok(status
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .filter(|s| s["last_error"].as_str().is_some_and(|e| e.contains("401"))))
        }
    })
    .await
    .with_context(|| sluice.log())?;

    // THEN nothing was dead-lettered and the sink is not ready
    assert_eq!(status["dead_lettered"], 0);
    ensure!(
        sluice
            .get_status("/readyz")
            .is_some_and(|(code, _)| code == 503),
        "readyz should say not ready"
    );

    // AND once the receiver takes the credentials, every record arrives once
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let taken = std::sync::Arc::clone(&accepted);
    hook.script(move |hit| {
        if let Ok(mut taken) = taken.lock() {
            taken.push(hit.text());
        }
        (200, Vec::new(), "ok".to_owned())
    });
    drained(&input).await.with_context(|| sluice.log())?;
    let mut accepted = accepted.lock().map(|a| a.clone()).unwrap_or_default();
    accepted.sort();
    let mut expected: Vec<String> = records.iter().map(|(_, v)| v.clone()).collect();
    expected.sort();
    assert_eq!(accepted, expected, "each record taken once");
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/hook").context("no status")?)?;
    assert_eq!(status["dead_lettered"], 0);
    assert_eq!(status["records_out"], 10);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn one_keys_records_keep_their_order_while_keys_go_out_at_once() -> anyhow::Result<()> {
    // GIVEN a slow receiver and 4 keys × 25 records
    let hook = Webhook::start().await?;
    hook.hold(Duration::from_millis(15));
    let input = topic(&unique("http-order"));
    let records: Vec<(String, String)> = (0..100)
        .map(|i| (format!("k{}", i % 4), format!("{{\"n\":{i}}}")))
        .collect();
    publish(&input, &records).await?;
    let dir = temp_dir("http-order")?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/hook"),
        "",
        "      maxConcurrency: 4\n",
    );

    // WHEN the sink runs until the topic is drained
    let sluice = Sluice::start(&dir, &cfg, port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN each key's records arrived in publish order, each once
    let hits = hook.hits();
    assert_eq!(hits.len(), 100);
    for k in 0..4 {
        let key = format!("k{k}");
        let got: Vec<String> = hits
            .iter()
            .filter(|h| h.header("PulsarKey") == Some(key.as_str()))
            .map(Hit::text)
            .collect();
        let expected: Vec<String> = records
            .iter()
            .filter(|(rk, _)| *rk == key)
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(got, expected, "order of {key}");
    }
    // AND different keys were in flight at the same time
    ensure!(
        hook.max_in_flight() >= 2,
        "at most {} request(s) were in flight",
        hook.max_in_flight()
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_kill_9_mid_stream_loses_nothing_and_no_key_carries_two_bodies() -> anyhow::Result<()> {
    // GIVEN a slow receiver and 200 records, under EFFECTIVELY_ONCE
    let hook = Webhook::start().await?;
    hook.hold(Duration::from_millis(5));
    let input = topic(&unique("http-kill"));
    let records: Vec<(String, String)> = (0..200)
        .map(|i| (format!("k{}", i % 7), format!("{{\"n\":{i}}}")))
        .collect();
    publish(&input, &records).await?;
    let dir = temp_dir("http-kill")?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/hook"),
        "    processingGuarantees: EFFECTIVELY_ONCE\n",
        "",
    );

    // WHEN sluice is killed with -9 a quarter of the way, and started again
    let sluice = Sluice::start(&dir, &cfg, port)?;
    wait_for("50 requests", DEADLINE, || {
        let n = hook.hits().len();
        async move { Ok((n >= 50).then_some(())) }
    })
    .await
    .with_context(|| sluice.log())?;
    sluice.kill9()?;
    let sluice = Sluice::start(&dir, &cfg, port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN every record reached the receiver
    let hits = hook.hits();
    let mut bodies_by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for hit in &hits {
        let key = hit.header("idempotency-key").context("no key")?.to_owned();
        bodies_by_key.entry(key).or_default().push(hit.text());
    }
    let mut seen: Vec<String> = hits.iter().map(Hit::text).collect();
    seen.sort();
    seen.dedup();
    let mut expected: Vec<String> = records.iter().map(|(_, v)| v.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every record, and nothing else");
    assert_eq!(bodies_by_key.len(), 200, "one idempotency key per record");
    // AND no idempotency key came with two different bodies
    for (key, bodies) in &bodies_by_key {
        ensure!(
            bodies.iter().all(|b| b == &bodies[0]),
            "{key} carried {bodies:?}"
        );
    }
    let repeats = hits.len() - 200;
    eprintln!("requests repeated after the kill: {repeats}");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn dead_letters_reach_an_operator_webhook_with_their_reason() -> anyhow::Result<()> {
    // GIVEN a file sink that dead-letters what is not JSON, and an http sink
    // on its dead-letter topic sending whole records to an operator webhook
    let hook = Webhook::start().await?;
    let input = topic(&unique("http-alerts"));
    let dlq = topic(&unique("http-alerts-dlq"));
    let dir = temp_dir("http-alerts")?;
    let port = free_port()?;
    let cfg = format!(
        "{}  - name: out\n    className: file\n    inputs: [{input}]\n    sourceSubscriptionName: out\n\
         \x20   sourceSubscriptionPosition: Earliest\n    deadLetterTopic: {dlq}\n    maxMessageRetries: 0\n\
         \x20   configs:\n      path: {}\n      batchSize: 10\n      timeoutMs: 20\n",
        config(
            port,
            &dlq,
            &hook.url("/alerts"),
            "",
            "      bodyFormat: record\n"
        ),
        dir.join("out.jsonl").display()
    );
    // WHEN two good records and one that is not JSON are published
    let records: Vec<(String, String)> = ["{\"n\":1}", "not json", "{\"n\":2}"]
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), (*v).to_owned()))
        .collect();
    publish(&input, &records).await?;
    let sluice = Sluice::start(&dir, &cfg, port)?;

    // THEN the webhook gets exactly the dead letter, with why it failed
    wait_for("the alert", DEADLINE, || {
        let n = hook.hits().len();
        async move { Ok((n >= 1).then_some(())) }
    })
    .await
    .with_context(|| sluice.log())?;
    drained(&dlq).await.with_context(|| sluice.log())?;
    let hits = hook.hits();
    assert_eq!(hits.len(), 1);
    let alert: serde_json::Value = serde_json::from_slice(&hits[0].body)?;
    assert_eq!(alert["value"], "not json");
    assert_eq!(alert["key"], "k1");
    assert_eq!(alert["topic"], dlq.as_str());
    assert_eq!(alert["properties"]["sluice.origin.topic"], input.as_str());
    assert_eq!(alert["properties"]["sluice.origin.sink"], "out");
    ensure!(
        alert["properties"]["sluice.error"]
            .as_str()
            .is_some_and(|e| e.contains("not JSON")),
        "{alert}"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn with_request_batches_each_post_carries_an_array_of_records_with_their_keys()
-> anyhow::Result<()> {
    // GIVEN a receiver and 12 records over two keys, sent three to a request
    let hook = Webhook::start().await?;
    let input = topic(&unique("http-batch"));
    let records: Vec<(String, String)> = (0..12)
        .map(|i| (format!("k{}", i % 2), format!("{{\"n\":{i}}}")))
        .collect();
    publish(&input, &records).await?;
    let dir = temp_dir("http-batch")?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/batch"),
        "",
        "      requestBatchSize: 3\n",
    );

    // WHEN the sink runs until the topic is drained
    let sluice = Sluice::start(&dir, &cfg, port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN each request is an array of at most three records, and together
    // they hold every record once, in order per key, each with its key
    let mut items = Vec::new();
    for hit in hook.hits() {
        let array: Vec<serde_json::Value> = serde_json::from_slice(&hit.body)?;
        ensure!(
            (1..=3).contains(&array.len()),
            "a request of {}",
            array.len()
        );
        assert_eq!(hit.header("content-type"), Some("application/json"));
        items.extend(array);
    }
    assert_eq!(items.len(), 12);
    let keys: std::collections::HashSet<&str> = items
        .iter()
        .filter_map(|i| i["idempotencyKey"].as_str())
        .collect();
    assert_eq!(keys.len(), 12, "twelve distinct idempotency keys");
    for k in ["k0", "k1"] {
        let got: Vec<i64> = items
            .iter()
            .filter(|i| i["key"] == k)
            .filter_map(|i| i["value"]["n"].as_i64())
            .collect();
        let expected: Vec<i64> = (0..12).filter(|n| format!("k{}", n % 2) == k).collect();
        assert_eq!(got, expected, "order of {k}");
    }
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_producers_sequence_never_takes_another_producers_idempotency_key() -> anyhow::Result<()>
{
    // GIVEN a source's record and an impostor's (named as sluice named its
    // sources), both carrying sequence 7, and the source's record again
    let hook = Webhook::start().await?;
    let name = unique("http-seq");
    let input = topic(&name);
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let send = |producer: &magnetar::runtime_tokio::Producer, body: &str| {
        let msg =
            OutgoingMessage::with_payload(body.as_bytes().to_vec()).property("sluice.seq", "7");
        producer.send(msg.into())
    };
    let impostor = client
        .producer(&input)
        .name(format!("sluice-{name}-x"))
        .create()
        .await?;
    send(&impostor, "{\"from\":\"impostor\"}").await?;
    impostor.close().await?;
    let source = client
        .producer(&input)
        .name(format!("sluice-{name}-source"))
        .create()
        .await?;
    send(&source, "{\"from\":\"source\"}").await?;
    send(&source, "{\"from\":\"source\"}").await?;
    source.close().await?;

    // WHEN the sink posts them
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let sluice = Sluice::start(&dir, &config(port, &input, &hook.url("/"), "", ""), port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN the impostor's record has a key of its own, and the source's
    // record published twice has one key, its producer's
    let by_key = delivered(&hook, |_| true);
    let keys: Vec<(&str, Vec<String>)> = by_key
        .iter()
        .map(|(k, hits)| (k.as_str(), hits.iter().map(Hit::text).collect()))
        .collect();
    let source_key = format!("{input}/seq/sluice-{name}-source/7");
    let impostor_key = format!("{input}/seq/sluice-{name}-x/7");
    let mut expected = vec![
        (
            source_key.as_str(),
            vec!["{\"from\":\"source\"}".to_owned(); 2],
        ),
        (
            impostor_key.as_str(),
            vec!["{\"from\":\"impostor\"}".to_owned()],
        ),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_record_a_webhook_answers_404_or_403_is_dead_lettered_and_the_rest_delivered()
-> anyhow::Result<()> {
    // GIVEN a receiver that does not know one order (404), may not take
    // another (403), and takes the other 18, and answers each refusal by
    // echoing what it was sent, the sink's credentials included
    let hook = Webhook::start().await?;
    let token = "Bearer a-credential-of-the-sink-0123";
    hook.script(move |hit| {
        let echo = format!(
            "you sent {} with {}",
            hit.text(),
            hit.header("authorization").unwrap_or_default()
        );
        if hit.text().contains("unknown") {
            (404, Vec::new(), echo)
        } else if hit.text().contains("forbidden") {
            (403, Vec::new(), echo)
        } else {
            (200, Vec::new(), "ok".to_owned())
        }
    });
    let name = unique("http-404");
    let input = topic(&name);
    let dlq = topic(&format!("{name}-dlq"));
    let records: Vec<(String, String)> = (0..20)
        .map(|i| {
            let what = match i {
                5 => "unknown",
                12 => "forbidden",
                _ => "known",
            };
            (
                format!("k{i}"),
                format!("{{\"n\":{i},\"what\":\"{what}\"}}"),
            )
        })
        .collect();
    publish(&input, &records).await?;
    let dead_letters = reader(&dlq).await?;
    let dir = temp_dir(&name)?;
    let port = free_port()?;
    let cfg = config(
        port,
        &input,
        &hook.url("/hook"),
        &format!("    deadLetterTopic: {dlq}\n    maxMessageRetries: 1\n"),
        &format!("      headers:\n        Authorization: '{token}'\n"),
    );

    // WHEN the sink drains the topic
    let sluice = Sluice::start(&dir, &cfg, port)?;
    drained(&input).await.with_context(|| sluice.log())?;

    // THEN the two refused records are dead-lettered, each with its answer
    // and without the sink's credential
    let mut refused = Vec::new();
    for _ in 0..2 {
        let msg = dead_letters
            .receive_with_timeout(DEADLINE)
            .await?
            .context("a dead letter is missing")?;
        let (payload, props) = sluice_tests::message_parts(&msg);
        let error = props
            .iter()
            .find(|(k, _)| k == "sluice.error")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        ensure!(!error.contains("a-credential-of-the-sink"), "{error}");
        ensure!(error.contains("***"), "{error}");
        refused.push((String::from_utf8_lossy(&payload).into_owned(), error));
    }
    refused.sort();
    assert!(refused[0].0.contains("\"n\":12") && refused[0].1.contains("403"));
    assert!(refused[1].0.contains("\"n\":5") && refused[1].1.contains("404"));
    ensure!(
        dead_letters
            .receive_with_timeout(Duration::from_millis(500))
            .await?
            .is_none(),
        "more than two dead letters"
    );
    // AND the 18 others were delivered, each once
    let delivered: Vec<String> = delivered(&hook, |h| {
        !h.text().contains("unknown") && !h.text().contains("forbidden")
    })
    .into_values()
    .flatten()
    .map(|h| h.text())
    .collect();
    assert_eq!(delivered.len(), 18);
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/hook").context("no status")?)?;
    assert_eq!(
        (
            status["records_out"].as_u64(),
            status["dead_lettered"].as_u64()
        ),
        (Some(18), Some(2))
    );
    ensure!(
        !status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("a-credential-of-the-sink"),
        "{status}"
    );
    ensure!(
        !sluice.log().contains("a-credential-of-the-sink"),
        "the log holds the credential"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

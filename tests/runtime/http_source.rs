//! The `http` source in `sluice run` against the real broker: records a
//! client POSTs reach the topic before the client hears 200, bad requests
//! get their 4xx and publish nothing, and a named topic from the allow-list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::{
    DEADLINE, PULSAR_URL, Sluice, free_port, message_parts, reader, temp_dir, topic, unique,
    wait_for,
};

/// POST `body` to sluice's http source; the status and the body answered.
fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.post(format!("http://127.0.0.1:{port}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match request.send(body) {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// Wait until the source answers (a 4xx to an empty POST shows it listens).
async fn listening(port: u16, sluice: &Sluice) -> anyhow::Result<()> {
    wait_for("the http source to listen", DEADLINE, || async move {
        Ok((400..500)
            .contains(&post(port, "/", &[], "").0)
            .then_some(()))
    })
    .await
    .with_context(|| sluice.log())
}

#[tokio::test]
async fn posted_records_reach_their_topics_before_the_client_hears_200() -> anyhow::Result<()> {
    // GIVEN an http source with a token, a key field and one named topic
    let name = unique("http-src");
    let default_topic = topic(&name);
    let payments = format!("{name}-payments");
    let orders = reader(&default_topic).await?;
    let named = reader(&topic(&payments)).await?;
    let dir = temp_dir("http-src")?;
    let (port, source_port) = (free_port()?, free_port()?);
    let token = "a-token-for-the-order-service";
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: orders-api\n    className: org.apache.pulsar.io.netty.NettySource\n\
         \x20   topicName: {default_topic}\n    configs:\n      type: http\n      host: 127.0.0.1\n\
         \x20     port: {source_port}\n      keyField: id\n      topicsFromPath: [{payments}]\n\
         \x20   secrets:\n      authToken: {token}\n"
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    listening(source_port, &sluice).await?;
    let bearer = format!("Bearer {token}");
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];

    // WHEN a client posts an array of two orders, and a payment to its topic
    let (status, body) = post(
        source_port,
        "/orders",
        &auth,
        r#"[{"id": 1, "total": "9.50"}, {"id": 2, "total": "3.00"}]"#,
    );
    // THEN the answer came after the broker had the records
    assert_eq!((status, body.as_str()), (200, r#"{"records":2}"#));
    for (id, total) in [("1", "9.50"), ("2", "3.00")] {
        let msg = orders
            .receive_with_timeout(Duration::from_secs(5))
            .await?
            .context("an order is missing from the topic")?;
        let (payload, _) = message_parts(&msg);
        let value: serde_json::Value = serde_json::from_slice(&payload)?;
        assert_eq!(value["total"], total);
        let key = msg
            .single_metadata
            .as_ref()
            .and_then(|s| s.partition_key.clone())
            .or_else(|| msg.metadata.partition_key.clone());
        assert_eq!(key.as_deref(), Some(id));
    }
    let (status, _) = post(
        source_port,
        &format!("/topics/{payments}"),
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "text/plain"),
        ],
        "paid 9.50",
    );
    assert_eq!(status, 200);
    let msg = named
        .receive_with_timeout(Duration::from_secs(5))
        .await?
        .context("the payment is missing from its topic")?;
    assert_eq!(&message_parts(&msg).0[..], b"paid 9.50");

    // AND requests that are refused publish nothing
    let refused = [
        post(
            source_port,
            "/orders",
            &[("Content-Type", "application/json")],
            "{}",
        )
        .0,
        post(source_port, "/orders", &auth, "{not json").0,
        post(source_port, "/topics/elsewhere", &auth, "{}").0,
    ];
    assert_eq!(refused, [401, 400, 404]);
    let status: serde_json::Value =
        serde_json::from_str(&sluice.get("/connectors/orders-api").context("no status")?)?;
    assert_eq!(status["records_out"], 3);
    ensure!(
        orders
            .receive_with_timeout(Duration::from_millis(500))
            .await?
            .is_none(),
        "a refused request published something"
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn under_effectively_once_retries_after_a_kill_9_publish_each_request_once()
-> anyhow::Result<()> {
    // GIVEN an http source under EFFECTIVELY_ONCE with its journal in a folder
    let input = topic(&unique("http-src-eo"));
    let audit = reader(&input).await?;
    let dir = temp_dir("http-src-eo")?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let (port, source_port) = (free_port()?, free_port()?);
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: orders-api\n    className: http\n    topicName: {input}\n\
         \x20   processingGuarantees: EFFECTIVELY_ONCE\n    configs:\n      port: {source_port}\n\
         \x20     stateDir: {}\n",
        state.display()
    );
    let sluice = Sluice::start(&dir, &config, port)?;
    listening(source_port, &sluice).await?;

    // WHEN six clients send 60 keyed orders, and sluice is killed with -9
    // once 20 are answered, while the others are in flight
    let answered = Arc::new(AtomicUsize::new(0));
    let order = |i: usize| format!("{{\"order\":{i}}}");
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                (0..10)
                    .map(|n| {
                        let i = c * 10 + n;
                        let key = format!("order-{i}");
                        let headers = [
                            ("Content-Type", "application/json"),
                            ("Idempotency-Key", key.as_str()),
                        ];
                        let status = post(source_port, "/", &headers, &order(i)).0;
                        if status == 200 {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        (i, status)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    wait_for("20 answers", DEADLINE, || {
        let n = answered.load(Ordering::SeqCst);
        async move { Ok((n >= 20).then_some(())) }
    })
    .await
    .with_context(|| sluice.log())?;
    sluice.kill9()?;
    let mut first_try = BTreeMap::new();
    for client in clients {
        first_try.extend(
            client
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))?,
        );
    }
    let lost_answers = first_try.values().filter(|s| **s != 200).count();

    // AND sluice starts again, and every order is sent again, answered or not
    let sluice = Sluice::start(&dir, &config, port)?;
    listening(source_port, &sluice).await?;
    for i in 0..60 {
        let key = format!("order-{i}");
        let headers = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", key.as_str()),
        ];
        let (status, body) = post(source_port, "/", &headers, &order(i));
        assert_eq!(status, 200, "order {i}: {body}");
    }

    // THEN the topic holds each order exactly once
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    while seen.values().sum::<usize>() < 60 {
        let msg = audit
            .receive_with_timeout(DEADLINE)
            .await?
            .with_context(|| format!("only {} orders on the topic: {seen:?}", seen.len()))?;
        let (payload, _) = message_parts(&msg);
        *seen
            .entry(String::from_utf8_lossy(&payload).into_owned())
            .or_default() += 1;
    }
    ensure!(
        audit
            .receive_with_timeout(Duration::from_secs(2))
            .await?
            .is_none(),
        "more than 60 messages on the topic"
    );
    assert_eq!(seen.len(), 60);
    ensure!(seen.values().all(|n| *n == 1), "{seen:?}");
    eprintln!("answers lost to the kill: {lost_answers} of 60");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

//! Supervision: a connector that panics is reported on `/readyz` with the
//! panic's message and restarted with backoff, like any failure, and loses
//! nothing; the process and its other connectors go on.

use std::time::Duration;

use anyhow::{Context, ensure};
use sluice_tests::{PULSAR_URL, Sluice, free_port, temp_dir, topic, unique, wait_for};

const LONG: Duration = Duration::from_secs(60);

fn config(port: u16, input: &str, out: &std::path::Path) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sinks:\n  - name: out\n    className: file\n    inputs: [\"{input}\"]\n\
         \x20   sourceSubscriptionPosition: Earliest\n    configs:\n      path: {}\n\
         \x20     batchSize: 10\n      timeoutMs: 20\n",
        out.display()
    )
}

#[tokio::test]
async fn a_connector_that_panics_is_reported_and_restarted_with_backoff() -> anyhow::Result<()> {
    // GIVEN three records, and a sink whose every batch panics
    let name = unique("panics");
    let input = topic(&name);
    sluice_tests::publish(
        &input,
        &[
            ("a", Some("{\"n\":1}")),
            ("b", Some("{\"n\":2}")),
            ("c", Some("{\"n\":3}")),
        ],
    )
    .await?;
    let dir = temp_dir(&name)?;
    let out = dir.join("out.jsonl");
    let port = free_port()?;
    let sluice = Sluice::start_with(
        &dir,
        &config(port, &input, &out),
        port,
        &[("SLUICE_FAILPOINT", "sink-batch@1:panic")],
    )?;

    // THEN /readyz says the sink is not ready, with the panic's message
    let body = wait_for("readyz to report the panic", LONG, || async {
        let (code, body) = sluice.get_status("/readyz").unwrap_or_default();
        Ok((code == 503 && body.contains("panicked: failpoint sink-batch")).then_some(body))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(body.contains("out: "), "{body}");
    // AND it is restarted, again and again, with backoff
    let status = wait_for("three restarts", LONG, || async {
        let status: serde_json::Value =
            serde_json::from_str(&sluice.get("/connectors/out").unwrap_or_default())
                .unwrap_or_default();
        Ok((status["restarts"].as_u64() >= Some(3)).then_some(status))
    })
    .await
    .with_context(|| sluice.log())?;
    ensure!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("the connector panicked")),
        "{status}"
    );
    ensure!(
        sluice.get("/healthz").is_some(),
        "the process stopped serving"
    );
    ensure!(sluice.interrupt().await?.success());

    // AND nothing was acknowledged: once the bug is gone, every record lands
    let sluice = Sluice::start(&dir, &config(port, &input, &out), port)?;
    let lines = wait_for("the three records", LONG, || async {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        Ok((text.lines().count() == 3).then_some(text))
    })
    .await
    .with_context(|| sluice.log())?;
    assert_eq!(lines.lines().count(), 3, "{lines}");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

//! A CDC pipeline as the CDC tests run it: the Postgres source and a file
//! sink that writes every event out as JSON lines, and ways to wait on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::{Event, PULSAR_URL, Sluice, file_events, free_port, pg, temp_dir, wait_for};

/// How long a CDC test waits for the pipeline.
pub const LONG: Duration = Duration::from_secs(120);

/// A pipeline file for `sluice run` and where its output goes.
pub struct Cdc {
    /// The topic prefix, slot and publication name.
    pub prefix: String,
    /// The test's folder.
    pub dir: PathBuf,
    /// The file sink's output.
    pub out: PathBuf,
    /// The HTTP port.
    pub port: u16,
    /// The pipeline file's text.
    pub config: String,
}

/// A turn to run an EFFECTIVELY_ONCE source named `cdc` in public/default.
/// Such sources share one progress topic (`sluice-offsets.cdc`) and its
/// exclusive producer, so two tests running them at once in one binary
/// would make one wait as the other's standby. A test that runs one holds
/// its turn throughout. The turn begins by deleting the progress a test
/// before left there, which names that test's database and slot: a source
/// refuses another's progress, and a user whose source replaces another
/// of the same name deletes it the same way.
pub async fn effectively_once_turn() -> anyhow::Result<tokio::sync::MutexGuard<'static, ()>> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = TURN.lock().await;
    match crate::admin::delete("/admin/v2/persistent/public/default/sluice-offsets.cdc?force=true")
    {
        Ok(()) => {}
        Err(e) if e.to_string().contains("HTTP 404") => {}
        Err(e) => return Err(e),
    }
    Ok(turn)
}

/// Each row id inserted on `topic` (a change event of `op` c or r), with
/// how often it is there.
pub async fn inserted(topic: &str) -> anyhow::Result<BTreeMap<i64, usize>> {
    let mut ids = BTreeMap::new();
    for (payload, _) in crate::read_topic(topic).await? {
        let doc: Value = serde_json::from_slice(&payload)?;
        let op = doc["op"].as_str().unwrap_or_default();
        anyhow::ensure!(op == "c" || op == "r", "an unexpected change: {doc}");
        let id = doc["after"]["id"].as_i64().context("a row without id")?;
        *ids.entry(id).or_default() += 1;
    }
    Ok(ids)
}

/// Wait until `n` rows are on `topic`, then hold that they are rows 1 to
/// `n`, each there once; a wait that fails carries `sluice`'s log.
pub async fn each_row_once(topic: &str, n: i64, sluice: &Sluice) -> anyhow::Result<()> {
    wait_for(&format!("{n} rows on the topic"), LONG, || async {
        Ok((inserted(topic).await?.len() as i64 >= n).then_some(()))
    })
    .await
    .with_context(|| sluice.log())?;
    let ids = inserted(topic).await?;
    let twice: Vec<_> = ids.iter().filter(|(_, times)| **times > 1).collect();
    anyhow::ensure!(
        twice.is_empty(),
        "rows on the topic more than once: {twice:?}"
    );
    anyhow::ensure!(
        ids.keys().copied().eq(1..=n),
        "the topic holds {} rows, {:?} to {:?}, not rows 1 to {n}",
        ids.len(),
        ids.keys().next(),
        ids.keys().last()
    );
    Ok(())
}

/// A CDC pipeline over database `db` into a file, with extra source configs.
pub fn cdc(db: &str, guarantee: &str, extra: &str) -> anyhow::Result<Cdc> {
    let prefix = db.replace('-', "_");
    let dir = temp_dir(db)?;
    let out = dir.join("events.jsonl");
    let port = free_port()?;
    let config = format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: cdc\n    className: postgres-cdc\n    processingGuarantees: {guarantee}\n    configs:\n\
         \x20     database.hostname: 127.0.0.1\n      database.port: 5432\n      database.user: postgres\n\
         \x20     database.password: {pw}\n      database.dbname: {db}\n      topic.prefix: {prefix}\n\
         \x20     slot.name: {prefix}\n      publication.name: {prefix}\n{extra}\
         sinks:\n  - name: out\n    className: file\n    topicsPattern: \"persistent://public/default/{prefix}\\\\..*\"\n\
         \x20   sourceSubscriptionName: out\n    sourceSubscriptionPosition: Earliest\n    retainOrdering: true\n\
         \x20   configs:\n      path: {out}\n      batchSize: 500\n      timeoutMs: 20\n",
        pw = pg::PASSWORD,
        out = out.display(),
    );
    Ok(Cdc {
        prefix,
        dir,
        out,
        port,
        config,
    })
}

/// Wait until the file holds an event matching `found`.
pub async fn wait_for_event(
    out: &Path,
    what: &str,
    found: impl Fn(&Event) -> bool,
) -> anyhow::Result<Vec<Event>> {
    wait_for(what, LONG, || {
        let events = file_events(out);
        let hit = events
            .as_ref()
            .map(|e| e.iter().any(&found))
            .unwrap_or(false);
        async move {
            let events = events?;
            Ok(hit.then_some(events))
        }
    })
    .await
}

/// Wait until sluice's log says every table is copied (the snapshot runs
/// alongside the stream, chunk by chunk), and the events then.
pub async fn snapshot_done(out: &Path, sluice: &crate::Sluice) -> anyhow::Result<Vec<Event>> {
    wait_for("the snapshot's last chunk", LONG, || {
        let done = sluice.log().contains("every table is copied");
        async move { Ok(done.then_some(())) }
    })
    .await
    .with_context(|| sluice.log())?;
    // The chunk that completed it is on its way to the file.
    wait_for_event(out, "the snapshot's last row", |e| {
        e.value["source"]["snapshot"] == "last"
    })
    .await
}

/// Wait until sluice has created its slot; its confirmed position.
pub async fn wait_for_slot(
    db: &tokio_postgres::Client,
    slot: &str,
    sluice: &Sluice,
) -> anyhow::Result<u64> {
    wait_for("the slot", LONG, || async move {
        pg::confirmed_flush(db, slot).await
    })
    .await
    .with_context(|| sluice.log())
}

/// Drop the slot a test made, so that it does not hold WAL after the run.
pub async fn drop_slot(db: &tokio_postgres::Client, slot: &str) {
    let _ = db
        .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await;
}

/// Apply events in order to a table model: key JSON → row.
pub fn replay(events: &[Event], topic_suffix: &str) -> BTreeMap<String, Value> {
    let mut model = BTreeMap::new();
    for e in events.iter().filter(|e| e.topic.ends_with(topic_suffix)) {
        let key = e.key.to_string();
        match e.op() {
            "r" | "c" | "u" => {
                model.insert(key, e.value["after"].clone());
            }
            "d" => {
                model.remove(&key);
            }
            "t" => model.clear(),
            other => panic!("unexpected op {other}"),
        }
    }
    model
}

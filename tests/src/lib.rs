//! Shared helpers for the integration tests: where the local stack listens,
//! unique names, Pulsar admin calls and waiting on a condition with a deadline.
//!
//! Every test here runs against the real services that `scripts/stack up`
//! starts. Nothing is mocked.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

pub mod cdc;
pub mod netns;
pub mod secure;
pub mod sink;
pub mod webhook;

/// The broker's binary protocol endpoint.
pub const PULSAR_URL: &str = "pulsar://127.0.0.1:6650";
/// The broker's admin REST endpoint.
pub const PULSAR_ADMIN_URL: &str = "http://127.0.0.1:8080";
/// How long a test waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A name that no other test run has used: `prefix-<time>-<counter>`.
///
/// Tests create their own topics and namespaces so that they can run in
/// parallel and again on a stack that earlier runs left data in.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{micros:x}-{n}")
}

/// `persistent://public/default/<name>`.
pub fn topic(name: &str) -> String {
    format!("persistent://public/default/{name}")
}

/// Pulsar's admin REST API on the local broker.
pub mod admin {
    use super::*;

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn check(method: &str, path: &str, status: u16, body: &str) -> anyhow::Result<()> {
        if (200..300).contains(&status) {
            Ok(())
        } else {
            bail!("{method} {path}: HTTP {status}: {body}")
        }
    }

    /// PUT a JSON body (or nothing) to an admin path such as `/admin/v2/namespaces/public/x`.
    pub fn put(path: &str, json: Option<&str>) -> anyhow::Result<()> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .put(&url)
            .header("Content-Type", "application/json")
            .send(json.unwrap_or(""))
            .with_context(|| format!("PUT {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("PUT", path, status, &body)
    }

    /// DELETE an admin path, such as a topic's with `?force=true`.
    pub fn delete(path: &str) -> anyhow::Result<()> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .delete(&url)
            .call()
            .with_context(|| format!("DELETE {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("DELETE", path, status, &body)
    }

    /// POST a JSON body to an admin path.
    pub fn post(path: &str, json: &str) -> anyhow::Result<()> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .post(&url)
            .header("Content-Type", "application/json")
            .send(json)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("POST", path, status, &body)
    }

    /// GET an admin path and return the body.
    pub fn get(path: &str) -> anyhow::Result<String> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("GET", path, status, &body)?;
        Ok(body)
    }

    /// Create the namespace `public/<name>` and return `public/<name>`.
    pub fn create_namespace(name: &str) -> anyhow::Result<String> {
        put(&format!("/admin/v2/namespaces/public/{name}"), None)?;
        Ok(format!("public/{name}"))
    }

    /// Turn broker-side message deduplication on for a namespace.
    pub fn enable_deduplication(namespace: &str) -> anyhow::Result<()> {
        post(
            &format!("/admin/v2/namespaces/{namespace}/deduplication"),
            "true",
        )
    }
}

/// A benchmark's setting: the variable `name` as a number, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run one of the Java programs in `tests/java` with Apache Pulsar's Java
/// client on the classpath, and parse the JSON lines it prints.
pub fn java_lines(program: &str, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    java_lines_with_input(program, args, "")
}

/// [`java_lines`], with `input` on the program's standard input.
pub fn java_lines_with_input(
    program: &str,
    args: &[&str],
    input: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use std::io::Write as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let classpath = std::fs::read_to_string(root.join(".stack/pulsar/classpath.txt"))
        .context("the broker classpath: run scripts/stack up first")?;
    let mut child = std::process::Command::new("java")
        .arg("-cp")
        .arg(classpath.trim())
        .arg(root.join("tests/java").join(program))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run java")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output().context("run java")?;
    anyhow::ensure!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("{program} printed {l}")))
        .collect()
}

/// Run one of the Python programs in `tests/python` with Apache Pulsar's
/// Python client (installed by `scripts/stack up`), and parse the JSON lines
/// it prints.
pub fn python_lines(program: &str, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new("python3")
        .arg(root.join("tests/python").join(program))
        .args(args)
        .env("PYTHONPATH", stack_dir().join("pulsar/python"))
        .output()
        .context("run python3")?;
    anyhow::ensure!(
        output.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("{program} printed {l}")))
        .collect()
}

/// Poll `check` until it returns `Ok(Some(value))`, or fail after `deadline`.
///
/// `Ok(None)` means "not yet"; an error ends the wait at once.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `sluice` binary: `$SLUICE_BIN`, or the one built next to the test
/// executables by `cargo build -p sluice-runtime`.
pub fn sluice_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(path) = std::env::var("SLUICE_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable has no target folder")?;
    let bin = dir.join("sluice");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build -p sluice-runtime` (cargo test --workspace builds it)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh folder under the system temp folder.
pub fn temp_dir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A `sluice run` process, with its log in its folder.
pub struct Sluice {
    child: std::process::Child,
    /// Where the config and log live.
    pub dir: std::path::PathBuf,
    /// The HTTP port from the config.
    pub http_port: u16,
    /// The address the HTTP endpoints are reached on.
    pub http_host: String,
}

impl Sluice {
    /// Write `config` into `dir` and start `sluice run` on it. `http_port`
    /// must match the config's `http.listen`.
    pub fn start(dir: &std::path::Path, config: &str, http_port: u16) -> anyhow::Result<Self> {
        Self::start_with(dir, config, http_port, &[])
    }

    /// [`Sluice::start`] with extra environment variables.
    pub fn start_with(
        dir: &std::path::Path,
        config: &str,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_under(&[], dir, config, http_port, env)
    }

    /// [`Sluice::start_with`], run by the command `under` (which execs its
    /// arguments, as `ip netns exec NS` does) when it is not empty.
    pub fn start_under(
        under: &[&str],
        dir: &std::path::Path,
        config: &str,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let config_path = dir.join("pipeline.yaml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("sluice.log"))?;
        let binary = sluice_binary()?;
        let mut command = match under.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => std::process::Command::new(&binary),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&config_path)
            // SLUICE_TEST_LOG sets the log filter of every sluice a test
            // starts (info by default), to look into a failing run.
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .envs(env.iter().copied())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start sluice")?;
        Ok(Self {
            child,
            dir: dir.to_owned(),
            http_port,
            http_host: "127.0.0.1".to_owned(),
        })
    }

    /// SIGKILL: no draining, no flushing.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Send `signal` (`STOP`, `CONT`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} failed");
        }
        Ok(())
    }

    /// SIGINT, then wait for the exit status.
    pub async fn interrupt(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal("INT")?;
        wait_for("sluice to exit", DEADLINE, || {
            let exited = self.child.try_wait();
            async move { Ok(exited?) }
        })
        .await
    }

    /// Wait for sluice to exit by itself, and its status.
    pub async fn exit_status(mut self) -> anyhow::Result<std::process::ExitStatus> {
        wait_for("sluice to exit", DEADLINE, || {
            let exited = self.child.try_wait();
            async move { Ok(exited?) }
        })
        .await
    }

    /// The state it says its connector `name` is in (`/connectors/<name>`).
    pub fn state(&self, name: &str) -> Option<String> {
        let body = self.get(&format!("/connectors/{name}"))?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        doc["state"].as_str().map(str::to_owned)
    }

    /// Wait until its connector `name` is in state `wanted`; the error
    /// carries its log.
    pub async fn until_state(
        &self,
        name: &str,
        wanted: &str,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        wait_for(&format!("{name} to be {wanted}"), deadline, || async {
            Ok((self.state(name).as_deref() == Some(wanted)).then_some(()))
        })
        .await
        .with_context(|| self.log())
    }

    /// GET a path on the HTTP endpoints; `None` until it answers.
    pub fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://{}:{}{path}", self.http_host, self.http_port);
        let mut resp = ureq::get(&url).call().ok()?;
        resp.body_mut().read_to_string().ok()
    }

    /// GET a path of sluice's HTTP endpoint whatever its status: the
    /// status and the body, or `None` when nothing answers.
    pub fn get_status(&self, path: &str) -> Option<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://{}:{}{path}", self.http_host, self.http_port);
        let mut resp = agent.get(&url).call().ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.body_mut().read_to_string().ok()?))
    }

    /// The peak resident memory of the process so far, in bytes
    /// (`VmHWM`), while it runs.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// How many file descriptors the process holds open now.
    pub fn open_files(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
                .ok()?
                .count(),
        )
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sluice.log")).unwrap_or_default()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backlog of a subscription, from the broker's topic stats.
pub fn backlog(topic: &str, subscription: &str) -> anyhow::Result<Option<u64>> {
    let path = topic.replacen("persistent://", "/admin/v2/persistent/", 1) + "/stats";
    let Ok(body) = admin::get(&path) else {
        return Ok(None);
    };
    let stats: serde_json::Value = serde_json::from_str(&body)?;
    Ok(stats["subscriptions"][subscription]["msgBacklog"].as_u64())
}

/// The `seq` of every line of a file sink's output, in file order.
pub fn file_sequences(path: &std::path::Path) -> anyhow::Result<Vec<u64>> {
    file_events(path)?
        .into_iter()
        .map(|e| {
            e.seq
                .and_then(|s| u64::try_from(s).ok())
                .context("a line without a 64-bit seq")
        })
        .collect()
}

/// Where `scripts/stack` keeps its data: `$SLUICE_STACK_DIR`, or `.stack`
/// in the repository.
pub fn stack_dir() -> std::path::PathBuf {
    std::env::var_os("SLUICE_STACK_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stack"),
        Into::into,
    )
}

/// The local Postgres of the stack.
pub mod pg {
    use anyhow::Context;

    /// The CA that signed the stack's server certificate, which names
    /// `localhost` only.
    pub fn ca() -> std::path::PathBuf {
        super::stack_dir().join("tls/ca.pem")
    }

    /// The superuser's password on the test stack.
    pub const PASSWORD: &str = "sluice";

    /// Connect to a database of the local Postgres as `postgres`.
    pub async fn connect(db: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(5432)
            .user("postgres")
            .password(PASSWORD)
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connect to database {db}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Create a fresh database and connect to it.
    pub async fn create_database(name: &str) -> anyhow::Result<tokio_postgres::Client> {
        let admin = connect("postgres").await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        connect(name).await
    }

    /// The confirmed flush position of a slot, as a number.
    pub async fn confirmed_flush(
        client: &tokio_postgres::Client,
        slot: &str,
    ) -> anyhow::Result<Option<u64>> {
        let row = client
            .query_opt(
                "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|v| v as u64))
    }

    /// The server's current WAL position, as a number.
    pub async fn current_wal(client: &tokio_postgres::Client) -> anyhow::Result<u64> {
        let row = client
            .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// Every message visible on `topic` (its full name), payload and
/// properties, in order: read from the start by a new subscription, up to
/// the topic's last entry as the broker gives it when the read began, and
/// on while more come within 300 ms (that id can lag behind committed
/// transactional messages). That entry may be a transaction's commit
/// marker, which is never delivered: the read also ends after a quiet 2 s
/// past every entry delivered so far. It works on a topic whose exclusive
/// producer is connected.
pub async fn read_topic(topic: &str) -> anyhow::Result<Vec<(bytes::Bytes, Vec<(String, String)>)>> {
    use anyhow::Context as _;
    let client = magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?;
    let consumer = client
        .consumer(topic)
        .subscription(unique("audit"))
        .initial_position(magnetar::proto::pb::command_subscribe::InitialPosition::Earliest)
        .subscribe()
        .await?;
    let last = consumer
        .last_message_id()
        .await
        .context("the topic's last message id")?;
    let mut out = Vec::new();
    if last.entry_id == u64::MAX || last.ledger_id == u64::MAX {
        return Ok(out);
    }
    let end = (last.ledger_id, last.entry_id);
    // Past the broker's last id, which can lag behind committed
    // transactional messages, read on while more come within 300 ms.
    let mut wait = std::time::Duration::from_secs(2);
    while let Some(msg) = consumer.receive_with_timeout(wait).await? {
        let at = (msg.message_id.ledger_id, msg.message_id.entry_id);
        // Of a batch, the entry's last message ends it.
        let rest_of_batch = msg.metadata.num_messages_in_batch.unwrap_or(1) as i64
            - 1
            - i64::from(msg.message_id.batch_index.max(0));
        out.push(message_parts(&msg));
        if at > end || (at == end && rest_of_batch <= 0) {
            wait = std::time::Duration::from_millis(300);
        }
    }
    Ok(out)
}

/// A delivered message's payload and properties. magnetar hands a batch
/// of one message over unopened, its payload still the batch container
/// (`[u32 size][SingleMessageMetadata][payload]`): this opens it.
pub fn message_parts(
    msg: &magnetar::proto::IncomingMessage,
) -> (bytes::Bytes, Vec<(String, String)>) {
    use prost::Message as _;
    let props = |p: &[magnetar::proto::pb::KeyValue]| {
        p.iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect::<Vec<_>>()
    };
    if let Some(single) = &msg.single_metadata {
        return (msg.payload.clone(), props(&single.properties));
    }
    if msg.metadata.num_messages_in_batch == Some(1) {
        let container = &msg.payload;
        let opened = (|| {
            let size = u32::from_be_bytes(container.get(0..4)?.try_into().ok()?) as usize;
            let single =
                magnetar::proto::pb::SingleMessageMetadata::decode(container.get(4..4 + size)?)
                    .ok()?;
            let end = 4 + size + usize::try_from(single.payload_size).ok()?;
            Some((container.slice(4 + size..end), props(&single.properties)))
        })();
        if let Some(parts) = opened {
            return parts;
        }
    }
    (msg.payload.clone(), props(&msg.metadata.properties))
}

/// A `(key, value)` message; a `None` value is an empty payload.
fn keyed_message<K: AsRef<str>, V: AsRef<str>>(
    (key, value): &(K, Option<V>),
) -> magnetar::OutgoingMessage {
    let payload = value.as_ref().map_or("", AsRef::as_ref).as_bytes().to_vec();
    magnetar::OutgoingMessage::with_payload(payload).key(key.as_ref())
}

async fn connect_client() -> anyhow::Result<magnetar::PulsarClient> {
    Ok(magnetar::PulsarClient::builder()
        .service_url(PULSAR_URL)
        .build()
        .await?)
}

/// Publish `(key, value)` messages to `topic`, one at a time; a `None`
/// value is an empty payload. A message over the broker's size limit goes
/// in chunks.
pub async fn publish<K: AsRef<str>, V: AsRef<str>>(
    topic: &str,
    messages: &[(K, Option<V>)],
) -> anyhow::Result<()> {
    let client = connect_client().await?;
    let producer = client.producer(topic).chunking(true).create().await?;
    for message in messages {
        producer.send(keyed_message(message).into()).await?;
    }
    producer.close().await?;
    Ok(())
}

/// [`publish`], the messages batched (up to 100 to an entry) and sent
/// without waiting for each receipt: for many small messages.
pub async fn publish_batched<K: AsRef<str>, V: AsRef<str>>(
    topic: &str,
    messages: &[(K, Option<V>)],
) -> anyhow::Result<()> {
    let client = connect_client().await?;
    let producer = client
        .producer(topic)
        .batching(100, 128 * 1024)
        .batching_max_publish_delay(std::time::Duration::from_millis(5))
        .create()
        .await?;
    let sends: Vec<_> = messages
        .iter()
        .map(|message| producer.send(keyed_message(message).into()))
        .collect();
    for send in sends {
        send.await?;
    }
    producer.close().await?;
    Ok(())
}

/// Register a `KEY_VALUE` schema of two JSON definitions (`SEPARATED`) on
/// `topic` over the admin API, then publish `(key, value)` messages stamped
/// with its version, as a producer that declared it does. Returns the version.
pub async fn publish_under_key_value_schema(
    topic: &str,
    key_schema: &serde_json::Value,
    value_schema: &serde_json::Value,
    messages: &[(String, String)],
) -> anyhow::Result<i64> {
    let version = register_key_value_schema(topic, key_schema, value_schema)?;
    let stamped: Vec<(String, String, i64)> = messages
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), version))
        .collect();
    publish_stamped(topic, &stamped).await?;
    Ok(version)
}

/// Register a `KEY_VALUE` schema of two JSON definitions (`SEPARATED`) on
/// `topic` over the admin API; its version.
pub fn register_key_value_schema(
    topic: &str,
    key_schema: &serde_json::Value,
    value_schema: &serde_json::Value,
) -> anyhow::Result<i64> {
    let path = format!(
        "/admin/v2/schemas/{}/schema",
        topic.trim_start_matches("persistent://")
    );
    let payload = serde_json::json!({
        "type": "KEY_VALUE",
        "schema": serde_json::json!({"key": key_schema, "value": value_schema}).to_string(),
        "properties": {"key.schema.type": "JSON", "value.schema.type": "JSON",
            "kv.encoding.type": "SEPARATED"},
    });
    admin::post(&path, &payload.to_string())?;
    let latest: serde_json::Value = serde_json::from_str(&admin::get(&path)?)?;
    latest["version"].as_i64().context("no schema version")
}

/// Publish `(key, value, schema version)` messages, each stamped with the
/// version given, whether the topic has it or not.
pub async fn publish_stamped(
    topic: &str,
    messages: &[(String, String, i64)],
) -> anyhow::Result<()> {
    use magnetar::proto::CreateProducerRequest;
    use magnetar::proto::pb;
    use magnetar::runtime_tokio as rt;
    let url = rt::ParsedUrl::parse(PULSAR_URL)?;
    let client =
        rt::Client::connect_with(url, None, magnetar::ConnectionConfig::default(), None).await?;
    let producer = client
        .open_producer(CreateProducerRequest {
            topic: topic.to_owned(),
            ..CreateProducerRequest::default()
        })
        .await?;
    for (key, value, version) in messages {
        let payload = bytes::Bytes::from(value.clone().into_bytes());
        producer
            .send(magnetar::proto::producer::OutgoingMessage {
                uncompressed_size: u32::try_from(payload.len())?,
                payload,
                metadata: pb::MessageMetadata {
                    partition_key: Some(key.clone()),
                    schema_version: Some(bytes::Bytes::from(version.to_be_bytes().to_vec())),
                    ..pb::MessageMetadata::default()
                },
                num_messages: 1,
                txn_id: None,
                source_message_id: None,
            })
            .await?;
    }
    producer.close().await?;
    client.close().await;
    Ok(())
}

/// A reader of `topic` from its first message, on a subscription of its own:
/// what a test inspects a dead-letter topic with.
pub async fn reader(topic: &str) -> anyhow::Result<magnetar::runtime_tokio::Consumer> {
    let client = connect_client().await?;
    Ok(client
        .consumer(topic)
        .subscription(unique("audit"))
        .initial_position(magnetar::proto::pb::command_subscribe::InitialPosition::Earliest)
        .subscribe()
        .await?)
}

/// A CA of its own in `dir`, which signed nothing the stack's servers hold:
/// the PEM file's path.
pub fn other_ca(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let pem = dir.join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=another CA", "-keyout"])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&pem)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl could not make a CA");
    Ok(pem)
}

/// Run `sluice check` on a config file: its exit code and its output.
pub fn sluice_check(path: &std::path::Path) -> anyhow::Result<(Option<i32>, String)> {
    let output = std::process::Command::new(sluice_binary()?)
        .args(["check", "--config"])
        .arg(path)
        .output()?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// MariaDB on the test stack.
pub mod mariadb {
    use anyhow::Context;
    use sqlx::mysql::MySqlPool;

    /// The URL of a database on the stack, credentials included.
    pub fn url(db: &str) -> String {
        format!("mysql://sluice:sluice@127.0.0.1:3306/{db}")
    }

    /// Create a fresh database and connect to it.
    pub async fn create_database(name: &str) -> anyhow::Result<MySqlPool> {
        let admin = MySqlPool::connect(&url(""))
            .await
            .context("connect to MariaDB")?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"
        ))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(MySqlPool::connect(&url(name)).await?)
    }

    /// Column `i` of `row` as text. The stack's server collates text as
    /// `utf8mb4_bin`, which the driver reports as binary, so text that does
    /// not decode as a string is read as UTF-8 bytes.
    pub fn text(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
        use sqlx::Row;
        row.try_get::<Option<String>, _>(i).unwrap_or_else(|_| {
            row.get::<Option<Vec<u8>>, _>(i)
                .map(|b| String::from_utf8(b).expect("text column holds UTF-8"))
        })
    }

    /// Columns `0..n` of `row` as text.
    pub fn texts(row: &sqlx::mysql::MySqlRow, n: usize) -> Vec<Option<String>> {
        (0..n).map(|i| text(row, i)).collect()
    }
}

/// Restart one service of the test stack (`postgres`, `mariadb` or
/// `pulsar`) with `scripts/stack restart`, and wait until it is healthy.
pub fn restart_service(service: &str) -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/stack"))
        .args(["restart", service])
        .status()?;
    anyhow::ensure!(status.success(), "scripts/stack restart {service} failed");
    Ok(())
}

/// A line of a file sink's output.
#[derive(Debug, Clone)]
pub struct Event {
    /// The topic it came from.
    pub topic: String,
    /// The key, parsed.
    pub key: serde_json::Value,
    /// The sequence.
    pub seq: Option<u128>,
    /// The Debezium envelope.
    pub value: serde_json::Value,
}

impl Event {
    /// The envelope's `op`.
    pub fn op(&self) -> &str {
        self.value["op"].as_str().unwrap_or("")
    }
}

/// Every complete line of a file sink's output, parsed.
pub fn file_events(path: &std::path::Path) -> anyhow::Result<Vec<Event>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(line)?;
            Ok(Event {
                topic: doc["topic"].as_str().unwrap_or_default().to_owned(),
                key: doc["key"].as_str().map_or(serde_json::Value::Null, |k| {
                    serde_json::from_str(k).unwrap_or(serde_json::Value::Null)
                }),
                seq: doc["seq"].as_str().and_then(|s| s.parse().ok()),
                value: doc["value"].clone(),
            })
        })
        .collect()
}

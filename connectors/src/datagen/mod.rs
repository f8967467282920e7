//! `datagen`: a deterministic source for testing and benchmarking the
//! runtime without a database.
//!
//! Record `i` (from 0) has the key `{"id": i % keys}`, the value
//! `{"seq": i, "id": .., "payload": "xx.."}` and the sequence `i`. With a
//! `stateFile`, the position committed by the runtime is kept there and a
//! restart resumes after it.

mod config;

use std::path::Path;
use std::time::{Duration, Instant};

pub use config::DatagenConfig;

use crate::api::{
    Commit, ConnectorError, Finding, Position, Sequence, Source, SourceBatch, SourceConnector,
    SourceContext, SourceRecord,
};
use crate::config::{ConfigMap, ConfigReport};

/// The `datagen` source.
#[derive(Debug)]
pub struct Datagen {
    config: DatagenConfig,
    next: u64,
    started: Instant,
    started_at: u64,
}

impl SourceConnector for Datagen {
    const CLASS_NAMES: &'static [&'static str] = &["datagen"];
    const KEYS: &'static [crate::config::Key] = config::KEYS;
    type Config = DatagenConfig;

    fn configure(configs: &ConfigMap) -> (Option<DatagenConfig>, ConfigReport) {
        DatagenConfig::from_configs(configs)
    }

    /// Open the generator, resuming from its state file if it has one.
    async fn open(config: DatagenConfig, _: &SourceContext) -> Result<Self, ConnectorError> {
        let next = match &config.state_file {
            Some(path) => read_state(path).await?,
            None => 0,
        };
        Ok(Self {
            config,
            next,
            started: Instant::now(),
            started_at: next,
        })
    }

    /// Preflight: the folder of the state file exists.
    async fn preflight(config: &DatagenConfig) -> Vec<Finding> {
        let Some(path) = &config.state_file else {
            return Vec::new();
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match tokio::fs::metadata(dir).await {
            Ok(m) if m.is_dir() => Vec::new(),
            _ => vec![Finding::error(format!(
                "the folder of stateFile {} does not exist: create it",
                path.display()
            ))],
        }
    }
}

impl Datagen {
    fn record(&self, i: u64, now_ms: u64) -> SourceRecord {
        let id = i % self.config.keys;
        let payload = "x".repeat(self.config.payload_bytes as usize);
        SourceRecord {
            topic: None,
            key: Some(format!("{{\"id\":{id}}}")),
            value: Some(
                format!("{{\"seq\":{i},\"id\":{id},\"payload\":\"{payload}\"}}").into_bytes(),
            ),
            properties: Vec::new(),
            event_time_ms: Some(now_ms),
            sequence: Some(Sequence(u128::from(i))),
            schema: None,
        }
    }

    /// How many records the rate allows now, waiting if it allows none.
    async fn allowance(&self) -> u64 {
        let Some(rate) = self.config.rate_per_second else {
            return self.config.batch_size;
        };
        loop {
            let produced = self.next - self.started_at;
            let due = (self.started.elapsed().as_secs_f64() * rate as f64) as u64;
            if due > produced {
                return (due - produced).min(self.config.batch_size);
            }
            let wait = Duration::from_secs_f64((produced + 1) as f64 / rate as f64)
                .saturating_sub(self.started.elapsed());
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

impl Source for Datagen {
    type Committer = StateFile;

    fn committer(&self) -> StateFile {
        StateFile(self.config.state_file.clone())
    }

    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        let remaining = self
            .config
            .count
            .map_or(u64::MAX, |c| c.saturating_sub(self.next));
        if remaining == 0 {
            return Ok(None);
        }
        let n = self.allowance().await.min(remaining);
        let now_ms = crate::time::now_ms();
        let records = (self.next..self.next + n)
            .map(|i| self.record(i, now_ms))
            .collect();
        self.next += n;
        Ok(Some(SourceBatch {
            records,
            checkpoint: Some(Position(self.next)),
            state: None,
        }))
    }

    async fn close(&mut self) {}
}

/// Keeps the committed position in `stateFile`, when there is one.
#[derive(Debug)]
pub struct StateFile(Option<std::path::PathBuf>);

impl Commit for StateFile {
    async fn commit(&self, position: Position) -> Result<(), ConnectorError> {
        match &self.0 {
            Some(path) => write_state(path, position.0).await,
            None => Ok(()),
        }
    }
}

async fn read_state(path: &Path) -> Result<u64, ConnectorError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => text.trim().parse().map_err(|_| {
            ConnectorError::permanent(format!(
                "state file {} does not hold a position",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(ConnectorError::retryable(format!("read {}", path.display())).with_source(e)),
    }
}

/// Replace the state file whole (see [`crate::state_file`]).
async fn write_state(path: &Path, position: u64) -> Result<(), ConnectorError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        crate::state_file::replace(&path, position.to_string().as_bytes())
    })
    .await
    .map_err(|e| ConnectorError::permanent("state writer panicked").with_source(e))?
    .map_err(|e| ConnectorError::retryable("write the datagen state file").with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: u64) -> DatagenConfig {
        DatagenConfig {
            count: Some(count),
            rate_per_second: None,
            batch_size: 4,
            keys: 3,
            payload_bytes: 2,
            state_file: None,
        }
    }

    #[tokio::test]
    async fn generates_count_records_in_batches_then_ends() {
        let mut source = Datagen::open(config(10), &SourceContext::default())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(batch) = source.read().await.unwrap() {
            assert_eq!(
                batch.checkpoint,
                Some(Position(seen.len() as u64 + batch.records.len() as u64))
            );
            seen.extend(batch.records);
        }
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[4].key.as_deref(), Some("{\"id\":1}"));
        assert_eq!(
            seen[4].value.as_deref(),
            Some(&b"{\"seq\":4,\"id\":1,\"payload\":\"xx\"}"[..])
        );
        assert_eq!(seen[9].sequence, Some(Sequence(9)));
    }

    #[tokio::test]
    async fn resumes_after_the_committed_position() {
        let dir = std::env::temp_dir().join(format!("sluice-datagen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state");
        let _ = std::fs::remove_file(&state);
        let mut cfg = config(10);
        cfg.state_file = Some(state.clone());

        let mut first = Datagen::open(cfg.clone(), &SourceContext::default())
            .await
            .unwrap();
        let batch = first.read().await.unwrap().unwrap();
        first
            .committer()
            .commit(batch.checkpoint.unwrap())
            .await
            .unwrap();

        let mut second = Datagen::open(cfg, &SourceContext::default()).await.unwrap();
        let batch = second.read().await.unwrap().unwrap();
        assert_eq!(batch.records[0].sequence, Some(Sequence(4)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

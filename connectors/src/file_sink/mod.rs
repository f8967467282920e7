//! `file`: a sink that appends each record as one JSON line and fsyncs each
//! batch, for testing and benchmarking the runtime without a database.
//!
//! A line is `{"topic":..,"key":..,"seq":..,"value":<the record's JSON>}`.
//! A record whose value is not JSON is rejected, which makes it a poison
//! record for dead-letter tests.

mod config;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use config::FileSinkConfig;

use crate::api::{
    BatchPolicy, ConnectorError, Finding, Sink, SinkConnector, SinkContext, SinkRecord, Written,
};
use crate::config::{ConfigMap, ConfigReport};

/// The `file` sink.
#[derive(Debug)]
pub struct FileSink {
    config: FileSinkConfig,
    file: Option<std::fs::File>,
}

impl SinkConnector for FileSink {
    const CLASS_NAMES: &'static [&'static str] = &["file"];
    const KEYS: &'static [crate::config::Key] = config::KEYS;
    type Config = FileSinkConfig;

    fn configure(configs: &ConfigMap) -> (Option<FileSinkConfig>, ConfigReport) {
        FileSinkConfig::from_configs(configs)
    }

    /// Open the file for appending, creating it if needed. A line cut short
    /// by a crash is dropped: it was never reported durable. The file has no
    /// transactions to keep a watermark in: under EFFECTIVELY_ONCE it is
    /// written at least once.
    async fn open(config: FileSinkConfig, _: &SinkContext) -> Result<Self, ConnectorError> {
        let path = config.path.clone();
        let file = tokio::task::spawn_blocking(move || open_append(&path))
            .await
            .map_err(|e| ConnectorError::permanent("file sink opener panicked").with_source(e))?
            .map_err(|e| {
                ConnectorError::retryable(format!("open {}", config.path.display())).with_source(e)
            })?;
        Ok(Self {
            config,
            file: Some(file),
        })
    }

    /// Preflight: the folder of the output file exists.
    async fn preflight(config: &FileSinkConfig) -> Vec<Finding> {
        let dir: PathBuf = config
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        match tokio::fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Vec::new(),
            _ => vec![Finding::error(format!(
                "the folder of path {} does not exist: create it",
                config.path.display()
            ))],
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let content = std::fs::read(path)?;
    let complete = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    if complete < content.len() {
        file.set_len(complete as u64)?;
        file.sync_all()?;
    }
    Ok(file)
}

/// Render one record as a JSON line.
fn line(record: &SinkRecord, out: &mut Vec<u8>) -> Result<(), ConnectorError> {
    let value: serde_json::Value = match &record.value {
        None => serde_json::Value::Null,
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
            ConnectorError::permanent(format!(
                "the value of message {} on {} is not JSON",
                record.message_id, record.topic
            ))
            .with_source(e)
        })?,
    };
    let doc = serde_json::json!({
        "topic": record.topic,
        "key": record.key,
        "seq": record.origin.sequence().map(|s| s.to_string()),
        "value": value,
    });
    serde_json::to_writer(&mut *out, &doc)
        .map_err(|e| ConnectorError::permanent("render a JSON line").with_source(e))?;
    out.push(b'\n');
    Ok(())
}

impl Sink for FileSink {
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_records: self.config.batch_size as usize,
            max_wait: self.config.timeout,
        }
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Written, ConnectorError> {
        // Render everything first: a rejected record leaves the file untouched.
        let mut buf = Vec::with_capacity(batch.len() * 128);
        for record in batch {
            line(record, &mut buf)?;
        }
        let Some(mut file) = self.file.take() else {
            return Err(ConnectorError::permanent("the file sink is closed"));
        };
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = file.write_all(&buf).and_then(|()| file.sync_data());
            (file, result)
        })
        .await
        .map_err(|e| ConnectorError::permanent("file sink writer panicked").with_source(e))?;
        self.file = Some(file);
        result.map(|()| Written::All).map_err(|e| {
            ConnectorError::retryable(format!("append to {}", self.config.path.display()))
                .with_source(e)
        })
    }

    async fn close(&mut self) {
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Origin, Sequence};

    fn record(value: &[u8]) -> SinkRecord {
        SinkRecord {
            topic: "persistent://public/default/t".into(),
            key: Some("{\"id\":1}".into()),
            value: Some(value.to_vec()),
            origin: Origin::new("p", Some(Sequence(7))),
            message_id: "1:2:-1:-1".parse().unwrap(),
            ..SinkRecord::default()
        }
    }

    #[test]
    fn renders_one_line_per_record() {
        let mut out = Vec::new();
        line(&record(b"{\"a\":1}"), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"key\":\"{\\\"id\\\":1}\",\"seq\":\"7\",\"topic\":\"persistent://public/default/t\",\"value\":{\"a\":1}}\n"
        );
    }

    #[test]
    fn a_non_json_value_is_a_permanent_error() {
        let err = line(&record(b"not json"), &mut Vec::new()).unwrap_err();
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_torn_last_line_is_cut_on_open() {
        let path =
            std::env::temp_dir().join(format!("sluice-file-sink-{}.jsonl", std::process::id()));
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":").unwrap();
        drop(open_append(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n");
        std::fs::remove_file(&path).unwrap();
    }
}

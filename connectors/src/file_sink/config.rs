//! Settings of the `file` sink.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigMap, ConfigReader, ConfigReport};

/// Records per write unless `batchSize` says otherwise.
pub(crate) const DEFAULT_BATCH_SIZE: u64 = 500;
/// How long a partial batch waits unless `timeoutMs` says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

const KNOWN: &str = "path, batchSize, timeoutMs";

/// Validated `file` sink settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// The JSON-lines file to append to.
    pub path: PathBuf,
    /// Records per write.
    pub batch_size: u64,
    /// How long a partial batch waits.
    pub timeout: Duration,
}

impl FileSinkConfig {
    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs);
        let path = r.required_string("path").map(PathBuf::from);
        let batch_size = r.u64_or("batchSize", DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            r.error("batchSize", "must be at least 1");
        }
        let timeout = r
            .u64("timeoutMs")
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let report = r.finish(KNOWN);
        let config = match path {
            Some(path) if report.errors.is_empty() => Some(Self {
                path,
                batch_size,
                timeout,
            }),
            _ => None,
        };
        (config, report)
    }
}

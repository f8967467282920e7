//! Settings of the `file` sink.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigMap, ConfigReader, ConfigReport, Key, Kind, Unset};

/// Records per write unless `batchSize` says otherwise.
pub(crate) const DEFAULT_BATCH_SIZE: u64 = 500;
/// How long a partial batch waits unless `timeoutMs` says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// The keys the `file` sink takes.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("path", Kind::Text, Unset::Required, "the JSON-lines file to append to"),
    Key::new("batchSize", Kind::Integer, Unset::Int(DEFAULT_BATCH_SIZE), "records per write"),
    Key::new("timeoutMs", Kind::Integer, Unset::Int(DEFAULT_TIMEOUT.as_millis() as u64), "a partial batch is written after this long"),
];

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
        let r = ConfigReader::new(configs, KEYS, "the file sink");
        let path = r.required_string("path").map(PathBuf::from);
        let batch_size = r.int_within("batchSize", 1, u64::MAX);
        let timeout = Duration::from_millis(r.int("timeoutMs"));
        let report = r.finish();
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

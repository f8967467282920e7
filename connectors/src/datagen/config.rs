//! Settings of the `datagen` source.

use std::path::PathBuf;

use crate::config::{ConfigMap, ConfigReader, ConfigReport, Key, Kind, Unset};

/// Records per [`crate::Source::read`] unless `batchSize` says otherwise.
pub(crate) const DEFAULT_BATCH_SIZE: u64 = 100;
/// Distinct keys unless `keys` says otherwise.
pub(crate) const DEFAULT_KEYS: u64 = 1000;
/// Padding bytes in each value unless `payloadBytes` says otherwise.
pub(crate) const DEFAULT_PAYLOAD_BYTES: u64 = 64;

/// The keys `datagen` takes.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("count", Kind::Integer, Unset::Said("unbounded"), "records in all"),
    Key::new("ratePerSecond", Kind::Integer, Unset::Said("unthrottled"), "records per second"),
    Key::new("batchSize", Kind::Integer, Unset::Int(DEFAULT_BATCH_SIZE), "records per read"),
    Key::new("keys", Kind::Integer, Unset::Int(DEFAULT_KEYS), "distinct keys"),
    Key::new("payloadBytes", Kind::Integer, Unset::Int(DEFAULT_PAYLOAD_BYTES), "padding bytes in each value, at most 4194304"),
    Key::new("stateFile", Kind::Text, Unset::Nothing, "keeps the committed position; a restart resumes after it, without it a restart starts at 0"),
];

/// Validated `datagen` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagenConfig {
    /// Records to generate in all; `None` never stops.
    pub count: Option<u64>,
    /// Records per second; `None` is as fast as the runtime takes them.
    pub rate_per_second: Option<u64>,
    /// Records per read.
    pub batch_size: u64,
    /// Record `i` has the key `{"id": i % keys}`.
    pub keys: u64,
    /// Padding bytes in each value.
    pub payload_bytes: u64,
    /// Where the committed position is kept, so that a restart resumes
    /// after the last durable record. Without it a restart starts over.
    pub state_file: Option<PathBuf>,
}

impl DatagenConfig {
    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs, KEYS, "the datagen source");
        let count = r.u64("count").filter(|c| *c > 0);
        let rate_per_second = r.u64("ratePerSecond").filter(|c| *c > 0);
        let batch_size = r.int_within("batchSize", 1, u64::MAX);
        let keys = r.int_within("keys", 1, u64::MAX);
        let payload_bytes = r.int("payloadBytes");
        if payload_bytes > 4 * 1024 * 1024 {
            r.error(
                "payloadBytes",
                "must be at most 4194304 (a Pulsar message is limited to 5 MB)",
            );
        }
        let state_file = r.string("stateFile").map(PathBuf::from);
        let report = r.finish();
        let config = report.errors.is_empty().then_some(Self {
            count,
            rate_per_second,
            batch_size,
            keys,
            payload_bytes,
            state_file,
        });
        (config, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigValue;

    #[test]
    fn defaults_apply_when_configs_are_empty() {
        let (config, report) = DatagenConfig::from_configs(&ConfigMap::new());
        assert!(report.errors.is_empty());
        assert_eq!(
            config,
            Some(DatagenConfig {
                count: None,
                rate_per_second: None,
                batch_size: DEFAULT_BATCH_SIZE,
                keys: DEFAULT_KEYS,
                payload_bytes: DEFAULT_PAYLOAD_BYTES,
                state_file: None,
            })
        );
    }

    #[test]
    fn zero_keys_is_refused() {
        let configs = ConfigMap::from([("keys".to_owned(), ConfigValue::Int(0))]);
        let (config, report) = DatagenConfig::from_configs(&configs);
        assert_eq!(config, None);
        assert_eq!(report.errors[0].key, "keys");
    }
}

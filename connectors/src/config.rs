//! Connector settings as the runtime hands them over: the `configs` map of a
//! Pulsar IO connector entry, with typed getters that collect every problem
//! instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// A secret string. Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to the system that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One value of a connector's `configs` map.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// YAML null or an empty value.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    String(String),
    /// A list.
    List(Vec<ConfigValue>),
    /// A map of names to values, such as an HTTP connector's `headers`.
    Map(BTreeMap<String, ConfigValue>),
    /// A value given under `secrets`, or under a key that names a password
    /// or token.
    Secret(Secret),
}

impl ConfigValue {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a number",
            Self::String(_) => "a string",
            Self::List(_) => "a list",
            Self::Map(_) => "a map",
            Self::Secret(_) => "a secret",
        }
    }
}

/// A connector's `configs`, by key.
pub type ConfigMap = BTreeMap<String, ConfigValue>;

/// A problem with one key of `configs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key, as written in `configs`.
    pub key: String,
    /// What is wrong, and what is expected.
    pub message: String,
}

/// What a connector's config validation found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    /// Problems that make the config unusable.
    pub errors: Vec<ConfigIssue>,
    /// Keys that are accepted but do nothing here, and settings that work
    /// but weaken something.
    pub warnings: Vec<ConfigIssue>,
}

/// Whether `host` names this machine (`localhost`, `127.0.0.0/8`, `::1`):
/// what goes to it crosses no network.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads typed values out of a [`ConfigMap`], remembering which keys were
/// read so that [`ConfigReader::finish`] can reject the rest.
#[derive(Debug)]
pub struct ConfigReader<'a> {
    map: &'a ConfigMap,
    seen: Mutex<BTreeSet<String>>,
    report: Mutex<ConfigReport>,
}

impl<'a> ConfigReader<'a> {
    /// Start reading a map.
    pub fn new(map: &'a ConfigMap) -> Self {
        Self {
            map,
            seen: Mutex::default(),
            report: Mutex::default(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a ConfigValue> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key.to_owned());
        }
        match self.map.get(key) {
            None | Some(ConfigValue::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Record an error against a key.
    pub fn error(&self, key: &str, message: impl Into<String>) {
        if let Ok(mut report) = self.report.lock() {
            report.errors.push(ConfigIssue {
                key: key.to_owned(),
                message: message.into(),
            });
        }
    }

    /// Record a warning against a key: the config works, but likely not
    /// as its owner wants.
    pub fn warn(&self, key: &str, message: impl Into<String>) {
        if let Ok(mut report) = self.report.lock() {
            report.warnings.push(ConfigIssue {
                key: key.to_owned(),
                message: message.into(),
            });
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &ConfigValue) {
        self.error(
            key,
            format!("expected {expected}, found {}", got.type_name()),
        );
    }

    /// A string value. Numbers and booleans are accepted as their text.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            ConfigValue::String(s) => Some(s.clone()),
            ConfigValue::Int(i) => Some(i.to_string()),
            ConfigValue::Float(f) => Some(f.to_string()),
            ConfigValue::Bool(b) => Some(b.to_string()),
            other => {
                self.wrong_type(key, "a string", other);
                None
            }
        }
    }

    /// A string that must be present.
    pub fn required_string(&self, key: &str) -> Option<String> {
        let value = self.string(key);
        if value.is_none() && !self.has_error(key) {
            self.error(key, "is required");
        }
        value
    }

    /// A secret. A plain string is accepted and wrapped.
    pub fn secret(&self, key: &str) -> Option<Secret> {
        match self.get(key)? {
            ConfigValue::Secret(s) => Some(s.clone()),
            ConfigValue::String(s) => Some(Secret::new(s.clone())),
            ConfigValue::Int(i) => Some(Secret::new(i.to_string())),
            other => {
                self.wrong_type(key, "a string", other);
                None
            }
        }
    }

    /// A non-negative integer. A string of digits is accepted.
    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            ConfigValue::Int(i) if *i >= 0 => Some(*i as u64),
            ConfigValue::String(s) => match s.trim().parse() {
                Ok(v) => Some(v),
                Err(_) => {
                    self.error(
                        key,
                        format!("expected a non-negative integer, found \"{s}\""),
                    );
                    None
                }
            },
            other => {
                self.wrong_type(key, "a non-negative integer", other);
                None
            }
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn u64_or(&self, key: &str, default: u64) -> u64 {
        self.u64(key).unwrap_or(default)
    }

    /// A boolean. The strings `true` and `false` are accepted.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            ConfigValue::Bool(b) => Some(*b),
            ConfigValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            ConfigValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.wrong_type(key, "true or false", other);
                None
            }
        }
    }

    /// A list of strings: a YAML list, or one comma-separated string.
    pub fn string_list(&self, key: &str) -> Option<Vec<String>> {
        match self.get(key)? {
            ConfigValue::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            ConfigValue::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        ConfigValue::String(s) => out.push(s.clone()),
                        other => {
                            self.wrong_type(key, "a list of strings", other);
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.wrong_type(key, "a list or a comma-separated string", other);
                None
            }
        }
    }

    /// A map of names to strings, such as HTTP headers. Numbers and booleans
    /// are taken as their text. Every value is kept as a [`Secret`], since
    /// one may carry a credential (`Authorization`).
    pub fn secret_map(&self, key: &str) -> Option<Vec<(String, Secret)>> {
        let map = match self.get(key)? {
            ConfigValue::Map(map) => map,
            other => {
                self.wrong_type(key, "a map of names to strings", other);
                return None;
            }
        };
        let mut out = Vec::with_capacity(map.len());
        for (name, value) in map {
            let text = match value {
                ConfigValue::String(s) => s.clone(),
                ConfigValue::Secret(s) => s.expose().to_owned(),
                ConfigValue::Int(i) => i.to_string(),
                ConfigValue::Float(f) => f.to_string(),
                ConfigValue::Bool(b) => b.to_string(),
                other => {
                    self.error(
                        key,
                        format!("{name}: expected a string, found {}", other.type_name()),
                    );
                    return None;
                }
            };
            out.push((name.clone(), Secret::new(text)));
        }
        Some(out)
    }

    /// Keys that other implementations of this connector take and that mean
    /// nothing here: accepted, with a warning.
    pub fn ignore(&self, keys: &[&str], why: &str) {
        for key in keys {
            if self.map.contains_key(*key) {
                self.get(key);
                if let Ok(mut report) = self.report.lock() {
                    report.warnings.push(ConfigIssue {
                        key: (*key).to_owned(),
                        message: format!("is ignored: {why}"),
                    });
                }
            }
        }
    }

    /// The keys of the map that start with `prefix`, read or not.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Whether `key` was read.
    pub fn was_read(&self, key: &str) -> bool {
        self.seen.lock().map(|s| s.contains(key)).unwrap_or(false)
    }

    /// Mark `key` as read without taking its value: its fate was reported
    /// some other way.
    pub fn consume(&self, key: &str) {
        self.get(key);
    }

    fn has_error(&self, key: &str) -> bool {
        self.report
            .lock()
            .map(|r| r.errors.iter().any(|i| i.key == key))
            .unwrap_or(false)
    }

    /// Finish reading: every key that was never read is an error.
    pub fn finish(self, known: &str) -> ConfigReport {
        let seen = self.seen.into_inner().unwrap_or_default();
        let mut report = self.report.into_inner().unwrap_or_default();
        for key in self.map.keys() {
            if !seen.contains(key) {
                report.errors.push(ConfigIssue {
                    key: key.clone(),
                    message: format!("is not a setting of this connector (it takes: {known})"),
                });
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, ConfigValue)]) -> ConfigMap {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(format!("{:?}", ConfigValue::Secret(s)), "Secret(***)");
    }

    #[test]
    fn numbers_accept_digit_strings_and_reject_words() {
        let m = map(&[
            ("a", ConfigValue::String("42".into())),
            ("b", ConfigValue::String("lots".into())),
        ]);
        let r = ConfigReader::new(&m);
        assert_eq!(r.u64("a"), Some(42));
        assert_eq!(r.u64("b"), None);
        let report = r.finish("a, b");
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].key, "b");
    }

    #[test]
    fn unread_keys_are_errors_and_ignored_keys_warnings() {
        let m = map(&[
            ("used", ConfigValue::Int(1)),
            ("typo", ConfigValue::Int(1)),
            ("legacy", ConfigValue::Bool(true)),
        ]);
        let r = ConfigReader::new(&m);
        r.u64("used");
        r.ignore(&["legacy"], "not used by sluice");
        let report = r.finish("used");
        assert_eq!(
            report
                .errors
                .iter()
                .map(|i| i.key.as_str())
                .collect::<Vec<_>>(),
            ["typo"]
        );
        assert_eq!(
            report
                .warnings
                .iter()
                .map(|i| i.key.as_str())
                .collect::<Vec<_>>(),
            ["legacy"]
        );
    }

    #[test]
    fn lists_come_as_yaml_lists_or_comma_strings() {
        let m = map(&[
            ("a", ConfigValue::String("x, y,z".into())),
            (
                "b",
                ConfigValue::List(vec![ConfigValue::String("x".into())]),
            ),
        ]);
        let r = ConfigReader::new(&m);
        assert_eq!(
            r.string_list("a"),
            Some(vec!["x".into(), "y".into(), "z".into()])
        );
        assert_eq!(r.string_list("b"), Some(vec!["x".into()]));
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let m = ConfigMap::new();
        let r = ConfigReader::new(&m);
        assert_eq!(r.required_string("path"), None);
        assert_eq!(
            r.finish("path").errors,
            [ConfigIssue {
                key: "path".into(),
                message: "is required".into()
            }]
        );
    }
}

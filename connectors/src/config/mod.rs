//! Connector settings as the runtime hands them over: the `configs` map of a
//! Pulsar IO connector entry, each connector's table of the keys it takes,
//! and a reader that holds the one to the other.

use std::collections::BTreeMap;

mod keys;
mod reader;

pub use keys::{
    Key, Kind, Role, Unset, markdown as key_table, nearest_name, unknown as unknown_key,
};
pub use reader::ConfigReader;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(format!("{:?}", ConfigValue::Secret(s)), "Secret(***)");
    }
}

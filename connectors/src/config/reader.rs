//! Reading a connector's `configs` against its key table: typed values,
//! the table's defaults and other names, and every problem collected
//! instead of stopping at the first.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::keys::{self, Key, Kind, Role, Unset};
use super::{ConfigIssue, ConfigMap, ConfigReport, ConfigValue, Secret};

/// Reads typed values out of a [`ConfigMap`] whose keys `keys` declares,
/// remembering which keys were read so that [`ConfigReader::finish`] can
/// reject the rest.
///
/// Reading a key the table does not declare, or as another type than it
/// declares, is a bug in the connector: debug builds panic on it, so that
/// the table, the code and the docs made from the table cannot drift apart.
#[derive(Debug)]
pub struct ConfigReader<'a> {
    map: &'a ConfigMap,
    keys: &'static [Key],
    of: &'static str,
    seen: Mutex<BTreeSet<String>>,
    report: Mutex<ConfigReport>,
}

impl<'a> ConfigReader<'a> {
    /// Start reading a map of the connector `of`, whose keys are `keys`.
    pub fn new(map: &'a ConfigMap, keys: &'static [Key], of: &'static str) -> Self {
        Self {
            map,
            keys,
            of,
            seen: Mutex::default(),
            report: Mutex::default(),
        }
    }

    /// The declaration of `key`, checked in debug builds against how the
    /// connector reads it.
    fn declared(&self, key: &str, kind: Kind) -> Option<&'static Key> {
        let declared = keys::find(self.keys, key);
        debug_assert!(
            declared.is_some(),
            "{}: {key} is read but not in the key table",
            self.of
        );
        if let Some(k) = declared
            && k.role == Role::Setting
        {
            debug_assert!(
                k.kind == kind || (k.kind == Kind::Secret && kind == Kind::Text),
                "{}: {key} is declared {:?} but read as {kind:?}",
                self.of,
                k.kind
            );
        }
        declared
    }

    fn mark(&self, key: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key.to_owned());
        }
    }

    fn value(&self, key: &str) -> Option<&'a ConfigValue> {
        match self.map.get(key) {
            None | Some(ConfigValue::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// The value of `key`, or of its old name: both set is an error.
    fn get(&self, key: &str, kind: Kind) -> Option<&'a ConfigValue> {
        self.declared(key, kind);
        self.mark(key);
        let mut value = self.value(key);
        for old in self
            .keys
            .iter()
            .filter(|k| matches!(k.role, Role::OldNameOf(of) if of == key))
        {
            self.mark(old.name);
            if let Some(v) = self.value(old.name) {
                if value.is_some() {
                    self.error(
                        old.name,
                        format!("is the old name of {key}: set one of them"),
                    );
                } else {
                    value = Some(v);
                }
            }
        }
        value
    }

    fn unset(&self, key: &str, kind: Kind) -> Unset {
        self.declared(key, kind).map_or(Unset::Nothing, |k| k.unset)
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
        match self.get(key, Kind::Text)? {
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

    /// A string, or the table's default text when unset.
    pub fn text(&self, key: &str) -> String {
        self.string(key)
            .unwrap_or_else(|| match self.unset(key, Kind::Text) {
                Unset::Text(text) => text.to_owned(),
                _ => String::new(),
            })
    }

    /// One of `choices`, by its name; unset, the table's default. Another
    /// value is an error that lists the names, and gives the default.
    pub fn one_of<T: Copy>(&self, key: &str, choices: &[(&str, T)]) -> T {
        let default = match self.unset(key, Kind::Text) {
            Unset::Text(name) => choices.iter().find(|(n, _)| *n == name),
            _ => None,
        };
        debug_assert!(
            default.is_some(),
            "{}: {key} has no default among its choices",
            self.of
        );
        let fallback = default.unwrap_or(&choices[0]).1;
        let Some(given) = self.string(key) else {
            return fallback;
        };
        match choices.iter().find(|(n, _)| *n == given) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.error(
                    key,
                    format!("\"{given}\" is not one of {}", names.join(", ")),
                );
                fallback
            }
        }
    }

    /// Two strings set together, as a certificate and its key: both or
    /// neither; one alone is an error at the other.
    pub fn pair(&self, first: &str, second: &str) -> Option<(String, String)> {
        match (self.string(first), self.string(second)) {
            (Some(a), Some(b)) => Some((a, b)),
            (None, None) => None,
            (Some(_), None) => {
                self.error(second, format!("is required with {first}"));
                None
            }
            (None, Some(_)) => {
                self.error(first, format!("is required with {second}"));
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
        match self.get(key, Kind::Secret)? {
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
        match self.get(key, Kind::Integer)? {
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

    /// A non-negative integer, or the table's default when unset.
    pub fn int(&self, key: &str) -> u64 {
        self.u64(key)
            .unwrap_or_else(|| match self.unset(key, Kind::Integer) {
                Unset::Int(n) => n,
                _ => 0,
            })
    }

    /// A non-negative integer from `min` to `max`, or the table's default
    /// when unset; outside them, an error that says the range.
    pub fn int_within(&self, key: &str, min: u64, max: u64) -> u64 {
        let value = self.int(key);
        if !(min..=max).contains(&value) {
            if max == u64::MAX {
                self.error(key, format!("must be at least {min}"));
            } else {
                self.error(key, format!("must be from {min} to {max}"));
            }
        }
        value
    }

    /// A boolean. The strings `true` and `false` are accepted.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key, Kind::Flag)? {
            ConfigValue::Bool(b) => Some(*b),
            ConfigValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            ConfigValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.wrong_type(key, "true or false", other);
                None
            }
        }
    }

    /// A boolean, or the table's default when unset.
    pub fn flag(&self, key: &str) -> bool {
        self.bool(key)
            .unwrap_or_else(|| self.unset(key, Kind::Flag) == Unset::Flag(true))
    }

    /// A list of strings: a YAML list, or one comma-separated string.
    pub fn string_list(&self, key: &str) -> Option<Vec<String>> {
        match self.get(key, Kind::List)? {
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
        let map = match self.get(key, Kind::Map)? {
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
        self.mark(key);
    }

    fn has_error(&self, key: &str) -> bool {
        self.report
            .lock()
            .map(|r| r.errors.iter().any(|i| i.key == key))
            .unwrap_or(false)
    }

    /// Finish reading. A key the table ignores gets its warning; any other
    /// key that was never read is an error, which names the key likely
    /// meant.
    pub fn finish(self) -> ConfigReport {
        let seen = self.seen.into_inner().unwrap_or_default();
        let mut report = self.report.into_inner().unwrap_or_default();
        for key in self.map.keys().filter(|k| !seen.contains(*k)) {
            match keys::find(self.keys, key).map(|k| k.role) {
                Some(Role::Ignored(why)) => report.warnings.push(ConfigIssue {
                    key: key.clone(),
                    message: format!("is ignored: {why}"),
                }),
                Some(Role::Setting | Role::Nested) => report.errors.push(ConfigIssue {
                    key: key.clone(),
                    message: "is not used with the other settings given".to_owned(),
                }),
                _ => report.errors.push(ConfigIssue {
                    key: key.clone(),
                    message: keys::unknown(self.keys, key, self.of),
                }),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[
        Key::new("count", Kind::Integer, Unset::Int(7), "how many"),
        Key::new("path", Kind::Text, Unset::Required, "where"),
        Key::new("mode", Kind::Text, Unset::Text("fast"), "how"),
        Key::new("on", Kind::Flag, Unset::Flag(true), "whether"),
        Key::new("speed", Kind::Text, Unset::Text("slow"), "how fast"),
        Key::new("table.include.list", Kind::List, Unset::Nothing, "tables"),
        Key::old_name("table.whitelist", "table.include.list"),
        Key::ignored("legacy", "not used by sluice"),
    ];

    fn map(entries: &[(&str, ConfigValue)]) -> ConfigMap {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn text(s: &str) -> ConfigValue {
        ConfigValue::String(s.into())
    }

    fn keys(issues: &[ConfigIssue]) -> Vec<&str> {
        issues.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn numbers_accept_digit_strings_and_reject_words() {
        let m = map(&[("count", text("42")), ("path", text("lots"))]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(r.u64("count"), Some(42));
        let m = map(&[("count", text("lots"))]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(r.u64("count"), None);
        assert_eq!(keys(&r.finish().errors), ["count"]);
    }

    #[test]
    fn unset_keys_take_the_table_default() {
        let m = ConfigMap::new();
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(
            (r.int("count"), r.text("mode"), r.flag("on")),
            (7, "fast".to_owned(), true)
        );
        let m = map(&[("count", ConfigValue::Int(3)), ("on", text("false"))]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!((r.int("count"), r.flag("on")), (3, false));
    }

    #[test]
    fn a_choice_is_one_of_its_names_or_an_error_listing_them() {
        let choices = [("fast", 2), ("slow", 1)];
        let m = ConfigMap::new();
        assert_eq!(
            ConfigReader::new(&m, KEYS, "test").one_of("speed", &choices),
            1
        );
        let m = map(&[("speed", text("fast"))]);
        assert_eq!(
            ConfigReader::new(&m, KEYS, "test").one_of("speed", &choices),
            2
        );
        let m = map(&[("speed", text("warp"))]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(r.one_of("speed", &choices), 1);
        assert_eq!(
            r.finish().errors,
            [ConfigIssue {
                key: "speed".into(),
                message: "\"warp\" is not one of fast, slow".into()
            }]
        );
    }

    #[test]
    fn unread_keys_are_errors_naming_the_likely_key_and_ignored_keys_warnings() {
        let m = map(&[
            ("count", ConfigValue::Int(1)),
            ("cuont", ConfigValue::Int(1)),
            ("elsewhere", ConfigValue::Int(1)),
            ("legacy", ConfigValue::Bool(true)),
        ]);
        let r = ConfigReader::new(&m, KEYS, "test");
        r.u64("count");
        let report = r.finish();
        assert_eq!(
            report.errors,
            [
                ConfigIssue {
                    key: "cuont".into(),
                    message: "is not a setting of test: did you mean count?".into()
                },
                ConfigIssue {
                    key: "elsewhere".into(),
                    message: "is not a setting of test (docs/configuration.md lists its keys)"
                        .into()
                },
            ]
        );
        assert_eq!(
            report.warnings,
            [ConfigIssue {
                key: "legacy".into(),
                message: "is ignored: not used by sluice".into()
            }]
        );
    }

    #[test]
    fn an_old_name_is_read_for_its_key_and_both_names_is_an_error() {
        let m = map(&[("table.whitelist", text("a.b, c.d"))]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(
            r.string_list("table.include.list"),
            Some(vec!["a.b".into(), "c.d".into()])
        );
        assert!(r.finish().errors.is_empty());
        let m = map(&[
            ("table.whitelist", text("a.b")),
            ("table.include.list", text("c.d")),
        ]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(
            r.string_list("table.include.list"),
            Some(vec!["c.d".into()])
        );
        assert_eq!(
            r.finish().errors,
            [ConfigIssue {
                key: "table.whitelist".into(),
                message: "is the old name of table.include.list: set one of them".into()
            }]
        );
    }

    #[test]
    fn lists_come_as_yaml_lists_or_comma_strings() {
        let m = map(&[("table.include.list", ConfigValue::List(vec![text("x")]))]);
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(r.string_list("table.include.list"), Some(vec!["x".into()]));
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let m = ConfigMap::new();
        let r = ConfigReader::new(&m, KEYS, "test");
        assert_eq!(r.required_string("path"), None);
        assert_eq!(
            r.finish().errors,
            [ConfigIssue {
                key: "path".into(),
                message: "is required".into()
            }]
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "test: nowhere is read but not in the key table")]
    fn reading_an_undeclared_key_is_a_bug() {
        let m = ConfigMap::new();
        ConfigReader::new(&m, KEYS, "test").string("nowhere");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "test: count is declared Integer but read as Text")]
    fn reading_a_key_as_another_type_is_a_bug() {
        let m = ConfigMap::new();
        ConfigReader::new(&m, KEYS, "test").string("count");
    }
}

//! A record's JSON values as what the target parses for a column's type:
//! the inverse of the CDC source's Debezium mapping, so that every value
//! round-trips (days to dates, microseconds to timestamps, base64 to bytes,
//! JSON to json, arrays to array literals).

use std::borrow::Cow;

use serde_json::Value;

use super::sql::Dialect;
use crate::time::{civil_from_days, format_time};

/// How a target column takes its value, from its catalog type name
/// (Postgres `format_type`, MySQL `COLUMN_TYPE`, SQLite's declared type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Date,
    Time,
    Timestamp,
    /// Bytes: hex text for Postgres, bound bytes elsewhere.
    Bytes,
    Interval,
    Json,
    /// `tinyint(1)` and the like: `1` or `0`.
    Bool,
    Array(Box<Target>),
    /// Everything else: the JSON value's own text.
    Plain,
}

impl Target {
    /// The target for a column type of a dialect.
    pub(crate) fn of(dialect: Dialect, type_name: &str) -> Self {
        let t = type_name.to_ascii_lowercase();
        match dialect {
            Dialect::Postgres => Self::postgres(&t),
            Dialect::MySql | Dialect::Sqlite => Self::other(&t),
        }
    }

    fn postgres(t: &str) -> Self {
        if let Some(element) = t.strip_suffix("[]") {
            return Self::Array(Box::new(Self::postgres(element)));
        }
        match t {
            "date" => Self::Date,
            "time without time zone" | "time" => Self::Time,
            "timestamp without time zone" | "timestamp" => Self::Timestamp,
            "bytea" => Self::Bytes,
            "interval" => Self::Interval,
            "json" | "jsonb" => Self::Json,
            t if t.starts_with("time(") || t.starts_with("time without") => Self::Time,
            t if t.starts_with("timestamp(") && !t.contains("with time zone") => Self::Timestamp,
            _ => Self::Plain,
        }
    }

    /// MySQL/MariaDB column types and SQLite declared types.
    fn other(t: &str) -> Self {
        let base = t.split(['(', ' ']).next().unwrap_or(t);
        match base {
            "date" => Self::Date,
            "time" => Self::Time,
            "datetime" | "timestamp" => Self::Timestamp,
            "json" | "jsonb" => Self::Json,
            "bool" | "boolean" => Self::Bool,
            "tinyint" if t.starts_with("tinyint(1)") => Self::Bool,
            "bit" if t.starts_with("bit(1)") => Self::Bool,
            "blob" | "tinyblob" | "mediumblob" | "longblob" | "binary" | "varbinary" | "bytea" => {
                Self::Bytes
            }
            _ => Self::Plain,
        }
    }
}

/// A value to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    /// Text the database parses (or SQL NULL).
    Text(Option<String>),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

/// A Postgres array literal of text elements: each value quoted, with
/// `\\` and `"` escaped, and SQL NULL as an unquoted `NULL`.
pub(crate) fn text_array<S: AsRef<str>>(values: impl Iterator<Item = Option<S>>) -> String {
    let mut out = String::from("{");
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match value {
            None => out.push_str("NULL"),
            Some(text) => {
                out.push('"');
                for ch in text.as_ref().chars() {
                    if ch == '\\' || ch == '"' {
                        out.push('\\');
                    }
                    out.push(ch);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
}

/// The value to bind for `value` in a column of `target` type.
pub(crate) fn param(dialect: Dialect, target: &Target, value: &Value) -> Param {
    match (dialect, target, value) {
        (Dialect::MySql | Dialect::Sqlite, Target::Bytes, Value::String(s)) => {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(bytes) => Param::Bytes(bytes),
                Err(_) => Param::Text(Some(s.clone())),
            }
        }
        // MySQL's DATETIME takes neither the `T` nor the zone of ISO 8601; the
        // session runs in UTC, and the source sends UTC.
        (Dialect::MySql, Target::Timestamp, Value::String(s)) if s.ends_with('Z') => {
            Param::Text(Some(s[..s.len() - 1].replacen('T', " ", 1)))
        }
        _ => Param::Text(text(target, value).map(Cow::into_owned)),
    }
}

fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn timestamp_text(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    format!(
        "{} {}",
        date_text(days),
        format_time(micros.rem_euclid(86_400_000_000))
    )
}

fn base64_to_hex(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    Some(out)
}

/// An array element inside a Postgres array literal: quoted, with `"` and
/// `\` escaped; `NULL` unquoted.
fn array_element(target: &Target, value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Array(items) => array_literal(target, items),
        other => {
            let text = text(target, other).unwrap_or_default();
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        }
    }
}

fn array_literal(target: &Target, items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(|v| array_element(target, v)).collect();
    format!("{{{}}}", inner.join(","))
}

/// The text for a value in a column of `target` type; `None` for SQL NULL.
/// A JSON string that needs no conversion is borrowed, not copied.
pub(crate) fn text<'v>(target: &Target, value: &'v Value) -> Option<Cow<'v, str>> {
    if let (Target::Plain, Value::String(s)) = (target, value) {
        return Some(Cow::Borrowed(s));
    }
    let plain = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(Cow::Owned(match (target, value) {
        (_, Value::Null) => return None,
        (Target::Date, Value::Number(n)) => n.as_i64().map_or_else(|| n.to_string(), date_text),
        (Target::Time, Value::Number(n)) => n.as_i64().map_or_else(|| n.to_string(), format_time),
        (Target::Timestamp, Value::Number(n)) => {
            n.as_i64().map_or_else(|| n.to_string(), timestamp_text)
        }
        (Target::Interval, Value::Number(n)) => format!("{n} microseconds"),
        (Target::Bytes, Value::String(s)) => base64_to_hex(s).unwrap_or_else(|| s.clone()),
        // Debezium writes a json column as its text: a string that is JSON
        // text is that JSON; any other value is written as JSON.
        (Target::Json, Value::String(s)) if is_json_text(s) => s.clone(),
        (Target::Json, v) => v.to_string(),
        (Target::Bool, Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
        (Target::Array(element), Value::Array(items)) => array_literal(element, items),
        (_, v) => plain(v),
    }))
}

fn is_json_text(s: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_arrays_quote_escape_and_keep_nulls() {
        let values = [
            Some("plain"),
            None,
            Some("NULL"),
            Some(r#"a "quoted" \ back,slash {brace}"#),
            Some(""),
        ];
        assert_eq!(
            super::text_array(values.into_iter()),
            r#"{"plain",NULL,"NULL","a \"quoted\" \\ back,slash {brace}",""}"#
        );
        assert_eq!(super::text_array(std::iter::empty::<Option<&str>>()), "{}");
    }

    use super::*;
    use serde_json::json;

    fn pg(t: &str) -> Target {
        Target::of(Dialect::Postgres, t)
    }

    #[test]
    fn debezium_encodings_become_postgres_literals() {
        assert_eq!(text(&pg("date"), &json!(19782)), Some("2024-02-29".into()));
        assert_eq!(
            text(&pg("time without time zone"), &json!(49_530_500_000i64)),
            Some("13:45:30.500000".into())
        );
        assert_eq!(
            text(
                &pg("timestamp without time zone"),
                &json!(1_705_326_330_123_456i64)
            ),
            Some("2024-01-15 13:45:30.123456".into())
        );
        assert_eq!(
            text(
                &pg("timestamp with time zone"),
                &json!("2024-01-15T11:45:30Z")
            ),
            Some("2024-01-15T11:45:30Z".into())
        );
        assert_eq!(
            text(&pg("interval"), &json!(93_600_000_000i64)),
            Some("93600000000 microseconds".into())
        );
        assert_eq!(text(&pg("bytea"), &json!("AP8=")), Some("\\x00ff".into()));
        assert_eq!(
            text(&pg("jsonb"), &json!({"b": null})),
            Some("{\"b\":null}".into())
        );
        assert_eq!(
            text(&pg("numeric(12,3)"), &json!("1234.500")),
            Some("1234.500".into())
        );
        assert_eq!(text(&pg("boolean"), &json!(true)), Some("true".into()));
        assert_eq!(text(&pg("integer"), &json!(null)), None);
    }

    #[test]
    fn dates_and_timestamps_of_any_count_are_text_not_an_overflow() {
        let (max, min) = (serde_json::json!(i64::MAX), serde_json::json!(i64::MIN));
        let date = super::text(&pg("date"), &max);
        assert_eq!(date.as_deref(), Some("25252734927768524-07-27"));
        let before = super::text(&pg("date"), &min);
        assert!(before.is_some_and(|d| d.ends_with(" BC")));
        assert!(super::text(&pg("timestamp"), &min).is_some());
    }

    #[test]
    fn arrays_become_array_literals() {
        assert_eq!(
            text(&pg("integer[]"), &json!([1, null, 3])),
            Some("{\"1\",NULL,\"3\"}".into())
        );
        assert_eq!(
            text(&pg("text[]"), &json!(["x y", "q\"\\"])),
            Some("{\"x y\",\"q\\\"\\\\\"}".into())
        );
        assert_eq!(
            text(&pg("date[]"), &json!([[0]])),
            Some("{{\"1970-01-01\"}}".into())
        );
    }

    #[test]
    fn mysql_and_sqlite_take_bytes_flags_and_plain_timestamps() {
        let my = |t: &str| Target::of(Dialect::MySql, t);
        assert_eq!(my("tinyint(1)"), Target::Bool);
        assert_eq!(my("datetime(6)"), Target::Timestamp);
        assert_eq!(my("varbinary(16)"), Target::Bytes);
        assert_eq!(my("decimal(12,3)"), Target::Plain);
        assert_eq!(Target::of(Dialect::Sqlite, "BLOB"), Target::Bytes);
        assert_eq!(
            param(Dialect::MySql, &Target::Bytes, &json!("AP8=")),
            Param::Bytes(vec![0, 255])
        );
        assert_eq!(
            param(Dialect::MySql, &Target::Bool, &json!(true)),
            Param::Text(Some("1".into()))
        );
        assert_eq!(
            param(
                Dialect::MySql,
                &Target::Timestamp,
                &json!("2024-01-15T11:45:30.5Z")
            ),
            Param::Text(Some("2024-01-15 11:45:30.5".into()))
        );
        assert_eq!(
            param(
                Dialect::Sqlite,
                &Target::Timestamp,
                &json!(1_705_326_330_123_456i64)
            ),
            Param::Text(Some("2024-01-15 13:45:30.123456".into()))
        );
    }
}

//! A record's JSON values as the text Postgres parses for a column's type:
//! the inverse of the CDC source's Debezium mapping, so that every value
//! round-trips (days to dates, microseconds to timestamps, base64 to bytea,
//! JSON to json, arrays to array literals).

use serde_json::Value;

use crate::time::{civil_from_days, format_time};

/// How a target column takes its text, from its catalog type name
/// (`format_type`: `integer`, `timestamp with time zone`, `text[]`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Date,
    Time,
    Timestamp,
    Bytea,
    Interval,
    Json,
    Array(Box<Target>),
    /// Everything else: the JSON value's own text.
    Plain,
}

impl Target {
    /// The target for a Postgres type name.
    pub(crate) fn of(type_name: &str) -> Self {
        if let Some(element) = type_name.strip_suffix("[]") {
            return Self::Array(Box::new(Self::of(element)));
        }
        match type_name {
            "date" => Self::Date,
            "time without time zone" | "time" => Self::Time,
            "timestamp without time zone" | "timestamp" => Self::Timestamp,
            "bytea" => Self::Bytea,
            "interval" => Self::Interval,
            "json" | "jsonb" => Self::Json,
            t if t.starts_with("time(") || t.starts_with("time without") => Self::Time,
            t if t.starts_with("timestamp(") && !t.contains("with time zone") => Self::Timestamp,
            _ => Self::Plain,
        }
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
pub(crate) fn text(target: &Target, value: &Value) -> Option<String> {
    let plain = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(match (target, value) {
        (_, Value::Null) => return None,
        (Target::Date, Value::Number(n)) => n.as_i64().map_or_else(|| n.to_string(), date_text),
        (Target::Time, Value::Number(n)) => n.as_i64().map_or_else(|| n.to_string(), format_time),
        (Target::Timestamp, Value::Number(n)) => {
            n.as_i64().map_or_else(|| n.to_string(), timestamp_text)
        }
        (Target::Interval, Value::Number(n)) => format!("{n} microseconds"),
        (Target::Bytea, Value::String(s)) => base64_to_hex(s).unwrap_or_else(|| s.clone()),
        (Target::Json, v) => v.to_string(),
        (Target::Array(element), Value::Array(items)) => array_literal(element, items),
        (_, v) => plain(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debezium_encodings_become_postgres_literals() {
        assert_eq!(
            text(&Target::of("date"), &json!(19782)),
            Some("2024-02-29".into())
        );
        assert_eq!(
            text(
                &Target::of("time without time zone"),
                &json!(49_530_500_000i64)
            ),
            Some("13:45:30.500000".into())
        );
        assert_eq!(
            text(
                &Target::of("timestamp without time zone"),
                &json!(1_705_326_330_123_456i64)
            ),
            Some("2024-01-15 13:45:30.123456".into())
        );
        assert_eq!(
            text(
                &Target::of("timestamp with time zone"),
                &json!("2024-01-15T11:45:30Z")
            ),
            Some("2024-01-15T11:45:30Z".into())
        );
        assert_eq!(
            text(&Target::of("interval"), &json!(93_600_000_000i64)),
            Some("93600000000 microseconds".into())
        );
        assert_eq!(
            text(&Target::of("bytea"), &json!("AP8=")),
            Some("\\x00ff".into())
        );
        assert_eq!(
            text(&Target::of("jsonb"), &json!({"b": null})),
            Some("{\"b\":null}".into())
        );
        assert_eq!(
            text(&Target::of("numeric(12,3)"), &json!("1234.500")),
            Some("1234.500".into())
        );
        assert_eq!(
            text(&Target::of("boolean"), &json!(true)),
            Some("true".into())
        );
        assert_eq!(text(&Target::of("integer"), &json!(null)), None);
    }

    #[test]
    fn arrays_become_array_literals() {
        assert_eq!(
            text(&Target::of("integer[]"), &json!([1, null, 3])),
            Some("{\"1\",NULL,\"3\"}".into())
        );
        assert_eq!(
            text(&Target::of("text[]"), &json!(["x y", "q\"\\"])),
            Some("{\"x y\",\"q\\\"\\\\\"}".into())
        );
        assert_eq!(
            text(&Target::of("date[]"), &json!([[0]])),
            Some("{{\"1970-01-01\"}}".into())
        );
    }
}

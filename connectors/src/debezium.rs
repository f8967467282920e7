//! The Debezium change-event envelope, as the CDC source writes it and the
//! database sink reads it: the `op` codes, the fields, and the placeholder
//! for an unchanged TOAST value.
//!
//! ```json
//! {"before": {..} | null, "after": {..} | null,
//!  "source": {"table": "orders", ..}, "op": "c", "ts_ms": 1700000000000}
//! ```

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// Debezium's placeholder for an unchanged TOAST value that Postgres did not
/// send. A sink leaves such a column untouched.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The change kind: Debezium's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Delete,
    /// A row read by a snapshot.
    Read,
    Truncate,
}

impl Op {
    const CODES: [(Self, &'static str); 5] = [
        (Self::Create, "c"),
        (Self::Update, "u"),
        (Self::Delete, "d"),
        (Self::Read, "r"),
        (Self::Truncate, "t"),
    ];

    /// The one-letter code of the envelope's `op`.
    pub(crate) fn code(self) -> &'static str {
        Self::CODES
            .iter()
            .find(|(op, _)| *op == self)
            .map_or("", |(_, code)| code)
    }

    /// The op an envelope's code names.
    pub(crate) fn from_code(code: &str) -> Option<Self> {
        Self::CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map(|(op, _)| *op)
    }
}

/// An envelope: the row before and after the change, `source` (where it
/// came from, with at least `table`), the op and when it was made.
pub(crate) fn envelope(
    op: Op,
    before: Option<Value>,
    after: Option<Value>,
    source: Value,
    ts_ms: u64,
) -> Value {
    json!({
        "before": before,
        "after": after,
        "source": source,
        "op": op.code(),
        "ts_ms": ts_ms,
    })
}

/// A record's value: a Debezium envelope (an object whose `op` is a string
/// and whose `source` is an object), or a plain row.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    Envelope(Parts),
    Row(Map<String, Value>),
}

/// What the sink reads of an envelope.
#[derive(Debug, PartialEq)]
pub(crate) struct Parts {
    /// The `op` code as sent; see [`Op::from_code`].
    pub(crate) op: String,
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
    /// `source.table`, when it is a string.
    pub(crate) table: Option<String>,
}

/// An envelope read field by field: the rest of it (the source's position
/// and timestamps, the transaction block) is skipped as it is parsed,
/// never built into maps and strings.
#[derive(Deserialize)]
struct Envelope<'a> {
    op: Option<Value>,
    before: Option<Value>,
    after: Option<Value>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SourceTable {
    table: Option<Value>,
}

impl Parts {
    /// The envelope in `bytes`, when it reads as one field by field. `None`
    /// leaves the decision to the whole-value parse (see [`parse`]).
    fn read(bytes: &[u8]) -> Option<Self> {
        // A plain row (no `"op"` anywhere) goes straight to the whole parse
        // instead of being read twice.
        if bytes.trim_ascii_start().first() != Some(&b'{')
            || !bytes.windows(4).any(|w| w == b"\"op\"")
        {
            return None;
        }
        let envelope: Envelope = serde_json::from_slice(bytes).ok()?;
        let Some(Value::String(op)) = envelope.op else {
            return None;
        };
        let source = envelope.source?.get();
        if !source.trim_start().starts_with('{') {
            return None;
        }
        let table = match serde_json::from_str::<SourceTable>(source).ok()?.table {
            Some(Value::String(t)) => Some(t),
            _ => None,
        };
        Some(Self {
            op,
            before: envelope.before,
            after: envelope.after,
            table,
        })
    }
}

/// Read a record's value. Envelopes take the field-by-field path; anything
/// it cannot settle (a plain row, a duplicate field) is parsed whole, and
/// that parse decides, as it always has.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, &'static str> {
    match Parts::read(bytes) {
        Some(parts) => Ok(Parsed::Envelope(parts)),
        None => parse_whole(bytes),
    }
}

/// Read a record's value as one JSON value.
fn parse_whole(bytes: &[u8]) -> Result<Parsed, &'static str> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| "the value is not JSON")?;
    let Value::Object(mut object) = value else {
        return Err("the value is not a JSON object");
    };
    let op = match object.get("op") {
        Some(Value::String(op)) if object.get("source").is_some_and(Value::is_object) => op.clone(),
        _ => return Ok(Parsed::Row(object)),
    };
    let table = object["source"]
        .get("table")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Parsed::Envelope(Parts {
        op,
        before: object.remove("before").filter(|v| !v.is_null()),
        after: object.remove("after").filter(|v| !v.is_null()),
        table,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_codes_round_trip() {
        for (op, code) in Op::CODES {
            assert_eq!(op.code(), code);
            assert_eq!(Op::from_code(code), Some(op));
        }
        assert_eq!(Op::from_code("x"), None);
    }

    #[test]
    fn an_envelope_read_field_by_field_equals_the_whole_value_parse() {
        let debezium = json!({
            "before": null,
            "after": {"id": 1, "sku": "a\"b", "price": "1.50", "meta": {"k": [1, 2]}},
            "source": {"version": "2.7", "connector": "postgresql", "name": "shop",
                       "ts_ms": 1, "db": "shop", "schema": "public", "table": "orders",
                       "txId": 7, "lsn": 99, "xmin": null},
            "op": "c", "ts_ms": 2, "transaction": null
        });
        let mut samples: Vec<String> = vec![
            debezium.to_string(),
            serde_json::to_string_pretty(&debezium).unwrap(),
            format!("  {debezium}"),
            json!({"op": "d", "before": {"id": 1}, "after": null, "source": {}}).to_string(),
            json!({"op": "u", "source": {"table": 5}, "after": {"id": 2}}).to_string(),
            json!({"op": "t", "source": {"table": "orders"}}).to_string(),
            json!({"op": "x", "source": {"table": "orders"}}).to_string(),
        ];
        // Not settled field by field: left to the whole-value parse.
        let unsettled = [
            r#"{"op": "c", "op": "d", "source": {}, "after": {"id": 1}}"#,
            r#"{"op": "c", "source": {"table": "a", "table": "b"}, "after": {"id": 1}}"#,
            r#"{"op": 1, "source": {}, "id": 3}"#,
            r#"{"op": "c", "source": [1], "id": 3}"#,
            r#"{"op": "c", "id": 3}"#,
            r#"["c", null, {"id": 1}, {"table": "orders"}]"#,
            r#"{"id": 1, "sku": "plain"}"#,
        ];
        for text in unsettled {
            assert_eq!(Parts::read(text.as_bytes()), None, "{text}");
            samples.push(text.to_owned());
        }
        for text in &samples {
            let whole = parse_whole(text.as_bytes());
            if let Some(parts) = Parts::read(text.as_bytes()) {
                assert_eq!(whole, Ok(Parsed::Envelope(parts)), "{text}");
            }
            assert_eq!(parse(text.as_bytes()), whole, "{text}");
        }
    }
}

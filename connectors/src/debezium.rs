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
use serde_json::{Map, Value};

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
    /// leaves the decision to the whole-value parse (see [`parse_envelope`]).
    fn read(bytes: &[u8]) -> Option<Self> {
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        let envelope: Envelope = serde_json::from_slice(bytes).ok()?;
        let Some(Value::String(op)) = envelope.op else {
            return None;
        };
        let table = match envelope.source.map(RawValue::get) {
            None => None,
            Some(source) if source.trim_start().starts_with('{') => {
                match serde_json::from_str::<SourceTable>(source).ok()?.table {
                    Some(Value::String(t)) => Some(t),
                    _ => None,
                }
            }
            Some(_) => return None,
        };
        Some(Self {
            op,
            before: envelope.before.filter(|v| !v.is_null()),
            after: envelope.after.filter(|v| !v.is_null()),
            table,
        })
    }
}

/// Read a record's value as a Debezium change event: an object with a
/// string `op`, and `source` an object when present. Only a sink whose
/// configuration says its input carries change events reads values so
/// (decision 0015): the shape of a value is not a permission.
///
/// Most envelopes take the field-by-field path; anything it cannot settle
/// (a duplicate field, a value that is not an envelope) is parsed whole,
/// and that parse decides.
pub(crate) fn parse_envelope(bytes: &[u8]) -> Result<Parts, &'static str> {
    if let Some(parts) = Parts::read(bytes) {
        return Ok(parts);
    }
    let mut object = parse_row(bytes)?;
    let Some(Value::String(op)) = object.remove("op") else {
        return Err("the value is not a Debezium change event: it has no string `op`");
    };
    let table = match object.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::Object(source)) => source
            .get("table")
            .and_then(Value::as_str)
            .map(str::to_owned),
        Some(_) => return Err("the change event's `source` is not an object"),
    };
    Ok(Parts {
        op,
        before: object.remove("before").filter(|v| !v.is_null()),
        after: object.remove("after").filter(|v| !v.is_null()),
        table,
    })
}

/// Read a record's value as a plain JSON row: an object whose fields are
/// columns, whatever they are named.
pub(crate) fn parse_row(bytes: &[u8]) -> Result<Map<String, Value>, &'static str> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("the value is not a JSON object"),
        Err(_) => Err("the value is not JSON"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        let settled = [
            debezium.to_string(),
            serde_json::to_string_pretty(&debezium).unwrap(),
            format!("  {debezium}"),
            json!({"op": "d", "before": {"id": 1}, "after": null, "source": {}}).to_string(),
            json!({"op": "u", "source": {"table": 5}, "after": {"id": 2}}).to_string(),
            json!({"op": "t", "source": {"table": "orders"}}).to_string(),
            json!({"op": "x", "source": {"table": "orders"}}).to_string(),
            json!({"op": "c", "after": {"id": 3}}).to_string(),
        ];
        for text in &settled {
            let fast = Parts::read(text.as_bytes()).expect(text);
            let mut whole = parse_row(text.as_bytes()).unwrap();
            assert_eq!(
                whole.remove("op"),
                Some(Value::String(fast.op.clone())),
                "{text}"
            );
            assert_eq!(parse_envelope(text.as_bytes()), Ok(fast), "{text}");
        }
        // Not settled field by field: the whole-value parse decides.
        let envelope = |text: &str| parse_envelope(text.as_bytes()).map(|p| p.op);
        assert!(Parts::read(br#"{"op": "c", "op": "d", "after": {"id": 1}}"#).is_none());
        assert_eq!(
            envelope(r#"{"op": "c", "op": "d", "after": {"id": 1}}"#),
            Ok("d".into())
        );
        assert!(envelope(r#"{"op": 1, "source": {}, "id": 3}"#).is_err());
        assert!(envelope(r#"{"op": "c", "source": [1], "id": 3}"#).is_err());
        assert!(envelope(r#"{"id": 1, "sku": "plain"}"#).is_err());
        assert!(envelope(r#"["c", null, {"id": 1}]"#).is_err());
    }

    #[test]
    fn a_row_is_a_row_whatever_its_fields_are_named() {
        // GIVEN a row shaped like a change event
        let text = r#"{"op": "d", "source": {}, "before": {"id": 1}}"#;
        // WHEN it is read as a row THEN its fields are columns, nothing more
        let row = parse_row(text.as_bytes()).unwrap();
        assert_eq!(row.len(), 3);
        assert_eq!(row["op"], "d");
        assert_eq!(parse_row(b"[1]"), Err("the value is not a JSON object"));
        assert_eq!(parse_row(b"{"), Err("the value is not JSON"));
    }
}

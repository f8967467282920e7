//! A request body as records: a JSON object is one, a JSON array one per
//! element, any other content type one record of the raw bytes.

use serde_json::Value;

/// A record read from a request: its key, if any, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) key: Option<String>,
    pub(crate) value: Vec<u8>,
    /// The value of the idempotency field, for a JSON object.
    pub(crate) idempotency: Option<String>,
}

/// Why a body is refused: the HTTP status and the reason.
pub(crate) type Refusal = (u16, String);

/// Whether a media type is JSON: `application/json` or `*/*+json`.
fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// The records of a body of `content_type`. `key_field` names the field
/// of a JSON object that becomes the record's key, `id_field` the one that
/// carries its idempotency key.
pub(crate) fn items(
    content_type: Option<&str>,
    body: &[u8],
    key_field: Option<&str>,
    id_field: Option<&str>,
) -> Result<Vec<Item>, Refusal> {
    let Some(content_type) = content_type else {
        return Err((415, "a Content-Type is required".into()));
    };
    if body.is_empty() {
        return Err((400, "the body is empty".into()));
    }
    if !is_json(content_type) {
        return Ok(vec![Item {
            key: None,
            value: body.to_vec(),
            idempotency: None,
        }]);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| (400, format!("the body is not valid JSON: {e}")))?;
    let field = |v: &Value, name: Option<&str>| {
        name.and_then(|f| match v.get(f) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
    };
    let one = |v: Value| Item {
        key: field(&v, key_field),
        idempotency: field(&v, id_field),
        value: v.to_string().into_bytes(),
    };
    match value {
        Value::Object(_) => Ok(vec![one(value)]),
        Value::Array(items) if items.is_empty() => Err((400, "the array is empty".into())),
        Value::Array(items) => Ok(items.into_iter().map(one).collect()),
        _ => Err((400, "the body is neither a JSON object nor an array".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_bytes_become_records() {
        let json = Some("application/json; charset=utf-8");
        let one = items(json, br#"{"id": 7, "sku": "a"}"#, Some("id"), Some("sku")).unwrap();
        assert_eq!(
            one,
            [Item {
                key: Some("7".into()),
                value: br#"{"id":7,"sku":"a"}"#.to_vec(),
                idempotency: Some("a".into()),
            }]
        );
        let many = items(
            Some("application/vnd.orders+json"),
            br#"[{"id":"x"},{"n":2}]"#,
            Some("id"),
            None,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].key.as_deref(), Some("x"));
        assert_eq!(many[1].key, None);
        let raw = items(Some("text/csv"), b"1,2,3\n", None, None).unwrap();
        assert_eq!(raw[0].value, b"1,2,3\n");
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let json = Some("application/json");
        assert_eq!(items(None, b"{}", None, None).unwrap_err().0, 415);
        assert_eq!(items(json, b"", None, None).unwrap_err().0, 400);
        assert_eq!(items(json, b"[]", None, None).unwrap_err().0, 400);
        assert_eq!(items(json, b"42", None, None).unwrap_err().0, 400);
        let (status, why) = items(json, b"{\"a\": ", None, None).unwrap_err();
        assert_eq!(status, 400);
        assert!(why.starts_with("the body is not valid JSON"), "{why}");
    }
}

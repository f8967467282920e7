//! A request body as records: a JSON object is one, a JSON array one per
//! element, any other content type one record of the raw bytes.
//!
//! A JSON body is checked whole when it arrives, but its records are made
//! only as the source hands them over, a batch at a time, from the places
//! of the elements in the body: a large array never becomes a tree of
//! values, nor all its records at once. Each record is its element's text
//! exactly as sent, so numbers keep every digit.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body is refused: the HTTP status and the reason.
pub(crate) type Refusal = (u16, String);

/// Where one record's value lies in the body: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// A body checked and cut into records, not yet made.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    bytes: Bytes,
    /// `None`: one record of the whole body (not JSON).
    spans: Option<Vec<Span>>,
}

/// A record read from a request: its key, if any, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) key: Option<String>,
    pub(crate) value: Vec<u8>,
}

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

/// The most memory the index of a body's records can take: for a JSON
/// array, a [`Span`] per element, of which there are at most one more
/// than its commas, and as much again while the index grows. Taken from
/// the budget before the body is parsed.
pub(crate) fn index_bytes(bytes: &[u8]) -> usize {
    let array = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[');
    if !array {
        return 0;
    }
    let commas = bytes.iter().filter(|b| **b == b',').count();
    (commas + 1) * std::mem::size_of::<Span>() * 2
}

/// Check a body of `content_type` and find its records.
pub(crate) fn parse(content_type: Option<&str>, bytes: Bytes) -> Result<Body, Refusal> {
    let Some(content_type) = content_type else {
        return Err((415, "a Content-Type is required".into()));
    };
    if bytes.is_empty() {
        return Err((400, "the body is empty".into()));
    }
    if !is_json(content_type) {
        return Ok(Body { bytes, spans: None });
    }
    if u32::try_from(bytes.len()).is_err() {
        return Err((413, "the body is larger than 4 GiB".into()));
    }
    let base = bytes.as_ptr() as usize;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let spans = Top { base }
        .deserialize(&mut de)
        .and_then(|spans| de.end().map(|()| spans))
        .map_err(|e| (400, format!("the body is not valid JSON: {e}")))?
        .map_err(|why| (400, why.to_owned()))?;
    Ok(Body {
        bytes,
        spans: Some(spans),
    })
}

impl Body {
    /// How many records the body holds.
    pub(crate) fn len(&self) -> usize {
        self.spans.as_ref().map_or(1, Vec::len)
    }

    /// The body's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Record `index`: its value as sent, and for a JSON object the text of
    /// its `key_field` (a string's own text, anything else as written).
    pub(crate) fn item(&self, index: usize, key_field: Option<&str>) -> Item {
        let Some(spans) = &self.spans else {
            return Item {
                key: None,
                value: self.bytes.to_vec(),
            };
        };
        let span = spans[index];
        let value = &self.bytes[span.start as usize..span.end as usize];
        Item {
            key: key_field.and_then(|f| field(value, f)),
            value: value.to_vec(),
        }
    }

    /// For a body of one JSON object, the text of its field `name`.
    pub(crate) fn only_field(&self, name: &str) -> Option<String> {
        match self.spans.as_deref() {
            Some([one]) => field(&self.bytes[one.start as usize..one.end as usize], name),
            _ => None,
        }
    }
}

/// The text of field `name` of a JSON object: a string's own text, null
/// none, anything else its JSON as written. Only that field is looked at.
fn field(json: &[u8], name: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_any(Field { name }).ok().flatten()
}

/// Looks up one field of an object, skipping the others without building
/// them.
struct Field<'n> {
    name: &'n str,
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.name && found.is_none() {
                let raw: &RawValue = map.next_value()?;
                found = Some(match serde_json::from_str::<Option<String>>(raw.get()) {
                    Ok(text) => text,
                    Err(_) => Some(raw.get().to_owned()),
                });
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.flatten())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The top of a JSON body: an object is one record, an array one per
/// element (found by where each lies in the body), anything else refused.
struct Top {
    base: usize,
}

impl Top {
    fn span(&self, raw: &RawValue) -> Span {
        let start = raw.get().as_ptr() as usize - self.base;
        // The body is under 4 GiB (checked before).
        Span {
            start: start as u32,
            end: (start + raw.get().len()) as u32,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Top {
    type Value = Result<Vec<Span>, &'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let raw: &'de RawValue = serde::Deserialize::deserialize(d)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => Ok(Ok(vec![self.span(raw)])),
            Some(b'[') => {
                let mut de = serde_json::Deserializer::from_str(text);
                let spans = de
                    .deserialize_seq(Elements { top: &self })
                    .map_err(de::Error::custom)?;
                Ok(if spans.is_empty() {
                    Err("the array is empty")
                } else {
                    Ok(spans)
                })
            }
            _ => Ok(Err("the body is neither a JSON object nor an array")),
        }
    }
}

/// An array's elements, by place.
struct Elements<'t> {
    top: &'t Top,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = Vec<Span>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut spans = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            spans.push(self.top.span(raw));
        }
        Ok(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(content_type: Option<&str>, body: &[u8], key: Option<&str>) -> Vec<Item> {
        let body = parse(content_type, Bytes::copy_from_slice(body)).unwrap();
        (0..body.len()).map(|i| body.item(i, key)).collect()
    }

    #[test]
    fn objects_arrays_and_bytes_become_records() {
        let json = Some("application/json; charset=utf-8");
        let one = items(json, br#" {"id": 7, "sku": "a"} "#, Some("id"));
        assert_eq!(
            one,
            [Item {
                key: Some("7".into()),
                value: br#"{"id": 7, "sku": "a"}"#.to_vec(),
            }]
        );
        let body = parse(json, Bytes::from_static(br#"{"id": 7, "sku": "a\u0062"}"#)).unwrap();
        assert_eq!(body.only_field("sku").as_deref(), Some("ab"));
        let many = items(
            Some("application/vnd.orders+json"),
            br#"[{"id":"x"}, {"n":2}, 3]"#,
            Some("id"),
        );
        assert_eq!(many.len(), 3);
        assert_eq!(many[0].key.as_deref(), Some("x"));
        assert_eq!(many[1].key, None);
        assert_eq!(many[2].value, b"3");
        let raw = items(Some("text/csv"), b"1,2,3\n", None);
        assert_eq!(raw[0].value, b"1,2,3\n");
    }

    #[test]
    fn numbers_pass_through_exactly_as_sent() {
        let text =
            r#"[{"id": 12345678901234567890123, "r": 0.1000000000000000000001, "k": 1e400}]"#;
        let got = items(Some("application/json"), text.as_bytes(), Some("id"));
        assert_eq!(
            got[0].value,
            br#"{"id": 12345678901234567890123, "r": 0.1000000000000000000001, "k": 1e400}"#
        );
        assert_eq!(got[0].key.as_deref(), Some("12345678901234567890123"));
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let json = Some("application/json");
        let refused = |ct: Option<&str>, body: &'static [u8]| {
            parse(ct, Bytes::from_static(body)).unwrap_err()
        };
        assert_eq!(refused(None, b"{}").0, 415);
        assert_eq!(refused(json, b"").0, 400);
        assert_eq!(refused(json, b"[]").1, "the array is empty");
        assert_eq!(refused(json, b"42").0, 400);
        assert_eq!(refused(json, b"{} {}").0, 400);
        let (status, why) = refused(json, b"{\"a\": ");
        assert_eq!(status, 400);
        assert!(why.starts_with("the body is not valid JSON"), "{why}");
    }
}

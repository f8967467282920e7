//! Column values that only the registered schema can decode.
//!
//! Debezium's Java connectors, under their default settings, write some
//! columns in forms that the value alone does not explain:
//! - `decimal.handling.mode: precise` writes a numeric column as base64 of
//!   its unscaled two's-complement big-endian bytes, its scale being in the
//!   schema (`org.apache.kafka.connect.data.Decimal`); a numeric without a
//!   fixed scale as `{"scale": s, "value": base64}`
//!   (`io.debezium.data.VariableScaleDecimal`);
//! - `time.precision.mode: adaptive` writes `timestamp(0..3)` and
//!   `time(0..3)` in milliseconds (`io.debezium.time.Timestamp`,
//!   `io.debezium.time.Time`), where other precisions, and sluice's source,
//!   use microseconds.
//!
//! A record whose producer registered a schema carries its definition (Avro
//! JSON); the columns it marks so are rewritten to what the rest of the
//! sink reads: decimal text, and microseconds.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

/// How one column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Decimal { scale: u32 },
    VariableScaleDecimal,
    MillisTimestamp,
    MillisTime,
}

/// The encoded columns of a row schema, by name.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Encodings {
    columns: HashMap<String, Encoding>,
}

impl Encodings {
    /// The columns of a schema definition that need decoding: the row
    /// record of a Debezium envelope (its `before` or `after`), or a row
    /// record itself. Anything else has none.
    pub(crate) fn of(definition: &str) -> Self {
        let Ok(schema) = serde_json::from_str::<Value>(definition) else {
            return Self::default();
        };
        let fields = schema["fields"].as_array();
        let row = fields
            .into_iter()
            .flatten()
            .filter(|f| f["name"] == "before" || f["name"] == "after")
            .filter_map(|f| record_in(&f["type"]))
            .next()
            .or_else(|| (schema["type"] == "record").then_some(&schema));
        let mut columns = HashMap::new();
        for field in row
            .and_then(|r| r["fields"].as_array())
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(encoding)) = (field["name"].as_str(), encoding(&field["type"]))
            else {
                continue;
            };
            columns.insert(name.to_owned(), encoding);
        }
        Self { columns }
    }

    /// Whether any column needs decoding.
    pub(crate) fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Rewrite `row`'s encoded columns; the error names the column.
    pub(crate) fn decode(&self, row: &mut Map<String, Value>) -> Result<(), String> {
        for (name, encoding) in &self.columns {
            let Some(value) = row.get_mut(name) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let decoded = match encoding {
                Encoding::Decimal { scale } => match value.as_str() {
                    Some(b64) => decimal(b64, *scale).map(Value::String),
                    None => Err(Refused::Shape),
                },
                Encoding::VariableScaleDecimal => {
                    match (value["scale"].as_u64(), value["value"].as_str()) {
                        (Some(scale), Some(b64)) => u32::try_from(scale)
                            .map_err(|_| Refused::Scale(scale))
                            .and_then(|scale| decimal(b64, scale))
                            .map(Value::String),
                        _ => Err(Refused::Shape),
                    }
                }
                Encoding::MillisTimestamp | Encoding::MillisTime => value
                    .as_i64()
                    .and_then(|ms| ms.checked_mul(1000))
                    .map(Value::from)
                    .ok_or(Refused::Shape),
            };
            match decoded {
                Ok(v) => *value = v,
                Err(Refused::Shape) => {
                    return Err(format!(
                        "column `{name}` is not the {} its schema says",
                        match encoding {
                            Encoding::Decimal { .. } => "base64 decimal",
                            Encoding::VariableScaleDecimal => "{scale, value} decimal",
                            Encoding::MillisTimestamp | Encoding::MillisTime => "milliseconds",
                        }
                    ));
                }
                Err(why) => return Err(format!("column `{name}`: {why}")),
            }
        }
        Ok(())
    }
}

/// Why a value was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Not the form its schema says.
    Shape,
    /// A decimal's scale past [`MAX_SCALE`].
    Scale(u64),
    /// A decimal's unscaled value longer than [`MAX_UNSCALED_BYTES`].
    Length,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shape => f.write_str("not the form its schema says"),
            Self::Scale(s) => write!(
                f,
                "a decimal scale of {s}, over {MAX_SCALE}, the most Postgres takes"
            ),
            Self::Length => write!(
                f,
                "a decimal whose unscaled value is longer than {MAX_UNSCALED_BYTES} bytes \
                 (about {MAX_DIGITS} digits), the most sluice converts"
            ),
        }
    }
}

/// The largest scale of a decimal: Postgres's own limit for `numeric`.
const MAX_SCALE: u32 = 16_383;
/// The most bytes of a decimal's unscaled value, with its sign. Turning
/// it into digits costs the square of its length: at this length about a
/// millisecond, at Postgres's own limit (61,232 bytes) a fifth of a second
/// of CPU for one value of a few kilobytes of message, again on every
/// retry. Declared `numeric` precision goes to 1,000 digits.
const MAX_UNSCALED_BYTES: usize = 4096;
/// The digits of the largest unscaled value: ⌊(4096 × 8 − 1) × log₁₀ 2⌋ + 1.
const MAX_DIGITS: usize = 9_864;
/// Unscaled values longer than this (in base64) are converted off the
/// async worker threads: the conversion's cost grows with the square of
/// the length.
const OFFLOAD_LENGTH: usize = 4096;

/// A decimal's text from base64 unscaled bytes and a scale, within
/// Postgres's limits.
fn decimal(b64: &str, scale: u32) -> Result<String, Refused> {
    if scale > MAX_SCALE {
        return Err(Refused::Scale(u64::from(scale)));
    }
    // The length base64 decodes to, before decoding it.
    if b64.trim_end_matches('=').len() * 3 / 4 > MAX_UNSCALED_BYTES {
        return Err(Refused::Length);
    }
    if b64.len() > OFFLOAD_LENGTH {
        offload(|| decimal_text(b64, scale))
    } else {
        decimal_text(b64, scale)
    }
    .ok_or(Refused::Shape)
}

/// Run `work` where it does not hold up an async worker thread: in place,
/// with the runtime told to move its other tasks elsewhere, on a
/// multi-threaded runtime; inline otherwise.
fn offload<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// The record definition in a field type: the type itself or a member of
/// its union.
fn record_in(t: &Value) -> Option<&Value> {
    match t {
        Value::Object(_) if t["type"] == "record" => Some(t),
        Value::Array(members) => members.iter().find_map(record_in),
        _ => None,
    }
}

/// How a field type marks its encoding: Kafka Connect's logical name, as
/// Avro conversion keeps it in `connect.name`, with the decimal's scale in
/// `connect.parameters` (or Avro's own `scale`).
fn encoding(t: &Value) -> Option<Encoding> {
    if let Value::Array(members) = t {
        return members.iter().find_map(encoding);
    }
    // A record is named by its own name, where conversion leaves no
    // connect.name on it.
    let record_name = (t["type"] == "record").then(|| {
        let name = t["name"].as_str().unwrap_or_default();
        match t["namespace"].as_str() {
            Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
            _ => name.to_owned(),
        }
    });
    let name = t["connect.name"]
        .as_str()
        .map(str::to_owned)
        .or(record_name)?;
    match name.as_str() {
        "org.apache.kafka.connect.data.Decimal" => {
            let scale = t["connect.parameters"]["scale"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| t["scale"].as_u64().and_then(|s| u32::try_from(s).ok()))?;
            Some(Encoding::Decimal { scale })
        }
        "io.debezium.data.VariableScaleDecimal" => Some(Encoding::VariableScaleDecimal),
        "io.debezium.time.Timestamp" => Some(Encoding::MillisTimestamp),
        "io.debezium.time.Time" => Some(Encoding::MillisTime),
        _ => None,
    }
}

/// The decimal text of base64 two's-complement big-endian unscaled bytes,
/// with `scale` digits after the point.
fn decimal_text(b64: &str, scale: u32) -> Option<String> {
    use base64::Engine as _;
    let mut bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    if negative {
        // The magnitude: invert and add one.
        for b in &mut bytes {
            *b = !*b;
        }
        for b in bytes.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = decimal_digits(&bytes);
    let scale = usize::try_from(scale).ok()?;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(whole).ok()?);
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(fraction).ok()?);
    }
    Some(text)
}

/// The decimal digits of a big-endian unsigned number, least significant
/// first: by repeated division of 64-bit limbs by 10^19, nineteen digits a
/// pass.
fn decimal_digits(bytes: &[u8]) -> Vec<u8> {
    const CHUNK: u64 = 10_000_000_000_000_000_000;
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let bytes = &bytes[skip..];
    let pad = (8 - bytes.len() % 8) % 8;
    let mut limbs: Vec<u64> = std::iter::repeat_n(0u8, pad)
        .chain(bytes.iter().copied())
        .collect::<Vec<u8>>()
        .chunks_exact(8)
        .map(|c| c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        .collect();
    let mut digits = Vec::with_capacity(bytes.len() * 5 / 2 + 19);
    let mut start = 0;
    while start < limbs.len() {
        let mut rest = 0u128;
        for limb in &mut limbs[start..] {
            let current = (rest << 64) | u128::from(*limb);
            // Below 10^19 × 2^64, so the quotient fits 64 bits.
            *limb = (current / u128::from(CHUNK)) as u64;
            rest = current % u128::from(CHUNK);
        }
        while start < limbs.len() && limbs[start] == 0 {
            start += 1;
        }
        let mut chunk = rest as u64;
        for _ in 0..19 {
            digits.push(b'0' + (chunk % 10) as u8);
            chunk /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits
}

/// The encodings of the schemas seen: records of one schema version share
/// its definition (one `Arc`), so each is read once, however a sink's
/// topics interleave.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    seen: Vec<(Arc<str>, Arc<Encodings>)>,
}

/// Definitions a cache keeps, at most; the oldest goes first.
const CACHED: usize = 32;

impl Cache {
    /// The encodings of `definition`.
    pub(crate) fn of(&mut self, definition: &Arc<str>) -> Arc<Encodings> {
        if let Some((_, encodings)) = self.seen.iter().find(|(d, _)| Arc::ptr_eq(d, definition)) {
            return Arc::clone(encodings);
        }
        let encodings = Arc::new(Encodings::of(definition));
        if self.seen.len() == CACHED {
            self.seen.remove(0);
        }
        self.seen
            .push((Arc::clone(definition), Arc::clone(&encodings)));
        encodings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_decode_from_twos_complement_bytes() {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(
            decimal_text(&b64(&[0x04, 0xe2]), 2).as_deref(),
            Some("12.50")
        );
        assert_eq!(
            decimal_text(&b64(&[0xfb, 0x1e]), 2).as_deref(),
            Some("-12.50")
        );
        assert_eq!(decimal_text(&b64(&[0x00]), 2).as_deref(), Some("0.00"));
        assert_eq!(decimal_text(&b64(&[0x05]), 3).as_deref(), Some("0.005"));
        assert_eq!(decimal_text(&b64(&[0xff]), 0).as_deref(), Some("-1"));
        assert_eq!(decimal_text(&b64(&[0x80]), 1).as_deref(), Some("-12.8"));
        // 2^64 + 1, past any machine integer.
        let big = [0x01, 0, 0, 0, 0, 0, 0, 0, 0x01];
        assert_eq!(
            decimal_text(&b64(&big), 4).as_deref(),
            Some("1844674407370955.1617")
        );
        assert_eq!(decimal_text("not base64!", 2), None);
    }

    #[test]
    fn the_fast_conversion_equals_digit_by_digit_division() {
        // Digit-by-digit long division, slow and plain, as the reference.
        fn reference(mut bytes: Vec<u8>) -> Vec<u8> {
            let mut digits = Vec::new();
            while bytes.iter().any(|b| *b != 0) {
                let mut rest = 0u32;
                for b in &mut bytes {
                    let current = (rest << 8) | u32::from(*b);
                    *b = (current / 10) as u8;
                    rest = current % 10;
                }
                digits.push(b'0' + rest as u8);
            }
            if digits.is_empty() {
                digits.push(b'0');
            }
            digits
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 7, 8, 9, 16, 17, 31, 64, 200] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(
                decimal_digits(&bytes),
                reference(bytes.clone()),
                "{bytes:?}"
            );
        }
        assert_eq!(decimal_digits(&[0, 0, 1]), b"1");
        assert_eq!(decimal_digits(&[0xff; 8]), b"51615590737044764481");
    }

    #[test]
    fn decimals_past_postgres_limits_are_refused_by_column() {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let encodings = Encodings::of(&envelope_schema());
        let row = |ratio: Value| {
            json!({"ratio": ratio})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        // GIVEN a variable-scale decimal whose scale is the largest u32
        let mut huge_scale = row(json!({"scale": u64::from(u32::MAX), "value": b64(&[1])}));
        // THEN it is refused, naming the column and the limit, at once
        let err = encodings.decode(&mut huge_scale).unwrap_err();
        assert!(
            err.contains("column `ratio`") && err.contains("16383"),
            "{err}"
        );
        let mut past_u32 = row(json!({"scale": 1u64 << 40, "value": b64(&[1])}));
        assert!(encodings.decode(&mut past_u32).is_err());
        // AND the limits themselves are taken
        let mut at_limit = row(json!({"scale": MAX_SCALE, "value": b64(&[1])}));
        encodings
            .decode(&mut at_limit)
            .expect("scale 16383 decodes");
        assert_eq!(at_limit["ratio"].as_str().map(str::len), Some(16_385));
        // AND an unscaled value longer than sluice converts is refused
        let long = vec![0x7f; MAX_UNSCALED_BYTES + 1];
        let mut too_long = row(json!({"scale": 0, "value": b64(&long)}));
        let err = encodings.decode(&mut too_long).unwrap_err();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        // AND the longest one is taken, with its digits
        let mut longest = vec![0xff; MAX_UNSCALED_BYTES];
        longest[0] = 0x7f;
        let text = decimal(&b64(&longest), 0).expect("the longest decodes");
        assert_eq!(text.len(), MAX_DIGITS);
        assert_eq!(decimal(&b64(&longest), MAX_SCALE).map(|_| ()), Ok(()));
    }

    fn envelope_schema() -> String {
        let decimal = json!({"type": "bytes", "scale": 2, "precision": 10, "connect.version": 1,
            "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"},
            "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"});
        let value = json!({"type": "record", "name": "Value", "namespace": "app.public.orders",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "price", "type": decimal},
            {"name": "discount", "type": ["null", decimal], "default": null},
            {"name": "ratio", "type": ["null", {"type": "record", "name": "VariableScaleDecimal",
                "namespace": "io.debezium.data", "fields": [{"name": "scale", "type": "int"},
                {"name": "value", "type": "bytes"}]}]},
            {"name": "placed", "type": {"type": "long", "connect.version": 1,
                "connect.name": "io.debezium.time.Timestamp"}},
            {"name": "at", "type": ["null", {"type": "int", "connect.name": "io.debezium.time.Time"}]},
            {"name": "updated", "type": {"type": "long", "connect.name": "io.debezium.time.MicroTimestamp"}},
        ]});
        json!({"type": "record", "name": "Envelope", "namespace": "app.public.orders", "fields": [
            {"name": "before", "type": ["null", value], "default": null},
            {"name": "after", "type": ["null", "Value"], "default": null},
            {"name": "op", "type": "string"},
        ]})
        .to_string()
    }

    #[test]
    fn a_debezium_envelope_schema_marks_its_encoded_columns() {
        let encodings = Encodings::of(&envelope_schema());
        let mut row = json!({"id": 1, "price": "BOI=", "discount": null,
            "ratio": {"scale": 3, "value": "MDk="}, "placed": 1_700_000_000_123_i64,
            "at": 3_600_000, "updated": 1_700_000_000_123_456_i64})
        .as_object()
        .cloned()
        .unwrap_or_default();
        encodings.decode(&mut row).expect("decodes");
        assert_eq!(
            Value::Object(row),
            json!({"id": 1, "price": "12.50", "discount": null, "ratio": "12.345",
                "placed": 1_700_000_000_123_000_i64, "at": 3_600_000_000_i64,
                "updated": 1_700_000_000_123_456_i64})
        );
        let mut bad = json!({"price": 12.5})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            encodings.decode(&mut bad),
            Err("column `price` is not the base64 decimal its schema says".into())
        );
    }

    #[test]
    fn each_definition_is_read_once_however_topics_interleave() {
        let mut cache = Cache::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from(envelope_schema()), Arc::from("\"string\""));
        let first = cache.of(&a);
        assert!(cache.of(&b).is_empty());
        assert!(Arc::ptr_eq(&first, &cache.of(&a)), "read again");
        assert!(!first.is_empty());
    }

    #[test]
    fn schemas_that_mark_nothing_decode_nothing() {
        // sluice's own source: numerics as strings, times in microseconds.
        let own = json!({"type": "record", "name": "Envelope", "fields": [
            {"name": "after", "type": ["null", {"type": "record", "name": "Value", "fields": [
                {"name": "total", "type": "string"},
                {"name": "at", "type": {"type": "long", "connect.name": "io.debezium.time.MicroTimestamp"}}]}]}]});
        assert!(Encodings::of(&own.to_string()).is_empty());
        assert!(Encodings::of("not json").is_empty());
        assert!(Encodings::of("\"string\"").is_empty());
    }
}

//! Column values: Postgres text format in, JSON out, the way Debezium's JSON
//! converter writes them.
//!
//! Sessions that produce the text pin `DateStyle=ISO`, `TimeZone=UTC`,
//! `IntervalStyle=iso_8601`, `bytea_output=hex` and `extra_float_digits=3`
//! ([`SESSION_OPTIONS`]), so that the formats parsed here are the only ones.
//!
//! | Postgres | JSON |
//! |---|---|
//! | bool | `true` / `false` |
//! | int2, int4, int8, oid | number |
//! | float4, float8 | number; `NaN` and infinities as strings |
//! | numeric, money | string, exact (`"12.50"`) |
//! | text, varchar, char, name, uuid, enums, and every type not listed | string |
//! | bytea | base64 string |
//! | date | days since 1970-01-01 (io.debezium.time.Date) |
//! | time | microseconds since midnight (MicroTime) |
//! | timetz | `"HH:MM:SS.ffffffZ"` in UTC (ZonedTime) |
//! | timestamp | microseconds since the epoch (MicroTimestamp) |
//! | timestamptz | `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` (ZonedTimestamp) |
//! | interval | microseconds, a month counted as 30.4375 days (MicroDuration) |
//! | json, jsonb | the JSON text, as a string (io.debezium.data.Json) |
//! | arrays | JSON arrays of the element conversion |
//!
//! `infinity` and `-infinity` dates and timestamps are strings.

use std::collections::HashMap;

use serde_json::Value;

use crate::time::{days_from_civil, format_time, format_utc};

/// Session settings for every connection whose text output is parsed here,
/// in the form of the startup `options` parameter.
pub(crate) const SESSION_OPTIONS: &str = "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c bytea_output=hex -c extra_float_digits=3";

/// How a type's text is converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Float,
    /// numeric and money: exact, as a string.
    Decimal,
    Text,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Json,
    Array(Box<Kind>),
}

/// The conversion of each builtin type by OID.
fn builtin(oid: u32) -> Option<Kind> {
    Some(match oid {
        16 => Kind::Bool,
        20 | 21 | 23 | 26 => Kind::Int,
        700 | 701 => Kind::Float,
        1700 | 790 => Kind::Decimal,
        17 => Kind::Bytea,
        1082 => Kind::Date,
        1083 => Kind::Time,
        1266 => Kind::TimeTz,
        1114 => Kind::Timestamp,
        1184 => Kind::TimestampTz,
        1186 => Kind::Interval,
        114 | 3802 => Kind::Json,
        18 | 19 | 25 | 1042 | 1043 | 2950 => Kind::Text,
        _ => return None,
    })
}

/// One row of `pg_type`, as far as conversion cares.
#[derive(Debug, Clone)]
pub(crate) struct CatalogType {
    pub(crate) oid: u32,
    /// The element type of an array type, else 0.
    pub(crate) element: u32,
    /// The base type of a domain, else 0.
    pub(crate) base: u32,
}

/// Type OIDs to conversions: builtins, plus arrays and domains read from the catalog.
#[derive(Debug, Default, Clone)]
pub(crate) struct Types {
    catalog: HashMap<u32, CatalogType>,
}

impl Types {
    /// A registry over the given catalog rows.
    pub(crate) fn new(rows: impl IntoIterator<Item = CatalogType>) -> Self {
        Self {
            catalog: rows.into_iter().map(|t| (t.oid, t)).collect(),
        }
    }

    /// The conversion for a type OID; unknown types are text.
    pub(crate) fn kind(&self, oid: u32) -> Kind {
        self.kind_at_depth(oid, 0)
    }

    fn kind_at_depth(&self, oid: u32, depth: u8) -> Kind {
        if let Some(k) = builtin(oid) {
            return k;
        }
        match self.catalog.get(&oid) {
            Some(t) if depth < 8 && t.element != 0 => {
                Kind::Array(Box::new(self.kind_at_depth(t.element, depth + 1)))
            }
            Some(t) if depth < 8 && t.base != 0 => self.kind_at_depth(t.base, depth + 1),
            _ => Kind::Text,
        }
    }
}

/// Convert one value from its text format. A value that does not parse as
/// its type is kept as a string rather than lost.
pub(crate) fn convert(kind: &Kind, text: &str) -> Value {
    let parsed = match kind {
        Kind::Bool => match text {
            "t" | "true" => Some(Value::Bool(true)),
            "f" | "false" => Some(Value::Bool(false)),
            _ => None,
        },
        Kind::Int => text.parse::<i64>().ok().map(Value::from),
        Kind::Float => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Kind::Decimal | Kind::Text => None,
        Kind::Bytea => text
            .strip_prefix("\\x")
            .and_then(hex_to_base64)
            .map(Value::String),
        Kind::Date => date_days(text).map(Value::from),
        Kind::Time => time_micros(text).map(Value::from),
        Kind::TimeTz => time_tz(text).map(Value::String),
        Kind::Timestamp => timestamp_micros(text).map(Value::from),
        Kind::TimestampTz => timestamp_tz(text).map(Value::String),
        Kind::Interval => interval_micros(text).map(Value::from),
        Kind::Json => Some(Value::String(text.to_owned())),
        Kind::Array(element) => parse_array(text).map(|items| array_value(element, &items)),
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

fn array_value(element: &Kind, items: &[ArrayItem]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|item| match item {
                ArrayItem::Null => Value::Null,
                ArrayItem::Value(s) => convert(element, s),
                ArrayItem::Nested(inner) => array_value(element, inner),
            })
            .collect(),
    )
}

fn hex_to_base64(hex: &str) -> Option<String> {
    use base64::Engine;
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some(base64::engine::general_purpose::STANDARD.encode(bytes?))
}

/// `YYYY-MM-DD`, optionally followed by ` BC`, as days since the epoch.
fn date_days(text: &str) -> Option<i64> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    Some(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight.
fn time_micros(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let seconds = parts.next()?;
    let (s, frac) = seconds.split_once('.').unwrap_or((seconds, ""));
    let s: i64 = s.parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + fraction_micros(frac)?)
}

fn fraction_micros(frac: &str) -> Option<i64> {
    if frac.is_empty() {
        return Some(0);
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{frac:0<6}");
    padded.parse().ok()
}

/// Split `HH:MM:SS.fff+hh[:mm]` into the time and its offset in seconds.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.rfind(['+', '-'])?;
    let (time, offset) = text.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut parts = offset[1..].split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    let s: i64 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
    Some((time, sign * (h * 3600 + m * 60 + s)))
}

/// `HH:MM:SS[.ffffff]+hh` as UTC `HH:MM:SS[.ffffff]Z`.
fn time_tz(text: &str) -> Option<String> {
    let (time, offset) = split_offset(text)?;
    let local = time_micros(time)?;
    Some(format!("{}Z", format_time(local - offset * 1_000_000)))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` as microseconds since the epoch.
fn timestamp_micros(text: &str) -> Option<i64> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, " BC"),
        None => (text, ""),
    };
    let (date, time) = text.split_once(' ')?;
    let days = date_days(&format!("{date}{bc}"))?;
    Some(days * 86_400_000_000 + time_micros(time)?)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+hh[:mm]` as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
fn timestamp_tz(text: &str) -> Option<String> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, " BC"),
        None => (text, ""),
    };
    let (date, rest) = text.split_once(' ')?;
    let (time, offset) = split_offset(rest)?;
    let local = date_days(&format!("{date}{bc}"))? * 86_400_000_000 + time_micros(time)?;
    Some(format_utc(local - offset * 1_000_000))
}

/// Days in an average month, as Debezium's MicroDuration counts them.
const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

/// An ISO 8601 interval (`P1Y2M3DT4H5M6.5S`, components may be negative) as microseconds.
fn interval_micros(text: &str) -> Option<i64> {
    let body = text.strip_prefix('P')?;
    let (date_part, time_part) = match body.split_once('T') {
        Some((d, t)) => (d, t),
        None => (body, ""),
    };
    let mut micros = 0f64;
    let mut scan = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '-' || c == '.' {
                number.push(c);
                continue;
            }
            let scale = units.iter().find(|(u, _)| *u == c)?.1;
            micros += number.parse::<f64>().ok()? * scale;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    const DAY: f64 = 86_400_000_000.0;
    scan(
        date_part,
        &[
            ('Y', 12.0 * DAYS_PER_MONTH * DAY),
            ('M', DAYS_PER_MONTH * DAY),
            ('W', 7.0 * DAY),
            ('D', DAY),
        ],
    )?;
    scan(
        time_part,
        &[
            ('H', 3_600_000_000.0),
            ('M', 60_000_000.0),
            ('S', 1_000_000.0),
        ],
    )?;
    Some(micros.round() as i64)
}

/// One element of a Postgres array literal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ArrayItem {
    Null,
    Value(String),
    Nested(Vec<ArrayItem>),
}

/// Parse `{a,"b c",NULL,{d}}` (optionally after `[1:3]=`).
fn parse_array(text: &str) -> Option<Vec<ArrayItem>> {
    let text = match text.find("={") {
        Some(at) if text.starts_with('[') => &text[at + 1..],
        _ => text,
    };
    let mut chars = text.chars().peekable();
    let items = parse_array_level(&mut chars)?;
    chars.next().is_none().then_some(items)
}

fn parse_array_level(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Option<Vec<ArrayItem>> {
    if chars.next()? != '{' {
        return None;
    }
    let mut items = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return Some(items);
    }
    loop {
        let item = match chars.peek()? {
            '{' => ArrayItem::Nested(parse_array_level(chars)?),
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '\\' => s.push(chars.next()?),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                ArrayItem::Value(s)
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                if s == "NULL" {
                    ArrayItem::Null
                } else {
                    ArrayItem::Value(s)
                }
            }
        };
        items.push(item);
        match chars.next()? {
            ',' => continue,
            '}' => return Some(items),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_convert_like_debezium() {
        assert_eq!(convert(&Kind::Bool, "t"), json!(true));
        assert_eq!(convert(&Kind::Int, "-9223372036854775808"), json!(i64::MIN));
        assert_eq!(convert(&Kind::Float, "1.5"), json!(1.5));
        assert_eq!(convert(&Kind::Float, "NaN"), json!("NaN"));
        assert_eq!(
            convert(&Kind::Decimal, "12345678901234567890.0100"),
            json!("12345678901234567890.0100")
        );
        assert_eq!(convert(&Kind::Bytea, "\\x00ff10"), json!("AP8Q"));
        assert_eq!(
            convert(&Kind::Json, "{\"a\": [1, null]}"),
            json!("{\"a\": [1, null]}")
        );
        assert_eq!(convert(&Kind::Text, "héllo"), json!("héllo"));
    }

    #[test]
    fn dates_and_times_convert_to_epoch_units() {
        assert_eq!(convert(&Kind::Date, "1970-01-01"), json!(0));
        assert_eq!(convert(&Kind::Date, "2024-02-29"), json!(19782));
        assert_eq!(convert(&Kind::Date, "1969-12-31"), json!(-1));
        assert_eq!(
            convert(&Kind::Date, "0001-01-01 BC"),
            json!(days_from_civil(0, 1, 1))
        );
        assert_eq!(convert(&Kind::Date, "infinity"), json!("infinity"));
        assert_eq!(convert(&Kind::Time, "13:45:30.5"), json!(49_530_500_000i64));
        assert_eq!(convert(&Kind::Time, "00:00:01"), json!(1_000_000));
        assert_eq!(convert(&Kind::TimeTz, "13:45:30+02"), json!("11:45:30Z"));
        assert_eq!(
            convert(&Kind::Timestamp, "2024-01-15 13:45:30.123456"),
            json!(1_705_326_330_123_456i64)
        );
        assert_eq!(
            convert(&Kind::TimestampTz, "2024-01-15 13:45:30.123456+00"),
            json!("2024-01-15T13:45:30.123456Z")
        );
        assert_eq!(
            convert(&Kind::TimestampTz, "2024-01-15 01:00:00-05:30"),
            json!("2024-01-15T06:30:00Z")
        );
        assert_eq!(convert(&Kind::Interval, "P1DT2H"), json!(93_600_000_000i64));
        assert_eq!(convert(&Kind::Interval, "PT-0.5S"), json!(-500_000));
        assert_eq!(convert(&Kind::Interval, "P1M"), json!(2_629_800_000_000i64));
    }

    #[test]
    fn arrays_convert_each_element() {
        let ints = Kind::Array(Box::new(Kind::Int));
        assert_eq!(convert(&ints, "{1,2,NULL}"), json!([1, 2, null]));
        assert_eq!(convert(&ints, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
        assert_eq!(convert(&ints, "{}"), json!([]));
        assert_eq!(convert(&ints, "[0:1]={5,6}"), json!([5, 6]));
        let texts = Kind::Array(Box::new(Kind::Text));
        assert_eq!(
            convert(&texts, r#"{a,"b c","q\"x",NULL,"NULL"}"#),
            json!(["a", "b c", "q\"x", null, "NULL"])
        );
        assert_eq!(convert(&texts, "{unterminated"), json!("{unterminated"));
    }

    #[test]
    fn catalog_types_resolve_arrays_and_domains() {
        let types = Types::new([
            CatalogType {
                oid: 90001,
                element: 0,
                base: 23,
            },
            CatalogType {
                oid: 90002,
                element: 90001,
                base: 0,
            },
            CatalogType {
                oid: 90003,
                element: 0,
                base: 0,
            },
        ]);
        assert_eq!(types.kind(90001), Kind::Int);
        assert_eq!(types.kind(90002), Kind::Array(Box::new(Kind::Int)));
        assert_eq!(types.kind(90003), Kind::Text);
        assert_eq!(types.kind(1184), Kind::TimestampTz);
    }

    #[test]
    fn civil_dates_round_trip() {
        use crate::time::civil_from_days;
        for days in [-719_468, -1, 0, 1, 19782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    }
}

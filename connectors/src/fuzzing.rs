//! The decoders of untrusted bytes, each as one call, for the property and
//! fuzz tests (`tests/fuzz_decoders.rs`). Not part of sluice's interface:
//! what each returns is only what a test needs to see that it ran.

use serde_json::Value;

use crate::db_sink::sql::Dialect;

/// The replication stream's pgoutput message decoder.
pub fn pgoutput(bytes: &[u8]) -> bool {
    crate::postgres_cdc::pgoutput::decode(bytes).is_ok()
}

/// The sink's readers of a record's value: as a change event and as a row.
pub fn record_value(bytes: &[u8]) -> (bool, bool) {
    (
        crate::debezium::parse_envelope(bytes).is_ok(),
        crate::debezium::parse_row(bytes).is_ok(),
    )
}

/// The HTTP source's reader of a request body: every record made, with
/// `key_field` as the key; the number of records, or `None` when refused.
pub fn http_body(content_type: &str, bytes: &[u8], key_field: &str) -> Option<usize> {
    let body = crate::http_source::request::parse(
        Some(content_type),
        bytes::Bytes::copy_from_slice(bytes),
    )
    .ok()?;
    let _ = body.only_field(key_field);
    for i in 0..body.len() {
        let _ = body.item(i, Some(key_field));
    }
    Some(body.len())
}

/// Decoding a row (`row`, JSON text) by a registered schema definition
/// (`schema`, Avro JSON text): Debezium's decimals and millisecond times.
pub fn registered_schema(schema: &str, row: &[u8]) -> bool {
    let encodings = crate::db_sink::encodings::Encodings::of(schema);
    match serde_json::from_slice::<serde_json::Map<String, Value>>(row) {
        Ok(mut row) => encodings.decode(&mut row).is_ok(),
        Err(_) => false,
    }
}

/// The text a value (JSON text) is written as in a Postgres column of
/// `type_name`: dates, times and timestamps from their numbers, bytes from
/// base64, arrays.
pub fn column_text(type_name: &str, value: &[u8]) -> Option<String> {
    let target = crate::db_sink::values::Target::of(Dialect::Postgres, type_name);
    let value: Value = serde_json::from_slice(value).ok()?;
    crate::db_sink::values::text(&target, &value).map(std::borrow::Cow::into_owned)
}

/// The HTTP sink's reading of a receiver's `Retry-After`.
pub fn retry_after(value: &str) -> Option<std::time::Duration> {
    crate::http_sink::policy::parse_retry_after(value, std::time::SystemTime::now())
}

/// The HTTP source's check of a signature header over a request.
pub fn signature(header: &str, path: &str, body: &[u8]) -> bool {
    let signed = crate::signature::Signed {
        method: "POST",
        path,
        content_type: "application/json",
        idempotency_key: "",
        body,
    };
    crate::signature::verify(b"0123456789abcdef", header, &signed, true).is_some()
}

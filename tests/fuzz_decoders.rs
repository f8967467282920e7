//! Property tests of every decoder of untrusted bytes, with adversarial
//! generators: pgoutput messages, a record's value read as a change event
//! and as a row, the HTTP source's request bodies, values decoded by a
//! registered schema (decimals, millisecond times), the text a value takes
//! in a date, time, timestamp, bytes or array column, a receiver's
//! `Retry-After`, a request signature, and the runtime's batch-of-one
//! unpacking, base64 keys and schema answers.
//!
//! For each input: no panic, and no more allocated at once than
//! [`MULTIPLE`] times the input's size plus [`SLACK`]; an allocation past
//! that fails, which aborts the run, and `target/fuzz-last-input` holds the
//! input. Each decoder runs [`CASES`] cases from a fixed seed in the test
//! suite; `SLUICE_FUZZ_CASES=100000 SLUICE_FUZZ_SEED=random` runs longer,
//! from a random seed (`scripts/fuzz`).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// What a decoder may allocate at once, as a multiple of its input's size.
const MULTIPLE: usize = 64;
/// What it may allocate at once whatever its input's size.
const SLACK: usize = 256 * 1024;
/// Cases per decoder in the test suite.
const CASES: u32 = 400;

/// Run `decode` on an input of `size` bytes under the allocation bound.
fn bounded<T>(input: &[u8], decode: impl FnOnce() -> T) -> T {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fuzz-last-input");
    let _ = std::fs::write(path, input);
    let now = ALLOCATOR.allocated();
    let _ = ALLOCATOR.set_limit(now + MULTIPLE * input.len() + SLACK);
    let out = decode();
    let _ = ALLOCATOR.set_limit(usize::MAX);
    out
}

fn runner() -> TestRunner {
    let cases = std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var("SLUICE_FUZZ_SEED").as_deref() == Ok("random") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}

/// Run one property over `strategy`, reporting the smallest failing input.
fn check<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value)) -> bool
where
    S::Value: std::fmt::Debug + Clone,
{
    let mut runner = runner();
    let result = runner.run(&strategy, |input| {
        property(input);
        Ok(())
    });
    match result {
        Ok(()) => {
            println!("ok    {name}");
            true
        }
        Err(e) => {
            println!("FAIL  {name}: {e}");
            false
        }
    }
}

/// Bytes, often built from the pieces a decoder looks for.
fn adversarial_bytes(pieces: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => proptest::sample::select(pieces).prop_map(<[u8]>::to_vec),
        2 => proptest::collection::vec(any::<u8>(), 0..8),
        1 => any::<u32>().prop_map(|n| n.to_be_bytes().to_vec()),
        1 => Just(vec![0xff, 0xff, 0xff, 0xff]),
        1 => Just(vec![0x7f, 0xff, 0xff, 0xff]),
        1 => Just(vec![0xff, 0xff]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|parts| parts.concat())
}

/// JSON-like text: mostly valid, nested, with the fields and values
/// decoders look at, numbers past what a double holds, and damage.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("12345678901234567890123".to_owned()),
        Just("0.1000000000000000000001".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        "[a-z\\\\\"é\u{0}-\u{1f}]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
        Just("\"AQ==\"".to_owned()),
        Just("\"/////w==\"".to_owned()),
    ];
    let keys = proptest::sample::select(vec![
        "op",
        "before",
        "after",
        "source",
        "table",
        "id",
        "scale",
        "value",
        "ratio",
        "price",
        "placed",
        "type",
        "name",
        "fields",
        "connect.name",
        "data",
        "version",
    ]);
    let json = leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                let fields: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    (json, any::<prop::sample::Index>(), 0..4u8).prop_map(|(text, at, damage)| {
        let cut = at.index(text.len() + 1);
        match damage {
            // Cut short, possibly inside a character.
            0 => String::from_utf8_lossy(&text.as_bytes()[..cut]).into_owned(),
            1 => format!("{}{}", "[".repeat(200), text),
            _ => text,
        }
    })
}

fn main() {
    // A panic's report allocates (a backtrace, above all): lift the bound
    // before it is made.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = ALLOCATOR.set_limit(usize::MAX);
        report(info);
    }));
    let mut ok = true;

    ok &= check(
        "pgoutput messages",
        adversarial_bytes(&[
            b"B",
            b"C",
            b"R",
            b"Y",
            b"I",
            b"U",
            b"D",
            b"T",
            b"M",
            b"O",
            b"K",
            b"N",
            b"n",
            b"u",
            b"t",
            b"b",
            b"\0",
            b"public\0",
            b"\0\0\0\x07",
        ]),
        |bytes| {
            bounded(&bytes, || sluice_connectors::fuzzing::pgoutput(&bytes));
        },
    );

    ok &= check("a record's value", json_text(), |text| {
        bounded(text.as_bytes(), || {
            sluice_connectors::fuzzing::record_value(text.as_bytes())
        });
    });

    ok &= check(
        "HTTP source bodies",
        (
            proptest::sample::select(vec![
                "application/json",
                "application/vnd.x+json; charset=utf-8",
                "text/plain",
            ]),
            json_text(),
        ),
        |(content_type, text)| {
            bounded(text.as_bytes(), || {
                sluice_connectors::fuzzing::http_body(content_type, text.as_bytes(), "id")
            });
        },
    );

    let schemas = vec![
        r#"{"type":"record","name":"V","fields":[{"name":"ratio","type":["null",{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data","fields":[]}]},{"name":"price","type":{"type":"bytes","connect.name":"org.apache.kafka.connect.data.Decimal","connect.parameters":{"scale":"4294967295"}}},{"name":"placed","type":{"type":"long","connect.name":"io.debezium.time.Timestamp"}}]}"#,
        r#"{"type":"record","name":"V","fields":[{"name":"price","type":{"type":"bytes","connect.name":"org.apache.kafka.connect.data.Decimal","scale":16383}}]}"#,
        r#"{"type":"record","name":"E","fields":[{"name":"after","type":["null",{"type":"record","name":"V","fields":[{"name":"ratio","type":{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data","fields":[]}}]}]}]}"#,
    ];
    ok &= check(
        "values decoded by a registered schema",
        (
            proptest::sample::select(schemas),
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<i64>(),
            ),
        ),
        |(schema, (scale, unscaled, millis))| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&unscaled);
            let row = format!(
                r#"{{"ratio":{{"scale":{scale},"value":"{b64}"}},"price":"{b64}","placed":{millis}}}"#
            );
            bounded(row.as_bytes(), || {
                sluice_connectors::fuzzing::registered_schema(schema, row.as_bytes())
            });
        },
    );

    ok &= check(
        "column text of dates, times, bytes and arrays",
        (
            proptest::sample::select(vec![
                "date",
                "time",
                "timestamp",
                "timestamp(3)",
                "bytea",
                "interval",
                "jsonb",
                "date[]",
                "timestamp[]",
                "text",
            ]),
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                Just(i64::MAX.to_string()),
                Just(i64::MIN.to_string()),
                Just("1e308".to_owned()),
                json_text(),
            ],
        ),
        |(type_name, value)| {
            bounded(value.as_bytes(), || {
                sluice_connectors::fuzzing::column_text(type_name, value.as_bytes())
            });
        },
    );

    ok &= check(
        "a receiver's Retry-After",
        prop_oneof![
            "[0-9]{0,30}",
            (
                "[A-Za-z]{3}",
                any::<i64>(),
                proptest::sample::select(vec!["Jan", "Feb", "Nov", "Dec"]),
                prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), 1900..2100i64],
                any::<u64>()
            )
                .prop_map(|(d, day, m, y, h)| format!("{d}, {day} {m} {y} {h}:{h}:{h} GMT")),
            ".{0,40}",
        ],
        |value| {
            bounded(value.as_bytes(), || {
                sluice_connectors::fuzzing::retry_after(&value)
            });
        },
    );

    ok &= check(
        "a request signature",
        (
            "(t=[0-9]{0,25},?|v[12]=[0-9a-fA-Fz]{0,70},?|[^,]{0,10},?){0,6}",
            ".{0,30}",
        ),
        |(header, path)| {
            bounded(header.as_bytes(), || {
                sluice_connectors::fuzzing::signature(&header, &path, b"{}")
            });
        },
    );

    ok &= check(
        "a batch of one message",
        adversarial_bytes(&[
            b"\0\0\0\x02",
            b"\0\0\0\0",
            b"\x08\x01",
            b"\x18\xff\xff\xff\xff\x0f",
            b"\x0a\x03key",
        ]),
        |bytes| {
            bounded(&bytes, || sluice_runtime::fuzzing::batch_of_one(&bytes));
        },
    );

    ok &= check("a base64 key", "[A-Za-z0-9+/=]{0,64}|.{0,32}", |key| {
        bounded(key.as_bytes(), || sluice_runtime::fuzzing::base64_key(&key));
    });

    ok &= check("a schema answer", json_text(), |text| {
        bounded(text.as_bytes(), || {
            sluice_runtime::fuzzing::schema_answer(&text)
        });
    });

    if !ok {
        std::process::exit(1);
    }
}

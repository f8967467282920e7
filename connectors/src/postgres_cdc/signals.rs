//! Signals: rows inserted into the signal table (`signal.data.collection`)
//! that ask for a snapshot of some tables while streaming, or stop one, in
//! the form Debezium's signaling table takes, so that the rows and grants
//! its users have keep working:
//!
//! ```sql
//! INSERT INTO debezium_signal (id, type, data) VALUES ('ad-hoc-1',
//!   'execute-snapshot', '{"data-collections": ["public.orders"], "type": "incremental"}');
//! INSERT INTO debezium_signal (id, type, data) VALUES ('ad-hoc-2',
//!   'stop-snapshot', '{"data-collections": ["public.orders"], "type": "incremental"}');
//! ```
//!
//! A signal arrives through the stream, in commit order with the changes
//! around it, and is acted on once: the snapshot's progress it changes is
//! kept with the position of the batch that carried it. Its row is not
//! published.

use std::collections::HashMap;

use serde_json::Value;

use super::catalog::Table;
use crate::api::SourceRecord;

/// What a signal asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Copy the tables matching these patterns (again), while streaming.
    Execute(Vec<String>),
    /// Stop copying the tables matching these patterns; all when `None`.
    Stop(Option<Vec<String>>),
    /// Write a message to the log.
    Log(String),
}

/// The signal a record of the signal table carries: `None` for a change
/// that is not an insert; an error names what is wrong with it.
pub(crate) fn parse(record: &SourceRecord) -> Result<Option<(String, Signal)>, String> {
    let envelope: Value = serde_json::from_slice(record.value.as_deref().unwrap_or_default())
        .map_err(|e| format!("the signal's change event is not JSON: {e}"))?;
    if envelope["op"] != "c" {
        return Ok(None);
    }
    let row = &envelope["after"];
    let text = |column: &str| row[column].as_str().map(str::to_owned);
    // The id is for the log only: any type, cut short.
    let id: String = match &row["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
    .chars()
    .take(ID_SHOWN)
    .collect();
    let kind = text("type").ok_or("the signal has no type")?;
    let data: Value = match text("data").filter(|d| !d.trim().is_empty()) {
        Some(d) => {
            serde_json::from_str(&d).map_err(|e| format!("the signal's data is not JSON: {e}"))?
        }
        None => Value::Null,
    };
    let collections = || -> Result<Option<Vec<String>>, String> {
        match &data["data-collections"] {
            Value::Null => Ok(None),
            Value::Array(list) => list
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        "data-collections holds a value that is not a string".to_owned()
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err("data-collections is not a list".to_owned()),
        }
    };
    let signal = match kind.as_str() {
        "execute-snapshot" => {
            match data["type"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("incremental") => {}
                Some(other) => {
                    return Err(format!(
                        "a snapshot of type {other} is not one sluice takes: it copies tables incrementally, while streaming"
                    ));
                }
            }
            if data["additional-conditions"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
                || data["additional-condition"].as_str().is_some()
            {
                return Err(
                    "additional-conditions are not taken: sluice copies whole tables".to_owned(),
                );
            }
            match collections()? {
                Some(list) if !list.is_empty() => Signal::Execute(list),
                _ => return Err("execute-snapshot names no data-collections".to_owned()),
            }
        }
        "stop-snapshot" => Signal::Stop(collections()?.filter(|l| !l.is_empty())),
        "log" => Signal::Log(data["message"].as_str().unwrap_or_default().to_owned()),
        other => return Err(format!("a signal of type {other} is not one sluice takes")),
    };
    Ok(Some((id, signal)))
}

/// How much of a signal's id the log shows.
const ID_SHOWN: usize = 64;

/// Patterns a signal may name, at most: whoever may insert into the signal
/// table writes them, and each is matched against every captured table's
/// name on the reader's task.
const MAX_PATTERNS: usize = 64;
/// The longest pattern taken, in bytes.
const MAX_PATTERN_LEN: usize = 512;
/// The largest compiled pattern taken, in bytes.
const MAX_PATTERN_SIZE: usize = 64 << 10;

/// The captured tables (`schema.table`) that `patterns` match whole, as
/// Debezium's data-collections do, in name order; an error names a
/// pattern refused (too many, too long, or not a regex).
pub(crate) fn matching(
    patterns: &[String],
    tables: &HashMap<u32, Table>,
) -> Result<Vec<String>, String> {
    if patterns.len() > MAX_PATTERNS {
        return Err(format!(
            "data-collections holds {} patterns; at most {MAX_PATTERNS} are taken",
            patterns.len()
        ));
    }
    let res = patterns
        .iter()
        .map(|p| {
            if p.len() > MAX_PATTERN_LEN {
                return Err(format!(
                    "a data-collections pattern of {} bytes is longer than the {MAX_PATTERN_LEN} taken",
                    p.len()
                ));
            }
            regex_lite::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(MAX_PATTERN_SIZE)
                .build()
                .map_err(|e| format!("the data-collections pattern {p:?} is refused: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut names: Vec<String> = tables
        .values()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .filter(|name| res.iter().any(|re| re.is_match(name)))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(op: &str, kind: &str, data: Value) -> SourceRecord {
        SourceRecord {
            value: json!({"op": op, "after": {"id": "s-1", "type": kind, "data": data}})
                .to_string()
                .into_bytes()
                .into(),
            ..SourceRecord::default()
        }
    }

    #[test]
    fn debeziums_signals_are_read() {
        let execute =
            r#"{"data-collections": ["public.orders", "inventory\\..*"], "type": "INCREMENTAL"}"#;
        assert_eq!(
            parse(&record("c", "execute-snapshot", json!(execute))),
            Ok(Some((
                "s-1".to_owned(),
                Signal::Execute(vec!["public.orders".into(), "inventory\\..*".into()])
            )))
        );
        assert_eq!(
            parse(&record(
                "c",
                "stop-snapshot",
                json!(r#"{"type": "incremental"}"#)
            )),
            Ok(Some(("s-1".to_owned(), Signal::Stop(None))))
        );
        assert_eq!(
            parse(&record("c", "log", json!(r#"{"message": "hello"}"#))),
            Ok(Some(("s-1".to_owned(), Signal::Log("hello".into()))))
        );
        // An update or delete of a signal row is not a signal.
        assert_eq!(
            parse(&record("d", "execute-snapshot", json!(execute))),
            Ok(None)
        );
    }

    #[test]
    fn what_sluice_does_not_do_is_refused_with_the_reason() {
        for (kind, data, why) in [
            (
                "execute-snapshot",
                r#"{"data-collections": ["public.t"], "type": "blocking"}"#,
                "blocking",
            ),
            (
                "execute-snapshot",
                r#"{"data-collections": ["public.t"], "additional-conditions": [{"data-collection": "public.t", "filter": "id > 1"}]}"#,
                "additional-conditions",
            ),
            ("execute-snapshot", r#"{"type": "incremental"}"#, "names no"),
            ("pause-snapshot", "", "pause-snapshot"),
            ("execute-snapshot", "{not json", "not JSON"),
        ] {
            let err = parse(&record("c", kind, json!(data))).unwrap_err();
            assert!(err.contains(why), "{kind} {data}: {err}");
        }
    }

    #[test]
    fn patterns_a_stranger_could_make_costly_are_refused() {
        let none = HashMap::new();
        let many = vec!["public\\.t".to_owned(); MAX_PATTERNS + 1];
        assert!(matching(&many, &none).unwrap_err().contains("at most"));
        let long = vec!["a".repeat(MAX_PATTERN_LEN + 1)];
        assert!(matching(&long, &none).unwrap_err().contains("longer"));
        let huge = vec!["(?:a{1000}){1000}".to_owned()];
        assert!(matching(&huge, &none).unwrap_err().contains("refused"));
        let broken = vec!["public.(".to_owned()];
        assert!(matching(&broken, &none).unwrap_err().contains("refused"));
        assert_eq!(matching(&["public\\..*".to_owned()], &none), Ok(vec![]));
    }

    #[test]
    fn an_id_of_any_type_is_read_and_cut_short() {
        let record = |id: Value| SourceRecord {
            value: json!({"op": "c", "after": {"id": id, "type": "log", "data": "{}"}})
                .to_string()
                .into_bytes()
                .into(),
            ..SourceRecord::default()
        };
        let id = |v: Value| parse(&record(v)).ok().flatten().map(|(id, _)| id);
        assert_eq!(id(json!(42)), Some("42".to_owned()));
        assert_eq!(id(json!("x".repeat(1000))).map(|i| i.len()), Some(ID_SHOWN));
    }
}

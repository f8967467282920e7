//! YAML text to raw config: variables substituted, then parsed, with the
//! place and field path of a failure.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::config::{ConfigError, ConfigErrors};

/// Substitute variables, then parse YAML into `T`, keeping the field path
/// of a failure.
pub(super) fn parse<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigErrors> {
    let text = crate::config::env::substitute(text, lookup).map_err(|missing| {
        ConfigErrors(
            missing
                .into_iter()
                .map(|m| ConfigError {
                    file: file.to_owned(),
                    line: m.line as u64,
                    column: m.column as u64,
                    path: String::new(),
                    message: match m.problem {
                        crate::config::env::Problem::Missing => format!(
                            "the environment variable {} is not set (write ${{{}:-}} for empty)",
                            m.name, m.name
                        ),
                        crate::config::env::Problem::Unsafe => format!(
                            "the value of the environment variable {} would change the file's structure here: \
                             put ${{{}}} in double quotes, or make it the whole value",
                            m.name, m.name
                        ),
                    },
                })
                .collect(),
        )
    })?;
    let mut field_path = String::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(&text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field_path = e.path().to_string();
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let location = e.location();
        let message = plain_message(&e.without_snippet().to_string());
        let path = clean_path(&field_path);
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line: location.map_or(0, |l| l.line()),
            column: location.map_or(0, |l| l.column()),
            path,
            message,
        }])
    })
}

/// The parser's message without its "error: line N column M: " prefix; an
/// unknown field's names the field likely meant, when one is near.
fn plain_message(rendered: &str) -> String {
    let message = located_message(rendered);
    let suggested = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once("`, expected one of "))
        .and_then(|(field, expected)| {
            let near = sluice_connectors::config::nearest_name(field, expected.split(", "))?;
            Some(format!("unknown field `{field}`: did you mean {near}?"))
        });
    suggested.unwrap_or(message)
}

fn located_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    let rest = match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, msg)) if pos.contains(" column ") => msg,
        _ => rest,
    };
    match rest.rsplit_once(" at line ") {
        Some((msg, pos)) if pos.contains(", column ") => msg.to_owned(),
        _ => rest.to_owned(),
    }
}

/// The field path as a user wrote it: without the `value` step that each
/// location-tracking wrapper adds, and empty for the document itself.
fn clean_path(raw: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in raw.split('.') {
        if segment.is_empty() {
            continue;
        }
        let is_key = matches!(kept.last(), Some(&("configs" | "secrets")));
        if segment == "value" && !is_key {
            continue;
        }
        kept.push(segment);
    }
    kept.join(".")
}

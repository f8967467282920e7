//! The key tables in docs/configuration.md are made from the connectors'
//! key tables: this test fails when the two disagree, and with
//! `SLUICE_WRITE_DOCS=1` it rewrites the docs to match.

use crate::config::{Key, key_table};
use crate::postgres_cdc::transforms::settings::{ROUTER_KEYS, UNWRAP_KEYS};
use crate::{SINKS, SOURCES};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
const END: &str = "<!-- /keys -->";

/// Every key table, by the name its block in the docs has, with the
/// prefix its keys are shown with.
fn tables() -> Vec<(String, &'static [Key], &'static str)> {
    let mut out = Vec::new();
    for source in SOURCES {
        out.push((
            format!("source {}", source.class_names()[0]),
            source.keys(),
            "",
        ));
    }
    for sink in SINKS {
        out.push((format!("sink {}", sink.class_names()[0]), sink.keys(), ""));
    }
    out.push((
        "transform unwrap".into(),
        UNWRAP_KEYS,
        "transforms.<alias>.",
    ));
    out.push((
        "transform router".into(),
        ROUTER_KEYS,
        "transforms.<alias>.",
    ));
    out
}

fn start(name: &str) -> String {
    format!(
        "<!-- keys: {name} (made from its key table; `SLUICE_WRITE_DOCS=1 cargo test -p sluice-connectors key_docs` rewrites it) -->"
    )
}

#[test]
fn the_docs_show_every_key_table_as_the_code_has_it() {
    let mut docs = std::fs::read_to_string(DOCS).expect("docs/configuration.md");
    let mut differ = Vec::new();
    for (name, keys, prefix) in tables() {
        let start = start(&name);
        let Some(at) = docs.find(&start) else {
            differ.push(format!("{name}: no block starts with {start}"));
            continue;
        };
        let body = at + start.len();
        let Some(len) = docs[body..].find(END) else {
            differ.push(format!("{name}: its block has no {END}"));
            continue;
        };
        let made = format!("\n{}", key_table(keys, prefix));
        if docs[body..body + len] != made {
            differ.push(format!("{name}: the table differs from the code's"));
            docs.replace_range(body..body + len, &made);
        }
    }
    let blocks = docs.matches("<!-- keys: ").count();
    assert_eq!(
        blocks,
        tables().len(),
        "a key block in the docs names no key table"
    );
    if std::env::var_os("SLUICE_WRITE_DOCS").is_some() {
        std::fs::write(DOCS, docs).expect("docs/configuration.md written");
        return;
    }
    assert!(
        differ.is_empty(),
        "docs/configuration.md and the key tables disagree:\n{}\n\
         Run SLUICE_WRITE_DOCS=1 cargo test -p sluice-connectors key_docs to rewrite the docs.",
        differ.join("\n")
    );
}

#[test]
fn every_declared_key_is_read() {
    use crate::config::{ConfigMap, ConfigValue, Kind, Role};
    for (name, keys, prefix) in tables().into_iter().filter(|t| t.2.is_empty()) {
        let configs: ConfigMap = keys
            .iter()
            .filter(|k| k.role == Role::Setting)
            .map(|k| {
                let value = match k.kind {
                    Kind::Integer => ConfigValue::Int(1),
                    Kind::Flag => ConfigValue::Bool(false),
                    Kind::Map => ConfigValue::Map(Default::default()),
                    Kind::List => ConfigValue::List(vec![]),
                    Kind::Text | Kind::Secret => ConfigValue::String("x".into()),
                };
                (format!("{prefix}{}", k.name), value)
            })
            .collect();
        let report = match name.split_once(' ') {
            Some(("source", class)) => crate::source(class).map(|e| e.configure(&configs).1),
            _ => crate::sink(&name[5..]).map(|e| e.configure(&configs).1),
        }
        .expect("a registered connector");
        let unread: Vec<_> = report
            .errors
            .iter()
            .filter(|i| i.message.contains("not a setting") || i.message.contains("not used"))
            .collect();
        assert!(
            unread.is_empty(),
            "{name}: declared keys not read: {unread:?}"
        );
    }
}

//! The transforms' keys, read as Kafka Connect reads them: `transforms`
//! lists aliases in order, `transforms.<alias>.type` names each one's
//! class, and `transforms.<alias>.<key>` configures it.

use super::Transforms;
use super::pattern::{Pattern, Replacement};
use super::route::{DEFAULT_KEY_FIELD, KeyField, Route};
use super::unwrap::{Added, DELETED_FIELD, Deletes, Unwrap};
use crate::config::{ConfigReader, Key, Kind, Unset};

const UNWRAP: &str = "io.debezium.transforms.ExtractNewRecordState";
const ROUTER: &str = "io.debezium.transforms.ByLogicalTableRouter";
/// The prefix of the names `add.fields` and `add.headers` add, unless set.
const ADDED_PREFIX: &str = "__";

/// The keys of an `ExtractNewRecordState` transform, under
/// `transforms.<alias>.`.
#[rustfmt::skip]
pub(crate) const UNWRAP_KEYS: &[Key] = &[
    Key::new("type", Kind::Text, Unset::Required, "`io.debezium.transforms.ExtractNewRecordState`"),
    Key::new("delete.handling.mode", Kind::Text, Unset::Text("drop"), "`drop`: not published. `rewrite`: its `before` row (under the default replica identity, the key columns and nulls), with `__deleted: \"true\"`; every other row gets `__deleted: \"false\"`. `none`: its key with a null value (Pulsar's `null_value` flag, as the Java client sends a null), which sinks that delete on a null value apply: sluice's `jdbc` sink and Pulsar's, with `nullValueAction: DELETE`"),
    Key::new("add.fields", Kind::List, Unset::Nothing, "fields of the event copied into the row, as optional fields of its schema: `op`, `ts_ms`, and the `source` block's (`source.ts_ms`, or just `lsn`, `table`, `txId`, `db`, `schema`, `snapshot`, ...); named with the prefix, `source.` ones as `source_<field>` (`__source_ts_ms`); `field:name` names one yourself. Transaction fields are refused: sluice's events carry no transaction block; so is a name added twice"),
    Key::new("add.fields.prefix", Kind::Text, Unset::Text(ADDED_PREFIX), "the prefix of the added fields' names"),
    Key::new("add.headers", Kind::List, Unset::Nothing, "the same fields as message properties (text; a null is left out); a name starting `sluice.` is refused, as sluice's own properties are"),
    Key::new("add.headers.prefix", Kind::Text, Unset::Text(ADDED_PREFIX), "the prefix of the added properties' names"),
    Key::new("drop.tombstones", Kind::Flag, Unset::Flag(true), "read and left alone: sluice publishes no tombstone after a delete"),
];

/// The keys of a `ByLogicalTableRouter` transform, under
/// `transforms.<alias>.`.
#[rustfmt::skip]
pub(crate) const ROUTER_KEYS: &[Key] = &[
    Key::new("type", Kind::Text, Unset::Required, "`io.debezium.transforms.ByLogicalTableRouter`"),
    Key::new("topic.regex", Kind::Text, Unset::Required, "a regex over the whole topic name (`<topic.prefix>.<schema>.<table>`)"),
    Key::new("topic.replacement", Kind::Text, Unset::Required, "the topic of a matching event, with `$1`.. for the regex's groups; a name of the source's namespace, without `/`"),
    Key::new("key.enforce.uniqueness", Kind::Flag, Unset::Flag(true), "add a field to each key that names the table, so that rows of two tables with the same key stay apart on the shared topic"),
    Key::new("key.field.name", Kind::Text, Unset::Text(DEFAULT_KEY_FIELD), "that field"),
    Key::new("key.field.regex", Kind::Text, Unset::Nothing, "with `key.field.replacement`: its value made from the table's topic (else the topic itself)"),
    Key::new("key.field.replacement", Kind::Text, Unset::Nothing, "the replacement for `key.field.regex`"),
    Key::new("logical.table.cache.size", Kind::Integer, Unset::Nothing, "read and left alone"),
];

/// Read `transforms` and every key under it.
pub(crate) fn from_configs(r: &ConfigReader<'_>) -> Transforms {
    let aliases = r.string_list("transforms").unwrap_or_default();
    let mut out = Transforms::default();
    for (i, alias) in aliases.iter().enumerate() {
        if alias.contains('.') || aliases[..i].contains(alias) {
            r.error(
                "transforms",
                format!("{alias}: an alias is listed once, and holds no dot"),
            );
            continue;
        }
        let at = |key: &str| format!("transforms.{alias}.{key}");
        let kind = r.string(&at("type"));
        let (known, made): (&[Key], _) = match kind.as_deref() {
            Some(UNWRAP) => (UNWRAP_KEYS, Made::Unwrap(unwrap(r, &at))),
            Some(ROUTER) => (ROUTER_KEYS, Made::Route(route(r, &at))),
            None => {
                r.error(&at("type"), "is required: the transform's class");
                (&[], Made::Nothing)
            }
            Some(other) => {
                r.error(
                    &at("type"),
                    format!(
                        "{other} is not a transform sluice runs (it runs {UNWRAP} and {ROUTER})"
                    ),
                );
                (&[], Made::Nothing)
            }
        };
        for (key, why) in [
            (
                "predicate",
                "predicates are not supported: the transform applies to every event",
            ),
            (
                "negate",
                "predicates are not supported: the transform applies to every event",
            ),
            (
                "route.by.field",
                "is not supported: route by topic with ByLogicalTableRouter",
            ),
        ] {
            if r.string(&at(key)).is_some() {
                r.error(&at(key), why);
            }
        }
        for key in r.keys_with_prefix(&format!("transforms.{alias}.")) {
            if !known.is_empty() && !r.was_read(&key) {
                let own = &key[format!("transforms.{alias}.").len()..];
                r.error(
                    &key,
                    crate::config::unknown_key(known, own, kind.as_deref().unwrap_or("")),
                );
            }
            r.consume(&key);
        }
        match made {
            Made::Unwrap(Some(u)) if out.unwrap.is_none() => out.unwrap = Some(u),
            Made::Route(Some(route)) if out.route.is_none() => out.route = Some(route),
            Made::Unwrap(Some(_)) | Made::Route(Some(_)) => {
                r.error(&at("type"), "is named by two transforms: list it once")
            }
            _ => {}
        }
    }
    for key in r.keys_with_prefix("transforms.") {
        let alias = key["transforms.".len()..].split('.').next().unwrap_or("");
        if !r.was_read(&key) && !aliases.iter().any(|a| a == alias) {
            r.warn(&key, format!("is ignored: {alias} is not in transforms"));
            r.consume(&key);
        }
    }
    out
}

enum Made {
    Unwrap(Option<Unwrap>),
    Route(Option<Route>),
    Nothing,
}

fn unwrap(r: &ConfigReader<'_>, at: &dyn Fn(&str) -> String) -> Option<Unwrap> {
    // sluice publishes no tombstone after a delete (tombstones.on.delete),
    // so there is none to drop or keep: the key is read, and means nothing.
    let _ = r.bool(&at("drop.tombstones"));
    let deletes = match r
        .string(&at("delete.handling.mode"))
        .map(|m| m.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("drop") => Some(Deletes::Drop),
        Some("rewrite") => Some(Deletes::Rewrite),
        Some("none") => Some(Deletes::None),
        Some(other) => {
            r.error(
                &at("delete.handling.mode"),
                format!("\"{other}\" is not one of drop, rewrite, none"),
            );
            None
        }
    };
    let mut ok = deletes.is_some();
    let mut added = |list: &str, prefix: &str| -> Vec<Added> {
        let prefix = r
            .string(&at(prefix))
            .unwrap_or_else(|| ADDED_PREFIX.to_owned());
        let mut out = Vec::new();
        for entry in r.string_list(&at(list)).unwrap_or_default() {
            match Added::parse(&entry, &prefix) {
                Ok(a) => out.push(a),
                Err(e) => {
                    r.error(&at(list), e);
                    ok = false;
                }
            }
        }
        out
    };
    let fields = added("add.fields", "add.fields.prefix");
    let headers = added("add.headers", "add.headers.prefix");
    let rewrite = deletes == Some(Deletes::Rewrite);
    let mut names: Vec<&str> = rewrite.then_some(DELETED_FIELD).into_iter().collect();
    for f in &fields {
        let problem = if !avro_name(&f.name) {
            "is not a name a schema can hold: letters, digits and _"
        } else if names.contains(&f.name.as_str()) {
            "is added twice: rename one with field:name"
        } else {
            ""
        };
        if !problem.is_empty() {
            r.error(&at("add.fields"), format!("{} {problem}", f.name));
            ok = false;
        }
        names.push(&f.name);
    }
    let mut properties: Vec<&str> = Vec::new();
    for h in &headers {
        let problem = if h.name.starts_with("sluice.") {
            "would pose as one of sluice's own properties: choose another add.headers.prefix"
        } else if properties.contains(&h.name.as_str()) {
            "is added twice: rename one with field:name"
        } else {
            ""
        };
        if !problem.is_empty() {
            r.error(&at("add.headers"), format!("{} {problem}", h.name));
            ok = false;
        }
        properties.push(&h.name);
    }
    Some(Unwrap {
        deletes: deletes?,
        fields,
        headers,
    })
    .filter(|_| ok)
}

fn route(r: &ConfigReader<'_>, at: &dyn Fn(&str) -> String) -> Option<Route> {
    let _ = r.u64(&at("logical.table.cache.size"));
    let pattern = |key: &str| {
        r.string(&at(key))
            .and_then(|text| Pattern::new(&text).map_err(|e| r.error(&at(key), e)).ok())
    };
    let replacement = |key: &str, pattern: Option<&Pattern>| {
        let text = r.string(&at(key))?;
        Replacement::new(&text, pattern?)
            .map_err(|e| r.error(&at(key), e))
            .ok()
    };
    let topic = pattern("topic.regex");
    let with = replacement("topic.replacement", topic.as_ref());
    if r.string(&at("topic.replacement"))
        .is_some_and(|t| t.contains('/'))
    {
        r.error(
            &at("topic.replacement"),
            "makes topics of the source's own namespace: a name without /",
        );
    }
    for (key, missing) in [
        ("topic.regex", topic.is_none()),
        ("topic.replacement", with.is_none()),
    ] {
        if missing && r.string(&at(key)).is_none() {
            r.error(&at(key), "is required");
        }
    }
    let key = if r.bool(&at("key.enforce.uniqueness")).unwrap_or(true) {
        let name = r
            .string(&at("key.field.name"))
            .unwrap_or_else(|| DEFAULT_KEY_FIELD.to_owned());
        if !avro_name(&name) {
            r.error(
                &at("key.field.name"),
                "is not a name a schema can hold: letters, digits and _",
            );
        }
        let regex = pattern("key.field.regex");
        let rewrite = match (&regex, replacement("key.field.replacement", regex.as_ref())) {
            (Some(p), Some(with)) => Some((p.clone(), with)),
            (None, None) => None,
            _ => {
                r.error(
                    &at("key.field.regex"),
                    "and key.field.replacement are set together",
                );
                None
            }
        };
        Some(KeyField { name, rewrite })
    } else {
        for key in ["key.field.name", "key.field.regex", "key.field.replacement"] {
            if r.string(&at(key)).is_some() {
                r.warn(&at(key), "is ignored: key.enforce.uniqueness is false");
            }
        }
        None
    };
    Some(Route {
        topic: topic?,
        replacement: with?,
        key,
    })
}

/// Letters, digits and `_`, not starting with a digit.
fn avro_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigMap, ConfigValue};

    fn read(pairs: &[(&str, &str)]) -> (Transforms, Vec<String>, Vec<String>) {
        let map: ConfigMap = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
            .collect();
        let r = ConfigReader::new(
            &map,
            crate::postgres_cdc::config::KEYS,
            "the postgres-cdc source",
        );
        let t = from_configs(&r);
        let report = r.finish();
        let show = |issues: &[crate::config::ConfigIssue]| {
            issues
                .iter()
                .map(|i| format!("{}: {}", i.key, i.message))
                .collect()
        };
        (t, show(&report.errors), show(&report.warnings))
    }

    #[test]
    fn debeziums_documented_configuration_is_read() {
        let (t, errors, warnings) = read(&[
            ("transforms", "Reroute,unwrap"),
            ("transforms.Reroute.type", ROUTER),
            ("transforms.Reroute.topic.regex", "(.*)customers_shard(.*)"),
            (
                "transforms.Reroute.topic.replacement",
                "$1customers_all_shards",
            ),
            (
                "transforms.Reroute.key.field.regex",
                "(.*)customers_shard(.*)",
            ),
            ("transforms.Reroute.key.field.replacement", "$2"),
            ("transforms.unwrap.type", UNWRAP),
            ("transforms.unwrap.drop.tombstones", "false"),
            ("transforms.unwrap.delete.handling.mode", "rewrite"),
            ("transforms.unwrap.add.fields", "table,lsn"),
        ]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(warnings, Vec::<String>::new());
        let u = t.unwrap.unwrap();
        assert_eq!(u.deletes, Deletes::Rewrite);
        assert_eq!(
            u.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["__table", "__lsn"]
        );
        let route = t.route.unwrap();
        assert_eq!(
            route.topic("a.b.customers_shard2").as_deref(),
            Some("a.b.customers_all_shards")
        );
        assert_eq!(
            route.key(r#"{"id":1}"#, "a.b.customers_shard2").unwrap(),
            r#"{"__dbz__physicalTableIdentifier":"2","id":1}"#
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (pairs, says) in [
            (vec![("transforms", "x")], "transforms.x.type: is required"),
            (
                vec![
                    ("transforms", "x"),
                    (
                        "transforms.x.type",
                        "org.apache.kafka.connect.transforms.InsertField$Value",
                    ),
                ],
                "is not a transform sluice runs",
            ),
            (
                vec![
                    ("transforms", "u"),
                    ("transforms.u.type", UNWRAP),
                    ("transforms.u.delete.handling.mode", "keep"),
                ],
                "\"keep\" is not one of drop, rewrite, none",
            ),
            (
                vec![
                    ("transforms", "u"),
                    ("transforms.u.type", UNWRAP),
                    ("transforms.u.drop.tombstone", "true"),
                ],
                "transforms.u.drop.tombstone: is not a setting of",
            ),
            (
                vec![
                    ("transforms", "u"),
                    ("transforms.u.type", UNWRAP),
                    ("transforms.u.route.by.field", "t"),
                ],
                "route.by.field: is not supported",
            ),
            (
                vec![
                    ("transforms", "u"),
                    ("transforms.u.type", UNWRAP),
                    ("transforms.u.add.fields", "op:my-op"),
                ],
                "__my-op is not a name",
            ),
            (
                vec![
                    ("transforms", "r"),
                    ("transforms.r.type", ROUTER),
                    ("transforms.r.topic.regex", "(x"),
                ],
                "topic.regex: is not a regular expression",
            ),
            (
                vec![
                    ("transforms", "r"),
                    ("transforms.r.type", ROUTER),
                    ("transforms.r.topic.regex", "x"),
                ],
                "topic.replacement: is required",
            ),
            (
                vec![
                    ("transforms", "r"),
                    ("transforms.r.type", ROUTER),
                    ("transforms.r.topic.regex", "(x)"),
                    ("transforms.r.topic.replacement", "$2"),
                ],
                "names group 2, and the regex has 1",
            ),
            (
                vec![("transforms", "u,u"), ("transforms.u.type", UNWRAP)],
                "u: an alias is listed once",
            ),
            (
                vec![
                    ("transforms", "u"),
                    ("transforms.u.type", UNWRAP),
                    ("transforms.u.delete.handling.mode", "rewrite"),
                    ("transforms.u.add.fields", "op:deleted"),
                ],
                "__deleted is added twice",
            ),
            (
                vec![
                    ("transforms", "u"),
                    ("transforms.u.type", UNWRAP),
                    ("transforms.u.add.headers", "lsn:seq"),
                    ("transforms.u.add.headers.prefix", "sluice."),
                ],
                "sluice.seq would pose as one of sluice's own properties",
            ),
            (
                vec![
                    ("transforms", "a,b"),
                    ("transforms.a.type", UNWRAP),
                    ("transforms.b.type", UNWRAP),
                ],
                "is named by two transforms",
            ),
        ] {
            let (_, errors, _) = read(&pairs);
            assert!(
                errors.iter().any(|e| e.contains(says)),
                "{pairs:?}: {errors:?}"
            );
        }
        // One mistake is one error: the keys after it are still read.
        let (_, errors, _) = read(&[
            ("transforms", "u"),
            ("transforms.u.type", UNWRAP),
            ("transforms.u.delete.handling.mode", "keep"),
            ("transforms.u.add.fields", "op"),
        ]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (_, errors, warnings) = read(&[
            ("transforms", "r"),
            ("transforms.r.type", ROUTER),
            ("transforms.r.topic.regex", "x"),
            ("transforms.r.topic.replacement", "y"),
            ("transforms.r.key.enforce.uniqueness", "false"),
            ("transforms.r.key.field.name", "shard"),
        ]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            warnings,
            ["transforms.r.key.field.name: is ignored: key.enforce.uniqueness is false"]
        );
        let (t, errors, warnings) = read(&[("transforms.old.type", UNWRAP)]);
        assert!(t.is_empty());
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            warnings,
            ["transforms.old.type: is ignored: old is not in transforms"]
        );
    }
}

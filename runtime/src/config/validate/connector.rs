//! What sources and sinks share: `configs` and `secrets` made one map for
//! the connector, its findings placed in the file, the connector named by
//! `className` or by its archive, and Pulsar IO fields that mean nothing
//! here.

use std::collections::BTreeMap;

use serde_saphyr::{Location, Spanned};
use sluice_connectors::{ConfigMap, ConfigValue, Secret, SinkEntry, SourceEntry};

use super::{Ctx, join};
use crate::config::raw::{RawConfigs, RawValue};

/// `configs` and `secrets` merged into one map. Values under `secrets`, and
/// string values under a key that names a password, token or secret, become
/// [`ConfigValue::Secret`].
pub(super) fn config_map(
    configs: Option<&RawConfigs>,
    secrets: Option<&RawConfigs>,
    prefix: &str,
    ctx: &mut Ctx,
) -> (ConfigMap, BTreeMap<String, Location>) {
    let mut map = ConfigMap::new();
    let mut places = BTreeMap::new();
    for (key, value) in configs.into_iter().flatten() {
        let sensitive = ["password", "token", "secret"]
            .iter()
            .any(|w| key.to_ascii_lowercase().contains(w));
        let v = convert(&value.value);
        let v = match v {
            ConfigValue::String(s) if sensitive => ConfigValue::Secret(Secret::new(s)),
            other => other,
        };
        map.insert(key.clone(), v);
        places.insert(key.clone(), value.referenced);
    }
    for (key, value) in secrets.into_iter().flatten() {
        let secret = match &value.value {
            RawValue::String(s) => Secret::new(s.clone()),
            RawValue::Int(i) => Secret::new(i.to_string()),
            _ => {
                ctx.error(
                    Some(&value.referenced),
                    &join(prefix, &format!("secrets.{key}")),
                    "a secret is a string",
                );
                continue;
            }
        };
        if map
            .insert(key.clone(), ConfigValue::Secret(secret))
            .is_some()
        {
            ctx.error(
                Some(&value.referenced),
                &join(prefix, &format!("secrets.{key}")),
                "is also set under configs: set it in one place",
            );
        }
        places.insert(key.clone(), value.referenced);
    }
    (map, places)
}

fn convert(value: &RawValue) -> ConfigValue {
    match value {
        RawValue::Null(()) => ConfigValue::Null,
        RawValue::Bool(b) => ConfigValue::Bool(*b),
        RawValue::Int(i) => ConfigValue::Int(*i),
        RawValue::Float(f) => ConfigValue::Float(*f),
        RawValue::String(s) => ConfigValue::String(s.clone()),
        RawValue::List(items) => ConfigValue::List(items.iter().map(convert).collect()),
        RawValue::Map(entries) => ConfigValue::Map(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), convert(v)))
                .collect(),
        ),
    }
}

/// Report a connector's own findings about its `configs`.
pub(super) fn connector_report(
    report: sluice_connectors::ConfigReport,
    places: &BTreeMap<String, Location>,
    fallback: &Location,
    prefix: &str,
    ctx: &mut Ctx,
) {
    for issue in report.errors {
        let at = places.get(&issue.key).unwrap_or(fallback);
        ctx.error(
            Some(at),
            &join(prefix, &format!("configs.{}", issue.key)),
            issue.message,
        );
    }
    for issue in report.warnings {
        let at = places.get(&issue.key).unwrap_or(fallback);
        ctx.warn(
            Some(at),
            &join(prefix, &format!("configs.{}", issue.key)),
            issue.message,
        );
    }
}

/// The connectors of one kind, sources or sinks, as the registry finds
/// them.
pub(super) struct Kinds<E: ?Sized + 'static> {
    /// `source` or `sink`, for messages.
    noun: &'static str,
    by_class: fn(&str) -> Option<&'static E>,
    by_archive: fn(&str) -> Option<&'static E>,
    names: fn() -> String,
}

/// The source connectors.
pub(super) const SOURCES: Kinds<dyn SourceEntry> = Kinds {
    noun: "source",
    by_class: sluice_connectors::source,
    by_archive: sluice_connectors::source_for_archive,
    names: sluice_connectors::source_class_names,
};

/// The sink connectors.
pub(super) const SINKS: Kinds<dyn SinkEntry> = Kinds {
    noun: "sink",
    by_class: sluice_connectors::sink,
    by_archive: sluice_connectors::sink_for_archive,
    names: sluice_connectors::sink_class_names,
};

/// How an entry names its connector: `className`, else `archive`, else the
/// built-in type field (`sinkType: jdbc-postgres`, as
/// `builtin://jdbc-postgres`), with that field's name.
pub(super) struct Naming<'a> {
    pub(super) class_name: Option<&'a Spanned<String>>,
    pub(super) archive: Option<&'a Spanned<String>>,
    pub(super) builtin_type: Option<&'a Spanned<String>>,
    pub(super) type_field: &'static str,
}

/// The connector of `kinds` that `naming` names; an error at the field
/// that names none, or at the entry when no field names one.
pub(super) fn connector<E: ?Sized>(
    kinds: &Kinds<E>,
    naming: &Naming<'_>,
    at: &Location,
    prefix: &str,
    ctx: &mut Ctx,
) -> Option<&'static E> {
    let (noun, names) = (kinds.noun, (kinds.names)());
    let (found, field, named, why) = match (naming.class_name, naming.archive, naming.builtin_type)
    {
        (Some(c), _, _) => (
            (kinds.by_class)(&c.value),
            "className",
            c,
            format!("is not a {noun} connector (one of: {names})"),
        ),
        (None, Some(a), _) => (
            (kinds.by_archive)(&a.value),
            "archive",
            a,
            format!("is not a {noun} sluice runs: set className (one of: {names})"),
        ),
        (None, None, Some(t)) => (
            (kinds.by_archive)(&format!("builtin://{}", t.value.trim())),
            naming.type_field,
            t,
            format!("is not a {noun} sluice runs: set className (one of: {names})"),
        ),
        (None, None, None) => {
            ctx.error(
                Some(at),
                &join(prefix, "className"),
                format!("is required (one of: {names})"),
            );
            return None;
        }
    };
    if found.is_none() {
        ctx.error(
            Some(&named.referenced),
            &join(prefix, field),
            format!("\"{}\" {why}", named.value),
        );
    }
    found
}

pub(super) fn warn_ignored(fields: &[(&str, bool)], at: &Location, prefix: &str, ctx: &mut Ctx) {
    for (field, present) in fields {
        if *present {
            ctx.warn(
                Some(at),
                &join(prefix, field),
                "is a Pulsar IO setting that sluice ignores",
            );
        }
    }
}

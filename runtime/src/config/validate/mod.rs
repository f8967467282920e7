//! Parsing and pure validation: text in, settings or every problem out.
//!
//! `parse` reads the YAML, `pulsar` checks the broker's settings,
//! `source` and `sink` each connector entry, with what they share in
//! `connector`.

mod connector;
mod parse;
mod pulsar;
mod sink;
mod source;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::auth::RawParams;
use super::raw::{PipelineFile, SinkEntry, SourceEntry};
use super::{
    ConfigError, ConfigErrors, ConnectorFileKind, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_SERVICE_URL,
    Loaded, LocalrunOverrides, Pipeline, PulsarAuth, PulsarSettings,
};
use parse::parse;
use pulsar::{auth_of, check_service_url, check_tls, pulsar_settings};
use sink::sink_def;
use source::source_def;

/// Collects errors and warnings with their places.
pub(super) struct Ctx {
    file: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Ctx {
    fn new(file: &Path) -> Self {
        Self {
            file: file.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn issue(&self, at: Option<&Location>, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: at.map_or(0, Location::line),
            column: at.map_or(0, Location::column),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn error(&mut self, at: Option<&Location>, path: &str, message: impl Into<String>) {
        let e = self.issue(at, path, message);
        self.errors.push(e);
    }

    pub(super) fn warn(&mut self, at: Option<&Location>, path: &str, message: impl Into<String>) {
        let w = self.issue(at, path, message);
        self.warnings.push(w);
    }

    fn finish(self, pipeline: Option<Pipeline>) -> Result<Loaded, ConfigErrors> {
        match pipeline {
            Some(pipeline) if self.errors.is_empty() => Ok(Loaded {
                pipeline,
                warnings: self.warnings,
            }),
            _ => Err(ConfigErrors(self.errors)),
        }
    }
}

pub(crate) fn pipeline_from_str(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let raw: PipelineFile = parse(file, text, lookup)?;
    let mut ctx = Ctx::new(file);
    let pulsar = pulsar_settings(raw.pulsar, &mut ctx);
    let http = raw
        .http
        .and_then(|h| match h.listen.value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                ctx.error(
                    Some(&h.listen.referenced),
                    "http.listen",
                    format!(
                        "\"{}\" is not an address:port such as 127.0.0.1:9464",
                        h.listen.value
                    ),
                );
                None
            }
        });
    let sources: Vec<_> = raw
        .sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| source_def(s, &format!("sources[{i}]"), &mut ctx))
        .collect();
    let sinks: Vec<_> = raw
        .sinks
        .iter()
        .enumerate()
        .filter_map(|(i, s)| sink_def(s, &format!("sinks[{i}]"), &mut ctx))
        .collect();
    if raw.sources.is_empty() && raw.sinks.is_empty() {
        ctx.error(None, "", "the pipeline has no sources and no sinks");
    }
    check_unique_names(&raw.sources, &raw.sinks, &mut ctx);
    ctx.finish(Some(Pipeline {
        pulsar,
        http,
        sources,
        sinks,
    }))
}

pub(crate) fn connector_file_from_str(
    file: &Path,
    text: &str,
    kind: ConnectorFileKind,
    overrides: &LocalrunOverrides,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let mut ctx = Ctx::new(file);
    let pulsar = PulsarSettings {
        service_url: overrides
            .broker_service_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVICE_URL.to_owned()),
        web_service_url: overrides.web_service_url.clone(),
        auth: overrides
            .auth_plugin
            .as_deref()
            .map_or(PulsarAuth::None, |plugin| {
                let params = overrides.auth_params.clone().map(RawParams::Text);
                auth_of(
                    plugin,
                    params.as_ref(),
                    None,
                    "--client-auth-plugin",
                    &mut ctx,
                )
            }),
        tls_trust_certs_file_path: overrides.tls_trust_cert_path.clone(),
        tls_allow_insecure_connection: overrides.tls_allow_insecure,
        tls_hostname_verification: overrides.tls_hostname_verification.unwrap_or(true),
        memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
        send_credentials_over_plain_http: false,
    };
    if overrides.auth_params.is_some() && overrides.auth_plugin.is_none() {
        ctx.error(
            None,
            "--client-auth-params",
            "is given without --client-auth-plugin",
        );
    }
    check_service_url(&pulsar.service_url, None, "--broker-service-url", &mut ctx);
    if overrides.use_tls && !pulsar.service_url.starts_with("pulsar+ssl://") {
        ctx.error(
            None,
            "--use-tls",
            "needs a pulsar+ssl:// --broker-service-url",
        );
    }
    check_tls(&pulsar, "--tls-allow-insecure", &mut ctx);
    let (sources, sinks) = match kind {
        ConnectorFileKind::Source => {
            let entry: Spanned<SourceEntry> = parse(file, text, lookup)?;
            (
                source_def(&entry, "", &mut ctx).into_iter().collect(),
                Vec::new(),
            )
        }
        ConnectorFileKind::Sink => {
            let entry: Spanned<SinkEntry> = parse(file, text, lookup)?;
            (
                Vec::new(),
                sink_def(&entry, "", &mut ctx).into_iter().collect(),
            )
        }
    };
    ctx.finish(Some(Pipeline {
        pulsar,
        http: None,
        sources,
        sinks,
    }))
}

pub(super) fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn check_unique_names(
    sources: &[Spanned<SourceEntry>],
    sinks: &[Spanned<SinkEntry>],
    ctx: &mut Ctx,
) {
    let mut seen = BTreeSet::new();
    let names = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.value
                .name
                .as_ref()
                .map(|n| (format!("sources[{i}].name"), n))
        })
        .chain(sinks.iter().enumerate().filter_map(|(i, s)| {
            s.value
                .name
                .as_ref()
                .map(|n| (format!("sinks[{i}].name"), n))
        }));
    for (path, name) in names {
        if !seen.insert(name.value.clone()) {
            ctx.error(
                Some(&name.referenced),
                &path,
                format!(
                    "the name \"{}\" is used twice: connector names are unique",
                    name.value
                ),
            );
        }
    }
}

/// Reject `name`s that cannot be part of a subscription or metric label.
pub(super) fn connector_name(
    name: Option<&Spanned<String>>,
    at: &Location,
    prefix: &str,
    ctx: &mut Ctx,
) -> Option<String> {
    let Some(name) = name else {
        ctx.error(Some(at), &join(prefix, "name"), "is required");
        return None;
    };
    let ok = !name.value.is_empty()
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        ctx.error(
            Some(&name.referenced),
            &join(prefix, "name"),
            "must be letters, digits, '-', '_' or '.'",
        );
        return None;
    }
    Some(name.value.clone())
}

/// The topic a field names, qualified; an error at the field when it is
/// not a topic name.
pub(super) fn topic_field(
    topic: Option<&Spanned<String>>,
    field: &str,
    (tenant, namespace): (&str, &str),
    prefix: &str,
    ctx: &mut Ctx,
) -> Option<String> {
    let topic = topic?;
    qualify_topic(&topic.value, tenant, namespace)
        .map_err(|msg| ctx.error(Some(&topic.referenced), &join(prefix, field), msg))
        .ok()
}

/// A topic as a full `persistent://tenant/namespace/name`.
pub(crate) fn qualify_topic(topic: &str, tenant: &str, namespace: &str) -> Result<String, String> {
    let (scheme, rest) = match topic.split_once("://") {
        Some((scheme @ ("persistent" | "non-persistent"), rest)) => (scheme, rest),
        Some((other, _)) => {
            return Err(format!(
                "\"{other}://\" is not a topic domain (persistent:// or non-persistent://)"
            ));
        }
        None => ("persistent", topic),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("\"{topic}\" is not a topic name"));
    }
    match parts.as_slice() {
        [name] => Ok(format!("{scheme}://{tenant}/{namespace}/{name}")),
        [t, n, name] => Ok(format!("{scheme}://{t}/{n}/{name}")),
        _ => Err(format!(
            "\"{topic}\" is not a topic name: write name, tenant/namespace/name or persistent://tenant/namespace/name"
        )),
    }
}

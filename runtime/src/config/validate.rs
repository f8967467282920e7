//! Parsing and pure validation: text in, settings or every problem out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};
use sluice_connectors::{ConfigMap, ConfigValue, Secret};

use super::auth::RawParams;
use super::raw::{PipelineFile, RawConfigs, RawValue, SinkEntry, SourceEntry};
use super::{
    Batching, Compression, ConfigError, ConfigErrors, ConnectorFileKind, DEFAULT_BATCH_MAX_BYTES,
    DEFAULT_BATCH_MAX_DELAY, DEFAULT_BATCH_MAX_MESSAGES, DEFAULT_MAX_PENDING_MESSAGES,
    DEFAULT_MAX_RETRIES, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_NACK_DELAY, DEFAULT_SERVICE_URL,
    Guarantee, Loaded, LocalrunOverrides, Pipeline, ProducerSettings, PulsarAuth, PulsarSettings,
    SinkDef, SourceDef, SubscriptionPosition, SubscriptionType, TokenSource,
};

/// Collects errors and warnings with their places.
struct Ctx {
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

    fn error(&mut self, at: Option<&Location>, path: &str, message: impl Into<String>) {
        let e = self.issue(at, path, message);
        self.errors.push(e);
    }

    fn warn(&mut self, at: Option<&Location>, path: &str, message: impl Into<String>) {
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

/// Substitute variables, then parse YAML into `T`, keeping the field path
/// of a failure.
fn parse<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigErrors> {
    let text = super::env::substitute(text, lookup).map_err(|missing| {
        ConfigErrors(
            missing
                .into_iter()
                .map(|m| ConfigError {
                    file: file.to_owned(),
                    line: m.line as u64,
                    column: m.column as u64,
                    path: String::new(),
                    message: match m.problem {
                        super::env::Problem::Missing => format!(
                            "the environment variable {} is not set (write ${{{}:-}} for empty)",
                            m.name, m.name
                        ),
                        super::env::Problem::Unsafe => format!(
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

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn check_service_url(url: &str, at: Option<&Location>, path: &str, ctx: &mut Ctx) {
    if !(url.starts_with("pulsar://") || url.starts_with("pulsar+ssl://")) {
        ctx.error(
            at,
            path,
            format!("\"{url}\" is not a broker URL: it starts with pulsar:// or pulsar+ssl://"),
        );
    }
}

fn pulsar_settings(section: Option<super::raw::PulsarSection>, ctx: &mut Ctx) -> PulsarSettings {
    let Some(s) = section else {
        return PulsarSettings {
            service_url: DEFAULT_SERVICE_URL.to_owned(),
            web_service_url: None,
            auth: PulsarAuth::None,
            tls_trust_certs_file_path: None,
            tls_allow_insecure_connection: false,
            tls_hostname_verification: true,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            send_credentials_over_plain_http: false,
        };
    };
    let service_url = match &s.service_url {
        Some(url) => {
            check_service_url(&url.value, Some(&url.referenced), "pulsar.serviceUrl", ctx);
            url.value.clone()
        }
        None => DEFAULT_SERVICE_URL.to_owned(),
    };
    if let Some(url) = &s.web_service_url
        && !(url.value.starts_with("http://") || url.value.starts_with("https://"))
    {
        ctx.error(
            Some(&url.referenced),
            "pulsar.webServiceUrl",
            format!("\"{}\" is not an http:// or https:// URL", url.value),
        );
    }
    let token = s.auth_token.filter(|t| !t.is_empty());
    let auth = match (&s.auth_plugin, token) {
        (Some(plugin), Some(_)) => {
            ctx.error(
                Some(&plugin.referenced),
                "pulsar.authToken",
                "is a shorthand for authPlugin AuthenticationToken: give one or the other",
            );
            PulsarAuth::None
        }
        (Some(plugin), None) => auth_of(
            &plugin.value,
            s.auth_params.as_ref(),
            Some(&plugin.referenced),
            "pulsar.authPlugin",
            ctx,
        ),
        (None, Some(token)) => PulsarAuth::Token(TokenSource::Value(Secret::new(token))),
        (None, None) => {
            if s.auth_params.is_some() {
                ctx.error(None, "pulsar.authParams", "is given without authPlugin");
            }
            PulsarAuth::None
        }
    };
    let settings = PulsarSettings {
        service_url,
        web_service_url: s.web_service_url.map(|u| u.value),
        auth,
        tls_trust_certs_file_path: s.tls_trust_certs_file_path.map(PathBuf::from),
        tls_allow_insecure_connection: s.tls_allow_insecure_connection.unwrap_or(false),
        tls_hostname_verification: s.tls_enable_hostname_verification.unwrap_or(true),
        memory_limit_bytes: s.memory_limit_bytes.unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES),
        send_credentials_over_plain_http: s.send_credentials_over_plain_http.unwrap_or(false),
    };
    check_tls(&settings, "pulsar.tlsAllowInsecureConnection", ctx);
    settings
}

/// The authentication `plugin` with `params` asks for.
fn auth_of(
    plugin: &str,
    params: Option<&RawParams>,
    at: Option<&Location>,
    path: &str,
    ctx: &mut Ctx,
) -> PulsarAuth {
    match super::auth::parse(plugin, params) {
        Ok(auth) => auth,
        Err(message) => {
            ctx.error(at, path, message);
            PulsarAuth::None
        }
    }
}

/// TLS settings that cannot work together, or that protect nothing; and
/// credentials that would cross plain HTTP.
fn check_tls(settings: &PulsarSettings, path: &str, ctx: &mut Ctx) {
    let tls = settings.service_url.starts_with("pulsar+ssl://");
    let issuer = match &settings.auth {
        PulsarAuth::OAuth2(o) => Some(o.issuer_url.as_str()),
        _ => None,
    };
    if settings.tls_allow_insecure_connection {
        // Every connection whose certificate is no longer checked.
        let mut weakened = Vec::new();
        if tls {
            weakened.push(format!("the broker ({})", settings.service_url));
        }
        if let Some(web) = &settings.web_service_url
            && web.starts_with("https://")
        {
            weakened.push(format!("the admin API ({web})"));
        } else if settings.web_service_url.is_none() && tls {
            weakened.push("the admin API (the broker's host, on 8443)".to_owned());
        }
        if let Some(issuer) = issuer.filter(|i| i.starts_with("https://")) {
            weakened.push(format!("the OAuth2 issuer ({issuer})"));
        }
        if !weakened.is_empty() {
            ctx.warn(
                None,
                path,
                format!(
                    "accepts any certificate from {}: anyone on the path can pose as them and read the credentials",
                    weakened.join(", ")
                ),
            );
        }
    }
    let bearer = matches!(settings.auth, PulsarAuth::Token(_) | PulsarAuth::OAuth2(_));
    if !settings.send_credentials_over_plain_http {
        if bearer
            && let Some(web) = settings
                .web_service_url
                .as_deref()
                .filter(|w| w.starts_with("http://"))
        {
            ctx.error(
                None,
                "pulsar.webServiceUrl",
                format!(
                    "{web} is plain HTTP, and the token would go to it readable by anyone on the path: \
                     use https://, or set pulsar.sendCredentialsOverPlainHttp: true to send it anyway"
                ),
            );
        }
        if let Some(issuer) = issuer.filter(|i| i.starts_with("http://")) {
            ctx.error(
                None,
                "pulsar.authParams",
                format!(
                    "issuerUrl {issuer} is plain HTTP, and the client secret would go to it readable by anyone on the path: \
                     use https://, or set pulsar.sendCredentialsOverPlainHttp: true to send it anyway"
                ),
            );
        }
    }
    if !tls && matches!(settings.auth, PulsarAuth::Tls { .. }) {
        ctx.error(
            None,
            "pulsar.authPlugin",
            "AuthenticationTls presents a client certificate in the TLS handshake, so pulsar.serviceUrl must be pulsar+ssl://",
        );
    } else if !tls && settings.auth != PulsarAuth::None {
        ctx.warn(
            None,
            "pulsar.serviceUrl",
            "is not pulsar+ssl://: the credentials go to the broker unencrypted",
        );
    }
    if !settings.tls_hostname_verification
        && settings.tls_trust_certs_file_path.is_none()
        && !settings.tls_allow_insecure_connection
        && tls
    {
        ctx.error(
            None,
            "pulsar.tlsEnableHostnameVerification",
            "false needs tlsTrustCertsFilePath: the client checks the certificate's chain against it, not the host name",
        );
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
fn connector_name(
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

/// `configs` and `secrets` merged into one map. Values under `secrets`, and
/// string values under a key that names a password, token or secret, become
/// [`ConfigValue::Secret`].
fn config_map(
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
fn connector_report(
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

/// What names the connector when `className` does not: `archive`, else
/// the built-in type (`sinkType: jdbc-postgres`, as `builtin://jdbc-postgres`),
/// with the field it came from.
fn builtin<'a>(
    archive: Option<&'a Spanned<String>>,
    kind: Option<&'a Spanned<String>>,
    kind_field: &'static str,
) -> Option<(&'static str, &'a Spanned<String>, String)> {
    match (archive, kind) {
        (Some(a), _) => Some(("archive", a, a.value.clone())),
        (None, Some(t)) => Some((kind_field, t, format!("builtin://{}", t.value.trim()))),
        (None, None) => None,
    }
}

fn warn_ignored(fields: &[(&str, bool)], at: &Location, prefix: &str, ctx: &mut Ctx) {
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

fn source_def(entry: &Spanned<SourceEntry>, prefix: &str, ctx: &mut Ctx) -> Option<SourceDef> {
    let at = &entry.referenced;
    let s = &entry.value;
    warn_ignored(
        &[
            ("resources", s.resources.is_some()),
            ("archive", s.archive.is_some() && s.class_name.is_some()),
            ("runtimeFlags", s.runtime_flags.is_some()),
            ("customRuntimeOptions", s.custom_runtime_options.is_some()),
            ("serdeClassName", s.serde_class_name.is_some()),
        ],
        at,
        prefix,
        ctx,
    );
    let publish_schema = match &s.schema_type {
        None => true,
        Some(t) if t.value.trim().eq_ignore_ascii_case("bytes") => false,
        Some(t) => {
            ctx.error(
                Some(&t.referenced),
                &join(prefix, "schemaType"),
                format!(
                    "\"{}\" is not supported: a source publishes its connector's own schema (KEY_VALUE of JSON for change events), or plain bytes with BYTES",
                    t.value
                ),
            );
            true
        }
    };
    let name = connector_name(s.name.as_ref(), at, prefix, ctx);
    let tenant = s.tenant.clone().unwrap_or_else(|| "public".to_owned());
    let namespace = s.namespace.clone().unwrap_or_else(|| "default".to_owned());
    if let Some(p) = &s.parallelism
        && p.value != 1
    {
        ctx.error(
            Some(&p.referenced),
            &join(prefix, "parallelism"),
            "a source runs one active instance: set parallelism to 1 and start more sluice processes as standbys",
        );
    }
    let topic = match &s.topic_name {
        Some(t) => match qualify_topic(&t.value, &tenant, &namespace) {
            Ok(q) => Some(q),
            Err(msg) => {
                ctx.error(Some(&t.referenced), &join(prefix, "topicName"), msg);
                None
            }
        },
        None => None,
    };
    let producer = producer_settings(s.producer_config.as_ref(), prefix, ctx);
    let (configs, places) = config_map(s.configs.as_ref(), s.secrets.as_ref(), prefix, ctx);
    let named = builtin(s.archive.as_ref(), s.source_type.as_ref(), "sourceType");
    let kind = match (&s.class_name, named) {
        (None, Some((field, a, archive))) => {
            let kind = sluice_connectors::source_for_archive(&archive);
            if kind.is_none() {
                ctx.error(
                    Some(&a.referenced),
                    &join(prefix, field),
                    format!(
                        "\"{}\" is not a source sluice runs: set className (one of: {})",
                        a.value,
                        sluice_connectors::source_class_names()
                    ),
                );
            }
            kind
        }
        (None, None) => {
            ctx.error(
                Some(at),
                &join(prefix, "className"),
                format!(
                    "is required (one of: {})",
                    sluice_connectors::source_class_names()
                ),
            );
            None
        }
        (Some(c), _) => {
            let kind = sluice_connectors::source(&c.value);
            if kind.is_none() {
                ctx.error(
                    Some(&c.referenced),
                    &join(prefix, "className"),
                    format!(
                        "\"{}\" is not a source connector (one of: {})",
                        c.value,
                        sluice_connectors::source_class_names()
                    ),
                );
            }
            kind
        }
    };
    let spec = kind.and_then(|k| {
        let (spec, report) = k.configure(&configs);
        connector_report(report, &places, at, prefix, ctx);
        if spec.is_some() && topic.is_none() && !k.names_its_topics() {
            ctx.error(
                Some(at),
                &join(prefix, "topicName"),
                "is required for this connector",
            );
        }
        spec
    });
    Some(SourceDef {
        name: name?,
        tenant,
        namespace,
        topic,
        guarantee: s.processing_guarantees.unwrap_or(Guarantee::AtLeastOnce),
        producer: producer?,
        publish_schema,
        spec: spec?,
    })
}

fn producer_settings(
    cfg: Option<&super::raw::ProducerConfig>,
    prefix: &str,
    ctx: &mut Ctx,
) -> Option<ProducerSettings> {
    let default = super::raw::ProducerConfig::default();
    let cfg = cfg.unwrap_or(&default);
    let positive = |v: &Option<Spanned<u32>>, field: &str, default: usize, ctx: &mut Ctx| match v {
        Some(n) if n.value == 0 => {
            ctx.error(
                Some(&n.referenced),
                &join(prefix, field),
                "must be at least 1",
            );
            None
        }
        Some(n) => Some(n.value as usize),
        None => Some(default),
    };
    let max_pending = positive(
        &cfg.max_pending_messages,
        "producerConfig.maxPendingMessages",
        DEFAULT_MAX_PENDING_MESSAGES,
        ctx,
    );
    let batching_default = super::raw::BatchingConfig::default();
    let b = cfg.batching_config.as_ref().unwrap_or(&batching_default);
    let max_messages = positive(
        &b.batching_max_messages,
        "producerConfig.batchingConfig.batchingMaxMessages",
        DEFAULT_BATCH_MAX_MESSAGES,
        ctx,
    );
    let max_bytes = positive(
        &b.batching_max_bytes,
        "producerConfig.batchingConfig.batchingMaxBytes",
        DEFAULT_BATCH_MAX_BYTES,
        ctx,
    );
    let batching = if b.enabled.unwrap_or(true) {
        Some(Batching {
            max_messages: max_messages?,
            max_bytes: max_bytes?,
            max_delay: b
                .batching_max_publish_delay_ms
                .map_or(DEFAULT_BATCH_MAX_DELAY, Duration::from_millis),
        })
    } else {
        None
    };
    Some(ProducerSettings {
        max_pending_messages: max_pending?,
        compression: cfg.compression_type.unwrap_or(Compression::None),
        batching,
    })
}

fn sink_def(entry: &Spanned<SinkEntry>, prefix: &str, ctx: &mut Ctx) -> Option<SinkDef> {
    let at = &entry.referenced;
    let s = &entry.value;
    warn_ignored(
        &[
            ("resources", s.resources.is_some()),
            ("archive", s.archive.is_some() && s.class_name.is_some()),
            ("runtimeFlags", s.runtime_flags.is_some()),
            ("customRuntimeOptions", s.custom_runtime_options.is_some()),
            (
                "topicToSerdeClassName",
                s.topic_to_serde_class_name.is_some(),
            ),
            ("topicToSchemaType", s.topic_to_schema_type.is_some()),
            ("cleanupSubscription", s.cleanup_subscription.is_some()),
        ],
        at,
        prefix,
        ctx,
    );
    let name = connector_name(s.name.as_ref(), at, prefix, ctx);
    let tenant = s.tenant.clone().unwrap_or_else(|| "public".to_owned());
    let namespace = s.namespace.clone().unwrap_or_else(|| "default".to_owned());
    let guarantee = s.processing_guarantees.unwrap_or(Guarantee::AtLeastOnce);

    let mut inputs = Vec::new();
    match (&s.inputs, &s.topics_pattern) {
        (Some(i), Some(_)) => ctx.error(
            Some(&i.referenced),
            &join(prefix, "inputs"),
            "set inputs or topicsPattern, not both",
        ),
        (None, None) => ctx.error(
            Some(at),
            &join(prefix, "inputs"),
            "is required (or topicsPattern)",
        ),
        (Some(i), None) if i.value.is_empty() => ctx.error(
            Some(&i.referenced),
            &join(prefix, "inputs"),
            "lists no topic",
        ),
        (Some(i), None) => {
            for (n, topic) in i.value.iter().enumerate() {
                match qualify_topic(topic, &tenant, &namespace) {
                    Ok(q) => inputs.push(q),
                    Err(msg) => ctx.error(
                        Some(&i.referenced),
                        &join(prefix, &format!("inputs[{n}]")),
                        msg,
                    ),
                }
            }
        }
        (None, Some(p)) => {
            if let Err(e) = regex_lite::Regex::new(&p.value) {
                ctx.error(
                    Some(&p.referenced),
                    &join(prefix, "topicsPattern"),
                    format!("is not a regular expression: {e}"),
                );
            }
        }
    }

    let ordering = s.retain_ordering.unwrap_or(false);
    let key_ordering = s.retain_key_ordering.unwrap_or(false);
    if ordering && key_ordering {
        ctx.error(
            Some(at),
            &join(prefix, "retainKeyOrdering"),
            "conflicts with retainOrdering: set one of them",
        );
    }
    if key_ordering && guarantee == Guarantee::EffectivelyOnce {
        ctx.error(
            Some(at),
            &join(prefix, "retainKeyOrdering"),
            "conflicts with EFFECTIVELY_ONCE, which consumes in order on a Failover subscription",
        );
    }
    let subscription_type = if ordering || guarantee == Guarantee::EffectivelyOnce {
        SubscriptionType::Failover
    } else if key_ordering {
        SubscriptionType::KeyShared
    } else {
        SubscriptionType::Shared
    };

    let dead_letter_topic = match &s.dead_letter_topic {
        Some(t) => match qualify_topic(&t.value, &tenant, &namespace) {
            Ok(q) => Some(q),
            Err(msg) => {
                ctx.error(Some(&t.referenced), &join(prefix, "deadLetterTopic"), msg);
                None
            }
        },
        None => None,
    };
    let max_retries = match &s.max_message_retries {
        Some(r) if r.value < 0 => {
            if dead_letter_topic.is_some() {
                ctx.error(
                    Some(&r.referenced),
                    &join(prefix, "maxMessageRetries"),
                    "must be 0 or more when deadLetterTopic is set",
                );
            }
            DEFAULT_MAX_RETRIES
        }
        Some(r) => r.value as u32,
        None => DEFAULT_MAX_RETRIES,
    };
    if s.auto_ack == Some(false) {
        ctx.error(
            Some(at),
            &join(prefix, "autoAck"),
            "false is not supported: sluice acknowledges as the guarantee says",
        );
    }
    let parallelism = match &s.parallelism {
        Some(p) if p.value == 0 => {
            ctx.error(
                Some(&p.referenced),
                &join(prefix, "parallelism"),
                "must be at least 1",
            );
            1
        }
        Some(p) if p.value > 1 && subscription_type == SubscriptionType::Failover => {
            ctx.warn(
                Some(&p.referenced),
                &join(prefix, "parallelism"),
                "on a Failover subscription one consumer is active and the others stand by",
            );
            p.value
        }
        Some(p) => p.value,
        None => 1,
    };

    let (configs, places) = config_map(s.configs.as_ref(), s.secrets.as_ref(), prefix, ctx);
    let named = builtin(s.archive.as_ref(), s.sink_type.as_ref(), "sinkType");
    let (entry, refused) = match (&s.class_name, named) {
        (Some(c), _) => (
            sluice_connectors::sink(&c.value),
            Some((c, "className", "is not a sink connector (one of:")),
        ),
        (None, Some((field, a, archive))) => (
            sluice_connectors::sink_for_archive(&archive),
            Some((
                a,
                field,
                "is not a sink sluice runs: set className (one of:",
            )),
        ),
        (None, None) => (None, None),
    };
    let spec = match (entry, refused) {
        (Some(k), _) => {
            let (spec, report) = k.configure(&configs);
            connector_report(report, &places, at, prefix, ctx);
            spec
        }
        (None, Some((named, field, why))) => {
            ctx.error(
                Some(&named.referenced),
                &join(prefix, field),
                format!(
                    "\"{}\" {why} {})",
                    named.value,
                    sluice_connectors::sink_class_names()
                ),
            );
            None
        }
        (None, None) => {
            ctx.error(
                Some(at),
                &join(prefix, "className"),
                format!(
                    "is required (one of: {})",
                    sluice_connectors::sink_class_names()
                ),
            );
            None
        }
    };

    let name = name?;
    Some(SinkDef {
        subscription: s
            .source_subscription_name
            .clone()
            .unwrap_or_else(|| format!("{tenant}/{namespace}/{name}")),
        name,
        tenant,
        namespace,
        inputs,
        topics_pattern: s.topics_pattern.as_ref().map(|p| p.value.clone()),
        missing_topics: s.missing_topics.unwrap_or_default(),
        position: s
            .source_subscription_position
            .unwrap_or(SubscriptionPosition::Latest),
        subscription_type,
        guarantee,
        dead_letter_topic,
        max_retries,
        nack_delay: s
            .negative_ack_redelivery_delay_ms
            .map_or(DEFAULT_NACK_DELAY, Duration::from_millis),
        ack_timeout: s.timeout_ms.filter(|t| *t > 0).map(Duration::from_millis),
        parallelism,
        spec: spec?,
    })
}

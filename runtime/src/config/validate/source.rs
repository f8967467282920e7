//! A `SourceConfig` entry, validated into a [`SourceDef`].

use std::time::Duration;

use serde_saphyr::Spanned;

use super::connector::{Naming, SOURCES, config_map, connector, connector_report, warn_ignored};
use super::{Ctx, connector_name, join, topic_field};
use crate::config::raw::SourceEntry;
use crate::config::{
    Batching, Compression, DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_DELAY,
    DEFAULT_BATCH_MAX_MESSAGES, DEFAULT_MAX_PENDING_MESSAGES, Guarantee, ProducerSettings,
    SourceDef,
};

pub(super) fn source_def(
    entry: &Spanned<SourceEntry>,
    prefix: &str,
    ctx: &mut Ctx,
) -> Option<SourceDef> {
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
    let topic = topic_field(
        s.topic_name.as_ref(),
        "topicName",
        (&tenant, &namespace),
        prefix,
        ctx,
    );
    let producer = producer_settings(s.producer_config.as_ref(), prefix, ctx);
    let (configs, places) = config_map(s.configs.as_ref(), s.secrets.as_ref(), prefix, ctx);
    let naming = Naming {
        class_name: s.class_name.as_ref(),
        archive: s.archive.as_ref(),
        builtin_type: s.source_type.as_ref(),
        type_field: "sourceType",
    };
    let kind = connector(&SOURCES, &naming, at, prefix, ctx);
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
    cfg: Option<&crate::config::raw::ProducerConfig>,
    prefix: &str,
    ctx: &mut Ctx,
) -> Option<ProducerSettings> {
    let default = crate::config::raw::ProducerConfig::default();
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
    let batching_default = crate::config::raw::BatchingConfig::default();
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
            by_key: cfg.batch_builder == Some(crate::config::raw::BatchBuilder::KeyBased),
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

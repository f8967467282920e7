//! A `SinkConfig` entry, validated into a [`SinkDef`].

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::connector::{Naming, SINKS, config_map, connector, connector_report, warn_ignored};
use super::{Ctx, connector_name, join, qualify_topic, topic_field};
use crate::config::raw::SinkEntry;
use crate::config::{
    DEFAULT_MAX_RETRIES, DEFAULT_NACK_DELAY, Guarantee, SinkDef, SubscriptionPosition,
    SubscriptionType,
};

pub(super) fn sink_def(entry: &Spanned<SinkEntry>, prefix: &str, ctx: &mut Ctx) -> Option<SinkDef> {
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

    let inputs = inputs(s, at, prefix, &tenant, &namespace, ctx);
    let subscription_type = subscription_type(s, guarantee, at, prefix, ctx);

    let dead_letter_topic = topic_field(
        s.dead_letter_topic.as_ref(),
        "deadLetterTopic",
        (&tenant, &namespace),
        prefix,
        ctx,
    );
    let max_retries = max_retries(s, dead_letter_topic.is_some(), prefix, ctx);
    if s.auto_ack == Some(false) {
        ctx.error(
            Some(at),
            &join(prefix, "autoAck"),
            "false is not supported: sluice acknowledges as the guarantee says",
        );
    }
    let parallelism = parallelism(s, subscription_type, prefix, ctx);

    let (configs, places) = config_map(s.configs.as_ref(), s.secrets.as_ref(), prefix, ctx);
    let naming = Naming {
        class_name: s.class_name.as_ref(),
        archive: s.archive.as_ref(),
        builtin_type: s.sink_type.as_ref(),
        type_field: "sinkType",
    };
    let spec = connector(&SINKS, &naming, at, prefix, ctx).and_then(|k| {
        let (spec, report) = k.configure(&configs);
        connector_report(report, &places, at, prefix, ctx);
        spec
    });

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

/// `inputs` qualified, or `topicsPattern` checked: one of the two.
fn inputs(
    s: &SinkEntry,
    at: &Location,
    prefix: &str,
    tenant: &str,
    namespace: &str,
    ctx: &mut Ctx,
) -> Vec<String> {
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
                match qualify_topic(topic, tenant, namespace) {
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
    inputs
}

/// Failover for `retainOrdering` and EFFECTIVELY_ONCE, Key_Shared for
/// `retainKeyOrdering`, Shared otherwise, as Pulsar's SinkConfig picks.
fn subscription_type(
    s: &SinkEntry,
    guarantee: Guarantee,
    at: &Location,
    prefix: &str,
    ctx: &mut Ctx,
) -> SubscriptionType {
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
    if ordering || guarantee == Guarantee::EffectivelyOnce {
        SubscriptionType::Failover
    } else if key_ordering {
        SubscriptionType::KeyShared
    } else {
        SubscriptionType::Shared
    }
}

/// `maxMessageRetries`: further attempts at a rejected record.
fn max_retries(s: &SinkEntry, dead_letters: bool, prefix: &str, ctx: &mut Ctx) -> u32 {
    match &s.max_message_retries {
        Some(r) if r.value < 0 => {
            if dead_letters {
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
    }
}

/// `parallelism`: consumers on the subscription.
fn parallelism(
    s: &SinkEntry,
    subscription_type: SubscriptionType,
    prefix: &str,
    ctx: &mut Ctx,
) -> u32 {
    match &s.parallelism {
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
    }
}

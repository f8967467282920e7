//! Malformed configs: each gives the expected error at the expected place.

use std::path::Path;

use super::validate::{connector_file_from_str, pipeline_from_str};
use super::{
    ConfigError, ConnectorFileKind, Guarantee, LocalrunOverrides, OAuth2Settings, PulsarAuth,
    SubscriptionType, TokenSource,
};

fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "value".to_owned())
}

mod cases;

use cases::CASES;

fn errors(yaml: &str) -> Vec<ConfigError> {
    match pipeline_from_str(Path::new("p.yaml"), yaml, env) {
        Ok(loaded) => panic!("expected errors, the config loaded: {:?}", loaded.pipeline),
        Err(e) => e.0,
    }
}

/// A valid pipeline to break in one place.
const SOURCE: &str = "sources:\n  - name: gen\n    className: datagen\n    topicName: t\n";
const SINK: &str = "sinks:\n  - name: out\n    className: file\n    inputs: [t]\n    configs:\n      path: /tmp/x\n";

#[test]
fn each_malformed_config_gives_its_error_and_place() {
    let mut failures = Vec::new();
    for (case, yaml, line, column, path, message) in CASES {
        // Cases that break only one section get a valid rest, so that the
        // error found is the one under test.
        let complete = yaml.starts_with("sources:")
            || yaml.starts_with("sinks:")
            || *message == "no sources and no sinks";
        let full = if complete {
            (*yaml).to_owned()
        } else {
            format!("{yaml}{SOURCE}")
        };
        let found = errors(&full);
        let hit = found.iter().any(|e| {
            e.line == *line && e.column == *column && e.path == *path && e.message.contains(message)
        });
        if !hit {
            failures.push(format!(
                "{case}: expected {line}:{column} {path}: ..{message}.., found {found:?}"
            ));
        }
    }
    assert!(CASES.len() >= 25);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_render_with_file_line_column_and_path() {
    let e = &errors("sources:\n  - name: a\n    parallelism: lots\n")[0];
    assert_eq!(
        e.to_string(),
        "p.yaml:3:18: sources[0].parallelism: invalid u32"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let yaml = format!("{SOURCE}{}", SINK.replace("name: out", "name: gen"));
    let found = errors(&yaml);
    assert!(
        found
            .iter()
            .any(|e| e.path == "sinks[0].name" && e.message.contains("used twice")),
        "{found:?}"
    );
}

#[test]
fn java_only_fields_are_accepted_with_a_warning() {
    let yaml = format!("{SOURCE}    resources: {{cpu: 1}}\n    runtimeFlags: -Xmx1g\n");
    let loaded = pipeline_from_str(Path::new("p.yaml"), &yaml, env).unwrap();
    let paths: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["sources[0].resources", "sources[0].runtimeFlags"]);
}

#[test]
fn a_sources_schema_type_is_its_schema_or_bytes() {
    let schema = |line: &str| {
        let yaml = format!("{SOURCE}{line}");
        pipeline_from_str(Path::new("p.yaml"), &yaml, env)
            .map(|l| l.pipeline.sources[0].publish_schema)
    };
    assert!(schema("").is_ok_and(|s| s));
    assert!(schema("    schemaType: BYTES\n").is_ok_and(|s| !s));
    assert!(schema("    schemaType: bytes\n").is_ok_and(|s| !s));
    let refused = errors(&format!("{SOURCE}    schemaType: AVRO\n"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].path, "sources[0].schemaType");
    assert!(
        refused[0].message.contains("\"AVRO\" is not supported"),
        "{}",
        refused[0].message
    );
}

#[test]
fn a_sources_batches_are_by_key_when_asked() {
    let by_key = |lines: &str| {
        let yaml = format!("{SOURCE}{lines}");
        pipeline_from_str(Path::new("p.yaml"), &yaml, env)
            .map(|l| l.pipeline.sources[0].producer.batching.map(|b| b.by_key))
    };
    assert_eq!(by_key("").ok(), Some(Some(false)));
    let config = |builder: &str| format!("    producerConfig:\n      batchBuilder: {builder}\n");
    assert_eq!(by_key(&config("KEY_BASED")).ok(), Some(Some(true)));
    assert_eq!(by_key(&config("DEFAULT")).ok(), Some(Some(false)));
    let refused = errors(&format!("{SOURCE}{}", config("BY_KEY")));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].message.contains("KEY_BASED"),
        "{}",
        refused[0].message
    );
}

#[test]
fn defaults_follow_pulsar_io() {
    let loaded = pipeline_from_str(Path::new("p.yaml"), &format!("{SOURCE}{SINK}"), env).unwrap();
    let p = loaded.pipeline;
    assert_eq!(p.pulsar.service_url, "pulsar://localhost:6650");
    assert_eq!(
        p.sources[0].topic.as_deref(),
        Some("persistent://public/default/t")
    );
    assert_eq!(p.sources[0].guarantee, Guarantee::AtLeastOnce);
    let sink = &p.sinks[0];
    assert_eq!(sink.inputs, ["persistent://public/default/t"]);
    assert_eq!(sink.subscription, "public/default/out");
    assert_eq!(sink.subscription_type, SubscriptionType::Shared);
}

#[test]
fn subscription_type_follows_the_guarantee_and_ordering() {
    let with = |extra: &str| {
        let yaml = SINK.replace("    configs:", &format!("{extra}    configs:"));
        pipeline_from_str(Path::new("p.yaml"), &yaml, env)
            .unwrap()
            .pipeline
            .sinks[0]
            .subscription_type
    };
    assert_eq!(
        with("    retainOrdering: true\n"),
        SubscriptionType::Failover
    );
    assert_eq!(
        with("    retainKeyOrdering: true\n"),
        SubscriptionType::KeyShared
    );
    assert_eq!(
        with("    processingGuarantees: EFFECTIVELY_ONCE\n"),
        SubscriptionType::Failover
    );
}

#[test]
fn variables_are_substituted_and_secrets_hidden() {
    let yaml = SINK.replace("path: /tmp/x", "path: /tmp/${SET}\n      password: ${SET}");
    let err = pipeline_from_str(Path::new("p.yaml"), &yaml, env).unwrap_err();
    // The file sink has no password setting: the error names the key, never the value.
    let text = err.to_string();
    assert!(text.contains("sinks[0].configs.password"), "{text}");
    assert!(!text.contains("value"), "{text}");
}

#[test]
fn a_single_connector_file_loads_with_localrun_overrides() {
    let overrides = LocalrunOverrides {
        broker_service_url: Some("pulsar://broker:6650".into()),
        ..LocalrunOverrides::default()
    };
    let yaml = "name: out\nclassName: file\ninputs: [t]\nconfigs:\n  path: /x\n";
    let loaded = connector_file_from_str(
        Path::new("s.yaml"),
        yaml,
        ConnectorFileKind::Sink,
        &overrides,
        env,
    )
    .unwrap();
    assert_eq!(loaded.pipeline.pulsar.service_url, "pulsar://broker:6650");
    assert_eq!(loaded.pipeline.sinks.len(), 1);
    let bad = connector_file_from_str(
        Path::new("s.yaml"),
        "name: out\nclassName: file\nbogus: 1\n",
        ConnectorFileKind::Sink,
        &overrides,
        env,
    )
    .unwrap_err();
    assert_eq!(
        bad.0[0].to_string(),
        "s.yaml:3:1: bogus: unknown field `bogus`, expected one of tenant, namespace, name, className, inputs, topicsPattern, missingTopics, sourceSubscriptionName, sourceSubscriptionPosition, processingGuarantees, retainOrdering, retainKeyOrdering, deadLetterTopic, maxMessageRetries, negativeAckRedeliveryDelayMs, timeoutMs, autoAck, parallelism, cleanupSubscription, configs, secrets, archive, sinkType, resources, runtimeFlags, customRuntimeOptions, topicToSerdeClassName, topicToSchemaType"
    );
}

#[test]
fn every_file_in_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let lookup = |_: &str| None;
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            pipeline_from_str(&path, &text, lookup).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    for (dir, kind) in [
        ("localrun", ConnectorFileKind::Source),
        ("localrun", ConnectorFileKind::Sink),
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let is_source = name.contains("source");
            if is_source != (kind == ConnectorFileKind::Source) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            connector_file_from_str(&path, &text, kind, &LocalrunOverrides::default(), lookup)
                .unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} config files found");
}

#[test]
fn pulsars_documented_connector_files_load_as_written() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pulsar-docs");
    // Each file, the connector it names (by archive or sinkType), and the
    // keys that mean nothing to sluice (warnings).
    let expected: [(&str, ConnectorFileKind, &str, &[&str]); 4] = [
        (
            "debezium-postgres-source-config.yaml",
            ConnectorFileKind::Source,
            "postgres-cdc",
            &["configs.database.history.pulsar.service.url"],
        ),
        (
            "jdbc-postgres-sink.yaml",
            ConnectorFileKind::Sink,
            "jdbc",
            &[],
        ),
        (
            "jdbc-mariadb-sink.yaml",
            ConnectorFileKind::Sink,
            "jdbc",
            &[],
        ),
        (
            "jdbc-sqlite-sink.yaml",
            ConnectorFileKind::Sink,
            "jdbc",
            &[],
        ),
    ];
    for (file, kind, class, warned) in expected {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = connector_file_from_str(
            &path,
            &text,
            kind,
            &LocalrunOverrides::default(),
            |_: &str| None,
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let p = &loaded.pipeline;
        let found = match kind {
            ConnectorFileKind::Source => p.sources[0].spec.class_name(),
            ConnectorFileKind::Sink => p.sinks[0].spec.class_name(),
        };
        assert_eq!(found, class, "{file}");
        let paths: Vec<String> = loaded.warnings.iter().map(|w| w.path.clone()).collect();
        assert_eq!(paths, warned, "{file}");
    }
}

#[test]
fn an_archive_of_no_connector_sluice_runs_asks_for_a_class_name() {
    let errs = errors(
        "sources:\n  - name: a\n    archive: connectors/pulsar-io-kinesis-4.0.7.nar\n    topicName: t\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.path == "sources[0].archive"
                && e.message.contains("is not a source sluice runs")),
        "{errs:?}"
    );
}

fn pulsar(section: &str) -> Result<super::PulsarSettings, Vec<ConfigError>> {
    let yaml = format!("pulsar:\n{section}{SINK}");
    pipeline_from_str(Path::new("p.yaml"), &yaml, env)
        .map(|l| l.pipeline.pulsar)
        .map_err(|e| e.0)
}

#[test]
fn the_client_conf_auth_keys_are_read() {
    let oauth = pulsar(
        "  serviceUrl: pulsar+ssl://broker:6651\n  authPlugin: org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2\n  \
         authParams: '{\"issuerUrl\": \"https://issuer\", \"privateKey\": \"file:///creds.json\", \"audience\": \"urn:sl\"}'\n  \
         tlsTrustCertsFilePath: /ca.pem\n  tlsEnableHostnameVerification: false\n",
    )
    .unwrap();
    assert_eq!(
        oauth.auth,
        PulsarAuth::OAuth2(OAuth2Settings {
            issuer_url: "https://issuer".into(),
            private_key: "/creds.json".into(),
            audience: Some("urn:sl".into()),
            scope: None,
        })
    );
    assert!(!oauth.tls_hostname_verification);
    let token = pulsar(
        "  serviceUrl: pulsar+ssl://broker:6651\n  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationToken\n  authParams: file:///t.jwt\n",
    )
    .unwrap();
    assert_eq!(
        token.auth,
        PulsarAuth::Token(TokenSource::File("/t.jwt".into()))
    );
    assert!(token.tls_hostname_verification, "on by default");
    let certificate = pulsar(
        "  serviceUrl: pulsar+ssl://broker:6651\n  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationTls\n  authParams: tlsCertFile:/c.pem,tlsKeyFile:/k.pem\n",
    )
    .unwrap();
    assert_eq!(
        certificate.auth,
        PulsarAuth::Tls {
            cert: "/c.pem".into(),
            key: "/k.pem".into()
        }
    );
    let shorthand = pulsar("  authToken: abc\n").unwrap();
    assert!(
        matches!(shorthand.auth, PulsarAuth::Token(TokenSource::Value(t)) if t.expose() == "abc")
    );
}

#[test]
fn conflicting_or_unsupported_auth_is_refused_without_quoting_secrets() {
    let both = pulsar(
        "  authToken: sekrit\n  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationToken\n  authParams: token:sekrit\n",
    )
    .unwrap_err();
    assert!(both[0].to_string().contains("one or the other"), "{both:?}");
    let plaintext = pulsar(
        "  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationTls\n  authParams: tlsCertFile:/c.pem,tlsKeyFile:/k.pem\n",
    )
    .unwrap_err();
    assert!(
        plaintext[0].to_string().contains("must be pulsar+ssl://"),
        "{plaintext:?}"
    );
    let unknown = pulsar("  authPlugin: com.example.Auth\n  authParams: sekrit\n").unwrap_err();
    let text = format!("{unknown:?}");
    assert!(
        text.contains("com.example.Auth") && !text.contains("sekrit"),
        "{text}"
    );
}

#[test]
fn localrun_takes_the_auth_and_tls_flags() {
    let overrides = LocalrunOverrides {
        broker_service_url: Some("pulsar+ssl://broker:6651".into()),
        auth_plugin: Some("org.apache.pulsar.client.impl.auth.AuthenticationToken".into()),
        auth_params: Some("token:abc".into()),
        use_tls: true,
        tls_trust_cert_path: Some("/ca.pem".into()),
        ..LocalrunOverrides::default()
    };
    let yaml = "name: out\nclassName: file\ninputs: [t]\nconfigs:\n  path: /x\n";
    let load = |o: &LocalrunOverrides| {
        connector_file_from_str(Path::new("s.yaml"), yaml, ConnectorFileKind::Sink, o, env)
    };
    let pulsar = load(&overrides).unwrap().pipeline.pulsar;
    assert!(matches!(pulsar.auth, PulsarAuth::Token(_)));
    assert_eq!(pulsar.tls_trust_certs_file_path, Some("/ca.pem".into()));
    let plain = LocalrunOverrides {
        broker_service_url: Some("pulsar://broker:6650".into()),
        ..overrides
    };
    let err = load(&plain).unwrap_err();
    assert!(err.to_string().contains("--use-tls"), "{err}");
}

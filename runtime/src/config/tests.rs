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

fn errors(yaml: &str) -> Vec<ConfigError> {
    match pipeline_from_str(Path::new("p.yaml"), yaml, env) {
        Ok(loaded) => panic!("expected errors, the config loaded: {:?}", loaded.pipeline),
        Err(e) => e.0,
    }
}

/// A valid pipeline to break in one place.
const SOURCE: &str = "sources:\n  - name: gen\n    className: datagen\n    topicName: t\n";
const SINK: &str = "sinks:\n  - name: out\n    className: file\n    inputs: [t]\n    configs:\n      path: /tmp/x\n";

/// (case, yaml, line, column, path, part of the message)
const CASES: &[(&str, &str, u64, u64, &str, &str)] = &[
    (
        "unclosed flow list",
        "sinks:\n  - name: out\n    inputs: [t\n",
        3,
        13,
        "sinks[0].inputs",
        "unclosed bracket",
    ),
    (
        "bad indentation",
        "sources:\n  - name: a\n   className: datagen\n",
        3,
        4,
        "sources",
        "did not find expected '-'",
    ),
    (
        "tab indentation",
        "sources:\n\t- name: a\n",
        2,
        2,
        "",
        "tabs disallowed",
    ),
    (
        "unknown top-level field",
        "sourcez: []\n",
        1,
        1,
        "sourcez",
        "unknown field `sourcez`: did you mean sources?",
    ),
    (
        "unknown source field",
        "sources:\n  - name: a\n    topicNam: t\n",
        3,
        5,
        "sources[0].topicNam",
        "unknown field `topicNam`: did you mean topicName?",
    ),
    (
        "unknown sink field",
        "sinks:\n  - name: a\n    inputz: [t]\n",
        3,
        5,
        "sinks[0].inputz",
        "unknown field `inputz`: did you mean inputs?",
    ),
    (
        "parallelism is a word",
        "sinks:\n  - name: a\n    parallelism: lots\n",
        3,
        18,
        "sinks[0].parallelism",
        "invalid u32",
    ),
    (
        "negative parallelism",
        "sinks:\n  - name: a\n    parallelism: -1\n",
        3,
        18,
        "sinks[0].parallelism",
        "invalid u32",
    ),
    (
        "bad guarantee",
        "sources:\n  - name: a\n    processingGuarantees: EXACTLY_ONCE\n",
        3,
        27,
        "sources[0].processingGuarantees",
        "unknown variant `EXACTLY_ONCE`",
    ),
    (
        "bad subscription position",
        "sinks:\n  - name: a\n    sourceSubscriptionPosition: First\n",
        3,
        33,
        "sinks[0].sourceSubscriptionPosition",
        "unknown variant `First`",
    ),
    (
        "unknown producerConfig field",
        "sources:\n  - name: a\n    producerConfig:\n      maxPending: 5\n",
        4,
        7,
        "sources[0].producerConfig.maxPending",
        "unknown field `maxPending`",
    ),
    (
        "a map where a connector takes a number",
        "sources:\n  - name: a\n    className: datagen\n    configs:\n      count: {a: 1}\n",
        5,
        14,
        "sources[0].configs.count",
        "expected a non-negative integer, found a map",
    ),
    (
        "undefined variable",
        "pulsar:\n  serviceUrl: pulsar://${NOPE}:6650\n",
        2,
        24,
        "",
        "NOPE is not set",
    ),
    (
        "missing name",
        "sources:\n  - className: datagen\n    topicName: t\n",
        2,
        5,
        "sources[0].name",
        "is required",
    ),
    (
        "name with a space",
        "sources:\n  - name: my gen\n    className: datagen\n    topicName: t\n",
        2,
        11,
        "sources[0].name",
        "letters, digits",
    ),
    (
        "missing className",
        "sources:\n  - name: a\n    topicName: t\n",
        2,
        5,
        "sources[0].className",
        "is required",
    ),
    (
        "unknown className",
        "sources:\n  - name: a\n    className: kafka\n    topicName: t\n",
        3,
        16,
        "sources[0].className",
        "\"kafka\" is not a source connector",
    ),
    (
        "missing topicName",
        "sources:\n  - name: a\n    className: datagen\n",
        2,
        5,
        "sources[0].topicName",
        "is required",
    ),
    (
        "source parallelism above one",
        "sources:\n  - name: a\n    className: datagen\n    topicName: t\n    parallelism: 2\n",
        5,
        18,
        "sources[0].parallelism",
        "one active instance",
    ),
    (
        "unknown datagen setting",
        "sources:\n  - name: a\n    className: datagen\n    topicName: t\n    configs:\n      rate: 5\n",
        6,
        13,
        "sources[0].configs.rate",
        "is not a setting of the datagen source (docs/configuration.md lists its keys)",
    ),
    (
        "misspelt datagen setting",
        "sources:\n  - name: a\n    className: datagen\n    topicName: t\n    configs:\n      ratePerSecnd: 5\n",
        6,
        21,
        "sources[0].configs.ratePerSecnd",
        "is not a setting of the datagen source: did you mean ratePerSecond?",
    ),
    (
        "datagen count is a word",
        "sources:\n  - name: a\n    className: datagen\n    topicName: t\n    configs:\n      count: many\n",
        6,
        14,
        "sources[0].configs.count",
        "non-negative integer",
    ),
    (
        "sink without inputs",
        "sinks:\n  - name: a\n    className: file\n    configs:\n      path: /x\n",
        2,
        5,
        "sinks[0].inputs",
        "is required",
    ),
    (
        "inputs and topicsPattern",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    topicsPattern: t.*\n    configs:\n      path: /x\n",
        4,
        13,
        "sinks[0].inputs",
        "not both",
    ),
    (
        "bad topicsPattern",
        "sinks:\n  - name: a\n    className: file\n    topicsPattern: \"([\"\n    configs:\n      path: /x\n",
        4,
        20,
        "sinks[0].topicsPattern",
        "not a regular expression",
    ),
    (
        "bad input topic",
        "sinks:\n  - name: a\n    className: file\n    inputs: [a/b]\n    configs:\n      path: /x\n",
        4,
        13,
        "sinks[0].inputs[0]",
        "not a topic name",
    ),
    (
        "ordering conflict",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    retainOrdering: true\n    retainKeyOrdering: true\n    configs:\n      path: /x\n",
        2,
        5,
        "sinks[0].retainKeyOrdering",
        "conflicts with retainOrdering",
    ),
    (
        "key ordering under effectively once",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    processingGuarantees: EFFECTIVELY_ONCE\n    retainKeyOrdering: true\n    configs:\n      path: /x\n",
        2,
        5,
        "sinks[0].retainKeyOrdering",
        "conflicts with EFFECTIVELY_ONCE",
    ),
    (
        "negative retries with a dead-letter topic",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    deadLetterTopic: dlq\n    maxMessageRetries: -1\n    configs:\n      path: /x\n",
        6,
        24,
        "sinks[0].maxMessageRetries",
        "0 or more",
    ),
    (
        "bad dead-letter topic",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    deadLetterTopic: http://x\n    configs:\n      path: /x\n",
        5,
        22,
        "sinks[0].deadLetterTopic",
        "not a topic domain",
    ),
    (
        "autoAck false",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    autoAck: false\n    configs:\n      path: /x\n",
        2,
        5,
        "sinks[0].autoAck",
        "not supported",
    ),
    (
        "zero sink parallelism",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    parallelism: 0\n    configs:\n      path: /x\n",
        5,
        18,
        "sinks[0].parallelism",
        "at least 1",
    ),
    (
        "file sink without path",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n",
        2,
        5,
        "sinks[0].configs.path",
        "is required",
    ),
    (
        "file sink batchSize zero",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    configs:\n      path: /x\n      batchSize: 0\n",
        7,
        18,
        "sinks[0].configs.batchSize",
        "at least 1",
    ),
    (
        "secret that is a list",
        "sinks:\n  - name: a\n    className: file\n    inputs: [t]\n    configs:\n      path: /x\n    secrets:\n      token: [a]\n",
        8,
        14,
        "sinks[0].secrets.token",
        "a secret is a string",
    ),
    (
        "bad http.listen",
        "http:\n  listen: localhost\n",
        2,
        11,
        "http.listen",
        "not an address:port",
    ),
    (
        "bad serviceUrl",
        "pulsar:\n  serviceUrl: http://127.0.0.1:8080\n",
        2,
        15,
        "pulsar.serviceUrl",
        "starts with pulsar://",
    ),
    (
        "bad webServiceUrl",
        "pulsar:\n  webServiceUrl: 127.0.0.1:8080\n",
        2,
        18,
        "pulsar.webServiceUrl",
        "not an http://",
    ),
    (
        "empty pipeline",
        "pulsar:\n  serviceUrl: pulsar://a:6650\n",
        0,
        0,
        "",
        "no sources and no sinks",
    ),
];

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

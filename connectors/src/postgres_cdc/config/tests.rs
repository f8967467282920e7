use super::*;
use crate::config::ConfigValue;

fn configs(pairs: &[(&str, &str)]) -> ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
        .collect()
}

const BASE: &[(&str, &str)] = &[
    ("database.hostname", "127.0.0.1"),
    ("database.user", "postgres"),
    ("database.dbname", "orders"),
    ("topic.prefix", "retail"),
];

#[test]
fn the_pulsar_debezium_keys_validate_with_defaults() {
    let mut pairs = BASE.to_vec();
    pairs.push((
        "value.converter",
        "org.apache.kafka.connect.json.JsonConverter",
    ));
    let (config, report) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.warnings.len(), 1);
    let c = config.unwrap();
    assert_eq!(
        (c.port, c.slot.as_str(), c.snapshot_mode),
        (5432, "sluice", SnapshotMode::Initial)
    );
}

#[test]
fn debezium_1_list_names_stand_in_for_the_2_names() {
    let mut pairs = BASE.to_vec();
    pairs.extend([
        ("table.whitelist", "public.users,public.orders"),
        ("schema.whitelist", "public"),
        ("schema.blacklist", "audit"),
    ]);
    let (config, report) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert!(report.errors.is_empty(), "{report:?}");
    let c = config.unwrap();
    assert_eq!(c.include, ["public.users", "public.orders"]);
    assert_eq!(
        (c.schema_include, c.schema_exclude),
        (vec!["public".to_owned()], vec!["audit".to_owned()])
    );
    // Both names of one list is an error, not a guess.
    let mut both = BASE.to_vec();
    both.extend([
        ("table.include.list", "public.a"),
        ("table.whitelist", "public.b"),
    ]);
    let (config, report) = PostgresCdcConfig::from_configs(&configs(&both));
    assert!(config.is_none());
    assert!(format!("{report:?}").contains("old name of table.include.list"));
    // The schema lists select by schema.
    let mut schemas = BASE.to_vec();
    schemas.extend([
        ("schema.include.list", "sales|stock"),
        ("schema.exclude.list", "stock"),
    ]);
    let c = PostgresCdcConfig::from_configs(&configs(&schemas))
        .0
        .unwrap();
    use super::super::catalog::selected;
    assert!(selected(&c, "sales.orders"));
    assert!(!selected(&c, "stock.items"), "excluded schema");
    assert!(!selected(&c, "public.users"), "schema not included");
}

#[test]
fn json_with_envelope_false_and_exported_snapshots_are_taken() {
    let mut pairs = BASE.to_vec();
    pairs.extend([
        ("json-with-envelope", "false"),
        ("snapshot.mode", "exported"),
    ]);
    let (config, report) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(config.unwrap().snapshot_mode, SnapshotMode::Initial);
    let mut pairs = BASE.to_vec();
    pairs.push(("json-with-envelope", "true"));
    let (config, report) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert!(config.is_none());
    assert!(format!("{report:?}").contains("schema envelope"));
}

#[test]
fn database_server_name_stands_in_for_topic_prefix() {
    let mut pairs = BASE[..3].to_vec();
    pairs.push(("database.server.name", "dbserver1"));
    let (config, _) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert_eq!(config.unwrap().topic_prefix, "dbserver1");
}

#[test]
fn bad_values_are_named() {
    let mut pairs = BASE.to_vec();
    pairs.extend([
        ("slot.name", "Bad-Slot"),
        ("snapshot.mode", "sometimes"),
        ("plugin.name", "wal2json"),
        ("table.include.list", "public.(orders"),
    ]);
    let (config, report) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert!(config.is_none());
    let keys: Vec<&str> = report.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "table.include.list",
            "slot.name",
            "snapshot.mode",
            "plugin.name"
        ]
    );
}

#[test]
fn the_password_never_prints() {
    let mut pairs = BASE.to_vec();
    pairs.push(("database.password", "hunter2"));
    let (config, _) = PostgresCdcConfig::from_configs(&configs(&pairs));
    assert!(!format!("{:?}", config.unwrap()).contains("hunter2"));
}

use super::*;
use crate::config::ConfigValue;

fn configs(pairs: &[(&str, &str)]) -> ConfigMap {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
        .collect()
}

#[test]
fn jdbc_urls_become_postgres_urls_and_credentials() {
    let (c, report) = DbSinkConfig::from_configs(&configs(&[(
        "jdbcUrl",
        "jdbc:postgresql://db:5432/warehouse?user=w&password=secret&sslmode=disable",
    )]));
    assert!(report.errors.is_empty(), "{report:?}");
    let c = c.unwrap();
    assert_eq!(c.url, "postgres://db:5432/warehouse?sslmode=disable");
    assert_eq!(c.user.as_deref(), Some("w"));
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("secret"));
    assert_eq!(
        (c.insert_mode, c.null_value_action, c.batch_size),
        (InsertMode::Insert, NullValueAction::Fail, 200)
    );
}

#[test]
fn a_password_in_the_url_never_prints() {
    let (c, _) = DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "postgres://u:hunter2@db/w")]));
    assert!(!format!("{c:?}").contains("hunter2"));
    let (_, report) =
        DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "oracle://u:hunter2@db/w")]));
    assert!(!format!("{report:?}").contains("hunter2"), "{report:?}");
}

#[test]
fn tls_parameters_take_the_drivers_spellings() {
    let url = |raw: &str| {
        let (c, report) = DbSinkConfig::from_configs(&configs(&[("jdbcUrl", raw)]));
        assert!(report.errors.is_empty(), "{raw}: {report:?}");
        c.map(|c| c.url).unwrap_or_default()
    };
    assert_eq!(
        url("jdbc:mariadb://db/s?sslMode=verify-full&serverSslCert=/ca.pem"),
        "mysql://db/s?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem"
    );
    assert_eq!(
        url("jdbc:mysql://db/s?sslMode=VERIFY_CA"),
        "mysql://db/s?ssl-mode=VERIFY_CA"
    );
    assert_eq!(
        url("jdbc:postgresql://db/w?sslmode=verify-full&sslrootcert=/ca.pem"),
        "postgres://db/w?sslmode=verify-full&sslrootcert=/ca.pem"
    );
    let (_, report) =
        DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "postgres://db/w?sslmode=verify")]));
    assert_eq!(report.errors.len(), 1, "{report:?}");
}

#[test]
fn the_drivers_older_tls_switches_mean_what_they_mean_to_the_driver() {
    let url = |raw: &str| {
        let (c, report) = DbSinkConfig::from_configs(&configs(&[("jdbcUrl", raw)]));
        assert!(report.errors.is_empty(), "{raw}: {report:?}");
        c.map(|c| c.url).unwrap_or_default()
    };
    // pgjdbc: ssl=true verifies the chain and the host name.
    assert_eq!(
        url("jdbc:postgresql://db/w?ssl=true"),
        "postgres://db/w?sslmode=verify-full"
    );
    assert_eq!(
        url("jdbc:postgresql://db/w?ssl=true&sslmode=require"),
        "postgres://db/w?sslmode=require"
    );
    // libpq: require with a root certificate checks the chain.
    assert_eq!(
        url("postgres://db/w?sslmode=require&sslrootcert=/ca.pem"),
        "postgres://db/w?sslmode=verify-ca&sslrootcert=/ca.pem"
    );
    assert_eq!(
        url("jdbc:postgresql://db/w?ApplicationName=shop"),
        "postgres://db/w?application_name=shop"
    );
    // Connector/J 8.
    for (query, mode) in [
        (
            "useSSL=true&requireSSL=true&verifyServerCertificate=true",
            "VERIFY_CA",
        ),
        ("useSSL=true&requireSSL=true", "REQUIRED"),
        ("useSSL=true", "PREFERRED"),
        ("useSSL=false", "DISABLED"),
    ] {
        assert_eq!(
            url(&format!("jdbc:mysql://db/s?{query}")),
            format!("mysql://db/s?ssl-mode={mode}"),
            "{query}"
        );
    }
    // MariaDB Connector/J.
    for (query, mode) in [
        ("useSsl=true", "VERIFY_IDENTITY"),
        ("useSsl=true&trustServerCertificate=true", "REQUIRED"),
        (
            "useSsl=true&disableSslHostnameVerification=true",
            "VERIFY_CA",
        ),
    ] {
        assert_eq!(
            url(&format!("jdbc:mariadb://db/s?{query}")),
            format!("mysql://db/s?ssl-mode={mode}"),
            "{query}"
        );
    }
}

#[test]
fn a_parameter_the_driver_does_not_know_is_refused_by_name_without_its_value() {
    for raw in [
        "jdbc:postgresql://db/w?connectTimeout=hunter2",
        "jdbc:postgresql://db/w?sslpassword=hunter2",
        "jdbc:mysql://db/s?serverTimezone=hunter2",
        "jdbc:mysql://db/s?sslMode=REQUIRED&useSSL=hunter2",
        "jdbc:mysql://db/s?useSSL=hunter2",
    ] {
        let (c, report) = DbSinkConfig::from_configs(&configs(&[("jdbcUrl", raw)]));
        assert!(c.is_none(), "{raw}");
        let text = format!("{report:?}");
        assert!(!text.contains("hunter2"), "{raw}: {text}");
    }
    let (_, report) = DbSinkConfig::from_configs(&configs(&[(
        "jdbcUrl",
        "jdbc:postgresql://db/w?connectTimeout=5",
    )]));
    assert!(
        format!("{report:?}").contains("the parameter connectTimeout is not one sluice takes"),
        "{report:?}"
    );
}

#[test]
fn passwords_in_a_query_string_are_redacted() {
    assert_eq!(
        redact("jdbc:postgresql://db/w?user=u&password=hunter2&sslmode=require"),
        "jdbc:postgresql://db/w?user=u&password=***&sslmode=require"
    );
    assert_eq!(
        redact("mysql://u:pw@db/w?ssl-mode=REQUIRED&clientCertPassword=x"),
        "mysql://u:***@db/w?ssl-mode=REQUIRED&clientCertPassword=***"
    );
    let (_, report) =
        DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "oracle://db/w?password=hunter2")]));
    assert!(!format!("{report:?}").contains("hunter2"), "{report:?}");
}

#[test]
fn mysql_and_sqlite_urls_in_their_jdbc_forms() {
    let url = |raw: &str| {
        let (c, report) = DbSinkConfig::from_configs(&configs(&[("jdbcUrl", raw)]));
        assert!(report.errors.is_empty(), "{raw}: {report:?}");
        let c = c.unwrap();
        (c.dialect, c.url, c.user)
    };
    assert_eq!(
        url("jdbc:mysql://db:3306/shipping?user=s"),
        (
            Dialect::MySql,
            "mysql://db:3306/shipping".to_owned(),
            Some("s".to_owned())
        )
    );
    assert_eq!(url("mariadb://db/shipping").1, "mysql://db/shipping");
    assert_eq!(
        url("jdbc:sqlite:/var/lib/t.db"),
        (
            Dialect::Sqlite,
            "sqlite:/var/lib/t.db?mode=rwc".to_owned(),
            None
        )
    );
    assert_eq!(url("sqlite://data/t.db").1, "sqlite:data/t.db?mode=rwc");
}

#[test]
fn bad_urls_modes_and_mappings_are_named() {
    let (_, report) = DbSinkConfig::from_configs(&configs(&[
        ("jdbcUrl", "oracle://db/x"),
        ("insertMode", "MERGE"),
        ("topicToTable", "retail.public.orders:orders, nocolon"),
    ]));
    let keys: Vec<&str> = report.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["jdbcUrl", "insertMode", "topicToTable"]);
}

#[test]
fn a_topic_names_its_table_by_its_last_segment() {
    assert_eq!(
        topic_table("persistent://public/default/retail.public.orders"),
        "orders"
    );
    assert_eq!(topic_table("retail.public.orders-partition-3"), "orders");
    assert_eq!(topic_table("orders"), "orders");
    assert_eq!(topic_table("my-partition-x"), "my-partition-x");
}

#[test]
fn system_and_own_tables_are_never_targets() {
    let (_, report) = DbSinkConfig::from_configs(&configs(&[
        ("jdbcUrl", "postgres://db/w"),
        ("tableName", "SLUICE_OFFSETS"),
        ("topicToTable", "a:sqlite_master,b:pg_catalog.pg_authid"),
        ("tablesFromEnvelope", "orders"),
    ]));
    let keys: Vec<&str> = report.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["tableName", "topicToTable", "topicToTable"],
        "{report:?}"
    );
    let (_, report) = DbSinkConfig::from_configs(&configs(&[("jdbcUrl", "mysql://db:3306/mysql")]));
    assert_eq!(report.errors.len(), 1, "{report:?}");
}

#[test]
fn topics_map_to_tables() {
    let (c, report) = DbSinkConfig::from_configs(&configs(&[
        ("jdbcUrl", "sqlite:t.db"),
        ("topicToTable", "retail.public.orders:orders_copy"),
    ]));
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        c.unwrap().topic_tables,
        [("retail.public.orders".to_owned(), "orders_copy".to_owned())]
    );
}

#[test]
fn a_full_topic_name_as_pulsar_admin_prints_it_maps_to_a_table() {
    // GIVEN a mapping by full name, and one by short name
    let (c, report) = DbSinkConfig::from_configs(&configs(&[
        ("jdbcUrl", "sqlite:t.db"),
        (
            "topicToTable",
            "persistent://public/default/orders:orders_copy, items:items_copy",
        ),
    ]));
    assert!(report.errors.is_empty(), "{report:?}");
    let c = c.unwrap();
    // THEN the full name is split at its last colon
    assert_eq!(
        c.topic_tables[0],
        (
            "persistent://public/default/orders".to_owned(),
            "orders_copy".to_owned()
        )
    );
    // AND each maps the topic and every partition of it
    for topic in [
        "persistent://public/default/orders",
        "persistent://public/default/orders-partition-2",
    ] {
        assert_eq!(c.table_for_topic(topic), "orders_copy", "{topic}");
    }
    for topic in [
        "persistent://public/default/items",
        "persistent://public/other/items-partition-0",
    ] {
        assert_eq!(c.table_for_topic(topic), "items_copy", "{topic}");
    }
    assert_eq!(
        c.table_for_topic("persistent://public/other/orders"),
        "orders",
        "another namespace's orders is not the one mapped by full name"
    );
}

#[test]
fn the_input_format_is_configured_and_plain_rows_by_default() {
    let format = |value: Option<&str>| {
        let mut pairs = vec![("jdbcUrl", "sqlite:t.db")];
        pairs.extend(value.map(|v| ("inputFormat", v)));
        let (c, report) = DbSinkConfig::from_configs(&configs(&pairs));
        (c.map(|c| c.input_format), report.errors.len())
    };
    assert_eq!(format(None), (Some(InputFormat::Row), 0));
    assert_eq!(format(Some("DEBEZIUM")), (Some(InputFormat::Debezium), 0));
    assert_eq!(
        format(Some("ROW_WITH_ACTION")),
        (Some(InputFormat::RowWithAction), 0)
    );
    assert_eq!(format(Some("debezium")), (None, 1));
}

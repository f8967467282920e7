use super::redact::*;
use super::request::*;
use super::*;
use crate::api::{Origin, Sequence};

#[test]
fn an_answer_that_echoes_the_request_keeps_no_header_value() {
    let headers = vec![(
        "Authorization".to_owned(),
        crate::config::Secret::new("Bearer s3cr3t-token-value"),
    )];
    assert_eq!(
        redacted(
            "{\"authorization\":\"Bearer s3cr3t-token-value\",\"x\":1}",
            &headers
        ),
        "{\"authorization\":\"***\",\"x\":1}"
    );
    // Cut off inside the value.
    assert_eq!(
        redacted("you sent Bearer s3cr3t-to", &headers),
        "you sent ***"
    );
    assert_eq!(redacted("nothing here", &headers), "nothing here");
}

#[test]
fn an_echo_that_encodes_a_header_value_keeps_none_of_it() {
    let headers = vec![(
        "X-Api-Key".to_owned(),
        crate::config::Secret::new("sk_live/9f8e+7d6c=\"q\""),
    )];
    for echo in [
        r#"{"key":"sk_live\/9f8e+7d6c=\"q\""}"#,
        r#"{"key":"sk_live/9f8e+7d6c=\"q\""}"#,
        "key=sk_live%2F9f8e%2B7d6c%3D%22q%22",
        "key=sk_live%2f9f8e%2b7d6c%3d%22q%22",
        "key=c2tfbGl2ZS85ZjhlKzdkNmM9InEi",
    ] {
        let out = redacted(echo, &headers);
        assert!(
            !out.contains("9f8e") && !out.contains("OWY4") && out.contains("***"),
            "{echo} -> {out}"
        );
    }
    // The credential after its scheme, and its base64.
    let bearer = vec![(
        "Authorization".to_owned(),
        crate::config::Secret::new("Bearer tok-123456"),
    )];
    assert_eq!(redacted("got tok-123456", &bearer), "got ***");
    assert_eq!(redacted("got dG9rLTEyMzQ1Ng==", &bearer), "got ***");
}

#[test]
fn the_idempotency_key_names_the_producer_of_a_sequence() {
    let mut r = SinkRecord {
        topic: "persistent://public/default/orders".into(),
        message_id: "7:3:-1:-1".parse().unwrap(),
        origin: Origin::new("public/retail/orders-cdc", Some(Sequence(42))),
        ..SinkRecord::default()
    };
    assert_eq!(
        idempotency_key(&r),
        "persistent://public/default/orders/seq/public%2Fretail%2Forders-cdc/42"
    );
    // Another producer's same sequence is another record.
    let other = SinkRecord {
        origin: Origin::new("sluice-x", Some(Sequence(42))),
        ..r.clone()
    };
    assert_ne!(idempotency_key(&other), idempotency_key(&r));
    assert_eq!(escaped("a b/é"), "a%20b%2F%C3%A9");
    // A name too long to keep is held to its message id, as is a record
    // without a sequence.
    let long = "p".repeat(Origin::MAX_PRODUCER_NAME + 1);
    r.origin = Origin::new(long, Some(Sequence(42)));
    assert_eq!(
        idempotency_key(&r),
        "persistent://public/default/orders/id/7:3:-1:-1"
    );
    r.origin = Origin::new("public/retail/orders-cdc", None);
    assert_eq!(
        idempotency_key(&r),
        "persistent://public/default/orders/id/7:3:-1:-1"
    );
}

#[test]
fn a_record_body_carries_the_value_and_what_is_known_about_it() {
    let mut r = SinkRecord {
        topic: "persistent://public/default/orders-dlq".into(),
        key: Some("k".into()),
        value: Some(br#"{"id":1}"#.to_vec()),
        properties: vec![("sluice.error".into(), "the endpoint answered 422".into())],
        message_id: "7:3:-1:-1".parse().unwrap(),
        publish_time_ms: 5,
        ..SinkRecord::default()
    };
    let json = record_json(&r);
    assert_eq!(json["value"]["id"], 1);
    assert_eq!(
        json["properties"]["sluice.error"],
        "the endpoint answered 422"
    );
    assert_eq!(json["messageId"], "7:3:-1:-1");
    r.value = Some(b"not json".to_vec());
    assert_eq!(record_json(&r)["value"], "not json");
    r.value = Some(vec![0xff, 0x00]);
    let json = record_json(&r);
    assert_eq!(json["value_base64"], "/wA=");
    assert!(json.get("value").is_none());
}

#[test]
fn the_filter_selects_by_the_value_at_its_pointer() {
    let filter = (
        "/after/status".to_owned(),
        vec!["shipped".to_owned(), "5".to_owned()],
    );
    let record = |value: &str| SinkRecord {
        value: Some(value.as_bytes().to_vec()),
        ..SinkRecord::default()
    };
    let shipped = record(r#"{"op":"u","after":{"status":"shipped"}}"#);
    assert!(selected(Some(&filter), &shipped));
    assert!(selected(None, &shipped));
    assert!(selected(
        Some(&filter),
        &record(r#"{"after":{"status":5}}"#)
    ));
    for other in [
        r#"{"op":"u","after":{"status":"paid"}}"#,
        r#"{"op":"d","after":null}"#,
        "not json",
    ] {
        assert!(!selected(Some(&filter), &record(other)), "{other}");
    }
}

#[test]
fn one_key_keeps_one_lane() {
    let record = |key: &str| SinkRecord {
        key: Some(key.into()),
        ..SinkRecord::default()
    };
    for i in 0..20 {
        assert_eq!(lane(&record("k"), i, 8), lane(&record("k"), 0, 8));
    }
    let spread: HashSet<usize> = (0..64)
        .map(|i| lane(&record(&format!("key-{i}")), 0, 8))
        .collect();
    assert!(spread.len() > 4, "keys spread over lanes: {spread:?}");
}

#[test]
fn over_one_record_per_request_even_a_lone_record_goes_as_an_array() {
    let config = |size: i64| {
        let configs: crate::config::ConfigMap = [
            (
                "url",
                crate::config::ConfigValue::String("http://127.0.0.1:1/".into()),
            ),
            ("requestBatchSize", crate::config::ConfigValue::Int(size)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        HttpSinkConfig::from_configs(&configs).0.expect("valid")
    };
    let batch = vec![SinkRecord {
        value: Some(br#"{"n":1}"#.to_vec()),
        message_id: "7:3:-1:-1".parse().unwrap(),
        ..SinkRecord::default()
    }];
    let body = |config: &HttpSinkConfig| {
        let requests = Requests {
            config,
            headers: &[],
            content_type_set: false,
        };
        let (_, body) = requests.of_group(&batch, &[0]);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let batched = body(&config(3));
    assert_eq!(batched.as_array().map(Vec::len), Some(1), "{batched}");
    assert_eq!(batched[0]["value"]["n"], 1);
    assert_eq!(
        body(&config(1))["n"],
        1,
        "one per request: the value itself"
    );
}

use super::*;

#[test]
fn the_prefetch_holds_its_bytes_in_messages_of_the_largest_size() {
    let options = |prefetch_bytes| ConsumerOptions {
        subscription: "s".into(),
        subscription_type: SubscriptionType::Failover,
        position: SubscriptionPosition::Earliest,
        receiver_queue: 1000,
        held_bytes: None,
        prefetch_bytes,
        nack_delay: Duration::from_secs(1),
        ack_timeout: None,
        consumer_name: None,
        missing: MissingTopics::Wait,
        started: Arc::default(),
    };
    assert_eq!(prefetch(&options(None)), 1000);
    assert_eq!(prefetch(&options(Some(16 << 20))), 3);
    assert_eq!(prefetch(&options(Some(1 << 20))), 1, "at least one");
    assert_eq!(prefetch(&options(Some(1 << 40))), 1000, "at most the queue");
}

#[test]
fn a_base64_key_reads_as_its_text_when_it_is_text() {
    assert_eq!(key_text("eyJpZCI6MX0=".into()), r#"{"id":1}"#);
    // Bytes that are not UTF-8, or not base64, stay as sent.
    assert_eq!(key_text("/w==".into()), "/w==");
    assert_eq!(key_text("not base64!".into()), "not base64!");
}

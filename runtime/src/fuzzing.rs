//! The runtime's decoders of untrusted bytes, each as one call, for the
//! property and fuzz tests (`tests/fuzz_decoders.rs`). Not part of sluice's
//! interface.

/// Unpacking a batch container of one message, as a consumer does:
/// `[u32 size][SingleMessageMetadata][payload]`.
pub fn batch_of_one(container: &[u8]) -> bool {
    crate::pulsar::consumer::unpack_single(&bytes::Bytes::copy_from_slice(container)).is_some()
}

/// Reading a message key sent as base64.
pub fn base64_key(key: &str) -> String {
    crate::pulsar::consumer::key_text(key.to_owned())
}

/// Reading a value schema's definition out of the admin API's answer.
pub fn schema_answer(answer: &str) -> bool {
    crate::pulsar::value_schemas::value_definition(answer).is_some()
}

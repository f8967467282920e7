package io.confluent.kafka.schemaregistry.client;

/** Stand-in: only its name is used, when an Avro converter is configured. */
public class MockSchemaRegistryClient {
}

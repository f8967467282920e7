package io.confluent.kafka.serializers;

/** Stand-in: the one constant the adaptor reads. */
public final class AbstractKafkaAvroSerDeConfig {
    public static final String SCHEMA_REGISTRY_URL_CONFIG = "schema.registry.url";

    private AbstractKafkaAvroSerDeConfig() {
    }
}

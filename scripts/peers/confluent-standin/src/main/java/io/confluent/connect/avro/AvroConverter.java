package io.confluent.connect.avro;

import io.confluent.kafka.schemaregistry.client.MockSchemaRegistryClient;
import java.util.Map;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.storage.Converter;

/** Stand-in: the Avro converter is not supported; use the JSON converter. */
public class AvroConverter implements Converter {
    public AvroConverter() {
    }

    public AvroConverter(MockSchemaRegistryClient client) {
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        throw new UnsupportedOperationException("this build has no Avro converter: use the JSON converter");
    }

    @Override
    public byte[] fromConnectData(String topic, Schema schema, Object value) {
        throw new UnsupportedOperationException("no Avro converter");
    }

    @Override
    public SchemaAndValue toConnectData(String topic, byte[] value) {
        throw new UnsupportedOperationException("no Avro converter");
    }
}

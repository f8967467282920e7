package io.confluent.connect.avro;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Field;

/**
 * Stand-in: the Avro form of a Connect schema, as the adaptor registers it
 * in Pulsar. Structs become records named by their Connect name, optional
 * schemas unions with null (default null), and a record met twice is named
 * the second time; other named types keep their Connect name and
 * parameters in connect.name and connect.parameters.
 */
public class AvroData {
    public AvroData(int cacheSize) {
    }

    public org.apache.avro.Schema fromConnectSchema(org.apache.kafka.connect.data.Schema schema) {
        return convert(schema, new HashMap<>());
    }

    public org.apache.kafka.connect.data.Schema toConnectSchema(org.apache.avro.Schema schema) {
        throw new UnsupportedOperationException("no Avro to Connect conversion in this build");
    }

    private static org.apache.avro.Schema convert(org.apache.kafka.connect.data.Schema schema,
                                                  Map<String, org.apache.avro.Schema> records) {
        org.apache.avro.Schema avro = required(schema, records);
        if (schema.isOptional()) {
            return org.apache.avro.Schema.createUnion(org.apache.avro.Schema.create(org.apache.avro.Schema.Type.NULL), avro);
        }
        return avro;
    }

    private static org.apache.avro.Schema required(org.apache.kafka.connect.data.Schema schema,
                                                   Map<String, org.apache.avro.Schema> records) {
        org.apache.avro.Schema avro;
        switch (schema.type()) {
            case INT8, INT16, INT32 -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.INT);
            case INT64 -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.LONG);
            case FLOAT32 -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.FLOAT);
            case FLOAT64 -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.DOUBLE);
            case BOOLEAN -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.BOOLEAN);
            case STRING -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.STRING);
            case BYTES -> avro = org.apache.avro.Schema.create(org.apache.avro.Schema.Type.BYTES);
            case ARRAY -> avro = org.apache.avro.Schema.createArray(convert(schema.valueSchema(), records));
            case MAP -> avro = org.apache.avro.Schema.createMap(convert(schema.valueSchema(), records));
            case STRUCT -> {
                String full = schema.name() == null ? "io.confluent.connect.avro.ConnectDefault" : schema.name();
                org.apache.avro.Schema seen = records.get(full);
                if (seen != null) {
                    return seen;
                }
                int dot = full.lastIndexOf('.');
                org.apache.avro.Schema record = org.apache.avro.Schema.createRecord(
                        dot < 0 ? full : full.substring(dot + 1), schema.doc(),
                        dot < 0 ? null : full.substring(0, dot), false);
                records.put(full, record);
                List<org.apache.avro.Schema.Field> fields = new ArrayList<>();
                for (Field f : schema.fields()) {
                    org.apache.avro.Schema type = convert(f.schema(), records);
                    Object defaultValue = f.schema().isOptional() ? org.apache.avro.Schema.Field.NULL_DEFAULT_VALUE : null;
                    fields.add(new org.apache.avro.Schema.Field(f.name(), type, null, defaultValue));
                }
                record.setFields(fields);
                avro = record;
            }
            default -> throw new IllegalArgumentException("unsupported Connect type " + schema.type());
        }
        if (schema.name() != null && schema.type() != org.apache.kafka.connect.data.Schema.Type.STRUCT) {
            avro.addProp("connect.name", schema.name());
        }
        // A logical type's parameters, such as a Decimal's scale.
        if (schema.parameters() != null && !schema.parameters().isEmpty()
                && schema.type() != org.apache.kafka.connect.data.Schema.Type.STRUCT) {
            avro.addProp("connect.parameters", new HashMap<>(schema.parameters()));
        }
        return avro;
    }
}

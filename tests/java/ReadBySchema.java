// A schema-aware reader for the integration tests: the Apache Pulsar Java
// client subscribes to a change-event topic through its registered schema and
// prints one JSON line per message, until none arrives for 5 seconds.
//
//   java -cp "$(cat .stack/pulsar/classpath.txt)" tests/java/ReadBySchema.java pulsar://127.0.0.1:6650 TOPIC typed|auto
//
// typed: a consumer of Schema.KeyValue(JSON(Key), JSON(Envelope), SEPARATED)
//        with plain Java classes for the `orders` table of the test, as an
//        application written against Pulsar's Debezium source declares it.
// auto:  a consumer of Schema.AUTO_CONSUME(), which decodes every message with
//        the schema version the broker holds for it, field by field.
// rows:  the same, for a topic of unwrapped rows: the key, the value (null
//        for a null value) and the properties of each message.
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.SubscriptionMode;
import org.apache.pulsar.client.api.schema.Field;
import org.apache.pulsar.client.api.schema.GenericObject;
import org.apache.pulsar.client.api.schema.GenericRecord;
import org.apache.pulsar.common.schema.KeyValue;
import org.apache.pulsar.common.schema.KeyValueEncodingType;

public class ReadBySchema {
    public static class Key {
        public int id;
    }

    public static class Value {
        public Integer id;
        public String note;
        public String total;
        public Long made;
        public String meta;
    }

    public static class Source {
        public String version;
        public String connector;
        public String name;
        public Long ts_ms;
        public String snapshot;
        public String db;
        public String schema;
        public String table;
        public Long txId;
        public Long lsn;
    }

    public static class Envelope {
        public Value before;
        public Value after;
        public Source source;
        public String op;
        public Long ts_ms;
    }

    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    static String row(Value v) {
        if (v == null) {
            return "null";
        }
        return "{\"id\":" + v.id + ",\"note\":" + quote(v.note) + ",\"total\":" + quote(v.total)
                + ",\"made\":" + v.made + ",\"meta\":" + quote(v.meta) + "}";
    }

    // A decoded field: a record as an object of its fields, text quoted,
    // numbers and booleans as they are.
    static String render(Object o) {
        if (o == null) {
            return "null";
        }
        if (o instanceof GenericRecord r) {
            StringBuilder b = new StringBuilder("{");
            List<Field> fields = r.getFields();
            for (Field f : fields) {
                if (b.length() > 1) {
                    b.append(',');
                }
                b.append(quote(f.getName())).append(':').append(render(r.getField(f)));
            }
            return b.append('}').toString();
        }
        if (o instanceof Number || o instanceof Boolean) {
            return o.toString();
        }
        return quote(o.toString());
    }

    static String version(byte[] v) {
        if (v == null) {
            return "null";
        }
        long n = 0;
        for (byte x : v) {
            n = (n << 8) | (x & 0xff);
        }
        return Long.toString(n);
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        String topic = args[1];
        String mode = args[2];
        try (PulsarClient client = PulsarClient.builder().serviceUrl(url).build()) {
            if (mode.equals("typed")) {
                Schema<KeyValue<Key, Envelope>> schema = Schema.KeyValue(
                        Schema.JSON(Key.class), Schema.JSON(Envelope.class), KeyValueEncodingType.SEPARATED);
                try (Consumer<KeyValue<Key, Envelope>> consumer = client.newConsumer(schema).topic(topic)
                        .subscriptionName("typed-reader")
                        .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest).subscribe()) {
                    while (true) {
                        Message<KeyValue<Key, Envelope>> m = consumer.receive(5, TimeUnit.SECONDS);
                        if (m == null) {
                            return;
                        }
                        KeyValue<Key, Envelope> kv = m.getValue();
                        Envelope e = kv.getValue();
                        System.out.println("{\"key\":" + kv.getKey().id + ",\"op\":" + quote(e.op)
                                + ",\"before\":" + row(e.before) + ",\"after\":" + row(e.after)
                                + ",\"table\":" + quote(e.source.table) + "}");
                        consumer.acknowledge(m);
                    }
                }
            }
            // Rows are read afresh each time (a test may read a topic again
            // as it grows); the envelope modes keep their place.
            try (Consumer<GenericRecord> consumer = client.newConsumer(Schema.AUTO_CONSUME()).topic(topic)
                    .subscriptionName(mode.equals("rows") ? "rows-reader" : "auto-reader")
                    .subscriptionMode(mode.equals("rows") ? SubscriptionMode.NonDurable : SubscriptionMode.Durable)
                    .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest).subscribe()) {
                while (true) {
                    Message<GenericRecord> m = consumer.receive(5, TimeUnit.SECONDS);
                    if (m == null) {
                        return;
                    }
                    GenericObject value = m.getValue();
                    @SuppressWarnings("unchecked")
                    KeyValue<Object, Object> kv = (KeyValue<Object, Object>) value.getNativeObject();
                    if (mode.equals("rows")) {
                        StringBuilder props = new StringBuilder("{");
                        for (var e : new java.util.TreeMap<>(m.getProperties()).entrySet()) {
                            if (!e.getKey().startsWith("__")) {
                                continue;
                            }
                            if (props.length() > 1) {
                                props.append(',');
                            }
                            props.append(quote(e.getKey())).append(':').append(quote(e.getValue()));
                        }
                        System.out.println("{\"key\":" + render(kv.getKey()) + ",\"value\":" + render(kv.getValue())
                                + ",\"properties\":" + props.append('}') + "}");
                        consumer.acknowledge(m);
                        continue;
                    }
                    GenericRecord envelope = (GenericRecord) kv.getValue();
                    System.out.println("{\"type\":" + quote(value.getSchemaType().toString())
                            + ",\"version\":" + version(m.getSchemaVersion())
                            + ",\"key\":" + render(kv.getKey())
                            + ",\"op\":" + render(envelope.getField("op"))
                            + ",\"after\":" + render(envelope.getField("after")) + "}");
                    consumer.acknowledge(m);
                }
            }
        }
    }
}

// An independent reader for the integration tests: the Apache Pulsar Java
// client reads a topic from the start and prints one JSON line per message
// (key, producer, properties, value as text), until no message arrives for 3 seconds.
//   java -cp "$(cat .stack/pulsar/classpath.txt)" tests/java/ReadTopic.java pulsar://127.0.0.1:6650 TOPIC
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Reader;

public class ReadTopic {
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

    public static void main(String[] args) throws Exception {
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build();
             Reader<byte[]> reader = client.newReader().topic(args[1]).startMessageId(MessageId.earliest).create()) {
            while (true) {
                Message<byte[]> m = reader.readNext(3, TimeUnit.SECONDS);
                if (m == null) {
                    return;
                }
                StringBuilder props = new StringBuilder("{");
                for (Map.Entry<String, String> e : m.getProperties().entrySet()) {
                    if (props.length() > 1) {
                        props.append(',');
                    }
                    props.append(quote(e.getKey())).append(':').append(quote(e.getValue()));
                }
                props.append('}');
                System.out.println("{\"key\":" + quote(m.getKey()) + ",\"producer\":" + quote(m.getProducerName())
                        + ",\"properties\":" + props
                        + ",\"value\":" + quote(new String(m.getData(), StandardCharsets.UTF_8)) + "}");
            }
        }
    }
}

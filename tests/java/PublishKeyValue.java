// A publisher for the integration tests that encodes messages as Pulsar's
// Debezium source does: a KEY_VALUE schema in SEPARATED mode, so that the
// key travels base64-encoded as the message key (flagged so) and the value
// alone is the payload. Reads `key<TAB>value` lines from standard input.
//   java -cp "$(cat .stack/pulsar/classpath.txt)" tests/java/PublishKeyValue.java pulsar://127.0.0.1:6650 TOPIC < lines
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.common.schema.KeyValue;
import org.apache.pulsar.common.schema.KeyValueEncodingType;

public class PublishKeyValue {
    public static void main(String[] args) throws Exception {
        Schema<KeyValue<byte[], byte[]>> schema =
                Schema.KeyValue(Schema.BYTES, Schema.BYTES, KeyValueEncodingType.SEPARATED);
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build();
             Producer<KeyValue<byte[], byte[]>> producer = client.newProducer(schema).topic(args[1]).create();
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            int sent = 0;
            for (String line = in.readLine(); line != null; line = in.readLine()) {
                String[] parts = line.split("\t", 2);
                producer.newMessage().value(new KeyValue<>(parts[0].getBytes(StandardCharsets.UTF_8),
                        parts[1].getBytes(StandardCharsets.UTF_8))).sendAsync();
                sent++;
            }
            producer.flush();
            System.out.println("{\"sent\":" + sent + "}");
        }
    }
}

// A publisher for the integration tests that writes a topic as Pulsar's Java
// producers do with compression on: segments of keyed JSON rows, each
// segment from its own producer with its own codec, batched or not. A
// batched producer compresses each batch whole.
//   java -cp "$(cat .stack/pulsar/classpath.txt)" tests/java/PublishCompressed.java \
//     pulsar://127.0.0.1:6650 TOPIC ROWS LZ4:batched ZSTD:single ...
// Row ids run from 1 over all segments; each value names its segment. A
// segment CODEC:large is one batch of 6 rows of 1 MiB each, which inflates
// past the 5 MiB frame a client takes in one piece. A segment
// CODEC:chunked is ROWS rows of about 10 MB from each of two producers at
// once, sent in chunks of 1 MiB that interleave on the topic; its text is
// `CODEC:chunked row ID` then the numbers (i * 7919) % 1000003 in base 36
// for i from 0 while under 10,000,000 characters, each followed by a comma.
// Prints {"segment":..., "sent":...} per segment.
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.CompressionType;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;

public class PublishCompressed {
    public static void main(String[] args) throws Exception {
        int rows = Integer.parseInt(args[2]);
        int id = 0;
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build()) {
            for (int s = 3; s < args.length; s++) {
                String[] spec = args[s].split(":");
                if (spec[1].equals("chunked")) {
                    id = chunked(client, args[1], args[s], CompressionType.valueOf(spec[0]), rows, id);
                    System.out.println("{\"segment\":\"" + args[s] + "\",\"sent\":" + (2 * rows) + "}");
                    continue;
                }
                boolean large = spec[1].equals("large");
                boolean batched = large || spec[1].equals("batched");
                int count = large ? 6 : rows;
                try (Producer<String> producer = client.newProducer(Schema.STRING)
                        .topic(args[1])
                        .compressionType(CompressionType.valueOf(spec[0]))
                        .enableBatching(batched)
                        .batchingMaxMessages(large ? 6 : 100)
                        .batchingMaxBytes(large ? 16 << 20 : 128 << 10)
                        .batchingMaxPublishDelay(large ? 10000 : 10, TimeUnit.MILLISECONDS)
                        .blockIfQueueFull(true)
                        .create()) {
                    for (int i = 0; i < count; i++) {
                        id++;
                        // Repetitive text, as rows are: it compresses.
                        String text = large ? "x".repeat(1 << 20) : " of a segment that compresses well, compresses well";
                        String value = "{\"id\":" + id + ",\"v\":\"" + args[s] + " row " + id + text + "\"}";
                        producer.newMessage().key("{\"id\":" + id + "}").value(value).sendAsync();
                    }
                    producer.flush();
                }
                System.out.println("{\"segment\":\"" + args[s] + "\",\"sent\":" + count + "}");
            }
        }
    }

    static int chunked(PulsarClient client, String topic, String segment, CompressionType codec,
            int rows, int id) throws Exception {
        java.util.List<Producer<String>> producers = new java.util.ArrayList<>();
        for (int p = 0; p < 2; p++) {
            producers.add(client.newProducer(Schema.STRING).topic(topic).compressionType(codec)
                    .enableBatching(false).enableChunking(true).chunkMaxMessageSize(1 << 20)
                    .create());
        }
        java.util.List<java.util.concurrent.CompletableFuture<?>> sent = new java.util.ArrayList<>();
        for (int i = 0; i < rows; i++) {
            for (Producer<String> producer : producers) {
                id++;
                StringBuilder text = new StringBuilder(segment + " row " + id);
                for (long n = 0; text.length() < 10_000_000; n++) {
                    text.append(Long.toString((n * 7919) % 1000003, 36)).append(',');
                }
                String value = "{\"id\":" + id + ",\"v\":\"" + text + "\"}";
                sent.add(producer.newMessage().key("{\"id\":" + id + "}").value(value).sendAsync());
            }
        }
        for (java.util.concurrent.CompletableFuture<?> f : sent) {
            f.get();
        }
        for (Producer<String> producer : producers) {
            producer.close();
        }
        return id;
    }
}

// The Java client's side of scripts/bench-client: publish N messages of
// BYTES bytes to a topic with the client's default batching and 1,000 sends
// in flight, then consume them from the earliest on a new subscription,
// acknowledging each. Prints {"publish_per_s":..., "consume_per_s":...}.
//   java -cp "$(cat .stack/pulsar/classpath.txt)" tests/java/ClientBench.java URL TOPIC N BYTES
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;

public class ClientBench {
    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[2]);
        byte[] payload = new byte[Integer.parseInt(args[3])];
        java.util.Arrays.fill(payload, (byte) 'x');
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build()) {
            Producer<byte[]> producer = client.newProducer().topic(args[1])
                    .maxPendingMessages(1000).blockIfQueueFull(true)
                    .batchingMaxMessages(1000).batchingMaxBytes(128 << 10)
                    .batchingMaxPublishDelay(10, TimeUnit.MILLISECONDS).create();
            long start = System.nanoTime();
            java.util.concurrent.CompletableFuture<?> last = null;
            for (int i = 0; i < n; i++) {
                last = producer.sendAsync(payload);
            }
            producer.flush();
            last.get();
            double publish = n / ((System.nanoTime() - start) / 1e9);
            producer.close();
            Consumer<byte[]> consumer = client.newConsumer().topic(args[1]).subscriptionName("bench")
                    .receiverQueueSize(1000)
                    .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest).subscribe();
            start = System.nanoTime();
            for (int i = 0; i < n; i++) {
                Message<byte[]> m = consumer.receive();
                consumer.acknowledgeAsync(m);
            }
            double consume = n / ((System.nanoTime() - start) / 1e9);
            consumer.close();
            System.out.println("{\"publish_per_s\":" + publish + ",\"consume_per_s\":" + consume + "}");
        }
    }
}

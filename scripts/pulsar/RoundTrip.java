// Health probe for the test broker: a message published to a fresh topic is
// received back through a subscription. Run by scripts/stack with the broker's
// own classpath: java -cp CLASSPATH RoundTrip.java pulsar://127.0.0.1:6650
// For the secured profile, with a trust file and a token:
//   java -cp CLASSPATH RoundTrip.java pulsar+ssl://localhost:6651 CA.pem TOKEN
import java.nio.charset.StandardCharsets;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.AuthenticationFactory;
import org.apache.pulsar.client.api.ClientBuilder;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;

public class RoundTrip {
    public static void main(String[] args) throws Exception {
        String topic = "persistent://public/default/sluice-stack-health";
        String payload = "probe-" + UUID.randomUUID();
        ClientBuilder builder = PulsarClient.builder()
                .serviceUrl(args[0])
                .operationTimeout(10, TimeUnit.SECONDS);
        if (args.length == 3) {
            builder = builder.tlsTrustCertsFilePath(args[1])
                    .enableTlsHostnameVerification(true)
                    .authentication(AuthenticationFactory.token(args[2]));
        }
        try (PulsarClient client = builder.build();
             Consumer<byte[]> consumer = client.newConsumer()
                .topic(topic)
                .subscriptionName("stack-health")
                .subscriptionInitialPosition(SubscriptionInitialPosition.Latest)
                .subscribe();
             Producer<byte[]> producer = client.newProducer().topic(topic).create()) {
            producer.send(payload.getBytes(StandardCharsets.UTF_8));
            while (true) {
                Message<byte[]> msg = consumer.receive(20, TimeUnit.SECONDS);
                if (msg == null) {
                    System.err.println("round trip: no message within 20 s");
                    System.exit(1);
                }
                consumer.acknowledge(msg);
                if (payload.equals(new String(msg.getData(), StandardCharsets.UTF_8))) {
                    System.out.println("round trip ok");
                    return;
                }
            }
        }
    }
}

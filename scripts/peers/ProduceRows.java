// Publishes N rows {"id": i, "name": "...", "amount": i * 1.5} under a JSON
// schema, as an application feeding Pulsar's JDBC sink does (the Java sink
// reads records through their schema and refuses schemaless topics).
//   java -cp CLASSPATH ProduceRows.java pulsar://127.0.0.1:6650 TOPIC N
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;

public class ProduceRows {
    public static class Row {
        public int id;
        public String name;
        public double amount;
    }

    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[2]);
        Semaphore window = new Semaphore(10_000);
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build();
             Producer<Row> producer = client.newProducer(Schema.JSON(Row.class)).topic(args[1])
                     .blockIfQueueFull(true).create()) {
            for (int i = 1; i <= n; i++) {
                Row row = new Row();
                row.id = i;
                row.name = "customer " + i;
                row.amount = i * 1.5;
                window.acquire();
                CompletableFuture<?> sent = producer.sendAsync(row);
                sent.whenComplete((id, e) -> window.release());
            }
            producer.flush();
        }
        System.out.println("{\"sent\":" + n + "}");
    }
}

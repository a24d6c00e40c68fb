// Consume-side throughput through the Kafka protocol without consumer groups: Kafka's own
// ConsumerPerformance subscribes through a group coordinator, which the gateway does not have
// yet (issue 4). This reads every partition of a topic from the beginning with assign(), the
// same kafka-clients consumer loop, and reports what ConsumerPerformance reports.
// Run with the JDK's source launcher: java -cp 'KAFKA_TOOLS_LIB/*' AssignedConsumerPerformance.java
//   BOOTSTRAP TOPIC RECORDS
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class AssignedConsumerPerformance {
    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: AssignedConsumerPerformance BOOTSTRAP TOPIC RECORDS");
            System.exit(2);
        }
        String topic = args[1];
        long wanted = Long.parseLong(args[2]);
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = consumer.partitionsFor(topic).stream()
                    .map(p -> new TopicPartition(topic, p.partition()))
                    .collect(Collectors.toList());
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long records = 0, bytes = 0;
            long start = System.nanoTime(), lastRecord = start;
            while (records < wanted) {
                var batch = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    records++;
                    bytes += r.serializedValueSize() + Math.max(0, r.serializedKeySize());
                }
                long now = System.nanoTime();
                if (!batch.isEmpty()) lastRecord = now;
                else if (now - lastRecord > 10_000_000_000L) break; // as ConsumerPerformance's --timeout
            }
            double seconds = (lastRecord - start) / 1e9;
            double mb = bytes / (1024.0 * 1024.0);
            System.out.printf("records=%d MB=%.2f seconds=%.3f MB.sec=%.2f nMsg.sec=%.1f%n",
                    records, mb, seconds, mb / seconds, records / seconds);
            if (records < wanted) System.exit(1);
        }
    }
}

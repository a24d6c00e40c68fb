// One consumer-group member on the Java client (kafka-clients), run by mixed_group.py:
//
//   java -cp "<jars>/*" GroupMember.java BOOTSTRAP TOPIC GROUP LOG_FILE GO_FILE STOP_FILE
//
// Eager RangeAssignor, no auto-commit. Loop: poll a batch, log every record, wait a
// little (so a SIGKILL usually lands between consuming and committing), commitSync the
// next offset of every partition in the batch, log the commit once commitSync returned.
// Until GO_FILE exists its partitions stay paused (it only takes part in the group).
// Closes the consumer (LeaveGroup) and exits when STOP_FILE exists.
//
// Log lines, each written with one write() and no buffering (rdkafka_member.py writes the same):
//   A <epoch_ms> <p,p,...|->   partitions assigned
//   R <p> <offset>             record consumed
//   C <p> <next_offset>        commit returned successfully
//   F <p> <next_offset> <err>  commit failed
//   E <message>                other error

import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class GroupMember {
    static final long COMMIT_DELAY_MS = 30;
    static FileOutputStream out;

    static synchronized void log(String line) {
        try {
            out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        out = new FileOutputStream(args[3], true);
        Path go = Path.of(args[4]), stop = Path.of(args[5]);
        String name = Path.of(args[3]).getFileName().toString().replace(".log", "");

        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("group.protocol", "classic");
        p.put("client.id", "compat-mixed-java-" + name);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("session.timeout.ms", "10000");
        p.put("heartbeat.interval.ms", "1000");
        p.put("max.poll.records", "200");
        p.put("partition.assignment.strategy", "org.apache.kafka.clients.consumer.RangeAssignor");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());

        boolean[] started = {false};
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> revoked) {}

                public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                    String parts = assigned.stream().map(TopicPartition::partition).sorted()
                        .map(String::valueOf).collect(Collectors.joining(","));
                    log("A " + System.currentTimeMillis() + " " + (parts.isEmpty() ? "-" : parts));
                    if (!started[0]) consumer.pause(assigned);
                }
            });
            try {
                while (!Files.exists(stop)) {
                    if (!started[0]) {
                        if (Files.exists(go)) {
                            started[0] = true;
                            consumer.resume(consumer.assignment());
                        } else {
                            consumer.pause(consumer.assignment());
                            if (!consumer.poll(Duration.ofMillis(200)).isEmpty()) log("E records returned while paused");
                            continue;
                        }
                    }
                    ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(300));
                    if (batch.isEmpty()) continue;
                    Map<TopicPartition, OffsetAndMetadata> next = new TreeMap<>(
                        (a, b) -> Integer.compare(a.partition(), b.partition()));
                    for (TopicPartition tp : batch.partitions()) {
                        List<ConsumerRecord<byte[], byte[]>> rs = batch.records(tp);
                        for (ConsumerRecord<byte[], byte[]> r : rs) log("R " + tp.partition() + " " + r.offset());
                        next.put(tp, new OffsetAndMetadata(rs.get(rs.size() - 1).offset() + 1));
                    }
                    Thread.sleep(COMMIT_DELAY_MS);
                    try {
                        consumer.commitSync(next);
                    } catch (KafkaException e) {
                        for (var e2 : next.entrySet())
                            log("F " + e2.getKey().partition() + " " + e2.getValue().offset() + " " + e.getClass().getSimpleName());
                        continue;
                    }
                    for (var e2 : next.entrySet()) log("C " + e2.getKey().partition() + " " + e2.getValue().offset());
                }
            } catch (Exception e) {
                log("E " + e.getClass().getSimpleName() + ": " + String.valueOf(e.getMessage()).replace('\n', ' '));
                throw e;
            }
        }
        out.close();
    }
}

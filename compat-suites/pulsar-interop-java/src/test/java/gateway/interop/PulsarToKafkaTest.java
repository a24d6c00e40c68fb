package gateway.interop;

import static gateway.interop.Interop.*;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.MessageIdAdv;
import org.apache.pulsar.client.api.MessageRouter;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Reader;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.TopicMetadata;
import org.apache.pulsar.client.api.TypedMessageBuilder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Pulsar -> Kafka: messages sent with the Java Pulsar producer straight to the broker are
 * consumed with the Java Kafka consumer through the gateway.
 */
class PulsarToKafkaTest {
    static final int PARTITIONS = 2;
    static final int MESSAGES = 120;
    static final String PART = "part"; // property read by the router: the target partition

    record Sent(int i, int partition, byte[] key, byte[] value, List<Map.Entry<String, String>> props,
                Long eventTime, MessageId id) {}

    /** Sends each message to the partition named by its "part" property. */
    static final class ByProperty implements MessageRouter {
        @Override
        public int choosePartition(Message<?> msg, TopicMetadata metadata) {
            return Integer.parseInt(msg.getProperty(PART));
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"batched", "unbatched"})
    void javaPulsarProduceKafkaConsume(String mode) throws Exception {
        boolean batched = mode.equals("batched");
        String topic = "interop-java-p2k-" + mode + "-" + UUID.randomUUID().toString().substring(0, 8);

        // 1. A 2-partition topic through the Pulsar admin REST API.
        Object[] r = http("PUT", adminTopicPath(topic) + "/partitions", Integer.toString(PARTITIONS));
        assertTrue((int) r[0] == 204 || (int) r[0] == 200, "create partitioned topic: HTTP " + r[0] + " " + r[1]);

        // 2. Produce with the Java Pulsar client, sendAsync, keeping every MessageId.
        Random rng = new Random(7_202_611);
        long baseTs = (System.currentTimeMillis() / 1000) * 1000 - 7_200_000;
        List<Sent> sent = new ArrayList<>();
        try (PulsarClient client = pulsarClient()) {
            List<CompletableFuture<MessageId>> futures = new ArrayList<>();
            List<Object[]> pending = new ArrayList<>();
            try (Producer<byte[]> producer = client.newProducer(Schema.BYTES).topic(pulsarTopic(topic))
                    .enableBatching(batched).batchingMaxMessages(25)
                    .batchingMaxPublishDelay(50, TimeUnit.MILLISECONDS)
                    .messageRouter(new ByProperty()).blockIfQueueFull(true).create()) {
                for (int i = 0; i < MESSAGES; i++) {
                    int p = (i / 3) % PARTITIONS;
                    TypedMessageBuilder<byte[]> b = producer.newMessage();
                    byte[] key;
                    switch (i % 4) {
                        case 0: key = ("ключ-" + (i % 7)).getBytes(UTF_8); b.key(new String(key, UTF_8)); break;
                        case 1: { // binary, not UTF-8
                            key = new byte[8];
                            rng.nextBytes(key);
                            key[0] = (byte) 0xc3; key[1] = (byte) 0x28;
                            b.keyBytes(key);
                            break;
                        }
                        case 2: key = ("key-" + i).getBytes(UTF_8); b.key("key-" + i); break;
                        default: key = null;
                    }
                    byte[] value;
                    if (i % 13 == 5) {
                        value = new byte[0];
                    } else {
                        value = new byte[1 + rng.nextInt(300)];
                        rng.nextBytes(value);
                    }
                    b.value(value);
                    List<Map.Entry<String, String>> props = new ArrayList<>();
                    props.add(Map.entry(PART, Integer.toString(p)));
                    props.add(Map.entry("seq", Integer.toString(i)));
                    if (i % 3 == 0) props.add(Map.entry("ünïcode", "välue ✓"));
                    if (i % 5 == 1) props.add(Map.entry("empty", ""));
                    if (i % 6 == 2) { props.add(Map.entry("dup", "a")); props.add(Map.entry("dup", "b")); }
                    for (Map.Entry<String, String> e : props) b.property(e.getKey(), e.getValue());
                    Long eventTime = null;
                    if (i % 10 != 9) { // every tenth without event time: Kafka shows the publish time
                        eventTime = baseTs + (i * 104_729L) % 500_000;
                        b.eventTime(eventTime);
                    }
                    futures.add(b.sendAsync());
                    pending.add(new Object[] {i, p, key, value, props, eventTime});
                }
                producer.flush();
            }
            for (int k = 0; k < futures.size(); k++) {
                MessageId id = futures.get(k).get(30, TimeUnit.SECONDS);
                Object[] o = pending.get(k);
                @SuppressWarnings("unchecked")
                List<Map.Entry<String, String>> props = (List<Map.Entry<String, String>>) o[4];
                sent.add(new Sent((int) o[0], (int) o[1], (byte[]) o[2], (byte[]) o[3], props, (Long) o[5], id));
            }

            // publish times (for messages without event time), read back with a Pulsar reader
            Map<String, Long> publishTime = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                try (Reader<byte[]> reader = client.newReader(Schema.BYTES)
                        .topic(pulsarTopic(topic) + "-partition-" + p).startMessageId(MessageId.earliest).create()) {
                    while (reader.hasMessageAvailable()) {
                        Message<byte[]> m = reader.readNext(20, TimeUnit.SECONDS);
                        if (m == null) break;
                        publishTime.put(p + "/" + offsetOf(m.getMessageId()), m.getPublishTime());
                    }
                }
            }

            Mismatches bad = new Mismatches();
            int maxBatchIndex = -1;
            Map<Integer, List<Sent>> byPartition = new HashMap<>();
            for (Sent s : sent) {
                MessageIdAdv id = (MessageIdAdv) s.id();
                maxBatchIndex = Math.max(maxBatchIndex, id.getBatchIndex());
                if (!batched) bad.check("send #" + s.i(), "receipt batch index (batching disabled)", id.getBatchIndex(), -1);
                if (id.getPartitionIndex() >= 0) bad.check("send #" + s.i(), "receipt partition", id.getPartitionIndex(), s.partition());
                byPartition.computeIfAbsent(s.partition(), k -> new ArrayList<>()).add(s);
            }
            if (batched && maxBatchIndex <= 0) bad.add("batched producer: no receipt had a batch index > 0");

            // 3. Consume with the Java Kafka consumer: no group, assign + seekToBeginning.
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < PARTITIONS; p++) tps.add(new TopicPartition(topic, p));
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
            Map<TopicPartition, Long> ends;
            try (KafkaConsumer<byte[], byte[]> consumer =
                         new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                consumer.assign(tps);
                consumer.seekToBeginning(tps);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                int total = 0;
                while (total < MESSAGES && System.nanoTime() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
                        got.computeIfAbsent(rec.partition(), k -> new ArrayList<>()).add(rec);
                        total++;
                    }
                }
                // anything beyond what was sent?
                for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofSeconds(2))) {
                    got.computeIfAbsent(rec.partition(), k -> new ArrayList<>()).add(rec);
                }
                ends = consumer.endOffsets(tps, Duration.ofSeconds(30));
            }

            for (int p = 0; p < PARTITIONS; p++) {
                List<Sent> want = byPartition.getOrDefault(p, List.of());
                List<ConsumerRecord<byte[], byte[]>> recs = got.getOrDefault(p, List.of());
                String tp = topic + "-" + p;
                if (recs.size() != want.size()) bad.add(tp + ": consumed " + recs.size() + " records, want " + want.size());
                for (int k = 0; k < Math.min(recs.size(), want.size()); k++) {
                    Sent s = want.get(k);
                    ConsumerRecord<byte[], byte[]> rec = recs.get(k);
                    long wantOffset = offsetOf(s.id());
                    String where = tp + " message #" + s.i() + " " + idText(s.id());
                    bad.check(where, "offset " + splitOffset(rec.offset()), rec.offset(), wantOffset);
                    bad.check(where, "key", rec.key(), s.key());
                    bad.check(where, "value", rec.value(), s.value());
                    List<Map.Entry<String, String>> headers = new ArrayList<>();
                    for (Header h : rec.headers()) {
                        headers.add(Map.entry(h.key(), h.value() == null ? "<null>" : new String(h.value(), UTF_8)));
                    }
                    bad.check(where, "headers", headers, s.props());
                    Long wantTs = s.eventTime() != null ? s.eventTime() : publishTime.get(p + "/" + wantOffset);
                    bad.check(where, "timestamp" + (s.eventTime() == null ? " (publish time)" : " (event time)"),
                            rec.timestamp(), wantTs);
                    bad.check(where, "timestampType", rec.timestampType(), TimestampType.CREATE_TIME);
                }
                if (!want.isEmpty()) {
                    long last = offsetOf(want.get(want.size() - 1).id());
                    bad.check(tp, "endOffsets", ends.get(new TopicPartition(topic, p)), last + 1);
                }
            }
            System.out.println("[pulsar-interop-java diagnostics] pulsar->kafka " + mode + ": " + MESSAGES
                    + " messages, largest receipt batch index " + maxBatchIndex);
            if (!bad.lines.isEmpty()) fail(bad.report("Pulsar (" + mode + ") -> Kafka on " + topic));
        }
    }
}

package gateway.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidTimestampException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * offsetsForTimes on records whose timestamps the producer set, two hours in the past, first
 * rising and then out of order: the answer is the first record, in log order, whose timestamp is
 * at or after the target (null when none is), whatever the time the records were written. A
 * record more than an hour in the future is refused (Kafka 4's default
 * message.timestamp.after.max.ms). Proved against Apache Kafka first (README).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class OffsetsForTimesTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static final long MINUTE = 60_000;
    static AdminClient admin;
    static String topic;

    @BeforeAll
    static void setUp() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        admin = AdminClient.create(p);
        topic = "by-time-" + UUID.randomUUID().toString().substring(0, 8);
        admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
    }

    @AfterAll
    static void tearDown() throws Exception {
        if (admin != null) {
            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
            admin.close();
        }
    }

    static KafkaProducer<String, String> producer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.RETRIES_CONFIG, "0");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    @Test
    void theFirstRecordAtOrAfterTheTargetInLogOrder() throws Exception {
        long base = System.currentTimeMillis() - 120 * MINUTE;
        // Minutes after `base`: rising, then out of order.
        long[] minutes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 30, 5, 45, 15, 60, 25, 90, 10, 70, 40};
        TopicPartition tp = new TopicPartition(topic, 0);
        List<Long> offsets = new ArrayList<>();
        try (KafkaProducer<String, String> producer = producer()) {
            for (int i = 0; i < minutes.length; i++) {
                offsets.add(producer.send(new ProducerRecord<>(topic, 0, base + minutes[i] * MINUTE, null, "r" + i))
                        .get(30, TimeUnit.SECONDS).offset());
            }
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            // Target (minutes after base, or a fraction) -> index of the expected record, -1 for none.
            double[][] cases = {{-1, 0}, {0, 0}, {5.5, 6}, {9, 9}, {9.5, 10}, {20, 10}, {31, 12}, {50, 14}, {61, 16}, {85, 16}, {90, 16}, {91, -1}};
            for (double[] k : cases) {
                long target = base + (long) (k[0] * MINUTE);
                OffsetAndTimestamp got = c.offsetsForTimes(Map.of(tp, target)).get(tp);
                int want = (int) k[1];
                if (want < 0) {
                    assertNull(got, "target +" + k[0] + " min");
                } else {
                    assertEquals(offsets.get(want), got == null ? null : got.offset(), "target +" + k[0] + " min");
                    assertEquals(base + minutes[want] * MINUTE, got.timestamp(), "timestamp for +" + k[0] + " min");
                }
            }
        }
        System.out.println("[offsets-for-times] 12 targets over 20 records two hours old");
    }

    @Test
    void aRecordMoreThanAnHourAheadIsRefused() {
        try (KafkaProducer<String, String> producer = producer()) {
            ExecutionException e = assertThrows(ExecutionException.class, () -> producer.send(
                    new ProducerRecord<>(topic, 0, System.currentTimeMillis() + 2 * 60 * MINUTE, null, "future"))
                    .get(30, TimeUnit.SECONDS));
            assertInstanceOf(InvalidTimestampException.class, e.getCause());
        }
    }
}

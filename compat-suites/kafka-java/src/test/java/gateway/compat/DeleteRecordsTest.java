package gateway.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
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
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * DeleteRecords through the AdminClient against whatever serves {@code -Dbootstrap.servers}: the
 * low watermark moves to the offset given, beginningOffsets and a consumer reading from the
 * beginning start there, a fetch below it is out of range, it never moves back, and an offset
 * past the end is refused. Proved against Apache Kafka first (README).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DeleteRecordsTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static AdminClient admin;
    static String topic;

    @BeforeAll
    static void setUp() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        admin = AdminClient.create(p);
        topic = "delete-records-" + UUID.randomUUID().toString().substring(0, 8);
        admin.createTopics(Collections.singleton(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
    }

    @AfterAll
    static void tearDown() throws Exception {
        if (admin != null) {
            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
            admin.close();
        }
    }

    /** Sends `count` records to a partition; returns their offsets. */
    static List<Long> produce(int partition, int count) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        List<Long> offsets = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < count; i++) {
                offsets.add(producer.send(new ProducerRecord<>(topic, partition, null, "r" + i)).get(30, TimeUnit.SECONDS).offset());
            }
        }
        return offsets;
    }

    static KafkaConsumer<String, String> consumer(String reset) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, reset);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    static long deleteBefore(TopicPartition tp, long offset) throws Exception {
        return admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(offset)))
                .lowWatermarks().get(tp).get(30, TimeUnit.SECONDS).lowWatermark();
    }

    /** Everything readable from the beginning of the partition until its end offset. */
    static List<ConsumerRecord<String, String>> readFromBeginning(TopicPartition tp) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer("earliest")) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (c.position(tp) < end && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(200)).records(tp).forEach(out::add);
            }
        }
        return out;
    }

    @Test
    void theLowWatermarkMovesAndHidesWhatLiesBefore() throws Exception {
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        List<Long> offsets = produce(0, 100);
        produce(1, 50);

        long cut = offsets.get(40);
        assertEquals(cut, deleteBefore(p0, cut));
        assertEquals(cut, (long) admin.listOffsets(Map.of(p0, org.apache.kafka.clients.admin.OffsetSpec.earliest()))
                .partitionResult(p0).get(30, TimeUnit.SECONDS).offset());
        try (KafkaConsumer<String, String> c = consumer("none")) {
            assertEquals(cut, (long) c.beginningOffsets(List.of(p0)).get(p0));
        }
        List<ConsumerRecord<String, String>> rest = readFromBeginning(p0);
        assertEquals(60, rest.size());
        assertEquals(cut, rest.get(0).offset());
        assertEquals("r40", rest.get(0).value());

        // A fetch below the low watermark is out of range.
        try (KafkaConsumer<String, String> c = consumer("none")) {
            c.assign(List.of(p0));
            c.seek(p0, offsets.get(0));
            assertThrows(OffsetOutOfRangeException.class, () -> {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (System.nanoTime() < deadline) {
                    c.poll(Duration.ofMillis(200));
                }
            });
        }

        // It never moves back; past the end is refused.
        assertEquals(cut, deleteBefore(p0, offsets.get(10)));
        long end0;
        try (KafkaConsumer<String, String> c = consumer("none")) {
            end0 = c.endOffsets(List.of(p0)).get(p0);
        }
        ExecutionException past = assertThrows(ExecutionException.class, () -> deleteBefore(p0, end0 + 1000));
        assertInstanceOf(org.apache.kafka.common.errors.OffsetOutOfRangeException.class, past.getCause());

        // Up to the end: nothing left to read, and new records are read.
        long end1;
        try (KafkaConsumer<String, String> c = consumer("none")) {
            end1 = c.endOffsets(List.of(p1)).get(p1);
        }
        assertEquals(end1, deleteBefore(p1, end1));
        assertTrue(readFromBeginning(p1).isEmpty());
        produce(1, 5);
        assertEquals(5, readFromBeginning(p1).size());
        System.out.println("[delete-records] p0 low watermark " + cut + ", p1 " + end1);
    }
}

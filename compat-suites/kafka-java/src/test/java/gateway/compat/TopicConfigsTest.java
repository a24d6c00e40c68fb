package gateway.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Topic configs through the AdminClient, against whatever serves {@code -Dbootstrap.servers}:
 * configs given at creation are reported back (by CreateTopics and DescribeConfigs) with the
 * topic as their source, unset ones with their defaults; incremental changes (set, delete,
 * append, subtract) and validate-only requests; unknown names and bad values refused with
 * InvalidConfigurationException; {@code message.timestamp.type=LogAppendTime} and
 * {@code max.message.bytes} applied to what is produced. Proved against Apache Kafka first
 * (README).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TopicConfigsTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static AdminClient admin;
    static final List<String> topics = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "compat-configs");
        admin = AdminClient.create(p);
    }

    @AfterAll
    static void tearDown() throws Exception {
        if (admin == null) {
            return;
        }
        try {
            admin.deleteTopics(topics).all().get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            System.err.println("cleanup: " + e);
        }
        admin.close();
    }

    static String freshTopic(String what) {
        String name = "configs-" + what + "-" + UUID.randomUUID().toString().substring(0, 8);
        topics.add(name);
        return name;
    }

    static Config describe(String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        return admin.describeConfigs(Collections.singleton(r)).all().get(30, TimeUnit.SECONDS).get(r);
    }

    static void assertEntry(Config config, String name, String value, ConfigEntry.ConfigSource source) {
        ConfigEntry e = config.get(name);
        assertNotNull(e, name + " is not described");
        assertEquals(value, e.value(), name);
        assertEquals(source, e.source(), name + " source");
    }

    static void alter(String topic, AlterConfigOp... ops) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        admin.incrementalAlterConfigs(Collections.singletonMap(r, Arrays.asList(ops)))
                .all().get(30, TimeUnit.SECONDS);
    }

    static AlterConfigOp op(String name, String value, AlterConfigOp.OpType type) {
        return new AlterConfigOp(new ConfigEntry(name, value), type);
    }

    static Throwable cause(ExecutionException e) {
        return e.getCause();
    }

    @Test
    void configsGivenAtCreationAreReported() throws Exception {
        String topic = freshTopic("create");
        Map<String, String> configs = new HashMap<>();
        configs.put("cleanup.policy", "compact");
        configs.put("retention.ms", "3600000");
        configs.put("segment.bytes", "52428800");
        configs.put("min.compaction.lag.ms", "1000");
        CreateTopicsResult created = admin.createTopics(Collections.singleton(
                new NewTopic(topic, 3, (short) 1).configs(configs)));
        created.all().get(30, TimeUnit.SECONDS);
        Config reported = created.config(topic).get(30, TimeUnit.SECONDS);
        assertEntry(reported, "cleanup.policy", "compact", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(reported, "retention.ms", "3600000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

        Config described = describe(topic);
        assertEntry(described, "cleanup.policy", "compact", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "retention.ms", "3600000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "segment.bytes", "52428800", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "min.compaction.lag.ms", "1000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "delete.retention.ms", "86400000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        assertEntry(described, "min.cleanable.dirty.ratio", "0.5", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        System.out.println("[configs] created with 4 configs; " + described.entries().size() + " described");
    }

    @Test
    void aTopicWithoutConfigsHasKafkasDefaults() throws Exception {
        String topic = freshTopic("defaults");
        admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1)))
                .all().get(30, TimeUnit.SECONDS);
        Config described = describe(topic);
        assertEntry(described, "cleanup.policy", "delete", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        assertEntry(described, "retention.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        assertEntry(described, "retention.bytes", "-1", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
    }

    @Test
    void unknownNamesAndBadValuesAreRefused() throws Exception {
        for (Map.Entry<String, String> bad : Map.of(
                "no.such.config", "1",
                "retention.ms", "soon",
                "cleanup.policy", "shred",
                "min.cleanable.dirty.ratio", "2").entrySet()) {
            // Never created, so not in the clean-up list.
            String topic = "configs-bad-" + UUID.randomUUID().toString().substring(0, 8);
            ExecutionException e = assertThrows(ExecutionException.class, () -> admin.createTopics(
                    Collections.singleton(new NewTopic(topic, 1, (short) 1)
                            .configs(Collections.singletonMap(bad.getKey(), bad.getValue()))))
                    .all().get(30, TimeUnit.SECONDS), bad.toString());
            assertInstanceOf(InvalidConfigurationException.class, cause(e), bad.toString());
            // Nothing was created.
            ExecutionException missing = assertThrows(ExecutionException.class, () -> describe(topic));
            assertInstanceOf(UnknownTopicOrPartitionException.class, cause(missing), bad.toString());
        }
    }

    @Test
    void incrementalChanges() throws Exception {
        String topic = freshTopic("alter");
        admin.createTopics(Collections.singleton(new NewTopic(topic, 2, (short) 1)
                        .configs(Map.of("cleanup.policy", "compact", "segment.bytes", "52428800"))))
                .all().get(30, TimeUnit.SECONDS);

        alter(topic,
                op("retention.ms", "7200000", AlterConfigOp.OpType.SET),
                op("cleanup.policy", "delete", AlterConfigOp.OpType.APPEND),
                op("segment.bytes", null, AlterConfigOp.OpType.DELETE));
        Config c = describe(topic);
        assertEntry(c, "retention.ms", "7200000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(c, "cleanup.policy", "compact,delete", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(c, "segment.bytes", "1073741824", ConfigEntry.ConfigSource.DEFAULT_CONFIG);

        alter(topic, op("cleanup.policy", "compact", AlterConfigOp.OpType.SUBTRACT));
        assertEntry(describe(topic), "cleanup.policy", "delete", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

        // Appending to a config that is not a list is refused, and so is a bad value; neither
        // changes anything, nor does the good change sent with them.
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        for (AlterConfigOp bad : List.of(
                op("retention.ms", "1", AlterConfigOp.OpType.APPEND),
                op("retention.bytes", "lots", AlterConfigOp.OpType.SET))) {
            ExecutionException e = assertThrows(ExecutionException.class, () ->
                    admin.incrementalAlterConfigs(Collections.singletonMap(r, List.of(
                            op("segment.ms", "60000", AlterConfigOp.OpType.SET), bad)))
                            .all().get(30, TimeUnit.SECONDS), bad.toString());
            assertInstanceOf(InvalidConfigurationException.class, cause(e), bad.toString());
        }
        assertEntry(describe(topic), "segment.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);

        // Validate-only: checked, not applied.
        admin.incrementalAlterConfigs(
                        Collections.singletonMap(r, List.of(op("segment.ms", "60000", AlterConfigOp.OpType.SET))),
                        new AlterConfigsOptions().validateOnly(true))
                .all().get(30, TimeUnit.SECONDS);
        assertEntry(describe(topic), "segment.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);

        // Deleting a topic config returns it to its default.
        alter(topic, op("retention.ms", null, AlterConfigOp.OpType.DELETE));
        assertEntry(describe(topic), "retention.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
    }

    @Test
    void describingAMissingTopicFails() {
        ExecutionException e = assertThrows(ExecutionException.class,
                () -> describe("configs-missing-" + UUID.randomUUID()));
        assertInstanceOf(UnknownTopicOrPartitionException.class, cause(e));
    }

    static KafkaProducer<byte[], byte[]> producer(Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 20000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000);
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    /** Every record of partition 0, from the beginning to its end offset. */
    static List<ConsumerRecord<byte[], byte[]>> readAll(String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            long deadline = System.currentTimeMillis() + 30_000;
            while (c.position(tp) < end && System.currentTimeMillis() < deadline) {
                c.poll(java.time.Duration.ofMillis(200)).forEach(out::add);
            }
        }
        return out;
    }

    /**
     * On a LogAppendTime topic the broker's append time replaces the producer's timestamps: the
     * producer's RecordMetadata and the consumer both report it, whatever the record said, and a
     * timestamp far ahead, refused on a CreateTime topic, is not checked at all.
     */
    @Test
    void logAppendTimeReplacesTheProducersTimestamps() throws Exception {
        String topic = freshTopic("append-time");
        admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1)
                        .configs(Map.of("message.timestamp.type", "LogAppendTime"))))
                .all().get(30, TimeUnit.SECONDS);
        assertEntry(describe(topic), "message.timestamp.type", "LogAppendTime",
                ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

        long hour = 3_600_000L;
        long before = System.currentTimeMillis();
        List<RecordMetadata> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            for (long ts : new long[] {before - 5 * hour, before + 2 * hour, before}) {
                sent.add(p.send(new ProducerRecord<>(topic, 0, ts, null, ("at " + ts).getBytes()))
                        .get(30, TimeUnit.SECONDS));
            }
        }
        long after = System.currentTimeMillis();
        for (RecordMetadata m : sent) {
            // Within a second of the wall clock here: the gateway's clock and ours.
            assertTrue(m.timestamp() >= before - 1000 && m.timestamp() <= after + 1000,
                    "append time " + m.timestamp() + " not in [" + before + ", " + after + "]");
        }
        List<ConsumerRecord<byte[], byte[]>> read = readAll(topic);
        assertEquals(3, read.size());
        for (int i = 0; i < 3; i++) {
            assertEquals(TimestampType.LOG_APPEND_TIME, read.get(i).timestampType());
            assertEquals(sent.get(i).offset(), read.get(i).offset());
            assertEquals(sent.get(i).timestamp(), read.get(i).timestamp(), "record " + i);
        }

        // A search by time goes by the append times: none is a minute past the last, although
        // the producer gave one record a time two hours ahead.
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cp)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            assertNull(c.offsetsForTimes(Map.of(tp, after + 60_000)).get(tp));
            assertEquals(sent.get(0).offset(), c.offsetsForTimes(Map.of(tp, before - 1000)).get(tp).offset());
        }

        // Back to CreateTime: new records keep their own timestamps, those before keep theirs.
        alter(topic, op("message.timestamp.type", "CreateTime", AlterConfigOp.OpType.SET));
        long own = before - 5 * hour;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            RecordMetadata m = p.send(new ProducerRecord<>(topic, 0, own, null, "own".getBytes()))
                    .get(30, TimeUnit.SECONDS);
            assertEquals(own, m.timestamp());
        }
        read = readAll(topic);
        assertEquals(4, read.size());
        assertEquals(TimestampType.LOG_APPEND_TIME, read.get(0).timestampType());
        assertEquals(TimestampType.CREATE_TIME, read.get(3).timestampType());
        assertEquals(own, read.get(3).timestamp());
        System.out.println("[configs] LogAppendTime: 3 records stamped with the append time, then CreateTime");
    }

    /**
     * max.message.bytes bounds a record batch as produced (after compression): a single record
     * above it fails with RecordTooLargeException, a batch of small records above it is split by
     * the client and lands whole, and raising the limit lets the large record through.
     */
    @Test
    void maxMessageBytesBoundsWhatIsProduced() throws Exception {
        String topic = freshTopic("max-bytes");
        admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1)
                        .configs(Map.of("max.message.bytes", "2000"))))
                .all().get(30, TimeUnit.SECONDS);
        assertEntry(describe(topic), "max.message.bytes", "2000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

        byte[] large = new byte[5000];
        // kafka-clients 2.8.2 splits a refused batch by batch.size, not by the topic's limit, so
        // it sends the same batch again and again: on Kafka 4.3.1 its send recursed until a
        // StackOverflowError. With it, records are sent one at a time.
        boolean splits = TransactionsTest.CLIENT_MAJOR >= 4;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, splits ? 200 : 0))) {
            if (splits) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> p.send(new ProducerRecord<>(topic, 0, null, large)).get(30, TimeUnit.SECONDS));
                assertInstanceOf(RecordTooLargeException.class, e.getCause());
            }
            // Twenty 300-byte records linger into one batch of about 6 KB.
            List<java.util.concurrent.Future<RecordMetadata>> small = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                byte[] value = new byte[300];
                value[0] = (byte) i;
                small.add(p.send(new ProducerRecord<>(topic, 0, null, value)));
                if (!splits) {
                    small.get(i).get(30, TimeUnit.SECONDS);
                }
            }
            for (java.util.concurrent.Future<RecordMetadata> f : small) {
                f.get(30, TimeUnit.SECONDS);
            }
        }
        List<ConsumerRecord<byte[], byte[]>> read = readAll(topic);
        assertEquals(20, read.size());
        for (int i = 0; i < 20; i++) {
            assertEquals((byte) i, read.get(i).value()[0]);
        }

        alter(topic, op("max.message.bytes", "10000", AlterConfigOp.OpType.SET));
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            p.send(new ProducerRecord<>(topic, 0, null, large)).get(30, TimeUnit.SECONDS);
        }
        assertEquals(21, readAll(topic).size());
        System.out.println("[configs] max.message.bytes: a 5,000-byte record refused at 2000, 20 small ones split and kept");
    }
}

package gateway.compat;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.reflect.Method;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLongArray;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeTopicsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Kafka round trip through whatever serves {@code -Dbootstrap.servers}: admin
 * topic creation, idempotent acks=all produce with every codec, group-less
 * consume with byte-exact comparison, and ListOffsets (earliest, latest,
 * by timestamp). The source compiles against kafka-clients 2.8 and 4.x alike.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class KafkaRoundTripTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static final String CLIENT = "kafka-clients " + System.getProperty("kafka.version", "?");
    static final int PARTITIONS = 6;
    static final int RECORDS = 20_000;
    static final Duration OP_TIMEOUT = Duration.ofSeconds(30);

    static AdminClient admin;
    static final List<String> topics = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "compat-admin");
        admin = AdminClient.create(p);
        log("bootstrap " + BOOTSTRAP);
    }

    @AfterAll
    static void tearDown() {
        if (admin == null) return;
        try {
            // Best effort: leaving topics behind must not fail the suite.
            if (!topics.isEmpty()) admin.deleteTopics(topics).all().get(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            log("could not delete test topics " + topics + ": " + e);
        }
        admin.close(Duration.ofSeconds(5));
    }

    // ---- step 1: cluster and topic metadata ---------------------------------

    @Test
    @Order(1)
    @Timeout(60)
    void describeClusterAndCreateTopic() throws Exception {
        Collection<Node> nodes = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
        assertFalse(nodes.isEmpty(), "describeCluster returned no nodes");
        for (Node n : nodes) {
            assertTrue(n.id() >= 0 && n.port() > 0 && !n.host().isEmpty(), "bad node in describeCluster: " + n);
        }
        String topic = createTopic("meta");
        Map<String, TopicDescription> again = describeTopics(topic);
        assertEquals(PARTITIONS, again.get(topic).partitions().size());
        log("cluster nodes " + nodes + ", topic " + topic + " has " + PARTITIONS + " partitions");
    }

    // ---- steps 2 + 3: produce every codec, consume and compare ---------------

    @ParameterizedTest(name = "round trip, compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    @Order(2)
    @Timeout(180)
    void roundTrip(String codec) throws Exception {
        String topic = createTopic("rt-" + codec);
        long now = System.currentTimeMillis();
        List<Rec> sent = generate(codec.hashCode(), RECORDS, now);

        long t0 = System.nanoTime();
        produce(topic, codec, sent);
        long t1 = System.nanoTime();

        List<TopicPartition> tps = partitions(topic);
        try (KafkaConsumer<byte[], byte[]> consumer = consumer()) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(tps, OP_TIMEOUT);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, OP_TIMEOUT);
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got = readToEnd(consumer, tps, end);
            compare(sent, got);
            checkBeginEnd(got, begin, end);
        }
        long t2 = System.nanoTime();
        log(String.format("%s: %d records produced in %d ms, consumed+verified in %d ms (%d offset gaps)",
                codec, RECORDS, (t1 - t0) / 1_000_000, (t2 - t1) / 1_000_000, offsetGaps(sent)));
    }

    // ---- step 4: ListOffsets by timestamp, earliest and latest ---------------

    @Test
    @Order(3)
    @Timeout(120)
    void offsetsForTimes() throws Exception {
        String topic = createTopic("ts");
        int perPartition = 50;
        List<Rec> first = new ArrayList<>();
        List<Rec> second = new ArrayList<>();
        for (int i = 0; i < perPartition * PARTITIONS; i++) {
            // timestamp -1 = let the producer stamp it with "now" at send() time
            first.add(new Rec(i % PARTITIONS, ("k" + i).getBytes(UTF_8), ("first-" + i).getBytes(UTF_8), List.of(), -1));
            second.add(new Rec(i % PARTITIONS, ("k" + i).getBytes(UTF_8), ("second-" + i).getBytes(UTF_8), List.of(), -1));
        }
        produce(topic, "none", first);       // returns after flush()
        Thread.sleep(50);
        long t = System.currentTimeMillis();
        produce(topic, "none", second);
        for (Rec r : first) assertTrue(r.mdTimestamp < t, "first-group record stamped " + r.mdTimestamp + " >= T=" + t);
        for (Rec r : second) assertTrue(r.mdTimestamp >= t, "second-group record stamped " + r.mdTimestamp + " < T=" + t);

        List<TopicPartition> tps = partitions(topic);
        try (KafkaConsumer<byte[], byte[]> consumer = consumer()) {
            Map<TopicPartition, Long> query = new HashMap<>();
            Map<TopicPartition, Long> queryZero = new HashMap<>();
            Map<TopicPartition, Long> queryFuture = new HashMap<>();
            for (TopicPartition tp : tps) {
                query.put(tp, t);
                queryZero.put(tp, 0L);
                queryFuture.put(tp, t + 3_600_000L);
            }
            Map<TopicPartition, OffsetAndTimestamp> atT = consumer.offsetsForTimes(query, OP_TIMEOUT);
            Map<TopicPartition, OffsetAndTimestamp> atZero = consumer.offsetsForTimes(queryZero, OP_TIMEOUT);
            Map<TopicPartition, OffsetAndTimestamp> atFuture = consumer.offsetsForTimes(queryFuture, OP_TIMEOUT);
            for (TopicPartition tp : tps) {
                Rec firstOfFirst = firstOn(first, tp.partition());
                Rec firstOfSecond = firstOn(second, tp.partition());
                OffsetAndTimestamp o = atT.get(tp);
                assertNotNull(o, "offsetsForTimes(T) returned nothing for " + tp);
                assertEquals(firstOfSecond.offset, o.offset(), "offsetsForTimes(T) offset on " + tp);
                assertEquals(firstOfSecond.mdTimestamp, o.timestamp(), "offsetsForTimes(T) timestamp on " + tp);
                OffsetAndTimestamp z = atZero.get(tp);
                assertNotNull(z, "offsetsForTimes(0) returned nothing for " + tp);
                assertEquals(firstOfFirst.offset, z.offset(), "offsetsForTimes(0) offset on " + tp);
                assertEquals(firstOfFirst.mdTimestamp, z.timestamp(), "offsetsForTimes(0) timestamp on " + tp);
                assertNull(atFuture.get(tp), "offsetsForTimes(T+1h) must find no record on " + tp);
            }

            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(tps, OP_TIMEOUT);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, OP_TIMEOUT);
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got = readToEnd(consumer, tps, end);
            List<Rec> all = new ArrayList<>(first);
            all.addAll(second);
            compare(all, got);
            checkBeginEnd(got, begin, end);
        }
        log("offsetsForTimes: T=" + t + " resolved to the first record of the second group on all " + PARTITIONS + " partitions");
    }

    // ---- helpers --------------------------------------------------------------

    /** One record as sent, plus what the producer's RecordMetadata reported. */
    static final class Rec {
        final int partition;
        final byte[] key;
        final byte[] value;
        final List<Header> headers;
        final long timestamp; // -1: producer default (now)
        volatile long offset = -1;
        volatile long mdTimestamp = -1;

        Rec(int partition, byte[] key, byte[] value, List<Header> headers, long timestamp) {
            this.partition = partition;
            this.key = key;
            this.value = value;
            this.headers = headers;
            this.timestamp = timestamp;
        }
    }

    /** Deterministic mix of null/empty/text/binary keys and values, tricky headers, explicit timestamps. */
    static List<Rec> generate(long seed, int n, long now) {
        Random rnd = new Random(seed);
        String text = "the quick brown fox jumps over the lazy dog 0123456789 ";
        List<Rec> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int k = rnd.nextInt(100);
            byte[] key = k < 15 ? null
                    : k < 20 ? new byte[0]
                    : k < 70 ? ("key-" + i).getBytes(UTF_8)
                    : bytes(rnd, 1 + rnd.nextInt(64));
            int v = rnd.nextInt(100);
            byte[] value;
            if (v < 5) value = null;                       // tombstone
            else if (v < 8) value = new byte[0];
            else if (v < 50) value = text.repeat(1 + rnd.nextInt(20)).substring(rnd.nextInt(10)).getBytes(UTF_8);
            else if (v < 98) value = bytes(rnd, 1 + rnd.nextInt(700));
            else value = bytes(rnd, 4096 + rnd.nextInt(16384));
            List<Header> headers = new ArrayList<>();
            int h = rnd.nextInt(10);
            if (h >= 3) headers.add(new RecordHeader("trace-id", ("t-" + i).getBytes(UTF_8)));
            if (h >= 5) {                                  // duplicate keys, order matters
                headers.add(new RecordHeader("dup", bytes(rnd, rnd.nextInt(16))));
                headers.add(new RecordHeader("dup", bytes(rnd, rnd.nextInt(16))));
            }
            if (h >= 7) headers.add(new RecordHeader("bin\u00e9-\u043a\u043b\u044e\u0447", bytes(rnd, rnd.nextInt(300))));
            if (h == 9) headers.add(new RecordHeader("null-value", (byte[]) null));
            if (h == 8) headers.add(new RecordHeader("empty-value", new byte[0]));
            long ts = now - 3_600_000L + rnd.nextInt(3_600_000); // not monotonic on purpose
            out.add(new Rec(rnd.nextInt(PARTITIONS), key, value, headers, ts));
        }
        return out;
    }

    static byte[] bytes(Random rnd, int len) {
        byte[] b = new byte[len];
        rnd.nextBytes(b);
        return b;
    }

    static String createTopic(String label) throws Exception {
        String topic = "compat-" + label + "-" + UUID.randomUUID().toString().substring(0, 8);
        admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
        topics.add(topic);
        TopicDescription d = describeTopics(topic).get(topic);
        assertNotNull(d, "describeTopics did not return " + topic);
        assertEquals(PARTITIONS, d.partitions().size(), "describeTopics partition count of " + topic);
        for (int i = 0; i < PARTITIONS; i++) {
            assertEquals(i, d.partitions().get(i).partition(), "partition list of " + topic);
            assertNotNull(d.partitions().get(i).leader(), "no leader for " + topic + "-" + i);
        }
        return topic;
    }

    /**
     * describeTopics across client versions: 2.x only has all(), 4.x only
     * allTopicNames(). Unknown-topic right after creation is retried briefly,
     * as metadata propagation is asynchronous even in real Kafka.
     */
    @SuppressWarnings("unchecked")
    static Map<String, TopicDescription> describeTopics(String topic) throws Exception {
        Method all;
        try {
            all = DescribeTopicsResult.class.getMethod("allTopicNames");
        } catch (NoSuchMethodException e) {
            all = DescribeTopicsResult.class.getMethod("all");
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (true) {
            DescribeTopicsResult r = admin.describeTopics(List.of(topic));
            try {
                return ((KafkaFuture<Map<String, TopicDescription>>) all.invoke(r)).get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException) || System.nanoTime() > deadline) throw e;
                Thread.sleep(200);
            }
        }
    }

    static List<TopicPartition> partitions(String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) tps.add(new TopicPartition(topic, p));
        return tps;
    }

    /** Sends all records with an idempotent acks=all producer; records metadata; fails on any error. */
    static void produce(String topic, String codec, List<Rec> recs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "compat-producer-" + codec);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true"); // default in 3.x+, explicit for 2.x
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
        AtomicIntegerArray mdPartition = new AtomicIntegerArray(recs.size());
        AtomicLongArray mdOffset = new AtomicLongArray(recs.size());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < recs.size(); i++) {
                Rec r = recs.get(i);
                final int idx = i;
                mdOffset.set(i, -1);
                producer.send(new ProducerRecord<>(topic, r.partition, r.timestamp < 0 ? null : r.timestamp,
                        r.key, r.value, r.headers), (md, ex) -> {
                    if (ex != null) {
                        errors.add("record " + idx + " -> partition " + r.partition + ": " + ex);
                    } else {
                        mdPartition.set(idx, md.partition());
                        r.mdTimestamp = md.timestamp();
                        mdOffset.set(idx, md.offset());
                    }
                });
            }
            producer.flush();
        }
        if (!errors.isEmpty()) {
            fail(errors.size() + " of " + recs.size() + " sends failed (" + codec + "); first: " + errors.peek());
        }
        long[] lastOffset = new long[PARTITIONS];
        Arrays.fill(lastOffset, -1);
        for (int i = 0; i < recs.size(); i++) {
            Rec r = recs.get(i);
            r.offset = mdOffset.get(i);
            assertTrue(r.offset >= 0, "record " + i + ": no offset in RecordMetadata (" + r.offset + ")");
            assertEquals(r.partition, mdPartition.get(i), "record " + i + ": RecordMetadata partition");
            assertTrue(r.offset > lastOffset[r.partition], "record " + i + ": offset " + r.offset
                    + " not above previous offset " + lastOffset[r.partition] + " on partition " + r.partition);
            lastOffset[r.partition] = r.offset;
            if (r.timestamp >= 0) assertEquals(r.timestamp, r.mdTimestamp, "record " + i + ": RecordMetadata timestamp");
        }
    }

    static KafkaConsumer<byte[], byte[]> consumer() {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, "compat-consumer");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false"); // no group.id: assign() only
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "2000");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    /** Polls until every partition's position reaches its end offset (bounded by a deadline). */
    static Map<Integer, List<ConsumerRecord<byte[], byte[]>>> readToEnd(
            KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> tps, Map<TopicPartition, Long> end) {
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
        for (TopicPartition tp : tps) got.put(tp.partition(), new ArrayList<>());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (true) {
            boolean done = true;
            for (TopicPartition tp : tps) {
                if (consumer.position(tp, OP_TIMEOUT) < end.get(tp)) done = false;
            }
            if (done) return got;
            if (System.nanoTime() > deadline) {
                StringBuilder s = new StringBuilder("consumer did not reach endOffsets within 90 s:");
                for (TopicPartition tp : tps) {
                    s.append(String.format(" [p%d position=%d end=%d read=%d]", tp.partition(),
                            consumer.position(tp, OP_TIMEOUT), end.get(tp), got.get(tp.partition()).size()));
                }
                fail(s.toString());
            }
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                got.get(r.partition()).add(r);
            }
        }
    }

    /** Per partition: same records, same order, byte-identical, at the offsets the producer was told. */
    static void compare(List<Rec> sent, Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got) {
        Map<Integer, List<Rec>> expected = new HashMap<>();
        for (int p = 0; p < PARTITIONS; p++) expected.put(p, new ArrayList<>());
        for (Rec r : sent) expected.get(r.partition).add(r);
        List<String> problems = new ArrayList<>();
        int total = 0;
        for (int p = 0; p < PARTITIONS; p++) {
            List<Rec> exp = expected.get(p);
            List<ConsumerRecord<byte[], byte[]>> act = got.get(p);
            total += act.size();
            if (exp.size() != act.size()) {
                problems.add("partition " + p + ": sent " + exp.size() + " records, consumed " + act.size());
            }
            for (int i = 0; i < Math.min(exp.size(), act.size()); i++) {
                String diff = diff(exp.get(i), act.get(i));
                if (diff != null) problems.add("partition " + p + " record #" + i + ": " + diff);
            }
        }
        if (!problems.isEmpty()) {
            fail(problems.size() + " mismatches (consumed " + total + " of " + sent.size() + "); first ones:\n  "
                    + String.join("\n  ", problems.subList(0, Math.min(10, problems.size()))));
        }
        assertEquals(sent.size(), total, "total consumed");
    }

    static String diff(Rec e, ConsumerRecord<byte[], byte[]> a) {
        if (a.offset() != e.offset) return "offset " + a.offset() + ", producer reported " + e.offset;
        if (!Arrays.equals(e.key, a.key())) return "key " + show(a.key()) + ", sent " + show(e.key);
        if (!Arrays.equals(e.value, a.value())) return "value " + show(a.value()) + ", sent " + show(e.value);
        if (a.timestampType() != TimestampType.CREATE_TIME) return "timestamp type " + a.timestampType();
        if (a.timestamp() != e.mdTimestamp) return "timestamp " + a.timestamp() + ", sent " + e.mdTimestamp;
        Header[] ah = a.headers().toArray();
        if (ah.length != e.headers.size()) return ah.length + " headers, sent " + e.headers.size();
        for (int i = 0; i < ah.length; i++) {
            Header x = e.headers.get(i);
            if (!x.key().equals(ah[i].key()) || !Arrays.equals(x.value(), ah[i].value())) {
                return "header " + i + " " + ah[i].key() + "=" + show(ah[i].value()) + ", sent " + x.key() + "=" + show(x.value());
            }
        }
        return null;
    }

    /** beginningOffsets/endOffsets must bracket what was read. */
    static void checkBeginEnd(Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got,
                              Map<TopicPartition, Long> begin, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            List<ConsumerRecord<byte[], byte[]>> recs = got.get(e.getKey().partition());
            long b = begin.get(e.getKey());
            if (recs.isEmpty()) {
                assertTrue(b <= e.getValue(), "beginningOffset " + b + " > endOffset " + e.getValue() + " on " + e.getKey());
                continue;
            }
            long firstRead = recs.get(0).offset();
            long lastRead = recs.get(recs.size() - 1).offset();
            assertTrue(b <= firstRead, "beginningOffset " + b + " > first read offset " + firstRead + " on " + e.getKey());
            assertTrue(e.getValue() > lastRead, "endOffset " + e.getValue() + " <= last read offset " + lastRead + " on " + e.getKey());
        }
    }

    /** Informational: how often offsets on a partition were not consecutive (allowed). */
    static int offsetGaps(List<Rec> sent) {
        long[] last = new long[PARTITIONS];
        Arrays.fill(last, -1);
        int gaps = 0;
        for (Rec r : sent) {
            if (last[r.partition] >= 0 && r.offset != last[r.partition] + 1) gaps++;
            last[r.partition] = r.offset;
        }
        return gaps;
    }

    static Rec firstOn(List<Rec> recs, int partition) {
        for (Rec r : recs) if (r.partition == partition) return r;
        throw new AssertionError("no record on partition " + partition);
    }

    static String show(byte[] b) {
        if (b == null) return "null";
        StringBuilder s = new StringBuilder("[" + b.length + " bytes");
        for (int i = 0; i < Math.min(8, b.length); i++) s.append(i == 0 ? ": " : " ").append(String.format("%02x", b[i]));
        return s.append(b.length > 8 ? " ...]" : "]").toString();
    }

    static void log(String msg) {
        System.out.println("[" + CLIENT + "] " + msg);
    }
}

package gateway.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.InvalidTxnStateException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka transactions against whatever serves {@code -Dbootstrap.servers}: commit and abort across
 * topics and partitions, read_committed vs read_uncommitted, the last stable offset holding back
 * read_committed readers while a transaction is open, zombie fencing, consume-transform-produce
 * with sendOffsetsToTransaction, the broker aborting a transaction past its timeout, and the
 * AdminClient's describeTransactions/listTransactions (clients 3.0+). Proved against Apache Kafka
 * first (README). Waits are hang guards only, never a bet on speed.
 *
 * <p>Some expectations depend on the cluster's finalized {@code transaction.version} feature
 * (KIP-890): at 2 (Kafka 4.x's default) a 4.x client sends EndTxn v5 and the coordinator bumps
 * the producer epoch at every transaction end; at 0/1 (older Kafka, a 4.x cluster formatted with
 * {@code --feature transaction.version=1} or {@code 0}, and the gateway, which does not advertise
 * the feature) neither happens. Each such expectation reads the level from
 * {@code Admin.describeFeatures()} and was proved on Kafka 4.3.1 at 0, 1 and 2.
 */
@Timeout(value = 240, unit = TimeUnit.SECONDS)
class TransactionsTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    /** The kafka-clients version on the classpath (AppInfoParser moved package in 4.x; its resource did not). */
    static final String CLIENT_VERSION = clientVersion();
    static final int CLIENT_MAJOR = Integer.parseInt(CLIENT_VERSION.split("\\.")[0]);
    static final String LOG = "[kafka-clients " + CLIENT_VERSION + "] transactions: ";
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static final String READ_COMMITTED = "read_committed";
    static final String READ_UNCOMMITTED = "read_uncommitted";
    static final Duration HANG_GUARD = Duration.ofSeconds(90);
    /** How long a reader that must get nothing more keeps polling to prove it. */
    static final Duration QUIET = Duration.ofSeconds(4);

    static AdminClient admin;
    static final List<String> topics = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "compat-tx-admin");
        admin = AdminClient.create(p);
    }

    @AfterAll
    static void tearDown() {
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

    // ---------------------------------------------------------------- helpers

    static String clientVersion() {
        try (java.io.InputStream in = KafkaProducer.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version").trim();
        } catch (Exception e) {
            throw new IllegalStateException("cannot read the kafka-clients version", e);
        }
    }

    static String freshTopic(String what, int partitions) throws Exception {
        String name = "tx-" + what + "-" + RUN;
        admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        topics.add(name);
        return name;
    }

    static String txId(String what) {
        return "compat-tx-" + what + "-" + RUN + "-" + CLIENT_VERSION;
    }

    static KafkaProducer<String, String> txProducer(String transactionalId, Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, transactionalId + "-" + UUID.randomUUID().toString().substring(0, 4));
        p.putAll(extra);
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    static KafkaProducer<String, String> txProducer(String transactionalId) {
        return txProducer(transactionalId, Map.of());
    }

    static KafkaProducer<String, String> plainProducer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    /** A consumer with the given isolation level; group-less unless {@code groupId} is given. */
    static KafkaConsumer<String, String> consumer(String isolation, String groupId) {
        return consumer(isolation, groupId, Map.of());
    }

    static KafkaConsumer<String, String> consumer(String isolation, String groupId, Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        if (groupId != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        }
        p.putAll(extra);
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    static KafkaConsumer<String, String> assigned(String isolation, List<TopicPartition> tps) {
        KafkaConsumer<String, String> c = consumer(isolation, null);
        c.assign(tps);
        c.seekToBeginning(tps);
        return c;
    }

    static ProducerRecord<String, String> record(String topic, int partition, String key, String value, Header... headers) {
        return new ProducerRecord<>(topic, partition, key, value, List.of(headers));
    }

    static Header header(String key, String value) {
        return new RecordHeader(key, value == null ? null : value.getBytes(StandardCharsets.UTF_8));
    }

    static RecordMetadata sendAndWait(KafkaProducer<String, String> producer, ProducerRecord<String, String> r) throws Exception {
        return producer.send(r).get(60, TimeUnit.SECONDS);
    }

    static boolean reachedEnd(KafkaConsumer<String, String> c, Collection<TopicPartition> tps) {
        Map<TopicPartition, Long> end = c.endOffsets(tps);
        return tps.stream().allMatch(tp -> c.position(tp) >= end.get(tp));
    }

    /**
     * Polls until at least {@code expected} records arrived and the position of every partition
     * reached its end offset (for read_committed: the last stable offset). Right after
     * commitTransaction returns the markers may not be written yet, hence the count.
     */
    static List<ConsumerRecord<String, String>> readUntil(KafkaConsumer<String, String> c, int expected) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        long deadline = System.nanoTime() + HANG_GUARD.toNanos();
        while (!(out.size() >= expected && reachedEnd(c, c.assignment()))) {
            assertTrue(System.nanoTime() < deadline, "hang guard: got " + out.size() + " of " + expected
                    + " records, positions " + positions(c) + ", end offsets " + c.endOffsets(c.assignment()));
            c.poll(Duration.ofMillis(200)).forEach(out::add);
        }
        return out;
    }

    static List<ConsumerRecord<String, String>> readAll(String isolation, List<TopicPartition> tps, int expected) {
        try (KafkaConsumer<String, String> c = assigned(isolation, tps)) {
            return readUntil(c, expected);
        }
    }

    static Map<TopicPartition, Long> readEndOffsets(String isolation, List<TopicPartition> tps) {
        try (KafkaConsumer<String, String> c = consumer(isolation, null)) {
            // The hang guard, not the 2.x client's default (request.timeout.ms, 30 s): Pulsar
            // 4.0.7 with transactions enabled sometimes holds a new topic for 30 s while its
            // transaction buffer recovery times out, then closes and reloads it (apache/pulsar#24401;
            // seen in CI on a gateway on Pulsar, with "Transaction buffer failed to recover
            // snapshot" in Pulsar's log).
            return c.endOffsets(tps, HANG_GUARD);
        }
    }

    /** Whether the consumer's group has committed every partition up to {@code end}. */
    static boolean committedAll(KafkaConsumer<String, String> c, List<TopicPartition> tps, Map<TopicPartition, Long> end) {
        Map<TopicPartition, OffsetAndMetadata> committed = c.committed(Set.copyOf(tps));
        return tps.stream().allMatch(tp -> committed.get(tp) != null && committed.get(tp).offset() >= end.get(tp));
    }

    /** Everything a consumer gets while polling for {@code d}. */
    static List<ConsumerRecord<String, String>> pollFor(KafkaConsumer<String, String> c, Duration d) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        long end = System.nanoTime() + d.toNanos();
        while (System.nanoTime() < end) {
            c.poll(Duration.ofMillis(200)).forEach(out::add);
        }
        return out;
    }

    static Map<TopicPartition, Long> positions(KafkaConsumer<String, String> c) {
        Map<TopicPartition, Long> m = new HashMap<>();
        c.assignment().forEach(tp -> m.put(tp, c.position(tp)));
        return m;
    }

    static List<String> values(List<ConsumerRecord<String, String>> records) {
        return records.stream().map(ConsumerRecord::value).collect(Collectors.toList());
    }

    static List<String> values(List<ConsumerRecord<String, String>> records, TopicPartition tp) {
        return records.stream().filter(r -> r.topic().equals(tp.topic()) && r.partition() == tp.partition())
                .map(ConsumerRecord::value).collect(Collectors.toList());
    }

    static List<String> numbered(String prefix, int n) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(prefix + i);
        }
        return out;
    }

    static String headersOf(Iterable<Header> headers) {
        StringBuilder sb = new StringBuilder();
        for (Header h : headers) {
            sb.append(h.key()).append('=')
                    .append(h.value() == null ? "null" : new String(h.value(), StandardCharsets.UTF_8)).append(';');
        }
        return sb.toString();
    }

    /** "Class: message <- Cause: message ..." for assertion messages and the log. */
    static String chain(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(c.getClass().getName()).append(": ").append(c.getMessage());
        }
        return sb.toString();
    }

    interface Action {
        void run() throws Exception;
    }

    /** Runs {@code a}, which must throw; returns what it threw (an ExecutionException unwrapped). */
    static Throwable failure(String what, Action a) {
        try {
            a.run();
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (Throwable t) {
            return t;
        }
        return fail(what + " succeeded; it must fail");
    }

    /** What was proved on Kafka 4.3.1 with kafka-clients 2.8.2 and 4.4.0; other majors are unproved. */
    static Class<?> byClientMajor(Class<?> clients2, Class<?> clients4) {
        switch (CLIENT_MAJOR) {
            case 2:
                return clients2;
            case 4:
                return clients4;
            default:
                return fail("no expectation proved against Kafka for kafka-clients " + CLIENT_VERSION);
        }
    }

    /**
     * The cluster's finalized {@code transaction.version} (KIP-890), as {@code describeFeatures}
     * (kafka-clients 2.7+, so on every client this suite runs) reports it. A feature finalized at
     * level 0, or not known to the broker at all, is absent from the map: that is level 0.
     */
    static int transactionVersion() throws Exception {
        FeatureMetadata features = admin.describeFeatures().featureMetadata().get(30, TimeUnit.SECONDS);
        FinalizedVersionRange tv = features.finalizedFeatures().get("transaction.version");
        int level = tv == null ? 0 : tv.maxVersionLevel();
        System.out.println(LOG + "finalized transaction.version " + level
                + (tv == null ? " (absent from the finalized features " + features.finalizedFeatures().keySet() + ")" : ""));
        return level;
    }

    /** What was proved on Kafka 4.3.1 formatted with transaction.version 0, 1 and 2; other levels are unproved. */
    static <T> T byTransactionVersion(int transactionVersion, T tv0or1, T tv2) {
        switch (transactionVersion) {
            case 0:
            case 1:
                return tv0or1;
            case 2:
                return tv2;
            default:
                return fail("no expectation proved against Kafka for transaction.version " + transactionVersion);
        }
    }

    /** {@code t} is exactly of class {@code type} and its cause chain is exactly {@code causes}. */
    static void assertExactly(String what, Throwable t, Class<?> type, Class<?>... causes) {
        List<Class<?>> expected = new ArrayList<>();
        expected.add(type);
        expected.addAll(List.of(causes));
        List<Class<?>> actual = new ArrayList<>();
        for (Throwable c = t; c != null; c = c.getCause()) {
            actual.add(c.getClass());
        }
        assertEquals(expected, actual, what + " with kafka-clients " + CLIENT_VERSION + ": " + chain(t));
    }

    // ------------------------------------------------------------------- tests

    @Test
    void commitMakesRecordsOfSeveralPartitionsVisible() throws Exception {
        String a = freshTopic("commit-a", 2);
        String b = freshTopic("commit-b", 1);
        List<TopicPartition> tps = List.of(new TopicPartition(a, 0), new TopicPartition(a, 1), new TopicPartition(b, 0));
        int perPartition = 10;
        List<ProducerRecord<String, String>> sent = new ArrayList<>();
        Map<String, Long> offsetByValue = new HashMap<>();
        try (KafkaProducer<String, String> producer = txProducer(txId("commit"))) {
            producer.initTransactions();
            producer.beginTransaction();
            for (int i = 0; i < perPartition; i++) {
                for (TopicPartition tp : tps) {
                    String id = tp.topic().equals(a) ? "a" + tp.partition() : "b" + tp.partition();
                    ProducerRecord<String, String> r = record(tp.topic(), tp.partition(), "k-" + id + "-" + i,
                            "v-" + id + "-" + i, header("seq", String.valueOf(i)), header("part", id), header("dup", "x"),
                            header("dup", "y"), header("nil", null));
                    sent.add(r);
                    producer.send(r, (md, e) -> {
                        if (md != null) {
                            synchronized (offsetByValue) {
                                offsetByValue.put(r.value(), md.offset());
                            }
                        }
                    });
                }
            }
            producer.commitTransaction();
        }
        assertEquals(sent.size(), offsetByValue.size(), "every send of a committed transaction is acknowledged");

        List<ConsumerRecord<String, String>> got = readAll(READ_COMMITTED, tps, sent.size());
        assertEquals(sent.size(), got.size(), "read_committed gets exactly the committed records");
        for (TopicPartition tp : tps) {
            List<ProducerRecord<String, String>> want = sent.stream()
                    .filter(r -> r.topic().equals(tp.topic()) && r.partition() == tp.partition()).collect(Collectors.toList());
            List<ConsumerRecord<String, String>> have = got.stream()
                    .filter(r -> r.topic().equals(tp.topic()) && r.partition() == tp.partition()).collect(Collectors.toList());
            assertEquals(want.size(), have.size(), tp + ": record count");
            for (int i = 0; i < want.size(); i++) {
                ProducerRecord<String, String> w = want.get(i);
                ConsumerRecord<String, String> h = have.get(i);
                assertEquals(w.key(), h.key(), tp + " #" + i + " key (send order)");
                assertEquals(w.value(), h.value(), tp + " #" + i + " value (send order)");
                assertEquals(headersOf(w.headers()), headersOf(h.headers()), tp + " #" + i + " headers");
                assertEquals((long) offsetByValue.get(w.value()), h.offset(), tp + " #" + i + " offset as acknowledged");
            }
        }
        System.out.println(LOG + "commit: " + got.size() + " records on " + tps.size() + " partitions, end offsets "
                + readEndOffsets(READ_COMMITTED, tps));
    }

    /** Five records in an aborted transaction, then five in a committed one. */
    static void abortThenCommit(String topic, String transactionalId) throws Exception {
        try (KafkaProducer<String, String> producer = txProducer(transactionalId)) {
            producer.initTransactions();
            producer.beginTransaction();
            for (String v : numbered("aborted-", 5)) {
                producer.send(record(topic, 0, "k", v));
            }
            producer.flush();
            producer.abortTransaction();
            producer.beginTransaction();
            for (String v : numbered("committed-", 5)) {
                producer.send(record(topic, 0, "k", v));
            }
            producer.commitTransaction();
        }
    }

    @Test
    void abortedRecordsAreHiddenFromReadCommitted() throws Exception {
        String topic = freshTopic("abort", 1);
        abortThenCommit(topic, txId("abort"));
        List<ConsumerRecord<String, String>> got = readAll(READ_COMMITTED, List.of(new TopicPartition(topic, 0)), 5);
        assertEquals(numbered("committed-", 5), values(got), "read_committed sees only the committed transaction");
        System.out.println(LOG + "abort: read_committed offsets " + got.stream().map(ConsumerRecord::offset)
                .collect(Collectors.toList()) + ", end offset " + readEndOffsets(READ_COMMITTED, List.of(new TopicPartition(topic, 0))));
    }

    @Test
    void readUncommittedSeesAbortedRecords() throws Exception {
        String topic = freshTopic("uncommitted", 1);
        abortThenCommit(topic, txId("uncommitted"));
        List<ConsumerRecord<String, String>> got = readAll(READ_UNCOMMITTED, List.of(new TopicPartition(topic, 0)), 10);
        List<String> want = new ArrayList<>(numbered("aborted-", 5));
        want.addAll(numbered("committed-", 5));
        assertEquals(want, values(got), "read_uncommitted sees the aborted records too, in log order");
    }

    @Test
    void anOpenTransactionHoldsBackReadCommitted() throws Exception {
        String topic = freshTopic("open", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> plain = plainProducer();
                KafkaProducer<String, String> tx = txProducer(txId("open"));
                KafkaConsumer<String, String> reader = assigned(READ_COMMITTED, List.of(tp))) {
            long before = sendAndWait(plain, record(topic, 0, "k", "before")).offset();
            tx.initTransactions();
            tx.beginTransaction();
            long firstOpen = sendAndWait(tx, record(topic, 0, "k", "tx-0")).offset();
            sendAndWait(tx, record(topic, 0, "k", "tx-1"));
            long after = sendAndWait(plain, record(topic, 0, "k", "after")).offset();
            assertTrue(after > firstOpen);

            // Read up to the last stable offset (however long that takes), then keep polling a while.
            List<ConsumerRecord<String, String>> early = readUntil(reader, 1);
            early.addAll(pollFor(reader, QUIET));
            assertEquals(List.of("before"), values(early),
                    "read_committed gets nothing at or past the open transaction's first record (offset " + firstOpen + ")");
            // On Kafka both are exactly the open transaction's first offset (offsets are dense). A
            // gateway on Pulsar numbers offsets by entry position, with gaps, so what holds
            // everywhere is that neither passes that record nor stops short of the one before.
            long position = reader.position(tp);
            long lsoWhileOpen = reader.endOffsets(List.of(tp)).get(tp);
            assertTrue(position > before && position <= firstOpen,
                    "the reader stops after 'before' (" + before + ") and not past the open transaction's first offset ("
                            + firstOpen + "): " + position);
            assertTrue(lsoWhileOpen > before && lsoWhileOpen <= firstOpen,
                    "read_committed endOffsets (the last stable offset) is after 'before' (" + before
                            + ") and not past the open transaction's first offset (" + firstOpen + "): " + lsoWhileOpen);

            tx.commitTransaction();
            List<ConsumerRecord<String, String>> rest = readUntil(reader, 3);
            assertEquals(List.of("tx-0", "tx-1", "after"), values(rest), "after the commit everything arrives, in log order");
            assertEquals(after, rest.get(2).offset());
            long lso = reader.endOffsets(List.of(tp)).get(tp);
            assertTrue(lso > after, "the last stable offset passes the record produced after the transaction: " + lso);
            System.out.println(LOG + "open transaction: LSO " + lsoWhileOpen + " while open (first open record at " + firstOpen + "), " + lso
                    + " after commit (last record at " + after + ")");
        }
    }

    @Test
    void aNewInstanceFencesTheZombie() throws Exception {
        String topic = freshTopic("fence", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String id = txId("fence");
        Throwable sendFailure;
        Throwable commitFailure;
        Throwable abortFailure;
        try (KafkaProducer<String, String> zombie = txProducer(id);
                KafkaProducer<String, String> successor = txProducer(id)) {
            zombie.initTransactions();
            zombie.beginTransaction();
            sendAndWait(zombie, record(topic, 0, "k", "zombie-0"));

            successor.initTransactions();

            sendFailure = failure("the zombie's send after the successor's initTransactions",
                    () -> sendAndWait(zombie, record(topic, 0, "k", "zombie-1")));
            commitFailure = failure("the zombie's commitTransaction", zombie::commitTransaction);
            abortFailure = failure("the zombie's abortTransaction", zombie::abortTransaction);
            System.out.println(LOG + "fencing: send -> " + chain(sendFailure));
            System.out.println(LOG + "fencing: commit -> " + chain(commitFailure));
            System.out.println(LOG + "fencing: abort -> " + chain(abortFailure));

            successor.beginTransaction();
            sendAndWait(successor, record(topic, 0, "k", "successor-0"));
            successor.commitTransaction();
            zombie.close(Duration.ofSeconds(10));
        }
        List<ConsumerRecord<String, String>> got = readAll(READ_COMMITTED, List.of(tp), 1);
        assertEquals(List.of("successor-0"), values(got), "the zombie's open transaction was aborted; the successor's committed");

        // The partition is already in the zombie's transaction, so its send reaches the partition
        // leader, which refuses the old epoch: an abortable error, rethrown by commitTransaction.
        // Only the coordinator, answering the zombie's EndTxn(abort), says "fenced".
        // The same with every transaction.version (0, 1 and 2 proved): the successor's
        // initTransactions bumps the epoch whatever the level.
        assertExactly("the zombie's send", sendFailure, InvalidProducerEpochException.class);
        assertExactly("the zombie's commit", commitFailure, InvalidProducerEpochException.class);
        assertExactly("the zombie's abort", abortFailure, byClientMajor(ProducerFencedException.class, ProducerFencedException.class));
    }

    @Test
    void consumeTransformProduceCommitsOffsetsInTheTransaction() throws Exception {
        String input = freshTopic("ctp-in", 2);
        String output = freshTopic("ctp-out", 1);
        String group = "compat-tx-ctp-" + RUN + "-" + CLIENT_VERSION;
        int m = 60;
        List<TopicPartition> inputTps = List.of(new TopicPartition(input, 0), new TopicPartition(input, 1));
        // Where each input landed: offsets need not be dense (a gateway on Pulsar numbers them by
        // entry position), so the expected output names the offsets the broker gave.
        List<String> landed = new ArrayList<>();
        try (KafkaProducer<String, String> plain = plainProducer()) {
            List<java.util.concurrent.Future<org.apache.kafka.clients.producer.RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < m; i++) {
                sent.add(plain.send(record(input, i % 2, "in-" + i, "value-" + i)));
            }
            plain.flush();
            for (java.util.concurrent.Future<org.apache.kafka.clients.producer.RecordMetadata> f : sent) {
                org.apache.kafka.clients.producer.RecordMetadata md = f.get(30, TimeUnit.SECONDS);
                landed.add(md.partition() + "/" + md.offset());
            }
        }
        Map<TopicPartition, Long> inputEnd = readEndOffsets(READ_COMMITTED, inputTps);

        int committedBatches = 0;
        int abortedBatches = 0;
        try (KafkaProducer<String, String> producer = txProducer(txId("ctp"));
                KafkaConsumer<String, String> in = consumer(READ_COMMITTED, group, Map.of(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 7))) {
            producer.initTransactions();
            in.subscribe(List.of(input));
            long deadline = System.nanoTime() + HANG_GUARD.toNanos();
            while (!committedAll(in, inputTps, inputEnd)) {
                assertTrue(System.nanoTime() < deadline, "hang guard: committed " + in.committed(Set.copyOf(inputTps)));
                ConsumerRecords<String, String> batch = in.poll(Duration.ofMillis(200));
                if (batch.isEmpty()) {
                    continue;
                }
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (ConsumerRecord<String, String> r : batch) {
                    producer.send(record(output, 0, r.key(), r.value().toUpperCase() + "@" + r.partition() + "/" + r.offset()));
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(next, in.groupMetadata());
                if (committedBatches == 2 && abortedBatches == 0) {
                    // Abort one batch midway (its output written first, so the abort has something
                    // to hide) and process it again from the committed offsets.
                    producer.flush();
                    producer.abortTransaction();
                    abortedBatches++;
                    Map<TopicPartition, OffsetAndMetadata> committed = in.committed(next.keySet());
                    for (TopicPartition tp : next.keySet()) {
                        OffsetAndMetadata c = committed.get(tp);
                        if (c == null) {
                            in.seekToBeginning(List.of(tp));
                        } else {
                            in.seek(tp, c.offset());
                        }
                    }
                } else {
                    producer.commitTransaction();
                    committedBatches++;
                }
            }
        }
        assertEquals(1, abortedBatches);

        List<ConsumerRecord<String, String>> out = readAll(READ_COMMITTED, List.of(new TopicPartition(output, 0)), m);
        Map<String, List<String>> byKey = new LinkedHashMap<>();
        out.forEach(r -> byKey.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value()));
        assertEquals(m, out.size(), "exactly one output record per input record: " + byKey);
        for (int i = 0; i < m; i++) {
            assertEquals(List.of("VALUE-" + i + "@" + landed.get(i)), byKey.get("in-" + i),
                    "the transformed record of input " + i);
        }
        Map<TopicPartition, OffsetAndMetadata> groupOffsets =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        for (TopicPartition tp : inputTps) {
            assertNotNull(groupOffsets.get(tp), "group " + group + " has an offset for " + tp);
            assertEquals((long) inputEnd.get(tp), groupOffsets.get(tp).offset(), "the committed offset of " + tp);
        }
        System.out.println(LOG + "consume-transform-produce: " + m + " inputs, " + committedBatches
                + " committed batches, " + abortedBatches + " aborted and re-processed; group offsets " + groupOffsets);
    }

    @Test
    void theBrokerAbortsATransactionPastItsTimeout() throws Exception {
        String topic = freshTopic("timeout", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        int timeoutMs = 3000;
        int transactionVersion = transactionVersion();
        try (KafkaProducer<String, String> tx = txProducer(txId("timeout"), Map.of(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs));
                KafkaProducer<String, String> plain = plainProducer();
                KafkaConsumer<String, String> reader = assigned(READ_COMMITTED, List.of(tp))) {
            tx.initTransactions();
            tx.beginTransaction();
            long started = System.nanoTime();
            sendAndWait(tx, record(topic, 0, "k", "doomed-0"));
            sendAndWait(tx, record(topic, 0, "k", "doomed-1"));
            long later = sendAndWait(plain, record(topic, 0, "k", "later")).offset();

            // Held back until the broker aborts the transaction, then only "later" is readable.
            List<ConsumerRecord<String, String>> got = readUntil(reader, 1);
            long abortedAfterMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
            assertEquals(List.of("later"), values(got), "read_committed never sees the timed-out transaction's records");
            assertEquals(later, got.get(0).offset());
            assertTrue(abortedAfterMs >= timeoutMs, "held back for at least the transaction timeout, not " + abortedAfterMs + " ms");
            System.out.println(LOG + "timeout: transaction.timeout.ms " + timeoutMs + ", read_committed held back "
                    + abortedAfterMs + " ms after the first send");

            Throwable commitFailure = failure("commitTransaction after the broker aborted the transaction", tx::commitTransaction);
            System.out.println(LOG + "timeout: commit -> " + chain(commitFailure));
            // The coordinator bumped the epoch when it aborted. An EndTxn with the old epoch is
            // fenced: so for a 2.x client, and for a 4.x client on transaction.version 0/1. A 4.x
            // client on transaction.version 2 sends EndTxn v5, where the epoch the bump follows
            // reads as a retry of the end the coordinator already completed, as an abort, so a
            // commit is in the wrong state.
            assertExactly("commitTransaction after the timeout on transaction.version " + transactionVersion,
                    commitFailure, byClientMajor(ProducerFencedException.class,
                            byTransactionVersion(transactionVersion, ProducerFencedException.class, InvalidTxnStateException.class)));
            assertEquals(List.of(), values(pollFor(reader, QUIET)), "nothing of the timed-out transaction appears later");
        }
    }

    // AdminClient describeTransactions/listTransactions exist from kafka-clients 3.0 only; this
    // class must compile against 2.8.2 too, so they are called by reflection.

    static Object invoke(Object target, String method, Class<?>[] types, Object... args) throws Exception {
        Method m = target.getClass().getMethod(method, types);
        m.setAccessible(true);
        try {
            return m.invoke(target, args);
        } catch (InvocationTargetException e) {
            throw (Exception) e.getCause();
        }
    }

    static Object invoke(Object target, String method) throws Exception {
        return invoke(target, method, new Class<?>[0]);
    }

    static Object futureValue(Object kafkaFuture) throws Exception {
        return ((KafkaFuture<?>) kafkaFuture).get(30, TimeUnit.SECONDS);
    }

    /** describeTransactions(id): its state, as Kafka names it ("Ongoing", "CompleteCommit", ...). */
    static String describedState(String id) throws Exception {
        return String.valueOf(invoke(describe(id), "state"));
    }

    /** describeTransactions(id): its TransactionDescription. */
    static Object describe(String id) throws Exception {
        Object result = invoke(admin, "describeTransactions", new Class<?>[] {Collection.class}, List.of(id));
        return futureValue(invoke(result, "description", new Class<?>[] {String.class}, id));
    }

    /** A TransactionDescription's producer epoch. */
    static int producerEpoch(Object description) throws Exception {
        return ((Number) invoke(description, "producerEpoch")).intValue();
    }

    /** listTransactions(): the state listed for {@code id}, or null if it is not listed. */
    static String listedState(String id) throws Exception {
        Collection<?> listings = (Collection<?>) futureValue(invoke(invoke(admin, "listTransactions"), "all"));
        for (Object l : listings) {
            if (id.equals(invoke(l, "transactionalId"))) {
                return String.valueOf(invoke(l, "state"));
            }
        }
        return null;
    }

    /** Waits until describe and list both report {@code state}; only {@code passing} may be seen before. */
    static void awaitState(String id, String state, String passing) throws Exception {
        long deadline = System.nanoTime() + HANG_GUARD.toNanos();
        while (true) {
            String described = describedState(id);
            String listed = listedState(id);
            if (state.equals(described) && state.equals(listed)) {
                return;
            }
            assertTrue(List.of(state, passing).contains(described), id + " described as " + described + ", expected " + state);
            assertTrue(List.of(state, passing).contains(listed), id + " listed as " + listed + ", expected " + state);
            assertTrue(System.nanoTime() < deadline, "hang guard: " + id + " still " + described + "/" + listed);
            Thread.sleep(100);
        }
    }

    @Test
    void adminDescribesAndListsTransactions() throws Exception {
        boolean supported;
        try {
            Admin.class.getMethod("describeTransactions", Collection.class);
            Admin.class.getMethod("listTransactions");
            supported = true;
        } catch (NoSuchMethodException e) {
            supported = false;
        }
        assumeTrue(supported, "kafka-clients " + CLIENT_VERSION
                + " has no Admin.describeTransactions/listTransactions (added in 3.0, KIP-664)");

        String topic = freshTopic("admin", 1);
        String id = txId("admin");
        int timeoutMs = 45_000;
        int transactionVersion = transactionVersion();
        try (KafkaProducer<String, String> tx = txProducer(id, Map.of(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs))) {
            tx.initTransactions();
            assertEquals("Empty", describedState(id), "after initTransactions");
            assertEquals("Empty", listedState(id), "after initTransactions");

            tx.beginTransaction();
            sendAndWait(tx, record(topic, 0, "k", "v"));
            Object open = describe(id);
            assertEquals("Ongoing", String.valueOf(invoke(open, "state")), "while the transaction is open");
            assertEquals("Ongoing", listedState(id), "while the transaction is open");
            assertEquals(Set.of(new TopicPartition(topic, 0)), Set.copyOf((Collection<?>) invoke(open, "topicPartitions")),
                    "the open transaction's partitions");
            assertEquals(timeoutMs, ((Number) invoke(open, "transactionTimeoutMs")).longValue(), "transactionTimeoutMs");
            assertEquals(0, producerEpoch(open), "the epoch initTransactions gave a new transactional id");
            System.out.println(LOG + "admin: open " + open);

            // On transaction.version 2 the coordinator bumps the epoch at every transaction end
            // (KIP-890); before, the epoch of an unfenced producer stays as initTransactions set it.
            tx.commitTransaction();
            awaitState(id, "CompleteCommit", "PrepareCommit");
            Object committed = describe(id);
            assertEquals((int) byTransactionVersion(transactionVersion, 0, 1), producerEpoch(committed),
                    "the epoch after one commit on transaction.version " + transactionVersion);
            System.out.println(LOG + "admin: after commit " + committed);

            tx.beginTransaction();
            sendAndWait(tx, record(topic, 0, "k", "v"));
            tx.abortTransaction();
            awaitState(id, "CompleteAbort", "PrepareAbort");
            Object done = describe(id);
            assertEquals(Set.of(), Set.copyOf((Collection<?>) invoke(done, "topicPartitions")), "no partitions once complete");
            assertEquals((int) byTransactionVersion(transactionVersion, 0, 2), producerEpoch(done),
                    "the epoch after a commit and an abort on transaction.version " + transactionVersion);
            System.out.println(LOG + "admin: after abort " + done);
        }
    }
}

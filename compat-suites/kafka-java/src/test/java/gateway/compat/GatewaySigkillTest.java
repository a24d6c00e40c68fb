package gateway.compat;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * SIGKILL the gateway mid-stream: no acknowledged record may be lost.
 *
 * <p>The test runs a gateway of its own through {@code compat-suites/gateway-ctl}, which needs
 * GATEWAY_BIN and GATEWAY_ARGS (compat-suites/run-against-gateway exports them); without them the
 * test is skipped with the reason. An idempotent acks=all producer with retries and a delivery
 * timeout longer than a restart sends 6,000 keyed records to a 6-partition topic; once 2,000 are
 * acknowledged the gateway is SIGKILLed and restarted on the same ports (same data dir on the
 * embedded backend) while the producer keeps going. Every partition is then read from the
 * beginning without a group: each acknowledged record must be at the partition and offset it was
 * acknowledged with, with its key and value. Failed sends may be missing; duplicates are allowed and
 * counted; a record that was never sent is an error.
 */
class GatewaySigkillTest {
    static final String CLIENT = KafkaRoundTripTest.CLIENT;
    static final Path GATEWAY_CTL = Path.of(System.getProperty("gateway.ctl", "../gateway-ctl"));
    static final int PARTITIONS = 6;
    static final int TOTAL = 6_000;
    static final int CHUNK = 200;
    static final int KILL_AFTER = 2_000;

    /** What one send ended with: an acknowledgement (partition, offset) or an error. */
    static final class Outcome {
        final int index;
        final boolean sentAfterRestart;
        final RecordMetadata md;
        final String error;

        Outcome(int index, boolean sentAfterRestart, RecordMetadata md, String error) {
            this.index = index;
            this.sentAfterRestart = sentAfterRestart;
            this.md = md;
            this.error = error;
        }
    }

    /** A send not yet settled. */
    static final class Pending {
        final int index;
        final boolean sentAfterRestart;
        final Future<RecordMetadata> future;

        Pending(int index, boolean sentAfterRestart, Future<RecordMetadata> future) {
            this.index = index;
            this.sentAfterRestart = sentAfterRestart;
            this.future = future;
        }
    }

    @Test
    @Timeout(300)
    void sigkillMidStreamLosesNoAcknowledgedRecord() throws Exception {
        String bin = System.getenv("GATEWAY_BIN");
        String why = "not run: GATEWAY_BIN is not set, so there is no gateway this test may SIGKILL and restart "
                + "(compat-suites/run-against-gateway sets GATEWAY_BIN and GATEWAY_ARGS)";
        if (bin == null || bin.isBlank()) log(why);
        assumeTrue(bin != null && !bin.isBlank(), why);

        Path state = Files.createTempDirectory("java-sigkill-");
        boolean passed = false;
        try {
            String bootstrap = ctl("start", state);
            run(state, bootstrap);
            passed = true;
        } finally {
            ctl("stop", state);
            if (passed) deleteTree(state);
            else log("gateway state and log kept in " + state + " (gateway.log)");
        }
    }

    void run(Path state, String bootstrap) throws Exception {
        String topic = "compat-sigkill-" + UUID.randomUUID().toString().substring(0, 8);
        Properties a = new Properties();
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (AdminClient admin = AdminClient.create(a)) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }

        Random rnd = new Random(7);
        byte[][] keys = new byte[TOTAL][];
        byte[][] values = new byte[TOTAL][];
        for (int i = 0; i < TOTAL; i++) {
            // Keyed, so the default partitioner spreads records over every partition.
            keys[i] = String.format("k-%06d", i).getBytes(UTF_8);
            byte[] tail = new byte[rnd.nextInt(301)];
            rnd.nextBytes(tail);
            byte[] head = String.format("v-%06d-", i).getBytes(UTF_8);
            values[i] = Arrays.copyOf(head, head.length + tail.length);
            System.arraycopy(tail, 0, values[i], head.length, tail.length);
        }

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "compat-sigkill");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true"); // default in 3.x+, explicit for 2.x
        p.put(ProducerConfig.RETRIES_CONFIG, Integer.toString(Integer.MAX_VALUE));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000"); // longer than the restart takes
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

        ConcurrentLinkedQueue<Outcome> outcomes = new ConcurrentLinkedQueue<>();
        AtomicInteger sent = new AtomicInteger();
        AtomicInteger acks = new AtomicInteger();
        CountDownLatch reached = new CountDownLatch(1);
        CountDownLatch restarted = new CountDownLatch(1);
        long t0 = System.nanoTime();
        int acksBefore;
        int inFlight;
        long downMs;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            Thread worker = new Thread(() -> {
                // Two chunks outstanding at a time, so the kill finds requests in flight.
                List<Pending> previous = new ArrayList<>();
                for (int start = 0; start < TOTAL; start += CHUNK) {
                    boolean after = restarted.getCount() == 0;
                    List<Pending> chunk = new ArrayList<>();
                    for (int i = start; i < Math.min(start + CHUNK, TOTAL); i++) {
                        Future<RecordMetadata> f = producer.send(new ProducerRecord<>(topic, keys[i], values[i]),
                                (md, e) -> { if (e == null) acks.incrementAndGet(); });
                        sent.incrementAndGet();
                        chunk.add(new Pending(i, after, f));
                    }
                    settle(previous, outcomes, reached);
                    previous = chunk;
                }
                settle(previous, outcomes, reached);
                reached.countDown();
            }, "sigkill-producer");
            worker.setDaemon(true);
            worker.start();

            assertTrue(reached.await(120, TimeUnit.SECONDS), "producer did not reach " + KILL_AFTER + " acks");
            ctl("kill9", state);
            long killed = System.nanoTime();
            acksBefore = acks.get(); // nothing is acknowledged while the gateway is down
            inFlight = sent.get() - acksBefore;
            assertEquals(bootstrap, ctl("start", state), "restarted gateway must listen where it did");
            downMs = (System.nanoTime() - killed) / 1_000_000;
            restarted.countDown();
            worker.join(150_000);
            assertFalse(worker.isAlive(), "producer still running 150 s after the restart");
        }
        long produceMs = (System.nanoTime() - t0) / 1_000_000;

        List<Outcome> acked = new ArrayList<>();
        List<Outcome> failed = new ArrayList<>();
        for (Outcome o : outcomes) (o.md != null ? acked : failed).add(o);
        long afterRestart = acked.stream().filter(o -> o.sentAfterRestart).count();
        assertTrue(acksBefore >= KILL_AFTER && acksBefore < TOTAL,
                "SIGKILL must hit mid-stream: " + acksBefore + " of " + TOTAL + " acknowledged when it was sent");
        assertTrue(afterRestart > 0, "no record sent after the restart was acknowledged (" + failed.size()
                + " failed; first: " + (failed.isEmpty() ? "-" : failed.get(0).error) + ")");
        assertEquals(TOTAL, acked.size() + failed.size(), "every send must end acknowledged or failed");

        // Read every partition from the beginning, without a group.
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, "compat-sigkill-reader");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "2000");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            got = KafkaRoundTripTest.readToEnd(consumer, tps, consumer.endOffsets(tps, Duration.ofSeconds(30)));
        }
        Map<String, ConsumerRecord<byte[], byte[]>> byOffset = new HashMap<>();
        for (List<ConsumerRecord<byte[], byte[]>> recs : got.values()) {
            for (ConsumerRecord<byte[], byte[]> r : recs) byOffset.put(r.partition() + "/" + r.offset(), r);
        }

        List<String> problems = new ArrayList<>();
        int noOffset = 0;
        for (Outcome o : acked) {
            int part = o.md.partition();
            long off = o.md.offset();
            if (off >= 0) {
                ConsumerRecord<byte[], byte[]> r = byOffset.get(part + "/" + off);
                if (r == null) {
                    problems.add("acknowledged record " + o.index + " (partition " + part + ", offset " + off + ") is missing");
                } else if (!Arrays.equals(keys[o.index], r.key()) || !Arrays.equals(values[o.index], r.value())) {
                    problems.add("partition " + part + " offset " + off + ": read key " + KafkaRoundTripTest.show(r.key())
                            + ", acknowledged record " + o.index + " has key " + KafkaRoundTripTest.show(keys[o.index]));
                }
            } else if (off == -1) {
                // Acknowledged without an offset: Kafka's DUPLICATE_SEQUENCE_NUMBER, which clients treat
                // as success (the retried batch was stored before). The gateway answers a resend with
                // its original's offset, as a Kafka broker does, so this is a failure too; the record
                // must still be on that partition.
                noOffset++;
                problems.add("acknowledged record " + o.index + " (partition " + part
                        + ") was acknowledged without an offset (DUPLICATE_SEQUENCE_NUMBER)");
                boolean present = got.get(part).stream().anyMatch(
                        r -> Arrays.equals(keys[o.index], r.key()) && Arrays.equals(values[o.index], r.value()));
                if (!present) {
                    problems.add("acknowledged record " + o.index + " (partition " + part
                            + ", acknowledged without offset) is missing");
                }
            } else {
                problems.add("record " + o.index + " acknowledged with offset " + off + " on partition " + part);
            }
        }
        int[] seen = new int[TOTAL];
        int read = 0;
        for (ConsumerRecord<byte[], byte[]> r : byOffset.values()) {
            read++;
            String key = r.key() == null ? "" : new String(r.key(), UTF_8);
            int i = key.matches("k-\\d{6}") ? Integer.parseInt(key.substring(2)) : -1;
            if (i < 0 || i >= TOTAL || !Arrays.equals(values[i], r.value())) {
                problems.add("partition " + r.partition() + " offset " + r.offset() + " holds a record never sent: key "
                        + KafkaRoundTripTest.show(r.key()));
            } else {
                seen[i]++;
            }
        }
        int duplicates = 0;
        for (int n : seen) duplicates += Math.max(0, n - 1);
        long failedStored = failed.stream().filter(o -> seen[o.index] > 0).count();
        log(String.format("sigkill (%s): %d records sent, %d acknowledged (%d before SIGKILL, %d unacknowledged in "
                        + "flight at it, %d sent after restart, %d without offset), %d failed (%d of them stored "
                        + "anyway); read %d records, %d duplicates; gateway down %d ms; produce %d ms; topic %s",
                backend(), TOTAL, acked.size(), acksBefore, inFlight, afterRestart, noOffset, failed.size(),
                failedStored, read, duplicates, downMs, produceMs, topic));
        if (!failed.isEmpty()) log("sigkill: first failed send: record " + failed.get(0).index + ": " + failed.get(0).error);
        if (!problems.isEmpty()) {
            fail(problems.size() + " problems after SIGKILL + restart (log: " + state.resolve("gateway.log") + "):\n  "
                    + String.join("\n  ", problems.subList(0, Math.min(20, problems.size()))));
        }
    }

    /** Waits for a chunk of sends; a failed send may be lost, so only its error is kept. */
    static void settle(List<Pending> chunk, ConcurrentLinkedQueue<Outcome> outcomes, CountDownLatch reached) {
        for (Pending s : chunk) {
            try {
                outcomes.add(new Outcome(s.index, s.sentAfterRestart, s.future.get(120, TimeUnit.SECONDS), null));
            } catch (ExecutionException e) {
                outcomes.add(new Outcome(s.index, s.sentAfterRestart, null, String.valueOf(e.getCause())));
            } catch (Exception e) {
                outcomes.add(new Outcome(s.index, s.sentAfterRestart, null, e.toString()));
            }
        }
        if (outcomes.stream().filter(o -> o.md != null).count() >= KILL_AFTER) reached.countDown();
    }

    /** Runs gateway-ctl; its only stdout on success is the bootstrap address (for start). */
    static String ctl(String cmd, Path state) throws IOException, InterruptedException {
        Process proc = new ProcessBuilder(GATEWAY_CTL.toString(), cmd, state.toString()).redirectErrorStream(true).start();
        String out = new String(proc.getInputStream().readAllBytes(), UTF_8).trim();
        if (!proc.waitFor(120, TimeUnit.SECONDS)) {
            proc.destroyForcibly();
            fail("gateway-ctl " + cmd + " did not finish within 120 s: " + out);
        }
        if (proc.exitValue() != 0) fail("gateway-ctl " + cmd + " failed (exit " + proc.exitValue() + "): " + out);
        return out;
    }

    static String backend() {
        List<String> args = Arrays.asList(System.getenv().getOrDefault("GATEWAY_ARGS", "").trim().split("\\s+"));
        int at = args.indexOf("--backend");
        return at >= 0 && at + 1 < args.size() ? args.get(at + 1) : "embedded";
    }

    static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
        } catch (IOException e) {
            log("could not delete " + dir + ": " + e);
        }
    }

    static void log(String msg) {
        System.out.println("[" + CLIENT + "] " + msg);
    }
}

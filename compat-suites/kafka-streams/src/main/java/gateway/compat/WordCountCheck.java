package gateway.compat;

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
import java.util.Optional;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * The classic Kafka Streams WordCount against HOST:PORT, checked against counts known in advance.
 *
 * <p>Phase 1 produces a seeded text, runs {@code flatMapValues -> groupBy(word) -> count() ->
 * toStream().to(output)} and reads the output topic until every word's latest count is the
 * expected one. The lines' keys are document ids, not words, so {@code groupBy} goes through a
 * repartition topic; the count store is backed by a changelog topic. Phase 2 closes the app,
 * starts it again with the same application.id and an empty state dir (so the store must be
 * restored from the changelog), produces more text and expects phase-1 + phase-2 counts.
 *
 * <p>{@code -Dprocessing.guarantee=exactly_once_v2} runs the app with exactly-once (transactions),
 * reads the output with {@code isolation.level=read_committed}, and adds a check that the Streams
 * producer really used a transactional id (from the NetworkClient DEBUG log, {@code -Dclient.log}).
 */
public final class WordCountCheck {
    static final String STORE = "counts";
    static final String REPARTITION = "by-word";
    static final int PARTITIONS = 3;
    static final Duration WAIT = Duration.ofSeconds(Long.getLong("wait.seconds", 120));
    static final String GUARANTEE = System.getProperty("processing.guarantee", StreamsConfig.AT_LEAST_ONCE);
    static final boolean EOS = GUARANTEE.equals(StreamsConfig.EXACTLY_ONCE_V2);
    // Zipf-ish: word i appears with weight 1/(i+1), so counts differ widely.
    static final String[] WORDS = {
        "pulsar", "kafka", "stream", "topic", "offset", "broker", "ledger", "bookie", "partition",
        "consumer", "producer", "group", "commit", "rebalance", "changelog", "repartition"};

    static int passed = 0, failed = 0;

    static void check(String name, boolean ok, String measured) {
        if (ok) passed++; else failed++;
        System.out.println((ok ? "PASS " : "FAIL ") + name + ": " + measured);
        System.out.flush();
    }

    static void info(String text) {
        System.out.println("INFO " + text);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: WordCountCheck HOST:PORT");
            System.exit(2);
        }
        String bootstrap = args[0];
        if (!EOS && !GUARANTEE.equals(StreamsConfig.AT_LEAST_ONCE)) {
            System.err.println("processing.guarantee must be at_least_once or exactly_once_v2, not " + GUARANTEE);
            System.exit(2);
        }
        String run = UUID.randomUUID().toString().substring(0, 8);
        String appId = "wordcount-" + run;
        String input = "wc-lines-" + run, output = "wc-counts-" + run;
        String repartition = appId + "-" + REPARTITION + "-repartition";
        String changelog = appId + "-" + STORE + "-changelog";
        int lines1 = Integer.getInteger("lines.phase1", 3000), lines2 = Integer.getInteger("lines.phase2", 1000);
        info("bootstrap " + bootstrap + ", application.id " + appId + ", input " + input + ", output " + output
            + ", processing.guarantee " + GUARANTEE + ", output read with isolation.level " + (EOS ? "read_committed" : "read_uncommitted"));

        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(
                    new NewTopic(input, Optional.of(PARTITIONS), Optional.empty()),
                    new NewTopic(output, Optional.of(PARTITIONS), Optional.empty())))
                .all().get(30, TimeUnit.SECONDS);
            Map<String, TopicDescription> d = admin.describeTopics(List.of(input, output)).allTopicNames().get(30, TimeUnit.SECONDS);
            check("input and output topics created with " + PARTITIONS + " partitions",
                d.get(input).partitions().size() == PARTITIONS && d.get(output).partitions().size() == PARTITIONS,
                "input " + d.get(input).partitions().size() + ", output " + d.get(output).partitions().size());

            Map<String, Long> expected = new TreeMap<>();
            long words1 = produce(bootstrap, input, new Random(42), 0, lines1, expected);
            check("phase 1: produced " + lines1 + " lines", words1 > 0,
                words1 + " words, " + expected.size() + " distinct, expected " + expected);

            Path state1 = Files.createTempDirectory("wc-state-");
            AtomicLong restored = new AtomicLong();
            KafkaStreams app = start(bootstrap, appId, input, output, state1, restored);
            boolean running = awaitRunning(app);
            check("phase 1: streams app reached RUNNING", running, "state " + app.state());
            Map<String, Long> seen = new TreeMap<>();
            OutputReader reader = new OutputReader(bootstrap, output);
            boolean done = reader.readUntil(expected, seen);
            check("phase 1: final count of every word", done, diff(expected, seen) + ", " + reader.records + " output records read");

            Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            check("repartition topic exists", names.contains(repartition), repartition + (names.contains(repartition) ? " listed" : " missing; topics with the app id: " + withPrefix(names, appId)));
            check("changelog topic exists", names.contains(changelog), changelog + (names.contains(changelog) ? " listed" : " missing; topics with the app id: " + withPrefix(names, appId)));
            if (names.contains(repartition) && names.contains(changelog)) {
                Map<String, TopicDescription> internal = admin.describeTopics(List.of(repartition, changelog)).allTopicNames().get(30, TimeUnit.SECONDS);
                int rp = internal.get(repartition).partitions().size(), cp = internal.get(changelog).partitions().size();
                check("internal topics have the input's " + PARTITIONS + " partitions", rp == PARTITIONS && cp == PARTITIONS,
                    "repartition " + rp + ", changelog " + cp);
                describeConfigs(admin, repartition, changelog);
                info("log start offsets of " + repartition + " (moved by Streams' DeleteRecords): " + logStarts(reader.consumer, repartition));
            }
            if (EOS) {
                transactions(admin, appId);
                info("output topic: " + reader.records + " records read, end offsets " + endOffsets(reader.consumer, output)
                    + " (on Kafka each committed transaction also takes one offset per partition for its commit marker)");
            }

            // Phase 2: a clean stop, then the same application.id with an empty state dir.
            app.close(Duration.ofSeconds(60));
            check("phase 1: streams app closed", app.state() == KafkaStreams.State.NOT_RUNNING, "state " + app.state());
            delete(state1);
            Path state2 = Files.createTempDirectory("wc-state-");
            KafkaStreams app2 = start(bootstrap, appId, input, output, state2, restored);
            running = awaitRunning(app2);
            check("phase 2: restarted app (same application.id, empty state dir) reached RUNNING", running, "state " + app2.state());
            check("phase 2: the count store was restored from the changelog", restored.get() > 0,
                restored.get() + " changelog records restored into '" + STORE + "'");
            long words2 = produce(bootstrap, input, new Random(7), lines1, lines2, expected);
            check("phase 2: produced " + lines2 + " more lines", words2 > 0, words2 + " words; expected totals now " + expected);
            done = reader.readUntil(expected, seen);
            check("phase 2: final counts = restored + new", done, diff(expected, seen) + ", " + reader.records + " output records read in all");
            if (EOS) info("output topic: " + reader.records + " records read in all, end offsets " + endOffsets(reader.consumer, output));
            reader.close();
            app2.close(Duration.ofSeconds(60));
            delete(state2);
            if (EOS) checkTransactionalRequests(appId);
            // Leave nothing behind; a failure here is reported but the scenario has already run.
            try {
                app2.cleanUp();
                admin.deleteTopics(List.of(input, output, repartition, changelog)).all().get(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                info("cleanup: " + e);
            }
        } catch (Exception e) {
            failed++;
            System.out.println("FAIL scenario aborted: " + e);
            e.printStackTrace(System.out);
        }
        System.out.println("Summary: " + passed + " passed, " + failed + " failed");
        System.out.flush();
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }

    /** Produces {@code n} lines keyed by document id (never a word), adding their words to {@code expected}. */
    static long produce(String bootstrap, String topic, Random rnd, int first, int n, Map<String, Long> expected) throws Exception {
        double[] cumulative = new double[WORDS.length];
        double sum = 0;
        for (int i = 0; i < WORDS.length; i++) cumulative[i] = sum += 1.0 / (i + 1);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        long words = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int line = first; line < first + n; line++) {
                int count = 1 + rnd.nextInt(8);
                StringBuilder text = new StringBuilder();
                for (int w = 0; w < count; w++) {
                    double x = rnd.nextDouble() * sum;
                    int i = 0;
                    while (cumulative[i] < x) i++;
                    // Mixed case and punctuation: the topology lower-cases and splits on non-letters.
                    String word = rnd.nextInt(4) == 0 ? WORDS[i].toUpperCase() : WORDS[i];
                    text.append(word).append(rnd.nextBoolean() ? " " : ", ");
                    expected.merge(WORDS[i], 1L, Long::sum);
                    words++;
                }
                producer.send(new ProducerRecord<>(topic, "doc-" + (line % 97), text.toString().trim()));
            }
            producer.flush();
        }
        return words;
    }

    static Topology topology(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(line -> Arrays.asList(line.toLowerCase().split("[^a-z]+")))
            .filter((doc, word) -> !word.isEmpty())
            .groupBy((doc, word) -> word, Grouped.with(REPARTITION, Serdes.String(), Serdes.String()))
            .count(Materialized.as(STORE))
            .toStream()
            .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        return builder.build();
    }

    static KafkaStreams start(String bootstrap, String appId, String input, String output, Path stateDir, AtomicLong restored) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, GUARANTEE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        // Streams deletes consumed repartition records (DeleteRecords) after commits, at most this often.
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        // replication.factor stays at its default (-1: the broker's default)
        KafkaStreams app = new KafkaStreams(topology(input, output), p);
        app.setGlobalStateRestoreListener(new StateRestoreListener() {
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                info("restore " + store + " " + tp + " from offset " + start + " to " + end);
            }
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {
                restored.addAndGet(n);
            }
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                info("restored " + store + " " + tp + ": " + total + " records");
            }
        });
        AtomicReference<Throwable> error = new AtomicReference<>();
        app.setUncaughtExceptionHandler(e -> {
            error.set(e);
            System.out.println("INFO streams thread died: " + e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        app.start();
        return app;
    }

    static boolean awaitRunning(KafkaStreams app) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < deadline) {
            KafkaStreams.State s = app.state();
            if (s == KafkaStreams.State.RUNNING) return true;
            if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING || s == KafkaStreams.State.PENDING_ERROR) return false;
            Thread.sleep(100);
        }
        return false;
    }

    /** A group-less reader of the whole output topic that keeps the latest count per word. */
    static final class OutputReader implements AutoCloseable {
        final KafkaConsumer<String, Long> consumer;
        long records = 0;

        OutputReader(String bootstrap, String topic) {
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            // With exactly_once_v2 only committed transactions count; records of aborted ones are skipped.
            p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, EOS ? "read_committed" : "read_uncommitted");
            consumer = new KafkaConsumer<>(p, new StringDeserializer(), new LongDeserializer());
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
        }

        boolean readUntil(Map<String, Long> expected, Map<String, Long> seen) {
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (System.nanoTime() < deadline) {
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(500))) {
                    seen.put(r.key(), r.value());
                    records++;
                }
                if (seen.equals(expected)) return true;
            }
            return false;
        }

        public void close() {
            consumer.close();
        }
    }

    static String diff(Map<String, Long> expected, Map<String, Long> seen) {
        if (seen.equals(expected)) return expected.size() + " words, all counts equal, " + expected.values().stream().mapToLong(Long::longValue).sum() + " in total";
        List<String> wrong = new ArrayList<>();
        for (String w : expected.keySet()) if (!expected.get(w).equals(seen.get(w))) wrong.add(w + " expected " + expected.get(w) + " got " + seen.get(w));
        for (String w : seen.keySet()) if (!expected.containsKey(w)) wrong.add(w + " unexpected, got " + seen.get(w));
        return wrong.size() + " of " + expected.size() + " words wrong after " + WAIT.toSeconds() + " s: " + wrong;
    }

    /** Beginning offsets of every partition, after waiting up to 5 s for one to move past 0. */
    static Map<Integer, Long> logStarts(KafkaConsumer<?, ?> consumer, String topic) throws InterruptedException {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        Map<Integer, Long> starts = new TreeMap<>();
        for (int attempt = 0; attempt < 10; attempt++) {
            consumer.beginningOffsets(tps).forEach((tp, o) -> starts.put(tp.partition(), o));
            if (starts.values().stream().anyMatch(o -> o > 0)) break;
            Thread.sleep(500);
        }
        return starts;
    }

    static Map<Integer, Long> endOffsets(KafkaConsumer<?, ?> consumer, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        Map<Integer, Long> ends = new TreeMap<>();
        consumer.endOffsets(tps).forEach((tp, o) -> ends.put(tp.partition(), o));
        return ends;
    }

    /** The transaction coordinator's view of the app's transactional ids (information, not a check). */
    static void transactions(Admin admin, String appId) {
        try {
            Map<String, String> states = new TreeMap<>();
            for (TransactionListing t : admin.listTransactions().all().get(30, TimeUnit.SECONDS))
                if (t.transactionalId().startsWith(appId)) states.put(t.transactionalId(), t.state() + " producerId " + t.producerId());
            info("listTransactions, the app's transactional ids: " + states);
            if (!states.isEmpty())
                admin.describeTransactions(states.keySet()).all().get(30, TimeUnit.SECONDS).forEach((id, d) ->
                    info("describeTransactions " + id + ": state " + d.state() + ", producerId " + d.producerId() + ", epoch " + d.producerEpoch()
                        + ", timeout " + d.transactionTimeoutMs() + " ms, partitions " + d.topicPartitions()));
        } catch (Exception e) {
            info("listTransactions/describeTransactions: " + e);
        }
    }

    /**
     * Exactly-once check: the Streams producers' requests as logged by NetworkClient DEBUG
     * ("Sending X request with header RequestHeader(apiKey=X, apiVersion=N, clientId=C, ...) and
     * timeout T to node N: {request data}"). Passes when a StreamThread producer sent
     * InitProducerId with a transactional id of this app, at least one TxnOffsetCommit (the input
     * offsets committed inside the transaction) and at least one EndTxn with committed=true.
     */
    static void checkTransactionalRequests(String appId) {
        String file = System.getProperty("client.log");
        if (file == null) {
            check("exactly_once_v2: the Streams producer used transactions", false, "no -Dclient.log given, cannot read the requests");
            return;
        }
        System.err.flush();
        Pattern sending = Pattern.compile("Sending ([A-Z_]+) request with header RequestHeader\\(apiKey=[A-Z_]+, apiVersion=(\\d+), clientId=(" + Pattern.quote(appId) + "-[^,]*-StreamThread-\\d+-producer),.*?: (.*)$");
        Pattern txnId = Pattern.compile("transactionalId='([^']*)'");
        Map<String, Integer> apis = new TreeMap<>();
        Set<String> ids = new java.util.TreeSet<>();
        int commits = 0, aborts = 0;
        try {
            for (String line : Files.readAllLines(Path.of(file))) {
                Matcher m = sending.matcher(line);
                if (!m.find()) continue;
                String api = m.group(1), body = m.group(4);
                apis.merge(api + ":" + m.group(2), 1, Integer::sum);
                if (api.equals("INIT_PRODUCER_ID")) {
                    Matcher t = txnId.matcher(body);
                    if (t.find()) ids.add(t.group(1));
                }
                if (api.equals("END_TXN")) {
                    if (body.contains("committed=true")) commits++;
                    else if (body.contains("committed=false")) aborts++;
                }
            }
        } catch (IOException e) {
            check("exactly_once_v2: the Streams producer used transactions", false, "cannot read " + file + ": " + e);
            return;
        }
        boolean ownIds = !ids.isEmpty() && ids.stream().allMatch(i -> i.startsWith(appId + "-"));
        boolean offsets = apis.keySet().stream().anyMatch(a -> a.startsWith("TXN_OFFSET_COMMIT:"));
        check("exactly_once_v2: the Streams producer used transactions (InitProducerId with the app's transactional id, TxnOffsetCommit, EndTxn committed=true)",
            ownIds && offsets && commits > 0,
            "transactional ids in InitProducerId " + ids + "; EndTxn committed=true " + commits + ", committed=false " + aborts
                + "; requests of the StreamThread producers (api:version=count) " + apis);
    }

    static String withPrefix(Set<String> names, String prefix) {
        return names.stream().filter(n -> n.startsWith(prefix)).sorted().collect(Collectors.toList()).toString();
    }

    /** What Streams asked for on its internal topics (information, not a check). */
    static void describeConfigs(Admin admin, String... topics) {
        try {
            List<ConfigResource> rs = Arrays.stream(topics).map(t -> new ConfigResource(ConfigResource.Type.TOPIC, t)).collect(Collectors.toList());
            Map<ConfigResource, Config> cs = admin.describeConfigs(rs).all().get(30, TimeUnit.SECONDS);
            for (ConfigResource r : rs) {
                Map<String, String> shown = new TreeMap<>();
                for (ConfigEntry e : cs.get(r).entries())
                    if (e.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG) shown.put(e.name(), e.value());
                info("topic configs of " + r.name() + ": " + shown);
            }
        } catch (Exception e) {
            info("describeConfigs: " + e);
        }
    }

    static void delete(Path dir) throws IOException {
        if (!Files.exists(dir)) return;
        try (var paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).collect(Collectors.toList())) Files.deleteIfExists(p);
        }
    }
}

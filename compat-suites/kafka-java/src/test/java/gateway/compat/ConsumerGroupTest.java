package gateway.compat;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka consumer groups through whatever serves {@code -Dbootstrap.servers}.
 *
 * <ol>
 *   <li>Three {@link GroupMember} JVMs consume 60,000 keyed records from 6 partitions, committing after
 *       every batch; after 20,000 one is SIGKILLed (no LeaveGroup) and a fourth starts. The group must
 *       rebalance once the session timeout drops the dead member and consume everything; a record may
 *       be read twice only if the killed member read it after its last commit of that partition. Run
 *       with the eager RangeAssignor, with the CooperativeStickyAssignor and with static membership
 *       (which also restarts a member under the same group.instance.id and expects its partitions
 *       back without a rebalance).</li>
 *   <li>Committed offsets come back exactly (offset, leader epoch, metadata), and the AdminClient's
 *       group calls (list, describe, list/alter/delete offsets, delete group) behave as on Kafka.</li>
 *   <li>With GATEWAY_BIN set: a gateway of its own is SIGKILLed while two members consume; they must
 *       resume from the offsets committed before the kill.</li>
 * </ol>
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ConsumerGroupTest {
    static final String BOOTSTRAP = KafkaRoundTripTest.BOOTSTRAP;
    static final String CLIENT = KafkaRoundTripTest.CLIENT;
    static final Path WORK = Path.of(System.getProperty("group.work.dir", "target/groups"));
    static final int PARTITIONS = 6;
    static final int TOTAL = 60_000;
    static final int STATIC_RESTART_AT = 8_000;
    static final int KILL_AT = 20_000;
    static final long BATCH_DELAY_MS = 100;
    static final String RANGE = RangeAssignor.class.getName();
    static final String COOPERATIVE = CooperativeStickyAssignor.class.getName();
    static final long GATEWAY_DOWN_MS = 12_000;

    static AdminClient admin;
    static final List<String> topics = new ArrayList<>();

    @BeforeAll
    static void setUp() throws IOException {
        admin = admin(BOOTSTRAP, "compat-group-admin");
        Files.createDirectories(WORK);
        log("bootstrap " + BOOTSTRAP + ", member logs under " + WORK.toAbsolutePath());
    }

    @AfterAll
    static void tearDown() {
        if (admin == null) return;
        try {
            if (!topics.isEmpty()) admin.deleteTopics(topics).all().get(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            log("could not delete test topics " + topics + ": " + e);
        }
        admin.close(Duration.ofSeconds(5));
    }

    // ---- 1: member processes, one SIGKILLed, one joining --------------------

    @Test
    @Order(1)
    @Timeout(240)
    void eagerRangeAssignor() throws Exception {
        new Scenario("eager-range", RANGE, false).run();
    }

    @Test
    @Order(2)
    @Timeout(240)
    void cooperativeStickyAssignor() throws Exception {
        new Scenario("cooperative", COOPERATIVE, false).run();
    }

    @Test
    @Order(3)
    @Timeout(240)
    void staticMembership() throws Exception {
        new Scenario("static", RANGE, true).run();
    }

    /** One run of the kill-and-join scenario with its own topic, group and member processes. */
    static final class Scenario {
        final String label;
        final String assignor;
        final boolean staticMembers;
        final String id;
        final String topic;
        final String group;
        final Path dir;
        final List<Member> members = new ArrayList<>();
        final List<Member> killed = new ArrayList<>();
        final Set<PO> seen = new HashSet<>();

        Scenario(String label, String assignor, boolean staticMembers) {
            this.label = label;
            this.assignor = assignor;
            this.staticMembers = staticMembers;
            this.id = label + "-" + UUID.randomUUID().toString().substring(0, 8);
            this.topic = "compat-grp-" + id;
            this.group = "compat-grp-" + id;
            this.dir = WORK.resolve(id);
        }

        void run() throws Exception {
            Files.createDirectories(dir);
            createTopic(topic, PARTITIONS);
            long t0 = System.nanoTime();
            Map<PO, Integer> produced = produce(BOOTSTRAP, topic, TOTAL);
            long produceMs = ms(t0);
            try {
                consume(produced, produceMs);
            } finally {
                for (Member m : members) m.destroy();
            }
        }

        Member start(String name, String instanceId) throws IOException {
            Member m = Member.launch(dir, BOOTSTRAP, topic, group, name, assignor, instanceId, BATCH_DELAY_MS);
            members.add(m);
            return m;
        }

        void consume(Map<PO, Integer> produced, long produceMs) throws Exception {
            long t0 = System.nanoTime();
            Member m1 = start("m1", staticMembers ? "m1" : "-");
            // m1 first, so it is the leader and neither of the members killed below is.
            waitFor(() -> !m1.assigns.isEmpty(), 60, "m1 gets its first assignment");
            Member m2 = start("m2", staticMembers ? "m2" : "-");
            Member m3 = start("m3", staticMembers ? "m3" : "-");
            Member third = m3;

            String staticReport = "";
            if (staticMembers) {
                waitFor(() -> stable(List.of(m1, m2, m3)) && consumed() >= STATIC_RESTART_AT, 90,
                        "3 members share the 6 partitions and " + STATIC_RESTART_AT + " records are consumed");
                Assign before = m3.lastAssign();
                long killAt = System.currentTimeMillis();
                m3.kill();
                killed.add(m3);
                Member m3b = start("m3b", "m3");
                waitFor(() -> !m3b.assigns.isEmpty() && !m3b.records.isEmpty(), 60,
                        "m3b (group.instance.id m3, started right after m3 was SIGKILLed) gets partitions and reads");
                long back = m3b.assigns.get(0).ts - killAt;
                sleepPumping(2_000); // a rebalance, if one happens, shows up in the other members' callbacks
                Assign after = m3b.assigns.get(0);
                List<String> callbacks = new ArrayList<>();
                for (Member m : List.of(m1, m2)) {
                    for (Callback cb : m.callbacks) if (cb.ts >= killAt) callbacks.add(m.name + ":" + cb);
                }
                staticReport = String.format("; static restart: m3 SIGKILLed holding %s (generation %d), m3b got %s "
                                + "(generation %d) %d ms later, rebalance %s",
                        before.parts, before.gen, after.parts, after.gen, back,
                        callbacks.isEmpty() && after.gen == before.gen ? "no (no callbacks on m1/m2, same generation)"
                                : "yes: " + callbacks);
                log(label + staticReport.substring(1));
                assertEquals(before.parts, after.parts,
                        "a member restarted with the same group.instance.id must get its partitions back");
                assertTrue(callbacks.isEmpty() && after.gen == before.gen,
                        "restarting a static member within the session timeout must not rebalance the group: "
                                + staticReport);
                third = m3b;
            }

            waitFor(() -> consumed() >= KILL_AT, 120, KILL_AT + " records consumed");
            int consumedAtKill = consumed();
            Assign victimHeld = m2.lastAssign();
            int genAtKill = victimHeld.gen;
            long killAt = System.currentTimeMillis();
            m2.kill();
            killed.add(m2);
            Member m4 = start("m4", staticMembers ? "m4" : "-");
            List<Member> live = List.of(m1, third, m4);

            waitFor(() -> seen.size() >= produced.size() && seen.containsAll(produced.keySet()), 150,
                    "all " + produced.size() + " produced records consumed after the kill");
            long doneAt = System.currentTimeMillis();
            Map<TopicPartition, Long> end = endOffsets(topic);
            Map<TopicPartition, Long>[] committed = new Map[1];
            waitFor(() -> {
                committed[0] = committedOffsets(group);
                return committed[0].equals(end);
            }, 30, "the group's committed offsets reach the end offsets " + end);
            ConsumerGroupDescription desc = describe(group);
            Set<String> clientIds = desc.members().stream().map(MemberDescription::clientId).collect(Collectors.toSet());
            // Static members are compared by group.instance.id: Kafka keeps the client id of the
            // member a static restart replaced (m3b shows up as m3).
            Set<String> describedIds = staticMembers
                    ? desc.members().stream().map(d -> d.groupInstanceId().orElse("none")).collect(Collectors.toSet())
                    : clientIds;
            Set<String> liveIds = live.stream().map(m -> staticMembers ? m.instanceId : m.name).collect(Collectors.toSet());

            for (Member m : live) m.stop();
            for (Member m : live) m.awaitExit(30);
            for (Member m : members) m.pump();

            // Rebalance time: from the SIGKILL until the live members all hold assignments of one
            // newer generation that cover every partition.
            long settledAt = -1;
            int settledGen = -1;
            List<Assign> after = new ArrayList<>();
            for (Member m : live) for (Assign a : m.assigns) if (a.ts >= killAt) after.add(a);
            after.sort((x, y) -> Long.compare(x.ts, y.ts));
            Map<Member, Assign> current = new HashMap<>();
            for (Assign a : after) {
                current.put(a.member, a);
                if (current.size() < live.size()) continue;
                Set<Integer> union = new TreeSet<>();
                int n = 0;
                Set<Integer> gens = new HashSet<>();
                for (Assign c : current.values()) {
                    union.addAll(c.parts);
                    n += c.parts.size();
                    gens.add(c.gen);
                }
                if (union.size() == PARTITIONS && n == PARTITIONS && gens.size() == 1) {
                    settledAt = a.ts;
                    settledGen = a.gen;
                    break;
                }
            }

            Check check = check(produced, members, killed);
            String report = String.format(
                    "%s (%s): produced %d in %d ms; consumed %d, unique %d, duplicates %d, uncommitted window %d %s; "
                            + "m2 SIGKILLed at %d consumed holding %s (generation %d); rebalance to generation %d "
                            + "%s after the kill; m4 read %d; %d commits refused (retried); all consumed %d ms after the kill, %d ms in all; "
                            + "members at the end (client ids) %s, state %s, assignor %s%s",
                    label, assignor.substring(assignor.lastIndexOf('.') + 1), produced.size(), produceMs,
                    check.consumed, check.unique, check.duplicates, check.window, check.windows, consumedAtKill,
                    victimHeld.parts, genAtKill, settledGen, settledAt < 0 ? "never settled" : (settledAt - killAt) + " ms",
                    m4.records.size(), members.stream().mapToInt(m -> m.fails.size()).sum(), doneAt - killAt, ms(t0), new TreeSet<>(clientIds), desc.state(),
                    desc.partitionAssignor(), staticReport);
            log(report);
            check.failIfProblems(report, dir);
            assertTrue(settledAt > 0 && settledGen > genAtKill,
                    "the live members never held one newer generation covering all partitions: " + report);
            assertFalse(m4.records.isEmpty(), "the member that joined after the kill read nothing: " + report);
            assertEquals(liveIds, describedIds, "describeConsumerGroups members once all was consumed ("
                    + (staticMembers ? "group.instance.id" : "client.id") + "): " + report);
        }

        int consumed() {
            int n = 0;
            for (Member m : members) n += m.records.size();
            return n;
        }

        boolean stable(List<Member> ms) {
            Set<Integer> union = new HashSet<>();
            Set<Integer> gens = new HashSet<>();
            for (Member m : ms) {
                Assign a = m.lastAssign();
                if (a == null || a.parts.isEmpty()) return false;
                union.addAll(a.parts);
                gens.add(a.gen);
            }
            return union.size() == PARTITIONS && gens.size() == 1;
        }

        void waitFor(BooleanSupplier cond, int seconds, String what) throws Exception {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
            while (true) {
                pumpAll();
                if (cond.getAsBoolean()) return;
                if (System.nanoTime() > deadline) {
                    StringBuilder s = new StringBuilder(label + ": timed out after " + seconds + " s waiting for: " + what
                            + "; " + seen.size() + " distinct records consumed; members:");
                    for (Member m : members) s.append("\n  ").append(m.summary());
                    s.append("\nmember logs in ").append(dir.toAbsolutePath());
                    fail(s.toString());
                }
                Thread.sleep(200);
            }
        }

        void sleepPumping(long ms) throws Exception {
            long end = System.currentTimeMillis() + ms;
            while (System.currentTimeMillis() < end) {
                pumpAll();
                Thread.sleep(200);
            }
        }

        void pumpAll() throws IOException {
            for (Member m : members) {
                int before = m.records.size();
                m.pump();
                for (int i = before; i < m.records.size(); i++) {
                    long[] r = m.records.get(i);
                    seen.add(new PO((int) r[1], r[2]));
                }
            }
        }
    }

    /** What the record logs of all members say, against what was produced. */
    static final class Check {
        int consumed;
        int unique;
        int duplicates;
        int window;
        String windows;
        final List<String> problems = new ArrayList<>();

        void failIfProblems(String report, Path dir) {
            if (problems.isEmpty()) return;
            fail(problems.size() + " problems (" + report + "; member logs in " + dir.toAbsolutePath() + "):\n  "
                    + String.join("\n  ", problems.subList(0, Math.min(20, problems.size()))));
        }
    }

    /**
     * Every produced record consumed, nothing else, and a record consumed twice only where a killed
     * member consumed it after its last commit of that partition (its uncommitted window).
     */
    static Check check(Map<PO, Integer> produced, List<Member> members, List<Member> killed) {
        Check c = new Check();
        Map<PO, Integer> count = new HashMap<>();
        for (Member m : members) {
            for (long[] r : m.records) {
                c.consumed++;
                PO po = new PO((int) r[1], r[2]);
                Integer index = produced.get(po);
                if (index == null) {
                    c.problems.add(m.name + " consumed partition " + po.p + " offset " + po.o + ", which was never produced");
                } else if (index != r[3]) {
                    c.problems.add(m.name + " consumed key index " + r[3] + " at partition " + po.p + " offset " + po.o
                            + ", where the producer stored key index " + index);
                }
                count.merge(po, 1, Integer::sum);
            }
        }
        c.unique = count.size();
        int missing = 0;
        for (PO po : produced.keySet()) {
            if (!count.containsKey(po)) {
                if (missing++ < 10) c.problems.add("produced partition " + po.p + " offset " + po.o + " was never consumed");
            }
        }
        if (missing > 10) c.problems.add((missing - 10) + " more produced records were never consumed");

        Map<PO, Integer> inWindows = new HashMap<>();
        List<String> sizes = new ArrayList<>();
        for (Member k : killed) {
            Map<Integer, Long> last = k.lastCommitted();
            int n = 0;
            for (long[] r : k.records) {
                if (r[2] >= last.getOrDefault((int) r[1], -1L)) {
                    inWindows.merge(new PO((int) r[1], r[2]), 1, Integer::sum);
                    n++;
                }
            }
            sizes.add(k.name + ": " + n + ", last commits " + new TreeMap<>(last));
            c.window += n;
        }
        c.windows = "(" + String.join("; ", sizes) + ")";
        int outside = 0;
        for (Map.Entry<PO, Integer> e : count.entrySet()) {
            int extra = e.getValue() - 1;
            if (extra <= 0) continue;
            c.duplicates += extra;
            if (extra > inWindows.getOrDefault(e.getKey(), 0) && outside++ < 10) {
                c.problems.add("partition " + e.getKey().p + " offset " + e.getKey().o + " consumed " + e.getValue()
                        + " times, but it is in the uncommitted window of " + inWindows.getOrDefault(e.getKey(), 0)
                        + " killed members");
            }
        }
        if (outside > 10) c.problems.add((outside - 10) + " more duplicates outside the uncommitted windows");
        return c;
    }

    // ---- 2: committed offsets exactly as committed; AdminClient group calls --

    @Test
    @Order(4)
    @Timeout(120)
    void commitFetchFidelityAndAdmin() throws Exception {
        String id = UUID.randomUUID().toString().substring(0, 8);
        String topic = "compat-grp-fid-" + id;
        int parts = 3;
        createTopic(topic, parts);
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < parts; p++) tps.add(new TopicPartition(topic, p));

        // 10 records per partition, so the offsets committed below point into the log.
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerConfig(BOOTSTRAP))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int p = 0; p < parts; p++) {
                for (int i = 0; i < 10; i++) {
                    fs.add(producer.send(new ProducerRecord<>(topic, p, ("k-" + i).getBytes(UTF_8), new byte[] {(byte) i})));
                }
            }
            for (Future<RecordMetadata> f : fs) f.get(30, TimeUnit.SECONDS);
        }
        // The leader epoch each partition's records carry.
        Map<Integer, Integer> epochs = new HashMap<>();
        Map<Integer, List<Long>> offsets = new HashMap<>();
        try (KafkaConsumer<byte[], byte[]> reader = new KafkaConsumer<>(consumerConfig(null, "fid-reader"))) {
            reader.assign(tps);
            reader.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (offsets.values().stream().mapToInt(List::size).sum() < 10 * parts && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : reader.poll(Duration.ofMillis(500))) {
                    offsets.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
                    r.leaderEpoch().ifPresent(e -> epochs.put(r.partition(), e));
                }
            }
        }
        assertEquals(10 * parts, offsets.values().stream().mapToInt(List::size).sum(), "records read back: " + offsets);
        // The committed epoch is the client's to choose; take the one the records carry (Kafka: the
        // partition's epoch) and 0 where a server sends batches without one (partitionLeaderEpoch -1).
        log("fidelity: leader epochs carried by the fetched records: " + epochs
                + (epochs.size() < parts ? " (none for some partitions; committing epoch 0 there)" : ""));
        for (int p = 0; p < parts; p++) epochs.putIfAbsent(p, 0);

        // Commit through a subscribed member of a real group generation.
        String g1 = "compat-grp-fid-" + id;
        Map<TopicPartition, OffsetAndMetadata> commit = new LinkedHashMap<>();
        commit.put(tps.get(0), new OffsetAndMetadata(offsets.get(0).get(5), Optional.of(epochs.get(0)),
                "metadata p0: ünïcødé ✓ {\"json\": [1, 2]}"));
        commit.put(tps.get(1), new OffsetAndMetadata(offsets.get(1).get(7), Optional.of(epochs.get(1)), "m1"));
        commit.put(tps.get(2), new OffsetAndMetadata(offsets.get(2).get(3), Optional.empty(), ""));
        try (KafkaConsumer<byte[], byte[]> c1 = new KafkaConsumer<>(consumerConfig(g1, "fid-committer"))) {
            c1.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (c1.assignment().size() < parts && System.nanoTime() < deadline) c1.poll(Duration.ofMillis(200));
            assertEquals(new HashSet<>(tps), c1.assignment(), "the only member of " + g1 + " must own every partition");
            c1.commitSync(commit, Duration.ofSeconds(30));
        }
        Map<TopicPartition, OffsetAndMetadata> back;
        try (KafkaConsumer<byte[], byte[]> c2 = new KafkaConsumer<>(consumerConfig(g1, "fid-fetcher"))) {
            back = c2.committed(new HashSet<>(tps), Duration.ofSeconds(30));
        }
        log("fidelity: committed " + show(commit) + "; a fresh consumer read back " + show(back));
        sameOffsets(commit, back, "committed() by a fresh consumer of " + g1);
        Map<TopicPartition, OffsetAndMetadata> listed = listOffsets(g1);
        log("fidelity: listConsumerGroupOffsets " + show(listed));
        sameOffsets(commit, listed, "listConsumerGroupOffsets(" + g1 + ")");

        // alterConsumerGroupOffsets on the now empty group, then deleteConsumerGroupOffsets.
        Map<TopicPartition, OffsetAndMetadata> alter = new LinkedHashMap<>();
        alter.put(tps.get(0), new OffsetAndMetadata(offsets.get(0).get(9), "altered"));
        alter.put(tps.get(2), new OffsetAndMetadata(offsets.get(2).get(1)));
        admin.alterConsumerGroupOffsets(g1, alter).all().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetAndMetadata> expect = new LinkedHashMap<>(commit);
        expect.putAll(alter);
        Map<TopicPartition, OffsetAndMetadata> altered = listOffsets(g1);
        log("fidelity: after alterConsumerGroupOffsets " + show(alter) + ": " + show(altered));
        assertEquals(expect.keySet(), altered.keySet(), "partitions with offsets after alter");
        for (TopicPartition tp : expect.keySet()) {
            assertEquals(expect.get(tp).offset(), altered.get(tp).offset(), "offset of " + tp + " after alter");
            assertEquals(expect.get(tp).metadata(), altered.get(tp).metadata(), "metadata of " + tp + " after alter");
        }
        admin.deleteConsumerGroupOffsets(g1, Set.of(tps.get(1))).all().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetAndMetadata> afterDelete = listOffsets(g1);
        log("fidelity: after deleteConsumerGroupOffsets(" + tps.get(1) + "): " + show(afterDelete));
        assertEquals(Set.of(tps.get(0), tps.get(2)), afterDelete.keySet(), "partitions with offsets after delete");
        try (KafkaConsumer<byte[], byte[]> c3 = new KafkaConsumer<>(consumerConfig(g1, "fid-fetcher-2"))) {
            Map<TopicPartition, OffsetAndMetadata> c = c3.committed(new HashSet<>(tps), Duration.ofSeconds(30));
            assertTrue(c.get(tps.get(1)) == null, "committed() of the deleted offset: " + c.get(tps.get(1)));
            assertEquals(offsets.get(0).get(9), c.get(tps.get(0)).offset(), "committed() after alter: " + show(c));
        }

        // A group with two connected members.
        String g2 = "compat-grp-live-" + id;
        List<LiveMember> live = List.of(new LiveMember(g2, "fid-a", topic), new LiveMember(g2, "fid-b", topic));
        try {
            for (LiveMember m : live) m.start();
            ConsumerGroupDescription d = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (System.nanoTime() < deadline) {
                d = describe(g2);
                if ("Stable".equals(String.valueOf(d.state())) && d.members().size() == 2 && assigned(d) == parts) break;
                Thread.sleep(200);
            }
            assertNotNull(d);
            List<String> ms = new ArrayList<>();
            Set<TopicPartition> union = new HashSet<>();
            int n = 0;
            for (MemberDescription m : d.members()) {
                ms.add(m.clientId() + "@" + m.host() + " " + m.assignment().topicPartitions());
                union.addAll(m.assignment().topicPartitions());
                n += m.assignment().topicPartitions().size();
                assertFalse(m.host() == null || m.host().isEmpty(), "member without host: " + m);
                assertFalse(m.consumerId() == null || m.consumerId().isEmpty(), "member without member id: " + m);
            }
            String dd = "state " + d.state() + ", assignor " + d.partitionAssignor() + ", simple " + d.isSimpleConsumerGroup()
                    + ", coordinator " + d.coordinator() + ", members " + ms;
            log("admin: describeConsumerGroups(" + g2 + "): " + dd);
            assertEquals("Stable", String.valueOf(d.state()), dd);
            assertEquals(g2, d.groupId(), dd);
            assertFalse(d.isSimpleConsumerGroup(), dd);
            assertEquals("range", d.partitionAssignor(), dd);
            assertNotNull(d.coordinator(), dd);
            assertEquals(Set.of("fid-a", "fid-b"), d.members().stream().map(MemberDescription::clientId).collect(Collectors.toSet()), dd);
            assertEquals(new HashSet<>(tps), union, "assignments must cover every partition: " + dd);
            assertEquals(parts, n, "assignments must not overlap: " + dd);

            Map<String, ConsumerGroupListing> groups = listGroups();
            log("admin: listConsumerGroups has " + groups.size() + " groups; ours: " + groups.get(g1) + ", " + groups.get(g2));
            assertTrue(groups.containsKey(g1) && groups.containsKey(g2), "listConsumerGroups must list " + g1 + " and " + g2);
            assertFalse(groups.get(g2).isSimpleConsumerGroup(), "listing of " + g2 + ": " + groups.get(g2));

            // The members commit after each batch; they read all 10 records of each partition.
            Map<TopicPartition, Long> end = endOffsets(topic);
            Map<TopicPartition, Long> committed = null;
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < deadline && !end.equals(committed = committedOffsets(g2))) Thread.sleep(200);
            log("admin: listConsumerGroupOffsets(" + g2 + ") " + committed + ", end offsets " + end);
            assertEquals(end, committed, "offsets the live members committed");

            Throwable refusedDelete = failure(() -> admin.deleteConsumerGroups(List.of(g2)).all().get(30, TimeUnit.SECONDS));
            log("admin: deleteConsumerGroups with 2 members connected: " + refusedDelete);
            assertTrue(refusedDelete instanceof GroupNotEmptyException,
                    "deleteConsumerGroups of a group with members must fail with GroupNotEmptyException, got " + refusedDelete);
            Throwable refusedOffsetDelete = failure(() ->
                    admin.deleteConsumerGroupOffsets(g2, Set.of(tps.get(0))).all().get(30, TimeUnit.SECONDS));
            log("admin: deleteConsumerGroupOffsets while the members are subscribed to the topic: " + refusedOffsetDelete);
            assertTrue(refusedOffsetDelete instanceof GroupSubscribedToTopicException,
                    "deleteConsumerGroupOffsets on a subscribed topic must fail with GroupSubscribedToTopicException, got "
                            + refusedOffsetDelete);
        } finally {
            for (LiveMember m : live) m.close();
        }
        // Members left (LeaveGroup on close): the group is empty and may be deleted.
        ConsumerGroupDescription empty = describe(g2);
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (!"Empty".equals(String.valueOf(empty.state())) && System.nanoTime() < until) {
            Thread.sleep(200);
            empty = describe(g2);
        }
        log("admin: after the members closed: state " + empty.state() + ", " + empty.members().size() + " members");
        assertEquals("Empty", String.valueOf(empty.state()), "state once both members closed");
        admin.deleteConsumerGroups(List.of(g2, g1)).all().get(30, TimeUnit.SECONDS);
        Map<String, ConsumerGroupListing> groups = listGroups();
        Map<TopicPartition, OffsetAndMetadata> gone = listOffsets(g2);
        log("admin: deleteConsumerGroups(" + g2 + ", " + g1 + ") accepted; listed afterwards: " + groups.containsKey(g2)
                + "/" + groups.containsKey(g1) + ", offsets of " + g2 + ": " + gone);
        assertFalse(groups.containsKey(g2) || groups.containsKey(g1), "deleted groups still listed");
        assertTrue(gone.isEmpty(), "a deleted group has no committed offsets: " + gone);
    }

    /** A group member polling in a thread of this JVM, committing after each batch. */
    static final class LiveMember {
        final KafkaConsumer<byte[], byte[]> consumer;
        final String topic;
        final AtomicBoolean running = new AtomicBoolean(true);
        final Thread thread;
        volatile Throwable error;

        LiveMember(String group, String clientId, String topic) {
            Properties c = consumerConfig(group, clientId);
            c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RANGE);
            this.consumer = new KafkaConsumer<>(c);
            this.topic = topic;
            this.thread = new Thread(this::loop, "live-" + clientId);
        }

        void start() {
            thread.start();
        }

        void loop() {
            try {
                consumer.subscribe(List.of(topic));
                while (running.get()) {
                    ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                    if (!recs.isEmpty()) consumer.commitSync(Duration.ofSeconds(15));
                }
            } catch (Throwable t) {
                error = t;
            } finally {
                consumer.close(Duration.ofSeconds(10));
            }
        }

        void close() throws InterruptedException {
            running.set(false);
            thread.join(20_000);
            if (error != null) log(thread.getName() + " failed: " + error);
        }
    }

    // ---- 3: SIGKILL the gateway under a consumer group ----------------------

    @Test
    @Order(5)
    @Timeout(240)
    void gatewaySigkillResumesFromCommittedOffsets() throws Exception {
        String bin = System.getenv("GATEWAY_BIN");
        String why = "not run: GATEWAY_BIN is not set, so there is no gateway this test may SIGKILL and restart "
                + "(compat-suites/run-against-gateway sets GATEWAY_BIN and GATEWAY_ARGS)";
        if (bin == null || bin.isBlank()) log(why);
        assumeTrue(bin != null && !bin.isBlank(), why);

        Path state = Files.createTempDirectory("java-group-sigkill-");
        boolean passed = false;
        try {
            String bootstrap = GatewaySigkillTest.ctl("start", state);
            gatewaySigkill(state, bootstrap);
            passed = true;
        } finally {
            GatewaySigkillTest.ctl("stop", state);
            if (passed) GatewaySigkillTest.deleteTree(state);
            else log("gateway state and log kept in " + state + " (gateway.log, member-*.log)");
        }
    }

    void gatewaySigkill(Path state, String bootstrap) throws Exception {
        int total = 12_000;
        int killAt = 4_000;
        String id = UUID.randomUUID().toString().substring(0, 8);
        String topic = "compat-grp-sigkill-" + id;
        String group = topic;
        try (AdminClient a = admin(bootstrap, "compat-group-sigkill-admin")) {
            a.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        Map<PO, Integer> produced = produce(bootstrap, topic, total);

        AtomicBoolean running = new AtomicBoolean(true);
        List<Member> members = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        List<Throwable> errors = new ArrayList<>();
        for (String name : List.of("g1", "g2")) {
            Path file = state.resolve("member-" + name + ".log");
            Files.createFile(file);
            members.add(new Member(name, file, null, null));
            Properties c = GroupMember.config(bootstrap, group, name, RANGE, "-");
            c.put(ConsumerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
            Thread t = new Thread(() -> {
                try {
                    GroupMember.runInProcess(c, topic, 50, file.toString(), running::get);
                } catch (Throwable e) {
                    synchronized (errors) {
                        errors.add(e);
                    }
                }
            }, "member-" + name);
            t.start();
            threads.add(t);
        }
        long downMs;
        long killTime;
        Set<PO> seen = new HashSet<>();
        BooleanSupplier pump = () -> {
            try {
                for (Member m : members) {
                    int before = m.records.size();
                    m.pump();
                    for (int i = before; i < m.records.size(); i++) seen.add(new PO((int) m.records.get(i)[1], m.records.get(i)[2]));
                }
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
            return true;
        };
        try {
            waitUntil(() -> pump.getAsBoolean() && members.stream().mapToInt(m -> m.records.size()).sum() >= killAt, 120,
                    killAt + " records consumed by the group", members);
            killTime = System.currentTimeMillis();
            GatewaySigkillTest.ctl("kill9", state);
            long k = System.nanoTime();
            // Down for longer than the 10 s session timeout, so the members' sessions are gone from
            // their side and they resume through a rejoin and the committed offsets.
            Thread.sleep(GATEWAY_DOWN_MS);
            assertEquals(bootstrap, GatewaySigkillTest.ctl("start", state), "restarted gateway must listen where it did");
            downMs = ms(k);
            waitUntil(() -> pump.getAsBoolean() && seen.containsAll(produced.keySet()), 150,
                    "all " + total + " records consumed after the restart", members);
        } finally {
            running.set(false);
            for (Thread t : threads) t.join(30_000);
        }
        for (Member m : members) m.pump();
        assertTrue(errors.isEmpty(), "member threads failed: " + errors);

        // The commits that returned before the kill: the latest per partition is where reading must resume.
        Map<Integer, Long> lastBefore = new TreeMap<>();
        Map<Integer, Long> lastBeforeTs = new HashMap<>();
        int consumedBefore = 0;
        for (Member m : members) {
            for (Commit c : m.commits) {
                if (c.ts >= killTime) continue;
                for (Map.Entry<Integer, Long> e : c.offsets.entrySet()) {
                    if (c.ts >= lastBeforeTs.getOrDefault(e.getKey(), Long.MIN_VALUE)) {
                        lastBeforeTs.put(e.getKey(), c.ts);
                        lastBefore.put(e.getKey(), e.getValue());
                    }
                }
            }
            for (long[] r : m.records) if (r[0] < killTime) consumedBefore++;
        }
        Map<PO, Integer> count = new HashMap<>();
        List<String> problems = new ArrayList<>();
        int consumed = 0;
        int failedCommits = 0;
        for (Member m : members) {
            failedCommits += m.fails.size();
            for (long[] r : m.records) {
                consumed++;
                PO po = new PO((int) r[1], r[2]);
                Integer index = produced.get(po);
                if (index == null || index != r[3]) {
                    problems.add(m.name + " consumed key index " + r[3] + " at partition " + po.p + " offset " + po.o
                            + ", where the producer stored " + index);
                }
                count.merge(po, 1, Integer::sum);
            }
        }
        int duplicates = 0;
        for (Map.Entry<PO, Integer> e : count.entrySet()) {
            if (e.getValue() < 2) continue;
            duplicates += e.getValue() - 1;
            long from = lastBefore.getOrDefault(e.getKey().p, -1L);
            if (e.getKey().o < from && problems.size() < 20) {
                problems.add("partition " + e.getKey().p + " offset " + e.getKey().o + " consumed " + e.getValue()
                        + " times, though offset " + from + " was committed before the SIGKILL");
            }
        }
        List<String> callbacks = new ArrayList<>();
        for (Member m : members) for (Callback cb : m.callbacks) if (cb.ts >= killTime) callbacks.add(m.name + ":" + cb);
        String report = String.format("group sigkill (%s): %d produced; %d consumed before the SIGKILL, gateway down %d ms; "
                        + "consumed %d, unique %d, duplicates %d, failed commits %d; last commits before the kill %s; "
                        + "callbacks after the kill %s",
                GatewaySigkillTest.backend(), total, consumedBefore, downMs, consumed, count.size(), duplicates,
                failedCommits, lastBefore, callbacks);
        log(report);
        if (!problems.isEmpty()) {
            fail(problems.size() + " problems (" + report + "; log " + state.resolve("gateway.log") + "):\n  "
                    + String.join("\n  ", problems));
        }
        assertEquals(produced.size(), count.size(), "distinct records consumed: " + report);
    }

    static void waitUntil(BooleanSupplier cond, int seconds, String what, List<Member> members) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                StringBuilder s = new StringBuilder("timed out after " + seconds + " s waiting for: " + what + "; members:");
                for (Member m : members) s.append("\n  ").append(m.summary());
                fail(s.toString());
            }
            Thread.sleep(200);
        }
    }

    // ---- member processes and their event logs ------------------------------

    /** A partition and offset. */
    static final class PO {
        final int p;
        final long o;

        PO(int p, long o) {
            this.p = p;
            this.o = o;
        }

        @Override
        public boolean equals(Object x) {
            return x instanceof PO && ((PO) x).p == p && ((PO) x).o == o;
        }

        @Override
        public int hashCode() {
            return Long.hashCode(o) * 31 + p;
        }
    }

    static final class Assign {
        final Member member;
        final long ts;
        final int gen;
        final Set<Integer> parts;

        Assign(Member member, long ts, int gen, Set<Integer> parts) {
            this.member = member;
            this.ts = ts;
            this.gen = gen;
            this.parts = parts;
        }
    }

    static final class Commit {
        final long ts;
        final Map<Integer, Long> offsets;

        Commit(long ts, Map<Integer, Long> offsets) {
            this.ts = ts;
            this.offsets = offsets;
        }
    }

    static final class Callback {
        final long ts;
        final String line;

        Callback(long ts, String line) {
            this.ts = ts;
            this.line = line;
        }

        @Override
        public String toString() {
            return line;
        }
    }

    /** A {@link GroupMember} (a process, or a thread for the gateway test) and what its file says so far. */
    static final class Member {
        final String name;
        final Path file;
        final Process process;
        final String instanceId;
        long pos;
        final List<long[]> records = new ArrayList<>(); // {ts, partition, offset, key index}
        final List<Commit> commits = new ArrayList<>();
        final List<Assign> assigns = new ArrayList<>();
        final List<Callback> callbacks = new ArrayList<>(); // A, V and L lines
        final List<String> fails = new ArrayList<>();
        final List<String> exits = new ArrayList<>();
        boolean killed;

        Member(String name, Path file, Process process, String instanceId) {
            this.name = name;
            this.file = file;
            this.process = process;
            this.instanceId = instanceId;
        }

        static Member launch(Path dir, String bootstrap, String topic, String group, String name, String assignor,
                String instanceId, long delayMs) throws IOException {
            Path file = dir.resolve(name + ".events");
            Files.deleteIfExists(file);
            Files.createFile(file);
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
            List<String> cmd = List.of(java, "-cp", cp, "-Xmx192m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true",
                    GroupMember.class.getName(), bootstrap, topic, group, name, file.toString(), assignor, instanceId,
                    Long.toString(delayMs));
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                    .redirectOutput(dir.resolve(name + ".out").toFile());
            return new Member(name, file, pb.start(), instanceId);
        }

        /** SIGKILL: the member gets no chance to leave the group or commit. */
        void kill() throws InterruptedException {
            killed = true;
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }

        /** Closes its stdin: it closes its consumer (leaving the group) and exits. */
        void stop() throws IOException {
            process.getOutputStream().close();
        }

        void awaitExit(int seconds) throws InterruptedException {
            if (!process.waitFor(seconds, TimeUnit.SECONDS)) {
                log(name + " did not exit within " + seconds + " s of its stdin closing; killing it");
                process.destroyForcibly();
            }
        }

        void destroy() {
            if (process != null && process.isAlive()) process.destroyForcibly();
        }

        Assign lastAssign() {
            return assigns.isEmpty() ? null : assigns.get(assigns.size() - 1);
        }

        /** Partition to the next offset in the member's last successful commit of it. */
        Map<Integer, Long> lastCommitted() {
            Map<Integer, Long> last = new HashMap<>();
            for (Commit c : commits) last.putAll(c.offsets);
            return last;
        }

        /** Reads the complete lines appended since the last call. */
        void pump() throws IOException {
            byte[] buf;
            try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "r")) {
                long len = f.length();
                if (len <= pos) return;
                buf = new byte[(int) (len - pos)];
                f.seek(pos);
                f.readFully(buf);
            }
            int end = buf.length;
            while (end > 0 && buf[end - 1] != '\n') end--;
            if (end == 0) return;
            pos += end;
            for (String line : new String(buf, 0, end, UTF_8).split("\n")) parse(line);
        }

        void parse(String line) {
            String[] f = line.split(" ", 4);
            long ts = Long.parseLong(f[1]);
            switch (f[0]) {
                case "R":
                    String[] r = line.split(" ");
                    records.add(new long[] {ts, Long.parseLong(r[2]), Long.parseLong(r[3]), Long.parseLong(r[4])});
                    break;
                case "C":
                    Map<Integer, Long> offs = new HashMap<>();
                    for (String kv : f[2].split(",")) {
                        String[] x = kv.split("=");
                        offs.put(Integer.parseInt(x[0]), Long.parseLong(x[1]));
                    }
                    commits.add(new Commit(ts, offs));
                    break;
                case "A":
                    Set<Integer> parts = new TreeSet<>();
                    String[] a = line.split(" ");
                    if (!a[3].equals("-")) for (String p : a[3].split(",")) parts.add(Integer.parseInt(p));
                    assigns.add(new Assign(this, ts, Integer.parseInt(a[2]), parts));
                    callbacks.add(new Callback(ts, "assigned gen " + a[2] + " " + parts));
                    break;
                case "V":
                    callbacks.add(new Callback(ts, "revoked " + f[2]));
                    break;
                case "L":
                    callbacks.add(new Callback(ts, "lost " + f[2]));
                    break;
                case "F":
                    fails.add(line);
                    break;
                case "X":
                    exits.add(line);
                    break;
                default:
                    throw new IllegalStateException(file + ": unexpected line " + line);
            }
        }

        String summary() {
            Assign a = lastAssign();
            return String.format("%s%s: %d records, %d commits (%d failed), assignment %s, %s, last callbacks %s, exits %s",
                    name, killed ? " (killed)" : "", records.size(), commits.size(), fails.size(),
                    a == null ? "none" : a.parts + " gen " + a.gen,
                    process == null ? "in-process" : process.isAlive() ? "running" : "exited " + process.exitValue(),
                    callbacks.subList(Math.max(0, callbacks.size() - 4), callbacks.size()), exits);
        }
    }

    // ---- helpers -------------------------------------------------------------

    static AdminClient admin(String bootstrap, String clientId) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, clientId);
        return AdminClient.create(p);
    }

    static void createTopic(String topic, int partitions) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        topics.add(topic);
    }

    static Properties producerConfig(String bootstrap) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "compat-group-producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "10");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "65536");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    static Properties consumerConfig(String group, String clientId) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        if (group != null) c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return c;
    }

    /** Sends {@code n} records keyed k-000000.. and returns where each landed: (partition, offset) to index. */
    static Map<PO, Integer> produce(String bootstrap, String topic, int n) throws Exception {
        Map<PO, Integer> produced = new HashMap<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerConfig(bootstrap))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                fs.add(producer.send(new ProducerRecord<>(topic, String.format("k-%06d", i).getBytes(UTF_8),
                        ("value-" + i).getBytes(UTF_8))));
            }
            for (int i = 0; i < n; i++) {
                RecordMetadata md = fs.get(i).get(60, TimeUnit.SECONDS);
                assertTrue(md.offset() >= 0, "record " + i + " acknowledged without an offset: " + md);
                Integer dup = produced.put(new PO(md.partition(), md.offset()), i);
                assertTrue(dup == null, "records " + dup + " and " + i + " both acknowledged at " + md);
            }
        }
        Set<Integer> parts = produced.keySet().stream().map(po -> po.p).collect(Collectors.toSet());
        assertEquals(PARTITIONS, parts.size(), "keyed records must reach every partition, reached " + parts);
        return produced;
    }

    static Map<TopicPartition, Long> endOffsets(String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        Map<TopicPartition, Long> end;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(consumerConfig(null, "compat-group-end"))) {
            for (org.apache.kafka.common.PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            end = c.endOffsets(tps, Duration.ofSeconds(30));
        }
        return new HashMap<>(end);
    }

    static Map<TopicPartition, OffsetAndMetadata> listOffsets(String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            if (e.getValue() != null) out.put(e.getKey(), e.getValue());
        }
        return out;
    }

    static Map<TopicPartition, Long> committedOffsets(String group) {
        try {
            Map<TopicPartition, Long> out = new HashMap<>();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : listOffsets(group).entrySet()) {
                out.put(e.getKey(), e.getValue().offset());
            }
            return out;
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    static ConsumerGroupDescription describe(String group) throws Exception {
        return admin.describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
    }

    static int assigned(ConsumerGroupDescription d) {
        int n = 0;
        for (MemberDescription m : d.members()) n += m.assignment().topicPartitions().size();
        return n;
    }

    static Map<String, ConsumerGroupListing> listGroups() throws Exception {
        Map<String, ConsumerGroupListing> out = new HashMap<>();
        for (ConsumerGroupListing l : admin.listConsumerGroups().all().get(30, TimeUnit.SECONDS)) out.put(l.groupId(), l);
        return out;
    }

    interface Call {
        void run() throws Exception;
    }

    /** The cause of the failure of {@code call}, or null if it succeeded. */
    static Throwable failure(Call call) {
        try {
            call.run();
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (Exception e) {
            return e;
        }
    }

    static void sameOffsets(Map<TopicPartition, OffsetAndMetadata> want, Map<TopicPartition, OffsetAndMetadata> got,
            String what) {
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : want.entrySet()) {
            OffsetAndMetadata g = got.get(e.getKey());
            assertNotNull(g, what + ": no committed offset for " + e.getKey());
            OffsetAndMetadata w = e.getValue();
            assertEquals(w.offset(), g.offset(), what + ": offset of " + e.getKey());
            assertEquals(w.leaderEpoch(), g.leaderEpoch(), what + ": leader epoch of " + e.getKey());
            assertEquals(w.metadata(), g.metadata(), what + ": metadata of " + e.getKey());
        }
    }

    static String show(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<Integer, String> s = new TreeMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            OffsetAndMetadata o = e.getValue();
            s.put(e.getKey().partition(), o == null ? "null"
                    : o.offset() + "/epoch " + o.leaderEpoch().map(String::valueOf).orElse("-") + "/\"" + o.metadata() + "\"");
        }
        return s.toString();
    }

    static long ms(long t0) {
        return (System.nanoTime() - t0) / 1_000_000;
    }

    static void log(String msg) {
        System.out.println("[" + CLIENT + "] " + msg);
    }
}

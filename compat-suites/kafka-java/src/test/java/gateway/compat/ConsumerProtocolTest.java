package gateway.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka's consumer group protocol (KIP-848, {@code group.protocol=consumer}), where the group
 * coordinator assigns the partitions, through whatever serves {@code -Dbootstrap.servers}. Proved on
 * Apache Kafka 4.3.1 first. Needs a 4.x client (the pom leaves it out of older clients' builds).
 *
 * <ol>
 *   <li>Two members share a topic: the second gets its half only after the first has given it up
 *       (and committed, in its revocation callback), so no record is read twice; the Admin client
 *       describes and lists the group as a consumer group; the first member gets everything back
 *       when the second leaves.</li>
 *   <li>The server-side {@code range} assignor gives members the same partition numbers of two
 *       co-partitioned topics.</li>
 *   <li>A static member restarted within its session gets its partitions back at the same group
 *       epoch: no rebalance.</li>
 *   <li>A {@link SubscriptionPattern} (a regular expression the coordinator evaluates) subscribes to
 *       the whole topic names it matches, a topic created later included.</li>
 * </ol>
 */
class ConsumerProtocolTest {
    static final String BOOTSTRAP = KafkaRoundTripTest.BOOTSTRAP;
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static final String LOG = "[" + KafkaRoundTripTest.CLIENT + "] consumer protocol: ";
    /** Hang guard for a group to settle: a few heartbeat intervals (5 s) on any broker. */
    static final Duration SETTLE = Duration.ofSeconds(60);

    static AdminClient admin;
    static final List<String> topics = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "compat-kip848-admin");
        admin = AdminClient.create(p);
    }

    @AfterAll
    static void tearDown() {
        if (admin == null) return;
        try {
            admin.deleteTopics(topics).all().get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            System.err.println("cleanup: " + e);
        }
        admin.close();
    }

    static void log(String s) {
        System.out.println(LOG + s);
    }

    static String freshTopic(String what, int partitions) throws Exception {
        String name = "kip848-" + what + "-" + RUN;
        admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        topics.add(name);
        return name;
    }

    static void produce(String topic, int partitions, int perPartition) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < perPartition; i++) {
                for (int part = 0; part < partitions; part++) {
                    producer.send(new ProducerRecord<>(topic, part, "k", part + ":" + i));
                }
            }
            producer.flush();
        }
    }

    static KafkaConsumer<String, String> member(String group, Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50);
        p.putAll(extra);
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    /** Polls every member (each from this thread: a consumer is used by one thread at a time). */
    static void pollUntil(String what, List<KafkaConsumer<String, String>> members, BooleanSupplier done) {
        long deadline = System.nanoTime() + SETTLE.toNanos();
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > deadline) fail(what + ": not within " + SETTLE);
            for (KafkaConsumer<String, String> m : members) m.poll(Duration.ofMillis(100));
        }
    }

    static ConsumerGroupDescription describe(String group) throws Exception {
        return admin.describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
    }

    /** A member that records what it reads and commits what it read before giving partitions up. */
    static final class Reader implements ConsumerRebalanceListener {
        final KafkaConsumer<String, String> consumer;
        final Map<String, Integer> seen;
        final Map<TopicPartition, OffsetAndMetadata> uncommitted = new HashMap<>();

        Reader(KafkaConsumer<String, String> consumer, Map<String, Integer> seen) {
            this.consumer = consumer;
            this.seen = seen;
        }

        void read() {
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
                seen.merge(r.value(), 1, Integer::sum);
                uncommitted.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
        }

        void commit() {
            if (!uncommitted.isEmpty()) consumer.commitSync(uncommitted);
            uncommitted.clear();
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            // Read records of the revoked partitions are committed before they move.
            commit();
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {}
    }

    @Test
    @Timeout(240)
    void membersShareATopicAndHandItBack() throws Exception {
        int partitions = 4, perPartition = 500, total = partitions * perPartition;
        String topic = freshTopic("share", partitions);
        String group = "kip848-share-" + RUN;
        produce(topic, partitions, perPartition);
        Map<String, Integer> seen = new HashMap<>();
        try (KafkaConsumer<String, String> a = member(group, Map.of())) {
            Reader ra = new Reader(a, seen);
            a.subscribe(List.of(topic), ra);
            long deadline = System.nanoTime() + SETTLE.toNanos();
            while (a.assignment().size() < partitions) {
                if (System.nanoTime() > deadline) fail("the first member never got every partition");
                ra.read();
            }
            // Read a part, so that records are in flight when the second member arrives.
            while (seen.size() < total / 4) ra.read();
            ra.commit();
            try (KafkaConsumer<String, String> b = member(group, Map.of())) {
                Reader rb = new Reader(b, seen);
                b.subscribe(List.of(topic), rb);
                deadline = System.nanoTime() + SETTLE.toNanos();
                while (seen.size() < total || !(a.assignment().size() == 2 && b.assignment().size() == 2)) {
                    if (System.nanoTime() > deadline) {
                        fail("not shared 2/2 with everything read within " + SETTLE + ": " + a.assignment() + " / "
                                + b.assignment() + ", read " + seen.size() + " of " + total);
                    }
                    ra.read();
                    ra.commit();
                    rb.read();
                    rb.commit();
                }
                Set<TopicPartition> both = new HashSet<>(a.assignment());
                both.addAll(b.assignment());
                assertEquals(partitions, both.size(), "each partition has exactly one owner");
                List<String> twice = seen.entrySet().stream().filter(e -> e.getValue() > 1).map(Map.Entry::getKey)
                        .collect(Collectors.toList());
                assertEquals(List.of(), twice, "records read twice: a partition moved before it was given up");

                ConsumerGroupDescription d = describe(group);
                log("described: " + d);
                assertEquals(GroupType.CONSUMER, d.type());
                assertEquals(GroupState.STABLE, d.groupState());
                assertEquals("uniform", d.partitionAssignor());
                assertEquals(2, d.members().size());
                assertEquals(d.groupEpoch(), d.targetAssignmentEpoch());
                for (MemberDescription m : d.members()) {
                    assertEquals(2, m.assignment().topicPartitions().size(), "assignment of " + m);
                    assertEquals(m.assignment(), m.targetAssignment().orElseThrow(), "target of " + m);
                    assertEquals(d.groupEpoch(), m.memberEpoch());
                }
                Collection<GroupListing> listed = admin.listGroups().all().get(30, TimeUnit.SECONDS);
                GroupListing mine = listed.stream().filter(g -> g.groupId().equals(group)).findFirst().orElseThrow();
                assertEquals(GroupType.CONSUMER, mine.type().orElseThrow());
                assertEquals("consumer", mine.protocol());
            }
            // b left: a owns every partition again.
            pollUntil("everything back to the first member", List.of(a), () -> a.assignment().size() == partitions);
        }
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (int p = 0; p < partitions; p++) latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends =
                admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS);
        for (TopicPartition tp : latest.keySet()) {
            // Everything read was committed: the committed offset is the partition's end.
            assertEquals(ends.get(tp).offset(), committed.get(tp).offset(), "committed offset of " + tp);
        }
        ConsumerGroupDescription after = describe(group);
        assertEquals(GroupState.EMPTY, after.groupState());
        assertEquals(0, after.members().size());
    }

    @Test
    @Timeout(240)
    void rangeGivesCoPartitionedTopicsTheSameNumbers() throws Exception {
        String orders = freshTopic("orders", 4), payments = freshTopic("payments", 4);
        String group = "kip848-range-" + RUN;
        Map<String, Object> range = Map.of(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, "range");
        try (KafkaConsumer<String, String> a = member(group, range);
                KafkaConsumer<String, String> b = member(group, range)) {
            a.subscribe(List.of(orders, payments));
            b.subscribe(List.of(orders, payments));
            pollUntil("range assignment of both topics", List.of(a, b),
                    () -> a.assignment().size() == 4 && b.assignment().size() == 4);
            for (KafkaConsumer<String, String> m : List.of(a, b)) {
                Set<Integer> inOrders = numbers(m.assignment(), orders), inPayments = numbers(m.assignment(), payments);
                assertEquals(inOrders, inPayments, "co-partitioned numbers of " + m.assignment());
                assertEquals(2, inOrders.size());
            }
            assertEquals("range", describe(group).partitionAssignor());
        }
    }

    static Set<Integer> numbers(Set<TopicPartition> assignment, String topic) {
        return assignment.stream().filter(tp -> tp.topic().equals(topic)).map(TopicPartition::partition)
                .collect(Collectors.toCollection(TreeSet::new));
    }

    @Test
    @Timeout(240)
    void aRestartedStaticMemberGetsItsPartitionsBackWithoutARebalance() throws Exception {
        String topic = freshTopic("static", 4);
        String group = "kip848-static-" + RUN;
        Map<String, Object> first = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-1");
        Map<String, Object> second = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-2");
        try (KafkaConsumer<String, String> other = member(group, second)) {
            other.subscribe(List.of(topic));
            Set<TopicPartition> before;
            int epoch;
            try (KafkaConsumer<String, String> a = member(group, first)) {
                a.subscribe(List.of(topic));
                pollUntil("2/2 between the static members", List.of(a, other),
                        () -> a.assignment().size() == 2 && other.assignment().size() == 2);
                before = new HashSet<>(a.assignment());
                epoch = describe(group).groupEpoch().orElseThrow();
            }
            // Closed: a static member leaves for a restart, keeping its partitions for its session.
            try (KafkaConsumer<String, String> again = member(group, first)) {
                again.subscribe(List.of(topic));
                pollUntil("the restarted member's partitions", List.of(again, other), () -> again.assignment().size() == 2);
                assertEquals(before, again.assignment());
                assertEquals(2, other.assignment().size());
                ConsumerGroupDescription d = describe(group);
                assertEquals(epoch, d.groupEpoch().orElseThrow(), "group epoch after a static restart");
                assertEquals(2, d.members().size());
            }
        }
    }

    @Test
    @Timeout(240)
    void theCoordinatorEvaluatesASubscriptionPattern() throws Exception {
        String a = freshTopic("re-a", 2), b = freshTopic("re-b", 2);
        freshTopic("other-re-c", 2);
        String group = "kip848-regex-" + RUN;
        // Whole names: "other-kip848-re-c-..." contains a match but is not one.
        SubscriptionPattern pattern = new SubscriptionPattern("kip848-re-.-" + RUN);
        try (KafkaConsumer<String, String> m = member(group, Map.of())) {
            m.subscribe(pattern);
            pollUntil("the matching topics", List.of(m), () -> m.assignment().size() == 4);
            assertEquals(Set.of(a, b), m.assignment().stream().map(TopicPartition::topic).collect(Collectors.toSet()));
            String c = freshTopic("re-c", 1);
            pollUntil("a matching topic created later", List.of(m), () -> m.assignment().size() == 5);
            assertTrue(m.assignment().contains(new TopicPartition(c, 0)));
        }
    }
}

package gateway.jmsinterop;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.fail;

import jakarta.jms.BytesMessage;
import jakarta.jms.Connection;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A topic Kafka created is a partitioned Pulsar topic (3 partitions here). JMS uses it by its
 *  name: a queue consumer and a topic subscriber read every partition, each partition in
 *  order; a JMS producer writes to one partition, so its messages stay in the order sent
 *  (docs/jms.md "Partitioned topics"). */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class PartitionedTopicTest {
    static final int PARTITIONS = 3;

    static void createKafkaTopic(String name) throws Exception {
        try (Admin admin = Admin.create(Map.<String, Object>of("bootstrap.servers", Env.BOOTSTRAP))) {
            admin.createTopics(List.of(new NewTopic(name, PARTITIONS, (short) 1)))
                    .all().get(Env.WAIT_MS, TimeUnit.MILLISECONDS);
        }
    }

    /** Sends `prefix-i` for i in [from, to) to partition i % 3; waits for each. */
    static void kafkaSend(String topic, String prefix, int from, int to) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = Env.kafkaProducer()) {
            for (int i = from; i < to; i++) {
                p.send(new ProducerRecord<>(topic, i % PARTITIONS, null, (prefix + "-" + i).getBytes(UTF_8)))
                        .get(Env.WAIT_MS, TimeUnit.MILLISECONDS);
            }
        }
    }

    /** Receives `n` messages, then none for a while; their bodies, in the order received. */
    static List<String> receiveAll(MessageConsumer consumer, int n, String what) throws Exception {
        List<String> got = new ArrayList<>();
        while (got.size() < n) {
            Message m = consumer.receive(Env.WAIT_MS);
            if (m == null) {
                fail(what + ": " + got.size() + " of " + n + " received, then nothing for " + Env.WAIT_MS + " ms: " + got);
            }
            got.add(m instanceof TextMessage t ? t.getText() : new String(Env.bytesBody((BytesMessage) m), UTF_8));
        }
        assertNull(consumer.receive(Env.QUIET_MS), what + ": a message more than sent");
        return got;
    }

    /** Every `prefix-i` for i in [0, n) once, and those of one partition (i % 3) in order. */
    static void assertPartitionOrder(List<String> got, String prefix, int n, String what) {
        assertEquals(n, got.size(), what + ": " + got);
        Map<Integer, Integer> last = new HashMap<>();
        boolean[] seen = new boolean[n];
        for (String body : got) {
            int i = Integer.parseInt(body.substring(prefix.length() + 1));
            if (seen[i]) {
                fail(what + ": " + body + " twice: " + got);
            }
            seen[i] = true;
            Integer before = last.put(i % PARTITIONS, i);
            if (before != null && before > i) {
                fail(what + ": " + body + " after " + prefix + "-" + before + " of the same partition: " + got);
            }
        }
    }

    /** Kafka writes to all 3 partitions, before and after the JMS queue's first consumer; the
     *  queue gets all of it. */
    @Test
    void kafkaPartitionsToJmsQueue() throws Exception {
        String q = Env.unique("kafka-parts-to-queue");
        createKafkaTopic(q);
        kafkaSend(q, "m", 0, 30);
        try (Connection c = Env.jms().createConnection()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(q));
            kafkaSend(q, "m", 30, 45);
            assertPartitionOrder(receiveAll(consumer, 45, "Kafka partitions -> JMS queue"), "m", 45,
                    "Kafka partitions -> JMS queue");
        }
        // Acknowledged on every partition: a new consumer finds nothing.
        try (Connection c = Env.jms().createConnection()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            assertNull(s.createConsumer(s.createQueue(q)).receive(Env.QUIET_MS), "consumed messages came back");
        }
    }

    /** A JMS topic subscriber and a durable one on a Kafka topic: both get what Kafka writes to
     *  every partition; the durable one is then unsubscribed. */
    @Test
    void kafkaPartitionsToJmsTopicSubscribers() throws Exception {
        String t = Env.unique("kafka-parts-to-topic");
        createKafkaTopic(t);
        try (Connection c = Env.jms().createConnection()) {
            c.setClientID(Env.unique("parts-client"));
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer plain = s.createConsumer(s.createTopic(t));
            MessageConsumer durable = s.createDurableConsumer(s.createTopic(t), "parts-durable");
            kafkaSend(t, "m", 0, 30);
            assertPartitionOrder(receiveAll(plain, 30, "subscriber"), "m", 30, "Kafka partitions -> JMS subscriber");
            assertPartitionOrder(receiveAll(durable, 30, "durable subscriber"), "m", 30,
                    "Kafka partitions -> JMS durable subscriber");
            durable.close();
            s.unsubscribe("parts-durable");
        }
    }

    /** Two JMS producers on the Kafka topic: each one's messages are in one partition, in the
     *  order sent, as a Kafka consumer of all partitions reads them. */
    @Test
    void jmsProducersToKafkaPartitions() throws Exception {
        String t = Env.unique("jms-to-kafka-parts");
        createKafkaTopic(t);
        try (Connection c = Env.jms().createConnection()) {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer a = s.createProducer(s.createQueue(t));
            MessageProducer b = s.createProducer(s.createQueue(t));
            for (int i = 0; i < 20; i++) {
                a.send(s.createTextMessage("a-" + i));
                b.send(s.createTextMessage("b-" + i));
            }
        }
        Properties p = new Properties();
        p.put("bootstrap.servers", Env.BOOTSTRAP);
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        Map<String, List<String>> byProducer = new TreeMap<>();
        Map<String, Integer> partitionOf = new TreeMap<>();
        int n = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) {
                parts.add(new TopicPartition(t, i));
            }
            assertEquals(PARTITIONS, consumer.partitionsFor(t, Duration.ofMillis(Env.WAIT_MS)).size());
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            long deadline = System.currentTimeMillis() + Env.WAIT_MS;
            while (n < 40 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    String body = new String(r.value(), UTF_8);
                    String producer = body.substring(0, 1);
                    byProducer.computeIfAbsent(producer, k -> new ArrayList<>()).add(body);
                    Integer before = partitionOf.put(producer, r.partition());
                    if (before != null && before != r.partition()) {
                        fail("producer " + producer + " wrote to partitions " + before + " and " + r.partition());
                    }
                    n++;
                }
            }
        }
        for (String producer : List.of("a", "b")) {
            List<String> wanted = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                wanted.add(producer + "-" + i);
            }
            assertEquals(wanted, byProducer.get(producer), "producer " + producer + "'s messages, in Kafka's order");
        }
    }
}

package gateway.interop;

import static gateway.interop.Interop.*;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.MessageIdAdv;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Reader;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.impl.MessageImpl;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka -> Pulsar: records produced with the Java Kafka producer through the gateway are
 * read with the Java Pulsar client straight from the broker (docs/kafka.md "Mapping to
 * Pulsar", DESIGN.md §5 "Produce").
 */
class KafkaToPulsarTest {
    static final int PARTITIONS = 3;
    static final int RECORDS = 300;

    record Sent(int i, int partition, byte[] key, byte[] value, List<Map.Entry<String, byte[]>> headers,
                long timestamp, long offset) {}

    record Rec(byte[] key, byte[] value, List<Map.Entry<String, byte[]>> headers, long timestamp) {}

    static byte[] randomBytes(Random rng, int n) {
        byte[] b = new byte[n];
        rng.nextBytes(b);
        return b;
    }

    static Rec makeRecord(Random rng, int i, long baseTs) {
        // keys: null, non-UTF-8 binary, empty, non-ASCII UTF-8, plain text
        byte[] key;
        switch (i % 10) {
            case 0: key = null; break;
            case 1: case 7: {
                key = new byte[10];
                key[0] = (byte) 0xff; key[1] = (byte) 0xfe; key[2] = (byte) (i >> 8); key[3] = (byte) i;
                byte[] r = randomBytes(rng, 6);
                System.arraycopy(r, 0, key, 4, 6);
                break;
            }
            case 2: key = new byte[0]; break;
            case 3: key = ("ключ-" + i).getBytes(UTF_8); break;
            default: key = ("key-" + (i % 17)).getBytes(UTF_8);
        }
        byte[] value;
        if (i == 41) { // a tombstone with a key
            key = "tombstone-key".getBytes(UTF_8);
            value = null;
        } else if (i % 25 == 6) {
            value = new byte[0];
        } else {
            value = randomBytes(rng, 1 + rng.nextInt(200));
        }
        List<Map.Entry<String, byte[]>> headers = new ArrayList<>();
        headers.add(Map.entry("seq", Integer.toString(i).getBytes(UTF_8)));
        switch (i % 4) {
            case 1: // duplicate keys, interleaved
                headers.add(Map.entry("dup", "first".getBytes(UTF_8)));
                headers.add(Map.entry("dup", "second".getBytes(UTF_8)));
                headers.add(Map.entry("x", "y".getBytes(UTF_8)));
                headers.add(Map.entry("dup", "third".getBytes(UTF_8)));
                break;
            case 2: // not UTF-8, and UTF-8 but not ASCII
                headers.add(Map.entry("bin", new byte[] {(byte) 0xff, 0, (byte) 0x80, (byte) i}));
                headers.add(Map.entry("txt", "héllo ✓".getBytes(UTF_8)));
                break;
            case 3:
                headers.add(Map.entry("empty", new byte[0]));
                break;
            default:
                break;
        }
        if (i % 50 == 20) headers.add(new java.util.AbstractMap.SimpleEntry<>("nullhdr", null));
        long ts = baseTs + (i * 7919L) % 100_000; // explicit, non-monotonic, an hour back
        return new Rec(key, value, headers, ts);
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void kafkaProduceJavaPulsarRead() throws Exception {
        String topic = "interop-java-k2p-" + UUID.randomUUID().toString().substring(0, 10);

        // 1. Create the topic through Kafka; Pulsar must then show a 3-partition topic.
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(60, TimeUnit.SECONDS);
        }
        Object[] r = http("GET", adminTopicPath(topic) + "/partitions", null);
        assertEquals(200, r[0], "Pulsar admin GET partitions: " + r[1]);
        assertTrue(((String) r[1]).replace(" ", "").contains("\"partitions\":" + PARTITIONS),
                "Pulsar sees " + r[1] + " for " + topic + ", want " + PARTITIONS + " partitions");

        // 2. Produce; linger so that records form multi-record batches, three waves.
        Random rng = new Random(20261122);
        long baseTs = (System.currentTimeMillis() / 1000) * 1000 - 3_600_000;
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 200);
        pp.put(ProducerConfig.BATCH_SIZE_CONFIG, 256 * 1024);
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 90_000);
        List<Rec> recs = new ArrayList<>();
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer =
                     new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < RECORDS; i++) {
                Rec rec = makeRecord(rng, i, baseTs);
                List<Header> hs = new ArrayList<>();
                for (Map.Entry<String, byte[]> h : rec.headers()) hs.add(new RecordHeader(h.getKey(), h.getValue()));
                recs.add(rec);
                futures.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, rec.timestamp(), rec.key(),
                        rec.value(), hs)));
                if (i % 100 == 99) producer.flush();
            }
        }
        Map<Integer, List<Sent>> sent = new HashMap<>();
        for (int i = 0; i < RECORDS; i++) {
            RecordMetadata md = futures.get(i).get(30, TimeUnit.SECONDS);
            Rec rec = recs.get(i);
            assertEquals(i % PARTITIONS, md.partition(), "record " + i + " partition");
            sent.computeIfAbsent(md.partition(), k -> new ArrayList<>())
                    .add(new Sent(i, md.partition(), rec.key(), rec.value(), rec.headers(), rec.timestamp(), md.offset()));
        }
        for (Map.Entry<Integer, List<Sent>> e : sent.entrySet()) {
            long prev = -1;
            for (Sent s : e.getValue()) {
                assertTrue(s.offset() > prev, "partition " + e.getKey() + ": producer offsets not strictly increasing at #" + s.i());
                prev = s.offset();
            }
        }

        // 3. Read every partition with a Java Pulsar reader from the earliest message.
        Mismatches bad = new Mismatches();
        Map<String, Integer> entrySizes = new LinkedHashMap<>();
        int maxBatchIndex = -1;
        try (PulsarClient client = pulsarClient()) {
            for (int p = 0; p < PARTITIONS; p++) {
                String ptopic = topic + "-partition-" + p;
                List<Sent> want = sent.get(p);
                List<Message<byte[]>> got = new ArrayList<>();
                boolean extra;
                try (Reader<byte[]> reader = client.newReader(Schema.BYTES).topic(pulsarTopic(ptopic))
                        .startMessageId(MessageId.earliest).create()) {
                    for (int k = 0; k < want.size(); k++) {
                        Message<byte[]> m = reader.readNext(20, TimeUnit.SECONDS);
                        if (m == null) break;
                        got.add(m);
                    }
                    extra = reader.hasMessageAvailable();
                }
                if (got.size() != want.size() || extra) {
                    bad.add(ptopic + ": read " + got.size() + " messages" + (extra ? " and more are available" : "")
                            + ", want exactly " + want.size());
                }
                for (int k = 0; k < Math.min(got.size(), want.size()); k++) {
                    Sent s = want.get(k);
                    Message<byte[]> m = got.get(k);
                    String where = ptopic + " record #" + s.i() + " (kafka offset " + s.offset() + " = "
                            + splitOffset(s.offset()) + ")";
                    MessageIdAdv id = (MessageIdAdv) m.getMessageId();
                    maxBatchIndex = Math.max(maxBatchIndex, id.getBatchIndex());
                    entrySizes.put(p + "/" + id.getLedgerId() + "/" + id.getEntryId(), id.getBatchSize());
                    // offset <-> message id; also proves per-partition order
                    bad.check(where, "message id " + idText(id) + " as offset", offsetOf(id), s.offset());
                    bad.check(where, "message is in a batch entry (batch index >= 0)", id.getBatchIndex() >= 0, true);

                    // key
                    bad.check(where, "hasKey()", m.hasKey(), s.key() != null);
                    if (s.key() != null && m.hasKey()) {
                        bad.check(where, "getKeyBytes()", m.getKeyBytes(), s.key());
                        bad.check(where, "getKey()", m.getKey(), keyText(s.key()));
                        bad.check(where, "hasBase64EncodedKey()", m.hasBase64EncodedKey(), !isUtf8(s.key()));
                    } else if (m.hasKey()) {
                        bad.check(where, "getKey() (no Kafka key)", m.getKey(), null);
                    }
                    bad.check(where, "hasOrderingKey()", m.hasOrderingKey(), s.key() != null);
                    if (m.hasOrderingKey()) bad.check(where, "getOrderingKey()", m.getOrderingKey(), s.key());

                    // value; Pulsar 4 returns null data/value for a null_value message
                    bad.check(where, "getData()", m.getData(), s.value());
                    bad.check(where, "getValue()", m.getValue(), s.value());
                    bad.check(where, "size()", m.size(), s.value() == null ? 0 : s.value().length);

                    // headers -> properties
                    List<Map.Entry<String, String>> wantProps = headerProperties(s.headers());
                    Map<String, String> wantMap = new HashMap<>();
                    for (Map.Entry<String, String> e : wantProps) wantMap.put(e.getKey(), e.getValue()); // last wins, as MessageImpl
                    bad.check(where, "getProperties()", m.getProperties(), wantMap);
                    bad.check(where, "getEventTime()", m.getEventTime(), s.timestamp());

                    // the tombstone flag itself. (For a message of a batch entry, MessageImpl keeps
                    // the entry's metadata plus the single message's fields; its per-message
                    // properties exist only as the map above, so the ordered list with duplicates
                    // is not visible through the Java client: compat-suites/pulsar-interop checks
                    // it in the raw entry.)
                    if (m instanceof MessageImpl) {
                        var md = ((MessageImpl<?>) m).getMessageBuilder();
                        bad.check(where, "metadata null_value", md.hasNullValue() && md.isNullValue(), s.value() == null);
                    } else {
                        bad.add(where + ": message is a " + m.getClass().getName() + ", not MessageImpl");
                    }
                }
            }
        }
        long multi = entrySizes.values().stream().filter(n -> n > 1).count();
        System.out.println("[pulsar-interop-java diagnostics] kafka->pulsar: " + RECORDS + " records in "
                + entrySizes.size() + " Pulsar entries (" + multi + " with more than one message, largest batch index "
                + maxBatchIndex + ")");
        if (!bad.lines.isEmpty()) fail(bad.report("Kafka -> Pulsar on " + topic));
        assertTrue(maxBatchIndex > 0, "no Pulsar message had a batch index > 0 (" + entrySizes.size()
                + " entries): Kafka batches did not form");
    }
}

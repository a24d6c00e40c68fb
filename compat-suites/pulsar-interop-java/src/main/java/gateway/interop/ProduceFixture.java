package gateway.interop;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.CompressionType;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.MessageIdAdv;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Reader;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.TypedMessageBuilder;

/**
 * Writes a known data set with the Java Pulsar client straight to the broker, for Kafka clients
 * of other languages to read back through the gateway (tests/pulsar_backend.rs with librdkafka).
 *
 * <p>Usage: {@code ProduceFixture [--partitions N] [--unbatched] [--chunked] [--producers N]
 * [--messages N] [--compression NONE|LZ4|ZLIB|ZSTD|SNAPPY] TOPIC}; needs {@code PULSAR_URL}, and
 * {@code PULSAR_ADMIN_URL} with {@code --partitions N} (N > 0 creates a partitioned topic; 0, the
 * default, leaves a non-partitioned topic that the producer auto-creates). Message {@code i} goes
 * to partition {@code i % N}. {@code --chunked} turns batching off and chunking on with 10 KiB
 * chunks, and makes some values 50 kB and 1.1 MB, so that they are chunked. {@code --producers
 * N} writes each partition with N producers, each on a client (connection) and a thread of its
 * own, sending at the same time so that their entries (chunks too) interleave; message {@code i}
 * goes to producer {@code (i / partitions) % N}.
 *
 * <p>Prints one line per message on stdout, in send order, fields separated by one space:
 * {@code partition ledger entry batchIndex key value eventTime publishTime properties
 * firstChunk}. Bytes are {@code x} followed by lowercase hex ({@code x} alone is empty), {@code -}
 * is null/absent; properties are {@code -} or {@code keyBytes=valueBytes} pairs (UTF-8, same
 * encoding) joined by commas, in the order they were set. The batch index is -1 for a message
 * sent without batching. For a chunked message the id is its last chunk's (what the Java client's
 * {@code ChunkMessageIdImpl} says it is) and {@code firstChunk} is {@code ledger:entry} of its
 * first chunk; {@code -} for other messages.
 */
public final class ProduceFixture {
    private static final HexFormat HEX = HexFormat.of();

    /** How a message's key is set: none, {@code key(String)} or {@code keyBytes}. */
    enum KeyKind { NONE, TEXT, BYTES }

    record Planned(int index, int partition, int producer, KeyKind keyKind, byte[] key, byte[] value,
                   List<Map.Entry<String, String>> props, Long eventTime) {}

    record Sent(int partition, byte[] key, byte[] value, List<Map.Entry<String, String>> props,
                Long eventTime, CompletableFuture<MessageId> id) {}

    public static void main(String[] args) throws Exception {
        int partitions = 0;
        int messages = 500;
        boolean batched = true;
        boolean chunked = false;
        int producersPerPartition = 1;
        CompressionType compression = CompressionType.NONE;
        String topic = null;
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--partitions" -> partitions = Integer.parseInt(args[++a]);
                case "--messages" -> messages = Integer.parseInt(args[++a]);
                case "--unbatched" -> batched = false;
                case "--chunked" -> chunked = true;
                case "--producers" -> producersPerPartition = Integer.parseInt(args[++a]);
                case "--compression" -> compression = CompressionType.valueOf(args[++a]);
                default -> {
                    if (args[a].startsWith("-") || topic != null) usage();
                    topic = args[a];
                }
            }
        }
        if (topic == null) usage();
        String serviceUrl = env("PULSAR_URL");
        String full = "persistent://public/default/" + topic;
        if (partitions > 0) createPartitioned(env("PULSAR_ADMIN_URL"), topic, partitions);

        // Partition p is written by a producer on "<topic>-partition-p", so the partition of each
        // message is known without a router.
        List<String> targets = new ArrayList<>();
        if (partitions == 0) targets.add(full);
        for (int p = 0; p < partitions; p++) targets.add(full + "-partition-" + p);

        Random rng = new Random(20_240_611);
        long baseTs = (System.currentTimeMillis() / 1000) * 1000 - 3_600_000;
        List<Planned> plan = new ArrayList<>();
        for (int i = 0; i < messages; i++) {
            int p = i % targets.size();
            int producer = (i / targets.size()) % producersPerPartition;
            KeyKind keyKind;
            byte[] key;
            switch (i % 5) {
                case 0 -> { keyKind = KeyKind.NONE; key = null; }
                case 1 -> { keyKind = KeyKind.TEXT; key = ("key-" + (i % 50)).getBytes(UTF_8); }
                case 2 -> { // not UTF-8: the client sends it base64 with partition_key_b64_encoded
                    keyKind = KeyKind.BYTES;
                    key = new byte[6];
                    rng.nextBytes(key);
                    key[0] = (byte) 0xff;
                }
                case 3 -> { keyKind = KeyKind.TEXT; key = ("ключ-" + i).getBytes(UTF_8); }
                default -> { keyKind = KeyKind.TEXT; key = new byte[0]; }
            }
            byte[] value;
            if (i % 17 == 3) {
                value = null; // null_value: a Kafka tombstone
            } else if (chunked && i % 25 == 7) {
                value = new byte[1_100_000]; // over 1 MiB: 108 chunks of 10 KiB
                rng.nextBytes(value);
            } else if (chunked && i % 5 == 3) {
                value = new byte[50_000 + rng.nextInt(1000)];
                rng.nextBytes(value);
            } else if (i % 13 == 5) {
                value = new byte[0];
            } else {
                value = new byte[i % 50 == 7 ? 20_000 : 1 + rng.nextInt(400)];
                rng.nextBytes(value);
            }
            List<Map.Entry<String, String>> props = new ArrayList<>();
            if (i % 4 != 1) {
                props.add(Map.entry("seq", Integer.toString(i)));
                if (i % 3 == 0) props.add(Map.entry("ünïcode", "välue ✓"));
                if (i % 5 == 2) props.add(Map.entry("empty", ""));
                if (i % 6 == 2) { props.add(Map.entry("dup", "a")); props.add(Map.entry("dup", "b")); }
            }
            Long eventTime = null;
            if (i % 10 != 9) { // every tenth has no event time: Kafka shows the publish time
                eventTime = baseTs + (i * 7_919L) % 100_000;
            }
            plan.add(new Planned(i, p, producer, keyKind, key, value, props, eventTime));
        }

        List<PulsarClient> clients = new ArrayList<>();
        try {
            // One client, so one connection, per producer of a partition: entries of producers
            // on one connection would reach the broker in the order they were sent.
            for (int k = 0; k < producersPerPartition; k++) {
                clients.add(PulsarClient.builder().serviceUrl(serviceUrl).build());
            }
            PulsarClient client = clients.get(0);
            // producers.get(p).get(k): producer k of partition p.
            List<List<Producer<byte[]>>> producers = new ArrayList<>();
            for (String t : targets) {
                List<Producer<byte[]>> ofTarget = new ArrayList<>();
                for (int k = 0; k < producersPerPartition; k++) {
                    var builder = clients.get(k).newProducer(Schema.BYTES).topic(t)
                            .compressionType(compression).blockIfQueueFull(true);
                    if (chunked) {
                        builder.enableBatching(false).enableChunking(true).chunkMaxMessageSize(10 * 1024);
                    } else {
                        builder.enableBatching(batched).batchingMaxMessages(20)
                                .batchingMaxPublishDelay(20, TimeUnit.MILLISECONDS);
                    }
                    ofTarget.add(builder.create());
                }
                producers.add(ofTarget);
            }
            List<CompletableFuture<MessageId>> ids = new ArrayList<>();
            for (int i = 0; i < messages; i++) ids.add(null);
            CountDownLatch start = new CountDownLatch(1);
            List<Thread> senders = new ArrayList<>();
            for (int k = 0; k < producersPerPartition; k++) {
                final int producer = k;
                Thread sender = new Thread(() -> {
                    try {
                        start.await();
                    } catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                    for (Planned m : plan) {
                        if (m.producer() != producer) continue;
                        TypedMessageBuilder<byte[]> b = producers.get(m.partition()).get(producer).newMessage();
                        switch (m.keyKind()) {
                            case TEXT -> b.key(new String(m.key(), UTF_8));
                            case BYTES -> b.keyBytes(m.key());
                            case NONE -> { }
                        }
                        b.value(m.value());
                        for (Map.Entry<String, String> e : m.props()) b.property(e.getKey(), e.getValue());
                        if (m.eventTime() != null) b.eventTime(m.eventTime());
                        CompletableFuture<MessageId> id = b.sendAsync();
                        synchronized (ids) {
                            ids.set(m.index(), id);
                        }
                    }
                }, "sender-" + k);
                sender.start();
                senders.add(sender);
            }
            start.countDown();
            for (Thread sender : senders) sender.join();
            List<Sent> sent = new ArrayList<>();
            synchronized (ids) {
                for (Planned m : plan) {
                    sent.add(new Sent(m.partition(), m.key(), m.value(), m.props(), m.eventTime(),
                            ids.get(m.index())));
                }
            }
            for (List<Producer<byte[]>> ofTarget : producers) {
                for (Producer<byte[]> producer : ofTarget) {
                    producer.flush();
                    producer.close();
                }
            }

            // Publish times (the Kafka timestamp of messages without event time) are not in the
            // receipt: read them back.
            Map<String, Long> publishTime = new HashMap<>();
            for (String t : targets) {
                try (Reader<byte[]> reader = client.newReader(Schema.BYTES).topic(t)
                        .startMessageId(MessageId.earliest).create()) {
                    while (reader.hasMessageAvailable()) {
                        Message<byte[]> m = reader.readNext(30, TimeUnit.SECONDS);
                        if (m == null) throw new IllegalStateException("reader of " + t + " stalled");
                        publishTime.put(t + " " + idText((MessageIdAdv) m.getMessageId()), m.getPublishTime());
                    }
                }
            }

            PrintStream out = new PrintStream(System.out, false, UTF_8);
            for (Sent s : sent) {
                MessageIdAdv id = (MessageIdAdv) s.id().get(60, TimeUnit.SECONDS);
                Long published = publishTime.get(targets.get(s.partition()) + " " + idText(id));
                if (published == null) throw new IllegalStateException("reader did not return " + idText(id));
                StringBuilder line = new StringBuilder();
                line.append(s.partition()).append(' ').append(idText(id)).append(' ')
                        .append(bytes(s.key())).append(' ').append(bytes(s.value())).append(' ')
                        .append(s.eventTime() == null ? "-" : s.eventTime().toString()).append(' ')
                        .append(published).append(' ');
                if (s.props().isEmpty()) line.append('-');
                for (int k = 0; k < s.props().size(); k++) {
                    if (k > 0) line.append(',');
                    Map.Entry<String, String> e = s.props().get(k);
                    line.append(bytes(e.getKey().getBytes(UTF_8))).append('=').append(bytes(e.getValue().getBytes(UTF_8)));
                }
                MessageIdAdv first = id.getFirstChunkMessageId();
                line.append(' ').append(first == null ? "-" : first.getLedgerId() + ":" + first.getEntryId());
                out.println(line);
            }
            out.flush();
        } finally {
            for (PulsarClient c : clients) c.close();
        }
    }

    private static String idText(MessageIdAdv id) {
        return id.getLedgerId() + " " + id.getEntryId() + " " + id.getBatchIndex();
    }

    private static String bytes(byte[] b) {
        return b == null ? "-" : "x" + HEX.formatHex(b);
    }

    private static void createPartitioned(String adminUrl, String topic, int partitions) throws Exception {
        HttpRequest put = HttpRequest.newBuilder(
                        URI.create(adminUrl + "/admin/v2/persistent/public/default/" + topic + "/partitions"))
                .header("Content-Type", "application/json")
                .PUT(HttpRequest.BodyPublishers.ofString(Integer.toString(partitions))).build();
        HttpResponse<String> r = HttpClient.newHttpClient().send(put, HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() / 100 != 2) {
            throw new IllegalStateException("creating " + topic + ": HTTP " + r.statusCode() + " " + r.body());
        }
    }

    private static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            System.err.println("ProduceFixture: " + name + " must be set");
            System.exit(2);
        }
        return v;
    }

    private static void usage() {
        System.err.println("usage: ProduceFixture [--partitions N] [--unbatched] [--chunked] [--producers N] "
                + "[--messages N] [--compression NONE|LZ4|ZLIB|ZSTD|SNAPPY] TOPIC");
        System.exit(2);
    }
}

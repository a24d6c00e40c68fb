package gateway.compat;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One consumer-group member, run as its own JVM by {@link ConsumerGroupTest} so that killing it is a
 * real SIGKILL: no LeaveGroup, no last commit, no flush beyond what was already written.
 *
 * <p>Usage: {@code GroupMember BOOTSTRAP TOPIC GROUP NAME OUT_FILE ASSIGNOR_CLASS INSTANCE_ID|- BATCH_DELAY_MS}
 *
 * <p>It subscribes, and after each poll batch it "processes" the records (writes them to OUT_FILE,
 * then sleeps BATCH_DELAY_MS so a test can kill it mid-stream) and commits them with commitSync.
 * Partitions about to be revoked are committed in onPartitionsRevoked; a refused commit is retried
 * after the next poll. OUT_FILE gets one line per
 * event, written and flushed before the next step, with the wall-clock time in ms:
 *
 * <pre>
 *   R ts partition offset keyIndex        a record was consumed (key "k-000123" has index 123, else -1)
 *   C ts p=next,p=next                    commitSync returned for these partitions (next offset to read)
 *   F ts exception                        commitSync threw; the offsets stay pending for the next commit
 *   A ts generation p,p,...               onPartitionsAssigned: the full assignment after it
 *   V ts p,p,...                          onPartitionsRevoked
 *   L ts p,p,...                          onPartitionsLost
 *   X ts reason                           clean exit (stdin closed) or fatal error
 * </pre>
 *
 * It stops and closes the consumer when its stdin reaches end of file, so it never outlives the test JVM.
 */
public final class GroupMember {
    private final OutputStream out;
    private final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
    private KafkaConsumer<byte[], byte[]> consumer;

    private GroupMember(OutputStream out) {
        this.out = out;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 8) {
            System.err.println("usage: GroupMember BOOTSTRAP TOPIC GROUP NAME OUT_FILE ASSIGNOR INSTANCE_ID|- BATCH_DELAY_MS");
            System.exit(2);
        }
        Properties c = config(args[0], args[2], args[3], args[5], args[6]);
        Thread stdin = new Thread(() -> {
            try {
                InputStream in = System.in;
                while (in.read() >= 0) { /* the parent only ever closes it */ }
            } catch (IOException ignored) {
                // treated like end of file
            }
        }, "stdin-watch");
        stdin.setDaemon(true);
        stdin.start();
        try (OutputStream out = new FileOutputStream(args[4], true)) {
            GroupMember m = new GroupMember(out);
            try {
                m.run(c, args[1], Long.parseLong(args[7]), stdin::isAlive);
                m.line("X " + System.currentTimeMillis() + " stdin-closed");
            } catch (Throwable t) {
                m.line("X " + System.currentTimeMillis() + " fatal " + oneLine(t));
                t.printStackTrace();
                System.exit(1);
            }
        }
    }

    /** The member's consumer settings: manual commits, 10 s session timeout, 1 s heartbeats. */
    static Properties config(String bootstrap, String group, String name, String assignor, String instanceId) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        if (!"-".equals(instanceId)) c.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        // Also the rebalance timeout: how long a rebalance waits for members to rejoin.
        c.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "30000");
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "200");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return c;
    }

    /**
     * Runs a member inside this JVM until {@code running} turns false (ConsumerGroupTest's gateway
     * SIGKILL test, where the gateway is killed, not the member); events go to {@code file} as above.
     */
    static void runInProcess(Properties c, String topic, long delayMs, String file, BooleanSupplier running)
            throws Exception {
        try (OutputStream out = new FileOutputStream(file, true)) {
            GroupMember m = new GroupMember(out);
            m.run(c, topic, delayMs, running);
            m.line("X " + System.currentTimeMillis() + " stopped");
        }
    }

    private void run(Properties c, String topic, long delayMs, BooleanSupplier running) throws Exception {
        consumer = new KafkaConsumer<>(c);
        try {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    line("V " + System.currentTimeMillis() + " " + parts(parts));
                    // Commit what was processed on the partitions we are about to lose, so that
                    // their next owner does not read it again.
                    Map<TopicPartition, OffsetAndMetadata> mine = new HashMap<>();
                    for (TopicPartition tp : parts) {
                        OffsetAndMetadata om = pending.get(tp);
                        if (om != null) mine.put(tp, om);
                    }
                    commit(mine);
                    for (TopicPartition tp : parts) pending.remove(tp);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    line("A " + System.currentTimeMillis() + " " + consumer.groupMetadata().generationId() + " "
                            + parts(consumer.assignment()));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> parts) {
                    line("L " + System.currentTimeMillis() + " " + parts(parts));
                    for (TopicPartition tp : parts) pending.remove(tp);
                }
            });
            while (running.getAsBoolean()) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) {
                    // A commit refused during a rebalance (cooperative members keep reading meanwhile)
                    // is retried here, or the tail of a partition would stay uncommitted.
                    if (!pending.isEmpty()) commit(new HashMap<>(pending));
                    continue;
                }
                StringBuilder s = new StringBuilder();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    s.append("R ").append(System.currentTimeMillis()).append(' ').append(r.partition()).append(' ')
                            .append(r.offset()).append(' ').append(keyIndex(r.key())).append('\n');
                    pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                write(s.toString());
                if (delayMs > 0) Thread.sleep(delayMs);
                commit(new HashMap<>(pending));
            }
        } finally {
            consumer.close(Duration.ofSeconds(10));
        }
    }

    /** commitSync, then the C line; on failure an F line and the offsets stay pending. */
    private void commit(Map<TopicPartition, OffsetAndMetadata> offsets) {
        if (offsets.isEmpty()) return;
        try {
            consumer.commitSync(offsets, Duration.ofSeconds(15));
        } catch (RuntimeException e) {
            line("F " + System.currentTimeMillis() + " " + oneLine(e));
            return;
        }
        StringBuilder s = new StringBuilder("C ").append(System.currentTimeMillis()).append(' ');
        boolean first = true;
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
            if (!first) s.append(',');
            first = false;
            s.append(e.getKey().partition()).append('=').append(e.getValue().offset());
            // Only drop what is still at the committed position; a newer one stays pending.
            if (e.getValue().equals(pending.get(e.getKey()))) pending.remove(e.getKey());
        }
        line(s.toString());
    }

    static int keyIndex(byte[] key) {
        String k = key == null ? "" : new String(key, UTF_8);
        return k.matches("k-\\d{6}") ? Integer.parseInt(k.substring(2)) : -1;
    }

    static String parts(Collection<TopicPartition> parts) {
        TreeSet<Integer> ps = new TreeSet<>();
        for (TopicPartition tp : parts) ps.add(tp.partition());
        List<String> s = new ArrayList<>();
        for (int p : ps) s.add(Integer.toString(p));
        return s.isEmpty() ? "-" : String.join(",", s);
    }

    static String oneLine(Throwable t) {
        return String.valueOf(t).replace('\n', ' ');
    }

    private void line(String s) {
        write(s + "\n");
    }

    private void write(String s) {
        try {
            out.write(s.getBytes(UTF_8));
            out.flush();
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }
}

package gateway.compat;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.config.ConfigResource;

/**
 * Kafka Connect in distributed mode against HOST:PORT: two workers (each a JVM of its own, the
 * worker from Maven Central, {@code ConnectDistributed}) share a group and the config, offset and
 * status topics that they create themselves with {@code cleanup.policy=compact}. A FileStream
 * source connector copies a file into a topic and a FileStream sink connector copies the topic
 * into another file. Lines are appended in rounds; after each, every line must reach the output
 * file. Between rounds: a second worker joins, the first is SIGKILLed, the first is started again
 * (so it checks the existing internal topics, as Connect does at startup) and the second is
 * stopped. Prints PASS/FAIL/INFO lines and {@code Summary: N passed, M failed} last.
 */
public class ConnectCheck {
    static final Duration WAIT = Duration.ofSeconds(Long.getLong("wait.seconds", 120));
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    static int passed, failed;

    static void check(boolean ok, String what) {
        if (ok) {
            passed++;
            System.out.println("PASS " + what);
        } else {
            failed++;
            System.out.println("FAIL " + what);
        }
    }

    static void info(String what) {
        System.out.println("INFO " + what);
    }

    static boolean waitFor(BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < deadline) {
            if (condition.getAsBoolean()) {
                return true;
            }
            Thread.sleep(250);
        }
        return condition.getAsBoolean();
    }

    /** One worker JVM. */
    static final class Worker {
        final String name;
        final int port;
        final Path dir;
        Process process;

        Worker(String name, int port, Path dir) {
            this.name = name;
            this.port = port;
            this.dir = dir;
        }

        String id() {
            return "127.0.0.1:" + port;
        }

        void start(Properties props) throws IOException {
            Path file = dir.resolve(name + ".properties");
            Properties p = new Properties();
            p.putAll(props);
            p.put("listeners", "http://127.0.0.1:" + port);
            p.put("rest.advertised.host.name", "127.0.0.1");
            p.put("rest.advertised.port", Integer.toString(port));
            try (var out = Files.newBufferedWriter(file)) {
                p.store(out, "worker " + name);
            }
            String classpath = System.getProperty("java.class.path");
            ProcessBuilder pb = new ProcessBuilder(
                    Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xmx256m",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "-Dorg.slf4j.simpleLogger.showDateTime=true",
                    "-cp", classpath,
                    "org.apache.kafka.connect.cli.ConnectDistributed", file.toString());
            pb.redirectErrorStream(true);
            pb.redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve(name + ".log").toFile()));
            process = pb.start();
        }

        boolean restUp() {
            try {
                return get("/").statusCode() == 200;
            } catch (Exception e) {
                return false;
            }
        }

        HttpResponse<String> get(String path) throws IOException, InterruptedException {
            return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                    .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString());
        }

        HttpResponse<String> post(String path, String json) throws IOException, InterruptedException {
            return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                    .timeout(Duration.ofSeconds(30))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
        }

        void kill() throws InterruptedException {
            if (process != null && process.isAlive()) {
                process.destroyForcibly(); // SIGKILL
                process.waitFor(30, TimeUnit.SECONDS);
            }
        }

        void stop() throws InterruptedException {
            if (process != null && process.isAlive()) {
                process.destroy(); // SIGTERM: Connect's shutdown hook leaves the group
                if (!process.waitFor(60, TimeUnit.SECONDS)) {
                    process.destroyForcibly();
                }
            }
        }

        /** Whether the status that this worker serves shows both connectors and their tasks RUNNING. */
        String status(String connector) {
            try {
                HttpResponse<String> r = get("/connectors/" + connector + "/status");
                return r.statusCode() == 200 ? r.body() : "";
            } catch (Exception e) {
                return "";
            }
        }
    }

    static int freePort() throws IOException {
        try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static Set<String> lines(Path file) {
        try {
            return Files.exists(file) ? new HashSet<>(Files.readAllLines(file)) : Set.of();
        } catch (IOException e) {
            return Set.of();
        }
    }

    static int lineCount(Path file) throws IOException {
        return Files.exists(file) ? Files.readAllLines(file).size() : 0;
    }

    static boolean running(String status) {
        // The connector and its task: "state":"RUNNING" twice, no FAILED.
        int n = 0;
        for (int i = status.indexOf("\"RUNNING\""); i >= 0; i = status.indexOf("\"RUNNING\"", i + 1)) {
            n++;
        }
        return n >= 2 && !status.contains("FAILED");
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String run = UUID.randomUUID().toString().substring(0, 8);
        Path dir = Files.createTempDirectory("connect-" + run);
        info("run " + run + ", worker logs and files in " + dir);
        Path input = dir.resolve("in.txt");
        Path output = dir.resolve("out.txt");
        Files.createFile(input);
        String data = "connect-data-" + run;
        List<String> internal = List.of("connect-configs-" + run, "connect-offsets-" + run, "connect-status-" + run);

        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        Admin admin = Admin.create(adminProps);
        admin.createTopics(List.of(new NewTopic(data, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);

        Properties worker = new Properties();
        worker.put("bootstrap.servers", bootstrap);
        worker.put("group.id", "connect-" + run);
        worker.put("config.storage.topic", internal.get(0));
        worker.put("offset.storage.topic", internal.get(1));
        worker.put("status.storage.topic", internal.get(2));
        worker.put("config.storage.replication.factor", "1");
        worker.put("offset.storage.replication.factor", "1");
        worker.put("status.storage.replication.factor", "1");
        worker.put("offset.storage.partitions", "3");
        worker.put("status.storage.partitions", "2");
        worker.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        worker.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        worker.put("offset.flush.interval.ms", "1000");
        worker.put("session.timeout.ms", "10000");
        worker.put("heartbeat.interval.ms", "1000");
        // A departed worker's work is handed out again after this delay (5 minutes by default).
        worker.put("scheduled.rebalance.max.delay.ms", "3000");

        Worker a = new Worker("worker-a", freePort(), dir);
        Worker b = new Worker("worker-b", freePort(), dir);
        int sent = 0;
        try {
            long t0 = System.nanoTime();
            a.start(worker);
            check(waitFor(a::restUp), "worker A starts and serves its REST API ("
                    + (System.nanoTime() - t0) / 1_000_000 + " ms)");

            // Connect created its internal topics and, as it requires, they are compact-only.
            for (String topic : internal) {
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                Config c = admin.describeConfigs(List.of(r)).all().get(30, TimeUnit.SECONDS).get(r);
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
                check("compact".equals(c.get("cleanup.policy").value()),
                        topic + " created by Connect with cleanup.policy=compact (" + d.partitions().size() + " partitions)");
            }

            String source = "{\"name\":\"src-" + run + "\",\"config\":{"
                    + "\"connector.class\":\"org.apache.kafka.connect.file.FileStreamSourceConnector\","
                    + "\"tasks.max\":\"1\",\"file\":\"" + input + "\",\"topic\":\"" + data + "\"}}";
            String sink = "{\"name\":\"sink-" + run + "\",\"config\":{"
                    + "\"connector.class\":\"org.apache.kafka.connect.file.FileStreamSinkConnector\","
                    + "\"tasks.max\":\"1\",\"file\":\"" + output + "\",\"topics\":\"" + data + "\"}}";
            int s1 = a.post("/connectors", source).statusCode();
            int s2 = a.post("/connectors", sink).statusCode();
            check(s1 == 201 && s2 == 201, "source and sink connectors created (HTTP " + s1 + ", " + s2 + ")");
            check(waitFor(() -> running(a.status("src-" + run)) && running(a.status("sink-" + run))),
                    "both connectors and their tasks RUNNING");

            sent = round(input, output, sent, 300, "round 1, one worker");

            b.start(worker);
            check(waitFor(b::restUp), "worker B starts and serves its REST API");
            check(waitFor(() -> (a.status("src-" + run) + a.status("sink-" + run)).contains(b.id())),
                    "worker B joined the group and was given work");
            sent = round(input, output, sent, 300, "round 2, two workers");

            a.kill();
            info("worker A SIGKILLed");
            sent = round(input, output, sent, 300, "round 3, worker B alone after worker A was SIGKILLed");
            check(waitFor(() -> running(b.status("src-" + run)) && running(b.status("sink-" + run))
                            && !(b.status("src-" + run) + b.status("sink-" + run)).contains(a.id())),
                    "worker B runs all the work");

            a.start(worker);
            check(waitFor(a::restUp), "worker A starts again on the existing internal topics");
            b.stop();
            info("worker B stopped");
            sent = round(input, output, sent, 300, "round 4, worker A restarted, worker B stopped");

            int written = lineCount(output);
            info("output file: " + written + " lines for " + sent + " sent, "
                    + (written - lines(output).size()) + " duplicates (the file sink is at least once)");
        } finally {
            a.kill();
            b.kill();
            try {
                List<String> all = new ArrayList<>(internal);
                all.add(data);
                admin.deleteTopics(all).all().get(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                info("cleanup: " + e);
            }
            admin.close();
        }
        if (failed > 0) {
            info("worker logs: " + dir);
        }
        System.out.println("Summary: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    /** Appends `count` new lines to the source file and waits for all lines so far in the output. */
    static int round(Path input, Path output, int sent, int count, String what) throws Exception {
        List<String> batch = new ArrayList<>();
        for (int i = sent; i < sent + count; i++) {
            batch.add("line-" + i);
        }
        Files.write(input, batch, StandardCharsets.UTF_8, StandardOpenOption.APPEND);
        int total = sent + count;
        long t0 = System.nanoTime();
        boolean all = waitFor(() -> lines(output).size() >= total);
        Set<String> got = lines(output);
        List<String> missing = new ArrayList<>();
        for (int i = 0; i < total && missing.size() < 5; i++) {
            if (!got.contains("line-" + i)) {
                missing.add("line-" + i);
            }
        }
        check(all && missing.isEmpty(), what + ": " + Math.min(got.size(), total) + " of " + total
                + " lines in the output after " + (System.nanoTime() - t0) / 1_000_000 + " ms"
                + (missing.isEmpty() ? "" : ", missing " + missing));
        return total;
    }
}

package gateway.interop;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.MessageIdAdv;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.PulsarClientException;

/** Shared settings and helpers of the interop tests. */
final class Interop {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static final String PULSAR_URL = System.getProperty("pulsar.url", "pulsar://127.0.0.1:6650");
    static final String ADMIN_URL = stripSlash(System.getProperty("pulsar.admin.url", "http://127.0.0.1:8080"));
    static final String NAMESPACE = "public/default";
    static final Duration TIMEOUT = Duration.ofSeconds(30);
    static final String HEADER_ENCODING = "__kafka_header_encoding";

    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(TIMEOUT).build();

    private Interop() {}

    private static String stripSlash(String s) {
        return s.endsWith("/") ? s.substring(0, s.length() - 1) : s;
    }

    static PulsarClient pulsarClient() throws PulsarClientException {
        return PulsarClient.builder().serviceUrl(PULSAR_URL)
                .operationTimeout(30, java.util.concurrent.TimeUnit.SECONDS).build();
    }

    static String pulsarTopic(String topic) {
        return "persistent://" + NAMESPACE + "/" + topic;
    }

    /** Admin REST call; returns {status, body}. */
    static Object[] http(String method, String path, String body) throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(ADMIN_URL + path)).timeout(TIMEOUT);
        if (body != null) {
            b.header("Content-Type", "application/json");
            b.method(method, HttpRequest.BodyPublishers.ofString(body));
        } else {
            b.method(method, HttpRequest.BodyPublishers.noBody());
        }
        HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
        return new Object[] {r.statusCode(), r.body()};
    }

    static String adminTopicPath(String topic) {
        return "/admin/v2/persistent/" + NAMESPACE + "/" + topic;
    }

    static boolean isUtf8(byte[] b) {
        try {
            UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b));
            return true;
        } catch (CharacterCodingException e) {
            return false;
        }
    }

    /** The Pulsar partition key string of a Kafka key: UTF-8 as is, other bytes base64, none: null. */
    static String keyText(byte[] key) {
        if (key == null) return null;
        return isUtf8(key) ? new String(key, UTF_8) : Base64.getEncoder().encodeToString(key);
    }

    /**
     * The ordered Pulsar property list (duplicates kept) of Kafka headers, per docs/kafka.md:
     * UTF-8 values as they are, other values base64, null values empty, and
     * {@code __kafka_header_encoding} (one letter per header: s, b, n) unless all are plain text.
     */
    static List<Map.Entry<String, String>> headerProperties(List<Map.Entry<String, byte[]>> headers) {
        List<Map.Entry<String, String>> props = new ArrayList<>();
        StringBuilder letters = new StringBuilder();
        boolean plain = true;
        for (Map.Entry<String, byte[]> h : headers) {
            byte[] v = h.getValue();
            if (v == null) {
                props.add(Map.entry(h.getKey(), ""));
                letters.append('n');
                plain = false;
            } else if (isUtf8(v)) {
                props.add(Map.entry(h.getKey(), new String(v, UTF_8)));
                letters.append('s');
            } else {
                props.add(Map.entry(h.getKey(), Base64.getEncoder().encodeToString(v)));
                letters.append('b');
                plain = false;
            }
        }
        if (!plain) props.add(Map.entry(HEADER_ENCODING, letters.toString()));
        return props;
    }

    /** ledger << 32 | entry << 12 | batch index (a non-batched -1 counts as 0). */
    static long offsetOf(MessageId id) {
        MessageIdAdv m = (MessageIdAdv) id;
        return offsetOf(m.getLedgerId(), m.getEntryId(), m.getBatchIndex());
    }

    static long offsetOf(long ledger, long entry, int batchIndex) {
        return ledger << 32 | entry << 12 | Math.max(batchIndex, 0);
    }

    static String splitOffset(long offset) {
        return "(ledger " + (offset >>> 32) + ", entry " + ((offset >>> 12) & 0xFFFFF)
                + ", batch " + (offset & 0xFFF) + ")";
    }

    static String idText(MessageId id) {
        MessageIdAdv m = (MessageIdAdv) id;
        return "(ledger " + m.getLedgerId() + ", entry " + m.getEntryId() + ", batch " + m.getBatchIndex()
                + ", partition " + m.getPartitionIndex() + ")";
    }

    static String show(Object o) {
        if (o == null) return "null";
        if (o instanceof byte[]) {
            byte[] b = (byte[]) o;
            String hex = HexFormat.of().formatHex(b, 0, Math.min(b.length, 24));
            return "bytes[" + b.length + "]:" + hex + (b.length > 24 ? "..." : "");
        }
        if (o instanceof String) return "\"" + o + "\"";
        return String.valueOf(o);
    }

    static boolean same(Object a, Object b) {
        if (a instanceof byte[] && b instanceof byte[]) return Arrays.equals((byte[]) a, (byte[]) b);
        return Objects.equals(a, b);
    }

    /** Collects every difference so that one run reports all of them. */
    static final class Mismatches {
        final List<String> lines = new ArrayList<>();

        void add(String line) {
            lines.add(line);
        }

        void check(String where, String field, Object got, Object want) {
            if (!same(got, want)) add(where + ": " + field + " is " + show(got) + ", want " + show(want));
        }

        String report(String what) {
            StringBuilder sb = new StringBuilder(what + ": " + lines.size() + " difference(s)");
            for (int i = 0; i < Math.min(lines.size(), 40); i++) sb.append("\n  ").append(lines.get(i));
            if (lines.size() > 40) sb.append("\n  ... and ").append(lines.size() - 40).append(" more");
            return sb.toString();
        }
    }
}

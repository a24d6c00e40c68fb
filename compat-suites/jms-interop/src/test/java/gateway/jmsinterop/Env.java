package gateway.jmsinterop;

import com.rabbitmq.client.ConnectionFactory;
import jakarta.jms.BytesMessage;
import jakarta.jms.JMSException;
import jakarta.jms.Message;
import jakarta.jms.TextMessage;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.qpid.jms.JmsConnectionFactory;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.PulsarClientException;

/** Settings, clients and helpers shared by the tests. */
final class Env {
    static final String AMQP_URL = System.getProperty("amqp.port.url", "amqp://127.0.0.1:5672");
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static final String PULSAR_URL = System.getProperty("pulsar.url", "pulsar://127.0.0.1:6650");
    /** Hang guard for any one wait; the machine is slow and busy. */
    static final long WAIT_MS = 30_000;
    /** How long a reader waits for a message that must not come. */
    static final long QUIET_MS = 1_500;
    /** The Pulsar properties the JMS mapping stores the AMQP sections in (docs/jms.md). */
    static final List<String> AMQP1_PROPERTIES = List.of("amqp1.header", "amqp1.message-annotations",
            "amqp1.properties", "amqp1.application-properties", "amqp1.footer");

    private Env() {}

    /** A fresh name, so runs on the same Pulsar never meet. */
    static String unique(String what) {
        return "jmsi-" + what + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static JmsConnectionFactory jms() {
        return new JmsConnectionFactory("guest", "guest", AMQP_URL);
    }

    /** Qpid JMS with URL options, e.g. `jms.validatePropertyNames=false`. */
    static JmsConnectionFactory jms(String options) {
        return new JmsConnectionFactory("guest", "guest", AMQP_URL + "?" + options);
    }

    /** AMQP 0-9-1 on the same port, vhost "/". */
    static ConnectionFactory rabbit() throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setUri(AMQP_URL.replace("amqp://", "amqp://guest:guest@") + "/%2F");
        return f;
    }

    static PulsarClient pulsar() throws PulsarClientException {
        return PulsarClient.builder().serviceUrl(PULSAR_URL).operationTimeout(30, TimeUnit.SECONDS).build();
    }

    static String pulsarTopic(String name) {
        return "persistent://public/default/" + name;
    }

    static KafkaProducer<byte[], byte[]> kafkaProducer() {
        Properties p = new Properties();
        p.put("bootstrap.servers", BOOTSTRAP);
        p.put("acks", "all");
        p.put("enable.idempotence", "false");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    /** Every record of partition 0 of `topic` from the start: exactly `n` are wanted, and a
     *  quiet period after them shows there are no more. */
    static List<ConsumerRecord<byte[], byte[]>> kafkaRead(String topic, int n) {
        Properties p = new Properties();
        p.put("bootstrap.servers", BOOTSTRAP);
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<PartitionInfo> parts = c.partitionsFor(topic, Duration.ofMillis(WAIT_MS));
            if (parts == null || parts.size() != 1) {
                throw new AssertionError("Kafka metadata of " + topic + ": " + parts + " (one partition wanted)");
            }
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (out.size() < n && System.currentTimeMillis() < deadline) {
                c.poll(Duration.ofMillis(200)).forEach(out::add);
            }
            long quiet = System.currentTimeMillis() + QUIET_MS;
            while (System.currentTimeMillis() < quiet) {
                c.poll(Duration.ofMillis(200)).forEach(out::add);
            }
        }
        return out;
    }

    /** A Kafka record's headers as a name -> value map; a repeated name is an error. */
    static Map<String, String> headers(Iterable<Header> headers, Diffs d, String where) {
        Map<String, String> out = new TreeMap<>();
        for (Header h : headers) {
            String v = h.value() == null ? null : new String(h.value(), java.nio.charset.StandardCharsets.UTF_8);
            if (out.put(h.key(), v) != null) {
                d.fail(where, "header " + h.key() + " appears twice");
            }
        }
        return out;
    }

    /** Checks the `amqp1.*` properties (or headers) a JMS message carries on Pulsar and
     *  returns the others. Their values are the sections' encodings in base64, except
     *  `amqp1.body`, which says how the body is stored. */
    static Map<String, String> splitAmqp1(Map<String, String> props, String wantedBody, Diffs d, String where) {
        Map<String, String> rest = new TreeMap<>();
        for (Map.Entry<String, String> e : props.entrySet()) {
            String k = e.getKey();
            if (!k.startsWith("amqp1.")) {
                rest.put(k, e.getValue());
            } else if (k.equals("amqp1.body")) {
                continue;
            } else if (!AMQP1_PROPERTIES.contains(k)) {
                d.fail(where, "unexpected property " + k + " = " + e.getValue());
            } else {
                try {
                    Base64.getDecoder().decode(e.getValue());
                } catch (IllegalArgumentException x) {
                    d.fail(where, k + " is not base64: " + e.getValue());
                }
            }
        }
        d.check(where, "amqp1.body", props.get("amqp1.body"), wantedBody);
        // Qpid JMS always sends a message-id (properties) and its message type (annotations).
        for (String k : List.of("amqp1.properties", "amqp1.message-annotations")) {
            if (!props.containsKey(k)) {
                d.fail(where, "property " + k + " missing");
            }
        }
        return rest;
    }

    /** A JMS message's properties, by name, with their Java types. */
    static Map<String, Object> jmsProperties(Message m) throws JMSException {
        Map<String, Object> out = new TreeMap<>();
        for (Object name : Collections.list(m.getPropertyNames())) {
            out.put((String) name, m.getObjectProperty((String) name));
        }
        return out;
    }

    static byte[] bytesBody(BytesMessage m) throws JMSException {
        byte[] b = new byte[(int) m.getBodyLength()];
        m.readBytes(b);
        return b;
    }

    /** Body check of a received JMS message: a TextMessage with `text`, or (text null) a
     *  BytesMessage with `bytes`. */
    static void checkBody(Message m, String text, byte[] bytes, Diffs d, String where) throws JMSException {
        if (text != null) {
            if (m instanceof TextMessage t) {
                d.check(where, "text", t.getText(), text);
            } else {
                d.fail(where, "a TextMessage wanted, got " + m.getClass().getSimpleName());
            }
        } else if (m instanceof BytesMessage b) {
            d.check(where, "bytes", bytesBody(b), bytes);
        } else {
            d.fail(where, "a BytesMessage wanted, got " + m.getClass().getSimpleName());
        }
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    static String show(Object v) {
        if (v instanceof byte[] b) {
            return "bytes[" + HexFormat.of().formatHex(b) + "]";
        }
        if (v instanceof String s) {
            return "\"" + s + "\"";
        }
        if (v instanceof Map<?, ?> m) {
            StringBuilder sb = new StringBuilder("{");
            new TreeMap<>(m).forEach((k, x) -> sb.append(sb.length() > 1 ? ", " : "").append(k).append('=')
                    .append(show(x)).append(x == null ? "" : " (" + x.getClass().getSimpleName() + ")"));
            return sb.append('}').toString();
        }
        return String.valueOf(v);
    }
}

package gateway.jmsinterop;

import static java.nio.charset.StandardCharsets.UTF_8;

import jakarta.jms.BytesMessage;
import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Destination;
import jakarta.jms.JMSException;
import jakarta.jms.Message;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;

/** The messages the JMS -> other-protocol tests send, and what the others must see of them:
 *  docs/jms.md "Messages" (the sections as `amqp1.*` properties, the S4J properties beside
 *  them, a data body as the payload). */
final class JmsSamples {
    /** text != null: a TextMessage; else a BytesMessage of `bytes`. */
    record Sample(String text, byte[] bytes, Map<String, Object> props, String type, int priority,
            int deliveryMode, long ttl) {
        /** The payload other protocols read. */
        byte[] payload() {
            return text != null ? text.getBytes(UTF_8) : bytes;
        }

        /** `amqp1.body`: how the body is stored (none: it is the payload as it is). */
        String storedBody() {
            return text != null ? "text" : null;
        }
    }

    static final List<Sample> SAMPLES = List.of(
            new Sample("héllo ✓ interop", null,
                    Env.map("color", "blue", "count", 42, "big", 1L << 40, "flag", true, "ratio", 2.5,
                            "f", 1.25f, "sh", (short) -3, "by", (byte) 7),
                    "order", 4, DeliveryMode.PERSISTENT, 0),
            new Sample(null, new byte[] {0, 1, 2, 0x7f, (byte) 0x80, (byte) 0xff, 'z'},
                    Env.map("color", "ünïcode ✓", "neg", -1L), null, 7, DeliveryMode.NON_PERSISTENT, 600_000),
            new Sample("", null, Map.of(), null, 4, DeliveryMode.PERSISTENT, 0));

    private JmsSamples() {}

    /** Sends every sample to `dest` and returns the sent messages (their JMSTimestamp and
     *  JMSExpiration are set by the send). */
    static List<Message> send(Connection c, Function<Session, Destination> dest) throws JMSException {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = s.createProducer(dest.apply(s));
        List<Message> sent = new ArrayList<>();
        for (Sample x : SAMPLES) {
            Message m;
            if (x.text != null) {
                m = s.createTextMessage(x.text);
            } else {
                BytesMessage b = s.createBytesMessage();
                b.writeBytes(x.bytes);
                m = b;
            }
            for (Map.Entry<String, Object> e : x.props.entrySet()) {
                m.setObjectProperty(e.getKey(), e.getValue());
            }
            if (x.type != null) {
                m.setJMSType(x.type);
            }
            p.send(m, x.deliveryMode, x.priority, x.ttl);
            sent.add(m);
        }
        s.close();
        return sent;
    }

    /** The Pulsar properties (Kafka headers, AMQP 0-9-1 headers) of a sample besides the
     *  `amqp1.*` ones, as docs/jms.md's S4J table says. */
    static Map<String, String> s4jProperties(Sample x, Message sent) throws JMSException {
        Map<String, String> out = new TreeMap<>();
        for (Map.Entry<String, Object> e : x.props.entrySet()) {
            Object v = e.getValue();
            out.put(e.getKey(), v.toString());
            if (!(v instanceof String)) {
                out.put(e.getKey() + "_jsmtype", jsmType(v));
            }
        }
        out.put("JMSPulsarMessageType", x.text != null ? "text" : "bytes");
        if (x.type != null) {
            out.put("JMSType", x.type);
        }
        if (x.priority != 4) {
            out.put("JMSPriority", Integer.toString(x.priority));
        }
        if (x.deliveryMode == DeliveryMode.NON_PERSISTENT) {
            out.put("JMSDeliveryMode", "1");
        }
        if (x.ttl > 0) {
            out.put("JMSExpiration", Long.toString(sent.getJMSExpiration()));
            out.put("JMSExpiration_jsmtype", "long");
        }
        return out;
    }

    static String jsmType(Object v) {
        if (v instanceof Boolean) {
            return "boolean";
        } else if (v instanceof Byte) {
            return "byte";
        } else if (v instanceof Short) {
            return "short";
        } else if (v instanceof Integer) {
            return "int";
        } else if (v instanceof Long) {
            return "long";
        } else if (v instanceof Float) {
            return "float";
        } else if (v instanceof Double) {
            return "double";
        }
        throw new IllegalArgumentException("no JMS property type: " + v);
    }
}

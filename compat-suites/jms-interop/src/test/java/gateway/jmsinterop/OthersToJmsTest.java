package gateway.jmsinterop;

import static java.nio.charset.StandardCharsets.UTF_8;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import jakarta.jms.Connection;
import jakarta.jms.JMSException;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.Session;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.TypedMessageBuilder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Kafka, AMQP 0-9-1 and native Pulsar producers write; Qpid JMS receives. A message from
 *  another protocol is delivered with its Pulsar properties as JMS properties, typed by S4J's
 *  `<name>_jsmtype` companions (not shown themselves), as a TextMessage when
 *  `JMSPulsarMessageType` is `text`, else a BytesMessage (docs/jms.md "Messages"). */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class OthersToJmsTest {
    /** What a JMS consumer must receive: text != null a TextMessage, else a BytesMessage. */
    record Wanted(String text, byte[] bytes, Map<String, Object> props, long timestamp) {}

    /** S4J-style properties (value and `_jsmtype`) for every JMS type, a companion whose value
     *  does not parse (stays a string), and the typed values the JMS consumer must see. */
    static final String[][] TYPED = {
        {"count", "42", "int"}, {"flag", "false", "boolean"}, {"ratio", "-0.5", "double"}, {"f", "3.5", "float"},
        {"sh", "300", "short"}, {"by", "-8", "byte"}, {"big", "-1099511627776", "long"}, {"bad", "x", "int"},
    };
    static final Map<String, Object> TYPED_VALUES = Env.map("count", 42, "flag", false, "ratio", -0.5, "f", 3.5f,
            "sh", (short) 300, "by", (byte) -8, "big", -1099511627776L, "bad", "x");

    /** Kafka producer on topic Q -> JMS queue Q. */
    @Test
    void kafkaToJmsQueue() throws Exception {
        String q = Env.unique("kafka-to-jms");
        long t0 = System.currentTimeMillis() - 60_000;
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        ProducerRecord<byte[], byte[]> text = new ProducerRecord<>(q, 0, t0, "k-0".getBytes(UTF_8), "grüße ✓".getBytes(UTF_8));
        text.headers().add("JMSPulsarMessageType", "text".getBytes(UTF_8));
        text.headers().add("color", "red".getBytes(UTF_8));
        for (String[] p : TYPED) {
            text.headers().add(p[0], p[1].getBytes(UTF_8)).add(p[0] + "_jsmtype", p[2].getBytes(UTF_8));
        }
        records.add(text);
        ProducerRecord<byte[], byte[]> bytes = new ProducerRecord<>(q, 0, t0 + 1, new byte[] {(byte) 0xff, 0},
                new byte[] {0, (byte) 0xff, 1});
        bytes.headers().add("color", "green".getBytes(UTF_8));
        bytes.headers().add(new RecordHeader("bin", new byte[] {(byte) 0xff, (byte) 0xfe}));
        bytes.headers().add(new RecordHeader("nul", null));
        records.add(bytes);
        records.add(new ProducerRecord<>(q, 0, t0 + 2, null, new byte[0]));

        Map<String, Object> textProps = new TreeMap<>(TYPED_VALUES);
        textProps.put("color", "red");
        // The key is JMSXGroupID, as S4J reads it (a binary one as Pulsar keeps it, base64).
        textProps.put("JMSXGroupID", "k-0");
        List<Wanted> wanted = List.of(
                new Wanted("grüße ✓", null, textProps, t0),
                // Kafka's mapping: a non-UTF-8 header value base64, a null one empty, and
                // __kafka_header_encoding says which (docs/kafka.md "Records").
                new Wanted(null, new byte[] {0, (byte) 0xff, 1},
                        Env.map("color", "green", "bin", "//4=", "nul", "", "__kafka_header_encoding", "sbn",
                                "JMSXGroupID", "/wA="), t0 + 1),
                new Wanted(null, new byte[0], Map.of(), t0 + 2));

        // The JMS queue comes first and makes the topic, not partitioned; Kafka sees it as one
        // partition, 0. (A topic Kafka makes is partitioned: PartitionedTopicTest.)
        try (Connection c = Env.jms().createConnection()) {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            s.createConsumer(s.createQueue(q)).close();
        }
        try (KafkaProducer<byte[], byte[]> p = Env.kafkaProducer()) {
            for (ProducerRecord<byte[], byte[]> r : records) {
                p.send(r).get(Env.WAIT_MS, TimeUnit.MILLISECONDS);
            }
        }
        // The queue's subscription started at the topic's beginning, so what Kafka wrote while
        // no JMS consumer was there waits for the next one.
        try (Connection c = Env.jms().createConnection()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            receive(s.createConsumer(s.createQueue(q)), wanted, "Kafka -> JMS");
        }
    }

    /** Native Pulsar producer on topic Q -> JMS queue Q, with S4J's typed properties, and a
     *  message S4J's JMSExpiration says has expired, which must not arrive. */
    @Test
    void pulsarToJmsQueue() throws Exception {
        String q = Env.unique("pulsar-to-jms");
        long t0 = System.currentTimeMillis() - 120_000;
        Map<String, Object> textProps = new TreeMap<>(TYPED_VALUES);
        textProps.put("note", "ä note");
        textProps.put("JMSXGroupID", "pk-0");
        List<Wanted> wanted = List.of(
                new Wanted("pulsar ✓ text", null, textProps, t0),
                new Wanted(null, new byte[] {(byte) 0xca, (byte) 0xfe, 0}, Env.map("s", "plain", "JMSXGroupID", "Af8="),
                        t0 + 5),
                new Wanted(null, new byte[0], Map.of(), 0));
        try (Connection c = Env.jms().createConnection(); PulsarClient client = Env.pulsar()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(q));
            try (Producer<byte[]> p = client.newProducer().topic(Env.pulsarTopic(q)).create()) {
                TypedMessageBuilder<byte[]> m0 = p.newMessage().key("pk-0").value("pulsar ✓ text".getBytes(UTF_8))
                        .eventTime(t0).property("JMSPulsarMessageType", "text").property("note", "ä note");
                for (String[] x : TYPED) {
                    m0.property(x[0], x[1]).property(x[0] + "_jsmtype", x[2]);
                }
                m0.send();
                p.newMessage().keyBytes(new byte[] {1, (byte) 0xff}).value(new byte[] {(byte) 0xca, (byte) 0xfe, 0})
                        .eventTime(t0 + 5).property("JMSPulsarMessageType", "bytes").property("s", "plain").send();
                // Expired as S4J marks it (JMSExpiration in ms, typed long): never delivered.
                p.newMessage().value("expired".getBytes(UTF_8)).property("JMSExpiration",
                        Long.toString(System.currentTimeMillis() - 60_000)).property("JMSExpiration_jsmtype", "long")
                        .send();
                // No event time: no JMSTimestamp.
                p.newMessage().value(new byte[0]).send();
            }
            receive(consumer, wanted, "Pulsar -> JMS");
        }
    }

    /** AMQP 0-9-1 -> JMS, both ways docs/amqp.md names a Pulsar topic: exchange X (topic X)
     *  to the JMS queue X, and the default exchange with routing key Q (queue Q's
     *  topic `amqp.queue.Q`) to the JMS queue `amqp.queue.Q`. The AMQP 0-9-1 message's string
     *  headers become properties, and the gateway's `amqp.*` properties come along; its
     *  timestamp (seconds) is the event time. */
    @Test
    void amqp091ToJms() throws Exception {
        String x = Env.unique("091-to-jms");
        String q = Env.unique("091-queue");
        long ts = (System.currentTimeMillis() / 1000 - 30) * 1000;
        // The gateway's `amqp.exchange`, `amqp.routing-key` and `amqp.properties` are not Java
        // identifiers, which Qpid JMS leaves out of getPropertyNames unless told not to check.
        try (com.rabbitmq.client.Connection rc = Env.rabbit().newConnection();
                Connection c = Env.jms("jms.validatePropertyNames=false").createConnection()) {
            Channel ch = rc.createChannel();
            ch.confirmSelect();
            ch.exchangeDeclare(x, "fanout");
            // A publish to an exchange is written only when some binding takes it.
            String bound = ch.queueDeclare("", false, true, true, null).getQueue();
            ch.queueBind(bound, x, "");
            ch.queueDeclare(q, false, false, true, null);
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            // JMS queue X: its subscription on topic X exists once the consumer is attached.
            MessageConsumer exchangeReader = s.createConsumer(s.createQueue(x));
            MessageConsumer queueConsumer = s.createConsumer(s.createQueue("amqp.queue." + q));

            Map<String, Object> h0 = new TreeMap<>();
            h0.put("JMSPulsarMessageType", "text");
            h0.put("color", "red");
            for (String[] p : TYPED) {
                h0.put(p[0], p[1]);
                h0.put(p[0] + "_jsmtype", p[2]);
            }
            h0.put("num", 5);   // not a string: stays in amqp.properties only
            ch.basicPublish(x, "rk-0", new AMQP.BasicProperties.Builder().headers(h0).timestamp(new Date(ts)).build(),
                    "текст ✓".getBytes(UTF_8));
            ch.basicPublish(x, "rk-1", new AMQP.BasicProperties.Builder().headers(Map.of("color", "blue")).build(),
                    new byte[] {9, 8, (byte) 0x80});
            ch.basicPublish("", q, new AMQP.BasicProperties.Builder().headers(Map.of("via", "default exchange"))
                    .timestamp(new Date(ts + 1000)).build(), new byte[] {7});
            ch.waitForConfirmsOrDie(Env.WAIT_MS);

            // The routing key is the Pulsar key (docs/amqp.md), so JMSXGroupID too.
            Map<String, Object> p0 = new TreeMap<>(TYPED_VALUES);
            p0.put("color", "red");
            p0.put("amqp.exchange", x);
            p0.put("amqp.routing-key", "rk-0");
            p0.put("JMSXGroupID", "rk-0");
            receive(exchangeReader, List.of(
                    new Wanted("текст ✓", null, p0, ts),
                    new Wanted(null, new byte[] {9, 8, (byte) 0x80},
                            Env.map("color", "blue", "amqp.exchange", x, "amqp.routing-key", "rk-1",
                                    "JMSXGroupID", "rk-1"), 0)),
                    "AMQP 0-9-1 exchange -> JMS queue on its topic");
            receive(queueConsumer, List.of(new Wanted(null, new byte[] {7},
                    Env.map("via", "default exchange", "amqp.exchange", "", "amqp.routing-key", q,
                            "JMSXGroupID", q), ts + 1000)),
                    "AMQP 0-9-1 default exchange -> JMS queue");
        }
    }

    /** Receives `wanted.size()` messages, and then none for a while, checking each. The
     *  `amqp.properties` property of a message from AMQP 0-9-1 (its basic properties encoded)
     *  must be there and is not compared. */
    static void receive(MessageConsumer consumer, List<Wanted> wanted, String what) throws JMSException {
        Diffs d = new Diffs();
        for (int i = 0; i < wanted.size(); i++) {
            Wanted w = wanted.get(i);
            String where = "message " + i;
            Message m = consumer.receive(Env.WAIT_MS);
            if (m == null) {
                d.fail(where, "not received within " + Env.WAIT_MS + " ms");
                break;
            }
            Env.checkBody(m, w.text, w.bytes, d, where);
            Map<String, Object> props = Env.jmsProperties(m);
            // Qpid JMS's own: the delivery count the header's delivery-count gives.
            d.check(where, "JMSXDeliveryCount", props.remove("JMSXDeliveryCount"), 1);
            if (what.startsWith("AMQP 0-9-1") && !(props.remove("amqp.properties") instanceof String)) {
                d.fail(where, "property amqp.properties missing");
            }
            d.check(where, "properties", props, w.props);
            d.check(where, "JMSTimestamp", m.getJMSTimestamp(), w.timestamp);
            d.check(where, "JMSRedelivered", m.getJMSRedelivered(), false);
        }
        Message extra = consumer.receive(Env.QUIET_MS);
        if (extra != null) {
            d.fail(what, "a message more than sent: " + extra);
        }
        d.assertNone(what);
    }
}

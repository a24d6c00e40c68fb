package gateway.jmsinterop;

import static java.nio.charset.StandardCharsets.UTF_8;

import jakarta.jms.BytesMessage;
import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Destination;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Queue;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;
import jakarta.jms.Topic;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Reader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The JMS headers Starlight for JMS (S4J) keeps in Pulsar properties and the key, both ways
 *  (docs/jms.md "Messages"): JMSCorrelationID (base64 of its bytes), JMSReplyTo (a full topic
 *  name, `JMSReplyToType` = `topic` for a topic), JMSXGroupID (the key) and JMSXGroupSeq. The
 *  S4J side is a native Pulsar client writing and reading what S4J's `PulsarMessage` writes
 *  and reads. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class HeadersTest {
    static final String NAMESPACE = "persistent://public/default/";

    /** Qpid JMS sends; a native Pulsar reader sees what S4J would read. */
    @Test
    void jmsHeadersAsS4jWritesThem() throws Exception {
        String q = Env.unique("headers-out");
        String replies = Env.unique("replies");
        String news = Env.unique("news");
        try (Connection c = Env.jms().createConnection()) {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue(q));
            TextMessage text = s.createTextMessage("request");
            text.setJMSCorrelationID("order-7");
            text.setJMSReplyTo(s.createQueue(replies));
            text.setStringProperty("JMSXGroupID", "group-a");
            text.setIntProperty("JMSXGroupSeq", 3);
            p.send(text);
            BytesMessage bytes = s.createBytesMessage();
            bytes.writeBytes(new byte[] {1});
            bytes.setJMSCorrelationIDAsBytes(new byte[] {(byte) 0xca, (byte) 0xfe});
            bytes.setJMSReplyTo(s.createTopic(news));
            p.send(bytes, DeliveryMode.PERSISTENT, 4, 0);
        }
        List<org.apache.pulsar.client.api.Message<byte[]>> got = new ArrayList<>();
        try (PulsarClient client = Env.pulsar();
                Reader<byte[]> reader = client.newReader().topic(Env.pulsarTopic(q))
                        .startMessageId(MessageId.earliest).create()) {
            for (int i = 0; i < 2; i++) {
                org.apache.pulsar.client.api.Message<byte[]> m = reader.readNext((int) Env.WAIT_MS, TimeUnit.MILLISECONDS);
                if (m != null) {
                    got.add(m);
                }
            }
        }
        Diffs d = new Diffs();
        d.check(q, "messages", got.size(), 2);
        if (got.size() == 2) {
            org.apache.pulsar.client.api.Message<byte[]> m0 = got.get(0), m1 = got.get(1);
            d.check("message 0", "JMSCorrelationID", m0.getProperty("JMSCorrelationID"),
                    Base64.getEncoder().encodeToString("order-7".getBytes(UTF_8)));
            d.check("message 0", "JMSReplyTo", m0.getProperty("JMSReplyTo"), NAMESPACE + replies);
            d.check("message 0", "JMSReplyToType (none for a queue)", m0.getProperty("JMSReplyToType"), null);
            d.check("message 0", "key (JMSXGroupID)", m0.getKey(), "group-a");
            d.check("message 0", "JMSXGroupSeq", m0.getProperty("JMSXGroupSeq"), "3");
            d.check("message 0", "JMSXGroupSeq_jsmtype", m0.getProperty("JMSXGroupSeq_jsmtype"), "int");
            d.check("message 1", "JMSCorrelationID (bytes)", m1.getProperty("JMSCorrelationID"),
                    Base64.getEncoder().encodeToString(new byte[] {(byte) 0xca, (byte) 0xfe}));
            d.check("message 1", "JMSReplyTo", m1.getProperty("JMSReplyTo"), NAMESPACE + news);
            d.check("message 1", "JMSReplyToType", m1.getProperty("JMSReplyToType"), "topic");
            d.check("message 1", "hasKey", m1.hasKey(), false);
        }
        d.assertNone("JMS headers -> S4J's properties");
    }

    /** A message written as S4J writes one reaches Qpid JMS with its headers where JMS has
     *  them, none of them among the properties; the JMS consumer answers to its JMSReplyTo, and
     *  the answer arrives on that Pulsar topic with the request's correlation id. */
    @Test
    void s4jHeadersToJmsAndAReply() throws Exception {
        String q = Env.unique("headers-in");
        String replies = Env.unique("replies");
        try (Connection c = Env.jms().createConnection(); PulsarClient client = Env.pulsar();
                Reader<byte[]> replyReader = client.newReader().topic(NAMESPACE + replies)
                        .startMessageId(MessageId.earliest).create()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(q));
            try (Producer<byte[]> p = client.newProducer().topic(Env.pulsarTopic(q)).create()) {
                p.newMessage().key("group-b").value("question".getBytes(UTF_8))
                        .property("JMSPulsarMessageType", "text")
                        .property("JMSCorrelationID", Base64.getEncoder().encodeToString("req-1".getBytes(UTF_8)))
                        .property("JMSReplyTo", NAMESPACE + replies)
                        .property("JMSType", "ask").property("JMSPriority", "6").property("JMSDeliveryMode", "1")
                        .property("JMSXGroupSeq", "9").property("JMSXGroupSeq_jsmtype", "int")
                        .property("note", "kept").send();
                p.newMessage().value(new byte[] {2})
                        .property("JMSCorrelationID", Base64.getEncoder().encodeToString(new byte[] {(byte) 0xff, 0}))
                        .property("JMSReplyTo", "persistent://public/default/announcements")
                        .property("JMSReplyToType", "topic").send();
            }
            Diffs d = new Diffs();
            Message m0 = consumer.receive(Env.WAIT_MS);
            Message m1 = consumer.receive(Env.WAIT_MS);
            if (m0 == null || m1 == null) {
                d.fail(q, "not received within " + Env.WAIT_MS + " ms");
            } else {
                String w = "message 0";
                Env.checkBody(m0, "question", null, d, w);
                d.check(w, "JMSCorrelationID", m0.getJMSCorrelationID(), "req-1");
                Destination replyTo = m0.getJMSReplyTo();
                d.check(w, "JMSReplyTo is a queue", replyTo instanceof Queue, true);
                if (replyTo instanceof Queue rq) {
                    d.check(w, "JMSReplyTo", rq.getQueueName(), NAMESPACE + replies);
                }
                d.check(w, "JMSType", m0.getJMSType(), "ask");
                d.check(w, "JMSPriority", m0.getJMSPriority(), 6);
                d.check(w, "JMSDeliveryMode", m0.getJMSDeliveryMode(), DeliveryMode.NON_PERSISTENT);
                d.check(w, "JMSXGroupID (the key)", m0.getStringProperty("JMSXGroupID"), "group-b");
                d.check(w, "JMSXGroupSeq", m0.getIntProperty("JMSXGroupSeq"), 9);
                Map<String, Object> props = Env.jmsProperties(m0);
                props.remove("JMSXDeliveryCount");
                Map<String, Object> wanted = new TreeMap<>(Env.map("note", "kept", "JMSXGroupID", "group-b",
                        "JMSXGroupSeq", 9));
                d.check(w, "properties", props, wanted);

                w = "message 1";
                d.check(w, "JMSCorrelationIDAsBytes", m1.getJMSCorrelationIDAsBytes(), new byte[] {(byte) 0xff, 0});
                Destination topic = m1.getJMSReplyTo();
                d.check(w, "JMSReplyTo is a topic", topic instanceof Topic, true);
                if (topic instanceof Topic t) {
                    d.check(w, "JMSReplyTo", t.getTopicName(), "persistent://public/default/announcements");
                }
                d.check(w, "JMSDeliveryMode (S4J's default)", m1.getJMSDeliveryMode(), DeliveryMode.PERSISTENT);
                d.check(w, "JMSXGroupID (no key)", m1.getStringProperty("JMSXGroupID"), null);

                // The answer goes where the request said, with its correlation id.
                TextMessage answer = s.createTextMessage("answer");
                answer.setJMSCorrelationID(m0.getJMSCorrelationID());
                s.createProducer(replyTo).send(answer);
                org.apache.pulsar.client.api.Message<byte[]> r = replyReader.readNext((int) Env.WAIT_MS, TimeUnit.MILLISECONDS);
                if (r == null) {
                    d.fail("reply", "not on " + NAMESPACE + replies + " within " + Env.WAIT_MS + " ms");
                } else {
                    d.check("reply", "data", new String(r.getData(), UTF_8), "answer");
                    d.check("reply", "JMSCorrelationID", r.getProperty("JMSCorrelationID"),
                            Base64.getEncoder().encodeToString("req-1".getBytes(UTF_8)));
                }
            }
            d.assertNone("S4J's headers -> JMS");
        }
    }
}

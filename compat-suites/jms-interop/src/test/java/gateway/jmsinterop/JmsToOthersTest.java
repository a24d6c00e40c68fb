package gateway.jmsinterop;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.GetResponse;
import jakarta.jms.Connection;
import jakarta.jms.Message;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Reader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Qpid JMS sends JmsSamples; a Kafka consumer, an AMQP 0-9-1 consumer and a native Pulsar
 *  reader read them from the same topic. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class JmsToOthersTest {
    private static final int N = JmsSamples.SAMPLES.size();

    /** JMS queue Q -> Kafka topic Q (docs/kafka.md "Records": payload = value, properties =
     *  headers, event time = timestamp; no key). */
    @Test
    void jmsQueueToKafka() throws Exception {
        String q = Env.unique("jms-to-kafka");
        List<Message> sent;
        try (Connection c = Env.jms().createConnection()) {
            sent = JmsSamples.send(c, s -> jakartaQueue(s, q));
        }
        List<ConsumerRecord<byte[], byte[]>> got = Env.kafkaRead(q, N);
        Diffs d = new Diffs();
        d.check(q, "records", got.size(), N);
        for (int i = 0; i < Math.min(N, got.size()); i++) {
            JmsSamples.Sample x = JmsSamples.SAMPLES.get(i);
            ConsumerRecord<byte[], byte[]> r = got.get(i);
            String where = "record " + i;
            d.check(where, "key", r.key(), null);
            d.check(where, "value", r.value(), x.payload());
            d.check(where, "timestamp (JMSTimestamp)", r.timestamp(), sent.get(i).getJMSTimestamp());
            Map<String, String> headers = Env.splitAmqp1(Env.headers(r.headers(), d, where), x.storedBody(), d, where);
            d.check(where, "headers", headers, JmsSamples.s4jProperties(x, sent.get(i)));
        }
        d.assertNone("JMS -> Kafka");
    }

    /** JMS queue Q -> a native Pulsar reader of topic Q (docs/jms.md "Messages"). */
    @Test
    void jmsQueueToPulsar() throws Exception {
        String q = Env.unique("jms-to-pulsar");
        List<Message> sent;
        try (Connection c = Env.jms().createConnection()) {
            sent = JmsSamples.send(c, s -> jakartaQueue(s, q));
        }
        Diffs d = new Diffs();
        List<org.apache.pulsar.client.api.Message<byte[]>> got = new ArrayList<>();
        try (PulsarClient client = Env.pulsar();
                Reader<byte[]> reader = client.newReader().topic(Env.pulsarTopic(q))
                        .startMessageId(MessageId.earliest).create()) {
            for (int i = 0; i < N; i++) {
                org.apache.pulsar.client.api.Message<byte[]> m = reader.readNext((int) Env.WAIT_MS, TimeUnit.MILLISECONDS);
                if (m == null) {
                    break;
                }
                got.add(m);
            }
            org.apache.pulsar.client.api.Message<byte[]> extra = reader.readNext((int) Env.QUIET_MS, TimeUnit.MILLISECONDS);
            if (extra != null) {
                d.fail(q, "a message more than sent: " + extra.getProperties());
            }
        }
        d.check(q, "messages", got.size(), N);
        for (int i = 0; i < got.size(); i++) {
            JmsSamples.Sample x = JmsSamples.SAMPLES.get(i);
            org.apache.pulsar.client.api.Message<byte[]> m = got.get(i);
            String where = "message " + i;
            d.check(where, "hasKey", m.hasKey(), false);
            d.check(where, "data", m.getData(), x.payload());
            d.check(where, "event time (JMSTimestamp)", m.getEventTime(), sent.get(i).getJMSTimestamp());
            Map<String, String> props = Env.splitAmqp1(new TreeMap<>(m.getProperties()), x.storedBody(), d, where);
            d.check(where, "properties", props, JmsSamples.s4jProperties(x, sent.get(i)));
        }
        d.assertNone("JMS -> Pulsar");
    }

    /** JMS topic T -> AMQP 0-9-1 exchange T (docs/amqp.md: exchange T is topic T; a message
     *  from another protocol comes with its properties as string headers, its event time as
     *  the timestamp in seconds, its key (none here) as the routing key). */
    @Test
    void jmsTopicToAmqp091() throws Exception {
        String t = Env.unique("jms-to-091");
        Diffs d = new Diffs();
        try (com.rabbitmq.client.Connection rc = Env.rabbit().newConnection()) {
            Channel ch = rc.createChannel();
            ch.exchangeDeclare(t, "fanout");
            String queue = ch.queueDeclare("", false, true, true, null).getQueue();
            ch.queueBind(queue, t, "");
            List<Message> sent;
            try (Connection c = Env.jms().createConnection()) {
                sent = JmsSamples.send(c, s -> jakartaTopic(s, t));
            }
            List<GetResponse> got = new ArrayList<>();
            long deadline = System.currentTimeMillis() + Env.WAIT_MS;
            while (got.size() < N && System.currentTimeMillis() < deadline) {
                GetResponse r = ch.basicGet(queue, true);
                if (r == null) {
                    Thread.sleep(100);
                } else {
                    got.add(r);
                }
            }
            Thread.sleep(Env.QUIET_MS);
            GetResponse extra = ch.basicGet(queue, true);
            if (extra != null) {
                d.fail(t, "a message more than sent: " + extra.getProps());
            }
            d.check(t, "messages", got.size(), N);
            for (int i = 0; i < got.size(); i++) {
                JmsSamples.Sample x = JmsSamples.SAMPLES.get(i);
                GetResponse r = got.get(i);
                AMQP.BasicProperties p = r.getProps();
                String where = "message " + i;
                d.check(where, "body", r.getBody(), x.payload());
                d.check(where, "exchange", r.getEnvelope().getExchange(), t);
                d.check(where, "routing key", r.getEnvelope().getRoutingKey(), "");
                d.check(where, "timestamp (JMSTimestamp in s)", p.getTimestamp(),
                        new Date(sent.get(i).getJMSTimestamp() / 1000 * 1000));
                Map<String, String> headers = new TreeMap<>();
                if (p.getHeaders() != null) {
                    p.getHeaders().forEach((k, v) -> headers.put(k,
                            v instanceof com.rabbitmq.client.LongString ls ? ls.toString() : "not a string: " + v));
                }
                headers.putAll(Env.splitAmqp1(headers, x.storedBody(), d, where));
                headers.keySet().removeIf(k -> k.startsWith("amqp1."));
                d.check(where, "headers", headers, JmsSamples.s4jProperties(x, sent.get(i)));
                // No other basic property is set (none is mapped from JMS).
                List<Object> others = new ArrayList<>();
                for (Object o : new Object[] {p.getContentType(), p.getContentEncoding(), p.getDeliveryMode(),
                        p.getPriority(), p.getCorrelationId(), p.getReplyTo(), p.getExpiration(), p.getMessageId(),
                        p.getType(), p.getUserId(), p.getAppId()}) {
                    if (o != null) {
                        others.add(o);
                    }
                }
                d.check(where, "other basic properties", others, List.of());
            }
        }
        d.assertNone("JMS -> AMQP 0-9-1");
    }

    static jakarta.jms.Queue jakartaQueue(jakarta.jms.Session s, String name) {
        try {
            return s.createQueue(name);
        } catch (jakarta.jms.JMSException e) {
            throw new IllegalStateException(e);
        }
    }

    static jakarta.jms.Topic jakartaTopic(jakarta.jms.Session s, String name) {
        try {
            return s.createTopic(name);
        } catch (jakarta.jms.JMSException e) {
            throw new IllegalStateException(e);
        }
    }
}

package compat;

import static org.junit.jupiter.api.Assertions.*;

import com.rabbitmq.client.*;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * AMQP 0-9-1 scenarios with the RabbitMQ Java client: what a RabbitMQ application expects of its
 * broker. One test per scenario id (the same ids as compat-suites/amqp-pika); each uses its own
 * names and connection. They pass against a real RabbitMQ (CI runs them there first) and against
 * the gateway.
 */
@Timeout(60)
class ScenariosTest {
    static final String URL = System.getProperty("amqp.url");
    final List<Connection> opened = new ArrayList<>();
    Connection conn;
    Channel ch;

    ConnectionFactory factory() throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setUri(URL);
        f.setAutomaticRecoveryEnabled(false);
        f.setConnectionTimeout(10_000);
        return f;
    }

    Connection connect() throws Exception {
        Connection c = factory().newConnection();
        opened.add(c);
        return c;
    }

    @BeforeEach
    void open() throws Exception {
        conn = connect();
        ch = conn.createChannel();
    }

    @AfterEach
    void close() {
        for (Connection c : opened) {
            try {
                if (c.isOpen()) c.close();
            } catch (Exception ignored) {
            }
        }
    }

    static String name(String prefix) {
        return "compat-java-" + prefix + "-" + UUID.randomUUID().toString().substring(0, 10);
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String s(byte[] bytes) {
        return new String(bytes, StandardCharsets.UTF_8);
    }

    interface Call {
        void run() throws Exception;
    }

    /** Runs a call that must close its channel (or connection) with `code`. */
    static void closedWith(int code, Call call) {
        Exception e = assertThrows(Exception.class, call::run);
        ShutdownSignalException signal = null;
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ShutdownSignalException) signal = (ShutdownSignalException) t;
        }
        assertNotNull(signal, "expected a channel close, got " + e);
        Method reason = signal.getReason();
        int got = reason instanceof AMQP.Channel.Close
                ? ((AMQP.Channel.Close) reason).getReplyCode()
                : ((AMQP.Connection.Close) reason).getReplyCode();
        assertEquals(code, got, signal.getMessage());
    }

    Channel confirmed(Channel c) throws IOException {
        c.confirmSelect();
        return c;
    }

    void publish(Channel c, String exchange, String key, byte[] body) throws Exception {
        publish(c, exchange, key, body, null);
    }

    void publish(Channel c, String exchange, String key, byte[] body, AMQP.BasicProperties props)
            throws Exception {
        c.basicPublish(exchange, key, props, body);
        c.waitForConfirmsOrDie(10_000);
    }

    String tempQueue(Channel c) throws IOException {
        return c.queueDeclare("", false, true, false, null).getQueue();
    }

    List<String> getAll(Channel c, String queue) throws IOException {
        List<String> got = new ArrayList<>();
        for (GetResponse r; (r = c.basicGet(queue, true)) != null; ) got.add(s(r.getBody()));
        return got;
    }

    List<GetResponse> waitFor(Channel c, String queue, int count, long millis) throws Exception {
        List<GetResponse> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + millis;
        while (got.size() < count && System.currentTimeMillis() < deadline) {
            GetResponse r = c.basicGet(queue, true);
            if (r == null) Thread.sleep(100);
            else got.add(r);
        }
        return got;
    }

    static List<String> sorted(List<String> l) {
        List<String> copy = new ArrayList<>(l);
        Collections.sort(copy);
        return copy;
    }

    // ---- connection -------------------------------------------------------------------------

    /**
     * Open a connection and a channel, close cleanly; the server properties advertise the
     * capabilities publisher_confirms, exchange_exchange_bindings, basic.nack,
     * consumer_cancel_notify, connection.blocked, authentication_failure_close, per_consumer_qos
     */
    @Test
    void connect_and_close() throws Exception {
        Map<String, Object> caps = (Map<String, Object>) conn.getServerProperties().get("capabilities");
        for (String cap : List.of("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
                "per_consumer_qos")) {
            assertEquals(Boolean.TRUE, caps.get(cap), cap);
        }
        ch.close();
        conn.close();
        assertFalse(conn.isOpen());
    }

    /**
     * PLAIN login with a wrong password fails with the client's AuthenticationFailureException
     * (ACCESS_REFUSED 403)
     */
    @Test
    void wrong_password_refused() throws Exception {
        ConnectionFactory f = factory();
        f.setPassword("not-the-password");
        Exception e = assertThrows(AuthenticationFailureException.class, f::newConnection);
        assertTrue(e.getMessage().contains("ACCESS_REFUSED"), e.getMessage());
    }

    /**
     * A requested heartbeat of 1 s is negotiated; the idle connection stays open for 4 s and is
     * still usable
     */
    @Test
    void heartbeat_negotiated() throws Exception {
        ConnectionFactory f = factory();
        f.setRequestedHeartbeat(1);
        Connection c = f.newConnection();
        opened.add(c);
        assertEquals(1, c.getHeartbeat());
        Thread.sleep(4000);
        assertTrue(c.isOpen());
        c.createChannel().exchangeDeclarePassive("amq.direct");
    }

    /**
     * A 300 KiB body (more than one frame at the negotiated frame_max, at most 128 KiB)
     * round-trips byte for byte
     */
    @Test
    void frame_max_respected() throws Exception {
        String q = tempQueue(confirmed(ch));
        byte[] body = new byte[300 * 1024];
        new Random(7).nextBytes(body);
        publish(ch, "", q, body);
        assertArrayEquals(body, ch.basicGet(q, true).getBody());
        assertTrue(conn.getFrameMax() <= 131072 && conn.getFrameMax() >= 4096);
    }

    /**
     * The client asks for channel_max 60 in tune-ok: the connection uses 60 (the broker offers
     * more), all 60 channels open and work, and the client refuses a 61st (it returns null).
     */
    @Test
    void channel_max_enforced() throws Exception {
        ConnectionFactory f = factory();
        f.setRequestedChannelMax(60);
        Connection c = f.newConnection();
        opened.add(c);
        assertEquals(60, c.getChannelMax());
        List<Channel> channels = new ArrayList<>();
        for (int i = 0; i < 60; i++) channels.add(c.createChannel());
        for (Channel each : channels) each.exchangeDeclarePassive("amq.fanout");
        assertNull(c.createChannel(), "no channel beyond the negotiated channel_max");
        assertTrue(c.isOpen());
    }

    /**
     * A passive declare of a missing queue closes that channel with 404 NOT_FOUND; the connection
     * and a new channel keep working
     */
    @Test
    void channel_close_on_error() throws Exception {
        Channel broken = conn.createChannel();
        closedWith(404, () -> broken.queueDeclarePassive(name("missing")));
        assertFalse(broken.isOpen());
        conn.createChannel().exchangeDeclarePassive("amq.direct");
        assertTrue(conn.isOpen());
    }

    // ---- exchanges --------------------------------------------------------------------------

    /** One queue per binding key on a fresh exchange; returns what each queue got. */
    List<List<String>> route(String kind, List<String> keys, List<Map<String, Object>> args,
            List<Object[]> publishes) throws Exception {
        String x = name(kind);
        ch.exchangeDeclare(x, kind);
        confirmed(ch);
        List<String> queues = new ArrayList<>();
        for (int i = 0; i < keys.size(); i++) {
            String q = tempQueue(ch);
            ch.queueBind(q, x, keys.get(i), args == null ? null : args.get(i));
            queues.add(q);
        }
        for (Object[] p : publishes) {
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
                    .headers((Map<String, Object>) p[1]).build();
            publish(ch, x, (String) p[0], b((String) p[2]), props);
        }
        List<List<String>> got = new ArrayList<>();
        for (String q : queues) got.add(sorted(getAll(ch, q)));
        ch.exchangeDelete(x);
        return got;
    }

    /** A direct exchange routes by exact key; an unmatched key reaches no queue */
    @Test
    void exchange_direct_routing() throws Exception {
        var got = route("direct", List.of("a", "b"), null,
                List.of(new Object[] {"a", null, "1"}, new Object[] {"b", null, "2"}, new Object[] {"c", null, "3"}));
        assertEquals(List.of(List.of("1"), List.of("2")), got);
    }

    /** A fanout exchange copies every message to every bound queue, whatever the keys */
    @Test
    void exchange_fanout_routing() throws Exception {
        var got = route("fanout", List.of("", "ignored"), null,
                List.of(new Object[] {"x", null, "1"}, new Object[] {"", null, "2"}));
        assertEquals(List.of(List.of("1", "2"), List.of("1", "2")), got);
    }

    /** Topic patterns a.*, a.#, #, a.#.z, *.b.*: * is one word, # zero or more */
    @Test
    void exchange_topic_routing() throws Exception {
        var got = route("topic", List.of("a.*", "a.#", "#", "a.#.z", "*.b.*"), null,
                List.of(new Object[] {"a.b", null, "ab"}, new Object[] {"a", null, "a"},
                        new Object[] {"a.b.c.z", null, "abcz"}, new Object[] {"x.b.y", null, "xby"},
                        new Object[] {"a.z", null, "az"}));
        assertEquals(List.of(List.of("ab", "az"), List.of("a", "ab", "abcz", "az"),
                List.of("a", "ab", "abcz", "az", "xby"), List.of("abcz", "az"), List.of("xby")), got);
        // One queue with overlapping bindings gets each message once, in publish order.
        String x = name("topic");
        ch.exchangeDeclare(x, "topic");
        String q = tempQueue(ch);
        for (String key : List.of("a.*", "*.b", "#")) ch.queueBind(q, x, key);
        for (String key : List.of("a.b", "x.y", "a.c", "z.b")) publish(ch, x, key, b(key));
        assertEquals(List.of("a.b", "x.y", "a.c", "z.b"), getAll(ch, q));
        ch.exchangeDelete(x);
    }

    /** Headers exchange with x-match=all: every bound header must match (extra headers are fine) */
    @Test
    void exchange_headers_all() throws Exception {
        var got = route("headers", List.of(""), List.of(Map.of("x-match", "all", "a", "1", "b", "2")),
                List.of(new Object[] {"", Map.of("a", "1", "b", "2"), "both"},
                        new Object[] {"", Map.of("a", "1"), "one"},
                        new Object[] {"", Map.of("a", "1", "b", "2", "c", "3"), "more"}));
        assertEquals(List.of(List.of("both", "more")), got);
    }

    /**
     * Headers exchange with x-match=any: one matching header is enough; a wrong value does not
     * match
     */
    @Test
    void exchange_headers_any() throws Exception {
        var got = route("headers", List.of(""), List.of(Map.of("x-match", "any", "a", "1", "b", "2")),
                List.of(new Object[] {"", Map.of("a", "1"), "a"}, new Object[] {"", Map.of("b", "2"), "b"},
                        new Object[] {"", Map.of("c", "3"), "c"}, new Object[] {"", Map.of("a", "9"), "wrong"}));
        assertEquals(List.of(List.of("a", "b")), got);
    }

    /** Publishing to "" with a queue's name delivers to that queue */
    @Test
    void default_exchange_routing() throws Exception {
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        publish(confirmed(ch), "", q, b("hello"));
        assertEquals(List.of("hello"), getAll(ch, q));
        ch.queueDelete(q);
    }

    /**
     * amq.direct, amq.fanout, amq.topic, amq.headers, amq.match exist (passive declare); declaring
     * an amq.* name is 403 ACCESS_REFUSED
     */
    @Test
    void amq_builtin_exchanges() throws Exception {
        for (String x : List.of("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match")) {
            ch.exchangeDeclarePassive(x);
        }
        closedWith(403, () -> ch.exchangeDeclare("amq.custom", "direct"));
    }

    /** Passive declare of a missing exchange: 404 NOT_FOUND */
    @Test
    void exchange_passive_declare() throws Exception {
        closedWith(404, () -> ch.exchangeDeclarePassive(name("nope")));
    }

    /** Redeclaring with the same type is fine; with another type: 406 PRECONDITION_FAILED */
    @Test
    void exchange_redeclare_mismatch() throws Exception {
        String x = name("x");
        ch.exchangeDeclare(x, "direct");
        ch.exchangeDeclare(x, "direct");
        closedWith(406, () -> ch.exchangeDeclare(x, "fanout"));
        conn.createChannel().exchangeDelete(x);
    }

    /** delete(if-unused) with a binding: 406; after unbinding it deletes */
    @Test
    void exchange_delete_if_unused() throws Exception {
        String x = name("x");
        ch.exchangeDeclare(x, "direct");
        String q = tempQueue(ch);
        ch.queueBind(q, x, "k");
        closedWith(406, () -> ch.exchangeDelete(x, true));
        Channel c = conn.createChannel();
        c.queueUnbind(q, x, "k");
        c.exchangeDelete(x, true);
        closedWith(404, () -> c.exchangeDeclarePassive(x));
    }

    /** An auto-delete exchange is deleted when its last binding goes */
    @Test
    void exchange_auto_delete() throws Exception {
        String x = name("x");
        ch.exchangeDeclare(x, "direct", false, true, null);
        String q = tempQueue(ch);
        ch.queueBind(q, x, "k");
        ch.queueUnbind(q, x, "k");
        closedWith(404, () -> ch.exchangeDeclarePassive(x));
    }

    /**
     * Publishing to an internal exchange is 403; messages reach it through an exchange-to-exchange
     * binding
     */
    @Test
    void exchange_internal() throws Exception {
        confirmed(ch);
        String outer = name("outer"), inner = name("inner");
        ch.exchangeDeclare(inner, "fanout", false, false, true, null);
        ch.exchangeDeclare(outer, "fanout");
        ch.exchangeBind(inner, outer, "");
        String q = tempQueue(ch);
        ch.queueBind(q, inner, "");
        publish(ch, outer, "", b("via-outer"));
        assertEquals(List.of("via-outer"), getAll(ch, q));
        closedWith(403, () -> publish(ch, inner, "", b("direct")));
        Channel c = conn.createChannel();
        c.exchangeDelete(outer);
        c.exchangeDelete(inner);
    }

    /**
     * A queue bound to X2, with X2 bound to X1, gets what X1 routes to X2's key; unbinding X2
     * stops it
     */
    @Test
    void exchange_to_exchange_binding() throws Exception {
        confirmed(ch);
        String src = name("src"), dst = name("dst");
        ch.exchangeDeclare(src, "topic");
        ch.exchangeDeclare(dst, "direct");
        ch.exchangeBind(dst, src, "a.*");
        String q = tempQueue(ch);
        ch.queueBind(q, dst, "a.x");
        publish(ch, src, "a.x", b("yes"));
        publish(ch, src, "a.y", b("no: dst key"));
        publish(ch, src, "b.x", b("no: src pattern"));
        assertEquals(List.of("yes"), getAll(ch, q));
        ch.exchangeUnbind(dst, src, "a.*");
        publish(ch, src, "a.x", b("after unbind"));
        assertEquals(List.of(), getAll(ch, q));
        ch.exchangeDelete(src);
        ch.exchangeDelete(dst);
    }

    /** Unroutable messages go to the alternate-exchange's queue; routable ones do not */
    @Test
    void alternate_exchange() throws Exception {
        confirmed(ch);
        String main = name("main"), ae = name("ae");
        ch.exchangeDeclare(ae, "fanout");
        ch.exchangeDeclare(main, "direct", false, false, Map.of("alternate-exchange", ae));
        String routed = tempQueue(ch), spare = tempQueue(ch);
        ch.queueBind(routed, main, "known");
        ch.queueBind(spare, ae, "");
        publish(ch, main, "known", b("routed"));
        publish(ch, main, "unknown", b("alternate"));
        assertEquals(List.of("routed"), getAll(ch, routed));
        assertEquals(List.of("alternate"), getAll(ch, spare));
        ch.exchangeDelete(main);
        ch.exchangeDelete(ae);
    }

    // ---- queues -----------------------------------------------------------------------------

    /** Declaring with an empty name gives a server-generated amq.gen-... name */
    @Test
    void queue_server_named() throws Exception {
        assertTrue(tempQueue(ch).startsWith("amq.gen-"));
    }

    /**
     * Passive declare: a missing queue is 404; an existing one returns its message and consumer
     * counts
     */
    @Test
    void queue_passive_declare() throws Exception {
        closedWith(404, () -> ch.queueDeclarePassive(name("missing")));
        Channel c = confirmed(conn.createChannel());
        String q = c.queueDeclare(name("q"), false, true, false, null).getQueue();
        publish(c, "", q, b("1"));
        AMQP.Queue.DeclareOk ok = c.queueDeclarePassive(q);
        assertEquals(1, ok.getMessageCount());
        assertEquals(0, ok.getConsumerCount());
    }

    /** After 5 confirmed publishes declare-ok says 5 messages; with one consumer, consumer_count 1 */
    @Test
    void queue_message_count() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        for (int i = 0; i < 5; i++) publish(ch, "", q, b("m" + i));
        assertEquals(5, ch.queueDeclarePassive(q).getMessageCount());
        ch.basicConsume(q, false, (t, d) -> {}, t -> {});
        assertEquals(1, ch.queueDeclarePassive(q).getConsumerCount());
    }

    /**
     * Another connection touching an exclusive queue gets 405 RESOURCE_LOCKED; the queue goes when
     * its owner closes
     */
    @Test
    void queue_exclusive() throws Exception {
        Connection owner = connect();
        String q = owner.createChannel().queueDeclare(name("excl"), false, true, false, null).getQueue();
        Channel other = connect().createChannel();
        closedWith(405, () -> other.queueDeclarePassive(q));
        owner.close();
        Thread.sleep(500);
        Channel after = connect().createChannel();
        closedWith(404, () -> after.queueDeclarePassive(q));
    }

    /** An auto-delete queue is deleted when its last consumer cancels */
    @Test
    void queue_auto_delete() throws Exception {
        String q = ch.queueDeclare(name("auto"), false, false, true, null).getQueue();
        String tag = ch.basicConsume(q, true, (t, d) -> {}, t -> {});
        ch.basicCancel(tag);
        Thread.sleep(500);
        Channel c = conn.createChannel();
        closedWith(404, () -> c.queueDeclarePassive(q));
    }

    /** Redeclaring a durable queue as non-durable: 406 PRECONDITION_FAILED */
    @Test
    void queue_durable_redeclare_mismatch() throws Exception {
        String q = ch.queueDeclare(name("q"), true, false, false, null).getQueue();
        closedWith(406, () -> ch.queueDeclare(q, false, false, false, null));
        conn.createChannel().queueDelete(q);
    }

    /** Purge returns the number of messages removed; the queue is empty after */
    @Test
    void queue_purge() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        for (int i = 0; i < 4; i++) publish(ch, "", q, b("" + i));
        assertEquals(4, ch.queuePurge(q).getMessageCount());
        assertEquals(0, ch.queueDeclarePassive(q).getMessageCount());
        assertEquals(List.of(), getAll(ch, q));
    }

    /** delete(if-unused) of a queue with a consumer: 406 */
    @Test
    void queue_delete_if_unused() throws Exception {
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        ch.basicConsume(q, true, (t, d) -> {}, t -> {});
        Channel c = conn.createChannel();
        closedWith(406, () -> c.queueDelete(q, true, false));
        conn.createChannel().queueDelete(q);
    }

    /** delete(if-empty) of a queue with messages: 406 */
    @Test
    void queue_delete_if_empty() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        publish(ch, "", q, b("x"));
        closedWith(406, () -> ch.queueDelete(q, false, true));
        conn.createChannel().queueDelete(q);
    }

    /** delete-ok carries the number of messages deleted */
    @Test
    void queue_delete_returns_count() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        for (int i = 0; i < 3; i++) publish(ch, "", q, b("" + i));
        assertEquals(3, ch.queueDelete(q).getMessageCount());
    }

    /** x-message-ttl: a message older than the TTL is not delivered */
    @Test
    void queue_message_ttl() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("ttl"), false, true, false, Map.of("x-message-ttl", 200)).getQueue();
        publish(ch, "", q, b("short-lived"));
        Thread.sleep(800);
        assertEquals(List.of(), getAll(ch, q));
    }

    /** x-expires: a queue nobody uses disappears after the timeout */
    @Test
    void queue_expires() throws Exception {
        String q = ch.queueDeclare(name("exp"), false, false, false, Map.of("x-expires", 1000)).getQueue();
        Thread.sleep(3500);
        Channel c = conn.createChannel();
        closedWith(404, () -> c.queueDeclarePassive(q));
    }

    /** x-max-length 3 (default overflow drop-head): of 5 messages the 3 newest remain */
    @Test
    void queue_max_length_drop_head() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("ml"), false, true, false, Map.of("x-max-length", 3)).getQueue();
        for (int i = 0; i < 5; i++) publish(ch, "", q, b("m" + i));
        assertEquals(List.of("m2", "m3", "m4"), getAll(ch, q));
    }

    /**
     * x-overflow reject-publish: the publish over the limit is nacked to a confirming publisher
     * and not queued
     */
    @Test
    void queue_max_length_reject_publish() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("rp"), false, true, false,
                Map.of("x-max-length", 2, "x-overflow", "reject-publish")).getQueue();
        publish(ch, "", q, b("1"));
        publish(ch, "", q, b("2"));
        ch.basicPublish("", q, null, b("3"));
        assertFalse(ch.waitForConfirms(10_000), "the third publish is nacked");
        assertEquals(List.of("1", "2"), getAll(ch, q));
    }

    String[] deadLetterSetup(Map<String, Object> extra) throws Exception {
        String dlx = name("dlx");
        ch.exchangeDeclare(dlx, "fanout");
        String dlq = tempQueue(ch);
        ch.queueBind(dlq, dlx, "");
        Map<String, Object> args = new HashMap<>(extra);
        args.put("x-dead-letter-exchange", dlx);
        String q = ch.queueDeclare(name("src"), false, true, false, args).getQueue();
        return new String[] {q, dlq, dlx};
    }

    /**
     * Rejected and expired messages go to the x-dead-letter-exchange with an x-death entry (count,
     * reason, queue, exchange, routing-keys)
     */
    @Test
    void queue_dead_letter_exchange() throws Exception {
        confirmed(ch);
        String[] s = deadLetterSetup(Map.of());
        publish(ch, "", s[0], b("rejected-one"));
        GetResponse r = ch.basicGet(s[0], false);
        ch.basicReject(r.getEnvelope().getDeliveryTag(), false);
        List<GetResponse> dead = waitFor(ch, s[1], 1, 5000);
        assertEquals("rejected-one", s(dead.get(0).getBody()));
        assertEquals(s[2], dead.get(0).getEnvelope().getExchange(), "delivered from the dead-letter exchange");
        Map<String, Object> headers = dead.get(0).getProps().getHeaders();
        Map<String, Object> death = (Map<String, Object>) ((List<?>) headers.get("x-death")).get(0);
        assertEquals(1L, ((Number) death.get("count")).longValue());
        assertEquals("rejected", death.get("reason").toString());
        assertEquals(s[0], death.get("queue").toString());
        assertEquals("", death.get("exchange").toString());
        assertEquals(List.of(s[0]), ((List<?>) death.get("routing-keys")).stream().map(Object::toString).toList());
        // A TTL queue nobody reads dead-letters on its own (the delayed-retry pattern).
        String[] t = deadLetterSetup(Map.of("x-message-ttl", 300));
        publish(ch, "", t[0], b("expired-one"));
        List<GetResponse> expired = waitFor(ch, t[1], 1, 10_000);
        assertEquals("expired-one", s(expired.get(0).getBody()));
        Map<String, Object> d2 = (Map<String, Object>) ((List<?>) expired.get(0).getProps().getHeaders().get("x-death")).get(0);
        assertEquals("expired", d2.get("reason").toString());
        ch.exchangeDelete(s[2]);
        ch.exchangeDelete(t[2]);
    }

    /** x-dead-letter-routing-key replaces the routing key of dead-lettered messages */
    @Test
    void queue_dead_letter_routing_key() throws Exception {
        confirmed(ch);
        String dlx = name("dlx");
        ch.exchangeDeclare(dlx, "direct");
        String dlq = tempQueue(ch);
        ch.queueBind(dlq, dlx, "dead");
        String q = ch.queueDeclare(name("src"), false, true, false,
                Map.of("x-dead-letter-exchange", dlx, "x-dead-letter-routing-key", "dead")).getQueue();
        publish(ch, "", q, b("m"));
        ch.basicNack(ch.basicGet(q, false).getEnvelope().getDeliveryTag(), false, false);
        List<GetResponse> dead = waitFor(ch, dlq, 1, 5000);
        assertEquals("m", s(dead.get(0).getBody()));
        assertEquals("dead", dead.get(0).getEnvelope().getRoutingKey());
        ch.exchangeDelete(dlx);
    }

    /**
     * Invalid values of known arguments (x-max-length "many" or -1, x-overflow "sometimes",
     * x-message-ttl -5): 406 PRECONDITION_FAILED
     */
    @Test
    void queue_unsupported_argument() throws Exception {
        for (Map<String, Object> bad : List.<Map<String, Object>>of(Map.of("x-max-length", "many"),
                Map.of("x-max-length", -1), Map.of("x-overflow", "sometimes"), Map.of("x-message-ttl", -5))) {
            Channel c = conn.createChannel();
            closedWith(406, () -> c.queueDeclare(name("bad"), false, false, false, bad));
        }
    }

    // ---- publishing -------------------------------------------------------------------------

    /**
     * Every basic property (content type and encoding, headers, delivery mode, priority,
     * correlation id, reply-to, expiration, message id, timestamp, type, user id = the connection's
     * user, app id) and every header type (strings, ints, longs, booleans, nested tables and
     * arrays, byte arrays, timestamps, decimals) arrive unchanged, with a binary and an empty body
     */
    @Test
    void publish_properties_preserved() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        Map<String, Object> nested = new HashMap<>(Map.of("a", 1, "b", List.of("x", 2)));
        Map<String, Object> headers = new HashMap<>();
        headers.put("text", "hello");
        headers.put("int", 42);
        headers.put("negative", -7);
        headers.put("big", 1L << 40);
        headers.put("flag", true);
        headers.put("nested", nested);
        headers.put("list", List.of(1, "two", false));
        headers.put("bytes", new byte[] {0, (byte) 0xff});
        headers.put("when", new Date(1700000000000L));           // field type T (seconds)
        headers.put("price", new java.math.BigDecimal("12.345"));  // field type D
        headers.put("deep", Map.of("inner", Map.of("list", List.of(List.of(7, "x"), Map.of("k", "v")))));
        AMQP.BasicProperties sent = new AMQP.BasicProperties.Builder()
                .contentType("application/json").contentEncoding("gzip").headers(headers)
                .deliveryMode(2).priority(5).correlationId("corr-1").replyTo("replies")
                .expiration("60000").messageId("id-1").timestamp(new Date(1700000000000L))
                .type("order.created").userId("guest").appId("compat").build();
        for (byte[] body : List.of(new byte[] {0, 1, 2, 'b'}, new byte[0])) {
            publish(ch, "", q, body, sent);
            GetResponse r = ch.basicGet(q, true);
            assertArrayEquals(body, r.getBody());
            AMQP.BasicProperties got = r.getProps();
            assertEquals(sent.getContentType(), got.getContentType());
            assertEquals(sent.getContentEncoding(), got.getContentEncoding());
            assertEquals(sent.getDeliveryMode(), got.getDeliveryMode());
            assertEquals(sent.getPriority(), got.getPriority());
            assertEquals(sent.getCorrelationId(), got.getCorrelationId());
            assertEquals(sent.getReplyTo(), got.getReplyTo());
            assertEquals(sent.getExpiration(), got.getExpiration());
            assertEquals(sent.getMessageId(), got.getMessageId());
            assertEquals(sent.getTimestamp(), got.getTimestamp());
            assertEquals(sent.getType(), got.getType());
            assertEquals(sent.getUserId(), got.getUserId());
            assertEquals(sent.getAppId(), got.getAppId());
            Map<String, Object> h = got.getHeaders();
            assertEquals("hello", h.get("text").toString());
            assertEquals(42, ((Number) h.get("int")).intValue());
            assertEquals(-7, ((Number) h.get("negative")).intValue());
            assertEquals(1L << 40, ((Number) h.get("big")).longValue());
            assertEquals(Boolean.TRUE, h.get("flag"));
            Map<String, Object> n = (Map<String, Object>) h.get("nested");
            assertEquals(1, ((Number) n.get("a")).intValue());
            assertEquals("x", ((List<?>) n.get("b")).get(0).toString());
            List<?> list = (List<?>) h.get("list");
            assertEquals(3, list.size());
            assertEquals(1, ((Number) list.get(0)).intValue());
            assertEquals("two", list.get(1).toString());
            assertEquals(Boolean.FALSE, list.get(2));
            assertArrayEquals(new byte[] {0, (byte) 0xff}, (byte[]) h.get("bytes"));
            assertEquals(new Date(1700000000000L), h.get("when"));
            assertEquals(new java.math.BigDecimal("12.345"), h.get("price"));
            Map<String, Object> inner = (Map<String, Object>) ((Map<String, Object>) h.get("deep")).get("inner");
            List<?> deepList = (List<?>) inner.get("list");
            assertEquals(7, ((Number) ((List<?>) deepList.get(0)).get(0)).intValue());
            assertEquals("x", ((List<?>) deepList.get(0)).get(1).toString());
            assertEquals("v", ((Map<String, Object>) deepList.get(1)).get("k").toString());
        }
    }

    /** A mandatory unroutable publish comes back as basic.return 312 NO_ROUTE with its body */
    @Test
    void mandatory_unroutable_returned() throws Exception {
        confirmed(ch);
        String x = name("x");
        ch.exchangeDeclare(x, "direct");
        CompletableFuture<Return> returned = new CompletableFuture<>();
        ch.addReturnListener(returned::complete);
        ch.basicPublish(x, "nobody", true, null, b("lost?"));
        ch.waitForConfirmsOrDie(10_000);
        Return r = returned.get(5, TimeUnit.SECONDS);
        assertEquals(312, r.getReplyCode());
        assertEquals("lost?", s(r.getBody()));
        ch.exchangeDelete(x);
    }

    /** A mandatory routable publish is delivered and not returned */
    @Test
    void mandatory_routable_not_returned() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        List<Return> returned = new CopyOnWriteArrayList<>();
        ch.addReturnListener(returned::add);
        ch.basicPublish("", q, true, null, b("fine"));
        ch.waitForConfirmsOrDie(10_000);
        assertEquals(List.of("fine"), getAll(ch, q));
        assertEquals(List.of(), returned);
    }

    /** A message with expiration 100 ms is not delivered after it expires; one with 60 s is */
    @Test
    void per_message_ttl() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        publish(ch, "", q, b("brief"), new AMQP.BasicProperties.Builder().expiration("100").build());
        publish(ch, "", q, b("lasting"), new AMQP.BasicProperties.Builder().expiration("60000").build());
        Thread.sleep(600);
        assertEquals(List.of("lasting"), getAll(ch, q));
    }

    /** With confirms on, one publish is acked and is in the queue */
    @Test
    void publisher_confirms_single() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        publish(ch, "", q, b("one"));
        assertEquals(1, ch.queueDeclarePassive(q).getMessageCount());
    }

    /**
     * 500 asynchronous publishes: every sequence number 1..500 is acked exactly once, and the
     * confirms come in order (each one's tag above the last; multiple=true covers the gap).
     */
    @Test
    void publisher_confirms_multiple() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        int n = 500;
        // Recorded as they arrive and checked here: an assertion in the listener's thread would
        // not fail the test.
        List<long[]> confirms = new CopyOnWriteArrayList<>();   // {tag, multiple ? 1 : 0, ack ? 1 : 0}
        CompletableFuture<Void> last = new CompletableFuture<>();
        ch.addConfirmListener(new ConfirmListener() {
            void record(long tag, boolean multiple, boolean ack) {
                confirms.add(new long[] {tag, multiple ? 1 : 0, ack ? 1 : 0});
                if (tag >= n) last.complete(null);
            }
            public void handleAck(long tag, boolean multiple) { record(tag, multiple, true); }
            public void handleNack(long tag, boolean multiple) { record(tag, multiple, false); }
        });
        for (int i = 0; i < n; i++) ch.basicPublish("", q, null, b("m" + i));
        last.get(20, TimeUnit.SECONDS);
        Thread.sleep(200);   // a duplicate confirm would arrive by now
        long previous = 0;
        List<Long> covered = new ArrayList<>();
        for (long[] c : confirms) {
            assertEquals(1, c[2], "confirm " + c[0] + " is a nack");
            assertTrue(c[0] > previous, "confirm " + c[0] + " after " + previous + ": out of order or twice");
            for (long t = c[1] == 1 ? previous + 1 : c[0]; t <= c[0]; t++) covered.add(t);
            previous = c[0];
        }
        List<Long> expected = new ArrayList<>();
        for (long t = 1; t <= n; t++) expected.add(t);
        assertEquals(expected, covered, "every sequence number confirmed once, no gaps");
        assertEquals(n, ch.queueDeclarePassive(q).getMessageCount());
    }

    /** An unroutable publish is still acked (not nacked) */
    @Test
    void publisher_confirms_unroutable() throws Exception {
        confirmed(ch);
        String x = name("x");
        ch.exchangeDeclare(x, "direct");
        publish(ch, x, "nobody", b("dropped but confirmed"));
        ch.exchangeDelete(x);
    }

    /** Publishes in a transaction are invisible to another connection until commit, visible after */
    @Test
    void tx_commit_publishes() throws Exception {
        String q = ch.queueDeclare(name("tx"), false, false, false, null).getQueue();
        ch.txSelect();
        ch.basicPublish("", q, null, b("a"));
        ch.basicPublish("", q, null, b("b"));
        Channel observer = connect().createChannel();
        assertEquals(0, observer.queueDeclarePassive(q).getMessageCount());
        ch.txCommit();
        assertEquals(List.of("a", "b"), sorted(getAll(observer, q)));
        observer.queueDelete(q);
    }

    /** Rolled-back publishes are discarded; later committed ones are kept */
    @Test
    void tx_rollback_publishes() throws Exception {
        String q = tempQueue(ch);
        ch.txSelect();
        ch.basicPublish("", q, null, b("discarded"));
        ch.txRollback();
        ch.basicPublish("", q, null, b("kept"));
        ch.txCommit();
        assertEquals(List.of("kept"), getAll(ch, q));
    }

    /**
     * An ack inside a transaction takes effect on commit; a rolled-back ack leaves the message
     * unacked, redelivered after the channel closes
     */
    @Test
    void tx_acks() throws Exception {
        Channel setup = confirmed(conn.createChannel());
        String q = setup.queueDeclare(name("txack"), false, false, false, null).getQueue();
        publish(setup, "", q, b("first"));
        publish(setup, "", q, b("second"));
        Channel t = conn.createChannel();
        t.txSelect();
        GetResponse m1 = t.basicGet(q, false), m2 = t.basicGet(q, false);
        t.basicAck(m1.getEnvelope().getDeliveryTag(), false);
        t.txCommit();
        t.basicAck(m2.getEnvelope().getDeliveryTag(), false);
        t.txRollback();
        t.close();
        List<GetResponse> again = waitFor(conn.createChannel(), q, 1, 5000);
        assertEquals(1, again.size());
        assertEquals(s(m2.getBody()), s(again.get(0).getBody()));
        assertTrue(again.get(0).getEnvelope().isRedeliver());
        conn.createChannel().queueDelete(q);
    }

    /** tx.commit without tx.select: 406 PRECONDITION_FAILED */
    @Test
    void tx_commit_without_select() throws Exception {
        closedWith(406, () -> ch.txCommit());
    }

    // ---- consuming --------------------------------------------------------------------------

    /** An auto-ack consumer gets every message in order and the queue is left empty */
    @Test
    void consume_auto_ack() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        for (int i = 0; i < 3; i++) publish(ch, "", q, b("" + i));
        BlockingQueue<String> got = new LinkedBlockingQueue<>();
        String tag = ch.basicConsume(q, true, (t, d) -> got.add(s(d.getBody())), t -> {});
        List<String> bodies = new ArrayList<>();
        for (int i = 0; i < 3; i++) bodies.add(got.poll(10, TimeUnit.SECONDS));
        assertEquals(List.of("0", "1", "2"), bodies);
        ch.basicCancel(tag);
        assertEquals(0, ch.queueDeclarePassive(q).getMessageCount());
    }

    /** Unacked deliveries return (redelivered) when the channel closes; acked ones do not */
    @Test
    void consume_manual_ack() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        for (int i = 0; i < 3; i++) publish(ch, "", q, b("" + i));
        BlockingQueue<Delivery> got = new LinkedBlockingQueue<>();
        String tag = ch.basicConsume(q, false, (t, d) -> got.add(d), t -> {});
        Delivery first = got.poll(10, TimeUnit.SECONDS);
        for (int i = 0; i < 2; i++) assertNotNull(got.poll(10, TimeUnit.SECONDS));
        ch.basicAck(first.getEnvelope().getDeliveryTag(), false);
        ch.basicCancel(tag);
        ch.close();
        Channel c2 = conn.createChannel();
        List<GetResponse> again = waitFor(c2, q, 2, 5000);
        assertEquals(List.of("1", "2"), sorted(again.stream().map(r -> s(r.getBody())).toList()));
        assertTrue(again.stream().allMatch(r -> r.getEnvelope().isRedeliver()));
        c2.queueDelete(q);
    }

    /** A second consumer on a queue with an exclusive consumer: 403 ACCESS_REFUSED */
    @Test
    void consume_exclusive() throws Exception {
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        ch.basicConsume(q, true, "", false, true, null, (t, d) -> {}, t -> {});
        Channel other = conn.createChannel();
        closedWith(403, () -> other.basicConsume(q, true, (t, d) -> {}, t -> {}));
        ch.queueDelete(q);
    }

    /** Nothing is delivered after cancel-ok; the message stays in the queue */
    @Test
    void consume_cancel() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        List<String> got = new CopyOnWriteArrayList<>();
        String tag = ch.basicConsume(q, true, (t, d) -> got.add(s(d.getBody())), t -> {});
        ch.basicCancel(tag);
        publish(ch, "", q, b("after cancel"));
        Thread.sleep(500);
        assertEquals(List.of(), got);
        assertEquals(List.of("after cancel"), getAll(ch, q));
    }

    /** Deleting a queue from another channel sends the consumer basic.cancel */
    @Test
    void server_cancel_on_queue_delete() throws Exception {
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        CompletableFuture<String> cancelled = new CompletableFuture<>();
        String tag = ch.basicConsume(q, true, (t, d) -> {}, cancelled::complete);
        conn.createChannel().queueDelete(q);
        assertEquals(tag, cancelled.get(5, TimeUnit.SECONDS));
    }

    /** basic.get: get-empty on an empty queue; get-ok with the remaining message_count */
    @Test
    void basic_get() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        assertNull(ch.basicGet(q, false));
        publish(ch, "", q, b("a"));
        publish(ch, "", q, b("b"));
        GetResponse r = ch.basicGet(q, false);
        assertEquals("a", s(r.getBody()));
        assertEquals(1, r.getMessageCount());
        assertFalse(r.getEnvelope().isRedeliver());
        ch.basicAck(r.getEnvelope().getDeliveryTag(), false);
    }

    /** basic.get with no-ack removes the message at once */
    @Test
    void basic_get_no_ack() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        publish(ch, "", q, b("a"));
        assertEquals("a", s(ch.basicGet(q, true).getBody()));
        assertEquals(0, ch.queueDeclarePassive(q).getMessageCount());
    }

    /** ack(multiple) of the 4th delivery acks the first four; only the 5th comes back */
    @Test
    void ack_multiple() throws Exception {
        confirmed(ch);
        String q = ch.queueDeclare(name("q"), false, false, false, null).getQueue();
        for (int i = 0; i < 5; i++) publish(ch, "", q, b("" + i));
        BlockingQueue<Delivery> got = new LinkedBlockingQueue<>();
        String tag = ch.basicConsume(q, false, (t, d) -> got.add(d), t -> {});
        List<Delivery> ds = new ArrayList<>();
        for (int i = 0; i < 5; i++) ds.add(got.poll(10, TimeUnit.SECONDS));
        ch.basicAck(ds.get(3).getEnvelope().getDeliveryTag(), true);
        ch.basicCancel(tag);
        ch.close();
        Channel c = conn.createChannel();
        List<GetResponse> again = waitFor(c, q, 1, 5000);
        assertEquals(List.of("4"), again.stream().map(r -> s(r.getBody())).toList());
        c.queueDelete(q);
    }

    /** nack(multiple, requeue) requeues every outstanding delivery, redelivered */
    @Test
    void nack_multiple_requeue() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        for (int i = 0; i < 3; i++) publish(ch, "", q, b("" + i));
        BlockingQueue<Delivery> got = new LinkedBlockingQueue<>();
        String tag = ch.basicConsume(q, false, (t, d) -> got.add(d), t -> {});
        Delivery last = null;
        for (int i = 0; i < 3; i++) last = got.poll(10, TimeUnit.SECONDS);
        ch.basicCancel(tag);
        ch.basicNack(last.getEnvelope().getDeliveryTag(), true, true);
        List<GetResponse> again = waitFor(ch, q, 3, 5000);
        assertEquals(List.of("0", "1", "2"), sorted(again.stream().map(r -> s(r.getBody())).toList()));
        assertTrue(again.stream().allMatch(r -> r.getEnvelope().isRedeliver()));
    }

    /** reject(requeue): the second delivery has redelivered=true */
    @Test
    void reject_requeue_redelivered() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        publish(ch, "", q, b("again"));
        GetResponse r = ch.basicGet(q, false);
        assertFalse(r.getEnvelope().isRedeliver());
        ch.basicReject(r.getEnvelope().getDeliveryTag(), true);
        List<GetResponse> again = waitFor(ch, q, 1, 5000);
        assertEquals("again", s(again.get(0).getBody()));
        assertTrue(again.get(0).getEnvelope().isRedeliver());
    }

    /** nack(requeue=false) without a dead-letter exchange drops the message */
    @Test
    void nack_no_requeue_dropped() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        publish(ch, "", q, b("gone"));
        ch.basicNack(ch.basicGet(q, false).getEnvelope().getDeliveryTag(), false, false);
        Thread.sleep(300);
        assertEquals(List.of(), getAll(ch, q));
    }

    /** reject(requeue=false) with a dead-letter exchange dead-letters it (x-death reason rejected) */
    @Test
    void reject_no_requeue_dead_lettered() throws Exception {
        confirmed(ch);
        String[] s = deadLetterSetup(Map.of());
        publish(ch, "", s[0], b("to-dlx"));
        ch.basicReject(ch.basicGet(s[0], false).getEnvelope().getDeliveryTag(), false);
        List<GetResponse> dead = waitFor(ch, s[1], 1, 5000);
        assertEquals("to-dlx", s(dead.get(0).getBody()));
        Map<String, Object> death = (Map<String, Object>) ((List<?>) dead.get(0).getProps().getHeaders().get("x-death")).get(0);
        assertEquals("rejected", death.get("reason").toString());
        assertEquals(List.of(), getAll(ch, s[0]));
        ch.exchangeDelete(s[2]);
    }

    /** Acking an unknown delivery tag closes the channel with 406 PRECONDITION_FAILED */
    @Test
    void unknown_delivery_tag_ack() throws Exception {
        ch.basicAck(12345, false);
        closedWith(406, () -> ch.exchangeDeclarePassive("amq.direct"));
    }

    /** basic.recover(requeue) redelivers unacked messages with redelivered=true */
    @Test
    void basic_recover_requeue() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        publish(ch, "", q, b("r"));
        ch.basicGet(q, false);
        ch.basicRecover(true);
        List<GetResponse> again = waitFor(ch, q, 1, 5000);
        assertEquals("r", s(again.get(0).getBody()));
        assertTrue(again.get(0).getEnvelope().isRedeliver());
    }

    /** Prefetch 2: a consumer holds at most 2 unacked; acking 2 lets 2 more through */
    @Test
    void qos_prefetch_per_consumer() throws Exception {
        confirmed(ch);
        String q = tempQueue(ch);
        for (int i = 0; i < 10; i++) publish(ch, "", q, b("" + i));
        ch.basicQos(2);
        BlockingQueue<Delivery> got = new LinkedBlockingQueue<>();
        ch.basicConsume(q, false, (t, d) -> got.add(d), t -> {});
        Thread.sleep(1500);
        assertEquals(2, got.size(), "no acks, so no more than the prefetch");
        List<Delivery> first = new ArrayList<>();
        got.drainTo(first);
        ch.basicAck(first.get(1).getEnvelope().getDeliveryTag(), true);
        Thread.sleep(1500);
        assertEquals(2, got.size(), "two acked, two more");
    }

    /** basic.qos(3, global=true): 3 unacked shared by all consumers of the channel */
    @Test
    void qos_prefetch_global() throws Exception {
        confirmed(ch);
        String q1 = tempQueue(ch), q2 = tempQueue(ch);
        for (int i = 0; i < 5; i++) {
            publish(ch, "", q1, b("a" + i));
            publish(ch, "", q2, b("b" + i));
        }
        ch.basicQos(3, true);
        List<String> got = new CopyOnWriteArrayList<>();
        ch.basicConsume(q1, false, (t, d) -> got.add(s(d.getBody())), t -> {});
        ch.basicConsume(q2, false, (t, d) -> got.add(s(d.getBody())), t -> {});
        Thread.sleep(1500);
        assertEquals(3, got.size());
    }

    // ---- errors -----------------------------------------------------------------------------

    /** Publishing to a missing exchange closes the channel with 404 NOT_FOUND */
    @Test
    void publish_to_missing_exchange() throws Exception {
        confirmed(ch);
        closedWith(404, () -> publish(ch, name("nowhere"), "k", b("x")));
    }

    /** Consuming from a missing queue: 404 NOT_FOUND */
    @Test
    void consume_missing_queue() throws Exception {
        closedWith(404, () -> ch.basicConsume(name("nope"), true, (t, d) -> {}, t -> {}));
    }

    /** Binding a missing queue: 404 NOT_FOUND */
    @Test
    void bind_missing_queue() throws Exception {
        closedWith(404, () -> ch.queueBind(name("nope"), "amq.direct", "k"));
    }
}

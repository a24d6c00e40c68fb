package compat;

import static org.junit.jupiter.api.Assertions.*;

import jakarta.jms.*;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.util.*;
import jakarta.jms.Queue;
import java.util.concurrent.*;
import org.apache.qpid.jms.JmsConnectionFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * JMS (Jakarta Messaging 3.1) scenarios with the Qpid JMS client over AMQP 1.0: what a JMS
 * application expects of its broker. One test per scenario id; each uses its own queue, topic,
 * subscription and client id names and its own connections. They pass against ActiveMQ Artemis
 * (which proves the expectations) and are then run against the gateway.
 */
@Timeout(60)
class ScenariosTest {
    static final String URL = System.getProperty("jms.url");
    static final String USER = System.getProperty("jms.user");
    static final String PASSWORD = System.getProperty("jms.password");
    /** How long a message that should arrive may take; a wait for one that should not is QUIET. */
    static final long WAIT = 10_000;
    static final long QUIET = 1_500;

    final List<Connection> opened = new ArrayList<>();
    final List<JMSContext> contexts = new ArrayList<>();

    static ConnectionFactory factory(String user, String password) {
        return new JmsConnectionFactory(user, password, URL);
    }

    /** A started connection (no client id). */
    Connection connect() throws JMSException {
        return connect(null);
    }

    /** A started connection with `clientId` (null for none). */
    Connection connect(String clientId) throws JMSException {
        Connection c = factory(USER, PASSWORD).createConnection();
        opened.add(c);
        if (clientId != null) c.setClientID(clientId);
        c.start();
        return c;
    }

    Session session(Connection c) throws JMSException {
        return c.createSession(false, Session.AUTO_ACKNOWLEDGE);
    }

    @AfterEach
    void close() {
        for (JMSContext c : contexts) {
            try {
                c.close();
            } catch (Exception ignored) {
            }
        }
        for (Connection c : opened) {
            try {
                c.close();
            } catch (Exception ignored) {
            }
        }
    }

    static String name(String prefix) {
        return "jms-" + prefix + "-" + UUID.randomUUID().toString().substring(0, 10);
    }

    static Message receive(MessageConsumer c) throws JMSException {
        Message m = c.receive(WAIT);
        assertNotNull(m, "no message within " + WAIT + " ms");
        return m;
    }

    static String receiveText(MessageConsumer c) throws JMSException {
        Message m = receive(c);
        assertInstanceOf(TextMessage.class, m);
        return ((TextMessage) m).getText();
    }

    static void assertNothing(MessageConsumer c) throws JMSException {
        Message m = c.receive(QUIET);
        assertNull(m, () -> "expected no message, got " + m);
    }

    /** Receives until nothing arrives for QUIET ms; returns the texts in arrival order. */
    static List<String> drain(MessageConsumer c) throws JMSException {
        List<String> got = new ArrayList<>();
        for (Message m; (m = c.receive(QUIET)) != null; ) got.add(((TextMessage) m).getText());
        return got;
    }

    static void sendTexts(Session s, Destination d, String... texts) throws JMSException {
        MessageProducer p = s.createProducer(d);
        for (String t : texts) p.send(s.createTextMessage(t));
        p.close();
    }

    static List<String> texts(String prefix, int n) {
        List<String> l = new ArrayList<>();
        for (int i = 0; i < n; i++) l.add(prefix + i);
        return l;
    }

    static byte[] pattern(int size) {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) b[i] = (byte) (i * 31 + (i >> 8));
        return b;
    }

    static List<String> sorted(Collection<String> c) {
        List<String> l = new ArrayList<>(c);
        Collections.sort(l);
        return l;
    }

    /** A queue holding one message per entry of `messages`, each with an int property `n` (its
     * index) and the given properties and headers (JMSType, JMSCorrelationID, JMSPriority). */
    Queue filled(Session s, List<Map<String, Object>> messages) throws Exception {
        Queue q = s.createQueue(name("sel"));
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < messages.size(); i++) {
            Message m = s.createMessage();
            m.setIntProperty("n", i);
            int priority = Message.DEFAULT_PRIORITY;
            for (Map.Entry<String, Object> e : messages.get(i).entrySet()) {
                switch (e.getKey()) {
                    case "JMSType" -> m.setJMSType((String) e.getValue());
                    case "JMSCorrelationID" -> m.setJMSCorrelationID((String) e.getValue());
                    case "JMSPriority" -> priority = (Integer) e.getValue();
                    default -> m.setObjectProperty(e.getKey(), e.getValue());
                }
            }
            p.send(m, DeliveryMode.PERSISTENT, priority, 0);
        }
        return q;
    }

    /** Asserts that `selector` selects the messages numbered `expected` (sorted) from a queue
     * filled with `messages`: a consumer with the selector receives until it has as many (up to
     * 10 s each), then must get nothing more for 0.5 s. (A QueueBrowser on one queue served
     * every selector of a scenario before, but ActiveMQ Artemis 2.40.0 through Qpid JMS 2.10.0
     * now and then never ends a browser's enumeration when it has a selector: in CI on
     * 2026-12-06 and 2026-12-07, and here in one of two full runs. Nor does an empty
     * receiveNoWait prove that nothing is left: Artemis answered a pull with a selector so once
     * here while selected messages were left. Browsing keeps its own scenarios, queue_browser
     * and queue_browser_selector.) */
    void assertSelected(List<Integer> expected, List<Map<String, Object>> messages, String selector)
            throws Exception {
        Session s = session(connect());
        MessageConsumer consumer = s.createConsumer(filled(s, messages), selector);
        List<Integer> got = new ArrayList<>();
        while (got.size() < expected.size()) {
            Message m = consumer.receive(10_000);
            if (m == null) break;
            got.add(m.getIntProperty("n"));
        }
        Message extra = consumer.receive(500);
        if (extra != null) got.add(extra.getIntProperty("n"));
        consumer.close();
        Collections.sort(got);
        assertEquals(expected, got, selector);
    }

    static Map<String, Object> props(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return m;
    }

    // ---- connection -------------------------------------------------------------------------

    /** SASL PLAIN with good credentials: the connection starts; the metadata names JMS 3.1. */
    @Test
    void connect_good_credentials() throws Exception {
        Connection c = connect();
        ConnectionMetaData md = c.getMetaData();
        assertEquals(3, md.getJMSMajorVersion());
        assertEquals(1, md.getJMSMinorVersion());
        Session s = session(c);
        assertNotNull(s.createQueue(name("hello")));
    }

    /** A wrong password is refused with JMSSecurityException. */
    @Test
    void connect_bad_password() {
        assertThrows(JMSSecurityException.class, () -> {
            Connection c = factory(USER, PASSWORD + "-wrong").createConnection();
            opened.add(c);
            c.start();
        });
    }

    /** An unknown user is refused with JMSSecurityException. */
    @Test
    void connect_unknown_user() {
        assertThrows(JMSSecurityException.class, () -> {
            Connection c = factory("nobody-" + UUID.randomUUID(), "x").createConnection();
            opened.add(c);
            c.start();
        });
    }

    /** A connection without credentials (SASL ANONYMOUS) is refused when logins are required. */
    @Test
    void connect_anonymous_refused() {
        assertThrows(JMSSecurityException.class, () -> {
            Connection c = new JmsConnectionFactory(URL).createConnection();
            opened.add(c);
            c.start();
        });
    }

    /** Two connections cannot hold the same client id at once: InvalidClientIDException. */
    @Test
    void client_id_unique() throws Exception {
        String id = name("cid");
        connect(id);
        Connection second = factory(USER, PASSWORD).createConnection();
        opened.add(second);
        assertThrows(InvalidClientIDException.class, () -> second.setClientID(id));
    }

    // ---- bodies -----------------------------------------------------------------------------

    /** TextMessage: ASCII, non-ASCII and empty text arrive unchanged, in order. */
    @Test
    void text_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("text"));
        sendTexts(s, q, "hello", "grüße, 日本, \uD83D\uDE00", "");
        MessageConsumer c = s.createConsumer(q);
        assertEquals("hello", receiveText(c));
        assertEquals("grüße, 日本, \uD83D\uDE00", receiveText(c));
        assertEquals("", receiveText(c));
    }

    /** A TextMessage whose text is null arrives with null text. */
    @Test
    void text_message_null() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("textnull"));
        s.createProducer(q).send(s.createTextMessage(null));
        assertNull(receiveText(s.createConsumer(q)));
    }

    /** BytesMessage: all 256 byte values and the typed writes read back in order. */
    @Test
    void bytes_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("bytes"));
        BytesMessage m = s.createBytesMessage();
        byte[] all = new byte[256];
        for (int i = 0; i < 256; i++) all[i] = (byte) i;
        m.writeBytes(all);
        m.writeInt(-42);
        m.writeLong(Long.MIN_VALUE);
        m.writeUTF("ütf");
        m.writeDouble(Math.PI);
        s.createProducer(q).send(m);
        BytesMessage r = assertInstanceOf(BytesMessage.class, receive(s.createConsumer(q)));
        assertEquals(256 + 4 + 8 + 2 + 4 + 8, r.getBodyLength());
        byte[] back = new byte[256];
        assertEquals(256, r.readBytes(back));
        assertArrayEquals(all, back);
        assertEquals(-42, r.readInt());
        assertEquals(Long.MIN_VALUE, r.readLong());
        assertEquals("ütf", r.readUTF());
        assertEquals(Math.PI, r.readDouble());
        assertEquals(-1, r.readBytes(new byte[1]));
    }

    /** MapMessage: an entry of every type keeps its type and value. */
    @Test
    void map_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("map"));
        MapMessage m = s.createMapMessage();
        m.setBoolean("bool", true);
        m.setByte("byte", (byte) -7);
        m.setShort("short", (short) 30000);
        m.setChar("char", 'é');
        m.setInt("int", Integer.MIN_VALUE);
        m.setLong("long", Long.MAX_VALUE);
        m.setFloat("float", 1.5f);
        m.setDouble("double", -2.25e300);
        m.setString("string", "välue");
        m.setBytes("bytes", new byte[] {0, 1, (byte) 0xff});
        m.setObject("null", null);
        s.createProducer(q).send(m);
        MapMessage r = assertInstanceOf(MapMessage.class, receive(s.createConsumer(q)));
        assertEquals(Boolean.TRUE, r.getObject("bool"));
        assertEquals(Byte.valueOf((byte) -7), r.getObject("byte"));
        assertEquals(Short.valueOf((short) 30000), r.getObject("short"));
        assertEquals(Character.valueOf('é'), r.getObject("char"));
        assertEquals(Integer.valueOf(Integer.MIN_VALUE), r.getObject("int"));
        assertEquals(Long.valueOf(Long.MAX_VALUE), r.getObject("long"));
        assertEquals(Float.valueOf(1.5f), r.getObject("float"));
        assertEquals(Double.valueOf(-2.25e300), r.getObject("double"));
        assertEquals("välue", r.getObject("string"));
        assertArrayEquals(new byte[] {0, 1, (byte) 0xff}, r.getBytes("bytes"));
        assertTrue(r.itemExists("null"));
        assertNull(r.getObject("null"));
        assertFalse(r.itemExists("absent"));
        Set<String> names = new HashSet<>(Collections.list((Enumeration<String>) r.getMapNames()));
        assertEquals(Set.of("bool", "byte", "short", "char", "int", "long", "float", "double",
                "string", "bytes", "null"), names);
    }

    /** StreamMessage: values of every type read back in order with their types. */
    @Test
    void stream_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("stream"));
        StreamMessage m = s.createStreamMessage();
        m.writeBoolean(false);
        m.writeByte((byte) 1);
        m.writeShort((short) -2);
        m.writeChar('x');
        m.writeInt(3);
        m.writeLong(4L);
        m.writeFloat(5.5f);
        m.writeDouble(6.25);
        m.writeString("seven");
        m.writeBytes(new byte[] {8, 9});
        m.writeObject(null);
        s.createProducer(q).send(m);
        StreamMessage r = assertInstanceOf(StreamMessage.class, receive(s.createConsumer(q)));
        assertEquals(Boolean.FALSE, r.readObject());
        assertEquals(Byte.valueOf((byte) 1), r.readObject());
        assertEquals(Short.valueOf((short) -2), r.readObject());
        assertEquals(Character.valueOf('x'), r.readObject());
        assertEquals(Integer.valueOf(3), r.readObject());
        assertEquals(Long.valueOf(4L), r.readObject());
        assertEquals(Float.valueOf(5.5f), r.readObject());
        assertEquals(Double.valueOf(6.25), r.readObject());
        assertEquals("seven", r.readObject());
        assertArrayEquals(new byte[] {8, 9}, (byte[]) r.readObject());
        assertNull(r.readObject());
        assertThrows(MessageEOFException.class, r::readObject);
    }

    record Point(int x, String label, List<Double> weights) implements Serializable {}

    /** ObjectMessage: a serializable object (a record with a list) arrives equal. */
    @Test
    void object_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("object"));
        Point p = new Point(7, "seven", List.of(0.5, 2.0));
        s.createProducer(q).send(s.createObjectMessage(p));
        ObjectMessage r = assertInstanceOf(ObjectMessage.class, receive(s.createConsumer(q)));
        assertEquals(p, r.getObject());
    }

    /** A plain Message (no body) arrives as a plain Message with its properties. */
    @Test
    void plain_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("plain"));
        Message m = s.createMessage();
        m.setStringProperty("k", "v");
        s.createProducer(q).send(m);
        Message r = receive(s.createConsumer(q));
        assertFalse(r instanceof TextMessage || r instanceof BytesMessage || r instanceof MapMessage
                || r instanceof StreamMessage || r instanceof ObjectMessage, r.getClass().getName());
        assertEquals("v", r.getStringProperty("k"));
        assertTrue(r.isBodyAssignableTo(Object.class));
    }

    /** getBody/isBodyAssignableTo on received Text and Bytes messages (JMS 2.0 API). */
    @Test
    void message_get_body() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("body"));
        MessageProducer p = s.createProducer(q);
        p.send(s.createTextMessage("as-string"));
        BytesMessage b = s.createBytesMessage();
        b.writeBytes(new byte[] {1, 2, 3});
        p.send(b);
        MessageConsumer c = s.createConsumer(q);
        Message t = receive(c);
        assertEquals("as-string", t.getBody(String.class));
        assertFalse(t.isBodyAssignableTo(byte[].class));
        Message r = receive(c);
        assertArrayEquals(new byte[] {1, 2, 3}, r.getBody(byte[].class));
    }

    /** Empty Bytes, Map and Stream messages keep their message type. */
    @Test
    void empty_bodies() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("empty"));
        MessageProducer p = s.createProducer(q);
        p.send(s.createBytesMessage());
        p.send(s.createMapMessage());
        p.send(s.createStreamMessage());
        MessageConsumer c = s.createConsumer(q);
        assertEquals(0, assertInstanceOf(BytesMessage.class, receive(c)).getBodyLength());
        assertFalse(assertInstanceOf(MapMessage.class, receive(c)).getMapNames().hasMoreElements());
        StreamMessage st = assertInstanceOf(StreamMessage.class, receive(c));
        assertThrows(MessageEOFException.class, st::readObject);
    }

    /** A message object of another provider (here a bare TextMessage proxy) can be sent: its text,
     * properties, correlation id and type arrive, and the send sets its JMSMessageID. */
    @Test
    void foreign_message() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("foreign"));
        Map<String, Object> props = new LinkedHashMap<>(Map.of("origin", "elsewhere", "n", 7));
        Map<String, Object> headers = new HashMap<>(Map.of("JMSCorrelationID", "f-1", "JMSType", "foreign-type",
                "JMSDeliveryMode", DeliveryMode.PERSISTENT, "JMSPriority", 4));
        TextMessage foreign = (TextMessage) java.lang.reflect.Proxy.newProxyInstance(
                getClass().getClassLoader(), new Class<?>[] {TextMessage.class}, (proxy, method, args) -> {
                    String m = method.getName();
                    if (m.equals("getText")) return "from another provider";
                    if (m.equals("getPropertyNames")) return Collections.enumeration(props.keySet());
                    if (m.equals("getObjectProperty")) return props.get((String) args[0]);
                    if (m.equals("propertyExists")) return props.containsKey((String) args[0]);
                    if (m.startsWith("setJMS")) { headers.put(m.substring(3), args[0]); return null; }
                    if (m.startsWith("getJMS")) {
                        Object v = headers.get(m.substring(3));
                        if (v != null || !method.getReturnType().isPrimitive()) return v;
                    }
                    if (m.equals("hashCode")) return System.identityHashCode(proxy);
                    if (m.equals("equals")) return proxy == args[0];
                    if (m.equals("toString")) return "foreign TextMessage";
                    Class<?> r = method.getReturnType();
                    if (r == boolean.class) return false;
                    if (r == int.class) return 0;
                    if (r == long.class) return 0L;
                    return null;
                });
        s.createProducer(q).send(foreign);
        assertTrue(String.valueOf(headers.get("JMSMessageID")).startsWith("ID:"), "JMSMessageID " + headers.get("JMSMessageID"));
        Message r = receive(s.createConsumer(q));
        assertEquals("from another provider", ((TextMessage) r).getText());
        assertEquals("elsewhere", r.getStringProperty("origin"));
        assertEquals(7, r.getIntProperty("n"));
        assertEquals("f-1", r.getJMSCorrelationID());
        assertEquals("foreign-type", r.getJMSType());
    }

    // ---- properties and headers -------------------------------------------------------------

    /** A property of every JMS type keeps its type and value; names are listed. */
    @Test
    void property_types() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("props"));
        Message m = s.createTextMessage("p");
        m.setBooleanProperty("pBool", true);
        m.setByteProperty("pByte", Byte.MIN_VALUE);
        m.setShortProperty("pShort", Short.MAX_VALUE);
        m.setIntProperty("pInt", -123456);
        m.setLongProperty("pLong", 1L << 60);
        m.setFloatProperty("pFloat", 0.1f);
        m.setDoubleProperty("pDouble", Double.MAX_VALUE);
        m.setStringProperty("pString", "ß = \"quoted\"");
        m.setStringProperty("pEmpty", "");
        m.setObjectProperty("pObject", 99L);
        s.createProducer(q).send(m);
        Message r = receive(s.createConsumer(q));
        assertEquals(Boolean.TRUE, r.getObjectProperty("pBool"));
        assertEquals(Byte.valueOf(Byte.MIN_VALUE), r.getObjectProperty("pByte"));
        assertEquals(Short.valueOf(Short.MAX_VALUE), r.getObjectProperty("pShort"));
        assertEquals(Integer.valueOf(-123456), r.getObjectProperty("pInt"));
        assertEquals(Long.valueOf(1L << 60), r.getObjectProperty("pLong"));
        assertEquals(Float.valueOf(0.1f), r.getObjectProperty("pFloat"));
        assertEquals(Double.valueOf(Double.MAX_VALUE), r.getObjectProperty("pDouble"));
        assertEquals("ß = \"quoted\"", r.getObjectProperty("pString"));
        assertEquals("", r.getObjectProperty("pEmpty"));
        assertEquals(Long.valueOf(99L), r.getObjectProperty("pObject"));
        Set<String> names = new HashSet<>();
        for (Enumeration<?> e = r.getPropertyNames(); e.hasMoreElements(); ) {
            String n = (String) e.nextElement();
            if (!n.startsWith("JMSX")) names.add(n);
        }
        assertEquals(Set.of("pBool", "pByte", "pShort", "pInt", "pLong", "pFloat", "pDouble", "pString",
                "pEmpty", "pObject"), names);
    }

    /** Received properties convert as the JMS table says (int as long and string; not string as
     * int when it is not a number) and are read-only until clearProperties. */
    @Test
    void property_conversions() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("conv"));
        Message m = s.createMessage();
        m.setIntProperty("i", 42);
        m.setStringProperty("s", "17");
        m.setStringProperty("word", "seventeen");
        s.createProducer(q).send(m);
        Message r = receive(s.createConsumer(q));
        assertEquals(42L, r.getLongProperty("i"));
        assertEquals("42", r.getStringProperty("i"));
        assertEquals(17, r.getIntProperty("s"));
        assertThrows(NumberFormatException.class, () -> r.getIntProperty("word"));
        assertThrows(MessageFormatException.class, () -> r.getBooleanProperty("i"));
        assertThrows(MessageNotWriteableException.class, () -> r.setIntProperty("x", 1));
        assertFalse(r.propertyExists("absent"));
        assertNull(r.getStringProperty("absent"));
    }

    /** JMSCorrelationID (string and bytes) and JMSType arrive as sent. */
    @Test
    void header_correlation_and_type() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("corr"));
        MessageProducer p = s.createProducer(q);
        Message m = s.createTextMessage("a");
        m.setJMSCorrelationID("order-17");
        m.setJMSType("com.example.Order");
        p.send(m);
        Message mb = s.createTextMessage("b");
        mb.setJMSCorrelationIDAsBytes(new byte[] {1, 2, 3, (byte) 0xfe});
        p.send(mb);
        MessageConsumer c = s.createConsumer(q);
        Message r = receive(c);
        assertEquals("order-17", r.getJMSCorrelationID());
        assertEquals("com.example.Order", r.getJMSType());
        Message rb = receive(c);
        assertArrayEquals(new byte[] {1, 2, 3, (byte) 0xfe}, rb.getJMSCorrelationIDAsBytes());
    }

    /** JMSReplyTo naming a queue arrives as that Queue, one naming a topic as that Topic. */
    @Test
    void header_reply_to() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("replyto"));
        Queue replyQ = s.createQueue(name("replyq"));
        Topic replyT = s.createTopic(name("replyt"));
        MessageProducer p = s.createProducer(q);
        Message a = s.createTextMessage("to-queue");
        a.setJMSReplyTo(replyQ);
        p.send(a);
        Message b = s.createTextMessage("to-topic");
        b.setJMSReplyTo(replyT);
        p.send(b);
        MessageConsumer c = s.createConsumer(q);
        Destination ra = receive(c).getJMSReplyTo();
        assertEquals(replyQ.getQueueName(), assertInstanceOf(Queue.class, ra).getQueueName());
        Destination rb = receive(c).getJMSReplyTo();
        assertEquals(replyT.getTopicName(), assertInstanceOf(Topic.class, rb).getTopicName());
    }

    /** JMSDestination of a received message is the queue (or topic) it was sent to. */
    @Test
    void header_destination() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("dest"));
        Topic t = s.createTopic(name("destt"));
        MessageConsumer ct = s.createConsumer(t);
        sendTexts(s, q, "q");
        sendTexts(s, t, "t");
        Destination dq = receive(s.createConsumer(q)).getJMSDestination();
        assertEquals(q.getQueueName(), assertInstanceOf(Queue.class, dq).getQueueName());
        Destination dt = receive(ct).getJMSDestination();
        assertEquals(t.getTopicName(), assertInstanceOf(Topic.class, dt).getTopicName());
    }

    /** JMSPriority: each priority 0..9 arrives as sent. */
    @Test
    void header_priority() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("prio"));
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i <= 9; i++) {
            Message m = s.createTextMessage("p" + i);
            m.setIntProperty("sent", i);
            p.send(m, DeliveryMode.PERSISTENT, i, 0);
        }
        MessageConsumer c = s.createConsumer(q);
        Set<Integer> seen = new HashSet<>();
        for (int i = 0; i <= 9; i++) {
            Message r = receive(c);
            assertEquals(r.getIntProperty("sent"), r.getJMSPriority());
            seen.add(r.getJMSPriority());
        }
        assertEquals(10, seen.size());
    }

    /** JMSDeliveryMode: PERSISTENT and NON_PERSISTENT arrive as sent (the default is persistent). */
    @Test
    void header_delivery_mode() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("mode"));
        MessageProducer p = s.createProducer(q);
        assertEquals(DeliveryMode.PERSISTENT, p.getDeliveryMode());
        p.send(s.createTextMessage("persistent"));
        p.setDeliveryMode(DeliveryMode.NON_PERSISTENT);
        p.send(s.createTextMessage("non-persistent"));
        MessageConsumer c = s.createConsumer(q);
        assertEquals(DeliveryMode.PERSISTENT, receive(c).getJMSDeliveryMode());
        assertEquals(DeliveryMode.NON_PERSISTENT, receive(c).getJMSDeliveryMode());
    }

    /** JMSMessageID is "ID:..." and the same on the sent and received message; JMSTimestamp is the
     * send time; first delivery: JMSRedelivered false, JMSXDeliveryCount 1, no expiration. */
    @Test
    void header_message_id_timestamp() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("msgid"));
        Message m = s.createTextMessage("x");
        long before = System.currentTimeMillis();
        s.createProducer(q).send(m);
        long after = System.currentTimeMillis();
        assertTrue(m.getJMSMessageID().startsWith("ID:"), m.getJMSMessageID());
        Message r = receive(s.createConsumer(q));
        assertEquals(m.getJMSMessageID(), r.getJMSMessageID());
        assertTrue(r.getJMSTimestamp() >= before && r.getJMSTimestamp() <= after, "timestamp " + r.getJMSTimestamp());
        assertFalse(r.getJMSRedelivered());
        assertEquals(1, r.getIntProperty("JMSXDeliveryCount"));
        assertEquals(0, r.getJMSExpiration());
    }

    /** Many messages with distinct ids: none lost, none duplicated, in the order sent. */
    @Test
    void queue_order_and_count() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("order"));
        List<String> sent = texts("m", 500);
        sendTexts(s, q, sent.toArray(new String[0]));
        MessageConsumer c = s.createConsumer(q);
        List<String> got = new ArrayList<>();
        for (int i = 0; i < sent.size(); i++) got.add(receiveText(c));
        assertEquals(sent, got);
        assertNothing(c);
    }

    // ---- receiving --------------------------------------------------------------------------

    /** receive(timeout) on an empty queue returns null after about the timeout; receiveNoWait null. */
    @Test
    void receive_timeout() throws Exception {
        Session s = session(connect());
        MessageConsumer c = s.createConsumer(s.createQueue(name("empty")));
        long t0 = System.nanoTime();
        assertNull(c.receive(1000));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 900 && ms < 8000, "receive(1000) took " + ms + " ms");
        assertNull(c.receiveNoWait());
    }

    /** A blocked receive() is woken by a message sent later from another connection. */
    @Test
    void receive_wakes_on_send() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("wake"));
        MessageConsumer c = s.createConsumer(q);
        Session other = session(connect());
        ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor();
        try {
            ex.schedule(() -> { sendTexts(other, q, "late"); return null; }, 700, TimeUnit.MILLISECONDS);
            assertEquals("late", receiveText(c));
        } finally {
            ex.shutdownNow();
        }
    }

    /** A MessageListener gets every message asynchronously, in order. */
    @Test
    void message_listener() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("listener"));
        List<String> got = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch done = new CountDownLatch(20);
        s.createConsumer(q).setMessageListener(m -> {
            try {
                got.add(((TextMessage) m).getText());
            } catch (JMSException e) {
                got.add("error " + e);
            }
            done.countDown();
        });
        Session ps = session(connect());
        sendTexts(ps, q, texts("l", 20).toArray(new String[0]));
        assertTrue(done.await(WAIT, TimeUnit.MILLISECONDS), "got only " + got);
        assertEquals(texts("l", 20), got);
    }

    /** Two consumers on one queue share its messages: each message reaches exactly one of them,
     * and both get some. */
    @Test
    void queue_two_consumers_share() throws Exception {
        // a prefetch of 1 each, so that neither consumer can take the whole backlog at once
        Connection c1 = factoryWith("jms.prefetchPolicy.all=1").createConnection(USER, PASSWORD);
        Connection c2 = factoryWith("jms.prefetchPolicy.all=1").createConnection(USER, PASSWORD);
        opened.add(c1);
        opened.add(c2);
        c1.start();
        c2.start();
        Session s1 = session(c1);
        Queue q = s1.createQueue(name("share"));
        Session s2 = session(c2);
        MessageConsumer a = s1.createConsumer(q);
        MessageConsumer b = s2.createConsumer(q);
        List<String> sent = texts("s", 40);
        sendTexts(session(connect()), q, sent.toArray(new String[0]));
        List<String> gotA = new ArrayList<>(), gotB = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 2 * WAIT;
        while (gotA.size() + gotB.size() < sent.size() && System.currentTimeMillis() < deadline) {
            Message m = a.receive(100);
            if (m != null) gotA.add(((TextMessage) m).getText());
            m = b.receive(100);
            if (m != null) gotB.add(((TextMessage) m).getText());
        }
        List<String> all = new ArrayList<>(gotA);
        all.addAll(gotB);
        assertEquals(sorted(sent), sorted(all), "each message exactly once");
        assertFalse(gotA.isEmpty(), "first consumer got none");
        assertFalse(gotB.isEmpty(), "second consumer got none");
    }

    ConnectionFactory factoryWith(String options) {
        return new JmsConnectionFactory(URL + (URL.contains("?") ? "&" : "?") + options);
    }

    /** Closing a consumer returns what it had prefetched but not delivered: another consumer gets
     * all the rest. */
    @Test
    void consumer_close_returns_prefetched() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("prefetch"));
        sendTexts(s, q, texts("p", 10).toArray(new String[0]));
        MessageConsumer first = s.createConsumer(q);
        assertEquals("p0", receiveText(first));
        first.close();
        MessageConsumer second = s.createConsumer(q);
        assertEquals(texts("p", 10).subList(1, 10), drain(second));
    }

    /** With a prefetch of 0 the client pulls one message per receive (credit 1, then drain):
     * receive, receive(timeout) and receiveNoWait each get the next message, and an empty queue
     * answers null. */
    @Test
    void receive_prefetch_zero() throws Exception {
        Connection c = factoryWith("jms.prefetchPolicy.all=0").createConnection(USER, PASSWORD);
        opened.add(c);
        c.start();
        Session s = session(c);
        Queue q = s.createQueue(name("pull"));
        sendTexts(s, q, "p0", "p1", "p2");
        MessageConsumer cons = s.createConsumer(q);
        assertEquals("p0", ((TextMessage) cons.receive()).getText());
        assertEquals("p1", receiveText(cons));
        Message third = cons.receiveNoWait();
        assertNotNull(third, "receiveNoWait with a message queued");
        assertEquals("p2", ((TextMessage) third).getText());
        assertNull(cons.receiveNoWait());
        assertNull(cons.receive(500));
        // nothing was held back by the pulling consumer: another one sees an empty queue
        assertNothing(session(connect()).createConsumer(q));
    }

    /** A QueueBrowser sees the queued messages in order without consuming them; a consumer then
     * gets all of them. */
    @Test
    void queue_browser() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("browse"));
        sendTexts(s, q, "b0", "b1", "b2");
        QueueBrowser br = s.createBrowser(q);
        List<String> seen = new ArrayList<>();
        for (Enumeration<?> e = br.getEnumeration(); e.hasMoreElements(); )
            seen.add(((TextMessage) e.nextElement()).getText());
        br.close();
        assertEquals(List.of("b0", "b1", "b2"), seen);
        assertEquals(List.of("b0", "b1", "b2"), drain(s.createConsumer(q)));
    }

    /** A QueueBrowser with a selector shows only the matching messages. */
    @Test
    void queue_browser_selector() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("browsesel"));
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 6; i++) {
            Message m = s.createTextMessage("m" + i);
            m.setBooleanProperty("even", i % 2 == 0);
            p.send(m);
        }
        QueueBrowser br = s.createBrowser(q, "even = TRUE");
        List<String> seen = new ArrayList<>();
        for (Enumeration<?> e = br.getEnumeration(); e.hasMoreElements(); )
            seen.add(((TextMessage) e.nextElement()).getText());
        assertEquals(List.of("m0", "m2", "m4"), seen);
    }

    /** An empty queue browses as an empty enumeration. */
    @Test
    void queue_browser_empty() throws Exception {
        Session s = session(connect());
        QueueBrowser br = s.createBrowser(s.createQueue(name("browseempty")));
        assertFalse(br.getEnumeration().hasMoreElements());
    }

    // ---- topics -----------------------------------------------------------------------------

    /** Two non-durable subscribers on a topic each get every message, in order. */
    @Test
    void topic_two_subscribers() throws Exception {
        Session s = session(connect());
        Topic t = s.createTopic(name("topic"));
        MessageConsumer a = s.createConsumer(t);
        MessageConsumer b = session(connect()).createConsumer(t);
        List<String> sent = texts("t", 10);
        sendTexts(session(connect()), t, sent.toArray(new String[0]));
        assertEquals(sent, drain(a));
        assertEquals(sent, drain(b));
    }

    /** A non-durable subscriber does not get what was published before it subscribed, nor while it
     * was closed. */
    @Test
    void topic_nondurable_misses_earlier() throws Exception {
        Session s = session(connect());
        Topic t = s.createTopic(name("topicearly"));
        sendTexts(s, t, "before");
        MessageConsumer c = s.createConsumer(t);
        sendTexts(s, t, "during");
        assertEquals("during", receiveText(c));
        c.close();
        sendTexts(s, t, "while-closed");
        MessageConsumer again = s.createConsumer(t);
        sendTexts(s, t, "after");
        assertEquals(List.of("after"), drain(again));
    }

    /** A durable subscription keeps what is published while its subscriber is closed, and the
     * messages reach a subscriber that reconnects with the same client id and name. */
    @Test
    void durable_subscription_survives_reconnect() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Connection c1 = connect(clientId);
        Session s1 = session(c1);
        Topic t = s1.createTopic(name("durable"));
        MessageConsumer d = s1.createDurableConsumer(t, sub);
        sendTexts(session(connect()), t, "d0");
        assertEquals("d0", receiveText(d));
        c1.close();
        sendTexts(session(connect()), t, "d1", "d2");
        Connection c2 = connect(clientId);
        Session s2 = session(c2);
        MessageConsumer again = s2.createDurableConsumer(t, sub);
        assertEquals(List.of("d1", "d2"), drain(again));
        again.close();
        s2.unsubscribe(sub);
    }

    /** Unsubscribe deletes a durable subscription: published messages are no longer kept for it,
     * and a new subscription of the same name starts empty. */
    @Test
    void durable_unsubscribe() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Connection c = connect(clientId);
        Session s = session(c);
        Topic t = s.createTopic(name("unsub"));
        s.createDurableConsumer(t, sub).close();
        sendTexts(session(connect()), t, "kept");
        s.unsubscribe(sub);
        sendTexts(session(connect()), t, "dropped");
        MessageConsumer d = s.createDurableConsumer(t, sub);
        sendTexts(session(connect()), t, "new");
        assertEquals(List.of("new"), drain(d));
        d.close();
        s.unsubscribe(sub);
    }

    /** Unsubscribing while a subscriber is open fails (JMSException, from the client); a name that
     * does not exist fails with InvalidDestinationException (the broker answers amqp:not-found). */
    @Test
    void durable_unsubscribe_errors() throws Exception {
        String sub = name("sub");
        Session s = session(connect(name("cid")));
        Topic t = s.createTopic(name("unsuberr"));
        MessageConsumer d = s.createDurableConsumer(t, sub);
        assertThrows(JMSException.class, () -> s.unsubscribe(sub));
        d.close();
        s.unsubscribe(sub);
        assertThrows(InvalidDestinationException.class, () -> s.unsubscribe(name("never")));
    }

    /** A durable subscription with a selector keeps only the matching messages. */
    @Test
    void durable_subscription_selector() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Connection c = connect(clientId);
        Session s = session(c);
        Topic t = s.createTopic(name("durablesel"));
        s.createDurableConsumer(t, sub, "color = 'red'", false).close();
        MessageProducer p = session(connect()).createProducer(t);
        for (String color : List.of("red", "blue", "red", "green")) {
            Message m = s.createTextMessage(color);
            m.setStringProperty("color", color);
            p.send(m);
        }
        MessageConsumer d = s.createDurableConsumer(t, sub, "color = 'red'", false);
        assertEquals(List.of("red", "red"), drain(d));
        d.close();
        s.unsubscribe(sub);
    }

    /** Two durable subscriptions of the same client id on one topic each get every message. */
    @Test
    void durable_two_subscriptions() throws Exception {
        Session s = session(connect(name("cid")));
        Topic t = s.createTopic(name("durable2"));
        MessageConsumer a = s.createDurableConsumer(t, "a");
        MessageConsumer b = s.createDurableConsumer(t, "b");
        sendTexts(session(connect()), t, "x", "y");
        assertEquals(List.of("x", "y"), drain(a));
        assertEquals(List.of("x", "y"), drain(b));
        a.close();
        b.close();
        s.unsubscribe("a");
        s.unsubscribe("b");
    }

    /** A shared durable subscription: two consumers (on different connections, no client id)
     * split the messages, each exactly once; what is published while both are closed is kept. */
    @Test
    void shared_durable_subscription() throws Exception {
        String sub = name("shared");
        Session s1 = session(connect());
        Session s2 = session(connect());
        Topic t = s1.createTopic(name("shtopic"));
        MessageConsumer a = s1.createSharedDurableConsumer(t, sub);
        MessageConsumer b = s2.createSharedDurableConsumer(t, sub);
        List<String> sent = texts("sh", 20);
        sendTexts(session(connect()), t, sent.toArray(new String[0]));
        List<String> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 2 * WAIT;
        int fromA = 0, fromB = 0;
        while (got.size() < sent.size() && System.currentTimeMillis() < deadline) {
            Message m = a.receive(100);
            if (m != null) { got.add(((TextMessage) m).getText()); fromA++; }
            m = b.receive(100);
            if (m != null) { got.add(((TextMessage) m).getText()); fromB++; }
        }
        assertEquals(sorted(sent), sorted(got));
        assertTrue(fromA > 0 && fromB > 0, "split " + fromA + "/" + fromB);
        a.close();
        b.close();
        sendTexts(session(connect()), t, "offline");
        MessageConsumer c = session(connect()).createSharedDurableConsumer(t, sub);
        assertEquals("offline", receiveText(c));
        c.close();
        s1.unsubscribe(sub);
    }

    /** A shared non-durable subscription: two consumers split the messages; a plain subscriber on
     * the same topic still gets every message. */
    @Test
    void shared_nondurable_subscription() throws Exception {
        String sub = name("sharednd");
        Session s1 = session(connect());
        Session s2 = session(connect());
        Topic t = s1.createTopic(name("shndtopic"));
        MessageConsumer a = s1.createSharedConsumer(t, sub);
        MessageConsumer b = s2.createSharedConsumer(t, sub);
        MessageConsumer all = session(connect()).createConsumer(t);
        List<String> sent = texts("n", 20);
        sendTexts(session(connect()), t, sent.toArray(new String[0]));
        List<String> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 2 * WAIT;
        while (got.size() < sent.size() && System.currentTimeMillis() < deadline) {
            Message m = a.receive(100);
            if (m != null) got.add(((TextMessage) m).getText());
            m = b.receive(100);
            if (m != null) got.add(((TextMessage) m).getText());
        }
        assertEquals(sorted(sent), sorted(got));
        assertEquals(sent, drain(all));
    }

    /** Shared subscription names are scoped by client id: two connections with different client
     * ids sharing "the same" durable subscription name have two subscriptions, each of which gets
     * every message. */
    @Test
    void shared_durable_scoped_by_client_id() throws Exception {
        String sub = name("shared");
        Session s1 = session(connect(name("cid")));
        Session s2 = session(connect(name("cid")));
        Topic t = s1.createTopic(name("shscope"));
        MessageConsumer a = s1.createSharedDurableConsumer(t, sub);
        MessageConsumer b = s2.createSharedDurableConsumer(t, sub);
        sendTexts(session(connect()), t, "x", "y");
        assertEquals(List.of("x", "y"), drain(a));
        assertEquals(List.of("x", "y"), drain(b));
        a.close();
        b.close();
        s1.unsubscribe(sub);
        s2.unsubscribe(sub);
    }

    /** Subscribing again to a durable subscription with another selector replaces it (as an
     * unsubscribe and a new subscription would): what the old one kept is gone. */
    @Test
    void durable_subscription_selector_change() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Session s = session(connect(clientId));
        Topic t = s.createTopic(name("selchange"));
        s.createDurableConsumer(t, sub, "v = 1", false).close();
        MessageProducer p = session(connect()).createProducer(t);
        Message one = s.createTextMessage("one");
        one.setIntProperty("v", 1);
        p.send(one);
        MessageConsumer d = s.createDurableConsumer(t, sub, "v = 2", false);
        assertNothing(d);
        Message two = s.createTextMessage("two");
        two.setIntProperty("v", 2);
        p.send(two);
        p.send(one);
        assertEquals(List.of("two"), drain(d));
        d.close();
        s.unsubscribe(sub);
    }

    /** A durable subscription delivers a backlog of 300 messages in publication order. */
    @Test
    void durable_subscription_order() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Session s = session(connect(clientId));
        Topic t = s.createTopic(name("durorder"));
        s.createDurableConsumer(t, sub).close();
        List<String> sent = texts("o", 300);
        sendTexts(session(connect()), t, sent.toArray(new String[0]));
        MessageConsumer d = s.createDurableConsumer(t, sub);
        List<String> got = new ArrayList<>();
        for (int i = 0; i < sent.size(); i++) got.add(receiveText(d));
        assertEquals(sent, got);
        d.close();
        s.unsubscribe(sub);
    }

    /** noLocal: a subscriber does not get messages its own connection published, but does get
     * those of another connection. */
    @Test
    void topic_no_local() throws Exception {
        Connection mine = connect();
        Session s = session(mine);
        Topic t = s.createTopic(name("nolocal"));
        MessageConsumer c = s.createConsumer(t, null, true);
        sendTexts(s, t, "own");
        sendTexts(session(connect()), t, "other");
        assertEquals(List.of("other"), drain(c));
    }

    /** A topic subscriber with a selector only gets the matching messages. */
    @Test
    void topic_selector() throws Exception {
        Session s = session(connect());
        Topic t = s.createTopic(name("topicsel"));
        MessageConsumer hi = s.createConsumer(t, "level > 5");
        MessageConsumer everything = s.createConsumer(t);
        MessageProducer p = s.createProducer(t);
        for (int i = 0; i < 10; i++) {
            Message m = s.createTextMessage("l" + i);
            m.setIntProperty("level", i);
            p.send(m);
        }
        assertEquals(List.of("l6", "l7", "l8", "l9"), drain(hi));
        assertEquals(texts("l", 10), drain(everything));
    }

    // ---- acknowledgement --------------------------------------------------------------------

    /** CLIENT_ACKNOWLEDGE: recover() redelivers the unacknowledged messages in order, with
     * JMSRedelivered true and JMSXDeliveryCount 2; after acknowledge nothing comes back. */
    @Test
    void client_ack_recover() throws Exception {
        Connection c = connect();
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        Queue q = s.createQueue(name("recover"));
        sendTexts(s, q, "r0", "r1");
        MessageConsumer cons = s.createConsumer(q);
        Message m0 = receive(cons);
        assertFalse(m0.getJMSRedelivered());
        assertEquals(1, m0.getIntProperty("JMSXDeliveryCount"));
        receive(cons);
        s.recover();
        Message again = receive(cons);
        assertEquals("r0", ((TextMessage) again).getText());
        assertTrue(again.getJMSRedelivered());
        assertEquals(2, again.getIntProperty("JMSXDeliveryCount"));
        assertEquals("r1", receiveText(cons));
        again.acknowledge();
        cons.close();
        s.close();
        assertNothing(session(connect()).createConsumer(q));
    }

    /** CLIENT_ACKNOWLEDGE: acknowledging one message acknowledges every message the session
     * consumed before it; unacknowledged ones come back (redelivered) when the session closes. */
    @Test
    void client_ack_session_scope() throws Exception {
        Connection c = connect();
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        Queue q = s.createQueue(name("cack"));
        sendTexts(s, q, "a0", "a1", "a2", "a3");
        MessageConsumer cons = s.createConsumer(q);
        receive(cons);
        Message second = receive(cons);
        second.acknowledge();   // acknowledges a0 and a1
        receive(cons);          // a2, not acknowledged
        s.close();
        MessageConsumer other = session(connect()).createConsumer(q);
        Message r = receive(other);
        assertEquals("a2", ((TextMessage) r).getText());
        assertTrue(r.getJMSRedelivered());
        assertEquals(List.of("a3"), drain(other));
    }

    /** Qpid JMS's INDIVIDUAL_ACKNOWLEDGE mode (101): acknowledging one message settles only that
     * one; the others come back after the session closes. (The client leaves them unsettled
     * when it closes, with no modified disposition, so Artemis does not count that delivery and
     * they are not marked redelivered: nothing is asserted about that.) */
    @Test
    void individual_ack() throws Exception {
        Connection c = connect();
        Session s = c.createSession(false, 101);
        Queue q = s.createQueue(name("indiv"));
        sendTexts(s, q, "i0", "i1", "i2", "i3");
        MessageConsumer cons = s.createConsumer(q);
        List<Message> got = new ArrayList<>();
        for (int i = 0; i < 4; i++) got.add(receive(cons));
        got.get(1).acknowledge();
        got.get(3).acknowledge();
        s.close();
        MessageConsumer other = session(connect()).createConsumer(q);
        assertEquals(List.of("i0", "i2"), drain(other));
    }

    /** CLIENT_ACKNOWLEDGE on a durable subscription: what was acknowledged before the subscriber
     * closed stays consumed; the rest comes back when it returns. */
    @Test
    void durable_subscription_client_ack() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Connection c = connect(clientId);
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        Topic t = s.createTopic(name("durack"));
        MessageConsumer d = s.createDurableConsumer(t, sub);
        sendTexts(session(connect()), t, "k0", "k1", "k2", "k3");
        receive(d);
        receive(d).acknowledge();   // k0 and k1
        receive(d);                 // k2, not acknowledged
        c.close();
        Session s2 = session(connect(clientId));
        MessageConsumer again = s2.createDurableConsumer(t, sub);
        Message first = receive(again);
        assertEquals("k2", ((TextMessage) first).getText());
        assertTrue(first.getJMSRedelivered());
        assertEquals(List.of("k3"), drain(again));
        again.close();
        s2.unsubscribe(sub);
    }

    /** AUTO_ACKNOWLEDGE: a received message is gone; closing and reopening gets nothing again. */
    @Test
    void auto_ack_consumes() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("auto"));
        sendTexts(s, q, "once");
        MessageConsumer c = s.createConsumer(q);
        assertEquals("once", receiveText(c));
        c.close();
        assertNothing(session(connect()).createConsumer(q));
    }

    /** DUPS_OK_ACKNOWLEDGE: every message arrives; after the session closes they are consumed. */
    @Test
    void dups_ok_ack() throws Exception {
        Connection c = connect();
        Session s = c.createSession(false, Session.DUPS_OK_ACKNOWLEDGE);
        Queue q = s.createQueue(name("dups"));
        sendTexts(s, q, texts("d", 5).toArray(new String[0]));
        MessageConsumer cons = s.createConsumer(q);
        assertEquals(texts("d", 5), drain(cons));
        s.close();
        assertNothing(session(connect()).createConsumer(q));
    }

    /** A CLIENT_ACKNOWLEDGE consumer that never acknowledges: after its connection closes, the
     * message is redelivered to the next consumer with JMSRedelivered. */
    @Test
    void unacked_redelivered_after_close() throws Exception {
        Connection c = connect();
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        Queue q = s.createQueue(name("unacked"));
        sendTexts(s, q, "u");
        assertEquals("u", receiveText(s.createConsumer(q)));
        c.close();
        Message r = receive(session(connect()).createConsumer(q));
        assertEquals("u", ((TextMessage) r).getText());
        assertTrue(r.getJMSRedelivered());
        assertTrue(r.getIntProperty("JMSXDeliveryCount") >= 2);
    }

    // ---- transactions -----------------------------------------------------------------------

    /** Transacted send: the messages are invisible to other consumers until commit. */
    @Test
    void tx_send_commit() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txsend"));
        MessageProducer p = tx.createProducer(q);
        p.send(tx.createTextMessage("t0"));
        p.send(tx.createTextMessage("t1"));
        MessageConsumer c = session(connect()).createConsumer(q);
        assertNothing(c);
        tx.commit();
        assertEquals("t0", receiveText(c));
        assertEquals("t1", receiveText(c));
    }

    /** Transacted send then rollback: the messages are never delivered; a later commit delivers
     * only what was sent after the rollback. */
    @Test
    void tx_send_rollback() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txrb"));
        MessageProducer p = tx.createProducer(q);
        p.send(tx.createTextMessage("discarded"));
        tx.rollback();
        p.send(tx.createTextMessage("kept"));
        tx.commit();
        assertEquals(List.of("kept"), drain(session(connect()).createConsumer(q)));
    }

    /** Transacted receive then rollback: the message is redelivered (JMSRedelivered, delivery count
     * 2); after commit it is consumed. */
    @Test
    void tx_receive_rollback_redelivers() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txrecv"));
        sendTexts(session(connect()), q, "x");
        MessageConsumer c = tx.createConsumer(q);
        Message first = receive(c);
        assertFalse(first.getJMSRedelivered());
        tx.rollback();
        Message again = receive(c);
        assertEquals("x", ((TextMessage) again).getText());
        assertTrue(again.getJMSRedelivered());
        assertEquals(2, again.getIntProperty("JMSXDeliveryCount"));
        tx.commit();
        c.close();
        assertNothing(session(connect()).createConsumer(q));
    }

    /** Each rollback is one more delivery attempt: JMSXDeliveryCount 1, 2, 3 over two rollbacks,
     * JMSRedelivered from the second on. */
    @Test
    void tx_rollback_delivery_count() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txcount"));
        sendTexts(session(connect()), q, "z");
        MessageConsumer c = tx.createConsumer(q);
        for (int attempt = 1; attempt <= 3; attempt++) {
            Message m = receive(c);
            assertEquals(attempt, m.getIntProperty("JMSXDeliveryCount"));
            assertEquals(attempt > 1, m.getJMSRedelivered());
            if (attempt < 3) tx.rollback();
        }
        tx.commit();
    }

    /** A 2 MiB message sent in a transaction is delivered whole after commit, and a 2 MiB message
     * received in a rolled-back transaction is redelivered whole. */
    @Test
    void tx_large_message() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txlarge"));
        byte[] body = pattern(2 * 1024 * 1024);
        BytesMessage m = tx.createBytesMessage();
        m.writeBytes(body);
        tx.createProducer(q).send(m);
        MessageConsumer c = tx.createConsumer(q);
        assertNull(c.receive(QUIET), "visible before commit");
        tx.commit();
        for (int attempt = 1; attempt <= 2; attempt++) {
            BytesMessage r = assertInstanceOf(BytesMessage.class, receive(c));
            byte[] back = new byte[(int) r.getBodyLength()];
            r.readBytes(back);
            assertArrayEquals(body, back);
            if (attempt == 1) tx.rollback();
        }
        tx.commit();
    }

    /** JMSContext in SESSION_TRANSACTED mode: sends become visible on commit only. */
    @Test
    void jms_context_transacted() throws Exception {
        JMSContext ctx = factory(USER, PASSWORD).createContext(JMSContext.SESSION_TRANSACTED);
        contexts.add(ctx);
        Queue q = ctx.createQueue(name("ctxtx"));
        ctx.createProducer().send(q, "in-tx");
        MessageConsumer other = session(connect()).createConsumer(q);
        assertNothing(other);
        ctx.commit();
        assertEquals("in-tx", receiveText(other));
    }

    /** A transacted durable subscriber: a rolled-back receive is redelivered on the subscription,
     * a committed one is gone after the subscriber reconnects. */
    @Test
    void tx_durable_subscriber() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Connection c = connect(clientId);
        Session tx = c.createSession(true, Session.SESSION_TRANSACTED);
        Topic t = tx.createTopic(name("txdur"));
        MessageConsumer d = tx.createDurableConsumer(t, sub);
        sendTexts(session(connect()), t, "e0", "e1");
        assertEquals("e0", receiveText(d));
        tx.rollback();
        Message again = receive(d);
        assertEquals("e0", ((TextMessage) again).getText());
        assertTrue(again.getJMSRedelivered());
        tx.commit();
        c.close();
        Session s2 = session(connect(clientId));
        MessageConsumer back = s2.createDurableConsumer(t, sub);
        assertEquals(List.of("e1"), drain(back));
        back.close();
        s2.unsubscribe(sub);
    }

    /** Closing a transacted session without commit rolls back its receives: another consumer gets
     * the message again. */
    @Test
    void tx_close_rolls_back() throws Exception {
        Connection conn = connect();
        Session tx = conn.createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txclose"));
        sendTexts(session(connect()), q, "y");
        assertEquals("y", receiveText(tx.createConsumer(q)));
        tx.close();
        Message r = receive(session(connect()).createConsumer(q));
        assertEquals("y", ((TextMessage) r).getText());
        assertTrue(r.getJMSRedelivered());
    }

    /** Consume from one queue and send to another in one transaction: rollback undoes both,
     * commit does both. */
    @Test
    void tx_consume_and_produce() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue in = tx.createQueue(name("txin")), out = tx.createQueue(name("txout"));
        sendTexts(session(connect()), in, "job");
        MessageConsumer c = tx.createConsumer(in);
        MessageProducer p = tx.createProducer(out);
        p.send(tx.createTextMessage("result-" + receiveText(c)));
        tx.rollback();
        MessageConsumer outC = session(connect()).createConsumer(out);
        assertNothing(outC);
        p.send(tx.createTextMessage("result-" + receiveText(c)));
        tx.commit();
        assertEquals("result-job", receiveText(outC));
        c.close();
        assertNothing(session(connect()).createConsumer(in));
    }

    /** Several transactions in a row on one session each commit their own sends. */
    @Test
    void tx_many_commits() throws Exception {
        Session tx = connect().createSession(true, Session.SESSION_TRANSACTED);
        Queue q = tx.createQueue(name("txmany"));
        MessageProducer p = tx.createProducer(q);
        List<String> want = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            p.send(tx.createTextMessage("c" + i));
            want.add("c" + i);
            if (i % 3 == 2) {
                p.send(tx.createTextMessage("rolled-back" + i));
                tx.rollback();
            } else {
                tx.commit();
            }
        }
        want.removeIf(w -> Integer.parseInt(w.substring(1)) % 3 == 2);
        assertEquals(want, drain(session(connect()).createConsumer(q)));
    }

    // ---- timing -----------------------------------------------------------------------------

    /** Time to live: a message that expires before anyone consumes it is never delivered; one
     * with a long TTL is, with JMSExpiration = send time + TTL. */
    @Test
    void ttl_expired_not_delivered() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("ttl"));
        MessageProducer p = s.createProducer(q);
        p.send(s.createTextMessage("short"), DeliveryMode.PERSISTENT, 4, 300);
        Message longLived = s.createTextMessage("long");
        p.send(longLived, DeliveryMode.PERSISTENT, 4, 600_000);
        Thread.sleep(1200);
        Message r = receive(s.createConsumer(q));
        assertEquals("long", ((TextMessage) r).getText());
        assertEquals(r.getJMSTimestamp() + 600_000, r.getJMSExpiration());
        assertNothing(s.createConsumer(q));
    }

    /** A TTL set on the producer applies to what it sends; an expired message does not reach a
     * durable subscriber that reconnects later. */
    @Test
    void ttl_durable_subscriber() throws Exception {
        String clientId = name("cid"), sub = name("sub");
        Session s = session(connect(clientId));
        Topic t = s.createTopic(name("ttltopic"));
        s.createDurableConsumer(t, sub).close();
        MessageProducer p = session(connect()).createProducer(t);
        p.setTimeToLive(300);
        p.send(s.createTextMessage("expires"));
        p.setTimeToLive(0);
        Thread.sleep(1200);
        p.send(s.createTextMessage("stays"));
        MessageConsumer d = s.createDurableConsumer(t, sub);
        assertEquals(List.of("stays"), drain(d));
        d.close();
        s.unsubscribe(sub);
    }

    /** Delivery delay: a message sent with a 2 s delay is not delivered before about 2 s, then is,
     * after a message sent later without delay. */
    @Test
    void delivery_delay() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("delay"));
        MessageProducer p = s.createProducer(q);
        p.setDeliveryDelay(2000);
        Message delayed = s.createTextMessage("delayed");
        long sent = System.currentTimeMillis();
        p.send(delayed);
        assertTrue(delayed.getJMSDeliveryTime() >= sent + 2000, "JMSDeliveryTime " + delayed.getJMSDeliveryTime());
        p.setDeliveryDelay(0);
        p.send(s.createTextMessage("now"));
        MessageConsumer c = s.createConsumer(q);
        assertEquals("now", receiveText(c));
        assertEquals("delayed", receiveText(c));
        long waited = System.currentTimeMillis() - sent;
        assertTrue(waited >= 1900, "delivered after " + waited + " ms");
    }

    /** Delivery delay on a topic: a subscriber gets the delayed message only after the delay. */
    @Test
    void delivery_delay_topic() throws Exception {
        Session s = session(connect());
        Topic t = s.createTopic(name("delayt"));
        MessageConsumer c = s.createConsumer(t);
        MessageProducer p = s.createProducer(t);
        p.setDeliveryDelay(1500);
        long sent = System.currentTimeMillis();
        p.send(s.createTextMessage("later"));
        assertNull(c.receive(800), "delivered before the delay");
        assertEquals("later", receiveText(c));
        assertTrue(System.currentTimeMillis() - sent >= 1400);
    }

    // ---- selectors --------------------------------------------------------------------------

    /** A selective consumer on a queue takes only matching messages; the others remain for a
     * consumer without a selector, in order. */
    @Test
    void queue_selector_leaves_others() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("qsel"));
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 6; i++) {
            Message m = s.createTextMessage("m" + i);
            m.setStringProperty("kind", i % 3 == 0 ? "urgent" : "normal");
            p.send(m);
        }
        MessageConsumer urgent = s.createConsumer(q, "kind = 'urgent'");
        assertEquals(List.of("m0", "m3"), drain(urgent));
        urgent.close();
        assertEquals(List.of("m1", "m2", "m4", "m5"), drain(s.createConsumer(q)));
    }

    static List<Map<String, Object>> numbered(int n, java.util.function.IntFunction<Map<String, Object>> f) {
        List<Map<String, Object>> l = new ArrayList<>();
        for (int i = 0; i < n; i++) l.add(f.apply(i));
        return l;
    }

    // The selector_* scenarios below fill a queue for each selector and take what it selects
    // (see assertSelected()).

    /** Selector comparisons on numbers (int, long, double mixed), strings and booleans. */
    @Test
    void selector_comparisons() throws Exception {
        List<Map<String, Object>> msgs = numbered(6, i -> props("i", i, "l", (long) i * 10, "d", i / 2.0,
                "s", "v" + i, "b", i % 2 == 0));
        assertSelected(List.of(3, 4, 5), msgs, "i >= 3");
        assertSelected(List.of(0, 1, 2, 4, 5), msgs, "l <> 30");
        assertSelected(List.of(0, 1, 2), msgs, "d < 1.5");
        assertSelected(List.of(2), msgs, "s = 'v2'");
        assertSelected(List.of(1, 3, 5), msgs, "b = FALSE");
        assertSelected(List.of(4, 5), msgs, "i > 2.5 AND l >= 40");
    }

    /** Arithmetic in selectors: + - * / and unary minus, with precedence. */
    @Test
    void selector_arithmetic() throws Exception {
        List<Map<String, Object>> msgs = numbered(6, i -> props("a", i, "b", 2));
        assertSelected(List.of(4), msgs, "a * b + 1 = 9");
        assertSelected(List.of(0, 1, 2), msgs, "-a > -3");
        assertSelected(List.of(5), msgs, "a / b = 2.5");
        assertSelected(List.of(3), msgs, "(a - 1) * b = 4");
    }

    /** BETWEEN, NOT BETWEEN, IN and NOT IN. */
    @Test
    void selector_between_in() throws Exception {
        List<Map<String, Object>> msgs = numbered(6, i -> props("i", i, "c", List.of("red", "green", "blue").get(i % 3)));
        assertSelected(List.of(1, 2, 3), msgs, "i BETWEEN 1 AND 3");
        assertSelected(List.of(0, 4, 5), msgs, "i NOT BETWEEN 1 AND 3");
        assertSelected(List.of(0, 2, 3, 5), msgs, "c IN ('red', 'blue')");
        assertSelected(List.of(1, 4), msgs, "c NOT IN ('red', 'blue')");
    }

    /** LIKE with % and _, NOT LIKE, and ESCAPE for a literal %. */
    @Test
    void selector_like() throws Exception {
        List<String> names = List.of("order-1", "order-22", "orders", "100%", "100x", "Order-3");
        List<Map<String, Object>> msgs = numbered(names.size(), i -> props("name", names.get(i)));
        assertSelected(List.of(0, 1), msgs, "name LIKE 'order-%'");
        assertSelected(List.of(0), msgs, "name LIKE 'order-_'");
        assertSelected(List.of(2, 3, 4, 5), msgs, "name NOT LIKE 'order-%'");
        assertSelected(List.of(3), msgs, "name LIKE '100!%' ESCAPE '!'");
    }

    /** IS NULL / IS NOT NULL, and three-valued logic: a comparison with a missing property is
     * unknown, so neither it nor its NOT selects; OR with TRUE is TRUE, AND with FALSE is FALSE. */
    @Test
    void selector_null_three_valued() throws Exception {
        List<Map<String, Object>> msgs = List.of(props("x", 1), props("x", 5), props(), props("x", 5, "y", 1));
        assertSelected(List.of(2), msgs, "x IS NULL");
        assertSelected(List.of(0, 1, 3), msgs, "x IS NOT NULL");
        assertSelected(List.of(1, 3), msgs, "x > 2");
        assertSelected(List.of(0), msgs, "NOT (x > 2)");
        assertSelected(List.of(), msgs, "NOT (y = 1)");
        assertSelected(List.of(1, 2, 3), msgs, "x > 2 OR x IS NULL");
        assertSelected(List.of(3), msgs, "y = 1 AND x = 5");
        assertSelected(List.of(0, 1, 2), msgs, "NOT (y = 1)  OR y IS NULL");
    }

    /** Header fields in selectors: JMSType, JMSPriority, JMSCorrelationID, JMSDeliveryMode. */
    @Test
    void selector_headers() throws Exception {
        List<Map<String, Object>> msgs = List.of(
                props("JMSType", "car", "JMSPriority", 9),
                props("JMSType", "bike", "JMSPriority", 1),
                props("JMSCorrelationID", "c-1"),
                props("JMSType", "car", "JMSPriority", 2));
        assertSelected(List.of(0, 3), msgs, "JMSType = 'car'");
        assertSelected(List.of(0), msgs, "JMSPriority > 4");
        assertSelected(List.of(2), msgs, "JMSCorrelationID = 'c-1'");
        assertSelected(List.of(0, 1, 2, 3), msgs, "JMSDeliveryMode = 'PERSISTENT'");
    }

    /** An invalid selector is refused: the client's own check raises InvalidSelectorException;
     * with that check off (jms.validateSelector=false) the selector reaches the broker, which must
     * refuse the link (Artemis: detach with amqp:invalid-field, which the client raises as a plain
     * JMSException). The session stays usable. */
    @Test
    void selector_invalid() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("badsel"));
        assertThrows(InvalidSelectorException.class, () -> s.createConsumer(q, "a = = 1"));
        Connection unchecked = factoryWith("jms.validateSelector=false").createConnection(USER, PASSWORD);
        opened.add(unchecked);
        unchecked.start();
        Session us = session(unchecked);
        assertThrows(JMSException.class, () -> us.createConsumer(q, "a = = 1"));
        assertThrows(JMSException.class, () -> us.createConsumer(q, "color LIKE"));
        sendTexts(us, q, "fine");
        assertEquals("fine", receiveText(us.createConsumer(q)));
    }

    // ---- temporary destinations, request/reply, anonymous producers -------------------------

    /** Request/reply over a temporary queue: a server on another connection answers to JMSReplyTo
     * with the request's JMSCorrelationID. */
    @Test
    void temporary_queue_request_reply() throws Exception {
        Session client = session(connect());
        Session server = session(connect());
        Queue requests = client.createQueue(name("requests"));
        TemporaryQueue replies = client.createTemporaryQueue();
        MessageConsumer serverIn = server.createConsumer(requests);
        MessageProducer serverOut = server.createProducer(null);
        Message req = client.createTextMessage("ping");
        req.setJMSReplyTo(replies);
        req.setJMSCorrelationID("req-1");
        client.createProducer(requests).send(req);
        Message got = receive(serverIn);
        assertInstanceOf(TemporaryQueue.class, got.getJMSReplyTo());
        Message answer = server.createTextMessage("pong");
        answer.setJMSCorrelationID(got.getJMSCorrelationID());
        serverOut.send(got.getJMSReplyTo(), answer);
        Message reply = receive(client.createConsumer(replies));
        assertEquals("pong", ((TextMessage) reply).getText());
        assertEquals("req-1", reply.getJMSCorrelationID());
    }

    /** A temporary topic delivers to its subscribers; a temporary destination is usable only by
     * consumers of its own connection, and cannot be deleted while it has one (the client
     * enforces these two without asking the broker). */
    @Test
    void temporary_topic_and_delete() throws Exception {
        Connection owner = connect();
        Session s = session(owner);
        TemporaryTopic tt = s.createTemporaryTopic();
        MessageConsumer sub = s.createConsumer(tt);
        session(connect()).createProducer(tt).send(s.createTextMessage("tt"));
        assertEquals("tt", receiveText(sub));
        Session foreign = session(connect());
        assertThrows(JMSException.class, () -> foreign.createConsumer(tt));
        assertThrows(JMSException.class, tt::delete);
        sub.close();
        tt.delete();
    }

    /** An anonymous producer (no destination) sends each message to the destination given with it:
     * two queues and a topic. */
    @Test
    void anonymous_producer() throws Exception {
        Session s = session(connect());
        Queue a = s.createQueue(name("anona")), b = s.createQueue(name("anonb"));
        Topic t = s.createTopic(name("anont"));
        MessageConsumer ct = s.createConsumer(t);
        MessageProducer p = s.createProducer(null);
        p.send(a, s.createTextMessage("to-a"));
        p.send(b, s.createTextMessage("to-b"));
        p.send(t, s.createTextMessage("to-t"));
        assertEquals(List.of("to-a"), drain(s.createConsumer(a)));
        assertEquals(List.of("to-b"), drain(s.createConsumer(b)));
        assertEquals(List.of("to-t"), drain(ct));
    }

    // ---- sizes, frames, sessions and idle connections ---------------------------------------

    /** A 2 MiB BytesMessage and a 2 MiB TextMessage arrive byte for byte. */
    @Test
    void large_message_2mb() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("large"));
        byte[] body = pattern(2 * 1024 * 1024);
        BytesMessage m = s.createBytesMessage();
        m.writeBytes(body);
        MessageProducer p = s.createProducer(q);
        p.send(m);
        char[] chars = new char[2 * 1024 * 1024];
        for (int i = 0; i < chars.length; i++) chars[i] = (char) ('a' + i % 26);
        String text = new String(chars);
        p.send(s.createTextMessage(text));
        MessageConsumer c = s.createConsumer(q);
        BytesMessage r = assertInstanceOf(BytesMessage.class, receive(c));
        assertEquals(body.length, r.getBodyLength());
        byte[] back = new byte[body.length];
        r.readBytes(back);
        assertArrayEquals(body, back);
        assertEquals(text, receiveText(c));
    }

    /** A 10 MiB BytesMessage on a topic reaches its subscriber intact. */
    @Test
    void large_message_10mb_topic() throws Exception {
        Session s = session(connect());
        Topic t = s.createTopic(name("largetopic"));
        MessageConsumer c = s.createConsumer(t);
        byte[] body = pattern(10 * 1024 * 1024);
        BytesMessage m = s.createBytesMessage();
        m.writeBytes(body);
        s.createProducer(t).send(m);
        BytesMessage r = assertInstanceOf(BytesMessage.class, c.receive(3 * WAIT));
        byte[] back = new byte[(int) r.getBodyLength()];
        r.readBytes(back);
        assertArrayEquals(body, back);
    }

    /** 2000 small non-persistent messages from two producers arrive, each exactly once. */
    @Test
    void many_messages_two_producers() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("many"));
        MessageProducer p1 = s.createProducer(q), p2 = session(connect()).createProducer(q);
        p1.setDeliveryMode(DeliveryMode.NON_PERSISTENT);
        p2.setDeliveryMode(DeliveryMode.NON_PERSISTENT);
        Set<String> sent = new HashSet<>();
        for (int i = 0; i < 1000; i++) {
            p1.send(s.createTextMessage("a" + i));
            p2.send(s.createTextMessage("b" + i));
            sent.add("a" + i);
            sent.add("b" + i);
        }
        MessageConsumer c = s.createConsumer(q);
        Set<String> got = new HashSet<>();
        for (int i = 0; i < 2000; i++) assertTrue(got.add(receiveText(c)), "duplicate");
        assertEquals(sent, got);
        assertNothing(c);
    }

    /** Small AMQP frames (512 bytes, the least the client allows) in both directions: a 100 KiB
     * message is split into many transfers and arrives intact. */
    @Test
    void small_frames() throws Exception {
        Connection c = factoryWith("amqp.maxFrameSize=512").createConnection(USER, PASSWORD);
        opened.add(c);
        c.start();
        Session s = session(c);
        Queue q = s.createQueue(name("frames"));
        byte[] body = pattern(100 * 1024);
        BytesMessage m = s.createBytesMessage();
        m.writeBytes(body);
        m.setStringProperty("p", "x".repeat(2000));
        s.createProducer(q).send(m);
        BytesMessage r = assertInstanceOf(BytesMessage.class, receive(s.createConsumer(q)));
        byte[] back = new byte[(int) r.getBodyLength()];
        r.readBytes(back);
        assertArrayEquals(body, back);
        assertEquals("x".repeat(2000), r.getStringProperty("p"));
    }

    /** 20 sessions on one connection, each with its own producer and consumer, work side by side. */
    @Test
    void many_sessions() throws Exception {
        Connection c = connect();
        List<Session> sessions = new ArrayList<>();
        List<MessageConsumer> consumers = new ArrayList<>();
        List<Queue> queues = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            Session s = session(c);
            Queue q = s.createQueue(name("sess" + i));
            sessions.add(s);
            queues.add(q);
            consumers.add(s.createConsumer(q));
        }
        for (int i = 0; i < 20; i++) sendTexts(sessions.get(i), queues.get(i), "s" + i);
        for (int i = 0; i < 20; i++) assertEquals("s" + i, receiveText(consumers.get(i)));
        sessions.get(3).close();
        sendTexts(sessions.get(4), queues.get(4), "still");
        assertEquals("still", receiveText(consumers.get(4)));
    }

    /** A connection that asks for a 2 s idle timeout stays open through 6 s of silence (the broker
     * sends empty frames in time) and still works. */
    @Test
    void idle_connection_kept_alive() throws Exception {
        Connection c = factoryWith("amqp.idleTimeout=2000").createConnection(USER, PASSWORD);
        opened.add(c);
        List<JMSException> failures = Collections.synchronizedList(new ArrayList<>());
        c.setExceptionListener(failures::add);
        c.start();
        Session s = session(c);
        Queue q = s.createQueue(name("idle"));
        MessageConsumer cons = s.createConsumer(q);
        Thread.sleep(6000);
        assertEquals(List.of(), failures);
        sendTexts(s, q, "awake");
        assertEquals("awake", receiveText(cons));
    }

    // ---- JMS 2.0 simplified API and async send ----------------------------------------------

    /** JMSContext: send with properties through a JMSProducer, receiveBody on a JMSConsumer. */
    @Test
    void jms_context_simplified_api() throws Exception {
        JMSContext ctx = factory(USER, PASSWORD).createContext();
        contexts.add(ctx);
        Queue q = ctx.createQueue(name("ctx"));
        ctx.createProducer().setProperty("k", 5).setJMSCorrelationID("c").send(q, "body");
        JMSConsumer c = ctx.createConsumer(q);
        Message m = c.receive(WAIT);
        assertNotNull(m);
        assertEquals("body", m.getBody(String.class));
        assertEquals(5, m.getIntProperty("k"));
        assertEquals("c", m.getJMSCorrelationID());
        ctx.createProducer().send(q, Map.of("a", 1));
        Map<?, ?> body = c.receiveBody(Map.class, WAIT);
        assertEquals(Map.of("a", 1), body);
    }

    /** Asynchronous send: the CompletionListener is told of every message; then they arrive. */
    @Test
    void async_send_completion() throws Exception {
        Session s = session(connect());
        Queue q = s.createQueue(name("async"));
        MessageProducer p = s.createProducer(q);
        CountDownLatch done = new CountDownLatch(10);
        List<Exception> failures = Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < 10; i++) {
            p.send(s.createTextMessage("as" + i), new CompletionListener() {
                public void onCompletion(Message m) { done.countDown(); }
                public void onException(Message m, Exception e) { failures.add(e); done.countDown(); }
            });
        }
        assertTrue(done.await(WAIT, TimeUnit.MILLISECONDS));
        assertEquals(List.of(), failures);
        assertEquals(texts("as", 10), drain(s.createConsumer(q)));
    }

    /** Connection.stop pauses delivery to a consumer and start resumes it. */
    @Test
    void connection_stop_start() throws Exception {
        Connection c = connect();
        Session s = session(c);
        Queue q = s.createQueue(name("stopstart"));
        MessageConsumer cons = s.createConsumer(q);
        c.stop();
        sendTexts(session(connect()), q, "paused");
        assertNull(cons.receive(QUIET), "delivered while stopped");
        c.start();
        assertEquals("paused", receiveText(cons));
    }
}

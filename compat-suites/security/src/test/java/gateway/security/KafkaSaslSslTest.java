package gateway.security;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.SslAuthenticationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * The Java Kafka client over SASL_SSL with PLAIN, its password a Pulsar token, against the
 * gateway's TLS listener: what an application changes is its bootstrap servers and its security
 * settings, nothing else.
 */
class KafkaSaslSslTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers");
    static final String CA = System.getProperty("ca.file");
    static final String TOKEN = System.getProperty("token");
    static final String EXPIRED = System.getProperty("expired.token");
    /** The same token as TOKEN, in a file, for Kafka's own OAUTHBEARER login handler. */
    static final String TOKEN_FILE = System.getProperty("token.file");

    /** SASL_SSL + PLAIN, trusting the test CA (a PEM truststore), with `token` as password. */
    static Properties secured(String token, boolean trustCa) {
        return securedAs("public/default", token, trustCa);
    }

    /** As `secured`, with short topic names in `namespace` (the PLAIN username). */
    static Properties securedAs(String namespace, String token, boolean trustCa) {
        Properties p = tls(trustCa);
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                        + "username=\"" + namespace + "\" password=\"token:" + token + "\";");
        return p;
    }

    /**
     * SASL_SSL + OAUTHBEARER with Kafka's own login handler reading the token from a file (its
     * FileJwtRetriever), and the SASL extension `namespace` (KIP-342) naming where short topic
     * names resolve.
     */
    static Properties oauthBearer(String namespace) {
        String url = "file:" + TOKEN_FILE;
        // Kafka 4 fetches tokens only from URLs allowed this way.
        System.setProperty("org.apache.kafka.sasl.oauthbearer.allowed.urls", url);
        Properties p = tls(true);
        p.put("sasl.mechanism", "OAUTHBEARER");
        p.put("sasl.login.callback.handler.class",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler");
        p.put("sasl.oauthbearer.token.endpoint.url", url);
        p.put("sasl.jaas.config",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                        + "extension_namespace=\"" + namespace + "\";");
        return p;
    }

    static Properties tls(boolean trustCa) {
        Properties p = new Properties();
        p.put("bootstrap.servers", BOOTSTRAP);
        p.put("security.protocol", "SASL_SSL");
        if (trustCa) {
            p.put("ssl.truststore.type", "PEM");
            p.put("ssl.truststore.location", CA);
        }
        p.put("request.timeout.ms", "10000");
        p.put("delivery.timeout.ms", "20000");
        p.put("max.block.ms", "10000");
        return p;
    }

    static KafkaProducer<String, String> producer(Properties p) {
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    @Test
    void producesAndConsumesOverSaslSsl() throws Exception {
        String topic = "sasl-ssl-" + UUID.randomUUID();
        try (KafkaProducer<String, String> producer = producer(secured(TOKEN, true))) {
            for (int i = 0; i < 10; i++) {
                producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get(20, TimeUnit.SECONDS);
            }
        }
        Properties c = secured(TOKEN, true);
        c.put("group.id", "g-" + UUID.randomUUID());
        c.put("auto.offset.reset", "earliest");
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            while (got.size() < 10 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    got.add(r.key() + "=" + r.value());
                }
            }
            consumer.commitSync();
        }
        List<String> want = new ArrayList<>();
        for (int i = 0; i < 10; i++) want.add("k" + i + "=v" + i);
        assertEquals(want, got);
    }

    @Test
    void aClientThatDoesNotTrustTheCertificateFails() {
        // The JDK's default truststore: the test CA is not in it.
        try (KafkaProducer<String, String> producer = producer(secured(TOKEN, false))) {
            ExecutionException e = assertThrows(ExecutionException.class, () -> producer
                    .send(new ProducerRecord<>("untrusted", "v")).get(30, TimeUnit.SECONDS));
            assertInstanceOf(SslAuthenticationException.class, e.getCause(), e.toString());
        }
    }

    @Test
    void anExpiredTokenIsRefusedWithSaslAuthenticationFailed() {
        try (KafkaProducer<String, String> producer = producer(secured(EXPIRED, true))) {
            ExecutionException e = assertThrows(ExecutionException.class, () -> producer
                    .send(new ProducerRecord<>("refused", "v")).get(30, TimeUnit.SECONDS));
            assertInstanceOf(SaslAuthenticationException.class, e.getCause(), e.toString());
        }
    }

    @Test
    void oauthBearerWithANamespaceExtensionWritesInThatNamespace() throws Exception {
        String topic = "oauth-" + UUID.randomUUID();
        String namespace = "oauth-tenant/ns";
        try (KafkaProducer<String, String> producer = producer(oauthBearer(namespace))) {
            for (int i = 0; i < 3; i++) {
                producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get(20, TimeUnit.SECONDS);
            }
        }
        // A PLAIN client in that namespace reads the records under the same short name...
        List<String> got = new ArrayList<>();
        TopicPartition partition = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(
                securedAs(namespace, TOKEN, true), new StringDeserializer(), new StringDeserializer())) {
            consumer.assign(List.of(partition));
            consumer.seekToBeginning(List.of(partition));
            long deadline = System.currentTimeMillis() + 30_000;
            while (got.size() < 3 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    got.add(r.key() + "=" + r.value());
                }
            }
        }
        assertEquals(List.of("k0=v0", "k1=v1", "k2=v2"), got);
        // ...and one in public/default does not see the topic at all.
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(
                secured(TOKEN, true), new StringDeserializer(), new StringDeserializer())) {
            assertFalse(consumer.listTopics(Duration.ofSeconds(20)).containsKey(topic));
        }
    }
}

package gateway.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Topic configs through the AdminClient, against whatever serves {@code -Dbootstrap.servers}:
 * configs given at creation are reported back (by CreateTopics and DescribeConfigs) with the
 * topic as their source, unset ones with their defaults; incremental changes (set, delete,
 * append, subtract) and validate-only requests; unknown names and bad values refused with
 * InvalidConfigurationException. Proved against Apache Kafka first (README).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TopicConfigsTest {
    static final String BOOTSTRAP = System.getProperty("bootstrap.servers", "127.0.0.1:9092");
    static AdminClient admin;
    static final List<String> topics = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "compat-configs");
        admin = AdminClient.create(p);
    }

    @AfterAll
    static void tearDown() throws Exception {
        if (admin == null) {
            return;
        }
        try {
            admin.deleteTopics(topics).all().get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            System.err.println("cleanup: " + e);
        }
        admin.close();
    }

    static String freshTopic(String what) {
        String name = "configs-" + what + "-" + UUID.randomUUID().toString().substring(0, 8);
        topics.add(name);
        return name;
    }

    static Config describe(String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        return admin.describeConfigs(Collections.singleton(r)).all().get(30, TimeUnit.SECONDS).get(r);
    }

    static void assertEntry(Config config, String name, String value, ConfigEntry.ConfigSource source) {
        ConfigEntry e = config.get(name);
        assertNotNull(e, name + " is not described");
        assertEquals(value, e.value(), name);
        assertEquals(source, e.source(), name + " source");
    }

    static void alter(String topic, AlterConfigOp... ops) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        admin.incrementalAlterConfigs(Collections.singletonMap(r, Arrays.asList(ops)))
                .all().get(30, TimeUnit.SECONDS);
    }

    static AlterConfigOp op(String name, String value, AlterConfigOp.OpType type) {
        return new AlterConfigOp(new ConfigEntry(name, value), type);
    }

    static Throwable cause(ExecutionException e) {
        return e.getCause();
    }

    @Test
    void configsGivenAtCreationAreReported() throws Exception {
        String topic = freshTopic("create");
        Map<String, String> configs = new HashMap<>();
        configs.put("cleanup.policy", "compact");
        configs.put("retention.ms", "3600000");
        configs.put("segment.bytes", "52428800");
        configs.put("min.compaction.lag.ms", "1000");
        CreateTopicsResult created = admin.createTopics(Collections.singleton(
                new NewTopic(topic, 3, (short) 1).configs(configs)));
        created.all().get(30, TimeUnit.SECONDS);
        Config reported = created.config(topic).get(30, TimeUnit.SECONDS);
        assertEntry(reported, "cleanup.policy", "compact", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(reported, "retention.ms", "3600000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

        Config described = describe(topic);
        assertEntry(described, "cleanup.policy", "compact", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "retention.ms", "3600000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "segment.bytes", "52428800", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "min.compaction.lag.ms", "1000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(described, "delete.retention.ms", "86400000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        assertEntry(described, "min.cleanable.dirty.ratio", "0.5", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        System.out.println("[configs] created with 4 configs; " + described.entries().size() + " described");
    }

    @Test
    void aTopicWithoutConfigsHasKafkasDefaults() throws Exception {
        String topic = freshTopic("defaults");
        admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1)))
                .all().get(30, TimeUnit.SECONDS);
        Config described = describe(topic);
        assertEntry(described, "cleanup.policy", "delete", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        assertEntry(described, "retention.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
        assertEntry(described, "retention.bytes", "-1", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
    }

    @Test
    void unknownNamesAndBadValuesAreRefused() throws Exception {
        for (Map.Entry<String, String> bad : Map.of(
                "no.such.config", "1",
                "retention.ms", "soon",
                "cleanup.policy", "shred",
                "min.cleanable.dirty.ratio", "2").entrySet()) {
            // Never created, so not in the clean-up list.
            String topic = "configs-bad-" + UUID.randomUUID().toString().substring(0, 8);
            ExecutionException e = assertThrows(ExecutionException.class, () -> admin.createTopics(
                    Collections.singleton(new NewTopic(topic, 1, (short) 1)
                            .configs(Collections.singletonMap(bad.getKey(), bad.getValue()))))
                    .all().get(30, TimeUnit.SECONDS), bad.toString());
            assertInstanceOf(InvalidConfigurationException.class, cause(e), bad.toString());
            // Nothing was created.
            ExecutionException missing = assertThrows(ExecutionException.class, () -> describe(topic));
            assertInstanceOf(UnknownTopicOrPartitionException.class, cause(missing), bad.toString());
        }
    }

    @Test
    void incrementalChanges() throws Exception {
        String topic = freshTopic("alter");
        admin.createTopics(Collections.singleton(new NewTopic(topic, 2, (short) 1)
                        .configs(Map.of("cleanup.policy", "compact", "segment.bytes", "52428800"))))
                .all().get(30, TimeUnit.SECONDS);

        alter(topic,
                op("retention.ms", "7200000", AlterConfigOp.OpType.SET),
                op("cleanup.policy", "delete", AlterConfigOp.OpType.APPEND),
                op("segment.bytes", null, AlterConfigOp.OpType.DELETE));
        Config c = describe(topic);
        assertEntry(c, "retention.ms", "7200000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(c, "cleanup.policy", "compact,delete", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
        assertEntry(c, "segment.bytes", "1073741824", ConfigEntry.ConfigSource.DEFAULT_CONFIG);

        alter(topic, op("cleanup.policy", "compact", AlterConfigOp.OpType.SUBTRACT));
        assertEntry(describe(topic), "cleanup.policy", "delete", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

        // Appending to a config that is not a list is refused, and so is a bad value; neither
        // changes anything, nor does the good change sent with them.
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        for (AlterConfigOp bad : List.of(
                op("retention.ms", "1", AlterConfigOp.OpType.APPEND),
                op("retention.bytes", "lots", AlterConfigOp.OpType.SET))) {
            ExecutionException e = assertThrows(ExecutionException.class, () ->
                    admin.incrementalAlterConfigs(Collections.singletonMap(r, List.of(
                            op("segment.ms", "60000", AlterConfigOp.OpType.SET), bad)))
                            .all().get(30, TimeUnit.SECONDS), bad.toString());
            assertInstanceOf(InvalidConfigurationException.class, cause(e), bad.toString());
        }
        assertEntry(describe(topic), "segment.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);

        // Validate-only: checked, not applied.
        admin.incrementalAlterConfigs(
                        Collections.singletonMap(r, List.of(op("segment.ms", "60000", AlterConfigOp.OpType.SET))),
                        new AlterConfigsOptions().validateOnly(true))
                .all().get(30, TimeUnit.SECONDS);
        assertEntry(describe(topic), "segment.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);

        // Deleting a topic config returns it to its default.
        alter(topic, op("retention.ms", null, AlterConfigOp.OpType.DELETE));
        assertEntry(describe(topic), "retention.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
    }

    @Test
    void describingAMissingTopicFails() {
        ExecutionException e = assertThrows(ExecutionException.class,
                () -> describe("configs-missing-" + UUID.randomUUID()));
        assertInstanceOf(UnknownTopicOrPartitionException.class, cause(e));
    }
}

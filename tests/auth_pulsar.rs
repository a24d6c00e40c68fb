//! Pulsar's authorization decides (issue 6): a gateway in front of a Pulsar started with
//! `compat-suites/pulsar/start --auth`, checking tokens with Pulsar's own key, and acting for each
//! Kafka client with that client's token. Tokens come from Pulsar's own tool
//! (`compat-suites/pulsar/token`, TokensCliUtils).
//!
//! Needs PULSAR_URL, PULSAR_ADMIN_URL, PULSAR_ADMIN_TOKEN and PULSAR_TOKEN_SECRET_KEY of such a
//! Pulsar (CI starts one); ignored otherwise.
//!
//! Two tenants, each with a namespace whose produce and consume permissions belong to one role.
//! The tenant-a token works on tenant-a's topics; on tenant-b's it gets TOPIC_AUTHORIZATION_FAILED
//! and nothing is written; an expired token from Pulsar's tool is refused.

use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::{poll_payloads, unique};
use e2e_tests::{InProcessGateway, TestPulsar};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

struct AuthPulsar {
    /// URLs, the superuser's token and (with `--tls`) the CA.
    access: TestPulsar,
    secret_key: String,
}

fn auth_pulsar() -> AuthPulsar {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("needs {k} (compat-suites/pulsar/start --auth)"))
    };
    let access = TestPulsar::from_env().expect("needs PULSAR_URL and PULSAR_ADMIN_URL");
    assert!(
        access.token.is_some(),
        "needs PULSAR_ADMIN_TOKEN (compat-suites/pulsar/start --auth)"
    );
    AuthPulsar {
        access,
        secret_key: var("PULSAR_TOKEN_SECRET_KEY"),
    }
}

/// A token from Pulsar's TokensCliUtils.
fn pulsar_token(pulsar: &AuthPulsar, subject: &str, expiry: Option<&str>) -> String {
    e2e_tests::pulsar_token(&pulsar.secret_key, subject, expiry)
}

/// One admin REST call with the superuser token; returns the status and body.
fn admin(pulsar: &AuthPulsar, method: &str, path: &str, body: &str) -> (u16, String) {
    pulsar.access.admin_call(method, path, body)
}

/// Tenant `tenant` with namespace `ns` where `role` may produce and consume, and a
/// one-partition topic `topic` in it.
fn tenant_with_role(pulsar: &AuthPulsar, tenant: &str, role: &str, topic: &str) {
    let (status, body) = admin(
        pulsar,
        "PUT",
        &format!("/admin/v2/tenants/{tenant}"),
        r#"{"adminRoles":[],"allowedClusters":["standalone"]}"#,
    );
    assert!(
        matches!(status, 204 | 409),
        "tenant {tenant}: {status} {body}"
    );
    let (status, body) = admin(
        pulsar,
        "PUT",
        &format!("/admin/v2/namespaces/{tenant}/ns"),
        "{}",
    );
    assert!(matches!(status, 204 | 409), "namespace: {status} {body}");
    let (status, body) = admin(
        pulsar,
        "POST",
        &format!("/admin/v2/namespaces/{tenant}/ns/permissions/{role}"),
        r#"["produce","consume"]"#,
    );
    assert_eq!(status, 204, "permissions: {body}");
    let (status, body) = admin(
        pulsar,
        "PUT",
        &format!("/admin/v2/persistent/{tenant}/ns/{topic}/partitions"),
        "1",
    );
    assert!(matches!(status, 204 | 409), "topic: {status} {body}");
}

/// Messages Pulsar received on the topic's partition 0.
fn messages_in(pulsar: &AuthPulsar, tenant: &str, topic: &str) -> u64 {
    let (status, body) = admin(
        pulsar,
        "GET",
        &format!("/admin/v2/persistent/{tenant}/ns/{topic}-partition-0/stats"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["msgInCounter"].as_u64().unwrap_or(0)
}

/// A gateway in front of the auth-enabled Pulsar: its own credential is the superuser's token,
/// and clients' tokens are required and checked with Pulsar's key.
async fn gateway_on(
    pulsar: &AuthPulsar,
    more: impl FnOnce(&mut pulsar_gateway::Config) + Send + 'static,
) -> InProcessGateway {
    let (access, key) = (pulsar.access.clone(), pulsar.secret_key.clone());
    InProcessGateway::start_with(move |c| {
        access.configure(c);
        c.auth.token_secret_key = Some(key);
        c.auth.required = true;
        more(c);
    })
    .await
}

fn client(bootstrap: &str, user: &str, token: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", user)
        .set("sasl.password", format!("token:{token}"))
        .set("message.timeout.ms", "8000");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --auth"]
async fn pulsar_authorizes_each_kafka_client_with_its_own_token() {
    let pulsar = auth_pulsar();
    let run = unique("t");
    let (tenant_a, tenant_b) = (format!("a-{run}"), format!("b-{run}"));
    tenant_with_role(&pulsar, &tenant_a, "tenant-a-role", "orders");
    tenant_with_role(&pulsar, &tenant_b, "tenant-b-role", "orders");
    let token_a = pulsar_token(&pulsar, "tenant-a-role", None);
    let expired = pulsar_token(&pulsar, "tenant-a-role", Some("1s"));

    let gateway = gateway_on(&pulsar, |_| {}).await;
    let bootstrap = gateway.bootstrap();

    // tenant-a's token in tenant-a's namespace: produced, and read back.
    let own = format!("{tenant_a}/ns");
    let producer: FutureProducer = client(&bootstrap, &own, &token_a).create().unwrap();
    for i in 0..3 {
        producer
            .send(
                FutureRecord::<(), _>::to("orders").payload(&format!("a{i}")),
                Duration::from_secs(10),
            )
            .await
            .expect("tenant-a may produce to its own topic");
    }
    assert_eq!(messages_in(&pulsar, &tenant_a, "orders"), 3);
    let consumer: BaseConsumer = client(&bootstrap, &own, &token_a)
        .set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["orders"]).unwrap();
    let (_consumer, got) = poll_payloads(consumer, 3, Duration::from_secs(30)).await;
    assert_eq!(got, ["a0", "a1", "a2"]);

    // The same token on tenant-b's topic: refused by Pulsar, and nothing is written.
    let other = format!("{tenant_b}/ns");
    let intruder: FutureProducer = client(&bootstrap, &other, &token_a).create().unwrap();
    let refused = intruder
        .send(
            FutureRecord::<(), _>::to("orders").payload("intrusion"),
            Duration::from_secs(10),
        )
        .await
        .expect_err("tenant-a may not produce to tenant-b");
    assert!(
        matches!(
            refused.0,
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
        ),
        "{:?}",
        refused.0
    );
    assert_eq!(
        messages_in(&pulsar, &tenant_b, "orders"),
        0,
        "nothing was written"
    );

    // An expired token from Pulsar's tool is refused at authentication.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late: FutureProducer = client(&bootstrap, &own, &expired)
        .set("message.timeout.ms", "3000")
        .create()
        .unwrap();
    late.send(
        FutureRecord::<(), _>::to("orders").payload("late"),
        Duration::from_secs(5),
    )
    .await
    .expect_err("an expired token is refused");
    assert_eq!(messages_in(&pulsar, &tenant_a, "orders"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --auth"]
async fn pulsar_decides_which_amqp_vhosts_a_token_may_open() {
    use lapin::{Connection, ConnectionProperties};
    let pulsar = auth_pulsar();
    let run = unique("v");
    let (tenant_a, tenant_b) = (format!("a-{run}"), format!("b-{run}"));
    tenant_with_role(&pulsar, &tenant_a, "tenant-a-role", "unused");
    tenant_with_role(&pulsar, &tenant_b, "tenant-b-role", "unused");
    let token_a = pulsar_token(&pulsar, "tenant-a-role", None);
    // An amqps listener that verifies client certificates, for SASL EXTERNAL.
    let pki = e2e_tests::pki::Pki::new();
    pki.issue("server", &["127.0.0.1", "localhost"]);
    pki.issue_client("cert-a", "tenant-a-role");
    let (cert, cert_key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );

    let gateway = gateway_on(&pulsar, move |c| {
        c.tls.amqp_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls.cert_file = Some(cert);
        c.tls.key_file = Some(cert_key);
        c.tls.client_ca_file = Some(ca);
    })
    .await;
    let amqp = gateway.gateway.amqp_addr();
    let connect = |vhost: String| {
        let uri = format!("amqp://app:{token_a}@{amqp}/{}", vhost.replace('/', "%2F"));
        async move {
            tokio::time::timeout(
                Duration::from_secs(15),
                Connection::connect(&uri, ConnectionProperties::default()),
            )
            .await
            .expect("an answer")
        }
    };
    // Its own vhost: declare, publish with a confirm, get.
    let connection = connect(format!("{tenant_a}/ns"))
        .await
        .expect("tenant-a's vhost");
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare("jobs".into(), Default::default(), Default::default())
        .await
        .unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            "jobs".into(),
            Default::default(),
            b"job-1",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let got = channel
        .basic_get(
            "jobs".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message");
    assert_eq!(got.delivery.data, b"job-1");
    // tenant-b's vhost: refused as RabbitMQ refuses a vhost (530 NOT_ALLOWED), nothing created.
    let err = connect(format!("{tenant_b}/ns"))
        .await
        .expect_err("tenant-b's vhost is refused");
    let text = format!("{err:?}");
    assert!(
        text.contains("NOT_ALLOWED") || text.contains("530"),
        "{text}"
    );
    let (status, _) = admin(
        &pulsar,
        "GET",
        &format!("/admin/v2/persistent/{tenant_b}/ns/__amqp_topology/partitions"),
        "",
    );
    assert_eq!(
        status, 404,
        "the gateway wrote nothing in tenant-b's namespace"
    );

    // SASL EXTERNAL: a certificate whose common name is tenant-a's role opens tenant-a's vhost
    // and, Pulsar deciding for that role, not tenant-b's.
    let tls = gateway.gateway.amqp_tls_addr().unwrap();
    let ca_pem = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    let external = |vhost: String| {
        let uri = format!(
            "amqps://localhost:{}/{}?auth_mechanism=external",
            tls.port(),
            vhost.replace('/', "%2F")
        );
        let (ca_pem, pki) = (ca_pem.clone(), &pki);
        async move { e2e_tests::pki::amqps(&uri, Some(ca_pem), Some((pki, "cert-a"))).await }
    };
    let connection = external(format!("{tenant_a}/ns"))
        .await
        .expect("EXTERNAL as tenant-a-role opens tenant-a's vhost");
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare("certified".into(), Default::default(), Default::default())
        .await
        .unwrap();
    let err = external(format!("{tenant_b}/ns"))
        .await
        .expect_err("tenant-b's vhost is refused to tenant-a-role's certificate");
    let text = format!("{err:?}");
    assert!(
        text.contains("NOT_ALLOWED") || text.contains("530"),
        "{text}"
    );
}

/// The world both authorization matrices run in: tenant-a's namespace, where rw-role may
/// produce and consume, writer-role only produce and reader-role only consume, and subscription
/// `locked` is reader-role's alone (`grant-subscription-permission`); tenant-b's namespace,
/// another role's; each with a one-partition topic `topic`. And a token from Pulsar's tool for
/// each of those roles, for nobody-role (no permission) and for the superuser.
struct MatrixWorld {
    tenant_a: String,
    tenant_b: String,
    /// tenant-a's and tenant-b's `tenant/ns`.
    own: String,
    other: String,
    tokens: Vec<(&'static str, String)>,
}

impl MatrixWorld {
    fn new(pulsar: &AuthPulsar, topic: &str, locked: &str) -> MatrixWorld {
        let run = unique("m");
        let (tenant_a, tenant_b) = (format!("a-{run}"), format!("b-{run}"));
        tenant_with_role(pulsar, &tenant_a, "rw-role", topic);
        tenant_with_role(pulsar, &tenant_b, "other-role", topic);
        let namespace = format!("/admin/v2/namespaces/{tenant_a}/ns/permissions");
        for (path, body) in [
            ("writer-role".to_owned(), r#"["produce"]"#),
            ("reader-role".to_owned(), r#"["consume"]"#),
            (format!("subscription/{locked}"), r#"["reader-role"]"#),
        ] {
            let (status, answer) = admin(pulsar, "POST", &format!("{namespace}/{path}"), body);
            assert_eq!(status, 204, "{path}: {answer}");
        }
        let tokens = [
            "rw-role",
            "writer-role",
            "reader-role",
            "nobody-role",
            "admin",
        ]
        .into_iter()
        .map(|role| (role, pulsar_token(pulsar, role, None)))
        .collect();
        MatrixWorld {
            own: format!("{tenant_a}/ns"),
            other: format!("{tenant_b}/ns"),
            tenant_a,
            tenant_b,
            tokens,
        }
    }

    fn token(&self, role: &str) -> String {
        let found = self.tokens.iter().find(|(r, _)| *r == role);
        found.expect("a role of the matrix").1.clone()
    }
}

/// What one Kafka operation got: done, or refused with TOPIC_AUTHORIZATION_FAILED or
/// GROUP_AUTHORIZATION_FAILED. Any other failure fails the case.
type Verdict = Result<bool, String>;

fn authz(result: Result<(), KafkaError>) -> Verdict {
    match result {
        Ok(()) => Ok(true),
        Err(e) => {
            let text = format!("{e:?}");
            if text.contains("TopicAuthorization") || text.contains("GroupAuthorization") {
                Ok(false)
            } else {
                Err(text)
            }
        }
    }
}

/// Runs `op` on `topic` (a name inside the client's namespace) as the client.
async fn kafka_op(bootstrap: &str, namespace: &str, token: &str, op: &str, topic: &str) -> Verdict {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let config = client(bootstrap, namespace, token);
    match op {
        "produce" => {
            let producer: FutureProducer = config.clone().create().unwrap();
            authz(
                producer
                    .send(
                        FutureRecord::<(), _>::to(topic).payload("x"),
                        Duration::from_secs(10),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e),
            )
        }
        "metadata" => {
            let consumer: BaseConsumer = config.clone().create().unwrap();
            let name = topic.to_owned();
            let (_, metadata) = e2e_tests::blocking(consumer, move |c| {
                c.fetch_metadata(Some(&name), Duration::from_secs(10))
                    .map(|m| m.topics().first().and_then(|t| t.error()))
            })
            .await;
            match metadata {
                Err(e) => authz(Err(e)),
                Ok(None) => Ok(true),
                Ok(Some(code)) => authz(Err(KafkaError::MetadataFetch(code.into()))),
            }
        }
        "list_offsets" => {
            let consumer: BaseConsumer = config.clone().create().unwrap();
            let name = topic.to_owned();
            let (_, offsets) = e2e_tests::blocking(consumer, move |c| {
                c.fetch_watermarks(&name, 0, Duration::from_secs(10))
            })
            .await;
            match offsets {
                // librdkafka asks Metadata first; refused there, it reports the partition as
                // unknown and never sends ListOffsets.
                Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition)) => Ok(false),
                other => authz(other.map(|_| ())),
            }
        }
        "fetch" => {
            let mut consumer: BaseConsumer = config
                .clone()
                .set("group.id", unique("authz"))
                .set("auto.offset.reset", "earliest")
                .create()
                .unwrap();
            // Subscribed (not assigned), librdkafka reports a refused topic as a consumer error.
            consumer.subscribe(&[topic]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let polled;
                (consumer, polled) = e2e_tests::blocking(consumer, |c| {
                    c.poll(Duration::from_millis(200))
                        .map(|r| r.map(|m| m.detach()))
                })
                .await;
                match polled {
                    Some(Ok(_)) => return Ok(true),
                    Some(Err(e)) => return authz(Err(e)),
                    None if Instant::now() > deadline => {
                        return Err("nothing fetched, no error".into())
                    }
                    None => {}
                }
            }
        }
        "create" | "delete" => {
            let admin: AdminClient<DefaultClientContext> = config.clone().create().unwrap();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let name = unique("created");
            let results = if op == "create" {
                admin
                    .create_topics(
                        &[NewTopic::new(&name, 1, TopicReplication::Fixed(1))],
                        &options,
                    )
                    .await
            } else {
                admin.delete_topics(&[topic], &options).await
            };
            match results {
                Err(e) => authz(Err(e)),
                Ok(r) => match r.into_iter().next() {
                    Some(Err((_, code))) => authz(Err(KafkaError::AdminOp(code))),
                    _ => Ok(true),
                },
            }
        }
        other => Err(format!("unknown op {other}")),
    }
}

/// Runs group operation `op` on group `group` as the client, against partition 0 of the
/// client's topic `data`.
async fn group_op(bootstrap: &str, namespace: &str, token: &str, op: &str, group: &str) -> Verdict {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::CommitMode;
    use rdkafka::{Offset, TopicPartitionList};
    let config = client(bootstrap, namespace, token);
    let mut partition = TopicPartitionList::new();
    partition
        .add_partition_offset("data", 0, Offset::Offset(1))
        .unwrap();
    match op {
        "commit" | "offset_fetch" => {
            let consumer: BaseConsumer = config
                .clone()
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let commit = op == "commit";
            let (consumer, result) = e2e_tests::blocking(consumer, move |c| {
                if commit {
                    c.commit(&partition, CommitMode::Sync)
                } else {
                    c.committed_offsets(partition, Duration::from_secs(5))
                        .map(|_| ())
                }
            })
            .await;
            match result {
                // Refused at FindCoordinator (as Kafka refuses a group without Describe),
                // librdkafka keeps waiting for a coordinator and reports the refusal as a
                // consumer error.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::WaitingForCoordinator))
                | Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)) => {
                    let (_, polled) = e2e_tests::blocking(consumer, |c| {
                        c.poll(Duration::from_secs(5)).map(|r| r.map(|_| ()))
                    })
                    .await;
                    match polled {
                        Some(Err(e)) => authz(Err(e)),
                        _ => authz(result),
                    }
                }
                other => authz(other),
            }
        }
        "delete_group" => {
            let admin: AdminClient<DefaultClientContext> = config.clone().create().unwrap();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            match admin.delete_groups(&[group], &options).await {
                Err(e) => authz(Err(e)),
                // Authorization comes first; a group without state is simply not found.
                Ok(r) => match r.into_iter().next() {
                    Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) | Some(Ok(_)) | None => {
                        Ok(true)
                    }
                    Some(Err((_, code))) => authz(Err(KafkaError::AdminOp(code))),
                },
            }
        }
        other => Err(format!("unknown group op {other}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --auth"]
async fn kafka_authorization_matrix() {
    let pulsar = auth_pulsar();
    // Group `locked` is reader-role's alone.
    let world = MatrixWorld::new(&pulsar, "data", "locked");
    let (tenant_b, own, other) = (&world.tenant_b, &world.own, &world.other);
    let token = |role: &str| world.token(role);
    // Something to fetch in tenant-a's topic, written with the superuser token.
    let gateway = gateway_on(&pulsar, |_| {}).await;
    let bootstrap = gateway.bootstrap();
    let seed: FutureProducer = client(&bootstrap, own, &token("admin")).create().unwrap();
    seed.send(
        FutureRecord::<(), _>::to("data").payload("seed"),
        Duration::from_secs(10),
    )
    .await
    .expect("the superuser writes anywhere");

    // (role, namespace, operation, expected: allowed?)
    let mut cases: Vec<(&str, String, &str, bool)> = Vec::new();
    for op in ["produce", "fetch", "metadata", "list_offsets"] {
        cases.push(("rw-role", own.clone(), op, true));
        cases.push(("rw-role", other.clone(), op, false));
        cases.push(("nobody-role", own.clone(), op, false));
        cases.push(("admin", own.clone(), op, true));
        cases.push(("admin", other.clone(), op, true));
    }
    cases.push(("writer-role", own.clone(), "produce", true));
    cases.push(("reader-role", own.clone(), "produce", false));
    for op in ["fetch", "list_offsets"] {
        cases.push(("reader-role", own.clone(), op, true));
        cases.push(("writer-role", own.clone(), op, false));
    }
    // Topic administration needs Pulsar's tenant-admin rights.
    for op in ["create", "delete"] {
        cases.push(("rw-role", own.clone(), op, false));
        cases.push(("rw-role", other.clone(), op, false));
        cases.push(("nobody-role", own.clone(), op, false));
    }
    cases.push(("admin", own.clone(), "create", true));
    // Groups: a group is the Pulsar subscription of its name, so consuming there decides.
    let group_ops = ["commit", "offset_fetch", "delete_group"];
    for op in group_ops {
        cases.push(("rw-role", own.clone(), op, true));
        cases.push(("rw-role", other.clone(), op, false));
        cases.push(("nobody-role", own.clone(), op, false));
        cases.push(("writer-role", own.clone(), op, false));
        cases.push(("reader-role", own.clone(), op, true));
        cases.push(("admin", other.clone(), op, true));
    }
    let locked = cases.len();
    for op in ["commit", "offset_fetch"] {
        cases.push(("rw-role", own.clone(), op, false));
        cases.push(("reader-role", own.clone(), op, true));
    }
    let mut results = Vec::new();
    for (i, (role, namespace, op, allowed)) in cases.iter().enumerate() {
        let got = if group_ops.contains(op) {
            let group = if i >= locked {
                "locked".to_owned()
            } else {
                format!("g-{role}")
            };
            group_op(&bootstrap, namespace, &token(role), op, &group).await
        } else {
            kafka_op(&bootstrap, namespace, &token(role), op, "data").await
        };
        results.push((format!("{role} {op} in {namespace}"), *allowed, got));
    }
    e2e_tests::assert_matrix(&results, ("allowed", "refused"));
    // Refused writes wrote nothing: tenant-b's topic holds only the superuser's record.
    assert_eq!(messages_in(&pulsar, tenant_b, "data"), 1);
    // rw-role's refused commit in tenant-b left no offset in tenant-b's group g-rw-role, as the
    // superuser sees it, and no subscription of that name on tenant-b's topic.
    let superuser: BaseConsumer = client(&bootstrap, other, &token("admin"))
        .set("group.id", "g-rw-role")
        .create()
        .unwrap();
    let (_, committed) = e2e_tests::blocking(superuser, |c| {
        let mut partition = rdkafka::TopicPartitionList::new();
        partition.add_partition("data", 0);
        c.committed_offsets(partition, Duration::from_secs(10))
    })
    .await;
    let committed = committed.expect("the superuser reads tenant-b's group");
    assert_eq!(
        committed.elements()[0].offset(),
        rdkafka::Offset::Invalid,
        "no offset was stored for the refused commit"
    );
    let (status, body) = admin(
        &pulsar,
        "GET",
        &format!("/admin/v2/persistent/{tenant_b}/ns/data-partition-0/subscriptions"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("g-rw-role"), "subscriptions: {body}");
}

/// What one AMQP operation got: done, or refused (403 ACCESS_REFUSED on the channel, or 530
/// NOT_ALLOWED for the vhost). Any other failure fails the case.
fn amqp_verdict<T>(result: lapin::Result<T>) -> Verdict {
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let text = format!("{e:?}");
            if text.contains("ACCESS_REFUSED") || text.contains("NOT_ALLOWED") {
                Ok(false)
            } else {
                Err(text)
            }
        }
    }
}

/// Opens `vhost` with `token` as the PLAIN password and runs `op` on queue `queue`.
async fn amqp_op(
    amqp: std::net::SocketAddr,
    vhost: &str,
    token: &str,
    op: &str,
    queue: &str,
) -> Verdict {
    use lapin::options::{BasicConsumeOptions, BasicGetOptions, QueueDeclareOptions};
    use lapin::{Connection, ConnectionProperties};
    let uri = format!("amqp://app:{token}@{amqp}/{}", vhost.replace('/', "%2F"));
    let connection = match tokio::time::timeout(
        Duration::from_secs(15),
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("an answer")
    {
        Ok(c) => c,
        Err(e) => return amqp_verdict::<()>(Err(e)),
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let queue = queue.into();
    let verdict = match op {
        "open" => Ok(true),
        "declare" => amqp_verdict(
            channel
                .queue_declare(queue, QueueDeclareOptions::default(), Default::default())
                .await,
        ),
        "publish" => {
            channel
                .confirm_select(Default::default())
                .await
                .map_err(|e| format!("{e:?}"))?;
            let published = channel
                .basic_publish(
                    "".into(),
                    queue,
                    Default::default(),
                    b"authz",
                    Default::default(),
                )
                .await;
            match published {
                Ok(confirm) => match confirm.await {
                    Ok(c) if c.is_ack() => Ok(true),
                    Ok(c) => Err(format!("not acknowledged: {c:?}")),
                    Err(e) => amqp_verdict::<()>(Err(e)),
                },
                Err(e) => amqp_verdict::<()>(Err(e)),
            }
        }
        "get" => amqp_verdict(
            channel
                .basic_get(queue, BasicGetOptions { no_ack: true })
                .await,
        ),
        "consume" => amqp_verdict(
            channel
                .basic_consume(
                    queue,
                    "".into(),
                    BasicConsumeOptions::default(),
                    Default::default(),
                )
                .await,
        ),
        "purge" => amqp_verdict(channel.queue_purge(queue, Default::default()).await),
        "delete" => amqp_verdict(channel.queue_delete(queue, Default::default()).await),
        other => Err(format!("unknown op {other}")),
    };
    let _ = connection.close(200, "done".into()).await;
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --auth"]
async fn amqp_authorization_matrix() {
    let pulsar = auth_pulsar();
    // Queue `locked` is reader-role's alone: its subscription name.
    let world = MatrixWorld::new(&pulsar, "unused", "amqp.locked");
    let (tenant_a, own, other) = (&world.tenant_a, &world.own, &world.other);
    let token = |role: &str| world.token(role);
    let gateway = gateway_on(&pulsar, |_| {}).await;
    let amqp = gateway.gateway.amqp_addr();
    // The queues, declared by the superuser.
    let queues = [
        "jobs",
        "inbox",
        "locked",
        "trash-rw-role",
        "trash-reader-role",
        "trash-writer-role",
    ];
    for vhost in [&own, &other] {
        for queue in queues {
            let made = amqp_op(amqp, vhost, &token("admin"), "declare", queue).await;
            assert_eq!(made, Ok(true), "declaring {queue} in {vhost}");
        }
    }

    // (role, vhost, operation, queue, expected: allowed?)
    let mut cases: Vec<(&str, &String, &str, String, bool)> = Vec::new();
    let mut add = |role, vhost, op, queue: &str, allowed| {
        cases.push((role, vhost, op, queue.to_owned(), allowed))
    };
    add("rw-role", own, "open", "", true);
    add("writer-role", own, "open", "", true);
    add("reader-role", own, "open", "", true);
    add("admin", own, "open", "", true);
    add("admin", other, "open", "", true);
    add("rw-role", other, "open", "", false);
    add("nobody-role", own, "open", "", false);
    for role in ["rw-role", "writer-role", "reader-role"] {
        add(role, own, "declare", "jobs", true);
    }
    add("admin", other, "declare", "jobs", true);
    for (role, allowed) in [
        ("rw-role", true),
        ("writer-role", true),
        ("reader-role", false),
    ] {
        add(role, own, "publish", "inbox", allowed);
    }
    add("admin", other, "publish", "inbox", true);
    for op in ["get", "consume", "purge"] {
        for (role, allowed) in [
            ("rw-role", true),
            ("writer-role", false),
            ("reader-role", true),
        ] {
            add(role, own, op, "jobs", allowed);
        }
    }
    add("admin", other, "get", "jobs", true);
    for (role, allowed) in [
        ("rw-role", true),
        ("writer-role", false),
        ("reader-role", true),
    ] {
        add(role, own, "delete", &format!("trash-{role}"), allowed);
    }
    add("rw-role", own, "get", "locked", false);
    add("reader-role", own, "get", "locked", true);
    let mut results = Vec::new();
    for (role, vhost, op, queue, allowed) in &cases {
        let got = amqp_op(amqp, vhost, &token(role), op, queue).await;
        results.push((format!("{role} {op} {queue} in {vhost}"), *allowed, got));
    }
    e2e_tests::assert_matrix(&results, ("allowed", "refused"));
    // The refused publish wrote nothing: tenant-a's inbox holds the two allowed ones.
    let (status, body) = admin(
        &pulsar,
        "GET",
        &format!("/admin/v2/persistent/{tenant_a}/ns/amqp.queue.inbox/stats"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["msgInCounter"].as_u64(), Some(2), "{body}");
}

/// Kafka transactions when the gateway acts for each client with its own token (a Pulsar started
/// with `--auth --transactions`; skipped on one without transactions). Transactional ids live in
/// the client's scope: tenant-a's producer commits and aborts, and a `read_committed` consumer
/// reads exactly the committed records; tenant-b's producer with the same `transactional.id`
/// does not fence it; tenant-a's token in tenant-b's scope gets
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED. The gateway's role opens and ends the Pulsar
/// transactions; the records go with the client's own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --auth --transactions"]
async fn transactional_ids_are_scoped_and_authorized() {
    use rdkafka::producer::Producer;
    let pulsar = auth_pulsar();
    let (status, _) = admin(
        &pulsar,
        "GET",
        "/admin/v2/persistent/pulsar/system/transaction_coordinator_assign/partitions",
        "",
    );
    if status != 200 {
        eprintln!("skipped: this Pulsar has no transaction coordinator (start --transactions)");
        return;
    }
    let run = unique("x");
    let (tenant_a, tenant_b) = (format!("a-{run}"), format!("b-{run}"));
    tenant_with_role(&pulsar, &tenant_a, "tenant-a-role", "orders");
    tenant_with_role(&pulsar, &tenant_b, "tenant-b-role", "orders");
    let (token_a, token_b) = (
        pulsar_token(&pulsar, "tenant-a-role", None),
        pulsar_token(&pulsar, "tenant-b-role", None),
    );
    let gateway = gateway_on(&pulsar, |_| {}).await;
    let bootstrap = gateway.bootstrap();
    let (scope_a, scope_b) = (format!("{tenant_a}/ns"), format!("{tenant_b}/ns"));
    const CALL: Duration = Duration::from_secs(30);
    let transactional = |scope: &str, token: &str| -> FutureProducer {
        client(&bootstrap, scope, token)
            .set("transactional.id", "app-1")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap()
    };
    let send = |p: &FutureProducer, value: String| {
        let p = p.clone();
        async move {
            p.send(
                FutureRecord::<(), _>::to("orders").payload(&value),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{value}: {e}"));
        }
    };

    let a = transactional(&scope_a, &token_a);
    a.init_transactions(CALL)
        .expect("tenant-a's transactional id");
    a.begin_transaction().unwrap();
    for i in 0..3 {
        send(&a, format!("committed-{i}")).await;
    }
    a.commit_transaction(CALL).expect("commit");
    a.begin_transaction().unwrap();
    send(&a, "aborted".into()).await;
    a.abort_transaction(CALL).expect("abort");

    // The same id in tenant-b's scope is another transactional id: tenant-a is not fenced.
    let b = transactional(&scope_b, &token_b);
    b.init_transactions(CALL)
        .expect("tenant-b's transactional id");
    a.begin_transaction().unwrap();
    send(&a, "committed-3".into()).await;
    a.commit_transaction(CALL)
        .expect("tenant-a is not fenced by tenant-b");

    // tenant-a's token may not use tenant-b's scope.
    let intruder = transactional(&scope_b, &token_a);
    let refused = intruder
        .init_transactions(CALL)
        .expect_err("tenant-a's token in tenant-b's scope");
    assert_eq!(
        refused.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{refused:?}"
    );

    let consumer: BaseConsumer = client(&bootstrap, &scope_a, &token_a)
        .set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&["orders"]).unwrap();
    let (_consumer, got) = poll_payloads(consumer, 4, Duration::from_secs(30)).await;
    assert_eq!(
        got,
        ["committed-0", "committed-1", "committed-2", "committed-3"]
    );
}

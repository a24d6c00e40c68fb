//! Starting a gateway in-process and stopping it: opens the backend, binds the listeners, and runs
//! a supervisor task that carries out the drain when the shutdown signal comes.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_amqp::{AmqpConfig, AmqpFrontend};
use gateway_amqp1::{Amqp1Config, Amqp1Frontend};
use gateway_core::budget::MemoryBudget;
use gateway_core::BackendRef;
use gateway_embedded::EmbeddedBackend;
use gateway_kafka::ClientInfo;
use gateway_kafka::{KafkaConfig, KafkaFrontend};
use gateway_pulsar::{PulsarBackend, PulsarConfig};
use gateway_security::{read_key, PrincipalConnections, TokenKey, TokenVerifier};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::config::{BackendKind, Config, ConfigErrors, GroupCoordination, HostPort};
use crate::listener::{Handler, Listener, Sessions};
use crate::shutdown::{Phase, ShutdownReport, ShutdownTrigger};
use crate::telemetry;
use crate::tls::{ReloadingAcceptor, TlsFiles};

/// Admin traffic is a few probes and scrapes; a small cap keeps it from eating descriptors.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Admin requests are short; after the drain they get this long to finish.
const ADMIN_GRACE: Duration = Duration::from_secs(1);

/// Why a gateway could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot load the token key: {0}")]
    TokenKey(String),
    #[error("cannot load kafka.internal_secret: {0}")]
    InternalSecret(String),
    #[error("cannot load the TLS certificate: {0}")]
    Tls(String),
    #[error("cannot create data directory {path}: {cause}")]
    DataDir { path: PathBuf, cause: io::Error },
    #[error("cannot open the {kind} backend: {cause}")]
    Backend {
        kind: &'static str,
        cause: gateway_core::BackendError,
    },
    #[error("cannot bind the {listener} listener to {addr}: {cause}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        cause: io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// A gateway running in this process. Dropping it starts a drain in the background; call
/// [`RunningGateway::shutdown`] to drain and wait.
pub struct RunningGateway {
    kafka_addr: Option<SocketAddr>,
    amqp_addr: Option<SocketAddr>,
    kafka_tls_addr: Option<SocketAddr>,
    kafka_internal_addr: Option<SocketAddr>,
    amqp_tls_addr: Option<SocketAddr>,
    kafka_advertised: HostPort,
    admin_addr: Option<SocketAddr>,
    admin_tls_addr: Option<SocketAddr>,
    backend: BackendRef,
    trigger: ShutdownTrigger,
    phase: watch::Receiver<Phase>,
    supervisor: Option<JoinHandle<ShutdownReport>>,
}

impl RunningGateway {
    /// The bound plaintext Kafka listener address (the real port when configured with port 0).
    ///
    /// # Panics
    /// When that listener is configured off.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
            .expect("the plaintext Kafka listener is off")
    }

    /// The bound plaintext AMQP 0-9-1 listener address.
    ///
    /// # Panics
    /// When that listener is configured off.
    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp_addr.expect("the plaintext AMQP listener is off")
    }

    /// The bound Kafka TLS listener, when one is configured.
    pub fn kafka_tls_addr(&self) -> Option<SocketAddr> {
        self.kafka_tls_addr
    }

    /// The bound internal listener for peers' forwarded group requests, when one is configured.
    pub fn kafka_internal_addr(&self) -> Option<SocketAddr> {
        self.kafka_internal_addr
    }

    /// The bound AMQP TLS listener (amqps), when one is configured.
    pub fn amqp_tls_addr(&self) -> Option<SocketAddr> {
        self.amqp_tls_addr
    }

    /// The address Kafka clients are told to connect to.
    pub fn kafka_advertised(&self) -> &HostPort {
        &self.kafka_advertised
    }

    /// The bound admin HTTP address.
    ///
    /// # Panics
    /// When the plain HTTP admin listener is configured off.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
            .expect("the plain HTTP admin listener is off")
    }

    /// The bound admin HTTPS address, when one is configured.
    pub fn admin_tls_addr(&self) -> Option<SocketAddr> {
        self.admin_tls_addr
    }

    pub fn backend(&self) -> &BackendRef {
        &self.backend
    }

    /// A handle that starts the drain, e.g. from a signal task.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    /// Starts the drain and returns once the protocol listeners are closed: new connections are
    /// refused from then on, while open sessions finish. Admin stays up and says "not ready".
    pub async fn stop_accepting(&self) {
        self.trigger.trigger();
        // Err only if the supervisor is gone, which means it already stopped everything.
        let _ = self
            .phase
            .clone()
            .wait_for(|phase| *phase >= Phase::ListenersClosed)
            .await;
    }

    /// Drains (see [`crate::shutdown`]) and waits until everything has stopped: at most the
    /// shutdown grace period plus a moment.
    pub async fn shutdown(self) -> ShutdownReport {
        self.trigger.trigger();
        self.wait().await
    }

    /// Waits until someone triggers the drain and it completes.
    pub async fn wait(mut self) -> ShutdownReport {
        let supervisor = self
            .supervisor
            .take()
            .expect("the supervisor is only taken here");
        supervisor.await.expect("gateway supervisor task panicked")
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            self.trigger.trigger();
        }
    }
}

/// Starts a gateway with the backend its config names. Binding to port 0 works; the advertised
/// Kafka address then carries the real port.
pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    config.validate()?;
    let backend = open_backend(&config)?;
    start_with_backend(config, backend).await
}

/// Starts a gateway on a backend built by the caller (e.g. a test double); the config's
/// `[backend]` section is ignored.
pub async fn start_with_backend(
    config: Config,
    backend: BackendRef,
) -> Result<RunningGateway, StartError> {
    let frontend_backend = backend.clone();
    let limits = config.limits.clone();
    let kafka = config.kafka.clone();
    let verifier = token_verifier(&config.auth)?;
    let auth_required = config.auth.required;
    // Loaded whether or not this instance has an internal listener: it also proves the secret
    // to the peers it forwards to.
    let peer_secret = config
        .kafka
        .internal_secret
        .as_ref()
        .map(|spec| load_peer_secret(spec.expose()))
        .transpose()?;
    start_with_handler(config, backend, move |addresses| {
        let advertised = &addresses.kafka;
        let kafka_config = KafkaConfig {
            advertised_host: advertised.host.clone(),
            advertised_port: advertised.port,
            default_tenant: kafka.default_tenant.clone(),
            default_namespace: kafka.default_namespace.clone(),
            auto_create_topics: kafka.auto_create_topics,
            default_partitions: kafka.default_partitions,
            max_frame_bytes: limits.max_frame_bytes,
            max_in_flight: limits.max_in_flight_per_connection,
            max_cached_readers: kafka.max_cached_readers,
            budget: addresses.budget.clone(),
            node_id: node_id(&kafka, advertised),
            groups: gateway_kafka::groups::GroupSettings {
                scoped_groups: auth_required,
                ..group_settings(&kafka, advertised, addresses)
            },
            forward_groups: kafka.group_coordination == GroupCoordination::Forward,
            auth: verifier.clone(),
            auth_required,
            auth_timeout: limits.auth_timeout,
            idle_timeout: limits.idle_timeout,
            principal_connections: Some(addresses.principal_connections.clone()),
            peer_secret: peer_secret.clone(),
            ..KafkaConfig::default()
        };
        let frontend = KafkaFrontend::new(kafka_config, frontend_backend);
        frontend.start();
        let tls = addresses.tls.clone();
        let handler = |internal: bool| -> Handler {
            let (frontend, tls) = (frontend.clone(), tls.clone());
            Arc::new(move |stream, drain| {
                let local = stream.local_addr().ok();
                let client = ClientInfo {
                    client_id: String::new(),
                    // DescribeGroups reports each member's host, as Kafka does.
                    host: stream
                        .peer_addr()
                        .map(|a| format!("/{}", a.ip()))
                        .unwrap_or_default(),
                    // Peers forwarding group requests: they must prove the fleet's secret,
                    // and are served the group APIs only.
                    internal,
                    // Clients of the TLS listener are sent back to it.
                    advertised: tls
                        .as_ref()
                        .filter(|(bound, _)| stream.is_tls() && local == Some(*bound))
                        .map(|(_, advertised)| (advertised.host.clone(), advertised.port)),
                };
                Box::pin(frontend.clone().serve_connection(stream, client, drain))
            })
        };
        KafkaHandlers {
            clients: handler(false),
            internal: handler(true),
        }
    })
    .await
}

/// The fleet's shared secret, read from its spec (the secret or `file:///path`).
fn load_peer_secret(spec: &str) -> Result<Arc<gateway_security::PeerSecret>, StartError> {
    gateway_security::PeerSecret::load(spec)
        .map(Arc::new)
        .map_err(|e| StartError::InternalSecret(e.to_string()))
}

/// The Kafka connection handlers: one for the client listeners (plaintext and TLS), one for
/// the internal listener, which only peers use. A listener, not a connection's address, tells
/// them apart: a wildcard bind accepts connections on every local address.
pub(crate) struct KafkaHandlers {
    pub clients: Handler,
    pub internal: Handler,
}

impl From<Handler> for KafkaHandlers {
    /// The same handler on every Kafka listener (tests' stand-ins).
    fn from(handler: Handler) -> KafkaHandlers {
        KafkaHandlers {
            internal: handler.clone(),
            clients: handler,
        }
    }
}

/// The token verifier the auth settings describe, if any (DESIGN.md §8).
pub(crate) fn token_verifier(
    auth: &crate::config::AuthSettings,
) -> Result<Option<Arc<TokenVerifier>>, StartError> {
    let key = match (&auth.token_secret_key, &auth.token_public_key) {
        (Some(spec), _) => {
            TokenKey::Secret(read_key(spec).map_err(|e| StartError::TokenKey(e.to_string()))?)
        }
        (None, Some(spec)) => {
            TokenKey::Public(read_key(spec).map_err(|e| StartError::TokenKey(e.to_string()))?)
        }
        (None, None) => return Ok(None),
    };
    TokenVerifier::new(key)
        .map(|v| Some(Arc::new(v)))
        .map_err(|e| StartError::TokenKey(e.to_string()))
}

/// The configured broker id, else one derived from the advertised address. Two gateways on one
/// Pulsar namespace form a fleet (they share group coordination), and a client told that the
/// coordinator is another instance must not mistake it for the broker it already knows, which a
/// shared default id would make it do. Behind one balancer every instance advertises the same
/// address and so gets the same id, which is right there: clients see one broker.
fn node_id(kafka: &crate::config::KafkaSettings, advertised: &HostPort) -> i32 {
    kafka.node_id.unwrap_or_else(|| {
        (gateway_kafka::groups::coordinator::fnv1a(advertised.to_string().as_bytes())
            % 1_000_000_000) as i32
    })
}

/// Where the Kafka listeners are reached, known once they are bound.
pub(crate) struct KafkaAddresses {
    /// What Metadata and FindCoordinator tell clients.
    pub kafka: HostPort,
    /// The internal listener's bound and advertised addresses, when there is one.
    pub internal: Option<(SocketAddr, HostPort)>,
    /// The TLS listener's bound and advertised addresses, when there is one.
    pub tls: Option<(SocketAddr, HostPort)>,
    /// Authenticated connections per principal, counted across the Kafka and AMQP listeners.
    pub principal_connections: Arc<PrincipalConnections>,
    /// Bytes in flight, shared with the AMQP listeners.
    pub budget: Arc<MemoryBudget>,
}

/// The coordinator keeps its shards next to the Kafka topics of the default namespace, where the
/// gateway is known to be allowed to write.
fn group_settings(
    kafka: &crate::config::KafkaSettings,
    advertised: &HostPort,
    addresses: &KafkaAddresses,
) -> gateway_kafka::groups::GroupSettings {
    use gateway_kafka::groups::consumer_group::ConsumerGroupSettings;
    use gateway_kafka::groups::coordinator::Instance;
    use gateway_kafka::groups::state::Timing;
    let options = &kafka.groups;
    gateway_kafka::groups::GroupSettings {
        shards: options.shards,
        state_topic: gateway_core::TopicName::new(
            &kafka.default_tenant,
            &kafka.default_namespace,
            &options.state_topic,
        ),
        instance: Instance {
            node_id: node_id(kafka, advertised),
            host: advertised.host.clone(),
            port: advertised.port,
            internal: addresses.internal.as_ref().map(|(_, a)| a.to_string()),
            tls: addresses.tls.as_ref().map(|(_, a)| a.to_string()),
        },
        timing: Timing {
            initial_rebalance_delay: Duration::from_millis(options.initial_rebalance_delay_ms),
            min_session_timeout: Duration::from_millis(options.min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(options.max_session_timeout_ms),
        },
        consumer: ConsumerGroupSettings {
            session_timeout: Duration::from_millis(options.consumer_session_timeout_ms),
            heartbeat_interval: Duration::from_millis(options.consumer_heartbeat_interval_ms),
            ..ConsumerGroupSettings::default()
        },
        offsets_retention: Duration::from_secs(options.offsets_retention_minutes * 60),
        ..Default::default()
    }
}

fn open_backend(config: &Config) -> Result<BackendRef, StartError> {
    let settings = &config.backend;
    match settings.kind {
        BackendKind::Pulsar => {
            // Validation guarantees both URLs. Nothing connects yet: /readyz says when Pulsar
            // answers; only unusable TLS files or token settings stop the start.
            let token = settings
                .pulsar_token
                .as_deref()
                .map(gateway_pulsar::TokenSource::parse)
                .transpose()
                .map_err(|cause| StartError::Backend {
                    kind: "pulsar",
                    cause,
                })?;
            let config = PulsarConfig {
                service_url: settings.pulsar_url.clone().unwrap_or_default(),
                admin_url: settings.pulsar_admin_url.clone().unwrap_or_default(),
                token,
                tls: config.pulsar_tls(),
                operation_timeout: settings.pulsar_operation_timeout,
                compression: gateway_pulsar::proto::compression::LZ4,
            };
            let backend = PulsarBackend::new(config).map_err(|cause| StartError::Backend {
                kind: "pulsar",
                cause,
            })?;
            Ok(backend)
        }
        BackendKind::Embedded => {
            let path = settings.data_dir.clone();
            std::fs::create_dir_all(&path).map_err(|cause| StartError::DataDir {
                path: path.clone(),
                cause,
            })?;
            // Opening reads the store from disk; it happens once, before anything is served.
            let backend = EmbeddedBackend::open(&path).map_err(|cause| StartError::Backend {
                kind: "embedded",
                cause,
            })?;
            Ok(backend)
        }
    }
}

/// Starts the listeners and the supervisor. `kafka_handler` builds the Kafka connection handler
/// once the advertised address is known; tests pass their own.
pub(crate) async fn start_with_handler(
    config: Config,
    backend: BackendRef,
    kafka_handler: impl FnOnce(&KafkaAddresses) -> KafkaHandlers,
) -> Result<RunningGateway, StartError> {
    config.validate()?;
    let metrics = telemetry::metrics_handle();

    let bind = |listener: &'static str, addr: SocketAddr, max: usize| async move {
        Listener::bind(listener, addr, max)
            .await
            .map_err(|cause| StartError::Bind {
                listener,
                addr,
                cause,
            })
    };
    let max = config.limits.max_connections_per_listener;
    // A listener configured off is `None`.
    let bind_if = |listener: &'static str, addr: Option<SocketAddr>, max: usize| async move {
        match addr {
            Some(addr) => bind(listener, addr, max).await.map(Some),
            None => Ok(None),
        }
    };
    let kafka = bind_if("kafka", config.kafka.listen, max).await?;
    let internal = bind_if("kafka-internal", config.kafka.internal_listen, max).await?;
    let amqp = bind_if("amqp", config.amqp.listen, max).await?;
    let admin = bind_if("admin", config.admin.listen, ADMIN_MAX_CONNECTIONS).await?;
    let tls_files = (&config.tls.cert_file, &config.tls.key_file);
    let tls = match tls_files {
        (Some(cert_file), Some(key_file))
            if config.tls.kafka_listen.is_some()
                || config.tls.amqp_listen.is_some()
                || config.tls.admin_listen.is_some() =>
        {
            Some(
                ReloadingAcceptor::new(TlsFiles {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    client_ca_file: config.tls.client_ca_file.clone(),
                })
                .map_err(StartError::Tls)?,
            )
        }
        _ => None,
    };
    let tls_listener = |name: &'static str, addr: Option<SocketAddr>, max: usize| {
        let tls = tls.clone();
        async move {
            match (addr, tls) {
                (Some(addr), Some(tls)) => Ok(Some(bind(name, addr, max).await?.with_tls(tls))),
                _ => Ok::<_, StartError>(None),
            }
        }
    };
    let kafka_tls = tls_listener("kafka-tls", config.tls.kafka_listen, max).await?;
    let amqp_tls = tls_listener("amqp-tls", config.tls.amqp_listen, max).await?;
    let admin_tls =
        tls_listener("admin-tls", config.tls.admin_listen, ADMIN_MAX_CONNECTIONS).await?;
    let bound = |l: &Option<Listener>| l.as_ref().map(Listener::local_addr);
    let (kafka_addr, kafka_tls_addr) = (bound(&kafka), bound(&kafka_tls));
    let (amqp_addr, amqp_tls_addr) = (bound(&amqp), bound(&amqp_tls));
    let (admin_addr, admin_tls_addr) = (bound(&admin), bound(&admin_tls));
    // The address this instance goes by for Kafka (peers name it as a group's coordinator):
    // the plaintext listener's, or the TLS listener's when only that one is on.
    let advertised = match (kafka_addr, kafka_tls_addr) {
        (Some(bound), _) => advertised_address(config.kafka.advertised.as_ref(), bound),
        (None, Some(bound)) => advertised_address(
            config
                .tls
                .kafka_advertised
                .as_ref()
                .or(config.kafka.advertised.as_ref()),
            bound,
        ),
        // No Kafka listener: nobody is told this address.
        (None, None) => advertised_address(
            config.kafka.advertised.as_ref(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ),
    };
    if advertised
        .host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        warn!(%advertised, "advertising an unspecified address; set kafka.advertised to a name clients can reach");
    }

    let (drain_tx, drain_rx) = watch::channel(false);
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let sessions = Sessions::default();
    let admin_sessions = Sessions::default();
    let state = Arc::new(AdminState::new(backend.clone(), drain_rx.clone(), metrics));

    let internal_addresses = internal.as_ref().map(|l| {
        let bound = l.local_addr();
        (
            bound,
            advertised_address(config.kafka.internal_advertised.as_ref(), bound),
        )
    });
    let principal_connections =
        PrincipalConnections::new(config.limits.max_connections_per_principal);
    let budget = MemoryBudget::new(config.limits.max_in_flight_bytes);
    let handlers = kafka_handler(&KafkaAddresses {
        principal_connections: principal_connections.clone(),
        budget: budget.clone(),
        kafka: advertised.clone(),
        internal: internal_addresses.clone(),
        tls: kafka_tls_addr.map(|bound| {
            (
                bound,
                advertised_address(config.tls.kafka_advertised.as_ref(), bound),
            )
        }),
    });
    // Every protocol listener drains together; their sessions are tracked together. The admin
    // listeners stop later, on their own signal, so that probes answer during the drain.
    let mut listener_tasks = Vec::new();
    let mut serve = |listener: Option<Listener>, handler: &Handler, what: &str| {
        spawn_listener(
            listener,
            handler,
            what,
            &drain_rx,
            &sessions,
            &mut listener_tasks,
        )
    };
    serve(kafka, &handlers.clients, "kafka");
    serve(kafka_tls, &handlers.clients, "kafka TLS");
    if let Some((bound, advertised)) = &internal_addresses {
        info!(addr = %bound, %advertised, "kafka internal listener (forwarded group requests)");
    }
    serve(internal, &handlers.internal, "kafka internal");
    let amqp_connections = amqp_handler(&config, backend.clone(), principal_connections, budget)?;
    serve(amqp, &amqp_connections, "amqp");
    serve(amqp_tls, &amqp_connections, "amqp TLS");
    let admin_handler = admin::handler(state.clone());
    let mut admin_tasks = Vec::new();
    for (listener, what) in [(admin, "admin"), (admin_tls, "admin TLS")] {
        let (stop, sessions) = (&admin_stop_rx, &admin_sessions);
        spawn_listener(
            listener,
            &admin_handler,
            what,
            stop,
            sessions,
            &mut admin_tasks,
        );
    }
    state.set_listeners_bound();
    info!(%advertised, "kafka advertised");
    info!(backend = backend.kind(), "gateway started");

    let supervisor = tokio::spawn(supervise(Supervised {
        drain: drain_rx,
        grace: config.limits.shutdown_grace_period,
        listener_tasks,
        sessions,
        admin_stop: admin_stop_tx,
        admin_tasks,
        admin_sessions,
        phase: phase_tx,
    }));

    Ok(RunningGateway {
        kafka_addr,
        amqp_addr,
        kafka_tls_addr,
        kafka_internal_addr: internal_addresses.as_ref().map(|(bound, _)| *bound),
        amqp_tls_addr,
        kafka_advertised: advertised,
        admin_addr,
        admin_tls_addr,
        backend,
        trigger: ShutdownTrigger(Arc::new(drain_tx)),
        phase: phase_rx,
        supervisor: Some(supervisor),
    })
}

/// Runs `listener` (when it is on) until `stop`, its sessions tracked in `sessions`.
fn spawn_listener(
    listener: Option<Listener>,
    handler: &Handler,
    what: &str,
    stop: &watch::Receiver<bool>,
    sessions: &Sessions,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    if let Some(listener) = listener {
        info!(addr = %listener.local_addr(), "{what} listening");
        tasks.push(tokio::spawn(listener.run(
            handler.clone(),
            stop.clone(),
            sessions.clone(),
        )));
    }
}

/// The AMQP listeners' connection handler: 0-9-1 or 1.0 by the protocol header
/// (`amqp_port`). Both front ends authenticate alike (users, or a Pulsar token as PLAIN's
/// password) and share the per-principal connection limit.
fn amqp_handler(
    config: &Config,
    backend: BackendRef,
    principal_connections: Arc<PrincipalConnections>,
    budget: Arc<MemoryBudget>,
) -> Result<Handler, StartError> {
    let settings = &config.amqp;
    let (tenant, namespace) = settings
        .default_namespace
        .split_once('/')
        .unwrap_or(("public", "default"));
    let verifier = token_verifier(&config.auth)?;
    let frontend = AmqpFrontend::new(
        AmqpConfig {
            default_tenant: tenant.to_owned(),
            default_namespace: namespace.to_owned(),
            users: settings.users.clone(),
            auth: verifier.clone(),
            auth_required: config.auth.required,
            principal_connections: Some(principal_connections.clone()),
            frame_max: settings.frame_max,
            heartbeat_secs: settings.heartbeat_secs,
            max_unpersisted_bytes: budget.capacity(),
            budget: Some(budget.clone()),
            ..AmqpConfig::default()
        },
        backend.clone(),
    );
    let amqp1 = Amqp1Frontend::new(
        Amqp1Config {
            default_tenant: tenant.to_owned(),
            default_namespace: namespace.to_owned(),
            users: settings.users.clone(),
            auth: verifier,
            auth_required: config.auth.required,
            principal_connections: Some(principal_connections),
            // The same limits as 0-9-1: frame_max, and heartbeat_secs as the idle-time-out asked
            // of clients (they send something every half of it).
            max_frame_size: settings.frame_max.max(4096),
            idle_timeout: Duration::from_secs(u64::from(settings.heartbeat_secs)),
            budget: Some(budget),
            ..Amqp1Config::default()
        },
        backend,
    );
    Ok(Arc::new(move |stream, drain| {
        crate::amqp_port::serve(frontend.clone(), amqp1.clone(), stream, drain)
    }))
}

/// The configured advertised address; where it is unset or has port 0, the bound one.
fn advertised_address(configured: Option<&HostPort>, bound: SocketAddr) -> HostPort {
    match configured {
        Some(HostPort { host, port: 0 }) => HostPort {
            host: host.clone(),
            port: bound.port(),
        },
        Some(configured) => configured.clone(),
        None => HostPort {
            host: bound.ip().to_string(),
            port: bound.port(),
        },
    }
}

/// Everything the supervisor needs to carry out the drain.
struct Supervised {
    drain: watch::Receiver<bool>,
    grace: Duration,
    /// The accept loops of the Kafka and AMQP listeners, plaintext and TLS.
    listener_tasks: Vec<JoinHandle<()>>,
    sessions: Sessions,
    admin_stop: watch::Sender<bool>,
    admin_tasks: Vec<JoinHandle<()>>,
    admin_sessions: Sessions,
    phase: watch::Sender<Phase>,
}

async fn supervise(mut s: Supervised) -> ShutdownReport {
    // Err means every trigger was dropped, which also means "stop".
    let _ = s.drain.wait_for(|draining| *draining).await;
    let started = Instant::now();
    info!(
        grace_ms = s.grace.as_millis() as u64,
        "draining: no new connections, sessions finishing"
    );

    // The accept loop sees the same signal; once it has returned, its socket is closed.
    for task in &mut s.listener_tasks {
        let _ = task.await;
    }
    s.phase.send_replace(Phase::ListenersClosed);

    let aborted_sessions = wait_or_abort(&s.sessions, s.grace).await;
    if aborted_sessions > 0 {
        warn!(
            aborted_sessions,
            "shutdown grace period ran out; closed the remaining sessions"
        );
    }

    // Admin goes last so that /readyz answers 503 throughout the drain.
    s.admin_stop.send_replace(true);
    for task in &mut s.admin_tasks {
        let _ = task.await;
    }
    wait_or_abort(&s.admin_sessions, ADMIN_GRACE).await;

    s.phase.send_replace(Phase::Stopped);
    let report = ShutdownReport {
        aborted_sessions,
        drain_time: started.elapsed(),
    };
    info!(
        drain_ms = report.drain_time.as_millis() as u64,
        "gateway stopped"
    );
    report
}

/// Waits up to `grace` for the sessions to end, then cuts off the rest; returns how many were cut.
async fn wait_or_abort(sessions: &Sessions, grace: Duration) -> usize {
    sessions.tracker.close();
    if tokio::time::timeout(grace, sessions.tracker.wait())
        .await
        .is_ok()
    {
        return 0;
    }
    let remaining = sessions.tracker.len();
    sessions.abort.cancel();
    sessions.tracker.wait().await;
    remaining
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{http_get, http_request};
    use tempfile::TempDir;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A real embedded backend in a fresh directory; keep the `TempDir` for the test's duration.
    fn embedded() -> (TempDir, BackendRef) {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = EmbeddedBackend::open(dir.path()).expect("open embedded backend");
        (dir, backend)
    }

    fn test_config(grace: Duration) -> Config {
        let mut config = Config::for_tests("/nonexistent/unused");
        config.limits.shutdown_grace_period = grace;
        config
    }

    /// A session with one request in flight when the drain starts: it greets, waits for the
    /// drain, then still reads and answers one more line before closing.
    fn finishes_after_drain() -> Handler {
        Arc::new(|stream, mut drain| {
            Box::pin(async move {
                let mut stream = BufReader::new(stream);
                stream.write_all(b"hello\n").await?;
                let _ = drain.wait_for(|draining| *draining).await;
                let mut line = String::new();
                stream.read_line(&mut line).await?;
                stream.write_all(format!("done {line}").as_bytes()).await?;
                Ok(())
            })
        })
    }

    /// A session that ignores the drain and waits for the client forever.
    fn ignores_drain() -> Handler {
        Arc::new(|mut stream, _drain| {
            Box::pin(async move {
                stream.write_all(b"hello\n").await?;
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await?;
                Ok(())
            })
        })
    }

    async fn read_line(stream: &mut BufReader<TcpStream>) -> String {
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, stream.read_line(&mut line))
            .await
            .expect("line in time")
            .expect("read");
        line
    }

    #[tokio::test]
    async fn admin_endpoints() {
        let (_dir, backend) = embedded();
        let gateway =
            start_with_handler(test_config(PATIENCE), backend, |_| ignores_drain().into())
                .await
                .unwrap();
        let admin = gateway.admin_addr();

        assert_eq!(http_get(admin, "/livez").await, (200, "ok\n".to_string()));
        // Ready once started on the embedded backend; 503 while draining is checked in
        // `drain_lets_sessions_finish_and_refuses_new_connections`. The "backend unreachable ->
        // 503" case arrives with the Pulsar backend, the first backend that can be unreachable.
        assert_eq!(
            http_get(admin, "/readyz").await,
            (200, "ready\n".to_string())
        );

        // One Kafka connection, so its counters exist in the scrape.
        let mut client = BufReader::new(TcpStream::connect(gateway.kafka_addr()).await.unwrap());
        assert_eq!(read_line(&mut client).await, "hello\n");
        let (status, metrics) = http_get(admin, "/metrics").await;
        assert_eq!(status, 200);
        for expected in [
            "pulsar_gateway_build_info{version=\"",
            "pulsar_gateway_connections_accepted_total{listener=\"kafka\"}",
            "pulsar_gateway_connections_active{listener=\"kafka\"}",
            "pulsar_gateway_connections_refused_total{listener=\"kafka\",reason=\"limit\"}",
        ] {
            assert!(
                metrics.contains(expected),
                "missing {expected} in:\n{metrics}"
            );
        }

        assert_eq!(http_get(admin, "/nope").await.0, 404);
        assert_eq!(http_request(admin, "POST", "/livez").await.0, 405);

        drop(client);
        let report = tokio::time::timeout(PATIENCE, gateway.shutdown())
            .await
            .expect("shutdown in time");
        assert_eq!(report.aborted_sessions, 0);
    }

    #[tokio::test]
    async fn drain_lets_sessions_finish_and_refuses_new_connections() {
        let grace = Duration::from_secs(5);
        let (_dir, backend) = embedded();
        let gateway = start_with_handler(test_config(grace), backend, |_| {
            finishes_after_drain().into()
        })
        .await
        .unwrap();
        let (kafka, admin) = (gateway.kafka_addr(), gateway.admin_addr());
        assert_eq!(http_get(admin, "/readyz").await.0, 200);

        let mut session = BufReader::new(TcpStream::connect(kafka).await.unwrap());
        assert_eq!(read_line(&mut session).await, "hello\n");

        tokio::time::timeout(PATIENCE, gateway.stop_accepting())
            .await
            .expect("listeners close in time");
        assert!(
            TcpStream::connect(kafka).await.is_err(),
            "new connections are refused while draining"
        );
        let (status, body) = http_get(admin, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));
        assert_eq!(
            http_get(admin, "/livez").await.0,
            200,
            "still alive while draining"
        );

        // The open session still gets its answer.
        session.write_all(b"last request\n").await.unwrap();
        assert_eq!(read_line(&mut session).await, "done last request\n");
        assert_eq!(
            read_line(&mut session).await,
            "",
            "then the server closes it"
        );

        let started = Instant::now();
        let report = tokio::time::timeout(PATIENCE, gateway.shutdown())
            .await
            .expect("shutdown in time");
        assert_eq!(report.aborted_sessions, 0);
        assert!(
            started.elapsed() < grace,
            "no waiting for a grace period nobody needs"
        );
        assert!(
            TcpStream::connect(admin).await.is_err(),
            "admin is closed once stopped"
        );
    }

    #[tokio::test]
    async fn sessions_still_open_after_the_grace_period_are_closed() {
        let grace = Duration::from_millis(200);
        let (_dir, backend) = embedded();
        let gateway = start_with_handler(test_config(grace), backend, |_| ignores_drain().into())
            .await
            .unwrap();
        let mut stuck = BufReader::new(TcpStream::connect(gateway.kafka_addr()).await.unwrap());
        assert_eq!(read_line(&mut stuck).await, "hello\n");

        let started = Instant::now();
        let report = tokio::time::timeout(PATIENCE, gateway.shutdown())
            .await
            .expect("shutdown in time");
        let took = started.elapsed();
        assert_eq!(report.aborted_sessions, 1);
        assert!(
            took >= grace,
            "waited for the grace period first ({took:?})"
        );
        assert!(
            took < grace + ADMIN_GRACE + Duration::from_secs(2),
            "took {took:?}"
        );
        assert_eq!(
            read_line(&mut stuck).await,
            "",
            "the stuck session was closed"
        );
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_gateway() {
        let (_dir, backend) = embedded();
        let gateway =
            start_with_handler(test_config(PATIENCE), backend, |_| ignores_drain().into())
                .await
                .unwrap();
        let mut phase = gateway.phase.clone();
        drop(gateway);
        tokio::time::timeout(PATIENCE, phase.wait_for(|p| *p == Phase::Stopped))
            .await
            .expect("stops in time")
            .ok();
        assert_eq!(*phase.borrow(), Phase::Stopped);
    }

    #[tokio::test]
    async fn advertises_the_bound_port() {
        let mut config = test_config(PATIENCE);
        let (_dir, backend) = embedded();
        let gateway =
            start_with_handler(config.clone(), backend.clone(), |_| ignores_drain().into())
                .await
                .unwrap();
        let advertised = gateway.kafka_advertised().clone();
        assert_eq!(advertised.host, "127.0.0.1");
        assert_eq!(advertised.port, gateway.kafka_addr().port());
        assert_ne!(advertised.port, 0);
        gateway.shutdown().await;

        config.kafka.advertised = Some("gw.example.com:0".parse().unwrap());
        let gateway = start_with_handler(config, backend, |_| ignores_drain().into())
            .await
            .unwrap();
        assert_eq!(
            gateway.kafka_advertised().to_string(),
            format!("gw.example.com:{}", gateway.kafka_addr().port())
        );
        gateway.shutdown().await;
    }

    #[tokio::test]
    async fn unreachable_pulsar_is_not_ready() {
        let mut config = test_config(PATIENCE);
        config.backend.kind = BackendKind::Pulsar;
        // A closed loopback port: Pulsar is "down".
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        config.backend.pulsar_url = Some(format!("pulsar://127.0.0.1:{closed}"));
        config.backend.pulsar_admin_url = Some(format!("http://127.0.0.1:{closed}"));
        let gateway = start(config).await.expect("starts without Pulsar");
        let (status, body) = http_get(gateway.admin_addr(), "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(http_get(gateway.admin_addr(), "/livez").await.0, 200);
        gateway.shutdown().await;
    }

    #[tokio::test]
    async fn invalid_config_and_busy_ports_are_start_errors() {
        let mut config = test_config(PATIENCE);
        config.kafka.default_partitions = 0;
        assert!(matches!(start(config).await, Err(StartError::Config(_))));

        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = test_config(PATIENCE);
        config.admin.listen = Some(taken.local_addr().unwrap());
        let (_dir, backend) = embedded();
        let err = start_with_backend(config, backend)
            .await
            .err()
            .expect("port is taken");
        assert!(
            matches!(
                err,
                StartError::Bind {
                    listener: "admin",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn kafka_sessions_end_on_drain() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        config.limits.shutdown_grace_period = PATIENCE;
        let gateway = start(config).await.unwrap();
        let mut client = TcpStream::connect(gateway.kafka_addr()).await.unwrap();

        // One ApiVersions v0 request (key 18, correlation id 1, null client id), so the session is
        // surely accepted and serving before the drain starts.
        client
            .write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
            .await
            .unwrap();
        let mut size = [0; 4];
        tokio::time::timeout(PATIENCE, client.read_exact(&mut size))
            .await
            .expect("answer in time")
            .unwrap();
        let mut response = vec![0; u32::from_be_bytes(size) as usize];
        client.read_exact(&mut response).await.unwrap();
        assert_eq!(&response[..4], &[0, 0, 0, 1], "correlation id echoed");

        let report = tokio::time::timeout(PATIENCE, gateway.shutdown())
            .await
            .expect("shutdown in time");
        assert_eq!(
            report.aborted_sessions, 0,
            "the idle Kafka session honoured the drain signal"
        );
        let mut rest = Vec::new();
        assert_eq!(
            client.read_to_end(&mut rest).await.unwrap(),
            0,
            "closed without more data"
        );
    }

    #[tokio::test]
    async fn starts_on_the_embedded_backend() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = start(Config::for_tests(dir.path().join("data")))
            .await
            .unwrap();
        assert_eq!(gateway.backend().kind(), "embedded");
        assert!(dir.path().join("data").is_dir());
        let admin = gateway.admin_addr();
        // Readiness is the backend's call; it must become ready promptly.
        tokio::time::timeout(PATIENCE, async {
            while http_get(admin, "/readyz").await.0 != 200 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("embedded backend becomes ready");
        let report = tokio::time::timeout(PATIENCE, gateway.shutdown())
            .await
            .expect("shutdown in time");
        assert_eq!(report.aborted_sessions, 0);
    }
}

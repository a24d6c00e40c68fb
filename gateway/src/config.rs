//! Configuration (DESIGN.md §9): defaults, then a TOML file, then `PULSAR_GATEWAY_*` environment
//! variables, then CLI flags; each layer overrides the one before.
//!
//! Every option is described once, in [`OPTIONS`]: its TOML key, CLI flag (the environment variable
//! is derived from the flag), help text, and how to parse and print it. The layers are merged as raw
//! text first and parsed once at the end, so one run reports every bad value together instead of
//! stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// Holds secret settings (`kafka.internal_secret`) so that no `Debug` of a config shows them.
pub use gateway_security::Secret;

/// Prefix of every environment variable the gateway reads.
pub const ENV_PREFIX: &str = "PULSAR_GATEWAY_";
/// Environment variable naming the config file (same as `--config`).
pub const CONFIG_FILE_ENV: &str = "PULSAR_GATEWAY_CONFIG";

/// The gateway's complete, validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub amqp: AmqpSettings,
    pub admin: AdminSettings,
    pub backend: BackendSettings,
    pub log: LogSettings,
    pub limits: Limits,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
}

/// TLS listeners (DESIGN.md §8). One certificate serves every TLS listener.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSettings {
    pub kafka_listen: Option<SocketAddr>,
    /// What Metadata tells clients of the TLS listener; by default its bound address.
    pub kafka_advertised: Option<HostPort>,
    pub amqp_listen: Option<SocketAddr>,
    /// HTTPS for `/livez`, `/readyz` and `/metrics`.
    pub admin_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate issued by one.
    pub client_ca_file: Option<PathBuf>,
}

/// Client authentication (DESIGN.md §8): Pulsar tokens, checked with Pulsar's key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthSettings {
    /// Pulsar's `tokenSecretKey` (HS256), as `file:///path` or `data:;base64,...`.
    pub token_secret_key: Option<String>,
    /// Pulsar's `tokenPublicKey` (RS256), in the same forms.
    pub token_public_key: Option<String>,
    /// Every listener requires authentication.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// Address the plaintext Kafka listener binds; `None`: off (TLS only).
    pub listen: Option<SocketAddr>,
    /// Address Metadata hands to clients; `None` means the bound listen address. A port of 0
    /// also means "the bound port".
    pub advertised: Option<HostPort>,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    pub default_tenant: String,
    pub default_namespace: String,
    /// The broker id Metadata and FindCoordinator report for this instance; instances of a fleet
    /// whose clients reach each one directly need distinct ids. `None`: derived from the
    /// advertised address, so instances advertising different addresses differ.
    pub node_id: Option<i32>,
    /// How clients reach the group coordinators of a fleet.
    pub group_coordination: GroupCoordination,
    /// Listener for group requests forwarded by peer instances (forward mode).
    pub internal_listen: Option<SocketAddr>,
    /// Address peers use to reach `internal_listen`; by default the bound address.
    pub internal_advertised: Option<HostPort>,
    /// The fleet's shared secret, as given: the secret itself or `file:///path` (see
    /// [`gateway_security::PeerSecret::load`]). Peers prove it on `internal_listen`; required
    /// with it.
    pub internal_secret: Option<Secret>,
    /// Consumer group coordinator settings.
    pub groups: GroupOptions,
    /// Fetch readers kept open between fetches across all connections (each holds a backend
    /// subscription and up to a fetch's worth of prefetched records).
    pub max_cached_readers: usize,
}

/// The group coordinator's tunables, named after Kafka's broker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOptions {
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u64,
    /// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    /// Kafka's `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms`:
    /// the session of a member of the consumer group protocol (KIP-848), which the coordinator
    /// sets, and how often it is told to heartbeat.
    pub consumer_session_timeout_ms: u64,
    pub consumer_heartbeat_interval_ms: u64,
    /// Shards (table topics) the groups are spread over. Changing it moves groups between
    /// shards, so it is fixed for the life of a deployment.
    pub shards: u32,
    /// Name of the table topics (`<name>-<shard>`, in the default namespace) holding the groups'
    /// state. Gateways that share it are one fleet; a distinct name keeps a fleet's groups
    /// apart from another fleet's in the same namespace. Always starts with `__gateway_`, so
    /// that Kafka clients never see it.
    pub state_topic: String,
    /// Kafka's `offsets.retention.minutes`: committed offsets of a group without members are
    /// deleted this long after it became empty (after their last commit, for consumers that
    /// only commit).
    pub offsets_retention_minutes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AmqpSettings {
    /// Address the plaintext AMQP 0-9-1 listener binds; `None`: off.
    pub listen: Option<SocketAddr>,
    /// The Pulsar `tenant/namespace` vhost `/` maps to.
    pub default_namespace: String,
    /// PLAIN credentials accepted until token authentication is configured.
    pub users: Vec<(String, String)>,
    /// Proposed in connection.tune; clients may lower them.
    pub frame_max: u32,
    pub heartbeat_secs: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Address of the plain HTTP admin server (`/livez`, `/readyz`, `/metrics`); `None`: off.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    pub kind: BackendKind,
    /// Where the embedded backend keeps its data.
    pub data_dir: PathBuf,
    pub pulsar_url: Option<String>,
    pub pulsar_admin_url: Option<String>,
    /// The gateway's own credential for Pulsar: a token, `token:<jwt>`, or `file:///path`
    /// holding one (read again when it changes).
    pub pulsar_token: Option<String>,
    /// PEM CA certificates that sign the brokers' certificates; `None`: the system's roots.
    pub pulsar_tls_trust_certs_file: Option<PathBuf>,
    /// PEM certificate and key the gateway presents to Pulsar (mutual TLS, `AuthenticationTls`).
    pub pulsar_tls_cert_file: Option<PathBuf>,
    pub pulsar_tls_key_file: Option<PathBuf>,
    /// Accept any certificate from Pulsar. Unsafe: for tests only.
    pub pulsar_tls_allow_insecure: bool,
    /// Deadline of every Pulsar operation (Pulsar's `operationTimeoutMs`).
    pub pulsar_operation_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// A level (`info`) or a full `tracing` filter (`info,gateway_kafka=debug`).
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest Kafka request accepted; checked before the request is read into memory.
    pub max_frame_bytes: usize,
    /// Requests of one connection in flight at once before socket reads pause.
    pub max_in_flight_per_connection: usize,
    /// Bytes in flight across the gateway (records read and not yet persisted, fetch responses
    /// being assembled) before connections stop reading their sockets.
    pub max_in_flight_bytes: usize,
    /// Open connections per listener; further ones are accepted and closed at once.
    pub max_connections_per_listener: usize,
    /// Authenticated connections one principal (role) may hold across all listeners.
    pub max_connections_per_principal: usize,
    /// How long a client has to authenticate when authentication is required.
    pub auth_timeout: Duration,
    /// A Kafka connection with no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// How long a drain waits for sessions to finish before closing them.
    pub shutdown_grace_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Embedded,
    Pulsar,
}

/// Where FindCoordinator sends clients in a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCoordination {
    /// Clients can reach each instance at its own advertised address: FindCoordinator names the
    /// instance coordinating the group (instances need distinct `kafka.node_id`s).
    Addressable,
    /// Clients reach all instances through one address (a load balancer): FindCoordinator names
    /// that address, and instances forward group requests to the coordinating instance's
    /// `kafka.internal_listen`.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A `host:port` pair whose host may be a DNS name (unlike [`SocketAddr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Without brackets, also for IPv6.
    pub host: String,
    pub port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaSettings {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9092))),
                advertised: None,
                auto_create_topics: true,
                default_partitions: 1,
                default_tenant: "public".into(),
                default_namespace: "default".into(),
                node_id: None,
                group_coordination: GroupCoordination::Addressable,
                internal_listen: None,
                internal_advertised: None,
                internal_secret: None,
                groups: GroupOptions {
                    initial_rebalance_delay_ms: 3000,
                    min_session_timeout_ms: 6000,
                    max_session_timeout_ms: 1_800_000,
                    consumer_session_timeout_ms: 45_000,
                    consumer_heartbeat_interval_ms: 5_000,
                    shards: 16,
                    state_topic: "__gateway_kafka_groups".into(),
                    offsets_retention_minutes: 10_080,
                },
                max_cached_readers: 4096,
            },
            amqp: AmqpSettings {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 5672))),
                default_namespace: "public/default".into(),
                users: vec![("guest".into(), "guest".into())],
                frame_max: 131_072,
                heartbeat_secs: 60,
            },
            admin: AdminSettings {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9400))),
            },
            backend: BackendSettings {
                kind: BackendKind::Embedded,
                data_dir: PathBuf::from("./data"),
                pulsar_url: None,
                pulsar_admin_url: None,
                pulsar_token: None,
                pulsar_tls_trust_certs_file: None,
                pulsar_tls_cert_file: None,
                pulsar_tls_key_file: None,
                pulsar_tls_allow_insecure: false,
                pulsar_operation_timeout: Duration::from_secs(30),
            },
            log: LogSettings {
                level: "info".into(),
                format: LogFormat::Text,
            },
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            limits: Limits {
                max_frame_bytes: 100 * 1024 * 1024,
                max_in_flight_per_connection: 16,
                max_in_flight_bytes: 256 << 20,
                max_connections_per_listener: 10_000,
                max_connections_per_principal: 1_000,
                auth_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(600),
                shutdown_grace_period: Duration::from_secs(10),
            },
        }
    }
}

impl Config {
    /// Defaults with every listener on `127.0.0.1:0` (a free port) and data under `data_dir`, for
    /// tests that start gateways in-process.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        let mut config = Config::default();
        let any_port = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.kafka.listen = any_port;
        config.amqp.listen = any_port;
        config.admin.listen = any_port;
        config.backend.data_dir = data_dir.into();
        config.limits.shutdown_grace_period = Duration::from_secs(5);
        config
    }

    /// Loads the layered configuration: defaults < file < environment < CLI flags. `env` looks up
    /// an environment variable (tests pass a map instead of the process environment). All errors
    /// are collected and returned together.
    pub fn load(
        cli: &CliArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        // Raw values by TOML key; later layers overwrite earlier ones.
        let mut raw: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();

        let file = cli
            .config_file
            .clone()
            .or_else(|| env(CONFIG_FILE_ENV).map(PathBuf::from));
        if let Some(path) = file {
            let (values, file_errors) = read_file_layer(&path);
            raw.extend(values);
            errors.extend(file_errors);
        }
        for spec in OPTIONS {
            let var = spec.env_var();
            // An empty variable counts as unset, as `FOO=` in a compose file usually means.
            if let Some(value) = env(&var).filter(|v| !v.is_empty()) {
                raw.insert(spec.key, (value, Origin::Env(var)));
            }
        }
        for (spec, value) in &cli.overrides {
            raw.insert(spec.key, (value.clone(), Origin::Flag(spec.flag)));
        }

        let mut config = Config::default();
        for spec in OPTIONS {
            if let Some((value, origin)) = raw.get(spec.key) {
                if let Err(message) = (spec.set)(&mut config, value) {
                    errors.push(format!("{} ({origin}): {message}", spec.key));
                }
            }
        }
        errors.extend(config.validate_combinations());

        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors { errors })
        }
    }

    /// Checks a config that was built in code (e.g. by a test) as thoroughly as [`Config::load`].
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        // Round-trip each value through its parser, so hand-built configs meet the same rules.
        let mut errors = Vec::new();
        let mut scratch = self.clone();
        for spec in OPTIONS {
            if let Some(value) = (spec.get)(self) {
                if let Err(message) = (spec.set)(&mut scratch, &toml_scalar_text(&value)) {
                    errors.push(format!("{}: {message}", spec.key));
                }
            }
        }
        errors.extend(self.validate_combinations());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { errors })
        }
    }

    /// Whether either Pulsar URL needs TLS.
    pub fn pulsar_uses_tls(&self) -> bool {
        let b = &self.backend;
        b.pulsar_url
            .as_deref()
            .is_some_and(|u| u.starts_with("pulsar+ssl://"))
            || b.pulsar_admin_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }

    /// The TLS settings toward Pulsar.
    pub fn pulsar_tls(&self) -> gateway_pulsar::TlsOptions {
        let b = &self.backend;
        gateway_pulsar::TlsOptions {
            trust_certs_file: b.pulsar_tls_trust_certs_file.clone(),
            cert_file: b.pulsar_tls_cert_file.clone(),
            key_file: b.pulsar_tls_key_file.clone(),
            allow_insecure: b.pulsar_tls_allow_insecure,
        }
    }

    /// Rules that involve more than one option.
    fn validate_combinations(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.backend.kind == BackendKind::Pulsar {
            if self.backend.pulsar_url.is_none() {
                errors.push(
                    "backend.pulsar_url: required when backend.kind is \"pulsar\"".to_string(),
                );
            }
            if self.backend.pulsar_admin_url.is_none() {
                errors.push(
                    "backend.pulsar_admin_url: required when backend.kind is \"pulsar\""
                        .to_string(),
                );
            }
            let b = &self.backend;
            if b.pulsar_tls_cert_file.is_some() != b.pulsar_tls_key_file.is_some() {
                errors.push(
                    "backend.pulsar_tls_cert_file and backend.pulsar_tls_key_file: give both or neither"
                        .to_string(),
                );
            } else if self.pulsar_uses_tls() {
                // Read the files now, so that a wrong path shows up here and not at first use.
                if let Err(e) = self.pulsar_tls().client_config() {
                    errors.push(format!("backend.pulsar_tls_*: {e}"));
                }
            }
        }
        let tls = &self.tls;
        let listens: Vec<(&str, SocketAddr)> = [
            ("kafka.listen", self.kafka.listen),
            ("amqp.listen", self.amqp.listen),
            ("admin.listen", self.admin.listen),
            ("kafka.internal_listen", self.kafka.internal_listen),
            ("tls.kafka_listen", tls.kafka_listen),
            ("tls.amqp_listen", tls.amqp_listen),
            ("tls.admin_listen", tls.admin_listen),
        ]
        .into_iter()
        .filter_map(|(name, addr)| addr.map(|a| (name, a)))
        .collect();
        if [
            self.kafka.listen,
            self.amqp.listen,
            tls.kafka_listen,
            tls.amqp_listen,
        ]
        .iter()
        .all(Option::is_none)
        {
            errors.push(
                "kafka.listen, amqp.listen, tls.kafka_listen, tls.amqp_listen: all are off; a gateway needs at least one client listener"
                    .to_string(),
            );
        }
        for (i, (a, addr_a)) in listens.iter().enumerate() {
            for (b, addr_b) in &listens[i + 1..] {
                if addr_a == addr_b && addr_a.port() != 0 {
                    errors.push(format!(
                        "{a} and {b}: both are {addr_a}; they need different ports"
                    ));
                }
            }
        }
        if self.kafka.group_coordination == GroupCoordination::Forward
            && self.kafka.internal_listen.is_none()
        {
            errors.push(
                "kafka.internal_listen: required when kafka.group_coordination is \"forward\""
                    .to_string(),
            );
        }
        match &self.kafka.internal_secret {
            // Read now, so that a missing file or a short secret shows up in --check-config.
            Some(spec) => {
                if let Err(e) = gateway_security::PeerSecret::load(spec.expose()) {
                    errors.push(format!("kafka.internal_secret: {e}"));
                }
            }
            None if self.kafka.internal_listen.is_some() => errors.push(
                "kafka.internal_secret: required when kafka.internal_listen is set (peers prove it there; give every instance of the fleet the same)"
                    .to_string(),
            ),
            None => {}
        }
        if (tls.kafka_listen.is_some() || tls.amqp_listen.is_some() || tls.admin_listen.is_some())
            && (tls.cert_file.is_none() || tls.key_file.is_none())
        {
            errors.push(
                "tls.cert_file and tls.key_file: required when a TLS listener is configured"
                    .to_string(),
            );
        }
        let auth = &self.auth;
        if auth.token_secret_key.is_some() && auth.token_public_key.is_some() {
            errors.push(
                "auth.token_secret_key and auth.token_public_key: give one of them, not both"
                    .to_string(),
            );
        }
        if auth.required && auth.token_secret_key.is_none() && auth.token_public_key.is_none() {
            errors.push(
                "auth.required: needs auth.token_secret_key or auth.token_public_key to check tokens with"
                    .to_string(),
            );
        }
        let groups = &self.kafka.groups;
        if groups.min_session_timeout_ms > groups.max_session_timeout_ms {
            errors.push(format!(
                "kafka.group_min_session_timeout_ms ({}) is above kafka.group_max_session_timeout_ms ({})",
                groups.min_session_timeout_ms, groups.max_session_timeout_ms
            ));
        }
        if groups.consumer_heartbeat_interval_ms >= groups.consumer_session_timeout_ms {
            errors.push(format!(
                "kafka.consumer_group_heartbeat_interval_ms ({}) must be below kafka.consumer_group_session_timeout_ms ({})",
                groups.consumer_heartbeat_interval_ms, groups.consumer_session_timeout_ms
            ));
        }
        errors
    }

    /// The effective configuration as a TOML document (what `--check-config` prints).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for spec in OPTIONS {
            let (this_section, key) = spec
                .key
                .split_once('.')
                .expect("option keys are section.key");
            if this_section != section {
                if !section.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{this_section}]\n"));
                section = this_section;
            }
            match (spec.get)(self) {
                Some(value) => out.push_str(&format!("{key} = {value}\n")),
                None => out.push_str(&format!("# {key} is not set\n")),
            }
        }
        out
    }
}

/// Every configuration error found, one per line when displayed.
#[derive(Debug, Error)]
#[error("{}", errors.join("\n"))]
pub struct ConfigErrors {
    pub errors: Vec<String>,
}

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(var) => write!(f, "from environment variable {var}"),
            Origin::Flag(flag) => write!(f, "from flag --{flag}"),
        }
    }
}

/// Raw values by key from a config file.
type RawValues = Vec<(&'static str, (String, Origin))>;

/// Reads the TOML file into raw values by key, and errors for unknown sections and keys. The
/// known values are still returned, so their errors are reported in the same run.
fn read_file_layer(path: &Path) -> (RawValues, Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!("cannot read config file {}: {e}", path.display())],
            )
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!(
                    "config file {} is not valid TOML: {e}",
                    path.display()
                )],
            )
        }
    };

    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (section, content) in &table {
        let Some(content) = content.as_table() else {
            errors.push(format!(
                "unknown key `{section}` in {} (options live in sections such as [kafka])",
                path.display()
            ));
            continue;
        };
        for (key, value) in content {
            let full = format!("{section}.{key}");
            let Some(spec) = OPTIONS.iter().find(|s| s.key == full) else {
                errors.push(format!("unknown key `{full}` in {}", path.display()));
                continue;
            };
            match value {
                toml::Value::Table(_) | toml::Value::Array(_) => {
                    errors.push(format!(
                        "{full} (in {}): expected a single value",
                        path.display()
                    ));
                }
                scalar => values.push((
                    spec.key,
                    (toml_scalar_text(scalar), Origin::File(path.to_path_buf())),
                )),
            }
        }
    }
    (values, errors)
}

/// A scalar TOML value as the text a flag or environment variable would hold.
fn toml_scalar_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One configuration option: its names in each layer and how to parse and print it.
pub struct OptionSpec {
    /// `section.key` in the TOML file.
    pub key: &'static str,
    /// CLI flag without the leading `--`; the environment variable is derived from it.
    pub flag: &'static str,
    pub help: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
    /// `None` when the option is unset (no default).
    get: fn(&Config) -> Option<toml::Value>,
}

impl OptionSpec {
    /// `PULSAR_GATEWAY_` + the flag in upper snake case, e.g. `PULSAR_GATEWAY_KAFKA_LISTEN`.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.flag.to_uppercase().replace('-', "_"))
    }

    /// The default value as TOML, or `None` if the option has no default.
    pub fn default_value(&self) -> Option<String> {
        (self.get)(&Config::default()).map(|v| v.to_string())
    }
}

fn string(s: &str) -> Option<toml::Value> {
    Some(toml::Value::String(s.to_string()))
}

fn set_path(slot: &mut Option<PathBuf>, v: &str) -> Result<(), String> {
    *slot = Some(PathBuf::from(v));
    Ok(())
}

fn path_value(p: Option<&std::path::Path>) -> Option<toml::Value> {
    p.and_then(|p| string(&p.display().to_string()))
}

fn integer(n: impl TryInto<i64>) -> Option<toml::Value> {
    Some(toml::Value::Integer(n.try_into().unwrap_or(i64::MAX)))
}

/// Every option, grouped by section in the order `--check-config` prints them.
pub static OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "kafka.listen",
        flag: "kafka-listen",
        help: "Address the plaintext Kafka listener binds (IP:PORT; port 0 picks a free port), or off (TLS only)",
        set: |c, v| parse_listen(v).map(|x| c.kafka.listen = x),
        get: |c| listen_value(c.kafka.listen),
    },
    OptionSpec {
        key: "kafka.advertised",
        flag: "kafka-advertised",
        help: "HOST:PORT that Kafka clients are told to connect to [default: the bound listen address]",
        set: |c, v| v.parse().map(|x| c.kafka.advertised = Some(x)),
        get: |c| c.kafka.advertised.as_ref().and_then(|a| string(&a.to_string())),
    },
    OptionSpec {
        key: "kafka.auto_create_topics",
        flag: "kafka-auto-create-topics",
        help: "Create topics on first use, like Kafka's auto.create.topics.enable (true|false)",
        set: |c, v| parse_bool(v).map(|x| c.kafka.auto_create_topics = x),
        get: |c| Some(toml::Value::Boolean(c.kafka.auto_create_topics)),
    },
    OptionSpec {
        key: "kafka.default_partitions",
        flag: "kafka-default-partitions",
        help: "Partitions of auto-created topics (Kafka's num.partitions)",
        set: |c, v| parse_number(v, 1, 100_000).map(|x| c.kafka.default_partitions = x),
        get: |c| integer(c.kafka.default_partitions),
    },
    OptionSpec {
        key: "kafka.default_tenant",
        flag: "kafka-default-tenant",
        help: "Pulsar tenant that short Kafka topic names resolve in",
        set: |c, v| parse_name_part(v).map(|x| c.kafka.default_tenant = x),
        get: |c| string(&c.kafka.default_tenant),
    },
    OptionSpec {
        key: "kafka.default_namespace",
        flag: "kafka-default-namespace",
        help: "Pulsar namespace that short Kafka topic names resolve in",
        set: |c, v| parse_name_part(v).map(|x| c.kafka.default_namespace = x),
        get: |c| string(&c.kafka.default_namespace),
    },
    OptionSpec {
        key: "kafka.node_id",
        flag: "kafka-node-id",
        help: "Broker id reported for this instance; distinct per instance when clients reach instances directly",
        set: |c, v| parse_number(v, 0, i32::MAX as usize).map(|x| c.kafka.node_id = Some(x)),
        get: |c| c.kafka.node_id.and_then(integer),
    },
    OptionSpec {
        key: "kafka.group_coordination",
        flag: "kafka-group-coordination",
        help: "addressable (FindCoordinator names the coordinating instance) or forward (one load-balancer address; group requests are forwarded to the coordinating instance's internal listener)",
        set: |c, v| {
            c.kafka.group_coordination = match v {
                "addressable" => GroupCoordination::Addressable,
                "forward" => GroupCoordination::Forward,
                _ => {
                    return Err(format!(
                        "unknown group coordination \"{v}\"; expected \"addressable\" or \"forward\""
                    ))
                }
            };
            Ok(())
        },
        get: |c| {
            string(match c.kafka.group_coordination {
                GroupCoordination::Addressable => "addressable",
                GroupCoordination::Forward => "forward",
            })
        },
    },
    OptionSpec {
        key: "kafka.internal_listen",
        flag: "kafka-internal-listen",
        help: "Address of the listener for group requests forwarded by peer instances (IP:PORT)",
        set: |c, v| parse_socket_addr(v).map(|x| c.kafka.internal_listen = Some(x)),
        get: |c| c.kafka.internal_listen.and_then(|a| string(&a.to_string())),
    },
    OptionSpec {
        key: "kafka.internal_advertised",
        flag: "kafka-internal-advertised",
        help: "HOST:PORT peers use to reach kafka.internal_listen (default: the bound address)",
        set: |c, v| v.parse().map(|x| c.kafka.internal_advertised = Some(x)),
        get: |c| {
            c.kafka
                .internal_advertised
                .as_ref()
                .and_then(|a| string(&a.to_string()))
        },
    },
    OptionSpec {
        key: "kafka.internal_secret",
        flag: "kafka-internal-secret",
        help: "Secret shared by the instances of a fleet, which peers prove on kafka.internal_listen (required with it): the secret itself (at least 16 bytes) or file:///path",
        set: |c, v| {
            if v.trim().is_empty() {
                return Err("must not be empty".into());
            }
            c.kafka.internal_secret = Some(Secret::new(v.trim()));
            Ok(())
        },
        // A file's path may be shown; a secret never is (the printed configuration then lacks
        // it, and is refused until the secret is given again).
        get: |c| {
            c.kafka
                .internal_secret
                .as_ref()
                .filter(|s| s.expose().starts_with("file:"))
                .and_then(|s| string(s.expose()))
        },
    },
    OptionSpec {
        key: "kafka.group_initial_rebalance_delay_ms",
        flag: "kafka-group-initial-rebalance-delay-ms",
        help: "How long the first rebalance of an empty group waits for more members (Kafka's group.initial.rebalance.delay.ms)",
        set: |c, v| {
            parse_number(v, 0, 300_000).map(|x| c.kafka.groups.initial_rebalance_delay_ms = x)
        },
        get: |c| integer(c.kafka.groups.initial_rebalance_delay_ms),
    },
    OptionSpec {
        key: "kafka.group_min_session_timeout_ms",
        flag: "kafka-group-min-session-timeout-ms",
        help: "Shortest session.timeout.ms a consumer may ask for (Kafka's group.min.session.timeout.ms)",
        set: |c, v| {
            parse_number(v, 1, 86_400_000).map(|x| c.kafka.groups.min_session_timeout_ms = x)
        },
        get: |c| integer(c.kafka.groups.min_session_timeout_ms),
    },
    OptionSpec {
        key: "kafka.group_max_session_timeout_ms",
        flag: "kafka-group-max-session-timeout-ms",
        help: "Longest session.timeout.ms a consumer may ask for (Kafka's group.max.session.timeout.ms)",
        set: |c, v| {
            parse_number(v, 1, 86_400_000).map(|x| c.kafka.groups.max_session_timeout_ms = x)
        },
        get: |c| integer(c.kafka.groups.max_session_timeout_ms),
    },
    OptionSpec {
        key: "kafka.consumer_group_session_timeout_ms",
        flag: "kafka-consumer-group-session-timeout-ms",
        help: "Session timeout of members of the consumer group protocol, KIP-848 (Kafka's group.consumer.session.timeout.ms)",
        set: |c, v| {
            parse_number(v, 1000, 86_400_000)
                .map(|x| c.kafka.groups.consumer_session_timeout_ms = x)
        },
        get: |c| integer(c.kafka.groups.consumer_session_timeout_ms),
    },
    OptionSpec {
        key: "kafka.consumer_group_heartbeat_interval_ms",
        flag: "kafka-consumer-group-heartbeat-interval-ms",
        help: "How often members of the consumer group protocol, KIP-848, heartbeat (Kafka's group.consumer.heartbeat.interval.ms)",
        set: |c, v| {
            parse_number(v, 100, 3_600_000)
                .map(|x| c.kafka.groups.consumer_heartbeat_interval_ms = x)
        },
        get: |c| integer(c.kafka.groups.consumer_heartbeat_interval_ms),
    },
    OptionSpec {
        key: "kafka.group_shards",
        flag: "kafka-group-shards",
        help: "Table topics the consumer groups' state is spread over; fixed for a deployment",
        set: |c, v| parse_number(v, 1, 1024).map(|x| c.kafka.groups.shards = x),
        get: |c| integer(c.kafka.groups.shards),
    },
    OptionSpec {
        key: "kafka.group_state_topic",
        flag: "kafka-group-state-topic",
        help: "Topic name (starting __gateway_) of the groups' state; gateways sharing it are one fleet",
        set: |c, v| parse_state_topic(v).map(|x| c.kafka.groups.state_topic = x),
        get: |c| string(&c.kafka.groups.state_topic),
    },
    OptionSpec {
        key: "kafka.offsets_retention_minutes",
        flag: "kafka-offsets-retention-minutes",
        help: "How long committed offsets of a group without members are kept after it became empty, or after their last commit for consumers that only commit (Kafka's offsets.retention.minutes)",
        set: |c, v| {
            parse_number(v, 1, i32::MAX as usize)
                .map(|x| c.kafka.groups.offsets_retention_minutes = x)
        },
        get: |c| integer(c.kafka.groups.offsets_retention_minutes),
    },
    OptionSpec {
        key: "kafka.max_cached_readers",
        flag: "kafka-max-cached-readers",
        help: "Fetch readers kept open between fetches across all Kafka connections (at most 256 per connection); beyond it the least recently used is closed",
        set: |c, v| parse_number(v, 1, 1_000_000).map(|x| c.kafka.max_cached_readers = x),
        get: |c| integer(c.kafka.max_cached_readers),
    },
    OptionSpec {
        key: "amqp.listen",
        flag: "amqp-listen",
        help: "Address the plaintext AMQP 0-9-1 (RabbitMQ) listener binds (IP:PORT; port 0 picks a free port), or off",
        set: |c, v| parse_listen(v).map(|x| c.amqp.listen = x),
        get: |c| listen_value(c.amqp.listen),
    },
    OptionSpec {
        key: "amqp.default_namespace",
        flag: "amqp-default-namespace",
        help: "Pulsar tenant/namespace that AMQP vhost / maps to (a vhost x maps to <its tenant>/x)",
        set: |c, v| match v.split_once('/') {
            Some((t, ns)) if parse_name_part(t).is_ok() && parse_name_part(ns).is_ok() => {
                c.amqp.default_namespace = v.to_owned();
                Ok(())
            }
            _ => Err(format!("\"{v}\" is not tenant/namespace")),
        },
        get: |c| string(&c.amqp.default_namespace),
    },
    OptionSpec {
        key: "amqp.users",
        flag: "amqp-users",
        help: "PLAIN credentials accepted, as user:password[,user:password...] (until token auth is set up)",
        set: |c, v| {
            let mut users = Vec::new();
            for pair in v.split(',').filter(|p| !p.is_empty()) {
                match pair.split_once(':') {
                    Some((u, p)) if !u.is_empty() => users.push((u.to_owned(), p.to_owned())),
                    _ => return Err(format!("\"{pair}\" is not user:password")),
                }
            }
            c.amqp.users = users;
            Ok(())
        },
        // Holds passwords: --check-config never prints it.
        get: |_| None,
    },
    OptionSpec {
        key: "amqp.frame_max",
        flag: "amqp-frame-max",
        help: "Largest AMQP frame the gateway proposes in connection.tune (bytes)",
        set: |c, v| parse_number(v, 4096, 16 << 20).map(|x| c.amqp.frame_max = x),
        get: |c| integer(c.amqp.frame_max),
    },
    OptionSpec {
        key: "amqp.heartbeat_secs",
        flag: "amqp-heartbeat-secs",
        help: "Heartbeat interval the gateway proposes in connection.tune (0 turns heartbeats off)",
        set: |c, v| parse_number(v, 0, 3600).map(|x| c.amqp.heartbeat_secs = x),
        get: |c| integer(c.amqp.heartbeat_secs),
    },
    OptionSpec {
        key: "tls.kafka_listen",
        flag: "kafka-tls-listen",
        help: "Address of the Kafka TLS listener (IP:PORT), besides the plaintext one",
        set: |c, v| parse_socket_addr(v).map(|x| c.tls.kafka_listen = Some(x)),
        get: |c| c.tls.kafka_listen.and_then(|a| string(&a.to_string())),
    },
    OptionSpec {
        key: "tls.kafka_advertised",
        flag: "kafka-tls-advertised",
        help: "HOST:PORT that Metadata gives clients of the Kafka TLS listener (default: its bound address)",
        set: |c, v| v.parse().map(|x| c.tls.kafka_advertised = Some(x)),
        get: |c| c.tls.kafka_advertised.as_ref().map(|a| toml::Value::String(a.to_string())),
    },
    OptionSpec {
        key: "tls.amqp_listen",
        flag: "amqp-tls-listen",
        help: "Address of the AMQP TLS listener (IP:PORT, amqps), besides the plaintext one",
        set: |c, v| parse_socket_addr(v).map(|x| c.tls.amqp_listen = Some(x)),
        get: |c| c.tls.amqp_listen.and_then(|a| string(&a.to_string())),
    },
    OptionSpec {
        key: "tls.admin_listen",
        flag: "admin-tls-listen",
        help: "Address of the admin HTTPS server (IP:PORT), besides the plain HTTP one",
        set: |c, v| parse_socket_addr(v).map(|x| c.tls.admin_listen = Some(x)),
        get: |c| c.tls.admin_listen.and_then(|a| string(&a.to_string())),
    },
    OptionSpec {
        key: "tls.cert_file",
        flag: "tls-cert-file",
        help: "PEM certificate chain of the TLS listeners; reloaded when the file changes",
        set: |c, v| set_path(&mut c.tls.cert_file, v),
        get: |c| path_value(c.tls.cert_file.as_deref()),
    },
    OptionSpec {
        key: "tls.key_file",
        flag: "tls-key-file",
        help: "PEM private key of the TLS listeners; reloaded when the file changes",
        set: |c, v| set_path(&mut c.tls.key_file, v),
        get: |c| path_value(c.tls.key_file.as_deref()),
    },
    OptionSpec {
        key: "tls.client_ca_file",
        flag: "tls-client-ca-file",
        help: "PEM CA certificates; when set, TLS clients must present a certificate they issued",
        set: |c, v| set_path(&mut c.tls.client_ca_file, v),
        get: |c| path_value(c.tls.client_ca_file.as_deref()),
    },
    OptionSpec {
        key: "auth.token_secret_key",
        flag: "auth-token-secret-key",
        help: "Key that checks HS256 tokens, as Pulsar's tokenSecretKey: file:///path or data:;base64,...",
        set: |c, v| parse_key_spec(v).map(|x| c.auth.token_secret_key = Some(x)),
        get: |c| c.auth.token_secret_key.as_deref().map(shown_key_spec),
    },
    OptionSpec {
        key: "auth.token_public_key",
        flag: "auth-token-public-key",
        help: "Key that checks RS256 tokens, as Pulsar's tokenPublicKey: file:///path or data:;base64,...",
        set: |c, v| parse_key_spec(v).map(|x| c.auth.token_public_key = Some(x)),
        get: |c| c.auth.token_public_key.as_deref().map(shown_key_spec),
    },
    OptionSpec {
        key: "auth.required",
        flag: "auth-required",
        help: "Require a Pulsar token on every listener (Kafka SASL PLAIN or OAUTHBEARER, AMQP PLAIN)",
        set: |c, v| parse_bool(v).map(|x| c.auth.required = x),
        get: |c| Some(toml::Value::Boolean(c.auth.required)),
    },
    OptionSpec {
        key: "admin.listen",
        flag: "admin-listen",
        help: "Address of the plain HTTP admin server: /livez, /readyz, /metrics (IP:PORT), or off",
        set: |c, v| parse_listen(v).map(|x| c.admin.listen = x),
        get: |c| listen_value(c.admin.listen),
    },
    OptionSpec {
        key: "backend.kind",
        flag: "backend",
        help: "Where messages live: embedded (on local disk) or pulsar (an Apache Pulsar cluster)",
        set: |c, v| {
            c.backend.kind = match v {
                "embedded" => BackendKind::Embedded,
                "pulsar" => BackendKind::Pulsar,
                _ => return Err(format!("unknown backend \"{v}\"; expected \"embedded\" or \"pulsar\"")),
            };
            Ok(())
        },
        get: |c| {
            string(match c.backend.kind {
                BackendKind::Embedded => "embedded",
                BackendKind::Pulsar => "pulsar",
            })
        },
    },
    OptionSpec {
        key: "backend.data_dir",
        flag: "data-dir",
        help: "Directory of the embedded backend's data",
        set: |c, v| {
            if v.is_empty() {
                return Err("must not be empty".into());
            }
            c.backend.data_dir = PathBuf::from(v);
            Ok(())
        },
        get: |c| string(&c.backend.data_dir.display().to_string()),
    },
    OptionSpec {
        key: "backend.pulsar_url",
        flag: "pulsar-url",
        help: "Pulsar broker service URL (pulsar://HOST:6650 or pulsar+ssl://HOST:6651)",
        set: |c, v| parse_url(v, &["pulsar://", "pulsar+ssl://"]).map(|x| c.backend.pulsar_url = Some(x)),
        get: |c| c.backend.pulsar_url.as_deref().and_then(string),
    },
    OptionSpec {
        key: "backend.pulsar_admin_url",
        flag: "pulsar-admin-url",
        help: "Pulsar admin REST URL (http://HOST:8080 or https://HOST:8443)",
        set: |c, v| parse_url(v, &["http://", "https://"]).map(|x| c.backend.pulsar_admin_url = Some(x)),
        get: |c| c.backend.pulsar_admin_url.as_deref().and_then(string),
    },
    OptionSpec {
        key: "backend.pulsar_token",
        flag: "pulsar-token",
        help: "The gateway's own token for Pulsar (binary protocol and admin REST): the token, token:TOKEN, or file:///path holding it (read again when the file changes)",
        set: |c, v| {
            gateway_pulsar::TokenSource::parse(v).map_err(|e| e.to_string())?;
            c.backend.pulsar_token = Some(v.trim().to_owned());
            Ok(())
        },
        // A file's path may be shown; a token never is.
        get: |c| {
            c.backend
                .pulsar_token
                .as_deref()
                .map(|t| toml::Value::String(if t.starts_with("file:") { t.to_owned() } else { "<token, not shown>".to_owned() }))
        },
    },
    OptionSpec {
        key: "backend.pulsar_tls_trust_certs_file",
        flag: "pulsar-tls-trust-certs-file",
        help: "PEM CA certificates that sign the Pulsar brokers' (and proxies') certificates, for pulsar+ssl:// and https:// [default: the system's CA certificates]",
        set: |c, v| set_path(&mut c.backend.pulsar_tls_trust_certs_file, v),
        get: |c| path_value(c.backend.pulsar_tls_trust_certs_file.as_deref()),
    },
    OptionSpec {
        key: "backend.pulsar_tls_cert_file",
        flag: "pulsar-tls-cert-file",
        help: "PEM certificate chain the gateway presents to Pulsar (mutual TLS; with no token it is the gateway's credential, Pulsar's AuthenticationTls)",
        set: |c, v| set_path(&mut c.backend.pulsar_tls_cert_file, v),
        get: |c| path_value(c.backend.pulsar_tls_cert_file.as_deref()),
    },
    OptionSpec {
        key: "backend.pulsar_tls_key_file",
        flag: "pulsar-tls-key-file",
        help: "PEM private key of --pulsar-tls-cert-file",
        set: |c, v| set_path(&mut c.backend.pulsar_tls_key_file, v),
        get: |c| path_value(c.backend.pulsar_tls_key_file.as_deref()),
    },
    OptionSpec {
        key: "backend.pulsar_tls_allow_insecure",
        flag: "pulsar-tls-allow-insecure",
        help: "UNSAFE: accept any certificate from Pulsar, so anyone on the path can read and change the traffic; for tests only (true|false)",
        set: |c, v| parse_bool(v).map(|x| c.backend.pulsar_tls_allow_insecure = x),
        get: |c| Some(toml::Value::Boolean(c.backend.pulsar_tls_allow_insecure)),
    },
    OptionSpec {
        key: "backend.pulsar_operation_timeout",
        flag: "pulsar-operation-timeout",
        help: "Deadline of every Pulsar operation (lookup, producer or consumer creation, send receipt, admin call), as Pulsar's operationTimeoutMs; Kafka clients then get REQUEST_TIMED_OUT and AMQP publishers a nack, e.g. 30s",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_secs(1) {
                return Err("must be at least 1s".into());
            }
            c.backend.pulsar_operation_timeout = d;
            Ok(())
        },
        get: |c| string(&format_duration(c.backend.pulsar_operation_timeout)),
    },
    OptionSpec {
        key: "log.level",
        flag: "log-level",
        help: "Log level or tracing filter, e.g. info or info,gateway_kafka=debug",
        set: |c, v| {
            tracing_subscriber::EnvFilter::try_new(v).map_err(|e| format!("invalid log filter \"{v}\": {e}"))?;
            c.log.level = v.to_string();
            Ok(())
        },
        get: |c| string(&c.log.level),
    },
    OptionSpec {
        key: "log.format",
        flag: "log-format",
        help: "Log output format on stderr: text or json",
        set: |c, v| {
            c.log.format = match v {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("unknown log format \"{v}\"; expected \"text\" or \"json\"")),
            };
            Ok(())
        },
        get: |c| {
            string(match c.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            })
        },
    },
    OptionSpec {
        key: "limits.max_frame_bytes",
        flag: "max-frame-bytes",
        help: "Largest request accepted, in bytes; checked before reading it into memory",
        // Kafka's length prefix is an i32.
        set: |c, v| parse_number(v, 1024, i32::MAX as usize).map(|x| c.limits.max_frame_bytes = x),
        get: |c| integer(c.limits.max_frame_bytes),
    },
    OptionSpec {
        key: "limits.max_in_flight_per_connection",
        flag: "max-in-flight-per-connection",
        help: "Requests of one connection read ahead and waiting (answered in order) before its socket reads pause",
        set: |c, v| parse_number(v, 1, 10_000).map(|x| c.limits.max_in_flight_per_connection = x),
        get: |c| integer(c.limits.max_in_flight_per_connection),
    },
    OptionSpec {
        key: "limits.max_in_flight_bytes",
        flag: "max-in-flight-bytes",
        help: "Bytes in flight across the gateway (records read and not yet persisted, fetch responses being assembled) before connections stop reading their sockets until some is persisted or sent",
        set: |c, v| parse_number(v, 1 << 20, u32::MAX as usize).map(|x| c.limits.max_in_flight_bytes = x),
        get: |c| integer(c.limits.max_in_flight_bytes),
    },
    OptionSpec {
        key: "limits.max_connections_per_listener",
        flag: "max-connections-per-listener",
        help: "Open connections per listener; more are accepted and closed at once",
        set: |c, v| parse_number(v, 1, 1_000_000).map(|x| c.limits.max_connections_per_listener = x),
        get: |c| integer(c.limits.max_connections_per_listener),
    },
    OptionSpec {
        key: "limits.max_connections_per_principal",
        flag: "max-connections-per-principal",
        help: "Authenticated connections one principal may hold across all listeners",
        set: |c, v| parse_number(v, 1, 1_000_000).map(|x| c.limits.max_connections_per_principal = x),
        get: |c| integer(c.limits.max_connections_per_principal),
    },
    OptionSpec {
        key: "limits.auth_timeout",
        flag: "auth-timeout",
        help: "How long a client has to authenticate when authentication is required, e.g. 10s",
        set: |c, v| parse_duration(v).map(|x| c.limits.auth_timeout = x),
        get: |c| string(&format_duration(c.limits.auth_timeout)),
    },
    OptionSpec {
        key: "limits.idle_timeout",
        flag: "idle-timeout",
        help: "A Kafka connection without requests for this long is closed (connections.max.idle.ms), e.g. 10m",
        set: |c, v| parse_duration(v).map(|x| c.limits.idle_timeout = x),
        get: |c| string(&format_duration(c.limits.idle_timeout)),
    },
    OptionSpec {
        key: "limits.shutdown_grace_period",
        flag: "shutdown-grace-period",
        help: "How long a drain waits for sessions to finish, e.g. 10s, 500ms, 1m",
        set: |c, v| parse_duration(v).map(|x| c.limits.shutdown_grace_period = x),
        get: |c| string(&format_duration(c.limits.shutdown_grace_period)),
    },
];

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid address \"{s}\"; expected HOST:PORT");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty()
            || host.contains(char::is_whitespace)
            || (host.contains(':') && !s.starts_with('['))
        {
            return Err(bad());
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A listener address, or `off` for no listener.
fn parse_listen(v: &str) -> Result<Option<SocketAddr>, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_socket_addr(v).map(Some)
}

fn listen_value(addr: Option<SocketAddr>) -> Option<toml::Value> {
    Some(toml::Value::String(
        addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
    ))
}

fn parse_socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("invalid address \"{v}\"; expected IP:PORT such as 0.0.0.0:9092"))
}

/// A key as Pulsar names one; the key itself is read when the gateway starts.
fn parse_key_spec(v: &str) -> Result<String, String> {
    if v.starts_with("file:") || v.starts_with("data:") {
        Ok(v.to_owned())
    } else {
        // Never echo the value: it may be a key pasted in the wrong form.
        Err("expected file:///path or data:;base64,...".to_string())
    }
}

/// How a key option is printed: a file's path, never inline key material.
fn shown_key_spec(v: &str) -> toml::Value {
    toml::Value::String(if v.starts_with("data:") {
        "data:<inline key, not shown>".to_string()
    } else {
        v.to_owned()
    })
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got \"{v}\"")),
    }
}

fn parse_number<T>(v: &str, min: usize, max: usize) -> Result<T, String>
where
    T: TryFrom<usize>,
{
    let n: usize = v
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got \"{v}\""))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    T::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// A tenant or namespace: one segment of a Pulsar topic name.
fn parse_name_part(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '=' | ':'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "invalid name \"{v}\"; use letters, digits and - _ . = :"
        ))
    }
}

/// An internal topic's name: hidden from Kafka clients by its prefix, and short enough for
/// Pulsar once `-<shard>` is added.
fn parse_state_topic(v: &str) -> Result<String, String> {
    let name = parse_name_part(v)?;
    if !name.starts_with(gateway_kafka::groups::coordinator::INTERNAL_TOPIC_PREFIX)
        || name.len() > 200
    {
        return Err(format!(
            "\"{v}\" must start with __gateway_ and be at most 200 characters"
        ));
    }
    Ok(name)
}

fn parse_url(v: &str, schemes: &[&str]) -> Result<String, String> {
    match schemes.iter().find(|s| v.starts_with(**s)) {
        Some(scheme) if v.len() > scheme.len() => Ok(v.to_string()),
        _ => Err(format!(
            "invalid URL \"{v}\"; expected it to start with {}",
            schemes.join(" or ")
        )),
    }
}

/// `500ms`, `10s` or `2m`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration \"{v}\"; expected e.g. 500ms, 10s or 2m");
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = v.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The command line: the config file, `--check-config`, and any option flags given.
#[derive(Debug, Default)]
pub struct CliArgs {
    pub config_file: Option<PathBuf>,
    pub check_config: bool,
    /// Options given as flags, with their raw values.
    pub overrides: Vec<(&'static OptionSpec, String)>,
}

impl fmt::Debug for OptionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key)
    }
}

impl CliArgs {
    /// The clap command, built from [`OPTIONS`] so flags, help and environment names cannot drift.
    pub fn command() -> clap::Command {
        use clap::{Arg, ArgAction};
        let mut command = clap::Command::new("pulsar-gateway")
            .version(env!("CARGO_PKG_VERSION"))
            .about("Edge proxy that lets Kafka applications run on Apache Pulsar, or standalone on local disk")
            .after_help(
                "Every option can also be set in the config file and through an environment variable \
                 named PULSAR_GATEWAY_<FLAG> (e.g. PULSAR_GATEWAY_KAFKA_LISTEN). Precedence: \
                 flag > environment > file > default. See docs/configuration.md.",
            )
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .help("TOML config file [env: PULSAR_GATEWAY_CONFIG]"),
            )
            .arg(
                Arg::new("check-config")
                    .long("check-config")
                    .action(ArgAction::SetTrue)
                    .help("Validate the configuration, print it (or every error) and exit"),
            );
        for spec in OPTIONS {
            // A boolean flag given alone means true (`--auth-required`).
            let boolean = matches!(
                (spec.get)(&Config::default()),
                Some(toml::Value::Boolean(_))
            );
            command = command.arg(
                Arg::new(spec.flag)
                    .long(spec.flag)
                    .value_name("VALUE")
                    .num_args(if boolean { 0..=1 } else { 1..=1 })
                    .default_missing_value("true")
                    .help(match spec.default_value() {
                        Some(default) => format!(
                            "{} [default: {default}] [env: {}]",
                            spec.help,
                            spec.env_var()
                        ),
                        None => format!("{} [env: {}]", spec.help, spec.env_var()),
                    }),
            );
        }
        command
    }

    /// Parses a command line (the first item is the program name).
    pub fn try_parse_from<I, T>(args: I) -> Result<CliArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let overrides = OPTIONS
            .iter()
            .filter_map(|spec| {
                matches
                    .get_one::<String>(spec.flag)
                    .map(|v| (spec, v.clone()))
            })
            .collect();
        Ok(CliArgs {
            config_file: matches.get_one::<String>("config").map(PathBuf::from),
            check_config: matches.get_flag("check-config"),
            overrides,
        })
    }
}

/// What `--check-config` does: `Ok(effective config as TOML)` or every error.
pub fn check_config(
    cli: &CliArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigErrors> {
    Config::load(cli, env).map(|config| config.to_toml())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cli(args: &[&str]) -> CliArgs {
        let mut full = vec!["pulsar-gateway"];
        full.extend_from_slice(args);
        CliArgs::try_parse_from(full).expect("valid command line")
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_file(dir: &tempfile::TempDir, text: &str) -> String {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[test]
    fn defaults_without_any_layer() {
        let config = Config::load(&cli(&[]), &env_of(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.kafka.listen.unwrap().to_string(), "127.0.0.1:9092");
        assert_eq!(config.admin.listen.unwrap().to_string(), "127.0.0.1:9400");
        assert_eq!(config.backend.data_dir, PathBuf::from("./data"));
        assert_eq!(config.limits.shutdown_grace_period, Duration::from_secs(10));
        assert_eq!(config.limits.max_frame_bytes, 100 * 1024 * 1024);
    }

    #[test]
    fn layers_apply_file_then_env_then_cli() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            &dir,
            r#"
            [kafka]
            listen = "127.0.0.1:1001"
            default_partitions = 3
            default_tenant = "from-file"
            [admin]
            listen = "127.0.0.1:2001"
            [log]
            level = "warn"
            "#,
        );
        let env = env_of(&[
            ("PULSAR_GATEWAY_KAFKA_LISTEN", "127.0.0.1:1002"),
            ("PULSAR_GATEWAY_KAFKA_DEFAULT_PARTITIONS", "4"),
            ("PULSAR_GATEWAY_LOG_FORMAT", "json"),
        ]);
        let config = Config::load(
            &cli(&["--config", &file, "--kafka-listen", "127.0.0.1:1003"]),
            &env,
        )
        .unwrap();

        assert_eq!(
            config.kafka.listen.unwrap().to_string(),
            "127.0.0.1:1003",
            "CLI beats env and file"
        );
        assert_eq!(config.kafka.default_partitions, 4, "env beats file");
        assert_eq!(
            config.kafka.default_tenant, "from-file",
            "file beats default"
        );
        assert_eq!(config.admin.listen.unwrap().to_string(), "127.0.0.1:2001");
        assert_eq!(config.log.level, "warn");
        assert_eq!(config.log.format, LogFormat::Json, "env beats default");
        assert_eq!(
            config.kafka.default_namespace, "default",
            "untouched options keep defaults"
        );
    }

    #[test]
    fn config_file_can_come_from_env_and_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let from_env = write_file(&dir, "[kafka]\ndefault_partitions = 7\n");
        let flag_path = dir.path().join("other.toml");
        std::fs::write(&flag_path, "[kafka]\ndefault_partitions = 9\n").unwrap();

        let env = env_of(&[(CONFIG_FILE_ENV, from_env.as_str())]);
        assert_eq!(
            Config::load(&cli(&[]), &env)
                .unwrap()
                .kafka
                .default_partitions,
            7
        );
        let flagged = cli(&["--config", flag_path.to_str().unwrap()]);
        assert_eq!(
            Config::load(&flagged, &env)
                .unwrap()
                .kafka
                .default_partitions,
            9
        );
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let env = env_of(&[("PULSAR_GATEWAY_KAFKA_LISTEN", "")]);
        assert_eq!(
            Config::load(&cli(&[]), &env)
                .unwrap()
                .kafka
                .listen
                .unwrap()
                .port(),
            9092
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            &dir,
            r#"
            [kafka]
            listen = "not-an-address"
            lisen = "typo"
            [limits]
            shutdown_grace_period = "soon"
            [tls]
            cert = "x"
            "#,
        );
        let env = env_of(&[("PULSAR_GATEWAY_KAFKA_DEFAULT_PARTITIONS", "0")]);
        let args = cli(&[
            "--config",
            &file,
            "--backend",
            "pulsar",
            "--log-format",
            "xml",
        ]);
        let err = Config::load(&args, &env).unwrap_err();
        let text = err.to_string();

        for expected in [
            "unknown key `kafka.lisen`",
            "unknown key `tls.cert`",
            "kafka.listen (in ",
            "limits.shutdown_grace_period (in ",
            "kafka.default_partitions (from environment variable PULSAR_GATEWAY_KAFKA_DEFAULT_PARTITIONS)",
            "log.format (from flag --log-format)",
            "backend.pulsar_url: required",
            "backend.pulsar_admin_url: required",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(err.errors.len(), 8, "{text}");
    }

    #[test]
    fn bad_values_in_the_file_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            &dir,
            r#"
            [kafka]
            listen = "not-an-address"
            auto_create_topics = "maybe"
            [limits]
            shutdown_grace_period = "soon"
            max_frame_bytes = 10
            "#,
        );
        let err = Config::load(&cli(&["--config", &file]), &env_of(&[])).unwrap_err();
        assert_eq!(err.errors.len(), 4, "{err}");
        assert!(
            err.errors.iter().all(|e| e.contains("gateway.toml")),
            "{err}"
        );
    }

    #[test]
    fn group_state_topic_stays_internal() {
        let load = |v: &str| Config::load(&cli(&["--kafka-group-state-topic", v]), &env_of(&[]));
        let ok = load("__gateway_kafka_groups_blue").unwrap();
        assert_eq!(ok.kafka.groups.state_topic, "__gateway_kafka_groups_blue");
        // Kafka clients would see (and could write) a topic without the internal prefix.
        for refused in [
            "orders",
            "__gateway_a/b",
            &format!("__gateway_{}", "x".repeat(200)),
        ] {
            let err = load(refused).unwrap_err().to_string();
            assert!(err.contains("kafka.group_state_topic"), "{refused}: {err}");
        }
    }

    #[test]
    fn offsets_retention_is_in_minutes_and_positive() {
        let load = |args: &[&str]| Config::load(&cli(args), &env_of(&[]));
        assert_eq!(
            load(&[]).unwrap().kafka.groups.offsets_retention_minutes,
            10_080
        );
        let ok = load(&["--kafka-offsets-retention-minutes", "1440"]).unwrap();
        assert_eq!(ok.kafka.groups.offsets_retention_minutes, 1440);
        let err = load(&["--kafka-offsets-retention-minutes", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.offsets_retention_minutes"), "{err}");
    }

    #[test]
    fn unreadable_or_invalid_file_is_an_error() {
        let err = Config::load(
            &cli(&["--config", "/nonexistent/gateway.toml"]),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot read config file"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = write_file(&dir, "[kafka\n");
        let err = Config::load(&cli(&["--config", &file]), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn check_config_prints_effective_config_that_loads_back() {
        let args = cli(&[
            "--kafka-advertised",
            "gw.example.com:19092",
            "--shutdown-grace-period",
            "1500ms",
        ]);
        assert!(!args.check_config);
        let printed = check_config(&args, &env_of(&[])).unwrap();
        assert!(printed.contains("[kafka]\n"), "{printed}");
        assert!(
            printed.contains("advertised = \"gw.example.com:19092\""),
            "{printed}"
        );
        assert!(
            printed.contains("shutdown_grace_period = \"1500ms\""),
            "{printed}"
        );

        // The printout is itself a valid config file describing the same settings.
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(&dir, &printed);
        let reloaded = Config::load(&cli(&["--config", &file]), &env_of(&[])).unwrap();
        assert_eq!(reloaded, Config::load(&args, &env_of(&[])).unwrap());
    }

    #[test]
    fn check_config_reports_errors() {
        let args = cli(&[
            "--check-config",
            "--kafka-listen",
            "nope",
            "--admin-listen",
            "nope",
            "--log-level",
            "info,gateway_kafka=loud",
        ]);
        assert!(args.check_config);
        let err = check_config(&args, &env_of(&[])).unwrap_err();
        assert_eq!(err.errors.len(), 3, "{err}");
        assert!(err.to_string().contains("invalid log filter"), "{err}");
    }

    #[test]
    fn auth_options_come_from_flags_env_and_file_and_keys_are_never_printed() {
        let inline = "data:;base64,c2VjcmV0LWtleS1ieXRlcw==";
        let args = cli(&["--auth-required", "--auth-token-secret-key", inline]);
        let config = Config::load(&args, &env_of(&[])).unwrap();
        assert!(config.auth.required);
        assert_eq!(config.auth.token_secret_key.as_deref(), Some(inline));
        let printed = check_config(&args, &env_of(&[])).unwrap();
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(printed.contains("<inline key, not shown>"), "{printed}");

        let env = env_of(&[
            (
                "PULSAR_GATEWAY_AUTH_TOKEN_PUBLIC_KEY",
                "file:///etc/pulsar/public.key",
            ),
            ("PULSAR_GATEWAY_AUTH_REQUIRED", "true"),
        ]);
        let config = Config::load(&cli(&[]), &env).unwrap();
        assert_eq!(
            config.auth.token_public_key.as_deref(),
            Some("file:///etc/pulsar/public.key")
        );
        assert!(config.auth.required);

        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            &dir,
            "[auth]\nrequired = true\ntoken_secret_key = \"file:///k\"\n",
        );
        let config = Config::load(&cli(&["--config", &file]), &env_of(&[])).unwrap();
        assert!(config.auth.required);
        assert_eq!(config.auth.token_secret_key.as_deref(), Some("file:///k"));
    }

    #[test]
    fn auth_settings_that_cannot_work_are_refused() {
        let err = Config::load(&cli(&["--auth-required"]), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("auth.required"), "{err}");
        let both = cli(&[
            "--auth-token-secret-key",
            "file:///a",
            "--auth-token-public-key",
            "file:///b",
        ]);
        let err = Config::load(&both, &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        // A key pasted without its form is refused without being echoed.
        let pasted = cli(&["--auth-token-secret-key", "Zm9vYmFyLXNlY3JldA=="]);
        let err = Config::load(&pasted, &env_of(&[])).unwrap_err();
        assert!(!err.to_string().contains("Zm9vYmFy"), "{err}");
    }

    #[test]
    fn the_internal_listener_needs_the_fleets_secret_which_is_never_printed() {
        let listen = ["--kafka-internal-listen", "127.0.0.1:19094"];
        let err = Config::load(&cli(&listen), &env_of(&[])).unwrap_err();
        assert!(
            err.to_string().contains("kafka.internal_secret: required"),
            "{err}"
        );
        // Forward mode needs the listener, and so the secret.
        let forward = cli(&[
            "--kafka-group-coordination",
            "forward",
            "--kafka-internal-listen",
            "127.0.0.1:19094",
        ]);
        let err = Config::load(&forward, &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("kafka.internal_secret"), "{err}");

        let literal = "a-literal-fleet-secret-123";
        let with_secret = |secret: &str| {
            let mut args = listen.to_vec();
            args.extend(["--kafka-internal-secret", secret]);
            cli(&args)
        };
        let config = Config::load(&with_secret(literal), &env_of(&[])).unwrap();
        assert_eq!(
            config.kafka.internal_secret.as_ref().map(|s| s.expose()),
            Some(literal)
        );
        assert!(!format!("{config:?}").contains(literal), "Debug shows it");
        let printed = check_config(&with_secret(literal), &env_of(&[])).unwrap();
        assert!(!printed.contains(literal), "{printed}");
        assert!(
            printed.contains("# internal_secret is not set"),
            "{printed}"
        );

        let env = env_of(&[("PULSAR_GATEWAY_KAFKA_INTERNAL_SECRET", literal)]);
        let config = Config::load(&cli(&listen), &env).unwrap();
        assert!(config.kafka.internal_secret.is_some());

        // Too short: refused, and not echoed.
        let err = Config::load(&with_secret("guessable"), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
        assert!(!err.to_string().contains("guessable"), "{err}");

        // A file: read when the configuration is checked, its path shown.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.secret");
        std::fs::write(&path, format!("{literal}\n")).unwrap();
        let spec = format!("file://{}", path.display());
        let printed = check_config(&with_secret(&spec), &env_of(&[])).unwrap();
        assert!(
            printed.contains(&format!("internal_secret = \"{spec}\"")),
            "{printed}"
        );
        assert!(!printed.contains(literal), "{printed}");
        let missing = format!("file://{}", dir.path().join("missing").display());
        let err = Config::load(&with_secret(&missing), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn pulsar_backend_with_urls_is_valid() {
        let args = cli(&[
            "--backend",
            "pulsar",
            "--pulsar-url",
            "pulsar://localhost:6650",
            "--pulsar-admin-url",
            "http://localhost:8080",
        ]);
        let config = Config::load(&args, &env_of(&[])).unwrap();
        assert_eq!(config.backend.kind, BackendKind::Pulsar);
        let err = Config::load(&cli(&["--pulsar-url", "http://x"]), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("pulsar://"), "{err}");
    }

    #[test]
    fn validate_checks_hand_built_configs() {
        assert!(Config::for_tests("/tmp/x").validate().is_ok());
        let mut config = Config::default();
        config.kafka.default_partitions = 0;
        config.admin.listen = config.kafka.listen;
        let err = config.validate().unwrap_err();
        assert_eq!(err.errors.len(), 2, "{err}");
    }

    #[test]
    fn plaintext_listeners_can_be_turned_off() {
        let env = env_of(&[("PULSAR_GATEWAY_AMQP_LISTEN", "off")]);
        let config = Config::load(
            &cli(&[
                "--kafka-listen",
                "off",
                "--admin-listen",
                "OFF",
                "--kafka-tls-listen",
                "127.0.0.1:9093",
                "--admin-tls-listen",
                "127.0.0.1:9443",
                "--tls-cert-file",
                "/etc/gateway/tls.crt",
                "--tls-key-file",
                "/etc/gateway/tls.key",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(
            (config.kafka.listen, config.amqp.listen, config.admin.listen),
            (None, None, None)
        );
        assert_eq!(config.tls.admin_listen.unwrap().port(), 9443);
        // Nothing left for clients is an error, and so is one port for two listeners.
        let mut config = Config::for_tests("/tmp/x");
        config.kafka.listen = None;
        config.amqp.listen = None;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("at least one client listener"), "{err}");
        let mut config = Config::for_tests("/tmp/x");
        config.kafka.listen = Some("127.0.0.1:9092".parse().unwrap());
        config.tls.kafka_listen = config.kafka.listen;
        config.tls.cert_file = Some("/c".into());
        config.tls.key_file = Some("/k".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("tls.kafka_listen"), "{err}");
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            "example.com:9092".parse::<HostPort>().unwrap().to_string(),
            "example.com:9092"
        );
        let v6: HostPort = "[::1]:9092".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9092));
        assert_eq!(v6.to_string(), "[::1]:9092");
        for bad in ["example.com", ":9092", "host:99999", "::1:9092"] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "10", "s", "1.5s", "10h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_and_env_names_are_unique_and_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/configuration.md"
        ))
        .expect("docs/configuration.md exists");
        let mut seen = std::collections::HashSet::new();
        for spec in OPTIONS {
            assert!(seen.insert(spec.flag), "duplicate flag {}", spec.flag);
            for name in [
                spec.key.to_string(),
                spec.env_var(),
                format!("--{}", spec.flag),
            ] {
                assert!(
                    doc.contains(&format!("`{name}`")),
                    "docs/configuration.md does not mention `{name}`"
                );
            }
        }
    }
}

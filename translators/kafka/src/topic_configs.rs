//! Kafka topic configs: the names a Kafka 4 broker knows, what each is worth on the gateway, how
//! values are checked, and what they become on the backend.
//!
//! A config set on a topic (at CreateTopics, AlterConfigs or IncrementalAlterConfigs) is stored
//! with the topic as the backend property `kafka.<name>`, so every gateway instance, and a Pulsar
//! operator, sees it. Each config is one of three kinds:
//! - **honoured**: it becomes a backend policy (`cleanup.policy`, `retention.ms`,
//!   `retention.bytes`, and `segment.bytes` as the compaction trigger), or produce applies it to
//!   each batch (`max.message.bytes`, `message.timestamp.type`; see [`ProduceRules`]);
//! - **storage layout**: it only tunes how a Kafka broker lays its log out on disk or replicates
//!   it (segment files, flushing, indexes, replica throttles). Pulsar's storage does that its own
//!   way, so the value is kept and reported and changes nothing a client can observe;
//! - **fixed**: the gateway serves one value only (for example `remote.storage.enable`
//!   `false`); another value is refused with `INVALID_CONFIG`, never accepted and ignored.
//!
//! Unknown names are refused as a Kafka broker refuses them.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::backend::{Retention, TopicPolicies};

/// The backend property prefix under which a topic's Kafka configs are stored.
pub const PROPERTY_PREFIX: &str = "kafka.";

/// DescribeConfigs' `config_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Honoured,
    StorageLayout,
    /// Only this value is served.
    Fixed,
}

pub struct Definition {
    pub name: &'static str,
    /// The value a topic has when it sets none: Kafka's default, except for the fixed configs,
    /// whose default is the value the gateway applies.
    pub default: &'static str,
    pub value_type: ValueType,
    pub kind: Kind,
    /// Allowed values (enumerations and list members); empty when any value of the type goes.
    pub choices: &'static [&'static str],
    /// Lowest accepted number, for numeric types.
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
}

const fn def(
    name: &'static str,
    default: &'static str,
    value_type: ValueType,
    kind: Kind,
) -> Definition {
    Definition {
        name,
        default,
        value_type,
        kind,
        choices: &[],
        at_least: None,
        at_most: None,
    }
}

const fn ranged(mut d: Definition, at_least: f64, at_most: Option<f64>) -> Definition {
    d.at_least = Some(at_least);
    d.at_most = at_most;
    d
}

const fn one_of(mut d: Definition, choices: &'static [&'static str]) -> Definition {
    d.choices = choices;
    d
}

use Kind::*;
use ValueType as T;

const LONG_MAX: &str = "9223372036854775807";
const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Kafka 4's topic configs, sorted by name (the order DescribeConfigs lists them in).
pub static DEFINITIONS: &[Definition] = &[
    one_of(
        def("cleanup.policy", "delete", T::List, Honoured),
        &["compact", "delete"],
    ),
    ranged(
        def("compression.gzip.level", "-1", T::Int, StorageLayout),
        -1.0,
        Some(9.0),
    ),
    ranged(
        def("compression.lz4.level", "9", T::Int, StorageLayout),
        1.0,
        Some(17.0),
    ),
    // What a consumer receives is the same records either way; only the codec on the wire is
    // the gateway's choice.
    one_of(
        def("compression.type", "producer", T::String, StorageLayout),
        COMPRESSION,
    ),
    ranged(
        def("compression.zstd.level", "3", T::Int, StorageLayout),
        -131_072.0,
        Some(22.0),
    ),
    ranged(
        def("delete.retention.ms", "86400000", T::Long, StorageLayout),
        0.0,
        None,
    ),
    ranged(
        def("file.delete.delay.ms", "60000", T::Long, StorageLayout),
        0.0,
        None,
    ),
    ranged(
        def("flush.messages", LONG_MAX, T::Long, StorageLayout),
        1.0,
        None,
    ),
    ranged(def("flush.ms", LONG_MAX, T::Long, StorageLayout), 0.0, None),
    def(
        "follower.replication.throttled.replicas",
        "",
        T::List,
        StorageLayout,
    ),
    ranged(
        def("index.interval.bytes", "4096", T::Int, StorageLayout),
        0.0,
        None,
    ),
    def(
        "leader.replication.throttled.replicas",
        "",
        T::List,
        StorageLayout,
    ),
    ranged(
        def("local.retention.bytes", "-2", T::Long, StorageLayout),
        -2.0,
        None,
    ),
    ranged(
        def("local.retention.ms", "-2", T::Long, StorageLayout),
        -2.0,
        None,
    ),
    ranged(
        def("max.compaction.lag.ms", LONG_MAX, T::Long, StorageLayout),
        1.0,
        None,
    ),
    // Enforced by the gateway on each produced batch, up to its own frame limit
    // (`limits.max_frame_bytes`), which is also the default, filled in at run time. Not a Pulsar
    // policy: Pulsar measures its own encoding of a batch, which is larger than Kafka's.
    ranged(def("max.message.bytes", "", T::Int, Honoured), 0.0, None),
    // Fixed: produce refuses records more than an hour ahead (Kafka 4's default; searches by
    // time rely on it) and takes any past timestamp.
    def("message.timestamp.after.max.ms", "3600000", T::Long, Fixed),
    def("message.timestamp.before.max.ms", LONG_MAX, T::Long, Fixed),
    // LogAppendTime: the gateway stamps each record of a batch with the time it is appended.
    one_of(
        def("message.timestamp.type", "CreateTime", T::String, Honoured),
        &["CreateTime", "LogAppendTime"],
    ),
    ranged(
        def("min.cleanable.dirty.ratio", "0.5", T::Double, StorageLayout),
        0.0,
        Some(1.0),
    ),
    ranged(
        def("min.compaction.lag.ms", "0", T::Long, StorageLayout),
        0.0,
        None,
    ),
    ranged(
        def("min.insync.replicas", "1", T::Int, StorageLayout),
        1.0,
        None,
    ),
    def("preallocate", "false", T::Boolean, StorageLayout),
    def(
        "remote.log.copy.disable",
        "false",
        T::Boolean,
        StorageLayout,
    ),
    def(
        "remote.log.delete.on.disable",
        "false",
        T::Boolean,
        StorageLayout,
    ),
    // Fixed: tiered storage is Pulsar's offload policy, set in Pulsar.
    one_of(
        def("remote.storage.enable", "false", T::Boolean, Fixed),
        &["false"],
    ),
    ranged(def("retention.bytes", "-1", T::Long, Honoured), -1.0, None),
    ranged(
        def("retention.ms", "604800000", T::Long, Honoured),
        -1.0,
        None,
    ),
    ranged(
        def("segment.bytes", "1073741824", T::Int, Honoured),
        14.0,
        None,
    ),
    ranged(
        def("segment.index.bytes", "10485760", T::Int, StorageLayout),
        4.0,
        None,
    ),
    ranged(
        def("segment.jitter.ms", "0", T::Long, StorageLayout),
        0.0,
        None,
    ),
    ranged(
        def("segment.ms", "604800000", T::Long, StorageLayout),
        1.0,
        None,
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        T::Boolean,
        StorageLayout,
    ),
];

pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

/// A refused config: Kafka's `INVALID_CONFIG` with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The configs a topic has set (name to value); the others have their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    pub set: BTreeMap<String, String>,
}

/// The topic configs that produce applies to each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceRules {
    /// `max.message.bytes`: the largest batch, as produced (after compression).
    pub max_batch_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`: records take the time they are appended.
    pub log_append_time: bool,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub requires_keys: bool,
}

impl ProduceRules {
    /// A topic that sets neither.
    pub fn defaults(limits: &Limits) -> Self {
        TopicConfigs::default().produce_rules(limits)
    }
}

/// What the gateway fills in at run time.
pub struct Limits {
    pub max_message_bytes: usize,
}

impl Definition {
    fn default_value(&self, limits: &Limits) -> String {
        match self.name {
            "max.message.bytes" => limits.max_message_bytes.to_string(),
            _ => self.default.to_owned(),
        }
    }

    /// Checks a value (normalised: booleans and lists as Kafka writes them back).
    pub fn check(&self, value: &str, limits: &Limits) -> Result<String, Invalid> {
        let name = self.name;
        let bad = |why: &str| {
            Invalid(format!(
                "Invalid value {value} for configuration {name}: {why}"
            ))
        };
        let normalised = match self.value_type {
            T::Boolean => match value.trim().to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => b.to_owned(),
                _ => return Err(bad("Expected value to be either true or false")),
            },
            T::Int | T::Long => {
                let n: i64 = value.trim().parse().map_err(|_| {
                    let kind = format!("{:?}", self.value_type).to_uppercase();
                    bad(&format!("Not a number of type {kind}"))
                })?;
                if self.value_type == T::Int && i32::try_from(n).is_err() {
                    return Err(bad("Not a number of type INT"));
                }
                self.in_range(n as f64).map_err(|w| bad(&w))?;
                n.to_string()
            }
            T::Double => {
                let n: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("Not a number of type DOUBLE"))?;
                self.in_range(n).map_err(|w| bad(&w))?;
                value.trim().to_owned()
            }
            T::String => value.to_owned(),
            T::List => {
                let items: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if name == "cleanup.policy" && items.is_empty() {
                    return Err(bad("a topic needs at least one cleanup policy"));
                }
                items.join(",")
            }
        };
        if !self.choices.is_empty() {
            let items: Vec<&str> = if self.value_type == T::List {
                normalised.split(',').filter(|s| !s.is_empty()).collect()
            } else {
                vec![normalised.as_str()]
            };
            if let Some(other) = items.iter().find(|i| !self.choices.contains(i)) {
                return Err(match self.kind {
                    Fixed => Invalid(format!(
                        "{name}={other} is not served by the gateway (only {})",
                        self.choices.join(", ")
                    )),
                    _ => bad(&format!(
                        "String must be one of: {}",
                        self.choices.join(", ")
                    )),
                });
            }
        }
        if name == "max.message.bytes"
            && normalised.parse::<usize>().unwrap_or(0) > limits.max_message_bytes
        {
            return Err(Invalid(format!(
                "{name}={normalised} is above the gateway's limit on a produce request \
                 (limits.max_frame_bytes, {})",
                limits.max_message_bytes
            )));
        }
        if self.kind == Fixed && normalised != self.default_value(limits) {
            return Err(Invalid(format!(
                "{name}={normalised} is not served by the gateway (only {})",
                self.default_value(limits)
            )));
        }
        Ok(normalised)
    }

    fn in_range(&self, n: f64) -> Result<(), String> {
        match (self.at_least, self.at_most) {
            (Some(lo), Some(hi)) if n < lo || n > hi => {
                Err(format!("Value must be in [{lo}, {hi}]"))
            }
            (Some(lo), None) if n < lo => Err(format!("Value must be at least {lo}")),
            _ => Ok(()),
        }
    }
}

/// One change of IncrementalAlterConfigs (AlterConfigOp: SET 0, DELETE 1, APPEND 2, SUBTRACT 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Delete,
    Append,
    Subtract,
}

impl Op {
    pub fn from_code(code: i8) -> Option<Op> {
        Some(match code {
            0 => Op::Set,
            1 => Op::Delete,
            2 => Op::Append,
            3 => Op::Subtract,
            _ => return None,
        })
    }
}

impl TopicConfigs {
    /// A topic's configs from its backend properties (other properties are ignored, and so is
    /// a stored name this gateway no longer knows).
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Self {
        let set = properties
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(PROPERTY_PREFIX)?;
                definition(name).map(|_| (name.to_owned(), v.clone()))
            })
            .collect();
        TopicConfigs { set }
    }

    /// Configs given as (name, value) pairs, checked; a `None` value leaves the default.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        limits: &Limits,
    ) -> Result<Self, Invalid> {
        let mut set = BTreeMap::new();
        for (name, value) in pairs {
            let definition = known(name)?;
            if let Some(value) = value {
                set.insert(name.to_owned(), definition.check(value, limits)?);
            }
        }
        Ok(TopicConfigs { set })
    }

    /// IncrementalAlterConfigs: the configs after `changes`, all checked, or why not.
    pub fn altered(
        &self,
        changes: &[(String, Op, Option<String>)],
        limits: &Limits,
    ) -> Result<Self, Invalid> {
        let mut out = self.clone();
        for (name, op, value) in changes {
            let definition = known(name)?;
            match op {
                Op::Delete => {
                    out.set.remove(name);
                }
                Op::Set => {
                    let value = value
                        .as_deref()
                        .ok_or_else(|| Invalid(format!("a value is needed to set {name}")))?;
                    out.set
                        .insert(name.clone(), definition.check(value, limits)?);
                }
                Op::Append | Op::Subtract => {
                    if definition.value_type != T::List {
                        return Err(Invalid(format!(
                            "Config value {} is not allowed for config key: {name}",
                            if *op == Op::Append {
                                "append"
                            } else {
                                "subtract"
                            }
                        )));
                    }
                    let current = out.value(name, limits);
                    let mut items: Vec<String> = current
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    for item in value.as_deref().unwrap_or("").split(',').map(str::trim) {
                        if item.is_empty() {
                            continue;
                        }
                        if *op == Op::Append {
                            if !items.iter().any(|i| i == item) {
                                items.push(item.to_owned());
                            }
                        } else {
                            items.retain(|i| i != item);
                        }
                    }
                    out.set
                        .insert(name.clone(), definition.check(&items.join(","), limits)?);
                }
            }
        }
        Ok(out)
    }

    /// A config's value: set, or its default.
    pub fn value(&self, name: &str, limits: &Limits) -> String {
        match self.set.get(name) {
            Some(v) => v.clone(),
            None => definition(name)
                .map(|d| d.default_value(limits))
                .unwrap_or_default(),
        }
    }

    /// What produce applies to the topic's batches.
    pub fn produce_rules(&self, limits: &Limits) -> ProduceRules {
        ProduceRules {
            max_batch_bytes: self
                .value("max.message.bytes", limits)
                .parse()
                .unwrap_or(limits.max_message_bytes),
            log_append_time: self.value("message.timestamp.type", limits) == "LogAppendTime",
            requires_keys: self.compacted(),
        }
    }

    fn number(&self, name: &str) -> i64 {
        let limits = Limits {
            max_message_bytes: 0,
        };
        self.value(name, &limits).parse().unwrap_or(-1)
    }

    pub fn compacted(&self) -> bool {
        self.policy_has("compact")
    }

    fn policy_has(&self, policy: &str) -> bool {
        let limits = Limits {
            max_message_bytes: 0,
        };
        self.value("cleanup.policy", &limits)
            .split(',')
            .any(|p| p == policy)
    }

    /// The retention these configs ask for: Kafka deletes by time and size only under
    /// `cleanup.policy=delete`; a compact-only topic keeps every key's last value for ever.
    pub fn retention(&self) -> Retention {
        if !self.policy_has("delete") {
            return Retention::FOREVER;
        }
        let (ms, bytes) = (self.number("retention.ms"), self.number("retention.bytes"));
        Retention {
            time: (ms >= 0).then(|| Duration::from_millis(ms as u64)),
            bytes: (bytes >= 0).then_some(bytes as u64),
        }
    }

    /// The backend policies for a topic with these configs. Kafka's log cleaner never touches
    /// the active segment, so a topic is compacted once a segment's worth has been written since
    /// the last compaction.
    pub fn policies(&self) -> TopicPolicies {
        TopicPolicies {
            retention: self.retention(),
            compaction_threshold: self
                .compacted()
                .then(|| self.number("segment.bytes").max(1) as u64),
            keep_while_inactive: true,
        }
    }

    /// The backend properties for these configs: those to set, and the stored ones to remove.
    pub fn properties(
        &self,
        stored: &BTreeMap<String, String>,
    ) -> (BTreeMap<String, String>, Vec<String>) {
        let set = self
            .set
            .iter()
            .map(|(k, v)| (format!("{PROPERTY_PREFIX}{k}"), v.clone()))
            .collect::<BTreeMap<_, _>>();
        let remove = stored
            .keys()
            .filter(|k| k.starts_with(PROPERTY_PREFIX) && !set.contains_key(*k))
            .cloned()
            .collect();
        (set, remove)
    }
}

fn known(name: &str) -> Result<&'static Definition, Invalid> {
    definition(name).ok_or_else(|| Invalid(format!("Unknown topic config name: {name}")))
}

/// `retention.ms` / `retention.bytes` as a Kafka client reads them for a retention.
pub fn retention_values(r: Retention) -> (String, String) {
    (
        r.time
            .map_or("-1".to_owned(), |t| t.as_millis().to_string()),
        r.bytes.map_or("-1".to_owned(), |b| b.to_string()),
    )
}

/// Whether `applied` keeps at least what `wanted` asks to keep.
pub fn keeps_at_least(applied: Retention, wanted: Retention) -> bool {
    let time = match (applied.time, wanted.time) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(w)) => a >= w,
    };
    let bytes = match (applied.bytes, wanted.bytes) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(w)) => a >= w,
    };
    time && bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_bytes: 8 << 20,
    };

    #[test]
    fn produce_rules_follow_the_configs() {
        assert_eq!(
            ProduceRules::defaults(&LIMITS),
            ProduceRules {
                max_batch_bytes: 8 << 20,
                log_append_time: false,
                requires_keys: false,
            }
        );
        let set = TopicConfigs::parse(
            [
                ("max.message.bytes", Some("2000")),
                ("message.timestamp.type", Some("LogAppendTime")),
                ("cleanup.policy", Some("compact,delete")),
            ],
            &LIMITS,
        )
        .unwrap();
        assert_eq!(
            set.produce_rules(&LIMITS),
            ProduceRules {
                max_batch_bytes: 2000,
                log_append_time: true,
                requires_keys: true,
            }
        );
    }

    #[test]
    fn definitions_are_sorted_and_unique() {
        for pair in DEFINITIONS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{}", pair[1].name);
        }
    }

    #[test]
    fn unknown_names_and_bad_values_are_refused() {
        let parse = |name, value| TopicConfigs::parse([(name, Some(value))], &LIMITS);
        assert_eq!(
            parse("no.such.config", "1"),
            Err(Invalid("Unknown topic config name: no.such.config".into()))
        );
        assert!(parse("retention.ms", "soon").is_err());
        assert!(parse("retention.ms", "-2").is_err());
        assert!(parse("segment.bytes", "4294967296").is_err());
        assert!(parse("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(parse("cleanup.policy", "compact,shred").is_err());
        assert!(parse("cleanup.policy", "").is_err());
        assert!(parse("preallocate", "yes").is_err());
        assert!(parse("message.timestamp.type", "NoTime").is_err());
        assert!(parse("remote.storage.enable", "true").is_err());
        assert!(parse("max.message.bytes", "-1").is_err());
        let over = ((8u32 << 20) + 1).to_string();
        assert!(parse("max.message.bytes", &over).is_err());
        let eight_mib = (8u32 << 20).to_string();
        assert!(parse("max.message.bytes", &eight_mib).is_ok());
        assert!(parse("max.message.bytes", "1048588").is_ok());
        assert!(parse("message.timestamp.type", "CreateTime").is_ok());
        assert!(parse("message.timestamp.type", "LogAppendTime").is_ok());
    }

    #[test]
    fn values_are_normalised() {
        let c = TopicConfigs::parse(
            [
                ("cleanup.policy", Some(" compact , delete ")),
                ("preallocate", Some("TRUE")),
                ("retention.ms", Some(" 3600000")),
                ("segment.ms", None),
            ],
            &LIMITS,
        )
        .unwrap();
        assert_eq!(c.set["cleanup.policy"], "compact,delete");
        assert_eq!(c.set["preallocate"], "true");
        assert_eq!(c.set["retention.ms"], "3600000");
        assert!(!c.set.contains_key("segment.ms"));
    }

    #[test]
    fn cleanup_policy_decides_retention_and_compaction() {
        let of = |pairs: &[(&'static str, &'static str)]| {
            TopicConfigs::parse(pairs.iter().map(|(k, v)| (*k, Some(*v))), &LIMITS)
                .unwrap()
                .policies()
        };
        let week = Some(Duration::from_millis(604_800_000));
        let default = of(&[]);
        assert_eq!(default.retention.time, week);
        assert_eq!(default.retention.bytes, None);
        assert_eq!(default.compaction_threshold, None);
        assert!(default.keep_while_inactive);

        let compact = of(&[("cleanup.policy", "compact"), ("retention.ms", "1000")]);
        assert_eq!(compact.retention, Retention::FOREVER);
        assert_eq!(compact.compaction_threshold, Some(1 << 30));

        let both = of(&[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "-1"),
            ("retention.bytes", "1000000"),
            ("segment.bytes", "52428800"),
        ]);
        assert_eq!(both.retention.time, None);
        assert_eq!(both.retention.bytes, Some(1_000_000));
        assert_eq!(both.compaction_threshold, Some(52_428_800));
    }

    #[test]
    fn incremental_changes() {
        let c = TopicConfigs::parse([("retention.ms", Some("1000"))], &LIMITS).unwrap();
        let c = c
            .altered(
                &[
                    ("cleanup.policy".into(), Op::Append, Some("compact".into())),
                    ("retention.ms".into(), Op::Delete, None),
                    ("segment.ms".into(), Op::Set, Some("60000".into())),
                ],
                &LIMITS,
            )
            .unwrap();
        assert_eq!(c.set["cleanup.policy"], "delete,compact");
        assert!(!c.set.contains_key("retention.ms"));
        assert_eq!(c.set["segment.ms"], "60000");
        let c = c
            .altered(
                &[("cleanup.policy".into(), Op::Subtract, Some("delete".into()))],
                &LIMITS,
            )
            .unwrap();
        assert_eq!(c.set["cleanup.policy"], "compact");
        // Removing the last policy leaves none, which is refused.
        assert!(c
            .altered(
                &[(
                    "cleanup.policy".into(),
                    Op::Subtract,
                    Some("compact".into())
                )],
                &LIMITS
            )
            .is_err());
        assert!(c
            .altered(
                &[("retention.ms".into(), Op::Append, Some("1".into()))],
                &LIMITS
            )
            .is_err());
    }

    #[test]
    fn properties_round_trip_and_stale_ones_are_removed() {
        let c = TopicConfigs::parse([("retention.ms", Some("1000"))], &LIMITS).unwrap();
        let stored = BTreeMap::from([
            ("kafka.segment.ms".to_owned(), "5".to_owned()),
            ("owner".to_owned(), "someone".to_owned()),
        ]);
        let (set, remove) = c.properties(&stored);
        assert_eq!(
            set,
            BTreeMap::from([("kafka.retention.ms".into(), "1000".into())])
        );
        assert_eq!(remove, vec!["kafka.segment.ms".to_owned()]);
        assert_eq!(TopicConfigs::from_properties(&set), c);
    }

    #[test]
    fn retention_coverage() {
        let week = Retention {
            time: Some(Duration::from_secs(604_800)),
            bytes: None,
        };
        assert!(keeps_at_least(Retention::FOREVER, week));
        assert!(keeps_at_least(week, week));
        let none = Retention {
            time: Some(Duration::ZERO),
            bytes: Some(0),
        };
        assert!(!keeps_at_least(none, week));
        assert_eq!(retention_values(week), ("604800000".into(), "-1".into()));
    }
}

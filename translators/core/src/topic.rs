//! Pulsar topic names: `persistent://tenant/namespace/local`, with `-partition-N` suffixes for the
//! partitions of a partitioned topic.

use std::fmt;

const PARTITION_SUFFIX: &str = "-partition-";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub persistent: bool,
    pub tenant: String,
    pub namespace: String,
    /// The local name, including a `-partition-N` suffix when this names one partition.
    pub local: String,
}

impl TopicName {
    pub fn new(tenant: &str, namespace: &str, local: &str) -> Self {
        TopicName {
            persistent: true,
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            local: local.to_owned(),
        }
    }

    /// Parses `persistent://t/ns/x`, `non-persistent://t/ns/x`, `t/ns/x`, or a bare `x` placed in
    /// the given default namespace.
    pub fn parse(name: &str, default_tenant: &str, default_namespace: &str) -> Option<Self> {
        let (persistent, rest) = if let Some(r) = name.strip_prefix("persistent://") {
            (true, r)
        } else if let Some(r) = name.strip_prefix("non-persistent://") {
            (false, r)
        } else {
            (true, name)
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let topic = match parts.as_slice() {
            [local] if !name.contains("://") => {
                TopicName::new(default_tenant, default_namespace, local)
            }
            [tenant, ns, local] => TopicName::new(tenant, ns, local),
            _ => return None,
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.=:".contains(c))
        };
        if !(valid(&topic.tenant) && valid(&topic.namespace) && valid(&topic.local)) {
            return None;
        }
        Some(TopicName {
            persistent,
            ..topic
        })
    }

    pub fn namespace_path(&self) -> String {
        format!("{}/{}", self.tenant, self.namespace)
    }

    /// The topic of partition `index` of this (partitioned) topic.
    pub fn partition(&self, index: u32) -> TopicName {
        TopicName {
            local: format!("{}{}{}", self.local, PARTITION_SUFFIX, index),
            ..self.clone()
        }
    }

    /// If this names a partition, the partitioned topic and the index.
    pub fn partition_of(&self) -> Option<(TopicName, u32)> {
        let at = self.local.rfind(PARTITION_SUFFIX)?;
        let index = self.local[at + PARTITION_SUFFIX.len()..].parse().ok()?;
        let base = TopicName {
            local: self.local[..at].to_owned(),
            ..self.clone()
        };
        Some((base, index))
    }
}

/// A Pulsar-safe rendering of a name from a client (an AMQP exchange, a JMS client id):
/// characters outside `[A-Za-z0-9_.-]` become `=XX`, so different names stay different.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.persistent {
            "persistent"
        } else {
            "non-persistent"
        };
        write!(
            f,
            "{scheme}://{}/{}/{}",
            self.tenant, self.namespace, self.local
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_pulsar_cannot_name() {
        assert_eq!(escape("orders.eu-1_a"), "orders.eu-1_a");
        assert_eq!(escape("a/b c=é"), "a=2Fb=20c=3D=C3=A9");
    }

    #[test]
    fn parses_short_and_full_names() {
        let t = TopicName::parse("orders", "public", "default").unwrap();
        assert_eq!(t.to_string(), "persistent://public/default/orders");
        let t = TopicName::parse("acme/sales/orders", "public", "default").unwrap();
        assert_eq!(t.to_string(), "persistent://acme/sales/orders");
        let t = TopicName::parse("persistent://acme/sales/orders", "public", "default").unwrap();
        assert_eq!(t.namespace_path(), "acme/sales");
        assert!(TopicName::parse("a/b", "public", "default").is_none());
        assert!(TopicName::parse("persistent://orders", "public", "default").is_none());
        assert!(TopicName::parse("bad name", "public", "default").is_none());
    }

    #[test]
    fn partition_names_round_trip() {
        let t = TopicName::parse("orders", "public", "default").unwrap();
        let p = t.partition(3);
        assert_eq!(p.local, "orders-partition-3");
        assert_eq!(p.partition_of(), Some((t.clone(), 3)));
        assert_eq!(t.partition_of(), None);
    }
}

//! What a topic's stored properties say that produce and fetch need on every request: the log
//! starts DeleteRecords moved (`handlers::delete_records`), the produce rules of its configs
//! (`topic_configs`) and whether fetches read its compacted view.
//!
//! Every instance reads them through a short-lived cache ([`STATE_TTL`]): the instance that
//! changed them serves the change at once, the others within that time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::TopicName;

use crate::frontend::KafkaFrontend;
use crate::topic_configs::{Limits, ProduceRules, TopicConfigs};

/// How long an instance serves a topic's stored state before reading it again.
pub(crate) const STATE_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicState {
    /// Log starts moved by DeleteRecords, by partition.
    pub log_starts: BTreeMap<u32, i64>,
    pub produce: ProduceRules,
    /// `cleanup.policy` includes `compact`: fetches read the compacted view.
    pub compacted: bool,
}

/// The logical topic and partition index of a concrete topic.
pub(crate) fn base_of(topic: &TopicName) -> (TopicName, u32) {
    topic.partition_of().unwrap_or_else(|| (topic.clone(), 0))
}

fn state_from(properties: &BTreeMap<String, String>, limits: &Limits) -> Arc<TopicState> {
    let configs = TopicConfigs::from_properties(properties);
    Arc::new(TopicState {
        log_starts: crate::handlers::delete_records::log_starts(properties),
        produce: configs.produce_rules(limits),
        compacted: configs.compacted(),
    })
}

impl KafkaFrontend {
    /// A logical topic's stored state: from the cache, refreshed in the background once expired
    /// (log starts only grow, so a stale answer hides less, never more); read at once the first
    /// time.
    pub(crate) async fn topic_state(&self, base: &TopicName) -> Arc<TopicState> {
        let key = base.to_string();
        if let Some((state, expired)) = self.topic_states.get_or_stale(&key) {
            if expired {
                let (backend, cache, base) = (
                    self.backend.clone(),
                    self.topic_states.clone(),
                    base.clone(),
                );
                let limits = self.config_limits();
                tokio::spawn(async move {
                    match backend.topic_properties(&base).await {
                        Ok(properties) => cache.put(key, state_from(&properties, &limits)),
                        Err(e) => {
                            tracing::debug!(topic = %base, error = %e, "refreshing topic state")
                        }
                    }
                });
            }
            return state;
        }
        // A fetch or produce must not fail for want of it: when it cannot be read (Pulsar does
        // not answer, or the client's token may not read topic metadata), the topic counts as
        // one with no deleted records and default configs until the next read, a
        // time-to-live later.
        let properties = match self.backend.topic_properties(base).await {
            Ok(p) => p,
            Err(gateway_core::BackendError::TopicNotFound(_)) => BTreeMap::new(),
            Err(e) => {
                tracing::debug!(topic = %base, error = %e, "topic state unknown");
                BTreeMap::new()
            }
        };
        let state = state_from(&properties, &self.config_limits());
        self.topic_states.put(key, state.clone());
        state
    }

    /// Serves `state` for `base` at once, after this instance changed it.
    pub(crate) fn set_topic_state(&self, base: &TopicName, state: TopicState) {
        self.topic_states.put(base.to_string(), Arc::new(state));
    }

    /// Reads `base`'s state again at its next use, after this instance changed its properties.
    pub(crate) fn forget_topic_state(&self, base: &TopicName) {
        let key = base.to_string();
        self.topic_states.forget(|k| k == key);
    }
}

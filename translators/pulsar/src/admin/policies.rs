//! Topic properties and topic-level policies (retention, compaction threshold, inactive-topic
//! deletion) through the admin API. Topic policies need Pulsar's topic-level policies, which
//! are on by default since Pulsar 3.0 (`topicLevelPoliciesEnabled`).

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::backend::{Retention, TopicPolicies};
use gateway_core::{Result, TopicName};
use hyper::Method;
use serde::{Deserialize, Serialize};

use super::{encode, AdminClient, Reply};

/// Pulsar's `RetentionPolicies`: minutes and megabytes, -1 for no limit.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetentionPolicies {
    retention_time_in_minutes: i64,
    #[serde(rename = "retentionSizeInMB")]
    retention_size_in_mb: i64,
}

const MIB: u64 = 1 << 20;

impl RetentionPolicies {
    /// Pulsar counts in whole minutes and megabytes, so a limit is rounded up: a topic keeps
    /// at least what was asked for, never less.
    fn from_retention(r: Retention) -> Self {
        RetentionPolicies {
            retention_time_in_minutes: r
                .time
                .map_or(-1, |t| (t.as_millis().div_ceil(60_000)) as i64),
            retention_size_in_mb: r.bytes.map_or(-1, |b| b.div_ceil(MIB) as i64),
        }
    }

    fn to_retention(&self) -> Retention {
        Retention {
            time: (self.retention_time_in_minutes >= 0)
                .then(|| Duration::from_secs(self.retention_time_in_minutes as u64 * 60)),
            bytes: (self.retention_size_in_mb >= 0).then(|| self.retention_size_in_mb as u64 * MIB),
        }
    }
}

/// Pulsar's `InactiveTopicPolicies`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InactiveTopicPolicies {
    inactive_topic_delete_mode: &'static str,
    max_inactive_duration_seconds: i32,
    delete_while_inactive: bool,
}

impl AdminClient {
    pub async fn topic_properties(&self, topic: &TopicName) -> Result<BTreeMap<String, String>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/properties"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        // A topic created without properties answers `null`, or nothing at all.
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(BTreeMap::new());
        }
        Ok(reply
            .json::<Option<BTreeMap<String, String>>>(topic)?
            .unwrap_or_default())
    }

    pub async fn update_topic_properties(
        &self,
        topic: &TopicName,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        if !set.is_empty() {
            let url = self.topic_url(topic, "/properties");
            success(self.call_json(Method::PUT, &url, set).await?, topic)?;
        }
        // The API removes one key per call.
        for key in remove {
            let url = self.topic_url(topic, &format!("/properties?key={}", encode(key)));
            let reply = self.call(Method::DELETE, &url, None).await?;
            success(reply, topic)?;
        }
        Ok(())
    }

    /// Sets each policy on the topic; a partitioned topic's policies apply to every partition.
    pub async fn set_topic_policies(&self, topic: &TopicName, p: &TopicPolicies) -> Result<()> {
        let retention = RetentionPolicies::from_retention(p.retention);
        let url = self.topic_url(topic, "/retention");
        success(self.call_json(Method::POST, &url, &retention).await?, topic)?;

        let url = self.topic_url(topic, "/compactionThreshold");
        let reply = match p.compaction_threshold {
            Some(bytes) => self.call_json(Method::POST, &url, &bytes).await?,
            None => self.call(Method::DELETE, &url, None).await?,
        };
        success(reply, topic)?;

        let url = self.topic_url(topic, "/inactiveTopicPolicies");
        let reply = if p.keep_while_inactive {
            let policy = InactiveTopicPolicies {
                inactive_topic_delete_mode: "delete_when_no_subscriptions",
                max_inactive_duration_seconds: 60,
                delete_while_inactive: false,
            };
            self.call_json(Method::POST, &url, &policy).await?
        } else {
            self.call(Method::DELETE, &url, None).await?
        };
        success(reply, topic)
    }

    /// The retention Pulsar applies to the topic: its own policy, else its namespace's, else the
    /// broker's default.
    pub async fn applied_retention(&self, topic: &TopicName) -> Result<Retention> {
        let url = self.topic_url(topic, "/retention?applied=true");
        let reply = self.call(Method::GET, &url, None).await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        Ok(reply.json::<RetentionPolicies>(topic)?.to_retention())
    }
}

fn success(reply: Reply, topic: &TopicName) -> Result<()> {
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(reply.error(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_rounded_up_to_whole_minutes_and_megabytes() {
        let r = RetentionPolicies::from_retention(Retention {
            time: Some(Duration::from_millis(90_001)),
            bytes: Some(MIB + 1),
        });
        assert_eq!(
            (r.retention_time_in_minutes, r.retention_size_in_mb),
            (2, 2)
        );
        let r = RetentionPolicies::from_retention(Retention::FOREVER);
        assert_eq!(
            (r.retention_time_in_minutes, r.retention_size_in_mb),
            (-1, -1)
        );
        assert_eq!(r.to_retention(), Retention::FOREVER);
        let week = Retention {
            time: Some(Duration::from_secs(7 * 86_400)),
            bytes: None,
        };
        assert_eq!(RetentionPolicies::from_retention(week).to_retention(), week);
    }

    #[test]
    fn retention_policies_use_pulsars_field_names() {
        let json =
            serde_json::to_string(&RetentionPolicies::from_retention(Retention::FOREVER)).unwrap();
        assert_eq!(
            json,
            r#"{"retentionTimeInMinutes":-1,"retentionSizeInMB":-1}"#
        );
    }
}

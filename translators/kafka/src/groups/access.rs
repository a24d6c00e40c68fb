//! Group authorization (DESIGN.md §8). Kafka checks a group ACL before every group request;
//! here Pulsar decides, asked with the client's own token: may it consume in the group's
//! namespace through a subscription named after the group? That is the subscription the group's
//! commits are mirrored to, so a Pulsar admin grants or narrows a group the way they would a
//! native subscription (`grant-permission --actions consume`, `grant-subscription-permission`).
//!
//! Only sessions acting for an authenticated client on a backend that authorizes (Pulsar) are
//! checked; answers are kept for a few seconds per session, so a revoked permission takes
//! effect within `ANSWER_TTL`.

use std::time::Duration;

use gateway_core::recent::Recent;
use gateway_core::TopicName;
use kafka_protocol::error::ResponseError;

use crate::frontend::KafkaFrontend;

/// How long one session trusts Pulsar's answer for a (namespace, group).
const ANSWER_TTL: Duration = Duration::from_secs(10);

/// One session's recent answers.
pub struct GroupAccess {
    answers: Recent<bool>,
}

impl Default for GroupAccess {
    fn default() -> Self {
        GroupAccess {
            answers: Recent::new(ANSWER_TTL),
        }
    }
}

impl KafkaFrontend {
    /// Whether this session may use `group` (the stored id, scoped when groups are): `Err`
    /// carries the Kafka error to answer with, GROUP_AUTHORIZATION_FAILED when Pulsar refuses.
    pub(crate) async fn authorize_group(&self, group: &str) -> Result<(), ResponseError> {
        let Some(access) = &self.group_access else {
            return Ok(());
        };
        let subscription = match &self.config.group_scope {
            // Another namespace's group is never this session's (the scope put its own prefix
            // on every id it sent).
            Some(scope) => scope
                .unscoped(group)
                .ok_or(ResponseError::GroupAuthorizationFailed)?,
            None => group,
        };
        let (tenant, namespace) = (&self.config.default_tenant, &self.config.default_namespace);
        if self
            .may_subscribe(access, tenant, namespace, subscription)
            .await?
        {
            Ok(())
        } else {
            Err(ResponseError::GroupAuthorizationFailed)
        }
    }

    /// Whether this session's group may hold a position on `topic`: committing one moves the
    /// group's subscription there (the mirror), which needs the same consume permission in the
    /// topic's own namespace. `Err`: TOPIC_AUTHORIZATION_FAILED when Pulsar refuses.
    pub(crate) async fn authorize_commit(
        &self,
        group: &str,
        topic: &TopicName,
    ) -> Result<(), ResponseError> {
        let Some(access) = &self.group_access else {
            return Ok(());
        };
        let scoped = self.config.group_scope.is_some();
        let subscription = super::scope::subscription_name(group, scoped);
        if self
            .may_subscribe(access, &topic.tenant, &topic.namespace, subscription)
            .await?
        {
            Ok(())
        } else {
            Err(ResponseError::TopicAuthorizationFailed)
        }
    }

    async fn may_subscribe(
        &self,
        access: &GroupAccess,
        tenant: &str,
        namespace: &str,
        subscription: &str,
    ) -> Result<bool, ResponseError> {
        // Tenants and namespaces hold no NUL, so the key is unambiguous.
        let key = format!("{tenant}/{namespace}\0{subscription}");
        if let Some(answer) = access.answers.get(&key) {
            return Ok(answer);
        }
        let answer = self
            .backend
            .may_subscribe(tenant, namespace, subscription)
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "asking Pulsar about a group's permission failed");
                ResponseError::CoordinatorNotAvailable
            })?;
        access.answers.put(key, answer);
        Ok(answer)
    }
}

//! Tenancy for consumer groups and transactional ids (DESIGN.md §8): when authentication is
//! required, a session's group ids and transactional ids live inside its principal's
//! `tenant/namespace`. Group `g` of a client in
//! `tenant-a/ns` is stored and coordinated as `tenant-a/ns/g`; the client only ever sees `g`,
//! and ListGroups, DescribeGroups and the rest show it only its own namespace's groups.
//!
//! Tenants and namespaces cannot contain `/`, so the first two `/` of a scoped id always
//! delimit the scope, whatever the group id itself contains.
//!
//! Short topic names in OffsetCommit, OffsetFetch and OffsetDelete are qualified the same way
//! (`orders` becomes `tenant-a/ns/orders`) and given back short: the coordinator then resolves
//! and stores them the same wherever it runs, including on a peer that a forward-mode fleet
//! passes the request to, whose own default namespace is not the client's.

use kafka_protocol::messages::{GroupId, RequestKind, ResponseKind, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

/// FindCoordinator's key types for groups and transactional ids.
const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

/// One session's group namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupScope {
    prefix: String,
}

impl GroupScope {
    pub fn new(tenant: &str, namespace: &str) -> GroupScope {
        GroupScope {
            prefix: format!("{tenant}/{namespace}/"),
        }
    }

    fn scoped(&self, id: &str) -> StrBytes {
        StrBytes::from_string(format!("{}{id}", self.prefix))
    }

    fn group(&self, id: &GroupId) -> GroupId {
        GroupId(self.scoped(id.as_str()))
    }

    /// The client's name for a stored id, or `None` if it is another scope's.
    pub(crate) fn unscoped<'a>(&self, id: &'a str) -> Option<&'a str> {
        id.strip_prefix(self.prefix.as_str())
    }

    fn strip(&self, id: &mut GroupId) {
        if let Some(bare) = self.unscoped(id.as_str()) {
            *id = GroupId(StrBytes::from_string(bare.to_owned()));
        }
    }

    /// A short topic name inside the scope's namespace; names given in full stay as they are
    /// and are remembered, to be given back in full.
    fn qualify(&self, name: &mut TopicName, in_full: &mut NamedInFull) {
        if name.contains('/') {
            in_full.0.push(name.to_string());
        } else {
            *name = TopicName(self.scoped(name.as_str()));
        }
    }

    fn unqualify(&self, name: &mut TopicName, in_full: &NamedInFull) {
        if in_full.0.iter().any(|n| n == name.as_str()) {
            return;
        }
        if let Some(bare) = self.unscoped(name.as_str()).filter(|b| !b.contains('/')) {
            *name = TopicName(StrBytes::from_string(bare.to_owned()));
        }
    }

    /// Puts the request's group ids, and the short topic names of its group requests, inside
    /// the scope; returns the topic names the client gave in full.
    pub fn enter(&self, request: &mut RequestKind) -> NamedInFull {
        let mut in_full = NamedInFull::default();
        match request {
            RequestKind::FindCoordinator(r)
                if r.key_type == KEY_GROUP || r.key_type == KEY_TRANSACTION =>
            {
                r.key = self.scoped(r.key.as_str());
                for key in &mut r.coordinator_keys {
                    *key = self.scoped(key.as_str());
                }
            }
            RequestKind::JoinGroup(r) => r.group_id = self.group(&r.group_id),
            RequestKind::SyncGroup(r) => r.group_id = self.group(&r.group_id),
            RequestKind::Heartbeat(r) => r.group_id = self.group(&r.group_id),
            RequestKind::ConsumerGroupHeartbeat(r) => r.group_id = self.group(&r.group_id),
            RequestKind::ConsumerGroupDescribe(r) => {
                for g in &mut r.group_ids {
                    *g = self.group(g);
                }
            }
            RequestKind::LeaveGroup(r) => r.group_id = self.group(&r.group_id),
            RequestKind::OffsetCommit(r) => {
                r.group_id = self.group(&r.group_id);
                for t in &mut r.topics {
                    self.qualify(&mut t.name, &mut in_full);
                }
            }
            RequestKind::OffsetDelete(r) => {
                r.group_id = self.group(&r.group_id);
                for t in &mut r.topics {
                    self.qualify(&mut t.name, &mut in_full);
                }
            }
            RequestKind::OffsetFetch(r) => {
                r.group_id = self.group(&r.group_id);
                for t in r.topics.iter_mut().flatten() {
                    self.qualify(&mut t.name, &mut in_full);
                }
                for g in &mut r.groups {
                    g.group_id = self.group(&g.group_id);
                    for t in g.topics.iter_mut().flatten() {
                        self.qualify(&mut t.name, &mut in_full);
                    }
                }
            }
            RequestKind::DescribeGroups(r) => {
                for g in &mut r.groups {
                    *g = self.group(g);
                }
            }
            RequestKind::DeleteGroups(r) => {
                for g in &mut r.groups_names {
                    *g = self.group(g);
                }
            }
            // Transactional ids live in the scope as group ids do; so do the groups that
            // transactions commit offsets for.
            RequestKind::InitProducerId(r) => {
                if let Some(id) = &mut r.transactional_id {
                    *id = self.transactional(id);
                }
            }
            RequestKind::Produce(r) => {
                if let Some(id) = &mut r.transactional_id {
                    *id = self.transactional(id);
                }
            }
            RequestKind::AddPartitionsToTxn(r) => {
                r.v3_and_below_transactional_id =
                    self.transactional(&r.v3_and_below_transactional_id);
            }
            RequestKind::AddOffsetsToTxn(r) => {
                r.transactional_id = self.transactional(&r.transactional_id);
                r.group_id = self.group(&r.group_id);
            }
            RequestKind::EndTxn(r) => r.transactional_id = self.transactional(&r.transactional_id),
            RequestKind::TxnOffsetCommit(r) => {
                r.transactional_id = self.transactional(&r.transactional_id);
                r.group_id = self.group(&r.group_id);
                for t in &mut r.topics {
                    self.qualify(&mut t.name, &mut in_full);
                }
            }
            RequestKind::DescribeTransactions(r) => {
                for id in &mut r.transactional_ids {
                    *id = self.transactional(id);
                }
            }
            _ => {}
        }
        in_full
    }

    fn transactional(&self, id: &TransactionalId) -> TransactionalId {
        TransactionalId(self.scoped(id.as_str()))
    }

    fn strip_transactional(&self, id: &mut TransactionalId) {
        if let Some(bare) = self.unscoped(id.as_str()) {
            *id = TransactionalId(StrBytes::from_string(bare.to_owned()));
        }
    }

    /// Gives the response's group ids and topic names back as the client named them;
    /// ListGroups keeps only this scope's groups.
    pub fn leave(&self, response: &mut ResponseKind, in_full: &NamedInFull) {
        match response {
            ResponseKind::FindCoordinator(r) => {
                for c in &mut r.coordinators {
                    if let Some(bare) = self.unscoped(c.key.as_str()) {
                        c.key = StrBytes::from_string(bare.to_owned());
                    }
                }
            }
            ResponseKind::OffsetFetch(r) => {
                for t in &mut r.topics {
                    self.unqualify(&mut t.name, in_full);
                }
                for g in &mut r.groups {
                    self.strip(&mut g.group_id);
                    for t in &mut g.topics {
                        self.unqualify(&mut t.name, in_full);
                    }
                }
            }
            ResponseKind::OffsetCommit(r) => {
                for t in &mut r.topics {
                    self.unqualify(&mut t.name, in_full);
                }
            }
            ResponseKind::OffsetDelete(r) => {
                for t in &mut r.topics {
                    self.unqualify(&mut t.name, in_full);
                }
            }
            ResponseKind::DescribeGroups(r) => {
                for g in &mut r.groups {
                    self.strip(&mut g.group_id);
                }
            }
            ResponseKind::DeleteGroups(r) => {
                for g in &mut r.results {
                    self.strip(&mut g.group_id);
                }
            }
            ResponseKind::ConsumerGroupDescribe(r) => {
                for g in &mut r.groups {
                    self.strip(&mut g.group_id);
                }
            }
            ResponseKind::ListGroups(r) => {
                r.groups
                    .retain(|g| self.unscoped(g.group_id.as_str()).is_some());
                for g in &mut r.groups {
                    self.strip(&mut g.group_id);
                }
            }
            ResponseKind::TxnOffsetCommit(r) => {
                for t in &mut r.topics {
                    self.unqualify(&mut t.name, in_full);
                }
            }
            ResponseKind::DescribeTransactions(r) => {
                for t in &mut r.transaction_states {
                    self.strip_transactional(&mut t.transactional_id);
                }
            }
            ResponseKind::ListTransactions(r) => {
                r.transaction_states
                    .retain(|t| self.unscoped(t.transactional_id.as_str()).is_some());
                for t in &mut r.transaction_states {
                    self.strip_transactional(&mut t.transactional_id);
                }
            }
            _ => {}
        }
    }
}

/// Topic names a request gave in full (`tenant/ns/topic`, `persistent://...`): its response
/// names them the same way.
#[derive(Debug, Default)]
pub struct NamedInFull(Vec<String>);

/// The Pulsar subscription a group's offsets are mirrored to: the client's own group id, without
/// the scope (the subscription already sits on the tenant's topics).
pub fn subscription_name(group_key: &str, scoped: bool) -> &str {
    if !scoped {
        return group_key;
    }
    group_key.splitn(3, '/').nth(2).unwrap_or(group_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        list_groups_response::ListedGroup, DescribeGroupsRequest, ListGroupsResponse,
        OffsetCommitRequest,
    };

    #[test]
    fn ids_are_scoped_on_the_way_in_and_bare_on_the_way_out() {
        let scope = GroupScope::new("tenant-a", "ns");
        let mut commit = RequestKind::OffsetCommit(
            OffsetCommitRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g/x"))),
        );
        scope.enter(&mut commit);
        let RequestKind::OffsetCommit(r) = &commit else {
            unreachable!()
        };
        assert_eq!(r.group_id.as_str(), "tenant-a/ns/g/x");

        let mut describe =
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
                GroupId(StrBytes::from_static_str("a")),
                GroupId(StrBytes::from_static_str("b")),
            ]));
        scope.enter(&mut describe);
        let RequestKind::DescribeGroups(r) = &describe else {
            unreachable!()
        };
        assert_eq!(r.groups[1].as_str(), "tenant-a/ns/b");

        let listed = |id: &'static str| {
            ListedGroup::default().with_group_id(GroupId(StrBytes::from_static_str(id)))
        };
        let mut list = ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(vec![
            listed("tenant-a/ns/mine"),
            listed("tenant-b/ns/theirs"),
            listed("tenant-a/other/not-mine"),
            listed("unscoped"),
        ]));
        scope.leave(&mut list, &NamedInFull::default());
        let ResponseKind::ListGroups(r) = &list else {
            unreachable!()
        };
        let ids: Vec<&str> = r.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(
            ids,
            ["mine"],
            "only this scope's groups, by their own names"
        );
    }

    #[test]
    fn transactional_ids_are_scoped_and_listed_only_in_their_scope() {
        use kafka_protocol::messages::list_transactions_response::TransactionState;
        use kafka_protocol::messages::{
            EndTxnRequest, InitProducerIdRequest, ListTransactionsResponse, ProduceRequest,
        };
        let scope = GroupScope::new("tenant-a", "ns");
        let id = || TransactionalId(StrBytes::from_static_str("app-1"));
        let mut init = RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(Some(id())),
        );
        let mut produce =
            RequestKind::Produce(ProduceRequest::default().with_transactional_id(Some(id())));
        let mut end = RequestKind::EndTxn(EndTxnRequest::default().with_transactional_id(id()));
        for request in [&mut init, &mut produce, &mut end] {
            scope.enter(request);
        }
        let (RequestKind::InitProducerId(i), RequestKind::Produce(p), RequestKind::EndTxn(e)) =
            (&init, &produce, &end)
        else {
            unreachable!()
        };
        for scoped in [
            i.transactional_id.as_ref().unwrap(),
            p.transactional_id.as_ref().unwrap(),
            &e.transactional_id,
        ] {
            assert_eq!(scoped.as_str(), "tenant-a/ns/app-1");
        }
        // A plain (non-transactional) produce stays so.
        let mut plain = RequestKind::Produce(ProduceRequest::default());
        scope.enter(&mut plain);
        let RequestKind::Produce(p) = &plain else {
            unreachable!()
        };
        assert!(p.transactional_id.is_none());

        let state = |id: &'static str| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str(id)))
        };
        let mut list = ResponseKind::ListTransactions(
            ListTransactionsResponse::default().with_transaction_states(vec![
                state("tenant-a/ns/app-1"),
                state("tenant-b/ns/app-1"),
            ]),
        );
        scope.leave(&mut list, &NamedInFull::default());
        let ResponseKind::ListTransactions(r) = &list else {
            unreachable!()
        };
        let ids: Vec<&str> = r
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.as_str())
            .collect();
        assert_eq!(ids, ["app-1"]);
    }

    #[test]
    fn subscriptions_use_the_bare_group_id() {
        assert_eq!(subscription_name("tenant-a/ns/g/x", true), "g/x");
        assert_eq!(subscription_name("tenant-a/ns/g", true), "g");
        assert_eq!(subscription_name("a/b/c", false), "a/b/c");
    }

    #[test]
    fn short_topic_names_of_group_requests_are_qualified_and_given_back_short() {
        use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
        use kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;
        use kafka_protocol::messages::OffsetCommitResponse;
        let scope = GroupScope::new("tenant-a", "ns");
        let topic = |name: &'static str| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
        };
        let mut commit =
            RequestKind::OffsetCommit(OffsetCommitRequest::default().with_topics(vec![
                topic("orders"),
                topic("tenant-a/ns/named-in-full"),
                topic("persistent://tenant-b/ns/elsewhere"),
            ]));
        let in_full = scope.enter(&mut commit);
        let RequestKind::OffsetCommit(r) = &commit else {
            unreachable!()
        };
        let names: Vec<&str> = r.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tenant-a/ns/orders",
                "tenant-a/ns/named-in-full",
                "persistent://tenant-b/ns/elsewhere"
            ]
        );
        let answered = |name: &str| {
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_owned())))
        };
        let mut response = ResponseKind::OffsetCommit(
            OffsetCommitResponse::default()
                .with_topics(names.iter().map(|n| answered(n)).collect()),
        );
        scope.leave(&mut response, &in_full);
        let ResponseKind::OffsetCommit(r) = &response else {
            unreachable!()
        };
        let names: Vec<&str> = r.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "orders",
                "tenant-a/ns/named-in-full",
                "persistent://tenant-b/ns/elsewhere"
            ],
            "each as the client named it"
        );
    }
}

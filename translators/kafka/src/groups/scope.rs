//! Tenancy for consumer groups (DESIGN.md §8): when authentication is required, a session's
//! group ids live inside its principal's `tenant/namespace`. Group `g` of a client in
//! `tenant-a/ns` is stored and coordinated as `tenant-a/ns/g`; the client only ever sees `g`,
//! and ListGroups, DescribeGroups and the rest show it only its own namespace's groups.
//!
//! Tenants and namespaces cannot contain `/`, so the first two `/` of a scoped id always
//! delimit the scope, whatever the group id itself contains.

use kafka_protocol::messages::{GroupId, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

/// FindCoordinator's key type for groups.
const KEY_GROUP: i8 = 0;

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

    /// Puts the request's group ids inside the scope.
    pub fn enter(&self, request: &mut RequestKind) {
        match request {
            RequestKind::FindCoordinator(r) if r.key_type == KEY_GROUP => {
                r.key = self.scoped(r.key.as_str());
                for key in &mut r.coordinator_keys {
                    *key = self.scoped(key.as_str());
                }
            }
            RequestKind::JoinGroup(r) => r.group_id = self.group(&r.group_id),
            RequestKind::SyncGroup(r) => r.group_id = self.group(&r.group_id),
            RequestKind::Heartbeat(r) => r.group_id = self.group(&r.group_id),
            RequestKind::LeaveGroup(r) => r.group_id = self.group(&r.group_id),
            RequestKind::OffsetCommit(r) => r.group_id = self.group(&r.group_id),
            RequestKind::OffsetDelete(r) => r.group_id = self.group(&r.group_id),
            RequestKind::OffsetFetch(r) => {
                r.group_id = self.group(&r.group_id);
                for g in &mut r.groups {
                    g.group_id = self.group(&g.group_id);
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
            _ => {}
        }
    }

    /// Gives the response's group ids back as the client named them; ListGroups keeps only
    /// this scope's groups.
    pub fn leave(&self, response: &mut ResponseKind) {
        match response {
            ResponseKind::FindCoordinator(r) => {
                for c in &mut r.coordinators {
                    if let Some(bare) = self.unscoped(c.key.as_str()) {
                        c.key = StrBytes::from_string(bare.to_owned());
                    }
                }
            }
            ResponseKind::OffsetFetch(r) => {
                for g in &mut r.groups {
                    self.strip(&mut g.group_id);
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
            ResponseKind::ListGroups(r) => {
                r.groups
                    .retain(|g| self.unscoped(g.group_id.as_str()).is_some());
                for g in &mut r.groups {
                    self.strip(&mut g.group_id);
                }
            }
            _ => {}
        }
    }
}

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
        scope.leave(&mut list);
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
    fn subscriptions_use_the_bare_group_id() {
        assert_eq!(subscription_name("tenant-a/ns/g/x", true), "g/x");
        assert_eq!(subscription_name("tenant-a/ns/g", true), "g");
        assert_eq!(subscription_name("a/b/c", false), "a/b/c");
    }
}

//! The join phase of a rebalance: JoinGroup, members added, replaced (static membership) and
//! waited for, and the join completed with the protocol every member supports.

use super::*;

impl Group {
    pub fn join(
        &mut self,
        p: JoinParams,
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        // Members of the consumer group protocol own the group's partitions (Kafka's online
        // migration between the protocols is not served).
        if self.consumer_members().is_some() || !self.supports(&p.protocol_type, &p.protocols) {
            return Reply::Now(JoinOutcome::failed(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        if p.member_id.is_empty() {
            let prefix = p.instance_id.as_deref().unwrap_or(&p.client_id).to_owned();
            let id = Self::new_member_id(&prefix);
            if let Some(instance) = &p.instance_id {
                if let Some(old) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(&old, id, p, now, timing, fx);
                }
                return self.add_member(id, p, now, timing, fx);
            }
            if p.require_known_member_id {
                self.pending.insert(id.clone(), now + p.session_timeout);
                return Reply::Now(JoinOutcome::failed(ResponseError::MemberIdRequired, &id));
            }
            return self.add_member(id, p, now, timing, fx);
        }
        if self.pending.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_member(id, p, now, timing, fx);
        }
        if self.is_fenced(&p.member_id, p.instance_id.as_deref()) {
            return Reply::Now(JoinOutcome::failed(
                ResponseError::FencedInstanceId,
                &p.member_id,
            ));
        }
        let Some(member) = self.members.get(&p.member_id) else {
            return Reply::Now(JoinOutcome::failed(
                ResponseError::UnknownMemberId,
                &p.member_id,
            ));
        };
        let unchanged = member.protocols == p.protocols;
        let is_leader = self.leader.as_deref() == Some(p.member_id.as_str());
        match self.state {
            GroupState::Empty => Reply::Now(JoinOutcome::failed(
                ResponseError::UnknownMemberId,
                &p.member_id,
            )),
            GroupState::CompletingRebalance if unchanged => {
                // The member missed its JoinGroup answer: give it again.
                let outcome = self.join_outcome(&p.member_id, is_leader, false);
                Reply::Now(outcome)
            }
            GroupState::Stable if unchanged && !is_leader => {
                let outcome = self.join_outcome(&p.member_id, false, false);
                self.touch(&p.member_id, now);
                Reply::Now(outcome)
            }
            _ => {
                let rx = self.await_join(&p, now);
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(now, timing);
                }
                self.maybe_complete_join(now, fx);
                Reply::Later(rx)
            }
        }
    }

    /// Updates a known member from its JoinGroup and parks the request until the join completes.
    pub(super) fn await_join(
        &mut self,
        p: &JoinParams,
        now: Instant,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let member = self.members.get_mut(&p.member_id).expect("checked");
        member.protocols = p.protocols.clone();
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id.clone();
        member.client_host = p.client_host.clone();
        member.deadline = now + p.session_timeout;
        if let Some(old) = member.awaiting_join.replace(tx) {
            // The same member joined again (e.g. after a reconnect); the older request is moot.
            let _ = old.send(JoinOutcome::failed(
                ResponseError::RebalanceInProgress,
                &p.member_id,
            ));
        }
        rx
    }

    pub(super) fn add_member(
        &mut self,
        id: String,
        p: JoinParams,
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &p.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout: p.session_timeout,
                rebalance_timeout: p.rebalance_timeout,
                protocol_type: p.protocol_type,
                protocols: p.protocols,
                assignment: Bytes::new(),
                deadline: now + p.session_timeout,
                awaiting_join: Some(tx),
                awaiting_sync: None,
            },
        );
        match self.state {
            GroupState::PreparingRebalance => {
                // A member arriving during the initial delay extends it, up to the rebalance
                // timeout, as Kafka's InitialDelayedJoin does.
                if let Some(until) = self.initial_delay_until {
                    if now < until {
                        self.initial_delay_until = Some(
                            (now + timing.initial_rebalance_delay).min(self.rebalance_deadline),
                        );
                    }
                }
            }
            _ => self.prepare_rebalance(now, timing),
        }
        self.maybe_complete_join(now, fx);
        Reply::Later(rx)
    }

    /// KIP-345: a static member rejoining with a new member id takes the old one's place; the
    /// old id is fenced. A stable group does not rebalance unless the protocol it would select
    /// changes (Kafka's rule): the restarted process's metadata differs from the old one's anyway
    /// (no owned partitions, generation -1), so comparing bytes would rebalance on most restarts.
    pub(super) fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let Some(mut member) = self.members.shift_remove(old_id) else {
            self.static_members
                .remove(p.instance_id.as_deref().unwrap_or_default());
            return self.add_member(new_id, p, now, timing, fx);
        };
        member.fail_waiters(ResponseError::FencedInstanceId);
        member.id = new_id.clone();
        member.protocols = p.protocols.clone();
        member.client_id = p.client_id.clone();
        member.client_host = p.client_host.clone();
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.deadline = now + p.session_timeout;
        let instance = p.instance_id.clone().expect("static member");
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        let same_protocol = self.select_protocol() == self.protocol;
        if self.state == GroupState::Stable && same_protocol {
            fx.snapshot = true;
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            let skip = is_leader && p.supports_skip_assignment;
            return Reply::Now(self.join_outcome(&new_id, skip, skip));
        }
        let p = JoinParams {
            member_id: new_id,
            ..p
        };
        let rx = self.await_join(&p, now);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, timing);
        }
        self.maybe_complete_join(now, fx);
        Reply::Later(rx)
    }

    pub(super) fn join_outcome(
        &self,
        member_id: &str,
        with_members: bool,
        skip: bool,
    ) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: skip,
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant, timing: &Timing) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(SyncOutcome::failed(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = now + timeout;
        self.initial_delay_until =
            was_empty.then(|| now + timing.initial_rebalance_delay.min(timeout));
    }

    pub(super) fn maybe_complete_join(&mut self, now: Instant, fx: &mut Effects) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        let delaying = self.initial_delay_until.is_some_and(|until| now < until);
        if (all_joined && !delaying) || now >= self.rebalance_deadline {
            self.complete_join(now, fx);
        }
    }

    pub(super) fn complete_join(&mut self, now: Instant, fx: &mut Effects) {
        // Dynamic members that did not rejoin in time are gone; static ones keep their place
        // until their session lapses.
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id, ResponseError::UnknownMemberId);
        }
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            fx.snapshot = true;
            fx.emptied = true;
            return;
        }
        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = now + timeout;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let outcome = self.join_outcome(&id, is_leader, false);
            let member = self.members.get_mut(&id).expect("listed");
            member.deadline = now + member.session_timeout;
            if let Some(tx) = member.awaiting_join.take() {
                let _ = tx.send(outcome);
            }
        }
    }

    /// Each member votes for the first of its protocols that every member supports; the most
    /// voted wins (Kafka's rule).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        // Ties go to the earlier candidate.
        votes
            .iter()
            .rev()
            .max_by_key(|(count, _)| *count)
            .map(|(_, name)| (*name).clone())
    }
}

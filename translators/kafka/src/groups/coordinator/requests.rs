//! The group requests: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.

use super::*;

impl GroupCoordinator {
    pub async fn join(self: &Arc<Self>, group_id: &str, params: JoinParams) -> JoinOutcome {
        let member_id = params.member_id.clone();
        if group_id.is_empty() {
            return JoinOutcome::failed(ResponseError::InvalidGroupId, &member_id);
        }
        let timing = &self.settings.timing;
        if params.session_timeout < timing.min_session_timeout
            || params.session_timeout > timing.max_session_timeout
        {
            return JoinOutcome::failed(ResponseError::InvalidSessionTimeout, &member_id);
        }
        let shard = self.shard_of(group_id);
        if let Err(e) = self.writable(shard).await {
            self.hear(shard, group_id, &member_id, &e);
            return JoinOutcome::failed(e.code(MEMBERSHIP_NOT_WRITTEN), &member_id);
        }
        let mut fx = Effects::default();
        let reply = {
            let mut groups = match self.served(shard) {
                Ok(groups) => groups,
                Err(e) => return JoinOutcome::failed(e, &member_id),
            };
            if !groups.contains_key(group_id) {
                if !member_id.is_empty() {
                    return JoinOutcome::failed(ResponseError::UnknownMemberId, &member_id);
                }
                groups.insert(group_id.to_owned(), Group::new(group_id, Instant::now()));
            }
            let group = groups.get_mut(group_id).expect("inserted");
            let reply = group.join(params, Instant::now(), timing, &mut fx);
            group.note_emptied(&fx, now_ms());
            reply
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| {
                JoinOutcome::failed(ResponseError::CoordinatorNotAvailable, &member_id)
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let shard = self.shard_of(group_id);
        if let Err(e) = self.writable(shard).await {
            self.hear(shard, group_id, member_id, &e);
            return SyncOutcome::failed(e.code(MEMBERSHIP_NOT_WRITTEN));
        }
        let mut fx = Effects::default();
        let reply = {
            let mut groups = match self.served(shard) {
                Ok(groups) => groups,
                Err(e) => return SyncOutcome::failed(e),
            };
            let Some(group) = groups.get_mut(group_id) else {
                return SyncOutcome::failed(ResponseError::UnknownMemberId);
            };
            let reply = group.sync(
                generation,
                member_id,
                instance_id,
                protocol_type,
                protocol_name,
                assignments,
                Instant::now(),
                &mut fx,
            );
            group.note_emptied(&fx, now_ms());
            reply
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| SyncOutcome::failed(ResponseError::CoordinatorNotAvailable)),
        }
    }

    pub async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let shard = self.shard_of(group_id);
        if let Err(e) = self.serving(shard).await {
            return e.code();
        }
        // Answered from memory, also while the shard's lease is being claimed again: hearing
        // a member needs no write, as with Kafka's coordinator.
        let mut groups = match self.served(shard) {
            Ok(groups) => groups,
            Err(e) => return e.code(),
        };
        match groups.get_mut(group_id) {
            Some(group) => group.heartbeat(generation, member_id, instance_id, Instant::now()),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup; `Err` is a group-level error.
    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<(String, i16)>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.writable(shard)
            .await
            .map_err(|e| e.code(MEMBERSHIP_NOT_WRITTEN))?;
        let mut fx = Effects::default();
        let results = {
            let mut groups = self.served(shard)?;
            let Some(group) = groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            let results = group.leave(members, Instant::now(), &self.settings.timing, &mut fx);
            group.note_emptied(&fx, now_ms());
            results
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        Ok(results)
    }

    /// OffsetCommit: every partition is accepted or none; `Err` applies to all of them.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: Vec<CommitRequest>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let shard = self.shard_of(group_id);
        let lease = match self.writable(shard).await {
            Ok(lease) => lease,
            Err(e) => {
                self.hear(shard, group_id, member_id, &e);
                return Err(e.code(ResponseError::RequestTimedOut));
            }
        };
        let order = self.write_order(shard).await.map_err(|e| {
            e.log(group_id, "committing offsets failed");
            e.code()
        })?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let epoch = shard.epoch.load(Ordering::Acquire);
        {
            let mut groups = self.served(shard)?;
            let now = Instant::now();
            match groups.get_mut(group_id) {
                Some(group) => group.check_commit(generation, member_id, instance_id, now)?,
                // Kafka: a commit outside any generation creates the group; one claiming a
                // generation of a group that does not exist is stale.
                None if generation < 0 => {
                    groups.insert(group_id.to_owned(), Group::new(group_id, now));
                }
                None => return Err(ResponseError::IllegalGeneration),
            }
        }
        let commit_time = now_ms();
        let accepted: Vec<(String, i32, Committed)> = commits
            .into_iter()
            .map(|c| {
                (
                    c.topic,
                    c.partition,
                    Committed {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata,
                        commit_time,
                        pulsar_topic: c.pulsar_topic.to_string(),
                        seq,
                    },
                )
            })
            .collect();
        let records = accepted
            .iter()
            .map(|(t, p, c)| (offset_key(group_id, t, *p), Some(encode(c))))
            .collect();
        // The offsets are applied once persisted, even if that is after the answer went out
        // (REQUEST_TIMED_OUT on a timeout), so that memory never lags the table.
        let (coordinator, group) = (Arc::downgrade(self), group_id.to_owned());
        let committing = shard.committing.clone();
        *committing
            .lock()
            .expect("committing lock")
            .entry(group.clone())
            .or_default() += 1;
        let write = self.start_write(shard, lease, order, records, move |outcome| {
            if outcome.is_ok() {
                if let Some(c) = coordinator.upgrade() {
                    c.apply_commits(&group, epoch, accepted);
                }
            }
            let mut committing = committing.lock().expect("committing lock");
            if let Some(n) = committing.get_mut(&group) {
                *n -= 1;
                if *n == 0 {
                    committing.remove(&group);
                }
            }
        });
        if let Err(e) = self.written(write).await {
            e.log(group_id, "committing offsets failed");
            return Err(e.code());
        }
        Ok(())
    }

    /// Persisted commits into the group's state, unless the groups in memory were replaced or
    /// dropped meanwhile (whoever loads the shard next reads them from the table). Applied also
    /// while the lease is lost: the table has them, and the groups kept in memory must not lag
    /// it if this instance regains the lease.
    pub(super) fn apply_commits(
        &self,
        group_id: &str,
        epoch: u64,
        accepted: Vec<(String, i32, Committed)>,
    ) {
        let shard = self.shard_of(group_id);
        let mut groups = shard.groups.lock().expect("groups lock");
        if shard.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let group = groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, Instant::now()));
        for (topic, partition, committed) in accepted {
            let newer = group
                .offsets
                .get(&(topic.clone(), partition))
                .is_none_or(|old| old.seq <= committed.seq);
            if newer {
                self.mirror
                    .record(group_id, &committed.pulsar_topic, Some(committed.offset));
                group.offsets.insert((topic, partition), committed);
            }
        }
    }

    /// The Pulsar topic that the group's committed offset of a partition is mirrored to, when
    /// this instance coordinates the group and the group has committed that partition before.
    pub fn committed_topic(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<TopicName> {
        let shard = self.shard_of(group_id);
        let groups = shard.groups.lock().expect("groups lock");
        let committed = groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_owned(), partition))?;
        TopicName::parse(&committed.pulsar_topic, "public", "default")
    }

    /// Committed offsets of a group: of the listed partitions, or all of them for `None`.
    pub async fn fetch_offsets(
        self: &Arc<Self>,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, i32, Option<Committed>)>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.serving(shard).await?;
        let groups = self.served(shard)?;
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        Ok(match wanted {
            Some(topics) => topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .map(|(topic, p)| {
                    let found = offsets.and_then(|o| o.get(&(topic.clone(), p)).cloned());
                    (topic, p, found)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                .collect(),
        })
    }

    /// DescribeGroups: a classic group, or `None`. A group of the consumer group protocol is not
    /// one, and Kafka 4.3.1 describes it as it describes an unknown group (`Dead`, measured with
    /// DescribeGroups v3 on a group with a live member; v6 would say GROUP_ID_NOT_FOUND).
    pub async fn describe(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<Option<GroupSummary>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.serving(shard).await?;
        let groups = self.served(shard)?;
        Ok(groups
            .get(group_id)
            .filter(|g| g.consumer.is_none() || !g.members.is_empty())
            .map(summarize))
    }

    /// Every group coordinated here, with its state, protocol type and group type, and the other
    /// instances coordinating shards (whose groups the caller may ask them for). Free shards are
    /// claimed.
    pub async fn list(
        self: &Arc<Self>,
    ) -> Result<(Vec<ListedGroup>, Vec<Instance>), ResponseError> {
        let mut out = Vec::new();
        let mut others: Vec<Instance> = Vec::new();
        for shard in &self.shards {
            match self.serving(shard).await {
                Ok(()) => {}
                Err(ResponseError::NotCoordinator) => {
                    let holder = self.backend.lease_holder(&shard.topic).await;
                    if let Some(owner) = holder.ok().flatten().and_then(|h| Instance::parse(&h)) {
                        if !others.contains(&owner) {
                            others.push(owner);
                        }
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let Ok(groups) = self.served(shard) else {
                continue;
            };
            out.extend(groups.values().map(|g| match &g.consumer {
                Some(c) if g.members.is_empty() => ListedGroup {
                    id: g.id.clone(),
                    state: c.state_name(),
                    protocol_type: "consumer".into(),
                    group_type: "consumer",
                },
                _ => ListedGroup {
                    id: g.id.clone(),
                    state: g.state.name(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    group_type: "classic",
                },
            }));
        }
        Ok((out, others))
    }

    /// DeleteGroups for one group: only an empty group can go; its offsets and its mirrored
    /// subscriptions go with it.
    pub async fn delete_group(self: &Arc<Self>, group_id: &str) -> Result<(), ResponseError> {
        let shard = self.shard_of(group_id);
        let lease = self
            .writable(shard)
            .await
            .map_err(|e| e.code(ResponseError::RequestTimedOut))?;
        let order = self.write_order(shard).await.map_err(|e| e.code())?;
        let epoch = shard.epoch.load(Ordering::Acquire);
        let keys = {
            let groups = self.served(shard)?;
            let Some(group) = groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            if !group.is_empty() || group.state != GroupState::Empty {
                return Err(ResponseError::NonEmptyGroup);
            }
            let mut keys = vec![(group_key(group_id), None), (consumer_key(group_id), None)];
            keys.extend(
                group
                    .offsets
                    .keys()
                    .map(|(t, p)| (offset_key(group_id, t, *p), None)),
            );
            keys
        };
        // Applied once persisted, even after the answer went out (the groups in memory must
        // not lag the table: they are kept if this instance regains a lost lease).
        let (coordinator, group) = (Arc::downgrade(self), group_id.to_owned());
        let write = self.start_write(shard, lease, order, keys, move |outcome| {
            let Some(c) = coordinator.upgrade().filter(|_| outcome.is_ok()) else {
                return;
            };
            let shard = c.shard_of(&group);
            let removed = {
                let mut groups = shard.groups.lock().expect("groups lock");
                if shard.epoch.load(Ordering::Acquire) != epoch {
                    return;
                }
                groups.remove(&group)
            };
            for committed in removed.iter().flat_map(|g| g.offsets.values()) {
                c.mirror.record(&group, &committed.pulsar_topic, None);
            }
        });
        self.written(write).await.map_err(|e| e.code())
    }

    /// OffsetDelete: removes committed offsets of partitions the group no longer subscribes to.
    /// Returns a per-partition error code.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, i16)>, ResponseError> {
        let shard = self.shard_of(group_id);
        let lease = self
            .writable(shard)
            .await
            .map_err(|e| e.code(ResponseError::RequestTimedOut))?;
        let order = self.write_order(shard).await.map_err(|e| e.code())?;
        let epoch = shard.epoch.load(Ordering::Acquire);
        let (results, keys, mirrored) = {
            let groups = self.served(shard)?;
            let Some(group) = groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let subscribed = match group.state {
                GroupState::Empty => Vec::new(),
                _ => match group.subscribed_topics() {
                    Some(t) => t,
                    None => return Err(ResponseError::NonEmptyGroup),
                },
            };
            let mut results = Vec::new();
            let mut keys = Vec::new();
            let mut mirrored = Vec::new();
            for (topic, p) in partitions {
                if subscribed.contains(&topic) {
                    results.push((topic, p, ResponseError::GroupSubscribedToTopic.code()));
                    continue;
                }
                if let Some(c) = group.offsets.get(&(topic.clone(), p)) {
                    keys.push((offset_key(group_id, &topic, p), None));
                    mirrored.push((topic.clone(), p, c.pulsar_topic.clone()));
                }
                results.push((topic, p, 0));
            }
            (results, keys, mirrored)
        };
        if !keys.is_empty() {
            // Applied once persisted, as in `delete_group`.
            let (coordinator, group) = (Arc::downgrade(self), group_id.to_owned());
            let write = self.start_write(shard, lease, order, keys, move |outcome| {
                let Some(c) = coordinator.upgrade().filter(|_| outcome.is_ok()) else {
                    return;
                };
                let shard = c.shard_of(&group);
                let mut groups = shard.groups.lock().expect("groups lock");
                if shard.epoch.load(Ordering::Acquire) != epoch {
                    return;
                }
                if let Some(g) = groups.get_mut(&group) {
                    for (topic, p, pulsar_topic) in mirrored {
                        g.offsets.remove(&(topic, p));
                        c.mirror.record(&group, &pulsar_topic, None);
                    }
                }
            });
            self.written(write).await.map_err(|e| e.code())?;
        }
        Ok(results)
    }
}

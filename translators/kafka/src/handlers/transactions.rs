//! Transactions (KIP-98): InitProducerId with a transactional id (22), AddPartitionsToTxn (24),
//! AddOffsetsToTxn (25), EndTxn (26), TxnOffsetCommit (28), DescribeTransactions (65) and
//! ListTransactions (66). The coordinator is the group coordinator's
//! (`groups::coordinator::transactions` and `txn_offsets`); transactional Produce is in
//! `produce.rs`.
//!
//! When authentication is required, transactional ids live in the session's scope
//! (`groups::scope`), and Pulsar authorizes each as it does a group of the same name (see
//! `authorize_transactional_id`). The gateway's own role opens, adds to and ends the Pulsar
//! transactions; clients' sends in them go with their own tokens, which Pulsar allows.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName as KafkaTopicName, TransactionalId,
};

use super::{str_bytes, topic_entry};
use crate::frontend::KafkaFrontend;
use crate::transactions::TxnState;

/// A partition and its own error, if it has one.
type PartitionError = (i32, Option<ResponseError>);

/// The first versions that know PRODUCER_FENCED (KIP-588); older ones get INVALID_PRODUCER_EPOCH.
const INIT_PRODUCER_ID_FENCED: i16 = 4;
const ADD_PARTITIONS_FENCED: i16 = 2;
const END_TXN_FENCED: i16 = 2;
const ADD_OFFSETS_FENCED: i16 = 2;

impl KafkaFrontend {
    /// Whether this session may use the transactional id `id` (as stored: scoped when ids
    /// are). Kafka asks for a TransactionalId ACL; here Pulsar decides as for a group of the
    /// same name: consume permission in the scope's namespace, through a subscription named
    /// after the id (`groups::access`). A scope is chosen by the client's user name, so without
    /// this a client could fence another tenant's producers.
    pub(crate) async fn authorize_transactional_id(&self, id: &str) -> Result<(), ResponseError> {
        self.authorize_group(id).await.map_err(|e| match e {
            ResponseError::GroupAuthorizationFailed => {
                ResponseError::TransactionalIdAuthorizationFailed
            }
            other => other,
        })
    }

    pub(crate) async fn handle_init_transactional_producer(
        self: &Arc<Self>,
        request: InitProducerIdRequest,
        id: TransactionalId,
        version: i16,
    ) -> InitProducerIdResponse {
        let mut response = InitProducerIdResponse::default();
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        if let Err(e) = self.authorize_transactional_id(&id.0).await {
            response.error_code = e.code();
            return response;
        }
        let given = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        match self
            .groups
            .init_transactional_producer(
                &id.0,
                request.transaction_timeout_ms,
                given,
                version >= INIT_PRODUCER_ID_FENCED,
            )
            .await
        {
            Ok((producer_id, epoch)) => {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
            }
            Err(e) => response.error_code = e.code(),
        }
        response
    }

    pub(crate) async fn handle_add_partitions_to_txn(
        self: &Arc<Self>,
        request: AddPartitionsToTxnRequest,
        version: i16,
    ) -> AddPartitionsToTxnResponse {
        let mut partitions = Vec::new();
        for topic in &request.v3_and_below_topics {
            for &p in &topic.partitions {
                let name = topic.name.0.to_string();
                let resolved = self.partition_topic(&name, p).await;
                partitions.push((name, p, resolved));
            }
        }
        let requested: Vec<(String, i32)> =
            partitions.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let authorized = self
            .authorize_transactional_id(&request.v3_and_below_transactional_id.0)
            .await;
        let outcome = if let Err(e) = authorized {
            Err(e)
        } else {
            self.groups
                .add_partitions_to_txn(
                    &request.v3_and_below_transactional_id.0,
                    (
                        request.v3_and_below_producer_id.0,
                        request.v3_and_below_producer_epoch,
                    ),
                    version >= ADD_PARTITIONS_FENCED,
                    partitions,
                )
                .await
        };
        // Every partition gets an answer: its own error, the request's, or none.
        let errors: Vec<(String, i32, Option<ResponseError>)> = match outcome {
            Ok(failed) if failed.is_empty() => {
                requested.into_iter().map(|(t, p)| (t, p, None)).collect()
            }
            Ok(failed) => failed
                .into_iter()
                .map(|(t, p, e)| (t, p, Some(e)))
                .collect(),
            Err(e) => requested
                .into_iter()
                .map(|(t, p)| (t, p, Some(e)))
                .collect(),
        };
        let mut response = AddPartitionsToTxnResponse::default();
        for (topic, partition, error) in errors {
            let result = topic_entry(
                &mut response.results_by_topic_v3_and_below,
                &topic,
                |r| r.name.0.as_str(),
                || {
                    let mut r = AddPartitionsToTxnTopicResult::default();
                    r.name = KafkaTopicName(str_bytes(topic.clone()));
                    r
                },
            );
            let mut p = AddPartitionsToTxnPartitionResult::default();
            p.partition_index = partition;
            p.partition_error_code = error.map_or(0, |e| e.code());
            result.results_by_partition.push(p);
        }
        response
    }

    pub(crate) async fn handle_add_offsets_to_txn(
        self: &Arc<Self>,
        request: AddOffsetsToTxnRequest,
        version: i16,
    ) -> AddOffsetsToTxnResponse {
        let mut response = AddOffsetsToTxnResponse::default();
        let outcome = if let Err(e) = self
            .authorize_transactional_id(&request.transactional_id.0)
            .await
        {
            Err(e)
        } else if let Err(e) = self.authorize_group(&request.group_id.0).await {
            Err(e)
        } else {
            self.groups
                .add_offsets_to_txn(
                    &request.transactional_id.0,
                    (request.producer_id.0, request.producer_epoch),
                    version >= ADD_OFFSETS_FENCED,
                    &request.group_id.0,
                )
                .await
        };
        if let Err(e) = outcome {
            response.error_code = e.code();
        }
        response
    }

    /// TxnOffsetCommit: every partition is accepted or none, as for OffsetCommit; partitions
    /// that fail on their own (unknown topic, metadata too large) get their own error.
    pub(crate) async fn handle_txn_offset_commit(
        self: &Arc<Self>,
        request: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let max_metadata = self.groups.settings().max_metadata_bytes;
        let group = request.group_id.0.to_string();
        let authorized = match self
            .authorize_transactional_id(&request.transactional_id.0)
            .await
        {
            Ok(()) => self.authorize_group(&group).await,
            refused => refused,
        };
        let mut answers: Vec<(KafkaTopicName, Vec<PartitionError>)> = Vec::new();
        let mut commits = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut partitions = Vec::new();
            for p in topic.partitions {
                let metadata = p.committed_metadata.map(|m| m.to_string());
                if metadata.as_ref().is_some_and(|m| m.len() > max_metadata) {
                    partitions.push((
                        p.partition_index,
                        Some(ResponseError::OffsetMetadataTooLarge),
                    ));
                    continue;
                }
                let resolved = async {
                    let t = self.partition_topic(&name, p.partition_index).await?;
                    self.authorize_commit(&group, &t).await?;
                    Ok::<_, ResponseError>(t)
                };
                match resolved.await {
                    Err(e) => partitions.push((p.partition_index, Some(e))),
                    Ok(pulsar_topic) => {
                        partitions.push((p.partition_index, None));
                        commits.push(crate::groups::coordinator::CommitRequest {
                            topic: name.clone(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata,
                            pulsar_topic,
                        });
                    }
                }
            }
            answers.push((topic.name, partitions));
        }
        let shared = if let Err(e) = authorized {
            Some(e)
        } else if commits.is_empty() {
            None
        } else {
            self.groups
                .txn_offset_commit(
                    &request.transactional_id.0,
                    (request.producer_id.0, request.producer_epoch),
                    &group,
                    request.generation_id,
                    &request.member_id,
                    request.group_instance_id.as_deref(),
                    commits,
                )
                .await
                .err()
        };
        let mut response = TxnOffsetCommitResponse::default();
        for (name, partitions) in answers {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = name;
            for (index, own) in partitions {
                let mut p = TxnOffsetCommitResponsePartition::default();
                p.partition_index = index;
                p.error_code = own.or(shared).map_or(0, |e| e.code());
                t.partitions.push(p);
            }
            response.topics.push(t);
        }
        response
    }

    pub(crate) async fn handle_end_txn(
        self: &Arc<Self>,
        request: EndTxnRequest,
        version: i16,
    ) -> EndTxnResponse {
        let mut response = EndTxnResponse::default();
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        let outcome = match self
            .authorize_transactional_id(&request.transactional_id.0)
            .await
        {
            Ok(()) => {
                self.groups
                    .end_txn(
                        &request.transactional_id.0,
                        (request.producer_id.0, request.producer_epoch),
                        version >= END_TXN_FENCED,
                        request.committed,
                    )
                    .await
            }
            refused => refused,
        };
        if let Err(e) = outcome {
            response.error_code = e.code();
        }
        response
    }

    pub(crate) async fn handle_describe_transactions(
        self: &Arc<Self>,
        request: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let ids: Vec<String> = request
            .transactional_ids
            .iter()
            .map(|id| id.0.to_string())
            .collect();
        let mut allowed = Vec::with_capacity(ids.len());
        let mut refused = Vec::new();
        for id in ids {
            match self.authorize_transactional_id(&id).await {
                Ok(()) => allowed.push(id),
                Err(e) => refused.push((id, Err(e))),
            }
        }
        let mut found = self.groups.describe_transactions(&allowed).await;
        found.extend(refused);
        let mut response = DescribeTransactionsResponse::default();
        for (id, state) in found {
            let mut s = TransactionState::default();
            s.transactional_id = TransactionalId(str_bytes(id));
            s.transaction_state = str_bytes("");
            s.producer_id = ProducerId(-1);
            s.producer_epoch = -1;
            s.transaction_start_time_ms = -1;
            match state {
                Ok(state) => describe(&mut s, &state),
                Err(e) => s.error_code = e.code(),
            }
            response.transaction_states.push(s);
        }
        response
    }

    pub(crate) async fn handle_list_transactions(
        self: &Arc<Self>,
        request: ListTransactionsRequest,
    ) -> ListTransactionsResponse {
        let mut response = ListTransactionsResponse::default();
        const STATES: [&str; 6] = [
            "Empty",
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "CompleteCommit",
            "CompleteAbort",
        ];
        response.unknown_state_filters = request
            .state_filters
            .iter()
            .filter(|f| !STATES.contains(&f.as_str()))
            .cloned()
            .collect();
        let now = now_ms();
        for t in self.groups.list_transactions().await {
            let state = &t.state;
            let name = state.phase.name();
            let wanted = (request.state_filters.is_empty()
                || request.state_filters.iter().any(|f| f.as_str() == name))
                && (request.producer_id_filters.is_empty()
                    || request
                        .producer_id_filters
                        .iter()
                        .any(|p| p.0 == state.producer_id))
                // KIP-994 (v1): only transactions open longer than this.
                && (request.duration_filter < 0
                    || (state.started_ms > 0
                        && now.saturating_sub(state.started_ms) as i64 > request.duration_filter));
            // Only the session's own scope, and ids it may use (as Kafka lists only those its
            // principal may describe).
            let own = match &self.config.group_scope {
                Some(scope) => scope.unscoped(&t.transactional_id).is_some(),
                None => true,
            };
            if wanted
                && own
                && self
                    .authorize_transactional_id(&t.transactional_id)
                    .await
                    .is_ok()
            {
                let mut listed = ListedState::default();
                listed.transactional_id = TransactionalId(str_bytes(t.transactional_id));
                listed.producer_id = ProducerId(state.producer_id);
                listed.transaction_state = str_bytes(name);
                response.transaction_states.push(listed);
            }
        }
        response
    }
}

fn describe(s: &mut TransactionState, state: &TxnState) {
    s.transaction_state = str_bytes(state.phase.name());
    s.transaction_timeout_ms = state.timeout_ms;
    s.transaction_start_time_ms = if state.started_ms > 0 {
        state.started_ms as i64
    } else {
        -1
    };
    s.producer_id = ProducerId(state.producer_id);
    s.producer_epoch = state.epoch;
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &state.partitions {
        let entry = topic_entry(
            &mut topics,
            topic,
            |t| t.topic.0.as_str(),
            || {
                let mut t = TopicData::default();
                t.topic = KafkaTopicName(str_bytes(topic.clone()));
                t
            },
        );
        entry.partitions.push(*partition);
    }
    s.topics = topics;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

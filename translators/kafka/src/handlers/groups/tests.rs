use std::time::{Duration, Instant};

use gateway_core::backend::prelude::*;
use gateway_core::TopicName;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName as KafkaTopicName};
use kafka_protocol::protocol::StrBytes;

use crate::groups::faulty::Faulty;
use crate::{KafkaConfig, KafkaFrontend};

fn commit(offset: i64) -> OffsetCommitRequest {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = offset;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = KafkaTopicName(StrBytes::from_static_str("t"));
    topic.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str("g"));
    request.generation_id_or_member_epoch = -1;
    request.topics = vec![topic];
    request
}

/// Seen on Pulsar frozen by SIGSTOP: a member's first commit of a partition needs the
/// partition's topic looked up in Pulsar's admin API, which waited for its 30 s timeout
/// while the member's heartbeats waited behind it on its connection, until its session
/// lapsed in the client. The lookup is given up after the commit timeout instead, and the
/// partition answered REQUEST_TIMED_OUT, as a commit Pulsar does not confirm.
#[tokio::test]
async fn a_commit_whose_partition_cannot_be_looked_up_is_answered_within_the_commit_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Faulty::new(gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap());
    backend
        .create_topic(&TopicName::new("public", "default", "t"), 2)
        .await
        .unwrap();
    let mut config = KafkaConfig::default();
    config.groups.commit_timeout = Duration::from_millis(300);
    let frontend = KafkaFrontend::new(config, backend.clone());

    backend.stall_lookups(true);
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        frontend.handle_offset_commit(commit(5)),
    )
    .await
    .expect("answered while the lookup still waits");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(
        answer.topics[0].partitions[0].error_code,
        ResponseError::RequestTimedOut.code()
    );

    backend.stall_lookups(false);
    let answer = frontend.handle_offset_commit(commit(5)).await;
    assert_eq!(answer.topics[0].partitions[0].error_code, 0);
}

//! One librdkafka consumer-group member as its own process, so a test can SIGKILL it (no
//! LeaveGroup, no final commit) the way a crashed application dies.
//!
//! Usage: kafka-group-member BOOTSTRAP GROUP TOPIC LOG [ASSIGNOR] [INSTANCE_ID]
//!
//! ASSIGNOR `consumer:NAME` joins with the consumer group protocol (KIP-848,
//! `group.protocol=consumer`) and the coordinator's assignor NAME (`uniform`, `range`); the
//! coordinator then sets the session and heartbeat times.
//!
//! It takes up to 100 records per batch, "processes" them for 50 ms (so a kill lands mid-stream,
//! often between consuming and committing), commits synchronously and appends to LOG, flushed:
//! `r PARTITION OFFSET` for each record consumed, then `c PARTITION NEXT_OFFSET` for each
//! partition of a commit that succeeded. It runs until killed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Records per batch, and the time spent "processing" a batch before committing it.
const BATCH: usize = 100;
const PROCESSING: Duration = Duration::from_millis(50);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: kafka-group-member BOOTSTRAP GROUP TOPIC LOG [ASSIGNOR] [INSTANCE_ID]");
        return std::process::ExitCode::from(2);
    }
    let (bootstrap, group, topic, log) = (&args[1], &args[2], &args[3], &args[4]);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let assignor = args.get(5).map(String::as_str).unwrap_or("range");
    match assignor.strip_prefix("consumer:") {
        Some(server_assignor) => {
            config
                .set("group.protocol", "consumer")
                .set("group.remote.assignor", server_assignor);
        }
        None => {
            config
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("partition.assignment.strategy", assignor);
        }
    }
    if let Some(instance) = args.get(6) {
        config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    loop {
        let mut batch: BTreeMap<i32, i64> = BTreeMap::new();
        let mut lines = String::new();
        let mut batch_records = 0;
        while batch_records < BATCH {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    batch_records += 1;
                    lines.push_str(&format!("r {} {}\n", m.partition(), m.offset()));
                    batch.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => {
                    eprintln!("consumer error: {e}");
                    break;
                }
                None => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        out.write_all(lines.as_bytes()).expect("log write");
        out.flush().expect("log flush");
        std::thread::sleep(PROCESSING);
        let mut offsets = TopicPartitionList::new();
        for (p, next) in &batch {
            offsets
                .add_partition_offset(topic, *p, Offset::Offset(*next))
                .expect("offset");
        }
        // A commit refused during a rebalance leaves those records uncommitted, which is what
        // the log then shows.
        if consumer.commit(&offsets, CommitMode::Sync).is_ok() {
            let committed: String = batch
                .iter()
                .map(|(p, next)| format!("c {p} {next}\n"))
                .collect();
            out.write_all(committed.as_bytes()).expect("log write");
            out.flush().expect("log flush");
        }
    }
}

//! Produce-path and fetch-path translation on one core: Kafka record batch -> Pulsar entries, and
//! stored entries -> Kafka record batches. Run with `cargo bench -p gateway-kafka`; results and
//! the machine are in `docs/benchmarks.md`.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gateway_core::{EntryId, StoredEntry};
use gateway_kafka::record_batch::{self, Record};
use gateway_kafka::{batch_to_entries, encode_entries};

const RECORDS_PER_BATCH: usize = 1_000;

fn records(value_size: usize) -> Vec<Record> {
    (0..RECORDS_PER_BATCH)
        .map(|i| Record {
            offset_delta: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{}", i % 64))),
            value: Some(Bytes::from(vec![(i % 251) as u8; value_size])),
            headers: vec![(
                Bytes::from_static(b"trace"),
                Some(Bytes::from_static(b"abc123")),
            )],
        })
        .collect()
}

fn produce_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce_translation");
    for size in [100usize, 1024] {
        let mut wire = BytesMut::new();
        record_batch::encode(&mut wire, 0, &records(size));
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("bytes", size), &wire, |b, wire| {
            b.iter(|| {
                let batch = record_batch::decode(wire.clone(), 64 << 20).unwrap();
                batch_to_entries(&batch, Some(("kafka-1", 0))).unwrap()
            })
        });
        group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
        group.bench_with_input(BenchmarkId::new("records", size), &wire, |b, wire| {
            b.iter(|| {
                let batch = record_batch::decode(wire.clone(), 64 << 20).unwrap();
                batch_to_entries(&batch, Some(("kafka-1", 0))).unwrap()
            })
        });
    }
    group.finish();
}

fn fetch_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_translation");
    for size in [100usize, 1024] {
        let mut wire = BytesMut::new();
        record_batch::encode(&mut wire, 0, &records(size));
        let batch = record_batch::decode(wire.clone().freeze(), 64 << 20).unwrap();
        let entry = StoredEntry {
            id: EntryId {
                ledger: 7,
                entry: 3,
            },
            publish_time: 1_700_000_000_000,
            messages: batch_to_entries(&batch, None).unwrap().remove(0).messages,
            batch_indexes: None,
        };
        let entries = vec![entry];
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("bytes", size), &entries, |b, entries| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(wire.len());
                encode_entries(&mut out, entries, 0).unwrap();
                out
            })
        });
        group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
        group.bench_with_input(BenchmarkId::new("records", size), &entries, |b, entries| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(wire.len());
                encode_entries(&mut out, entries, 0).unwrap();
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, produce_path, fetch_path);
criterion_main!(benches);

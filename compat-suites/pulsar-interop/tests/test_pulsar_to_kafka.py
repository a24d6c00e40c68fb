"""Pulsar -> Kafka: messages produced with the native Pulsar Python client
(pulsar-client) to a partitioned topic created through the Pulsar admin REST API
are consumed with kafka-python through the gateway.

Mapping checked (docs/kafka.md "Mapping to Pulsar"):
  partition key -> key (its UTF-8 bytes; no partition key -> null key)
  payload -> value; properties -> headers (UTF-8 values)
  event time -> timestamp, or the publish time when there is no event time
  Kafka offset == ledger << 32 | entry << 12 | batch_index of the send receipt
  (a message outside a batch has batch index -1 and is batch index 0 in the offset)

Run once with producer batching enabled (several messages per entry) and once
with it disabled (one message per entry).
"""
import collections
import logging
import threading
import time
import uuid

import pulsar
import pytest
from kafka import KafkaConsumer, TopicPartition

from interop import Mismatches, http, msg_id_offset, split_offset, topic_url

log = logging.getLogger("interop")

PARTITIONS = 2
MESSAGES = 120
READ_DEADLINE_S = 60

Sent = collections.namedtuple("Sent", "i partition key value properties event_time msg_id offset")


def make_message(i, base_ts):
    if i % 6 == 0:
        key = None  # no partition key: round-robin routing, null Kafka key
    elif i % 6 == 1:
        key = f"ключ-{i % 5}"  # non-ASCII: the Kafka key is its UTF-8 bytes
    else:
        key = f"pk-{i % 7}"
    if i % 15 == 0:
        value = b""
    else:
        value = bytes((i * 31 + j) % 256 for j in range(1 + (i * 13) % 150))
    props = {"idx": str(i), "src": "pulsar-client"}
    if i % 3 == 0:
        props["empty"] = ""
    if i % 5 == 0:
        props["uni"] = "héllo ✓"
    # every tenth message has no event time: Kafka then sees the publish time
    event_time = None if i % 10 == 9 else base_ts + (i * 7919) % 100_000
    return key, value, props, event_time


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
def test_pulsar_to_kafka(batching, bootstrap, admin_url, pulsar_client, diag):
    topic = f"interop-p2k-{'b' if batching else 'nb'}-" + uuid.uuid4().hex[:10]
    full = f"persistent://public/default/{topic}"

    # 1. A partitioned topic made through Pulsar's admin REST API.
    status, _, body = http("PUT", topic_url(admin_url, topic) + "/partitions", PARTITIONS)
    assert status in (200, 204), f"Pulsar admin PUT partitions: HTTP {status} {body[:300]!r}"

    # 2. Produce with pulsar-client; keep every send receipt (MessageId).
    base_ts = (int(time.time() * 1000) // 1000) * 1000 - 7_200_000
    if batching:
        producer = pulsar_client.create_producer(
            full, batching_enabled=True, batching_max_messages=25,
            batching_max_allowed_size_in_bytes=1024 * 1024, batching_max_publish_delay_ms=50,
            block_if_queue_full=True)
    else:
        producer = pulsar_client.create_producer(full, batching_enabled=False)
    receipts = [None] * MESSAGES
    errors = []
    done = threading.Semaphore(0)
    msgs = [make_message(i, base_ts) for i in range(MESSAGES)]
    try:
        for i, (key, value, props, ev) in enumerate(msgs):
            kwargs = dict(properties=props, partition_key=key)
            if ev is not None:
                kwargs["event_timestamp"] = ev
            if batching:
                def callback(res, mid, i=i):
                    if res != pulsar.Result.Ok:
                        errors.append(f"message {i}: {res}")
                    receipts[i] = mid
                    done.release()
                producer.send_async(value, callback, **kwargs)
            else:
                receipts[i] = producer.send(value, **kwargs)
        if batching:
            producer.flush()
            for _ in range(MESSAGES):
                assert done.acquire(timeout=60), "a send_async callback never came"
    finally:
        producer.close()
    assert not errors, f"Pulsar sends failed: {errors[:5]}"

    sent = collections.defaultdict(list)  # partition -> [Sent] in send order
    for i, ((key, value, props, ev), mid) in enumerate(zip(msgs, receipts)):
        sent[mid.partition()].append(Sent(i, mid.partition(), key, value, props, ev, mid, msg_id_offset(mid)))
    assert sorted(sent) == list(range(PARTITIONS)), f"messages went to partitions {sorted(sent)}"
    batch_indexes = [s.msg_id.batch_index() for recs in sent.values() for s in recs]
    entries = {(s.partition, s.msg_id.ledger_id(), s.msg_id.entry_id()) for recs in sent.values() for s in recs}
    diag.append(f"pulsar->kafka ({'batched' if batching else 'unbatched'}): {MESSAGES} messages in "
                f"{len(entries)} entries, batch indexes {min(batch_indexes)}..{max(batch_indexes)}")
    if batching:
        assert max(batch_indexes) > 0, "producer batching did not put several messages in one entry"
    else:
        assert set(batch_indexes) == {-1}, f"unbatched producer gave batch indexes {set(batch_indexes)}"

    # Publish times of the messages without event time, read back with a Pulsar reader.
    publish_time = {}
    for p in range(PARTITIONS):
        reader = pulsar_client.create_reader(f"{full}-partition-{p}", pulsar.MessageId.earliest)
        try:
            for _ in sent[p]:
                m = reader.read_next(timeout_millis=20000)
                mid = m.message_id()
                publish_time[(p, msg_id_offset(mid))] = m.publish_timestamp()
        finally:
            reader.close()

    # 3. Consume with kafka-python: no group, assign + seek_to_beginning.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=30000, fetch_max_wait_ms=200)
    got = collections.defaultdict(list)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        assert consumer.partitions_for_topic(topic) == set(range(PARTITIONS)), \
            f"Kafka metadata shows partitions {consumer.partitions_for_topic(topic)} for {topic}"
        consumer.assign(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + READ_DEADLINE_S
        while time.monotonic() < deadline and any(len(got[p]) < len(sent[p]) for p in range(PARTITIONS)):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                got[tp.partition].extend(records)
        end = consumer.end_offsets(tps)
    finally:
        consumer.close()

    # 4. Compare record by record, in per-partition order.
    bad = Mismatches()
    for p in range(PARTITIONS):
        if len(got[p]) != len(sent[p]):
            bad.add(f"partition {p}: Kafka consumer read {len(got[p])} records, want {len(sent[p])} "
                    f"(offsets read: {[r.offset for r in got[p]][:10]}...)")
        want_end = sent[p][-1].offset + 1
        bad.check(f"partition {p}", "end offset (high watermark)", end[TopicPartition(topic, p)], want_end)
        for s, r in zip(sent[p], got[p]):
            mid = s.msg_id
            where = (f"{topic}-partition-{p} message #{s.i} "
                     f"(id {mid.ledger_id()}:{mid.entry_id()}:{mid.batch_index()})")
            bad.check(where, "offset", (r.offset, split_offset(r.offset)), (s.offset, split_offset(s.offset)))
            bad.check(where, "key", r.key, s.key.encode() if s.key is not None else None)
            bad.check(where, "value", r.value, s.value)
            bad.check(where, "headers (sorted)", sorted(r.headers),
                      sorted((k, v.encode()) for k, v in s.properties.items()))
            if s.event_time is not None:
                bad.check(where, "timestamp (event time)", r.timestamp, s.event_time)
                bad.check(where, "timestamp type", r.timestamp_type, 0)
            else:
                bad.check(where, "timestamp (publish time, no event time)", r.timestamp,
                          publish_time.get((p, s.offset)))
    bad.assert_none(f"Pulsar -> Kafka ({'batched' if batching else 'unbatched'}) on {topic}")

"""Kafka -> Pulsar: records produced with kafka-python through the gateway are read
by the native Pulsar Python client (pulsar-client) straight from the broker.

Mapping checked (docs/kafka.md "Mapping to Pulsar", DESIGN.md §5 "Produce"):
  key -> partition key (UTF-8 keys as they are, other keys base64 with the
         `partition_key_b64_encoded` flag) and ordering key (the key bytes)
  value -> payload; null value -> the `null_value` flag (empty payload)
  headers -> properties in order with duplicates; non-UTF-8 values base64 and
         the `__kafka_header_encoding` marker
  timestamp -> event time
  offset == ledger << 32 | entry << 12 | batch_index

pulsar-client 3.x exposes properties as a dict (duplicate keys collapse: the C++
client keeps the first), partition_key() as str ('' when absent) and no accessor
for the base64 flag; ordering_key() raises for non-UTF-8 bytes. So each message is
checked twice: through the client API, and in the raw entry the broker stores
(admin REST "get message by id"), where every field is visible.
"""
import base64
import collections
import json
import logging
import random
import time
import uuid

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
import pulsar

from interop import (Mismatches, header_properties, http, is_utf8, key_text, msg_id_offset,
                     read_raw_entry, split_offset, topic_url)

log = logging.getLogger("interop")

PARTITIONS = 3
RECORDS = 300

Sent = collections.namedtuple("Sent", "i partition key value headers timestamp offset")


def make_record(rng, i, base_ts):
    # keys: null, non-UTF-8 binary, empty, non-ASCII UTF-8, plain text
    kind = i % 10
    if kind == 0:
        key = None
    elif kind in (1, 7):
        key = b"\xff\xfe" + i.to_bytes(2, "big") + bytes(rng.randrange(256) for _ in range(6))
    elif kind == 2:
        key = b""
    elif kind == 3:
        key = f"ключ-{i}".encode()
    else:
        key = f"key-{i % 17}".encode()
    # values: binary (every byte value possible), some empty, one tombstone with a key
    if i == 41:
        key, value = b"tombstone-key", None
    elif i % 25 == 6:
        value = b""
    else:
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    headers = [("seq", str(i).encode())]
    if i % 4 == 1:  # duplicate keys, interleaved: order and every value must survive
        headers += [("dup", b"first"), ("dup", b"second"), ("x", b"y"), ("dup", b"third")]
    elif i % 4 == 2:  # a value that is not UTF-8, and one that is but is not ASCII
        headers += [("bin", b"\xff\x00\x80" + bytes([i % 256])), ("txt", "héllo ✓".encode())]
    elif i % 4 == 3:
        headers += [("empty", b"")]
    # explicit, non-monotonic timestamps, an hour back
    timestamp = base_ts + (i * 7919) % 100_000
    return key, value, headers, timestamp


def test_kafka_to_pulsar(bootstrap, admin_url, pulsar_client, diag):
    topic = "interop-k2p-" + uuid.uuid4().hex[:10]

    # 1. Create the topic through Kafka; Pulsar must show a 3-partition topic.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    status, _, body = http("GET", topic_url(admin_url, topic) + "/partitions")
    assert status == 200, f"Pulsar admin GET partitions: HTTP {status} {body[:300]!r}"
    assert json.loads(body).get("partitions") == PARTITIONS, \
        f"Pulsar sees {body!r} for {topic}, want {PARTITIONS} partitions"

    # 2. Produce with kafka-python; linger so that records form multi-record batches.
    rng = random.Random(20261122)
    base_ts = (int(time.time() * 1000) // 1000) * 1000 - 3_600_000
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=200,
                             batch_size=256 * 1024, request_timeout_ms=30000)
    futures = []
    try:
        for i in range(RECORDS):
            key, value, headers, ts = make_record(rng, i, base_ts)
            p = i % PARTITIONS
            futures.append((i, p, key, value, headers, ts,
                            producer.send(topic, key=key, value=value, headers=headers,
                                          partition=p, timestamp_ms=ts)))
            if i % 100 == 99:  # three waves: several entries per partition, with offset gaps
                producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    sent = collections.defaultdict(list)  # partition -> [Sent] in send order
    for i, p, key, value, headers, ts, fut in futures:
        md = fut.get(timeout=30)
        assert md.partition == p
        sent[p].append(Sent(i, p, key, value, headers, ts, md.offset))
    for p, recs in sent.items():
        offsets = [s.offset for s in recs]
        assert offsets == sorted(set(offsets)), f"partition {p}: producer offsets not strictly increasing"

    # 3. Read every partition with a native Pulsar reader from the earliest message.
    bad = Mismatches()
    entries = {}  # (partition, ledger, entry) -> raw messages, fetched once
    max_batch_index = 0
    for p in range(PARTITIONS):
        ptopic = f"{topic}-partition-{p}"
        reader = pulsar_client.create_reader(f"persistent://public/default/{ptopic}",
                                             pulsar.MessageId.earliest)
        try:
            got = []
            for _ in sent[p]:
                try:
                    got.append(reader.read_next(timeout_millis=20000))
                except pulsar.Timeout:
                    break
            extra = reader.has_message_available()
        finally:
            reader.close()
        if len(got) != len(sent[p]) or extra:
            bad.add(f"{ptopic}: read {len(got)} messages{' and more are available' if extra else ''}, "
                    f"want exactly {len(sent[p])}")

        for s, m in zip(sent[p], got):
            where = f"{ptopic} record #{s.i} (kafka offset {s.offset} = {split_offset(s.offset)})"
            mid = m.message_id()
            ledger, entry, bidx = mid.ledger_id(), mid.entry_id(), mid.batch_index()
            max_batch_index = max(max_batch_index, bidx)
            # offset <-> message id (this also proves per-partition order)
            bad.check(where, "message id (ledger, entry, batch_index) as offset",
                      (msg_id_offset(mid), (ledger, entry, bidx)), (s.offset, split_offset(s.offset)))
            # key, through the client API: absent shows as ''
            want_key = key_text(s.key)
            bad.check(where, "partition_key()", m.partition_key(), want_key if want_key is not None else "")
            # value and tombstone flag
            bad.check(where, "data()", m.data(), s.value if s.value is not None else b"")
            bad.check(where, "has_null_value()", m.has_null_value(), s.value is None)
            # headers -> properties; the dict collapses duplicate keys (C++ keeps the first)
            want_props = header_properties(s.headers)
            want_dict = {}
            for k, v in want_props:
                want_dict.setdefault(k, v)
            bad.check(where, "properties()", m.properties(), want_dict)
            bad.check(where, "event_timestamp()", m.event_timestamp(), s.timestamp)

            # the same message as stored by the broker: every field, nothing collapsed
            ekey = (p, ledger, entry)
            if ekey not in entries:
                try:
                    entries[ekey] = read_raw_entry(admin_url, ptopic, ledger, entry)
                except AssertionError as e:
                    entries[ekey] = []
                    bad.add(f"{where}: raw entry: {e}")
            raw = entries[ekey]
            if not 0 <= bidx < len(raw):
                if raw:
                    bad.add(f"{where}: batch index {bidx} outside the entry's {len(raw)} messages")
                continue
            meta, payload = raw[bidx]
            bad.check(where, "raw partition_key", meta.get("partition_key"), want_key)
            bad.check(where, "raw partition_key_b64_encoded",
                      meta.get("partition_key_b64_encoded", False),
                      s.key is not None and not is_utf8(s.key))
            if meta.get("partition_key_b64_encoded"):
                bad.check(where, "raw partition key, base64-decoded",
                          base64.b64decode(meta.get("partition_key", "")), s.key)
            bad.check(where, "raw ordering_key", meta.get("ordering_key"), s.key)
            bad.check(where, "raw payload", payload, s.value if s.value is not None else b"")
            bad.check(where, "raw null_value", meta.get("null_value", False), s.value is None)
            bad.check(where, "raw properties (ordered, duplicates kept)", meta["properties"], want_props)
            bad.check(where, "raw event_time", meta.get("event_time"), s.timestamp)

    multi = sum(1 for raw in entries.values() if len(raw) > 1)
    diag.append(f"kafka->pulsar: {RECORDS} records in {len(entries)} Pulsar entries "
                f"({multi} with more than one message, largest batch index {max_batch_index})")
    bad.assert_none(f"Kafka -> Pulsar on {topic}")
    # The batch-index part of the offset mapping must actually have been exercised.
    assert max_batch_index > 0, \
        f"no Pulsar message had a batch index > 0 ({len(entries)} entries): kafka-python batches did not form"

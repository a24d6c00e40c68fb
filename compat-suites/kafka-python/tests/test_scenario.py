"""kafka-python end-to-end compatibility scenario.

The steps run in file order and share one `Scenario` object:

  1. admin: create a fresh 6-partition topic, check its metadata
  2. produce ~5,000 records per codec (none/gzip/snappy/lz4/zstd), acks=all
  3. consume everything without a consumer group and compare record by record
  4. ListOffsets by timestamp (offsets_for_times)
  5. beginning_offsets / end_offsets consistency

Offsets are compared with what the producer's RecordMetadata reported; they
are never assumed to be contiguous (a broker may leave gaps between batches).
"""
import collections
import logging
import random
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

log = logging.getLogger("compat")

NUM_PARTITIONS = 6
RECORDS_PER_CODEC = 5000
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
# Client-side timeouts: generous enough for a slow broker, small enough that
# the whole suite stays within a couple of minutes when something hangs.
REQUEST_TIMEOUT_MS = 30000
READ_DEADLINE_S = 60

# What the producer sent, plus what the broker acknowledged for it.
Sent = collections.namedtuple(
    "Sent", "codec seq partition offset key value headers timestamp")


class Scenario:
    def __init__(self):
        self.topic = "compat-kpy-" + uuid.uuid4().hex[:12]
        self.created = False
        self.failed_codecs = []
        self.produced_codecs = []
        # partition -> [Sent] in send order (all codecs, producers run one after another)
        self.sent = collections.defaultdict(list)
        self.consumed_ok = False
        self.first_read = {}   # partition -> offset of first record read from the beginning
        self.last_read = {}    # partition -> offset of last record read in step 3
        self.end_step3 = {}    # partition -> end offset seen in step 3
        self.step4 = None      # partition -> dict(first_a, last_b, ...)

    def tps(self):
        return [TopicPartition(self.topic, p) for p in range(NUM_PARTITIONS)]


@pytest.fixture(scope="module")
def sc():
    return Scenario()


def codec_id(codec):
    return codec or "none"


# --------------------------------------------------------------------------
# record generation


def make_headers(rng, i):
    variant = i % 8
    if variant == 0:
        return []
    if variant == 1:
        return [("trace-id", ("t-%d" % i).encode())]
    if variant == 2:  # duplicate keys, interleaved: order must be preserved
        return [("dup", b"first"), ("dup", b"second"), ("other", b"x"), ("dup", b"third")]
    if variant == 3:  # every byte value
        return [("bin", bytes(range(256)))]
    if variant == 4:  # empty value and empty key
        return [("empty", b""), ("", b"empty-key")]
    if variant == 5:  # non-ASCII key
        return [("ключ-ü-\u2603", "значение".encode("utf-8"))]
    if variant == 6:  # many headers with random binary values, one duplicated key
        hs = [("h%02d" % j, rng.randbytes(rng.randint(0, 30))) for j in range(12)]
        hs.append(("h03", b"again"))
        return hs
    return [("same", b"1"), ("same", b"1")]  # identical duplicates


def make_value(rng, i, key):
    if i % 997 == 500:  # a few large incompressible values (own batch)
        return rng.randbytes(100_000)
    r = rng.random()
    if key is not None and r < 0.04:
        return None  # tombstone
    if r < 0.07:
        return b""  # empty, must not come back as None
    if r < 0.50:  # compressible text
        word = rng.choice([b"alpha ", b"beta ", b"gamma ", b"delta "])
        return (word * rng.randint(1, 80))[: rng.randint(1, 480)]
    if r < 0.95:  # random binary
        return rng.randbytes(rng.randint(1, 2000))
    return bytes([i % 256]) * rng.randint(2000, 20000)  # highly compressible


def make_key(rng, i, codec_idx):
    k = i % 20
    if k in (0, 7):
        return None
    if k == 3:
        return b""  # empty key, distinct from None
    if k % 2:
        return rng.randbytes(rng.randint(1, 40))
    return ("key-%d-%d" % (codec_idx, i % 500)).encode()


def make_records(codec_idx, n):
    """Deterministic per codec. Timestamps are explicit, about one hour in the
    past, and deliberately not monotonic."""
    rng = random.Random(1000 + codec_idx)
    base_ts = int(time.time() * 1000) - 3_600_000 + codec_idx * 100_000
    out = []
    for i in range(n):
        key = make_key(rng, i, codec_idx)
        value = make_value(rng, i, key)
        headers = make_headers(rng, i)
        # a third of the records go to an explicit partition, the rest use
        # kafka-python's default partitioner (keyed hash / sticky for no key)
        partition = i % NUM_PARTITIONS if i % 3 == 0 else None
        ts = base_ts + i * 5 + rng.randint(-2000, 2000)
        out.append(dict(key=key, value=value, headers=headers, partition=partition, timestamp_ms=ts))
    return out


def short(b, n=40):
    if b is None:
        return "None"
    return "%r%s(len=%d)" % (b[:n], "..." if len(b) > n else "", len(b))


# --------------------------------------------------------------------------
# helpers


def negotiated_versions(manager):
    """Best effort: which protocol versions kafka-python will use."""
    from kafka.protocol.admin.topics import CreateTopicsRequest
    from kafka.protocol.consumer.fetch import FetchRequest
    from kafka.protocol.consumer.offsets import ListOffsetsRequest
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest
    from kafka.protocol.metadata.metadata import MetadataRequest
    from kafka.protocol.producer.produce import ProduceRequest
    from kafka.protocol.producer.transaction import InitProducerIdRequest

    bvd = manager.broker_version_data
    parts = []
    for req in (ApiVersionsRequest, MetadataRequest, CreateTopicsRequest, InitProducerIdRequest,
                ProduceRequest, FetchRequest, ListOffsetsRequest):
        name = req.__name__.replace("Request", "")
        try:
            broker = bvd.api_versions.get(req.API_KEY)
            parts.append("%s=v%s (broker %s-%s)" % (name, bvd.api_version(req), *broker))
        except Exception as e:  # unsupported by broker or client
            parts.append("%s=unsupported (%s)" % (name, e))
    return "broker version inferred %s; %s" % (bvd.broker_version_str, ", ".join(parts))


def read_until_end(consumer, tps, end, deadline_s=READ_DEADLINE_S):
    """Poll until every partition's position reached its end offset.
    Returns {partition: [ConsumerRecord]}."""
    got = collections.defaultdict(list)
    deadline = time.monotonic() + deadline_s
    while True:
        for tp, recs in consumer.poll(timeout_ms=500, max_records=5000).items():
            got[tp.partition].extend(recs)
        positions = {tp.partition: consumer.position(tp, timeout_ms=REQUEST_TIMEOUT_MS) for tp in tps}
        if all(positions[tp.partition] is not None and positions[tp.partition] >= end[tp] for tp in tps):
            return got
        if time.monotonic() > deadline:
            pytest.fail(
                "consumer did not reach the end offsets within %ss: positions=%s end_offsets=%s "
                "records read per partition=%s"
                % (deadline_s, positions, {tp.partition: o for tp, o in end.items()},
                   {p: len(r) for p, r in sorted(got.items())}))


def new_consumer(bootstrap, name):
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="compat-kpy-" + name,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )


# --------------------------------------------------------------------------
# step 1


def test_1_create_topic(sc, bootstrap, diag):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kpy-admin",
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        try:
            diag.append(negotiated_versions(admin._manager))
        except Exception as e:  # diagnostics only, never fails the step
            diag.append("could not read negotiated versions: %r" % (e,))

        result = admin.create_topics(
            {sc.topic: {"num_partitions": NUM_PARTITIONS, "replication_factor": 1}},
            timeout_ms=REQUEST_TIMEOUT_MS)
        log.info("CreateTopics result: %s", result)
        codes = {t["name"]: t["error_code"] for t in result["topics"]}
        assert codes == {sc.topic: 0}, "CreateTopics returned %s" % result
        diag.append("topic: %s" % sc.topic)

        # Metadata may lag the create; poll briefly.
        deadline = time.monotonic() + 15
        while True:
            topics = admin.describe_topics([sc.topic])
            assert len(topics) == 1, "describe_topics returned %s" % topics
            t = topics[0]
            parts = t.get("partitions") or []
            ready = (t["error_code"] == 0 and len(parts) == NUM_PARTITIONS
                     and all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in parts))
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert t["name"] == sc.topic
        assert t["error_code"] == 0, "topic metadata error %s" % t
        assert sorted(p["partition_index"] for p in parts) == list(range(NUM_PARTITIONS)), \
            "expected %d partitions, metadata shows %s" % (NUM_PARTITIONS, parts)
        for p in parts:
            assert p["error_code"] == 0 and p["leader_id"] >= 0, "partition not ready: %s" % p
        assert sc.topic in admin.list_topics()
        sc.created = True
    finally:
        admin.close()


# --------------------------------------------------------------------------
# step 2


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_2_produce(sc, bootstrap, codec, diag):
    if not sc.created:
        pytest.skip("step 1 (create topic) failed")
    codec_idx = CODECS.index(codec)
    try:
        records = make_records(codec_idx, RECORDS_PER_CODEC)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="compat-kpy-producer-" + codec_id(codec),
            acks="all",
            compression_type=codec,
            linger_ms=5,
            batch_size=32768,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            max_block_ms=REQUEST_TIMEOUT_MS,
        )
        t0 = time.monotonic()
        try:
            futures = [producer.send(sc.topic, **r) for r in records]
            producer.flush(timeout=60)
        finally:
            producer.close(timeout=10)

        metas, errors = [], []
        for seq, f in enumerate(futures):
            try:
                metas.append(f.get(timeout=1))
            except Exception as e:
                metas.append(None)
                errors.append((seq, e))
        assert not errors, "%d of %d sends failed (codec=%s); first: %s" % (
            len(errors), len(futures), codec_id(codec), [(s, repr(e)) for s, e in errors[:3]])
        diag.append("produce codec=%s: %d records acked in %.1fs" % (
            codec_id(codec), len(metas), time.monotonic() - t0))

        per_partition = collections.defaultdict(list)
        for seq, (r, m) in enumerate(zip(records, metas)):
            assert m.topic == sc.topic
            assert 0 <= m.partition < NUM_PARTITIONS, "bad partition in %s" % (m,)
            if r["partition"] is not None:
                assert m.partition == r["partition"], "explicit partition not honoured: %s" % (m,)
            assert m.offset >= 0, "record %d got offset %s" % (seq, m.offset)
            # CreateTime topic: the broker returns log_append_time=-1, so the
            # client reports the timestamp we set.
            assert m.timestamp == r["timestamp_ms"], \
                "record %d: metadata timestamp %s != sent %s" % (seq, m.timestamp, r["timestamp_ms"])
            per_partition[m.partition].append(
                Sent(codec, seq, m.partition, m.offset, r["key"], r["value"], r["headers"], r["timestamp_ms"]))

        assert sorted(per_partition) == list(range(NUM_PARTITIONS)), \
            "records did not spread over all partitions: %s" % {p: len(v) for p, v in per_partition.items()}
        for p, lst in per_partition.items():
            prev = sc.sent[p][-1].offset if sc.sent[p] else -1
            for s in lst:
                assert s.offset > prev, (
                    "partition %d: offsets not increasing in send order (codec=%s, seq=%d offset=%d "
                    "after offset %d)" % (p, codec_id(codec), s.seq, s.offset, prev))
                prev = s.offset
        for p, lst in per_partition.items():
            sc.sent[p].extend(lst)
        sc.produced_codecs.append(codec)
    except BaseException:
        sc.failed_codecs.append(codec_id(codec))
        raise


# --------------------------------------------------------------------------
# step 3


def _header_diff(got, want):
    if len(got) != len(want):
        return "read %d headers %r, sent %d %r" % (len(got), [k for k, _ in got], len(want), [k for k, _ in want])
    i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), 0)
    return "#%d read (%r, %s), sent (%r, %s)" % (i, got[i][0], short(got[i][1]), want[i][0], short(want[i][1]))


def _compare(p, got, want):
    """Return a list of human-readable mismatches for one partition."""
    problems = []
    if len(got) != len(want):
        problems.append("partition %d: read %d records, produced %d" % (p, len(got), len(want)))
    for i, (g, w) in enumerate(zip(got, want)):
        diffs = []
        if g.offset != w.offset:
            diffs.append("offset %d != acked %d" % (g.offset, w.offset))
        if g.key != w.key:
            diffs.append("key %s != %s" % (short(g.key), short(w.key)))
        if g.value != w.value:
            diffs.append("value %s != %s" % (short(g.value), short(w.value)))
        gh = [tuple(h) for h in (g.headers or [])]
        if gh != w.headers:
            diffs.append("headers differ: %s" % _header_diff(gh, w.headers))
        if g.timestamp != w.timestamp:
            diffs.append("timestamp %s != %s" % (g.timestamp, w.timestamp))
        if g.timestamp_type != 0:
            diffs.append("timestamp_type %s != 0 (CreateTime)" % g.timestamp_type)
        if diffs:
            problems.append("partition %d #%d (codec=%s seq=%d): %s" % (
                p, i, codec_id(w.codec), w.seq, "; ".join(diffs)))
        if len(problems) >= 10:
            break
    return problems


def test_3_consume_without_group(sc, bootstrap, diag):
    if sc.failed_codecs or len(sc.produced_codecs) != len(CODECS):
        pytest.skip("step 2 (produce) failed for: %s" % (sc.failed_codecs or "all"))
    consumer = new_consumer(bootstrap, "reader")
    try:
        tps = sc.tps()
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        for tp in tps:
            last_acked = sc.sent[tp.partition][-1].offset
            assert end[tp] > last_acked, \
                "partition %d: end offset %s not beyond last acked offset %d" % (tp.partition, end[tp], last_acked)

        t0 = time.monotonic()
        got = read_until_end(consumer, tps, end)
        total = sum(len(v) for v in got.values())
        diag.append("consume: %d records read in %.1fs" % (total, time.monotonic() - t0))

        problems = []
        for p in range(NUM_PARTITIONS):
            problems += _compare(p, got.get(p, []), sc.sent[p])
        assert total == sum(len(v) for v in sc.sent.values()), \
            "count mismatch: read %d, produced %d; %s" % (total, sum(len(v) for v in sc.sent.values()), problems[:10])
        assert not problems, "records differ:\n" + "\n".join(problems[:20])

        for tp in tps:
            recs = got[tp.partition]
            sc.first_read[tp.partition] = recs[0].offset
            sc.last_read[tp.partition] = recs[-1].offset
            sc.end_step3[tp.partition] = end[tp]
            assert end[tp] > recs[-1].offset
        # Informational: does this broker leave offset gaps? (either is valid)
        spans = {p: sc.last_read[p] - sc.first_read[p] + 1 for p in sc.last_read}
        counts = {p: len(got[p]) for p in got}
        diag.append("offsets: first=%s; gaps (span-count) per partition=%s" % (
            sc.first_read, {p: spans[p] - counts[p] for p in sorted(spans)}))
        sc.consumed_ok = True
    finally:
        consumer.close()


# --------------------------------------------------------------------------
# step 4


GROUP_SIZE = 3


def test_4_offsets_for_times(sc, bootstrap, diag):
    if not sc.consumed_ok:
        pytest.skip("step 3 (consume) failed")
    tps = sc.tps()
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="compat-kpy-producer-ts",
                             acks="all", request_timeout_ms=REQUEST_TIMEOUT_MS,
                             max_block_ms=REQUEST_TIMEOUT_MS)
    try:
        def send_group(tag):
            fs = [(p, i, producer.send(sc.topic, key=b"ts-%d" % p, value=b"%s-%d-%d" % (tag, p, i), partition=p))
                  for p in range(NUM_PARTITIONS) for i in range(GROUP_SIZE)]
            producer.flush(timeout=30)
            return {(p, i): f.get(timeout=1) for p, i, f in fs}

        group_a = send_group(b"A")  # default (client clock) timestamps
        time.sleep(0.05)
        t_split = int(time.time() * 1000)
        group_b = send_group(b"B")
    finally:
        producer.close(timeout=10)

    for p in range(NUM_PARTITIONS):
        offs = [group_a[(p, i)].offset for i in range(GROUP_SIZE)] + [group_b[(p, i)].offset for i in range(GROUP_SIZE)]
        assert offs == sorted(set(offs)), "partition %d: offsets not increasing: %s" % (p, offs)
        assert offs[0] >= sc.end_step3[p], \
            "partition %d: new offset %d below earlier end offset %d" % (p, offs[0], sc.end_step3[p])

    consumer = new_consumer(bootstrap, "ts")
    try:
        # Premise check: group A is strictly before the split time, group B at/after it.
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, group_a[(tp.partition, 0)].offset)
        end = consumer.end_offsets(tps)
        got = read_until_end(consumer, tps, end)
        for tp in tps:
            recs = got[tp.partition]
            values = [r.value for r in recs]
            expect = [b"A-%d-%d" % (tp.partition, i) for i in range(GROUP_SIZE)] + \
                     [b"B-%d-%d" % (tp.partition, i) for i in range(GROUP_SIZE)]
            assert values == expect, "partition %d: read back %s" % (tp.partition, values)
            assert all(r.timestamp < t_split for r in recs[:GROUP_SIZE]), \
                "premise: group A timestamps %s not before T=%d" % ([r.timestamp for r in recs], t_split)
            assert all(r.timestamp >= t_split for r in recs[GROUP_SIZE:]), \
                "premise: group B timestamps %s not at/after T=%d" % ([r.timestamp for r in recs], t_split)

        found = consumer.offsets_for_times({tp: t_split for tp in tps})
        log.info("offsets_for_times(T=%d) -> %s", t_split, found)
        for tp in tps:
            first_b = group_b[(tp.partition, 0)].offset
            first_b_rec = got[tp.partition][GROUP_SIZE]
            assert found.get(tp) is not None, "partition %d: offsets_for_times(T) returned None" % tp.partition
            assert found[tp].offset == first_b, \
                "partition %d: offsets_for_times(T) offset %d != first record of 2nd group %d" % (
                    tp.partition, found[tp].offset, first_b)
            assert found[tp].timestamp == first_b_rec.timestamp, \
                "partition %d: offsets_for_times timestamp %s != record timestamp %s" % (
                    tp.partition, found[tp].timestamp, first_b_rec.timestamp)

        # Timestamp 0: earliest record with ts >= 0 is the first record of the partition.
        found0 = consumer.offsets_for_times({tp: 0 for tp in tps})
        for tp in tps:
            assert found0.get(tp) is not None and found0[tp].offset == sc.first_read[tp.partition], \
                "partition %d: offsets_for_times(0) -> %s, first record offset %d" % (
                    tp.partition, found0.get(tp), sc.first_read[tp.partition])

        # A timestamp after every record: no offset.
        future_ts = int(time.time() * 1000) + 86_400_000
        found_future = consumer.offsets_for_times({tp: future_ts for tp in tps})
        for tp in tps:
            assert found_future.get(tp) is None, \
                "partition %d: offsets_for_times(now+1d) -> %s, expected None" % (tp.partition, found_future.get(tp))

        sc.step4 = {p: dict(last_b=group_b[(p, GROUP_SIZE - 1)].offset) for p in range(NUM_PARTITIONS)}
    finally:
        consumer.close()


# --------------------------------------------------------------------------
# step 5


def test_5_beginning_end_offsets(sc, bootstrap):
    if not sc.consumed_ok:
        pytest.skip("step 3 (consume) failed")
    consumer = new_consumer(bootstrap, "bounds")
    try:
        tps = sc.tps()
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        for tp in tps:
            p = tp.partition
            assert 0 <= begin[tp] <= sc.first_read[p], \
                "partition %d: beginning offset %s after first record read %d" % (p, begin[tp], sc.first_read[p])
            assert end[tp] > sc.last_read[p], \
                "partition %d: end offset %s not beyond last read offset %d" % (p, end[tp], sc.last_read[p])
            assert end[tp] >= sc.end_step3[p], \
                "partition %d: end offset went backwards %d -> %d" % (p, sc.end_step3[p], end[tp])
            if sc.step4:
                assert end[tp] > sc.step4[p]["last_b"], \
                    "partition %d: end offset %s not beyond last produced offset %d" % (p, end[tp], sc.step4[p]["last_b"])

        # Seeking to the beginning again must land on the first record read in step 3.
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 30
        first = {}
        while len(first) < len(tps) and time.monotonic() < deadline:
            for tp, recs in consumer.poll(timeout_ms=500).items():
                if recs and tp.partition not in first:
                    first[tp.partition] = recs[0].offset
                    consumer.pause(tp)
        assert first == sc.first_read, "first offsets after seek_to_beginning %s != step 3 %s" % (first, sc.first_read)
    finally:
        consumer.close()

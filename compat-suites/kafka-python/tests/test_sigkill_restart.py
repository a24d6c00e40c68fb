"""SIGKILL the gateway mid-stream: no acknowledged record may be lost.

The test starts a gateway of its own with compat-suites/gateway-ctl (it needs
GATEWAY_BIN and GATEWAY_ARGS, which compat-suites/run-against-gateway exports;
without them it is skipped, with the reason). A producer configured the way an
application that must ride out a broker restart would be (acks=all, idempotent,
retries, a delivery timeout longer than the restart) sends 6,000 keyed records
to a 6-partition topic in chunks; once 2,000 are acknowledged the gateway is
SIGKILLed and restarted on the same ports (and, on the embedded backend, the
same data dir) while the producer keeps going. Then every partition is read
from the beginning without a consumer group, and every record whose send was
acknowledged must be at the partition and offset it was acknowledged with,
with its key and value. Failed sends may be missing; duplicates (retries of
requests whose answer the kill swallowed) are allowed and counted; any record
that was never sent is an error.
"""
import collections
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

GATEWAY_CTL = Path(__file__).resolve().parents[2] / "gateway-ctl"
PARTITIONS = 6
TOTAL = 6000
CHUNK = 200
KILL_AFTER = 2000


def ctl(cmd, state_dir):
    r = subprocess.run([str(GATEWAY_CTL), cmd, state_dir], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.fail("gateway-ctl %s failed (exit %d): %s" % (cmd, r.returncode, r.stderr.strip()))
    return r.stdout.strip()


@pytest.fixture
def own_gateway():
    """A gateway process this test may kill: (state dir, bootstrap)."""
    if not os.environ.get("GATEWAY_BIN"):
        pytest.skip("not run: GATEWAY_BIN is not set, so there is no gateway this test may SIGKILL "
                    "and restart (compat-suites/run-against-gateway sets GATEWAY_BIN and GATEWAY_ARGS)")
    state = tempfile.mkdtemp(prefix="kpy-sigkill-")
    outcome = {"passed": False}
    try:
        yield state, ctl("start", state), outcome
    finally:
        ctl("stop", state)
        if outcome["passed"]:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print("gateway state and log kept in %s (gateway.log)" % state)


def backend_name():
    args = os.environ.get("GATEWAY_ARGS", "").split()
    return args[args.index("--backend") + 1] if "--backend" in args[:-1] else "embedded"


def record(i, rng):
    # Keyed, so the default partitioner spreads records over every partition.
    return b"k-%06d" % i, b"v-%06d-" % i + rng.randbytes(rng.randint(0, 300))


def test_sigkill_mid_stream_loses_no_acknowledged_record(own_gateway, diag):
    state, bootstrap, outcome = own_gateway
    topic = "compat-kpy-sigkill-" + uuid.uuid4().hex[:12]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kpy-sigkill-admin")
    try:
        result = admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
        assert [t["error_code"] for t in result["topics"]] == [0], "CreateTopics returned %s" % result
    finally:
        admin.close()

    rng = random.Random(7)
    sent = [record(i, rng) for i in range(TOTAL)]
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="compat-kpy-sigkill",
        acks="all",
        enable_idempotence=True,
        retries=2147483647,
        delivery_timeout_ms=60000,   # longer than the restart takes
        request_timeout_ms=10000,
        reconnect_backoff_max_ms=500,  # default 30 s: reconnect soon after the restart
        max_block_ms=60000,
        linger_ms=5,
    )

    acked = []                 # (record index, partition, offset)
    failed = []                # (record index, error)
    sent_after_restart = []    # acknowledged, and handed to send() once the restarted gateway was ready
    reached = threading.Event()
    restarted = threading.Event()
    counts = {"sent": 0, "acks": 0}
    lock = threading.Lock()

    def count_ack(_md):
        with lock:
            counts["acks"] += 1

    def settle(chunk):
        for i, after, f in chunk:
            try:
                md = f.get(timeout=120)
            except Exception as e:  # a failed send may be lost: only acknowledged ones count
                failed.append((i, repr(e)))
                continue
            acked.append((i, md.partition, md.offset))
            if after:
                sent_after_restart.append(i)
        if len(acked) >= KILL_AFTER:
            reached.set()

    def produce():
        # Two chunks outstanding at a time, so the kill finds requests in flight.
        previous = []
        for start in range(0, TOTAL, CHUNK):
            after = restarted.is_set()
            chunk = []
            for i in range(start, min(start + CHUNK, TOTAL)):
                key, value = sent[i]
                f = producer.send(topic, key=key, value=value)
                f.add_callback(count_ack)
                with lock:
                    counts["sent"] += 1
                chunk.append((i, after, f))
            settle(previous)
            previous = chunk
        settle(previous)
        reached.set()

    t0 = time.monotonic()
    worker = threading.Thread(target=produce, name="sigkill-producer", daemon=True)
    worker.start()
    try:
        assert reached.wait(60), "producer did not reach %d acks" % KILL_AFTER
        ctl("kill9", state)
        killed = time.monotonic()
        with lock:  # nothing is acknowledged while the gateway is down
            acks_before = counts["acks"]
            in_flight = counts["sent"] - acks_before
        assert ctl("start", state) == bootstrap, "restarted gateway must listen where it did"
        down_s = time.monotonic() - killed
        restarted.set()
        worker.join(90)
        assert not worker.is_alive(), "producer still running 90 s after the restart"
    finally:
        producer.close(timeout=10)
    produce_s = time.monotonic() - t0

    assert acks_before >= KILL_AFTER and acks_before < TOTAL, \
        "SIGKILL must hit mid-stream: %d of %d acknowledged when it was sent" % (acks_before, TOTAL)
    assert sent_after_restart, "no record sent after the restart was acknowledged (%d failed: %s)" % (
        len(failed), failed[:3])

    # Read every partition from the beginning, without a group.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="compat-kpy-sigkill-reader",
                             group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_wait_ms=200)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    got = {}   # (partition, offset) -> (key, value)
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "reader did not reach end offsets %s within 60 s (positions %s)" % (
                end, {tp.partition: consumer.position(tp) for tp in tps})
            for tp, recs in consumer.poll(timeout_ms=500, max_records=5000).items():
                for r in recs:
                    got[(tp.partition, r.offset)] = (r.key, r.value)
    finally:
        consumer.close()

    problems = []
    no_offset = 0
    for i, p, off in acked:
        if off >= 0:
            found = got.get((p, off))
            if found is None:
                problems.append("acknowledged record %d (partition %d, offset %d) is missing" % (i, p, off))
            elif found != sent[i]:
                problems.append("partition %d offset %d: read key %r value %r..., acknowledged record %d has key %r"
                                % (p, off, found[0], found[1][:12], i, sent[i][0]))
        elif off == -1:
            # Acknowledged without an offset: Kafka's DUPLICATE_SEQUENCE_NUMBER, which clients treat as
            # success (the retried batch was stored before). The gateway answers a resend with its
            # original's offset, as a Kafka broker does, so this is a failure too; the record must
            # still be on that partition.
            no_offset += 1
            problems.append("acknowledged record %d (partition %d) was acknowledged without an offset "
                            "(DUPLICATE_SEQUENCE_NUMBER)" % (i, p))
            if not any(q == p and rec == sent[i] for (q, _), rec in got.items()):
                problems.append("acknowledged record %d (partition %d, acknowledged without offset) is missing"
                                % (i, p))
        else:
            problems.append("record %d acknowledged with offset %d on partition %d" % (i, off, p))
    seen = collections.Counter()
    for (p, off), (key, value) in got.items():
        i = int(key[2:]) if key and key.startswith(b"k-") else -1
        if not 0 <= i < TOTAL or sent[i] != (key, value):
            problems.append("partition %d offset %d holds a record never sent: key %r" % (p, off, key))
        else:
            seen[i] += 1
    duplicates = sum(n - 1 for n in seen.values())
    failed_found = sum(1 for i, _ in failed if seen[i])
    diag.append(
        "sigkill (%s): %d records sent, %d acknowledged (%d before SIGKILL, %d unacknowledged in flight at it, "
        "%d sent after restart, %d without offset), %d failed "
        "(%d of them stored anyway); read %d records, %d duplicates; gateway down %.1fs; produce %.1fs; topic %s"
        % (backend_name(), TOTAL, len(acked), acks_before,
           in_flight, len(sent_after_restart), no_offset, len(failed), failed_found, len(got), duplicates, down_s, produce_s, topic))
    if failed:
        diag.append("sigkill: first failed sends: %s" % failed[:3])
    assert not problems, "%d problems after SIGKILL + restart (log: %s/gateway.log):\n%s" % (
        len(problems), state, "\n".join(problems[:20]))
    assert len(acked) + len(failed) == TOTAL, "every send must end acknowledged or failed"
    outcome["passed"] = True

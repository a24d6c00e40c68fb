"""Consumer groups with kafka-python: committed offsets, group admin, and a
member SIGKILLed mid-stream.

test_committed_offsets_with_metadata_and_group_admin (short):
    a member commits offsets with metadata strings for 3 partitions; a fresh
    consumer's committed() and the admin client's offset listing return them
    exactly; DescribeGroups shows the member, its assignment and the Stable
    state (Empty once it left); ListGroups lists the group.

test_member_sigkill_rebalance_duplicates_only_uncommitted (marker `groups`):
    60,000 keyed records on 6 partitions, 3 members in separate OS processes
    (tests/group_member.py), each committing after every batch and logging
    every record and every commit. At ~20,000 consumed the member owning most
    partitions is SIGKILLed (no LeaveGroup) and a fourth member starts; the
    group rebalances once the dead member's session (10 s) expires, and
    finishes. Every produced record must be consumed, nothing else, and every
    duplicate must be a record the killed member consumed after its last
    successful commit for that partition.
"""
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

MEMBER = Path(__file__).resolve().parent / "group_member.py"
PARTITIONS = 6
TOTAL = 60000
KILL_AT = 20000
SESSION_TIMEOUT_S = 10


def create_topic(bootstrap, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kpy-groups-admin")
    try:
        result = admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
        assert [t["error_code"] for t in result["topics"]] == [0], "CreateTopics returned %s" % result
    finally:
        admin.close()


def produce(bootstrap, topic, count):
    """Send `count` keyed records; return the set of (partition, offset) acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             batch_size=65536, client_id="compat-kpy-groups-producer")
    futures = [producer.send(topic, key=b"key-%d" % (i % 997), value=b"value-%06d" % i) for i in range(count)]
    producer.flush(timeout=60)
    produced = set()
    for f in futures:
        md = f.get(timeout=30)
        produced.add((md.partition, md.offset))
    producer.close()
    assert len(produced) == count, "%d sends acknowledged at %d distinct offsets" % (count, len(produced))
    return produced


# ---------------------------------------------------------------- short test

def test_committed_offsets_with_metadata_and_group_admin(bootstrap, diag):
    topic = "compat-kpy-gmeta-" + uuid.uuid4().hex[:12]
    group = "compat-kpy-gmeta-" + uuid.uuid4().hex[:12]
    create_topic(bootstrap, topic, PARTITIONS)
    produce(bootstrap, topic, 600)

    member = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="compat-kpy-gmeta-member",
                           enable_auto_commit=False, auto_offset_reset="earliest",
                           session_timeout_ms=10000, heartbeat_interval_ms=1000)
    fresh = None
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kpy-gmeta-admin")
    try:
        member.subscribe([topic])
        deadline = time.time() + 30
        while len(member.assignment()) < PARTITIONS and time.time() < deadline:
            member.poll(timeout_ms=200)
        assert len(member.assignment()) == PARTITIONS, "assignment after 30 s: %s" % member.assignment()

        want = {
            TopicPartition(topic, 0): OffsetAndMetadata(17, "checkpoint-a", -1),
            TopicPartition(topic, 2): OffsetAndMetadata(42, "{\"app\": \"b\", \"n\": 2}", -1),
            TopicPartition(topic, 5): OffsetAndMetadata(3, "metadata ü/é – non-ascii", -1),
        }
        member.commit(want)

        # DescribeGroups / ListGroups while the member is in the group.
        desc = admin.describe_groups([group])[group]
        diag.append("groups: describe (member present): state=%s protocol_type=%s protocol=%s members=%d"
                    % (desc.get("group_state"), desc.get("protocol_type"), desc.get("protocol_data"),
                       len(desc.get("members") or [])))
        assert desc.get("error") is None, desc
        assert desc["group_state"] == "Stable", desc
        assert desc["protocol_type"] == "consumer", desc
        assert desc["protocol_data"] in ("range", "roundrobin"), desc
        assert len(desc["members"]) == 1, desc
        m = desc["members"][0]
        assert m["client_id"] == "compat-kpy-gmeta-member", m
        assigned = m["member_assignment"]
        got_parts = sorted(p for t in assigned["assigned_partitions"] for p in t["partitions"]
                           if t["topic"] == topic)
        assert got_parts == list(range(PARTITIONS)), "described assignment %s" % assigned

        listed = admin.list_groups()
        ids = {g["group_id"]: g for g in listed}
        diag.append("groups: list_groups returned %d groups, ours %s" % (len(listed), "present" if group in ids else "MISSING"))
        assert group in ids, "ListGroups: %s" % sorted(ids)
        assert ids[group].get("protocol_type") == "consumer", ids[group]

        # OffsetFetch through the admin client: exactly the 3 committed partitions.
        fetched = admin.list_group_offsets({group: None})[group]
        got = {tp: (om.offset, om.metadata) for tp, om in fetched.items()}
        exp = {tp: (om.offset, om.metadata) for tp, om in want.items()}
        diag.append("groups: admin offsets %s" % sorted((tp.partition, o, md) for tp, (o, md) in got.items()))
        assert got == exp, "admin offsets %s, committed %s" % (got, exp)

        member.close()
        member = None
        desc = admin.describe_groups([group])[group]
        diag.append("groups: describe (after close): state=%s members=%d"
                    % (desc.get("group_state"), len(desc.get("members") or [])))
        assert desc["group_state"] == "Empty" and desc["members"] == [], desc

        # A fresh consumer (not subscribed, never joined) reads them back with committed().
        fresh = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                              client_id="compat-kpy-gmeta-fresh")
        for p in range(PARTITIONS):
            tp = TopicPartition(topic, p)
            om = fresh.committed(tp, metadata=True)
            if tp in want:
                assert om is not None and (om.offset, om.metadata) == (want[tp].offset, want[tp].metadata), \
                    "partition %d: committed() %s, committed %s" % (p, om, want[tp])
            else:
                assert om is None, "partition %d was never committed but committed() says %s" % (p, om)
    finally:
        if member is not None:
            member.close()
        if fresh is not None:
            fresh.close()
        admin.close()


# ----------------------------------------------------------------- long test

class Member:
    def __init__(self, name, workdir, bootstrap, topic, group):
        self.name = name
        self.log = workdir / ("%s.log" % name)
        self.stderr = open(workdir / ("%s.stderr" % name), "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER), bootstrap, topic, group, str(self.log),
             str(workdir / "go"), str(workdir / "stop")],
            stdout=self.stderr, stderr=subprocess.STDOUT)

    def lines(self):
        """Complete lines only: a SIGKILL may cut the last one."""
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return text.split("\n")[:-1]


def parse(lines):
    assigns, records, commits, fails, errors = [], [], [], [], []
    for line in lines:
        f = line.split(" ")
        if f[0] == "A":
            assigns.append((int(f[1]), [] if f[2] == "-" else [int(x) for x in f[2].split(",")]))
        elif f[0] == "R":
            records.append((int(f[1]), int(f[2])))
        elif f[0] == "C":
            commits.append((int(f[1]), int(f[2])))
        elif f[0] == "F":
            fails.append((int(f[1]), int(f[2]), f[3]))
        elif f[0] == "E":
            errors.append(line)
    return assigns, records, commits, fails, errors


def uncommitted(records, commits):
    """Records consumed at or after the last successful commit of their partition."""
    last = {}
    for p, o in commits:
        last[p] = o  # commits of one partition only move forward
    return {(p, o) for p, o in records if o >= last.get(p, 0)}


@pytest.mark.groups
@pytest.mark.timeout(300)
def test_member_sigkill_rebalance_duplicates_only_uncommitted(bootstrap, diag):
    topic = "compat-kpy-grp-" + uuid.uuid4().hex[:12]
    group = "compat-kpy-grp-" + uuid.uuid4().hex[:12]
    create_topic(bootstrap, topic, PARTITIONS)
    t0 = time.time()
    produced = produce(bootstrap, topic, TOTAL)
    ends = collections.Counter()
    for p, o in produced:
        ends[p] = max(ends[p], o + 1)
    diag.append("groups: produced %d records in %.1f s, end offsets %s"
                % (len(produced), time.time() - t0, [ends[p] for p in range(PARTITIONS)]))

    workdir = Path(tempfile.mkdtemp(prefix="kpy-groups-"))
    members = []
    passed = False
    try:
        members = [Member("m%d" % i, workdir, bootstrap, topic, group) for i in range(3)]

        # 1. Wait for one stable generation where the 3 members split the 6 partitions.
        deadline = time.time() + 60
        while True:
            latest = [parse(m.lines())[0] for m in members]
            split = [a[-1][1] if a else None for a in latest]
            if all(split) and sorted(sum(split, [])) == list(range(PARTITIONS)):
                break
            dead = [m.name for m in members if m.proc.poll() is not None]
            assert not dead and time.time() < deadline, \
                "3 members did not split the partitions within 60 s: latest assignments %s, exited %s" % (split, dead)
            time.sleep(0.2)
        diag.append("groups: 3 members joined, assignments %s" % dict((m.name, s) for m, s in zip(members, split)))
        (workdir / "go").touch()

        # 2. At ~KILL_AT consumed, SIGKILL the member owning the most partitions; start a fourth.
        deadline = time.time() + 120
        while sum(len(parse(m.lines())[1]) for m in members) < KILL_AT:
            assert time.time() < deadline, "fewer than %d records consumed in 120 s" % KILL_AT
            assert all(m.proc.poll() is None for m in members), "a member exited early: %s" % \
                [(m.name, m.proc.returncode, m.lines()[-3:]) for m in members]
            time.sleep(0.05)
        owned = [len(parse(m.lines())[0][-1][1]) for m in members]
        victim = members[owned.index(max(owned))]
        victim.proc.send_signal(signal.SIGKILL)
        kill_ms = int(time.time() * 1000)
        victim.proc.wait()
        consumed_at_kill = sum(len(parse(m.lines())[1]) for m in members)
        members.append(Member("m3", workdir, bootstrap, topic, group))
        diag.append("groups: SIGKILLed %s (owning %d partitions) at %d consumed; started m3"
                    % (victim.name, max(owned), consumed_at_kill))

        # 3. Run until every produced record is consumed and the commits reached the end offsets.
        live = [m for m in members if m is not victim]
        deadline = time.time() + 150
        while True:
            parsed = [parse(m.lines()) for m in members]
            seen = set().union(*(set(r) for _, r, _, _, _ in parsed))
            top = collections.Counter()
            for _, _, c, _, _ in parsed:
                for p, o in c:
                    top[p] = max(top[p], o)
            if produced <= seen and all(top[p] >= ends[p] for p in range(PARTITIONS)):
                break
            exited = [(m.name, m.proc.returncode) for m in live if m.proc.poll() is not None]
            assert not exited and time.time() < deadline, \
                "group did not finish (150 s): %d of %d produced records consumed, committed %s of %s, exited %s" % (
                    len(produced & seen), len(produced), dict(top), dict(ends), exited)
            time.sleep(0.2)
        finish_s = time.time() - kill_ms / 1000.0
        (workdir / "stop").touch()
        for m in live:
            m.proc.wait(timeout=30)

        # 4. Check.
        parsed = {m.name: parse(m.lines()) for m in members}
        errors = [(n, e) for n, (_, _, _, _, es) in parsed.items() for e in es]
        fails = [(n, f) for n, (_, _, _, fs, _) in parsed.items() for f in fs]
        all_records = [r for _, rs, _, _, _ in parsed.values() for r in rs]
        counts = collections.Counter(all_records)
        unique = set(counts)
        dups = {r: n - 1 for r, n in counts.items() if n > 1}
        window = uncommitted(parsed[victim.name][1], parsed[victim.name][2])
        # A survivor whose commit failed also leaves an uncommitted window behind; counted apart.
        fail_window = set()
        for n, (_, rs, cs, fs, _) in parsed.items():
            if n != victim.name and fs:
                fail_window |= {r for r in uncommitted(rs, cs) if r[0] in {f[0] for f in fs}}
        outside = {r: n for r, n in dups.items() if r not in window and r not in fail_window}
        new_assigns = [a for a in parsed["m3"][0] if a[0] >= kill_ms and a[1]]
        rebalance_s = (new_assigns[0][0] - kill_ms) / 1000.0 if new_assigns else None
        missing = produced - unique
        unknown = unique - produced
        per_member = {n: len(rs) for n, (_, rs, _, _, _) in parsed.items()}
        diag.append("groups: consumed=%d unique=%d duplicates=%d (records duplicated: %d) "
                    "uncommitted window of %s=%d records, duplicates outside it=%d, missing=%d, unknown=%d"
                    % (len(all_records), len(unique), sum(dups.values()), len(dups), victim.name, len(window),
                       len(outside), len(missing), len(unknown)))
        diag.append("groups: per member %s; failed commits %d (window %d); member errors %d"
                    % (per_member, len(fails), len(fail_window), len(errors)))
        diag.append("groups: rebalance (kill -> m3's first assignment) %s s, m3 assignment %s, "
                    "kill -> group finished %.1f s" % (rebalance_s, new_assigns[0][1] if new_assigns else None,
                                                       finish_s))
        assert not errors, "members reported errors: %s" % errors[:5]
        assert not missing, "%d produced records never consumed, e.g. %s" % (len(missing), sorted(missing)[:10])
        assert not unknown, "%d consumed records were never produced, e.g. %s" % (len(unknown), sorted(unknown)[:10])
        assert not outside, "%d duplicated records outside the killed member's uncommitted window, e.g. %s" % (
            len(outside), sorted(outside.items())[:10])
        assert new_assigns, "the new member m3 never got partitions after the kill: %s" % parsed["m3"][0]
        assert rebalance_s <= SESSION_TIMEOUT_S + 30, "rebalance took %.1f s" % rebalance_s
        assert all(m.proc.returncode == 0 for m in live), [(m.name, m.proc.returncode) for m in live]

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kpy-groups-admin")
        try:
            final = admin.list_group_offsets({group: None})[group]
            desc = admin.describe_groups([group])[group]
        finally:
            admin.close()
        final_offsets = {tp.partition: om.offset for tp, om in final.items()}
        diag.append("groups: final committed %s, group state after all left %s"
                    % ([final_offsets.get(p) for p in range(PARTITIONS)], desc.get("group_state")))
        assert final_offsets == dict(ends), "final committed %s, end offsets %s" % (final_offsets, dict(ends))
        assert desc["group_state"] == "Empty", desc
        passed = True
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()
            m.stderr.close()
        if passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("member logs kept in %s" % workdir)

"""Java (kafka-clients) and librdkafka consumers in one consumer group.

    python mixed_group.py BOOTSTRAP JARS_DIR

Two runs, each on a fresh 6-partition topic with 60,000 keyed records and a
fresh group: members j0, j1 (Java, GroupMember.java) and r0 (librdkafka,
rdkafka_member.py), every one its own OS process, all on the eager "range"
assignor, committing after each batch. At ~20,000 consumed one member is
SIGKILLed (run 1: the librdkafka one; run 2: a Java one) and a new librdkafka
member r1 starts. Checks are counted; the last line is
"Summary: N passed, M failed".
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

from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
PARTITIONS = 6
TOTAL = 60000
KILL_AT = 20000
SESSION_TIMEOUT_S = 10

passed = failed = 0


def check(name, ok, detail):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s: %s" % (name, detail), flush=True)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, detail), flush=True)
    return ok


def create_topic(admin, topic):
    fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic]
    fut.result(timeout=30)


def produce(bootstrap, topic):
    acked, errors = set(), []

    def on_delivery(err, msg):
        if err:
            errors.append(str(err))
        else:
            acked.add((msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "client.id": "compat-mixed-producer"})
    for i in range(TOTAL):
        while True:
            try:
                p.produce(topic, key=b"key-%d" % (i % 997), value=b"value-%06d" % i, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    return acked, errors, left


class Member:
    def __init__(self, name, kind, workdir, bootstrap, topic, group, jars):
        self.name, self.kind = name, kind
        self.log = workdir / ("%s.log" % name)
        self.stderr = open(workdir / ("%s.stderr" % name), "w")
        tail = [bootstrap, topic, group, str(self.log), str(workdir / "go"), str(workdir / "stop")]
        if kind == "java":
            cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                   "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                   "-cp", str(Path(jars) / "*"), str(HERE / "GroupMember.java")] + tail
        else:
            cmd = [sys.executable, str(HERE / "rdkafka_member.py")] + tail
        self.proc = subprocess.Popen(cmd, stdout=self.stderr, stderr=subprocess.STDOUT)

    def lines(self):
        """Complete lines only: a SIGKILL may cut the last one."""
        try:
            return self.log.read_text().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def parsed(self):
        return parse(self.lines())


Parsed = collections.namedtuple("Parsed", "assigns records commits fails errors")


def parse(lines):
    out = Parsed([], [], [], [], [])
    for line in lines:
        f = line.split(" ")
        if f[0] == "A":
            out.assigns.append((int(f[1]), [] if f[2] == "-" else [int(x) for x in f[2].split(",")]))
        elif f[0] == "R":
            out.records.append((int(f[1]), int(f[2])))
        elif f[0] == "C":
            out.commits.append((int(f[1]), int(f[2])))
        elif f[0] == "F":
            out.fails.append((int(f[1]), int(f[2]), f[3]))
        elif f[0] == "E":
            out.errors.append(line)
    return out


def uncommitted(records, commits):
    """Records consumed at or after the last successful commit of their partition."""
    last = {}
    for p, o in commits:
        last[p] = o
    return {(p, o) for p, o in records if o >= last.get(p, 0)}


def run(label, bootstrap, jars, kill_kind):
    print("== run %s: members j0, j1 (Java) + r0 (librdkafka); SIGKILL a %s member, then start r1 (librdkafka)"
          % (label, kill_kind), flush=True)
    topic = "compat-mixed-" + uuid.uuid4().hex[:12]
    group = "compat-mixed-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic)
    t0 = time.time()
    produced, errors, left = produce(bootstrap, topic)
    ends = collections.Counter()
    for p, o in produced:
        ends[p] = max(ends[p], o + 1)
    if not check("%s: produce" % label, len(produced) == TOTAL and not errors and left == 0,
                 "%d of %d acknowledged at distinct offsets in %.1f s, %d errors, %d unflushed, end offsets %s"
                 % (len(produced), TOTAL, time.time() - t0, len(errors), left, [ends[p] for p in range(PARTITIONS)])):
        return

    workdir = Path(tempfile.mkdtemp(prefix="mixed-group-"))
    members = []
    ok = True
    try:
        members = [Member("j0", "java", workdir, bootstrap, topic, group, jars),
                   Member("j1", "java", workdir, bootstrap, topic, group, jars),
                   Member("r0", "rdkafka", workdir, bootstrap, topic, group, jars)]

        # 1. One stable generation where the 3 members split the 6 partitions.
        deadline = time.time() + 90
        while True:
            split = [m.parsed().assigns for m in members]
            split = [a[-1][1] if a else None for a in split]
            done = all(split) and sorted(sum(split, [])) == list(range(PARTITIONS))
            exited = [(m.name, m.proc.returncode) for m in members if m.proc.poll() is not None]
            if done or exited or time.time() > deadline:
                break
            time.sleep(0.2)
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        kinds = sorted(m.client_id.split("-")[2] for m in desc.members)
        ok &= check("%s: 3 members split the partitions" % label, done and not exited,
                    "latest assignments %s, exited %s" % (dict((m.name, s) for m, s in zip(members, split)), exited))
        ok &= check("%s: DescribeGroups shows the mixed group" % label,
                    str(desc.state).endswith("STABLE") and desc.partition_assignor == "range"
                    and kinds == ["java", "java", "rdkafka"],
                    "state %s, assignor %r, member kinds %s" % (desc.state, desc.partition_assignor, kinds))
        if not ok:
            return
        (workdir / "go").touch()

        # 2. At ~KILL_AT consumed, SIGKILL the chosen kind's member owning the most partitions.
        deadline = time.time() + 120
        while sum(len(m.parsed().records) for m in members) < KILL_AT:
            exited = [(m.name, m.proc.returncode) for m in members if m.proc.poll() is not None]
            if exited or time.time() > deadline:
                check("%s: %d records consumed before the kill" % (label, KILL_AT), False,
                      "%d consumed, exited %s" % (sum(len(m.parsed().records) for m in members), exited))
                return
            time.sleep(0.05)
        candidates = [m for m in members if m.kind == kill_kind]
        owned = [len(m.parsed().assigns[-1][1]) for m in candidates]
        victim = candidates[owned.index(max(owned))]
        victim.proc.send_signal(signal.SIGKILL)
        kill_ms = int(time.time() * 1000)
        victim.proc.wait()
        at_kill = sum(len(m.parsed().records) for m in members)
        members.append(Member("r1", "rdkafka", workdir, bootstrap, topic, group, jars))
        print("     SIGKILLed %s (%s, owning %d partitions) at %d consumed; started r1"
              % (victim.name, victim.kind, max(owned), at_kill), flush=True)

        # 3. Until every produced record is consumed and commits reached the end offsets.
        live = [m for m in members if m is not victim]
        deadline = time.time() + 150
        while True:
            parsed = [m.parsed() for m in members]
            seen = set().union(*(set(x.records) for x in parsed))
            top = collections.Counter()
            for x in parsed:
                for p, o in x.commits:
                    top[p] = max(top[p], o)
            finished = produced <= seen and all(top[p] >= ends[p] for p in range(PARTITIONS))
            exited = [(m.name, m.proc.returncode) for m in live if m.proc.poll() is not None]
            if finished or exited or time.time() > deadline:
                break
            time.sleep(0.2)
        finish_s = time.time() - kill_ms / 1000.0
        ok &= check("%s: group finished" % label, finished and not exited,
                    "%.1f s after the kill: %d of %d records consumed, committed %s of %s, exited %s"
                    % (finish_s, len(produced & seen), len(produced), [top[p] for p in range(PARTITIONS)],
                       [ends[p] for p in range(PARTITIONS)], exited))
        (workdir / "stop").touch()
        for m in live:
            try:
                m.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

        # 4. Checks.
        parsed = {m.name: m.parsed() for m in members}
        all_records = [r for x in parsed.values() for r in x.records]
        counts = collections.Counter(all_records)
        unique = set(counts)
        dups = {r: n - 1 for r, n in counts.items() if n > 1}
        window = uncommitted(parsed[victim.name].records, parsed[victim.name].commits)
        fail_window = set()
        for n, x in parsed.items():
            if n != victim.name and x.fails:
                failed_parts = {f[0] for f in x.fails}
                fail_window |= {r for r in uncommitted(x.records, x.commits) if r[0] in failed_parts}
        outside = {r: n for r, n in dups.items() if r not in window and r not in fail_window}
        missing, unknown = produced - unique, unique - produced
        per_member = {n: len(x.records) for n, x in parsed.items()}
        fails = sum(len(x.fails) for x in parsed.values())
        errs = [(n, e) for n, x in parsed.items() for e in x.errors]
        print("     consumed=%d unique=%d duplicates=%d (records duplicated %d) window(%s)=%d "
              "outside=%d missing=%d unknown=%d failed-commits=%d (window %d) per-member=%s"
              % (len(all_records), len(unique), sum(dups.values()), len(dups), victim.name, len(window),
                 len(outside), len(missing), len(unknown), fails, len(fail_window), per_member), flush=True)
        ok &= check("%s: every produced record consumed" % label, not missing,
                    "%d of %d, missing e.g. %s" % (len(produced) - len(missing), len(produced), sorted(missing)[:5]))
        ok &= check("%s: nothing unknown consumed" % label, not unknown,
                    "%d unknown, e.g. %s" % (len(unknown), sorted(unknown)[:5]))
        ok &= check("%s: duplicates only in %s's uncommitted window" % (label, victim.name), not outside,
                    "%d duplicates, window %d records, %d duplicated records outside it, e.g. %s"
                    % (sum(dups.values()), len(window), len(outside), sorted(outside.items())[:5]))
        java_n = sum(len(x.records) for n, x in parsed.items() if n.startswith("j"))
        rd_n = sum(len(x.records) for n, x in parsed.items() if n.startswith("r"))
        ok &= check("%s: both client kinds consumed" % label, java_n > 0 and rd_n > 0,
                    "java %d records, librdkafka %d records" % (java_n, rd_n))
        new = [a for a in parsed["r1"].assigns if a[0] >= kill_ms and a[1]]
        rebalance_s = (new[0][0] - kill_ms) / 1000.0 if new else None
        ok &= check("%s: rebalance after the kill" % label,
                    bool(new) and rebalance_s <= SESSION_TIMEOUT_S + 30,
                    "kill -> r1's first assignment %s s (session timeout %d s), r1 got %s"
                    % (rebalance_s, SESSION_TIMEOUT_S, new[0][1] if new else None))
        ok &= check("%s: members clean" % label,
                    not errs and all(m.proc.returncode == 0 for m in live),
                    "errors %s, exit codes %s" % (errs[:5], {m.name: m.proc.returncode for m in live}))

        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
        final = {tp.partition: tp.offset for tp in res.topic_partitions}
        ok &= check("%s: final committed offsets = end offsets" % label, final == dict(ends),
                    "committed %s, end %s" % ([final.get(p) for p in range(PARTITIONS)],
                                              [ends[p] for p in range(PARTITIONS)]))
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        ok &= check("%s: group Empty after every member left" % label,
                    str(desc.state).endswith("EMPTY") and not desc.members,
                    "state %s, %d members" % (desc.state, len(desc.members)))
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()
            m.stderr.close()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("     member logs kept in %s" % workdir, flush=True)


def main():
    bootstrap, jars = sys.argv[1], sys.argv[2]
    for label, kind in (("kill-rdkafka", "rdkafka"), ("kill-java", "java")):
        try:
            run(label, bootstrap, jars, kind)
        except Exception as e:  # a client error is a failed check, and the other run still goes
            check("%s: ran without exception" % label, False, "%s: %s" % (type(e).__name__, e))
    print("Summary: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

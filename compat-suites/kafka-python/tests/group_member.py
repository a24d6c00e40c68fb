"""One consumer-group member, run as its own OS process by test_groups.py.

    python group_member.py BOOTSTRAP TOPIC GROUP LOG_FILE GO_FILE STOP_FILE

Subscribes to TOPIC in GROUP with kafka-python (eager "range" assignor, no
auto-commit) and loops: poll a batch, log every record, wait a little (so a
SIGKILL usually lands between consuming and committing), commit the next
offset of every partition in the batch synchronously, log the commit once
commit() returned. Until GO_FILE exists it only takes part in the group
(its partitions paused, nothing consumed), so the test can start every member
first. Exits (closing the consumer, i.e. LeaveGroup) when STOP_FILE exists.

Log lines (one per line, flushed after every write; a SIGKILL may leave a
last line without newline, which readers ignore):
    A <epoch_ms> <p,p,...>   partitions assigned (after a rebalance)
    R <p> <offset>           record consumed
    C <p> <next_offset>      commit returned successfully
    F <p> <next_offset> <error>  commit failed
    E <message>              other error
"""
import os
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

# Between logging a batch and committing it: makes the uncommitted window real.
COMMIT_DELAY_S = 0.03


def main():
    bootstrap, topic, group, log_path, go_path, stop_path = sys.argv[1:7]
    out = open(log_path, "a", buffering=1)  # line buffered: each line is one write

    def log(line):
        out.write(line + "\n")
        out.flush()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            parts = sorted(tp.partition for tp in assigned)
            log("A %d %s" % (int(time.time() * 1000), ",".join(map(str, parts)) or "-"))

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="compat-kpy-" + os.path.basename(log_path),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        max_poll_records=200,
    )
    consumer.subscribe([topic], listener=Listener())
    try:
        go = False
        while not os.path.exists(stop_path):
            if not go:
                go = os.path.exists(go_path)
                if not go:
                    # Keep heartbeating and rebalancing, consume nothing yet.
                    consumer.pause(*consumer.assignment())
                    for tp, records in consumer.poll(timeout_ms=200).items():
                        consumer.seek(tp, records[0].offset)
                    continue
                consumer.resume(*consumer.assignment())
            batch = consumer.poll(timeout_ms=300)
            if not batch:
                continue
            nxt = {}
            for tp, records in batch.items():
                for r in records:
                    log("R %d %d" % (tp.partition, r.offset))
                nxt[tp.partition] = records[-1].offset + 1
            time.sleep(COMMIT_DELAY_S)
            offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in nxt.items()}
            try:
                consumer.commit(offsets)
            except KafkaError as e:
                for p, o in sorted(nxt.items()):
                    log("F %d %d %s" % (p, o, type(e).__name__))
                continue
            for p, o in sorted(nxt.items()):
                log("C %d %d" % (p, o))
    except Exception as e:  # reported to the test through the log
        log("E %s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
        raise
    finally:
        consumer.close()
        out.close()


if __name__ == "__main__":
    main()

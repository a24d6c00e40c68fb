"""One consumer-group member on librdkafka (confluent-kafka), run by mixed_group.py:

    python rdkafka_member.py BOOTSTRAP TOPIC GROUP LOG_FILE GO_FILE STOP_FILE

The same loop and log format as GroupMember.java: eager "range" assignor, no
auto-commit; consume a batch, log every record, wait a little, commit the next
offset of every partition in the batch synchronously, log the commit once it
returned. Partitions stay paused until GO_FILE exists; on STOP_FILE the
consumer is closed (LeaveGroup) and the process exits.
"""
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

COMMIT_DELAY_S = 0.03


def main():
    bootstrap, topic, group, log_path, go_path, stop_path = sys.argv[1:7]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(line):
        os.write(fd, (line + "\n").encode())  # one write per line, no buffer

    name = os.path.basename(log_path).rsplit(".", 1)[0]
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": "compat-mixed-rdkafka-" + name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range",
    })
    state = {"go": False}

    def on_assign(c, partitions):
        parts = sorted(tp.partition for tp in partitions)
        log("A %d %s" % (int(time.time() * 1000), ",".join(map(str, parts)) or "-"))
        c.assign(partitions)
        if partitions:
            # librdkafka keeps a partition's pause flag across rebalances: set it either way.
            (c.resume if state["go"] else c.pause)(partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        while not os.path.exists(stop_path):
            if not state["go"]:
                if os.path.exists(go_path):
                    state["go"] = True
                    consumer.resume(consumer.assignment())
                else:
                    if [m for m in consumer.consume(num_messages=200, timeout=0.2) if not m.error()]:
                        log("E records returned while paused")
                    continue
            batch = consumer.consume(num_messages=200, timeout=0.3)
            nxt = {}
            for m in batch:
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        log("E consume: %s" % m.error())
                    continue
                log("R %d %d" % (m.partition(), m.offset()))
                nxt[m.partition()] = m.offset() + 1
            if not nxt:
                continue
            time.sleep(COMMIT_DELAY_S)
            offsets = [TopicPartition(topic, p, o) for p, o in sorted(nxt.items())]
            try:
                result = consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as e:
                for tp in offsets:
                    log("F %d %d %s" % (tp.partition, tp.offset, e.args[0].name()))
                continue
            for tp in result:
                if tp.error:
                    log("F %d %d %s" % (tp.partition, tp.offset, tp.error.name()))
                else:
                    log("C %d %d" % (tp.partition, tp.offset))
    except Exception as e:
        log("E %s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
        raise
    finally:
        consumer.close()
        os.close(fd)


if __name__ == "__main__":
    main()
